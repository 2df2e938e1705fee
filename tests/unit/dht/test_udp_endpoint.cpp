// The shared UDP socket: first-byte demultiplexing, on a real loopback socket.
#include "dht/udp_endpoint.h"
#include "support/test_support.h"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <mutex>
#include <thread>

using namespace parley::dht;

TEST_CASE("datagrams are classified by their first byte") {
    auto kind = [](std::uint8_t b) { return classifyDatagram(std::vector<std::uint8_t>{b, 0}); };
    CHECK(classifyDatagram({}) == DatagramKind::unknown);
    for (int b = 0x80; b <= 0x8f; ++b)
        CHECK(kind(static_cast<std::uint8_t>(b)) == DatagramKind::dht);
    CHECK(kind(0x40) == DatagramKind::quic); // short header
    CHECK(kind(0xc3) == DatagramKind::quic); // long header (Initial)
    CHECK(kind(0x7f) == DatagramKind::quic);
    CHECK(kind(0x00) == DatagramKind::unknown);
    CHECK(kind(0x3f) == DatagramKind::unknown);
    CHECK(kind(0x90) == DatagramKind::unknown); // msgpack array: not OpenDHT
    CHECK(kind(0xa0) == DatagramKind::unknown);
    // Greased QUIC (fixed bit cleared, RFC 9287): a v1 long header is told by its version...
    std::vector<std::uint8_t> greasedLong = {0x89, 0x00, 0x00, 0x00, 0x01, 0x10};
    CHECK(classifyDatagram(greasedLong) == DatagramKind::quic);
    // ... while a msgpack map from OpenDHT has a string key in its second byte.
    std::vector<std::uint8_t> dhtMap = {0x85, 0xa1, 0x61, 0x81, 0xa2};
    CHECK(classifyDatagram(dhtMap) == DatagramKind::dht);
    // A greased short header is long enough to carry our connection id; a punch is not.
    CHECK(classifyDatagram(std::vector<std::uint8_t>(kMinGreasedShortHeader, 0x21)) ==
          DatagramKind::quic);
    CHECK(classifyDatagram(std::vector<std::uint8_t>(8, 0x00)) == DatagramKind::unknown);
}

TEST_CASE("the endpoint hands each kind to its handler and drops the rest") {
    UdpEndpoint a("127.0.0.1", 0), b("127.0.0.1", 0);
    CHECK(a.port() != 0);
    CHECK(a.boundToLoopback());
    std::mutex m;
    std::vector<std::vector<std::uint8_t>> dht, other;
    std::vector<std::uint16_t> dhtFrom; // checked on this thread: Catch2 is not thread-safe
    b.setDhtHandler([&](std::span<const std::uint8_t> d, const SocketAddress& from) {
        std::lock_guard lock(m);
        dhtFrom.push_back(from.port());
        dht.emplace_back(d.begin(), d.end());
    });
    b.setOtherHandler([&](std::span<const std::uint8_t> d, std::size_t, const SocketAddress&) {
        std::lock_guard lock(m);
        other.emplace_back(d.begin(), d.end());
    });
    b.start();
    auto to = *SocketAddress::parse("127.0.0.1", b.port());
    std::vector<std::uint8_t> ping = {0x80}; // an empty msgpack map: harmless to the filter
    std::vector<std::uint8_t> quic = {0xc0, 1, 2, 3};
    std::vector<std::uint8_t> junk = {0x01, 2, 3};
    REQUIRE(a.sendDht(to, ping) == 0);
    REQUIRE(a.sendOther(to, quic) == 0);
    REQUIRE(a.sendOther(to, junk) == 0);
    REQUIRE(parley::test::eventually(
        [&] {
            std::lock_guard lock(m);
            return dht.size() == 1 && other.size() == 1 && b.stats().droppedUnknown == 1;
        },
        std::chrono::seconds(5)));
    b.stop();
    CHECK(other[0] == quic);
    CHECK(dht[0] == ping);
    CHECK(dhtFrom == std::vector<std::uint16_t>{a.port()});
}

// Sends one segmented buffer holding, in 4-byte datagrams: two QUIC-looking ones, a DHT one,
// an unknown one, and two QUIC ones more (the last shorter). The receiver must see the four
// QUIC datagrams intact and in order whether the kernel segments the send (GSO) or not, and
// whether it hands them over one by one or coalesced (GRO) with the others among them.
void checkSegmentedSend(bool senderOffload, bool receiverOffload) {
    UdpEndpoint a("127.0.0.1", 0), b("127.0.0.1", 0);
    a.setSegmentationOffload(senderOffload);
    b.setSegmentationOffload(receiverOffload);
    std::mutex m;
    std::vector<std::vector<std::uint8_t>> quic;
    std::size_t runs = 0;
    // Checked on this thread afterwards: Catch2's assertions are not thread-safe.
    bool fromRight = true, segmentsNamed = true;
    b.setOtherHandler(
        [&](std::span<const std::uint8_t> run, std::size_t segment, const SocketAddress& from) {
            std::lock_guard lock(m);
            fromRight = fromRight && from.port() == a.port();
            segmentsNamed = segmentsNamed && segment > 0;
            if (segment == 0)
                return;
            ++runs;
            for (std::size_t offset = 0; offset < run.size(); offset += segment) {
                auto d = run.subspan(offset, std::min(segment, run.size() - offset));
                quic.emplace_back(d.begin(), d.end());
            }
        });
    b.start();
    std::vector<std::uint8_t> buffer = {0xc0, 1, 1, 1, 0x41, 2, 2, 2, 0x80, 3, 3, 3,
                                        0x01, 4, 4, 4, 0xc0, 5, 5, 5, 0x41, 6, 6};
    auto to = *SocketAddress::parse("127.0.0.1", b.port());
    REQUIRE(a.sendOther(to, buffer, 4) == 0);
    auto stats = a.stats();
    CHECK(stats.otherOut == 6);
    CHECK(stats.otherSendCalls == (a.segmentationOffload() ? 1 : 6));
    REQUIRE(parley::test::eventually(
        [&] {
            std::lock_guard lock(m);
            auto s = b.stats();
            return quic.size() == 4 && s.droppedUnknown == 1 && s.dhtIn + s.droppedByFilter == 1;
        },
        std::chrono::seconds(5)));
    std::vector<std::vector<std::uint8_t>> expected = {
        {0xc0, 1, 1, 1}, {0x41, 2, 2, 2}, {0xc0, 5, 5, 5}, {0x41, 6, 6}};
    b.stop();
    CHECK(fromRight);
    CHECK(segmentsNamed);
    CHECK(quic == expected);
    CHECK(b.stats().otherIn == 4);
    // A run larger than one segmented send may carry goes out one datagram per call.
    std::vector<std::uint8_t> tooMany((UdpEndpoint::kMaxSegments + 1) * 4, 0xc0);
    auto before = a.stats();
    REQUIRE(a.sendOther(to, tooMany, 4) == 0);
    auto after = a.stats();
    CHECK(after.otherOut - before.otherOut == UdpEndpoint::kMaxSegments + 1);
    CHECK(after.otherSendCalls - before.otherSendCalls == UdpEndpoint::kMaxSegments + 1);
}

TEST_CASE("a segmented send arrives as the datagrams it holds, GSO and GRO on or off") {
    SECTION("both on") {
        checkSegmentedSend(true, true);
    }
    SECTION("sender only") {
        checkSegmentedSend(true, false);
    }
    SECTION("receiver only") {
        checkSegmentedSend(false, true);
    }
    SECTION("both off") {
        checkSegmentedSend(false, false);
    }
}

TEST_CASE("an endpoint can receive on an io_context's thread") {
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    std::thread::id ioThread;
    std::thread runner([&] {
        ioThread = std::this_thread::get_id();
        io.run();
    });
    UdpEndpoint a("127.0.0.1", 0), b("127.0.0.1", 0);
    std::atomic<int> received{0}, offThread{0};
    b.setOtherHandler(
        [&](std::span<const std::uint8_t> run, std::size_t segment, const SocketAddress&) {
            if (std::this_thread::get_id() != ioThread)
                ++offThread;
            received += static_cast<int>((run.size() + segment - 1) / segment);
        });
    b.setSegmentationOffload(false); // one receive per datagram
    b.start(io);
    CHECK(b.receivesOnIo());
    // More datagrams than one turn reads (256): the rest must still come, without new ones
    // arriving to wake the reader up.
    auto to = *SocketAddress::parse("127.0.0.1", b.port());
    std::vector<std::uint8_t> quic = {0xc0, 1, 2, 3};
    a.setSegmentationOffload(false);
    std::promise<void> held;
    asio::post(io, [&] { held.get_future().wait(); }); // the io thread is busy meanwhile
    for (int i = 0; i < 700; ++i)
        REQUIRE(a.sendOther(to, quic) == 0);
    held.set_value();
    REQUIRE(parley::test::eventually([&] { return received == 700; }, std::chrono::seconds(5)));
    CHECK(offThread == 0);
    std::promise<void> stopped;
    asio::post(io, [&] {
        b.stop();
        stopped.set_value();
    });
    stopped.get_future().wait();
    CHECK_FALSE(b.receivesOnIo());
    REQUIRE(a.sendOther(to, quic) == 0); // nobody reads now
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(received == 700);
    work.reset();
    io.stop();
    runner.join();
}

TEST_CASE("binding a port in use fails with a readable error") {
    UdpEndpoint a("127.0.0.1", 0);
    try {
        UdpEndpoint b("127.0.0.1", a.port());
        FAIL("second bind succeeded");
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).find("cannot bind") != std::string::npos);
    }
    CHECK_THROWS_AS(UdpEndpoint("not-an-address", 0), std::system_error);
}

TEST_CASE("socket addresses parse and print") {
    auto v4 = SocketAddress::parse("127.0.0.1:4222");
    REQUIRE(v4);
    CHECK(v4->port() == 4222);
    CHECK(v4->isLoopback());
    CHECK(v4->toString() == "127.0.0.1:4222");
    auto v6 = SocketAddress::parse("[::1]:5");
    REQUIRE(v6);
    CHECK(v6->toString() == "[::1]:5");
    CHECK(v6->isLoopback());
    CHECK(SocketAddress::parse("::1", 7)->port() == 7);
    CHECK(SocketAddress::parse("0.0.0.0")->isUnspecified());
    CHECK_FALSE(SocketAddress::parse("1.2.3.4:99999"));
    CHECK_FALSE(SocketAddress::parse("example.org:1"));
    CHECK(splitHostPort("bootstrap.jami.net:4222")->first == "bootstrap.jami.net");
    CHECK_FALSE(splitHostPort("host"));
    CHECK_FALSE(splitHostPort("::1"));
}
