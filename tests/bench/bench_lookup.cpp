// Benchmark: lookup latency of online contacts in a loopback network of N nodes.
// Prints p50/p95/max; never asserts on time. Usage: bench_lookup [NODES=20] [LOOKUPS=400]
#include "support/test_support.h"

#include <algorithm>
#include <cstdio>
#include <random>

using namespace parley;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    int count = argc > 1 ? std::atoi(argv[1]) : 20;
    int lookups = argc > 2 ? std::atoi(argv[2]) : 400;
    auto network = test::randomNetworkId();
    std::vector<dht::Identity> ids;
    std::vector<test::TestNode> nodes;
    for (int i = 0; i < count; ++i) {
        ids.push_back(test::makeIdentity("n" + std::to_string(i)));
        std::vector<std::string> bootstrap;
        if (i > 0)
            bootstrap.push_back(nodes[0].address());
        nodes.push_back(test::startTestNode(ids.back(), network, bootstrap));
    }
    // Let every node join and publish, and check that every record is reachable once.
    for (auto& n : nodes)
        test::eventually([&] { return n.node->status()["dht"]["state"] == "connected"; }, 30s);
    std::this_thread::sleep_for(2s);
    int warm = 0;
    for (int j = 0; j < count; ++j)
        if (nodes[(j + 1) % count].node->lookup(ids[j].contactId(), 5s).state ==
            dht::LookupResult::State::online)
            ++warm;

    std::mt19937 rng(42);
    std::vector<double> ms;
    int online = 0, offline = 0;
    for (int k = 0; k < lookups; ++k) {
        int from = static_cast<int>(rng() % static_cast<unsigned>(count));
        int to = static_cast<int>(rng() % static_cast<unsigned>(count - 1));
        if (to >= from)
            ++to;
        auto start = std::chrono::steady_clock::now();
        auto r = nodes[static_cast<std::size_t>(from)].node->lookup(
            ids[static_cast<std::size_t>(to)].contactId(), 5s);
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count());
        if (r.state == dht::LookupResult::State::online)
            ++online;
        else if (r.state == dht::LookupResult::State::offline)
            ++offline;
    }
    std::sort(ms.begin(), ms.end());
    auto pct = [&](double p) {
        return ms[static_cast<std::size_t>(p * static_cast<double>(ms.size() - 1))];
    };
    std::printf(
        "lookup of an online node, %d nodes on loopback, %d lookups (warm-up: %d/%d found)\n",
        count, lookups, warm, count);
    std::printf(
        "  online: %d/%d (offline %d, not-found %d)  p50 %.2f ms  p95 %.2f ms  max %.2f ms\n",
        online, lookups, offline, lookups - online - offline, pct(0.50), pct(0.95), ms.back());
    return 0;
}
