// The base pieces of dht/: hex, the clocks, the random generators, the thread owner, and
// SocketAddress equality.
#include "dht/clock.h"
#include "dht/hex.h"
#include "dht/socket_address.h"
#include "dht/thread_owner.h"
#include "dht/timer_set.h"

#include <array>
#include <catch2/catch.hpp>
#include <set>
#include <thread>
#include <unordered_set>

using namespace parley::dht;

TEST_CASE("hex round trips and refuses what is not hex", "[base]") {
    std::array<std::uint8_t, 4> bytes{0x00, 0x9f, 0xa0, 0xff};
    CHECK(toHex(bytes) == "009fa0ff");
    std::array<std::uint8_t, 4> back{};
    REQUIRE(parseHex("009FA0ff", back));
    CHECK(back == bytes);
    CHECK_FALSE(parseHex("009fa0f", back));    // odd length
    CHECK_FALSE(parseHex("009fa0ff00", back)); // too long for the buffer
    CHECK_FALSE(parseHex("009fa0fg", back));   // not a digit
    CHECK_FALSE(parseHex("009fa0f ", back));
    CHECK(toHex({}).empty());
    std::array<std::uint8_t, 0> none{};
    CHECK(parseHex("", none));
}

TEST_CASE("ManualClock moves only when told, never backwards", "[base]") {
    ManualClock clock(1'000);
    auto start = clock.now();
    CHECK(clock.unixMs() == 1'000);
    clock.advance(std::chrono::milliseconds(250));
    CHECK(clock.now() - start == std::chrono::milliseconds(250));
    CHECK(clock.unixMs() == 1'250);
    clock.advanceTo(start + std::chrono::milliseconds(100)); // in the past: no-op
    CHECK(clock.unixMs() == 1'250);
    clock.advanceTo(start + std::chrono::seconds(2));
    CHECK(clock.unixMs() == 3'000);
}

TEST_CASE("SystemClock's wall clock is the Unix time", "[base]") {
    auto a = unixMs();
    auto b = SystemClock::instance().unixMs();
    CHECK(b >= a);
    CHECK(b - a < 60'000);
    CHECK(a > 1'600'000'000'000); // after 2020
}

TEST_CASE("SeededRandom is deterministic per seed, and below() stays in range", "[base]") {
    SeededRandom a(42), b(42), c(43);
    std::array<std::uint8_t, 37> x{}, y{}, z{};
    a.fill(x);
    b.fill(y);
    c.fill(z);
    CHECK(x == y);
    CHECK(x != z);
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 1000; ++i) {
        auto v = a.below(7);
        REQUIRE(v < 7);
        seen.insert(v);
    }
    CHECK(seen.size() == 7);
    CHECK(a.below(1) == 0);
    CHECK(a.below(0) == 0);
}

TEST_CASE("SystemRandom fills with bytes that differ between calls", "[base]") {
    std::array<std::uint8_t, 32> x{}, y{};
    SystemRandom::instance().fill(x);
    SystemRandom::instance().fill(y);
    CHECK(x != y);
}

TEST_CASE("ThreadOwner knows its owner", "[base]") {
    ThreadOwner owner;
    CHECK(owner.isOwner()); // unbound: set-up may run anywhere
    owner.bindToCurrentThread();
    CHECK(owner.isOwner());
    bool other = true;
    std::thread([&] { other = owner.isOwner(); }).join();
    CHECK_FALSE(other);
    owner.release();
    std::thread([&] { other = owner.isOwner(); }).join();
    CHECK(other);
}

TEST_CASE("SocketAddress compares and hashes address bytes and port, not text", "[base]") {
    auto a = *SocketAddress::parse("192.0.2.1:4000");
    auto same = *SocketAddress::parse("192.0.2.1:4000");
    CHECK(a == same);
    CHECK(std::hash<SocketAddress>{}(a) == std::hash<SocketAddress>{}(same));
    CHECK_FALSE(a == *SocketAddress::parse("192.0.2.1:4001"));
    CHECK_FALSE(a == *SocketAddress::parse("192.0.2.2:4000"));
    CHECK_FALSE(a == *SocketAddress::parse("[::ffff:192.0.2.1]:4000")); // another family
    auto v6 = *SocketAddress::parse("[2001:db8::1]:5");
    CHECK(v6 == *SocketAddress::parse("[2001:DB8:0::1]:5")); // other spelling, same bytes
    CHECK_FALSE(v6 == *SocketAddress::parse("[2001:db8::2]:5"));
    CHECK(SocketAddress() == SocketAddress());
    CHECK_FALSE(SocketAddress() == a);
    std::unordered_set<SocketAddress> set{a, same, v6};
    CHECK(set.size() == 2);
}

TEST_CASE("TimerSet runs what is due and cancels the rest at once", "[base]") {
    asio::io_context io;
    TimerSet timers(io);
    int fired = 0;
    timers.after(std::chrono::milliseconds(1), [&] { ++fired; });
    timers.after(std::chrono::hours(1), [&] { fired += 100; });
    CHECK(timers.pending() == 2);
    while (fired == 0)
        io.run_one();
    CHECK(fired == 1);
    CHECK(timers.pending() == 1);
    timers.cancelAll();
    CHECK(timers.pending() == 0);
    io.run(); // returns: the hour-long timer no longer holds the loop
    CHECK(fired == 1);
}
