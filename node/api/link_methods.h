// The link room in the control API: the JSON of its events, `parley ping` and `parley links`,
// and its methods (ping, links).
#pragma once

#include "node/api/control_server.h"
#include "node/link/links.h"

#include <nlohmann/json.hpp>
#include <vector>

namespace parley::node::api {

nlohmann::json toJson(const LinkEvent& event); // {"type": "link.up" or "link.down", ...}
nlohmann::json toJson(const PingResult& result);
nlohmann::json toJson(const std::vector<LinkStatus>& links);

void registerLinkMethods(ControlServer& control, LinkManager& links);

} // namespace parley::node::api
