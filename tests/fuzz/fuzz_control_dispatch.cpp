// Fuzz target: one control-API request line through RpcTable, with handlers that read their
// params the ways the node's methods do (at/value/get of every JSON type, arrays, nesting).
// The socket is local (mode 0600) but its client may be any program the user runs: a line
// must never crash the daemon, throw out of dispatch, or produce a reply that cannot be sent.
#include "node/api/params.h"
#include "node/api/rpc_table.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using nlohmann::json;
using parley::node::ControlServer;
using parley::node::RpcTable;

namespace {

RpcTable makeTable() {
    RpcTable t;
    t.on("echo", [](const json& p, const ControlServer::Reply& r) { r.ok(p); });
    t.on("lookup", [](const json& p, const ControlServer::Reply& r) {
        auto id = p.at("id").get<std::string>();
        auto timeout = parley::node::api::intParam(p, "timeout_ms", 3000, 0, 300'000);
        if (!timeout)
            r.error(parley::node::rpc::kInvalidParams, "timeout_ms must be 0-300000");
        else
            r.ok({{"id", id}, {"timeout", *timeout}});
    });
    t.on("ping", [](const json& p, const ControlServer::Reply& r) {
        auto count = parley::node::api::intParam(p, "count", 3, 0, 1000);
        double interval = p.value("interval_ms", 200.0);
        bool json = p.value("json", false);
        if (!count)
            r.error(parley::node::rpc::kInvalidParams, "count must be 0-1000");
        else
            r.ok({{"count", *count}, {"interval", interval}, {"json", json}});
    });
    t.on("chat.send", [](const json& p, const ControlServer::Reply& r) {
        auto text = p.at("text").get<std::string>();
        auto to = p.at("to").get<std::string>();
        if (text.empty())
            r.error(parley::node::rpc::kInvalidParams, "empty message");
        else
            r.ok({{"to", to}, {"bytes", text.size()}});
    });
    t.on("contacts.many", [](const json& p, const ControlServer::Reply& r) {
        std::size_t n = 0;
        for (const auto& c : p.at("ids"))
            n += c.get<std::string>().size();
        r.ok(n);
    });
    t.on("subscribe", [](const json&, const ControlServer::Reply& r) {
        r.subscribe();
        r.ok(true);
    });
    return t;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const RpcTable table = makeTable();
    std::string_view line(reinterpret_cast<const char*>(data), size);
    table.dispatch(
        line,
        [](json message) {
            // What Session::send does: a reply must always serialise.
            auto text = message.dump(-1, ' ', false, json::error_handler_t::replace);
            if (text.empty() || (!message.contains("result") && !message.contains("error")))
                __builtin_trap();
        },
        [] {});
    return 0;
}
