#include "node/api/link_methods.h"

#include "node/api/params.h"

namespace parley::node::api {

using nlohmann::json;

json toJson(const LinkEvent& e) {
    if (e.up)
        return {
            {"type", "link.up"}, {"id", e.peer.toHex()}, {"remote", e.remote}, {"role", e.role}};
    return {{"type", "link.down"}, {"id", e.peer.toHex()}, {"reason", e.reason}};
}

json toJson(const PingResult& r) {
    json out = {{"contact", r.peer.toHex()}, {"connected", r.connected}, {"reused", r.reused}};
    if (!r.connected) {
        out["error"] = r.error;
        out["elapsed_ms"] = r.elapsedMs;
        return out;
    }
    if (!r.error.empty())
        out["error"] = r.error;
    out["setup_ms"] = r.setupMs;
    out["remote"] = r.remote;
    out["role"] = r.role;
    auto rtts = json::array();
    for (const auto& rtt : r.rttMs)
        rtts.push_back(rtt ? json(*rtt) : json(nullptr));
    out["rtt_ms"] = std::move(rtts);
    out["lost"] = r.lost();
    return out;
}

json toJson(const std::vector<LinkStatus>& links) {
    auto out = json::array();
    for (const auto& l : links)
        out.push_back({{"id", l.peer.toHex()},
                       {"remote", l.remote},
                       {"role", l.role},
                       {"rtt_ms", l.rttMs},
                       {"age_s", l.ageS},
                       {"idle_s", l.idleS},
                       {"agent", l.agent}});
    return out;
}

void registerLinkMethods(ControlServer& control, LinkManager& links) {
    control.on("ping", [&links](const json& params, const ControlServer::Reply& reply) {
        auto target = contactIdParam(params, reply);
        if (!target)
            return;
        auto count = intParam(params, "count", 4, 0, 1000);
        auto interval = secondsParam(params, "interval", 0.2, 0, 60);
        auto timeout = secondsParam(params, "timeout", 15.0, 0, 300);
        if (!count || !interval || !timeout || timeout->count() == 0) {
            reply.error(rpc::kInvalidParams, "count must be 0-1000, interval 0-60 s and "
                                             "timeout 0-300 s");
            return;
        }
        links.ping(*target, static_cast<int>(*count), *interval, *timeout,
                   [reply](const PingResult& r) { reply.ok(toJson(r)); });
    });
    control.on("links", [&links](const json&, const ControlServer::Reply& reply) {
        reply.ok({{"links", toJson(links.status())}, {"counters", toJson(links.counters())}});
    });
}

} // namespace parley::node::api
