// RpcTable: JSON-RPC 2.0 dispatch of one line, no socket.
#include "node/api/rpc_table.h"

#include <catch2/catch.hpp>
#include <vector>

using namespace parley::node;
using nlohmann::json;

namespace {

struct Harness {
    RpcTable table;
    std::vector<json> sent;
    int subscribed = 0;
    void line(std::string_view text) {
        table.dispatch(
            text, [this](json m) { sent.push_back(std::move(m)); }, [this] { ++subscribed; });
    }
    int errorCode(std::size_t i = 0) const { return sent.at(i)["error"]["code"].get<int>(); }
};

} // namespace

TEST_CASE("rpc: a request reaches its method and the answer carries the id") {
    Harness h;
    h.table.on("echo",
               [](const json& params, const ControlServer::Reply& reply) { reply.ok(params); });
    h.line(R"({"jsonrpc":"2.0","id":"a1","method":"echo","params":{"x":[1,2]}})");
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0]["id"] == "a1");
    CHECK(h.sent[0]["result"]["x"] == json::array({1, 2}));
    // No params: an empty object.
    h.line(R"({"jsonrpc":"2.0","id":2,"method":"echo"})");
    CHECK(h.sent.at(1)["result"] == json::object());
}

TEST_CASE("rpc: bad requests get the JSON-RPC error codes") {
    Harness h;
    h.table.on("echo",
               [](const json& params, const ControlServer::Reply& reply) { reply.ok(params); });
    h.line("{not json");
    CHECK(h.errorCode(0) == rpc::kParseError);
    CHECK(h.sent[0]["id"].is_null());
    h.line(R"({"id":1,"method":"echo"})"); // no "jsonrpc":"2.0"
    CHECK(h.errorCode(1) == rpc::kInvalidRequest);
    CHECK(h.sent[1]["id"] == 1);
    h.line(R"({"jsonrpc":"2.0","id":1,"method":7})");
    CHECK(h.errorCode(2) == rpc::kInvalidRequest);
    h.line(R"({"jsonrpc":"2.0","id":{"o":1},"method":"echo"})"); // an object is not an id
    CHECK(h.errorCode(3) == rpc::kInvalidRequest);
    CHECK(h.sent[3]["id"].is_null());
    h.line(R"({"jsonrpc":"2.0","id":5,"method":"echo","params":"text"})");
    CHECK(h.errorCode(4) == rpc::kInvalidRequest);
    h.line(R"({"jsonrpc":"2.0","id":6,"method":"nope"})");
    CHECK(h.errorCode(5) == rpc::kMethodNotFound);
    h.line(R"([1,2,3])");
    CHECK(h.errorCode(6) == rpc::kInvalidRequest);
    h.line("   \r\n");
    CHECK(h.sent.size() == 7); // blank lines are ignored
}

TEST_CASE("rpc: notifications run and are never answered, not even with an error") {
    Harness h;
    int runs = 0;
    h.table.on("tick", [&](const json&, const ControlServer::Reply& reply) {
        ++runs;
        reply.ok(json::object());
        reply.error(rpc::kFailed, "ignored too");
    });
    h.line(R"({"jsonrpc":"2.0","method":"tick"})");
    h.line(R"({"jsonrpc":"2.0","method":"unknown"})");
    CHECK(runs == 1);
    CHECK(h.sent.empty());
}

TEST_CASE("rpc: a throwing handler becomes an error reply, never an escape") {
    Harness h;
    h.table.on("typed", [](const json& params, const ControlServer::Reply& reply) {
        reply.ok(params.at("count").get<int>() + 1);
    });
    h.table.on("boom", [](const json&, const ControlServer::Reply&) {
        throw std::runtime_error("disk on fire");
    });
    h.line(R"({"jsonrpc":"2.0","id":1,"method":"typed","params":{"count":"three"}})");
    CHECK(h.errorCode(0) == rpc::kInvalidParams);
    h.line(R"({"jsonrpc":"2.0","id":2,"method":"typed","params":[1]})");
    CHECK(h.errorCode(1) == rpc::kInvalidParams);
    h.line(R"({"jsonrpc":"2.0","id":3,"method":"boom"})");
    CHECK(h.errorCode(2) == rpc::kInternalError);
    CHECK(h.sent[2]["error"]["message"] == "disk on fire");
    h.line(R"({"jsonrpc":"2.0","id":4,"method":"typed","params":{"count":41}})");
    CHECK(h.sent.at(3)["result"] == 42);
}

TEST_CASE("rpc: a kept Reply answers later, and subscribe marks the caller") {
    Harness h;
    std::vector<ControlServer::Reply> kept;
    h.table.on("later",
               [&](const json&, const ControlServer::Reply& reply) { kept.push_back(reply); });
    h.table.on("sub", [](const json&, const ControlServer::Reply& reply) {
        reply.subscribe();
        reply.ok(true);
    });
    h.line(R"({"jsonrpc":"2.0","id":"k","method":"later"})");
    CHECK(h.sent.empty());
    REQUIRE(kept.size() == 1);
    kept[0].ok("done");
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0]["id"] == "k");
    CHECK(h.sent[0]["result"] == "done");
    h.line(R"({"jsonrpc":"2.0","id":1,"method":"sub"})");
    CHECK(h.subscribed == 1);
}
