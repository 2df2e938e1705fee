// ControlStream: frames split across pushes, the hello check, errors with reasons, fin,
// unknown frame types skipped, and the encoder's caps.
#include "node/link/control_stream.h"

#include <catch2/catch.hpp>

using namespace parley::node;
using namespace parley::node::link;

namespace {

std::vector<std::uint8_t> framed(const wire::Message& m) {
    std::vector<std::uint8_t> out;
    REQUIRE(ControlStream::encode(m, out) == wire::FrameError::ok);
    return out;
}

std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Everything the stream hands out now: messages, then the error's reason if there was one.
struct Drained {
    std::vector<wire::Message> messages;
    std::optional<std::string> error;
};

Drained drain(ControlStream& s) {
    Drained d;
    while (auto e = s.next()) {
        if (auto* err = std::get_if<ControlStream::Error>(&*e)) {
            REQUIRE_FALSE(d.error);
            d.error = err->reason;
        } else {
            REQUIRE_FALSE(d.error); // nothing after the error
            d.messages.push_back(std::get<wire::Message>(*e));
        }
    }
    return d;
}

} // namespace

TEST_CASE("control stream: a hello and a ping arrive one byte at a time") {
    ControlStream s;
    wire::Hello hello;
    hello.agent = "test/1";
    auto bytes = concat(framed(hello), framed(wire::Ping{7, 9}));
    std::vector<wire::Message> got;
    for (auto b : bytes) {
        s.push(std::span(&b, 1));
        auto d = drain(s);
        REQUIRE_FALSE(d.error);
        got.insert(got.end(), d.messages.begin(), d.messages.end());
    }
    REQUIRE(got.size() == 2);
    CHECK(std::get<wire::Hello>(got[0]) == hello);
    CHECK(std::get<wire::Ping>(got[1]) == wire::Ping{7, 9});
    CHECK(s.helloSeen());
    CHECK(s.peerHello().agent == "test/1");
}

TEST_CASE("control stream: the hello must come first, once, with a version we speak") {
    SECTION("a ping first") {
        ControlStream s;
        s.push(framed(wire::Ping{1, 2}));
        auto d = drain(s);
        CHECK(d.messages.empty());
        CHECK(d.error == "a frame before the hello");
        CHECK(s.failed());
    }
    SECTION("two hellos") {
        ControlStream s;
        s.push(concat(framed(wire::Hello{}), framed(wire::Hello{})));
        auto d = drain(s);
        CHECK(d.messages.size() == 1);
        CHECK(d.error == "a second hello");
    }
    SECTION("a version below our minimum") {
        ControlStream s(2);
        wire::Hello old;
        old.version = 1;
        s.push(framed(old));
        auto d = drain(s);
        CHECK(d.messages.empty());
        CHECK(d.error == "incompatible protocol version 1");
        CHECK_FALSE(s.helloSeen());
    }
}

TEST_CASE("control stream: a bad length prefix fails at once, and the stream stays failed") {
    ControlStream s;
    auto over = static_cast<std::uint32_t>(wire::kMaxFrameSize + 1);
    std::vector<std::uint8_t> prefix = {
        static_cast<std::uint8_t>(over >> 24), static_cast<std::uint8_t>(over >> 16),
        static_cast<std::uint8_t>(over >> 8), static_cast<std::uint8_t>(over)};
    // A whole hello in the same push is not handed out: the peer is broken.
    s.push(concat(framed(wire::Hello{}), prefix));
    auto d = drain(s);
    CHECK(d.messages.empty());
    CHECK(d.error == std::string(wire::describe(wire::FrameError::tooLarge)));
    s.push(framed(wire::Hello{}));
    CHECK_FALSE(s.next());
}

TEST_CASE("control stream: garbage is malformed, unknown types are skipped and counted") {
    ControlStream s;
    std::string unknown = "\x81\xa1t\xa7newtype"; // {t: "newtype"}
    std::vector<std::uint8_t> payload(unknown.begin(), unknown.end());
    std::vector<std::uint8_t> frame;
    REQUIRE(wire::frame(payload, frame) == wire::FrameError::ok);
    s.push(concat(framed(wire::Hello{}), concat(frame, frame)));
    auto d = drain(s);
    CHECK(d.messages.size() == 1);
    CHECK_FALSE(d.error);
    CHECK(s.takeUnknownFrames() == 2);
    CHECK(s.takeUnknownFrames() == 0);

    std::vector<std::uint8_t> garbage = {0, 0, 0, 3, 0xc1, 0xc1, 0xc1};
    s.push(garbage);
    d = drain(s);
    CHECK(d.error == std::string(wire::describe(wire::FrameError::malformed)));
}

TEST_CASE("control stream: fin ends the stream after the messages before it") {
    ControlStream s;
    s.push(concat(framed(wire::Hello{}), framed(wire::Ping{1, 1})), true);
    auto d = drain(s);
    CHECK(d.messages.size() == 2);
    CHECK(d.error == "the peer ended its control stream");
}

TEST_CASE("control stream: the encoder refuses what the peer would refuse, and the backlog cap") {
    std::vector<std::uint8_t> out;
    wire::Hello big;
    big.agent = std::string(wire::kMaxAgentSize + 1, 'a');
    CHECK(ControlStream::encode(big, out) == wire::FrameError::malformed);
    CHECK(out.empty());
    CHECK_FALSE(ControlStream::overBacklog(kMaxControlBacklog));
    CHECK(ControlStream::overBacklog(kMaxControlBacklog + 1));
}
