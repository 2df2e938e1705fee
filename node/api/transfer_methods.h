// The transfer room in the control API: the JSON of transfers and their events, `parley share`,
// `parley transfers` and `parley transfer ...`, and its methods (transfer.offer,
// transfer.accept, transfer.decline, transfer.cancel, transfer.pause, transfer.resume,
// transfers, transfer.get, transfer.auto_accept).
#pragma once

#include "node/api/control_server.h"
#include "node/transfer/transfers.h"

#include <nlohmann/json.hpp>
#include <vector>

namespace parley::node::api {

// {id (32 hex), contact, direction ("out"/"in"), state, reason, name, message, files, bytes,
//  done, rate (bytes/s), dest, created_ms, updated_ms, problems [{path, reason}],
//  more_problems}
nlohmann::json toJson(const TransferSummary& transfer);
nlohmann::json toJson(const std::vector<TransferSummary>& transfers);
// The summary with "type": "transfer.offered", "transfer.progress" or "transfer.state".
nlohmann::json toJson(const TransferEvent& event);
nlohmann::json toJson(const std::vector<transfer::Skipped>& skipped); // [{path, reason}]

void registerTransferMethods(ControlServer& control, TransferManager& transfers);

} // namespace parley::node::api
