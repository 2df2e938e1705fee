#include "media/simulated_link.h"

#include <catch2/catch.hpp>

using namespace parley::media;

namespace {
std::vector<int> runLink(LinkConfig c, int packets) {
    SimulatedLink link(c);
    std::vector<int> got;
    for (int i = 0; i < packets; ++i) {
        link.send(Bytes{std::uint8_t(i), std::uint8_t(i >> 8)}, Micros(i) * 1000);
        for (auto& b : link.receive(Micros(i) * 1000))
            got.push_back(b[0] | b[1] << 8);
    }
    for (auto& b : link.receive(1000000000))
        got.push_back(b[0] | b[1] << 8);
    return got;
}
} // namespace

TEST_CASE("the simulated link is deterministic and loses what it is told to", "[link]") {
    LinkConfig c;
    c.lossRate = 0.1;
    c.seed = 42;
    auto a = runLink(c, 10000);
    auto b = runLink(c, 10000);
    REQUIRE(a == b);
    REQUIRE(a.size() > 8800);
    REQUIRE(a.size() < 9200);
    c.seed = 43;
    REQUIRE(runLink(c, 10000) != a);
}

TEST_CASE("burst loss comes in runs, delay, jitter, reordering and duplication", "[link]") {
    LinkConfig c;
    c.burstEnter = 0.02;
    c.burstExit = 0.2;
    auto got = runLink(c, 20000);
    // Mean bad run 5 packets, entered every ~50: ~9% lost, in runs.
    REQUIRE(got.size() < 19000);
    int runs = 0;
    for (std::size_t i = 1; i < got.size(); ++i)
        runs += got[i] - got[i - 1] > 1 ? 1 : 0;
    REQUIRE(double(20000 - got.size()) / runs > 3.0);

    LinkConfig d;
    d.delay = 50000;
    d.jitter = 10000;
    d.duplicateRate = 0.05;
    d.reorderRate = 0.05;
    SimulatedLink link(d);
    link.send(Bytes{1}, 0);
    REQUIRE(link.receive(49999).empty());
    REQUIRE(link.nextDeadline() >= 50000);
    auto all = runLink(d, 1000);
    REQUIRE(all.size() > 1020);
    REQUIRE_FALSE(std::is_sorted(all.begin(), all.end()));
}

TEST_CASE("a bandwidth cap queues packets and drops when the queue is full", "[link]") {
    LinkConfig c;
    c.bandwidthBps = 8000 * 100; // 100 packets of 1000 bytes per second
    c.maxQueueDelay = 100000;
    SimulatedLink link(c);
    for (int i = 0; i < 50; ++i)
        link.send(Bytes(1000), 0);
    REQUIRE(link.stats().queueDrops > 35);
    auto first = link.receive(10000);
    REQUIRE(first.size() == 1);
    REQUIRE(link.receive(1000000).size() + 1 == 50 - link.stats().queueDrops);
}
