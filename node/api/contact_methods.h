// The contacts room in the control API: its JSON (commands' answers, listings, events,
// counters) and its methods (contact.add, contact.accept, ..., contacts).
#pragma once

#include "node/api/control_server.h"
#include "node/contacts/contacts.h"

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parley::node::api {

nlohmann::json toJson(const ContactEvent& event); // {"type": "contact.<kind>", ...}
nlohmann::json toJson(const AddResult& result);
nlohmann::json toJson(const std::vector<ContactSummary>& contacts);
nlohmann::json requestsJson(const std::vector<ContactRecord>& requests);
nlohmann::json toJson(const std::map<std::string, std::uint64_t>& counters);

// The "id" parameter as a ContactId; on anything else answers invalid params, nullopt.
std::optional<dht::ContactId> contactIdParam(const nlohmann::json& params,
                                             const ControlServer::Reply& reply);

// contact.add, contact.requests, contacts, contact.{accept,decline,block,unblock,remove}.
void registerContactMethods(ControlServer& control, ContactManager& contacts);

} // namespace parley::node::api
