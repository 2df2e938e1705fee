// LinkCore on a virtual clock: hello deadlines, simultaneous dials, reconnect backoff,
// goodbye, idle close, attempt expiry and stop.
#include "node/link/link_core.h"

#include <catch2/catch.hpp>

using namespace parley;
using namespace parley::node;
using namespace parley::node::link;
using namespace std::chrono_literals;

namespace {

dht::ContactId idWith(std::uint8_t first) {
    dht::ContactId::Bytes bytes{};
    bytes[0] = first;
    return dht::ContactId(bytes);
}

const dht::ContactId kLow = idWith(1);  // the client of the pair
const dht::ContactId kHigh = idWith(2); // the server

dht::SocketAddress addr(const char* s) {
    return *dht::SocketAddress::parse(s);
}

// One core with everything it asked for so far.
struct Side {
    explicit Side(const dht::ContactId& self, LinkOptions options = {})
        : core(self, options, random, [this](const dht::ContactId&) { return accepted; }) {}
    dht::SeededRandom random{7};
    bool accepted = true;
    LinkCore core;
    std::vector<Action> log;

    std::vector<Action> take() {
        std::vector<Action> out;
        while (auto a = core.nextAction()) {
            out.push_back(*a);
            log.push_back(*a);
        }
        return out;
    }
    template <class T> std::vector<T> taken() {
        std::vector<T> out;
        for (auto& a : take())
            if (auto* t = std::get_if<T>(&a))
                out.push_back(*t);
        return out;
    }
    template <class T> static std::vector<T> only(const std::vector<Action>& actions) {
        std::vector<T> out;
        for (const auto& a : actions)
            if (auto* t = std::get_if<T>(&a))
                out.push_back(*t);
        return out;
    }
};

// Brings a link up between `client` (as kLow) and kHigh on connection `conn`.
void linkUp(Side& client, ConnId conn, TimePoint now) {
    client.core.onDialed(conn, kHigh, addr("127.0.0.1:4000"), now);
    client.core.onHello(conn, now);
}

} // namespace

TEST_CASE("link core: a hello that never comes closes the connection at helloTimeout") {
    LinkOptions o;
    o.helloTimeout = 5000ms;
    Side server(kHigh, o);
    TimePoint t0{};
    server.core.onAccepted(10, kLow, addr("127.0.0.1:5000"), t0);
    auto start = server.taken<act::StartConnection>();
    REQUIRE(start.size() == 1);
    CHECK_FALSE(start[0].client);
    REQUIRE(server.core.nextDeadline() == t0 + 5000ms);

    server.core.tick(t0 + 4999ms);
    CHECK(Side::only<act::Close>(server.take()).empty());
    CHECK_FALSE(server.core.activeLink(kLow));

    server.core.tick(t0 + 5000ms);
    auto closes = server.taken<act::Close>();
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].conn == 10);
    CHECK(closes[0].code == CloseCode::protocol);
    CHECK(closes[0].reason == "no hello within the deadline");
    CHECK(server.core.counts().at("protocol_errors") == 1);
    server.core.onClosed(10, ClosedBy::us, "no hello", t0 + 5001ms);
    CHECK(server.taken<act::LinkDown>().empty()); // it never was the link
    CHECK_FALSE(server.core.nextDeadline());
}

TEST_CASE("link core: both sides dialling at once end with one link both keep") {
    Side client(kLow), server(kHigh);
    TimePoint t0{};
    auto wc = client.core.connect(kHigh, 10s, t0);
    auto ws = server.core.connect(kLow, 10s, t0);
    CHECK(client.taken<act::SendRequest>().size() == 1);
    CHECK(server.taken<act::SendRequest>().size() == 1);
    // Each gets the other's request: the client dials, the server punches.
    client.core.onConnectEnvelope(kHigh, false, {}, {addr("127.0.0.1:4000"), addr("10.0.0.2:4000")},
                                  t0 + 10ms);
    CHECK(client.taken<act::Dial>().size() == 2);
    server.core.onConnectEnvelope(kLow, false, {}, {addr("127.0.0.1:5000")}, t0 + 10ms);
    CHECK(server.taken<act::Punch>().size() == 1);

    // Both paths confirm at the client: the first is set up, the second waits on standby.
    client.core.onDialed(1, kHigh, addr("127.0.0.1:4000"), t0 + 20ms);
    client.core.onDialed(2, kHigh, addr("10.0.0.2:4000"), t0 + 21ms);
    auto started = client.taken<act::StartConnection>();
    REQUIRE(started.size() == 1);
    CHECK(started[0].conn == 1);
    CHECK(started[0].client);
    // The server accepts both handshakes; only the one that says hello becomes the link.
    server.core.onAccepted(101, kLow, addr("127.0.0.1:5000"), t0 + 20ms);
    server.core.onAccepted(102, kLow, addr("127.0.0.1:5001"), t0 + 21ms);
    server.take();
    server.core.onHello(101, t0 + 25ms);
    auto sa = server.take();
    REQUIRE(Side::only<act::LinkUp>(sa).size() == 1);
    CHECK(Side::only<act::LinkUp>(sa)[0].conn == 101);
    auto sdone = Side::only<act::WaiterDone>(sa);
    REQUIRE(sdone.size() == 1);
    CHECK(sdone[0].waiter == ws);
    CHECK(sdone[0].ok);

    client.core.onHello(1, t0 + 30ms); // the server's answer
    auto ca = client.take();
    REQUIRE(Side::only<act::LinkUp>(ca).size() == 1);
    auto ccloses = Side::only<act::Close>(ca);
    REQUIRE(ccloses.size() == 1); // the standby path
    CHECK(ccloses[0].conn == 2);
    CHECK(ccloses[0].code == CloseCode::replaced);
    auto cdone = Side::only<act::WaiterDone>(ca);
    REQUIRE(cdone.size() == 1);
    CHECK(cdone[0].waiter == wc);
    CHECK(cdone[0].ok);
    CHECK(cdone[0].conn == 1);
    CHECK(cdone[0].setupMs == Approx(30.0));

    // The server's other connection never says hello and goes at its deadline; the link stays.
    server.core.tick(t0 + 21ms + 5000ms); // accepted at 21 ms
    auto sc = server.taken<act::Close>();
    REQUIRE(sc.size() == 1);
    CHECK(sc[0].conn == 102);
    server.core.onClosed(102, ClosedBy::us, "no hello", t0 + 5100ms);
    client.core.onClosed(2, ClosedBy::us, "another path won", t0 + 40ms);
    CHECK(server.taken<act::LinkDown>().empty());
    CHECK(client.taken<act::LinkDown>().empty());
    CHECK(client.core.activeLink(kHigh) == 1);
    CHECK(server.core.activeLink(kLow) == 101);
}

TEST_CASE("link core: a standby path takes over when the first never says hello") {
    Side client(kLow);
    TimePoint t0{};
    client.core.connect(kHigh, 30s, t0);
    client.core.onDialed(1, kHigh, addr("127.0.0.1:4000"), t0);
    client.core.onDialed(2, kHigh, addr("10.0.0.2:4000"), t0);
    client.take();
    client.core.tick(t0 + 5000ms);
    CHECK(client.taken<act::Close>().size() == 1);
    client.core.onClosed(1, ClosedBy::us, "no hello", t0 + 5001ms);
    auto started = client.taken<act::StartConnection>();
    REQUIRE(started.size() == 1);
    CHECK(started[0].conn == 2);
    CHECK(client.core.counts().at("standby_promoted") == 1);
}

TEST_CASE("link core: a lost link reconnects with exponential backoff capped at reconnectMax") {
    LinkOptions o;
    o.reconnectMax = 3000ms;
    o.attemptLifetime = 100ms; // each reconnect attempt fails fast
    Side client(kLow, o);
    TimePoint t = TimePoint{} + 1h;
    linkUp(client, 1, t);
    client.take();
    client.core.onClosed(1, ClosedBy::other, "idle timeout", t);
    auto down = client.taken<act::LinkDown>();
    REQUIRE(down.size() == 1);
    CHECK(down[0].reconnect);
    CHECK_FALSE(down[0].goodbye);

    // 500, 1000, 2000, then 3000 (the cap), 3000...
    for (auto delay : {500ms, 1000ms, 2000ms, 3000ms, 3000ms}) {
        REQUIRE(client.core.nextDeadline() == t + delay);
        client.core.tick(t + delay - 1ms);
        CHECK(client.taken<act::SendRequest>().empty());
        t += delay;
        client.core.tick(t);
        auto a = client.take();
        CHECK(Side::only<act::SendRequest>(a).size() == 1);
        // The last address is dialled at once.
        auto dials = Side::only<act::Dial>(a);
        REQUIRE(dials.size() == 1);
        CHECK(dials[0].to.toString() == "127.0.0.1:4000");
        REQUIRE(client.core.nextDeadline() == t + 100ms);
        t += 100ms;
        client.core.tick(t); // the attempt expires: the next reconnect is scheduled
        CHECK(Side::only<act::WaiterDone>(client.take()).empty()); // nobody else waited
    }
    CHECK(client.core.counts().at("reconnects") == 5);
}

TEST_CASE("link core: a reconnect stops after a dozen failed attempts") {
    LinkOptions o;
    o.reconnectMax = 1000ms;
    o.attemptLifetime = 10ms;
    Side client(kLow, o);
    TimePoint t{};
    linkUp(client, 1, t);
    client.core.onClosed(1, ClosedBy::other, "lost", t);
    int attempts = 0;
    while (auto next = client.core.nextDeadline()) {
        client.core.tick(*next);
        attempts += static_cast<int>(client.taken<act::SendRequest>().size());
        REQUIRE(attempts <= 20);
    }
    CHECK(attempts == 12);
}

TEST_CASE("link core: a goodbye means no reconnect, also during a reconnect") {
    Side client(kLow);
    TimePoint t{};
    linkUp(client, 1, t);
    client.take();

    SECTION("goodbye on the link") {
        client.core.onGoodbye(1);
        auto closes = client.taken<act::Close>();
        REQUIRE(closes.size() == 1);
        CHECK(closes[0].reason == "goodbye");
        client.core.onClosed(1, ClosedBy::us, "goodbye", t + 1ms);
        auto down = client.taken<act::LinkDown>();
        REQUIRE(down.size() == 1);
        CHECK(down[0].goodbye);
        CHECK_FALSE(down[0].reconnect);
        CHECK_FALSE(client.core.nextDeadline());
    }
    SECTION("goodbye on the new link while reconnecting") {
        client.core.onClosed(1, ClosedBy::other, "lost", t);
        t += 500ms;
        client.core.tick(t);
        CHECK(client.taken<act::SendRequest>().size() == 1);
        linkUp(client, 2, t + 10ms);
        client.take();
        client.core.onGoodbye(2);
        client.core.onClosed(2, ClosedBy::us, "goodbye", t + 20ms);
        auto down = client.taken<act::LinkDown>();
        REQUIRE(down.size() == 1);
        CHECK(down[0].goodbye);
        CHECK_FALSE(down[0].reconnect);
        // Nothing left to do: no reconnect, no attempt.
        CHECK_FALSE(client.core.nextDeadline());
    }
    SECTION("the peer closes the link itself") {
        client.core.onClosed(1, ClosedBy::peer, "shutting down", t);
        CHECK_FALSE(client.taken<act::LinkDown>().at(0).reconnect);
        CHECK_FALSE(client.core.nextDeadline());
    }
}

TEST_CASE("link core: an unused link closes after idleClose, a used one does not") {
    LinkOptions o;
    o.idleClose = 1000ms; // checked every 250 ms
    Side client(kLow, o);
    TimePoint t{};
    linkUp(client, 1, t);
    client.take();
    REQUIRE(client.core.nextDeadline() == t + 250ms);
    client.core.onUsed(1, t + 600ms);
    for (auto at : {250ms, 500ms, 750ms, 1000ms, 1250ms, 1500ms}) {
        client.core.tick(t + at);
        CHECK(client.taken<act::Close>().empty());
    }
    client.core.tick(t + 1750ms); // 1150 ms since the last use
    auto closes = client.taken<act::Close>();
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].reason == "idle");
    CHECK(client.core.counts().at("idle_closes") == 1);
    client.core.onClosed(1, ClosedBy::us, "idle", t + 1751ms);
    CHECK_FALSE(client.taken<act::LinkDown>().at(0).reconnect);
    CHECK_FALSE(client.core.nextDeadline()); // no reconnect, ever

    // The other side sees the peer close it on purpose: it does not reconnect either.
    Side server(kHigh, o);
    server.core.onAccepted(7, kLow, addr("127.0.0.1:5000"), t);
    server.core.onHello(7, t);
    server.take();
    server.core.onClosed(7, ClosedBy::peer, "idle", t + 1751ms);
    auto down = server.taken<act::LinkDown>();
    REQUIRE(down.size() == 1);
    CHECK_FALSE(down[0].reconnect);
    CHECK_FALSE(server.core.nextDeadline());
    CHECK_FALSE(server.core.counts().count("reconnects"));
}

TEST_CASE("link core: an outstanding ping keeps a link open") {
    LinkOptions o;
    o.idleClose = 1000ms;
    Side client(kLow, o);
    TimePoint t{};
    linkUp(client, 1, t);
    client.take();
    client.core.onPingStarted(1);
    client.core.tick(t + 1000ms);
    client.core.tick(t + 1250ms);
    CHECK(client.taken<act::Close>().empty());
    client.core.onPingFinished(1);
    client.core.tick(t + 1500ms);
    CHECK(client.taken<act::Close>().size() == 1);
}

TEST_CASE("link core: an attempt that gets nowhere fails its waiters at attemptLifetime") {
    LinkOptions o;
    o.attemptLifetime = 30'000ms;
    Side server(kHigh, o);
    TimePoint t0{};
    auto w1 = server.core.connect(kLow, 60s, t0);
    auto w2 = server.core.connect(kLow, 10s, t0 + 1s);
    CHECK(server.taken<act::SendRequest>().size() == 1); // one attempt for both
    server.core.tick(t0 + 11s - 1ms);
    CHECK(server.take().empty());
    server.core.tick(t0 + 11s);
    auto early = server.taken<act::WaiterDone>();
    REQUIRE(early.size() == 1);
    CHECK(early[0].waiter == w2);
    CHECK(early[0].error.find("timed out") == 0);
    server.core.tick(t0 + 30'000ms - 1ms);
    CHECK(server.take().empty());
    server.core.tick(t0 + 30'000ms);
    auto done = server.taken<act::WaiterDone>();
    REQUIRE(done.size() == 1);
    CHECK(done[0].waiter == w1);
    CHECK_FALSE(done[0].ok);
    CHECK(done[0].error.find("no direct connection could be set up") == 0);
    CHECK_FALSE(server.core.nextDeadline());
}

TEST_CASE("link core: the punch schedule is punchCount punches punchInterval apart") {
    LinkOptions o;
    o.punchCount = 3;
    o.punchInterval = 100ms;
    Side server(kHigh, o);
    TimePoint t{};
    server.core.onConnectEnvelope(kLow, false, {}, {addr("127.0.0.1:5000")}, t);
    int punches = static_cast<int>(server.taken<act::Punch>().size());
    for (auto at : {99ms, 100ms, 200ms, 300ms, 400ms}) {
        server.core.tick(t + at);
        punches += static_cast<int>(server.taken<act::Punch>().size());
    }
    CHECK(punches == 3);
}

TEST_CASE("link core: an answer to another request is unmatched") {
    Side client(kLow);
    TimePoint t{};
    client.core.connect(kHigh, 10s, t);
    auto req = client.taken<act::SendRequest>().at(0);
    auto other = req.id;
    other[0] ^= 1;
    CHECK_FALSE(client.core.onConnectEnvelope(kHigh, true, other, {addr("127.0.0.1:4000")}, t));
    CHECK(client.taken<act::Dial>().empty());
    CHECK(client.core.onConnectEnvelope(kHigh, true, req.id, {addr("127.0.0.1:4000")}, t));
    CHECK(client.taken<act::Dial>().size() == 1);
}

TEST_CASE("link core: stop fails the waiters, says goodbye and cancels every deadline") {
    Side client(kLow);
    TimePoint t{};
    linkUp(client, 1, t);
    auto w = client.core.connect(idWith(9), 10s, t);
    client.core.onDialed(5, idWith(9), addr("127.0.0.1:4009"), t); // pending, no hello
    client.core.onClosed(1, ClosedBy::other, "lost", t);           // a reconnect is scheduled
    linkUp(client, 2, t + 1ms);
    client.take();
    REQUIRE(client.core.nextDeadline());
    client.core.stop();
    auto a = client.take();
    auto done = Side::only<act::WaiterDone>(a);
    REQUIRE(done.size() == 1);
    CHECK(done[0].waiter == w);
    CHECK(done[0].error == "the node is stopping");
    auto bye = Side::only<act::SendGoodbye>(a);
    REQUIRE(bye.size() == 1);
    CHECK(bye[0].conn == 2);
    CHECK_FALSE(client.core.nextDeadline());
    client.core.onClosed(2, ClosedBy::other, "stopping", t + 2ms);
    CHECK_FALSE(client.taken<act::LinkDown>().at(0).reconnect);
    client.core.onDialed(6, kHigh, addr("127.0.0.1:4000"), t + 3ms);
    auto late = client.taken<act::Close>();
    REQUIRE(late.size() == 1);
    CHECK(late[0].reason == "stopping");
}
