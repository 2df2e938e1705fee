// The control API's JSON of the rooms' typed results: the shapes `parley` and scripts read
// (docs/ARCHITECTURE.md, "Control API"), kept the same as when the rooms built JSON.
#include "node/api/chat_methods.h"
#include "node/api/link_methods.h"

#include <catch2/catch.hpp>

using namespace parley;
using nlohmann::json;

namespace {

dht::ContactId someId(std::uint8_t fill) {
    std::array<std::uint8_t, 32> bytes{};
    bytes.fill(fill);
    return dht::ContactId(bytes);
}

} // namespace

TEST_CASE("api: ping results, connected or not") {
    node::PingResult failed;
    failed.peer = someId(0xab);
    failed.error = "timed out";
    failed.elapsedMs = 1500;
    CHECK(node::api::toJson(failed) == json{{"contact", someId(0xab).toHex()},
                                            {"connected", false},
                                            {"reused", false},
                                            {"error", "timed out"},
                                            {"elapsed_ms", 1500.0}});

    node::PingResult ok;
    ok.peer = someId(0x01);
    ok.connected = true;
    ok.setupMs = 12.5;
    ok.remote = "127.0.0.1:4000";
    ok.role = "client";
    ok.rttMs = {0.5, std::nullopt, 0.75};
    auto j = node::api::toJson(ok);
    CHECK(j["connected"] == true);
    CHECK(j["lost"] == 1);
    CHECK(j["rtt_ms"] == json::parse("[0.5, null, 0.75]"));
    CHECK(j["setup_ms"] == 12.5);
    CHECK_FALSE(j.contains("error"));
    ok.error = "the link closed";
    CHECK(node::api::toJson(ok)["error"] == "the link closed");
}

TEST_CASE("api: link events and the link list") {
    node::LinkEvent up{
        .up = true, .peer = someId(2), .remote = "[::1]:5", .role = "server", .reason = {}};
    CHECK(node::api::toJson(up) == json{{"type", "link.up"},
                                        {"id", someId(2).toHex()},
                                        {"remote", "[::1]:5"},
                                        {"role", "server"}});
    node::LinkEvent down{
        .up = false, .peer = someId(2), .remote = {}, .role = {}, .reason = "idle"};
    CHECK(node::api::toJson(down) ==
          json{{"type", "link.down"}, {"id", someId(2).toHex()}, {"reason", "idle"}});
    std::vector<node::LinkStatus> links{{.peer = someId(3),
                                         .remote = "127.0.0.1:9",
                                         .role = "client",
                                         .rttMs = 0.2,
                                         .ageS = 3,
                                         .idleS = 1,
                                         .agent = "parley/0.1.0"}};
    auto j = node::api::toJson(links);
    REQUIRE(j.size() == 1);
    CHECK(j[0]["id"] == someId(3).toHex());
    CHECK(j[0]["agent"] == "parley/0.1.0");
    CHECK(j[0]["idle_s"] == 1.0);
}

TEST_CASE("api: chat messages, events, send and wait results") {
    node::ChatRecord r;
    r.id.fill(0x11);
    r.contact = someId(4);
    r.outgoing = true;
    r.seq = 7;
    r.sentMs = 1700000000000;
    r.text = "hello";
    r.state = "stored";
    auto message = node::api::toJson(r);
    CHECK(message == json{{"id", std::string(32, '1')},
                          {"contact", someId(4).toHex()},
                          {"direction", "out"},
                          {"seq", 7},
                          {"ts", 1700000000000},
                          {"text", "hello"},
                          {"state", "stored"}});
    node::ChatEvent e;
    e.record = r;
    auto event = node::api::toJson(e);
    CHECK(event["type"] == "chat.message");
    CHECK(event["text"] == "hello");
    e.kind = node::ChatEvent::Kind::state;
    e.contact = someId(4);
    e.id.fill(0x22);
    e.state = "delivered";
    CHECK(node::api::toJson(e) == json{{"type", "chat.state"},
                                       {"contact", someId(4).toHex()},
                                       {"id", std::string(32, '2')},
                                       {"state", "delivered"}});

    node::SendResult sent;
    sent.id.fill(0x33);
    sent.seq = 2;
    sent.state = "queued";
    CHECK(node::api::toJson(sent) ==
          json{{"id", std::string(32, '3')}, {"seq", 2}, {"state", "queued"}});

    node::WaitResult waited{.id = sent.id, .delivered = true, .state = "read", .error = {}};
    CHECK(node::api::toJson(waited) ==
          json{{"id", std::string(32, '3')}, {"delivered", true}, {"state", "read"}});
    node::WaitResult unknown{
        .id = sent.id, .delivered = false, .state = {}, .error = "no message of ours with this id"};
    CHECK(node::api::toJson(unknown) == json{{"id", std::string(32, '3')},
                                             {"delivered", false},
                                             {"error", "no message of ours with this id"}});
}
