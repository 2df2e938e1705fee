#include "node/api/node_methods.h"

#include "node/api/link_methods.h"
#include "node/api/params.h"
#include "node/api/transport_json.h"

namespace parley::node::api {

using nlohmann::json;

json toJson(const dht::LookupResult& r) {
    json j;
    j["id"] = r.id.toHex();
    j["state"] = dht::toString(r.state);
    j["name"] = r.name ? json(*r.name) : json(nullptr);
    j["last_seen"] = r.lastSeenMs ? json(*r.lastSeenMs / 1000) : json(nullptr);
    j["status"] = r.status ? json(dht::toString(*r.status)) : json(nullptr);
    j["elapsed_ms"] = static_cast<double>(r.elapsed.count()) / 1000.0;
    return j;
}

json toJson(const NodeStatus& s) {
    const auto& st = s.dht;
    json dhtJson = {{"state", st.state},
                    {"port", st.port},
                    {"network", st.network},
                    {"nodes", st.nodes},
                    {"nodes_ipv6", st.nodesIPv6},
                    {"lan_discovery", st.lanDiscovery},
                    {"bootstrap", st.bootstrap},
                    {"public_address",
                     st.publicAddresses.empty() ? json(nullptr) : json(st.publicAddresses.front())},
                    {"public_addresses", st.publicAddresses},
                    {"public_endpoints", st.publicEndpoints}};
    const auto& c = s.records;
    return {{"id", s.id.toHex()},
            {"name", s.name},
            {"version", s.version},
            {"pid", s.pid},
            {"profile", s.profile},
            {"uptime_s", s.uptimeS},
            {"dht", dhtJson},
            {"links", toJson(s.links)},
            {"link_counters", toJson(s.linkCounters)},
            {"chat_counters", toJson(s.chatCounters)},
            {"transfer_counters", toJson(s.transferCounters)},
            {"portmap", toJson(s.portmap)},
            {"records",
             {{"accepted", c.recordsAccepted},
              {"wrong_owner", c.recordsWrongOwner},
              {"malformed", c.recordsMalformed},
              {"stale", c.recordsStale}}}};
}

json dhtStateEvent(const dht::OverlayStatus& st) {
    return {{"type", "dht.state"}, {"state", st.state}, {"nodes", st.nodes}};
}

void registerNodeMethods(ControlServer& control, dht::Overlay& overlay,
                         std::function<NodeStatus()> status, std::function<void()> shutdown) {
    control.on("status", [status](const json&, const ControlServer::Reply& reply) {
        reply.ok(toJson(status()));
    });
    control.on("lookup", [&overlay](const json& params, const ControlServer::Reply& reply) {
        std::string idText;
        if (params.is_object() && params.contains("id") && params["id"].is_string())
            idText = params["id"].get<std::string>();
        auto target = dht::ContactId::parse(idText);
        if (!target) {
            reply.error(rpc::kInvalidParams,
                        "not a contact id: expected 64 hexadecimal characters, got '" +
                            idText.substr(0, 80) + "'");
            return;
        }
        auto timeout = secondsParam(params, "timeout", 10.0, 0, 300);
        if (!timeout || timeout->count() == 0) {
            reply.error(rpc::kInvalidParams, "timeout must be between 0 and 300 seconds");
            return;
        }
        overlay.lookup(*target, *timeout,
                       [reply](const dht::LookupResult& r) { reply.ok(toJson(r)); });
    });
    control.on("subscribe", [&overlay](const json&, const ControlServer::Reply& reply) {
        reply.subscribe();
        reply.ok({{"subscribed", true}, {"dht_state", overlay.status().state}});
    });
    control.on("bootstrap", [&overlay](const json& params, const ControlServer::Reply& reply) {
        std::string address;
        if (params.is_object() && params.contains("address") && params["address"].is_string())
            address = params["address"].get<std::string>();
        if (!dht::splitHostPort(address)) {
            reply.error(rpc::kInvalidParams, "expected HOST:PORT, got '" + address + "'");
            return;
        }
        overlay.bootstrap(address);
        reply.ok({{"bootstrapping", address}});
    });
    control.on("shutdown", [&control, shutdown](const json&, const ControlServer::Reply& reply) {
        reply.ok({{"stopping", true}});
        control.broadcast({{"type", "node.stopping"}});
        shutdown();
    });
}

} // namespace parley::node::api
