// The QUIC transport between in-process endpoints: datagrams travel through the io_context
// instead of sockets, so handshakes, pinning, streams, datagrams, resets and caps are tested
// on the real ngtcp2/GnuTLS stack without a network.
#include "dht/identity.h"
#include "dht/udp_endpoint.h"
#include "node/transport/quic.h"
#include "support/test_support.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <catch2/catch.hpp>
#include <map>

using namespace parley;
using node::quic::CloseCode;
using node::quic::ConnectionPtr;
using node::quic::Transport;
using node::quic::TransportConfig;

namespace {

const dht::Identity& identityA() {
    static auto id = test::makeIdentity("A");
    return id;
}
const dht::Identity& identityB() {
    static auto id = test::makeIdentity("B");
    return id;
}
const dht::Identity& identityC() {
    static auto id = test::makeIdentity("C");
    return id;
}

// A switchboard: every transport gets an address; datagrams are delivered asynchronously
// (posted), optionally dropped by a filter.
struct Net {
    asio::io_context io;
    std::map<std::string, Transport*> byAddress;
    std::function<bool(const dht::SocketAddress& from, const dht::SocketAddress& to)> drop;
    std::uint64_t delivered = 0;
    std::uint64_t sends = 0, datagrams = 0; // send calls, and the datagrams they carried
    std::size_t largestRun = 0;             // most datagrams in one send
    bool runsWellFormed = true; // what UdpEndpoint::sendOther can send in one system call

    std::unique_ptr<Transport> make(const dht::Identity& id, const std::string& address,
                                    std::uint8_t resetSeed = 1,
                                    std::function<void(TransportConfig&)> tweak = {}) {
        TransportConfig config;
        config.certificatePem = id.certificatePem();
        config.privateKeyPem = id.privateKeyPem("");
        config.resetSecret.fill(resetSeed);
        config.local4 = *dht::SocketAddress::parse(address);
        config.handshakeTimeout = std::chrono::seconds(3);
        if (tweak)
            tweak(config);
        auto from = *dht::SocketAddress::parse(address);
        auto t = std::make_unique<Transport>(
            io, config,
            [this, from](const dht::SocketAddress& to, std::span<const std::uint8_t> run,
                         std::size_t segmentSize) {
                ++sends;
                if (segmentSize == 0)
                    segmentSize = run.size();
                if (segmentSize > 1452 || run.size() > dht::UdpEndpoint::kMaxSegmentedBytes ||
                    (run.size() + segmentSize - 1) / segmentSize > dht::UdpEndpoint::kMaxSegments)
                    runsWellFormed = false;
                largestRun = std::max(largestRun, (run.size() + segmentSize - 1) / segmentSize);
                for (std::size_t offset = 0; offset < run.size(); offset += segmentSize) {
                    auto d = run.subspan(offset, std::min(segmentSize, run.size() - offset));
                    ++datagrams;
                    if (drop && drop(from, to))
                        continue;
                    std::vector<std::uint8_t> bytes(d.begin(), d.end());
                    asio::post(io, [this, from, to, bytes] {
                        auto it = byAddress.find(to.toString());
                        if (it == byAddress.end() ||
                            dht::classifyDatagram(bytes) != dht::DatagramKind::quic)
                            return; // nobody there, or a punch datagram (the endpoint drops it)
                        ++delivered;
                        it->second->receive(bytes, from);
                    });
                }
            });
        byAddress[address] = t.get();
        return t;
    }

    bool runUntil(const std::function<bool()>& done,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            io.restart();
            io.run_for(std::chrono::milliseconds(5));
        }
        return true;
    }
};

struct Dial {
    ConnectionPtr conn;
    std::string error;
    bool done = false;
};

std::shared_ptr<Dial> dial(Transport& t, const dht::ContactId& peer, const std::string& to) {
    auto d = std::make_shared<Dial>();
    t.dial(peer, *dht::SocketAddress::parse(to), [d](ConnectionPtr c, const std::string& e) {
        d->conn = c;
        d->error = e;
        d->done = true;
    });
    return d;
}

} // namespace

TEST_CASE("QUIC: mutual authentication, a stream and datagrams", "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto b = net.make(identityB(), "10.0.0.2:2000");
    std::vector<dht::ContactId> asked;
    b->setAuthorizer([&](const dht::ContactId& id) {
        asked.push_back(id);
        return id == identityA().contactId();
    });
    ConnectionPtr server;
    std::string received;
    std::vector<std::uint8_t> datagram;
    b->setAcceptHandler([&](ConnectionPtr c) {
        server = c;
        auto* conn = c.get(); // not the shared_ptr: a handler must not own its connection
        c->onStreamData = [&, conn](std::int64_t stream, std::span<const std::uint8_t> data, bool) {
            received.append(data.begin(), data.end());
            conn->write(stream, data); // echo
        };
        c->onDatagram = [&](std::span<const std::uint8_t> d) {
            datagram.assign(d.begin(), d.end());
        };
        c->start();
    });
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done && server; }));
    REQUIRE(d->conn);
    CHECK(d->conn->established());
    CHECK(d->conn->peer() == identityB().contactId());
    CHECK(server->peer() == identityA().contactId());
    CHECK(asked == std::vector<dht::ContactId>{identityA().contactId()});
    CHECK(a->self() == identityA().contactId());

    std::string echoed;
    d->conn->onStreamData = [&](std::int64_t, std::span<const std::uint8_t> data, bool) {
        echoed.append(data.begin(), data.end());
    };
    d->conn->start();
    auto stream = d->conn->openBidiStream();
    REQUIRE(stream >= 0);
    std::string big(300'000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<char>('a' + i % 26);
    d->conn->write(stream,
                   std::span(reinterpret_cast<const std::uint8_t*>(big.data()), big.size()));
    REQUIRE(net.runUntil([&] { return echoed.size() == big.size(); }));
    CHECK(received == big);
    CHECK(echoed == big);
    // Everything acknowledged: nothing left buffered.
    REQUIRE(net.runUntil([&] { return d->conn->buffered(stream) == 0; }));
    // Bulk data left in runs of same-sized packets (one system call each on a real socket),
    // each within what one segmented send may carry; the switchboard split them again.
    CHECK(net.runsWellFormed);
    CHECK(net.largestRun >= 16);
    CHECK(net.datagrams > 2 * net.sends);

    std::vector<std::uint8_t> dg = {1, 2, 3, 4, 5};
    REQUIRE(d->conn->maxDatagramSize() >= 1000);
    CHECK(d->conn->sendDatagram(dg));
    REQUIRE(net.runUntil([&] { return !datagram.empty(); }));
    CHECK(datagram == dg);
    std::vector<std::uint8_t> tooBig(d->conn->maxDatagramSize() + 1, 0);
    CHECK_FALSE(d->conn->sendDatagram(tooBig));
    CHECK(d->conn->stats().smoothedRtt.count() > 0);

    // An application close reaches the other side with its reason.
    std::string closedReason;
    auto closedBy = node::quic::ClosedBy::error;
    std::uint64_t peerCode = 99;
    server->onClosed = [&](const node::quic::CloseReason& r) {
        closedReason = r.text;
        closedBy = r.by;
        peerCode = r.peerCode;
    };
    d->conn->close(CloseCode::normal, "bye now");
    REQUIRE(net.runUntil([&] { return !closedReason.empty(); }));
    CHECK(closedReason.find("bye now") != std::string::npos);
    CHECK(closedBy == node::quic::ClosedBy::peer);
    CHECK(peerCode == static_cast<std::uint64_t>(CloseCode::normal));
    CHECK(d->conn->closed());
    CHECK(a->stats().connections == 0);
}

TEST_CASE("QUIC: a server with another key than the pinned one is refused", "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto c = net.make(identityC(), "10.0.0.3:3000"); // we think B is there; C answers
    bool accepted = false;
    c->setAuthorizer([](const dht::ContactId&) { return true; });
    c->setAcceptHandler([&](ConnectionPtr) { accepted = true; });
    auto d = dial(*a, identityB().contactId(), "10.0.0.3:3000");
    REQUIRE(net.runUntil([&] { return d->done; }));
    CHECK_FALSE(d->conn);
    CHECK(d->error.find("TLS") != std::string::npos);
    net.runUntil([] { return false; }, std::chrono::milliseconds(200));
    CHECK_FALSE(accepted);
}

TEST_CASE("QUIC: a client the server does not accept is refused", "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto b = net.make(identityB(), "10.0.0.2:2000");
    b->setAuthorizer([](const dht::ContactId&) { return false; }); // A is a stranger to B
    bool accepted = false;
    b->setAcceptHandler([&](ConnectionPtr) { accepted = true; });
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done; }));
    // The client may complete its side of the handshake before the server checked its
    // certificate (FACTS.md); it must never count as established.
    CHECK_FALSE(d->conn);
    net.runUntil([] { return false; }, std::chrono::milliseconds(200));
    CHECK_FALSE(accepted);
    CHECK(b->stats().handshakesRefused == 1);
    CHECK(b->stats().connections == 0);
}

TEST_CASE("QUIC: an authorizer that throws refuses the handshake, nothing unwinds through "
          "GnuTLS",
          "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto b = net.make(identityB(), "10.0.0.2:2000");
    bool fail = true;
    b->setAuthorizer([&](const dht::ContactId&) -> bool {
        if (fail)
            throw std::runtime_error("the database is locked");
        return true;
    });
    bool accepted = false;
    b->setAcceptHandler([&](ConnectionPtr) { accepted = true; });
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done; }));
    CHECK_FALSE(d->conn);
    net.runUntil([] { return false; }, std::chrono::milliseconds(200));
    CHECK_FALSE(accepted);
    // The transport is unharmed: the next handshake goes through.
    fail = false;
    auto again = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return again->done && accepted; }));
    CHECK(again->conn);
}

TEST_CASE("QUIC: a restarted server resets the old connection at once", "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto b = net.make(identityB(), "10.0.0.2:2000", 7);
    b->setAuthorizer([](const dht::ContactId&) { return true; });
    b->setAcceptHandler([](ConnectionPtr c) { c->start(); });
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done; }));
    REQUIRE(d->conn);
    std::string reason;
    auto closedBy = node::quic::ClosedBy::us;
    d->conn->onClosed = [&](const node::quic::CloseReason& r) {
        reason = r.text;
        closedBy = r.by;
    };
    // B crashes (its goodbye never leaves) and restarts: a new transport with the same
    // secret and no connections.
    net.drop = [](const dht::SocketAddress&, const dht::SocketAddress&) { return true; };
    net.byAddress.erase("10.0.0.2:2000");
    b.reset();
    net.drop = nullptr;
    auto b2 = net.make(identityB(), "10.0.0.2:2000", 7);
    auto stream = d->conn->openBidiStream();
    std::string hello = "anyone there?";
    d->conn->write(stream,
                   std::span(reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size()));
    REQUIRE(net.runUntil([&] { return !reason.empty(); }, std::chrono::seconds(3)));
    CHECK(reason.find("stateless reset") != std::string::npos);
    CHECK(closedBy == node::quic::ClosedBy::reset);
    CHECK(b2->stats().statelessResetsSent >= 1);
}

TEST_CASE("QUIC: handshakes that never finish are capped, expected peers still connect", "[quic]") {
    Net net;
    auto b = net.make(identityB(), "10.0.0.2:2000", 1, [](TransportConfig& c) {
        c.maxHandshakes = 8;
        c.maxHandshakesPerHost = 2;
    });
    b->setAuthorizer([](const dht::ContactId& id) { return id == identityA().contactId(); });
    int accepted = 0;
    b->setAcceptHandler([&](ConnectionPtr c) {
        ++accepted;
        c->start();
    });
    // 40 attackers on 20 hosts send Initials and never answer the server.
    std::vector<std::unique_ptr<Transport>> attackers;
    for (int i = 0; i < 40; ++i) {
        auto address = "10.9." + std::to_string(i / 2) + ".1:" + std::to_string(4000 + i);
        attackers.push_back(net.make(identityC(), address));
    }
    net.drop = [](const dht::SocketAddress& from, const dht::SocketAddress&) {
        return from.toString() == "10.0.0.2:2000"; // B's answers never arrive anywhere
    };
    for (auto& t : attackers)
        dial(*t, identityB().contactId(), "10.0.0.2:2000");
    net.runUntil([] { return false; }, std::chrono::milliseconds(300));
    auto st = b->stats();
    CHECK(st.handshakesInProgress == 8);
    CHECK(st.initialsDropped > 0);

    // A real contact from an unexpected address is shut out while the table is full...
    net.drop = [](const dht::SocketAddress& from, const dht::SocketAddress& to) {
        return from.toString() == "10.0.0.2:2000" && to.toString() != "10.0.0.1:1000";
    };
    auto a = net.make(identityA(), "10.0.0.1:1000");
    // ... but once B expects it (its address came in a connect envelope), it gets in.
    b->expect(*dht::SocketAddress::parse("10.0.0.1:1000"),
              std::chrono::steady_clock::now() + std::chrono::seconds(10));
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done; }));
    CHECK(d->conn);
    REQUIRE(net.runUntil([&] { return accepted == 1; }));
    // The attackers' handshakes time out (3 s here) and free their slots.
    REQUIRE(net.runUntil([&] { return b->stats().handshakesInProgress == 0; },
                         std::chrono::seconds(6)));
}

TEST_CASE("QUIC: datagrams that are not QUIC are ignored", "[quic]") {
    Net net;
    auto b = net.make(identityB(), "10.0.0.2:2000");
    auto from = *dht::SocketAddress::parse("10.0.0.5:5");
    // The empty datagram first: ngtcp2's decoder asserts on one (the process would abort).
    std::vector<std::vector<std::uint8_t>> junk = {{},
                                                   {0x40},
                                                   {0xc0, 0, 0, 0, 1},
                                                   std::vector<std::uint8_t>(1200, 0xc3),
                                                   std::vector<std::uint8_t>(60, 0x41),
                                                   std::vector<std::uint8_t>(2, 0xff)};
    for (const auto& j : junk)
        b->receive(j, from);
    CHECK(b->stats().packetsUnmatched >= 1);
    CHECK(b->stats().connections == 0);
    CHECK(b->stats().handshakesInProgress == 0);
}

TEST_CASE("QUIC: a receiver that does not consume stops the sender at the window", "[quic]") {
    Net net;
    auto a = net.make(identityA(), "10.0.0.1:1000");
    auto b = net.make(identityB(), "10.0.0.2:2000");
    b->setAuthorizer([](const dht::ContactId&) { return true; });
    ConnectionPtr server;
    std::size_t received = 0, largestPiece = 0;
    std::int64_t serverStream = -1;
    b->setAcceptHandler([&](ConnectionPtr c) {
        server = c;
        c->autoConsume = false; // like a transfer writing to a slow disk
        c->onStreamData = [&](std::int64_t stream, std::span<const std::uint8_t> data, bool) {
            received += data.size();
            largestPiece = std::max(largestPiece, data.size());
            serverStream = stream;
        };
        c->start();
    });
    auto d = dial(*a, identityB().contactId(), "10.0.0.2:2000");
    REQUIRE(net.runUntil([&] { return d->done && server; }));
    REQUIRE(d->conn);
    d->conn->start();
    auto stream = d->conn->openBidiStream();
    std::vector<std::uint8_t> chunk(1 << 20, 0x5a);
    const std::size_t total = 8 << 20; // 8 windows' worth
    for (std::size_t sent = 0; sent < total; sent += chunk.size())
        d->conn->write(stream, chunk);
    const std::size_t window = TransportConfig{}.streamWindow;
    // Nothing consumed: the sender stops at the window and the rest waits on its side.
    net.runUntil([] { return false; }, std::chrono::milliseconds(500));
    CHECK(received == window);
    CHECK(d->conn->buffered(stream) >= total - window);
    // Consuming lets the rest come, a window at a time.
    std::size_t consumed = 0;
    REQUIRE(net.runUntil(
        [&] {
            if (consumed < received) {
                server->consume(serverStream, received - consumed);
                consumed = received;
            }
            return received == total;
        },
        std::chrono::seconds(10)));
    CHECK(largestPiece <= 1 << 20);
}
