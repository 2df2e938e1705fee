#include "node/api/transport_json.h"

namespace parley::node::api {

nlohmann::json toJson(const PortMapStatus& status) {
    nlohmann::json j{{"state", status.state}};
    if (status.state == "mapped" && status.mapping) {
        j["method"] = status.mapping->method;
        j["gateway"] = status.mapping->gateway;
        j["external"] = status.mapping->external;
        j["expires"] = status.mapping->expiresUnixS;
    } else if (!status.reason.empty()) {
        j["reason"] = status.reason;
    }
    return j;
}

} // namespace parley::node::api
