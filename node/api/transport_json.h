// The transport room in the control API: the JSON of the router port mapping's status.
#pragma once

#include "node/transport/portmap.h"

#include <nlohmann/json.hpp>

namespace parley::node::api {

// {"state": "disabled" | "discovering" | "mapped" | "unavailable", "method", "gateway",
//  "external", "expires" (unix s) when mapped, "reason" otherwise (when there is one)}.
nlohmann::json toJson(const PortMapStatus& status);

} // namespace parley::node::api
