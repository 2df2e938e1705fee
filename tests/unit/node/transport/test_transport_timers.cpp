// The QUIC transport on virtual time: two Transports exchange datagrams through an in-memory
// network with a fixed latency, and a ManualClock is the only time they see (ngtcp2's
// timestamps and the transport's timers). Timeouts fire at their virtual deadline, not before,
// and a test of a 30 s timeout takes milliseconds.
#include "dht/clock.h"
#include "dht/identity.h"
#include "dht/udp_endpoint.h"
#include "node/transport/quic.h"

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <deque>
#include <map>

using namespace parley;
using namespace std::chrono_literals;
using node::quic::ConnectionPtr;
using node::quic::Transport;
using node::quic::TransportConfig;
using TimePoint = dht::Clock::TimePoint;

namespace {

const dht::Identity& identity(int which) {
    static auto a = dht::Identity::generate("A", 2048);
    static auto b = dht::Identity::generate("B", 2048);
    return which == 0 ? a : b;
}

struct VirtualNet {
    asio::io_context io;
    dht::ManualClock clock;
    dht::SeededRandom random{42};
    dht::Clock::Duration latency = 5ms;
    bool cut = false; // every datagram is lost
    struct InFlight {
        TimePoint at;
        dht::SocketAddress from, to;
        std::vector<std::uint8_t> bytes;
    };
    std::deque<InFlight> inFlight; // one latency for all: ordered by arrival
    std::map<std::string, Transport*> byAddress;
    std::map<std::string, TimePoint> lastReceived, lastSent; // by address

    VirtualNet() { clock.advance(1h); } // away from ngtcp2's timestamp 0

    std::unique_ptr<Transport> make(int who, const std::string& address) {
        TransportConfig config;
        config.certificatePem = identity(who).certificatePem();
        config.privateKeyPem = identity(who).privateKeyPem("");
        config.resetSecret.fill(static_cast<std::uint8_t>(who + 1));
        config.local4 = *dht::SocketAddress::parse(address);
        config.handshakeTimeout = 10s;
        config.idleTimeout = 30s;
        config.keepAlive = 1h; // no PINGs: the idle timeout is what ends a silent connection
        config.clock = &clock;
        config.random = &random;
        auto from = *dht::SocketAddress::parse(address);
        auto t = std::make_unique<Transport>(
            io, config,
            [this, from](const dht::SocketAddress& to, std::span<const std::uint8_t> run,
                         std::size_t segment) {
                if (segment == 0)
                    segment = run.size();
                lastSent[from.toString()] = clock.now();
                for (std::size_t at = 0; at < run.size(); at += segment) {
                    auto d = run.subspan(at, std::min(segment, run.size() - at));
                    if (!cut)
                        inFlight.push_back({clock.now() + latency, from, to, {d.begin(), d.end()}});
                }
            });
        byAddress[address] = t.get();
        return t;
    }

    void poll() {
        io.restart();
        io.poll();
    }

    // Everything due at the clock's present: arrivals, then posted handlers, then timers.
    void step() {
        while (!inFlight.empty() && inFlight.front().at <= clock.now()) {
            auto d = std::move(inFlight.front());
            inFlight.pop_front();
            if (auto it = byAddress.find(d.to.toString());
                it != byAddress.end() &&
                dht::classifyDatagram(d.bytes) == dht::DatagramKind::quic) {
                lastReceived[d.to.toString()] = clock.now();
                it->second->receive(d.bytes, d.from);
            }
        }
        for (auto& [address, t] : byAddress)
            t->endOfBurst();
        poll();
        for (auto& [address, t] : byAddress)
            t->handleTimers();
        poll();
    }

    std::optional<TimePoint> next() const {
        std::optional<TimePoint> n;
        if (!inFlight.empty())
            n = inFlight.front().at;
        for (const auto& [address, t] : byAddress)
            if (auto d = t->nextDeadline(); d && (!n || *d < *n))
                n = d;
        return n;
    }

    // Runs virtual time forward, event by event, until `done` or the clock would pass `limit`.
    bool runUntil(const std::function<bool()>& done, TimePoint limit) {
        for (int events = 0; events < 100'000; ++events) {
            step();
            if (done())
                return true;
            auto n = next();
            if (!n || *n > limit) {
                clock.advanceTo(limit);
                step();
                return done();
            }
            clock.advanceTo(*n);
        }
        FAIL("virtual time did not settle");
        return false;
    }
};

struct Dial {
    ConnectionPtr conn;
    std::string error;
    bool done = false;
};

std::shared_ptr<Dial> dial(Transport& t, int peer, const std::string& to) {
    auto d = std::make_shared<Dial>();
    t.dial(identity(peer).contactId(), *dht::SocketAddress::parse(to),
           [d](ConnectionPtr c, const std::string& e) {
               d->conn = std::move(c);
               d->error = e;
               d->done = true;
           });
    return d;
}

} // namespace

TEST_CASE("transport timers: a handshake nobody answers times out at the virtual deadline",
          "[transport][timers]") {
    VirtualNet net;
    auto a = net.make(0, "10.0.0.1:1000");
    auto start = net.clock.now();
    auto d = dial(*a, 1, "10.0.0.9:9"); // nobody there: the Initials are lost
    // Retransmissions come and go; one millisecond before the deadline the dial still waits.
    CHECK_FALSE(net.runUntil([&] { return d->done; }, start + 10s - 1ms));
    CHECK(a->stats().connections == 1);
    REQUIRE(net.runUntil([&] { return d->done; }, start + 11s));
    CHECK_FALSE(d->conn);
    CHECK(d->error == "handshake timed out");
    CHECK(net.clock.now() == start + 10s);
    CHECK(a->stats().connections == 0);
    CHECK(a->stats().connectionsFailed == 1);
}

TEST_CASE("transport timers: a silent connection ends at the idle timeout, not before",
          "[transport][timers]") {
    VirtualNet net;
    auto a = net.make(0, "10.0.0.1:1000");
    auto b = net.make(1, "10.0.0.2:2000");
    b->setAuthorizer([](const dht::ContactId& id) { return id == identity(0).contactId(); });
    ConnectionPtr server;
    b->setAcceptHandler([&](ConnectionPtr c) {
        server = c;
        c->start();
    });
    auto d = dial(*a, 1, "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done && server; }, net.clock.now() + 1s));
    REQUIRE(d->conn);
    // The handshake took virtual round trips of 2 x 5 ms.
    CHECK(d->conn->stats().smoothedRtt >= 10ms);
    CHECK(d->conn->stats().smoothedRtt < 20ms);
    d->conn->start();
    node::quic::CloseReason reason;
    bool closed = false;
    d->conn->onClosed = [&](const node::quic::CloseReason& r) {
        reason = r;
        closed = true;
    };
    // Let the acknowledgements settle, then the network goes dark.
    net.runUntil([] { return false; }, net.clock.now() + 1s);
    net.cut = true;
    auto heard = net.lastReceived["10.0.0.1:1000"];
    auto spoke = std::max(heard, net.lastSent["10.0.0.1:1000"]);
    CHECK_FALSE(net.runUntil([&] { return closed; }, heard + 30s - 1ms));
    CHECK(d->conn->established());
    REQUIRE(net.runUntil([&] { return closed; }, spoke + 31s));
    CHECK(reason.by == node::quic::ClosedBy::timeout);
    CHECK(net.clock.now() >= heard + 30s);
    CHECK(net.clock.now() <= spoke + 30s);
}
