// The node's own part of the control API: status, lookup, subscribe, bootstrap and shutdown,
// the JSON of a lookup and of the status, and the node's events (dht.state, node.stopping).
#pragma once

#include "dht/overlay.h"
#include "node/api/control_server.h"
#include "node/chat/chat.h"
#include "node/link/links.h"
#include "node/transport/portmap.h"

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parley::node::api {

// Everything `parley status` shows, gathered by the composition root.
struct NodeStatus {
    dht::ContactId id;
    std::string name;
    std::string version;
    long pid = 0;
    std::string profile;
    std::int64_t uptimeS = 0;
    dht::OverlayStatus dht;
    dht::OverlayCounters records;
    std::vector<LinkStatus> links;
    std::map<std::string, std::uint64_t> linkCounters;
    std::map<std::string, std::uint64_t> chatCounters;
    std::map<std::string, std::uint64_t> transferCounters;
    PortMapStatus portmap{"disabled", {}, {}};
};

nlohmann::json toJson(const dht::LookupResult& result);
nlohmann::json toJson(const NodeStatus& status);
nlohmann::json dhtStateEvent(const dht::OverlayStatus& status); // {"type": "dht.state", ...}

// status, lookup, subscribe, bootstrap, shutdown. `shutdown` asks the node to stop (after the
// answer and a node.stopping event went out).
void registerNodeMethods(ControlServer& control, dht::Overlay& overlay,
                         std::function<NodeStatus()> status, std::function<void()> shutdown);

} // namespace parley::node::api
