// Benchmark: contact requests on loopback. Time from `add` to the request being visible at an
// online recipient, and from `accept` to `accepted` at the sender; p50/p95 over N runs, each
// with a new sender (a recipient takes at most 3 requests per sender per hour).
// Usage: bench_contacts [RUNS=20] [SETTLE_SECONDS=0]
#include "bench_stats.h"
#include "node/contacts/contacts.h"
#include "support/test_support.h"

#include <algorithm>
#include <cstdio>

using namespace parley;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using bench::ms;
bool waitFor(const std::function<bool()>& f, std::chrono::milliseconds budget) {
    return test::eventually(f, budget, std::chrono::milliseconds(1));
}
} // namespace

int main(int argc, char** argv) {
    int runs = argc > 1 ? std::atoi(argv[1]) : 20;
    // Seconds a new sender waits after joining before it sends (its routing table matures).
    auto settle = std::chrono::seconds(argc > 2 ? std::atoi(argv[2]) : 0);
    test::TestNetwork net(4);
    auto bId = test::makeIdentity("bob");
    auto b = net.start(bId);
    std::vector<double> toVisible, toAccepted;
    int failed = 0;
    for (int run = 0; run < runs; ++run) {
        auto aId = test::makeIdentity("alice" + std::to_string(run));
        auto a = net.start(aId);
        test::eventually([&] { return a.node->lookup(bId.contactId(), 3s).card.has_value(); }, 20s);
        if (settle.count() > 0)
            std::this_thread::sleep_for(settle);
        auto hex = aId.contactId().toHex();
        auto t0 = Clock::now();
        a.node->call([&] {
            return a.node->contacts()
                .add(bId.contactId(), "hello", "", [](const node::AddResult&) {})
                .ok();
        });
        bool seen = waitFor(
            [&] {
                auto r = b.node->call([&] { return b.node->contacts().requests(); });
                return std::any_of(r.begin(), r.end(),
                                   [&](auto& q) { return q.id == aId.contactId(); });
            },
            20s);
        auto t1 = Clock::now();
        if (!seen) {
            ++failed;
            continue;
        }
        toVisible.push_back(ms(t1 - t0));
        b.node->call([&] { return b.node->contacts().accept(aId.contactId()).ok(); });
        auto t2 = Clock::now();
        bool accepted = waitFor(
            [&] {
                auto cs = a.node->call([&] { return a.node->contacts().contacts(); });
                return !cs.empty() && cs[0].record.state == node::ContactState::accepted;
            },
            20s);
        if (!accepted) {
            ++failed;
            continue;
        }
        toAccepted.push_back(ms(Clock::now() - t2));
    }
    auto report = [](const char* what, std::vector<double> v) {
        if (v.empty()) {
            std::printf("  %s: no successful run\n", what);
            return;
        }
        std::printf("  %s: p50 %.1f ms  p95 %.1f ms  max %.1f ms  (%zu runs)\n", what,
                    bench::pct(v, 0.5), bench::pct(v, 0.95), bench::pct(v, 1), v.size());
    };
    std::printf("contact requests on loopback, 7-node network, %d runs (%d failed)\n", runs,
                failed);
    report("add -> request visible at the recipient", toVisible);
    report("accept -> accepted at the sender", toAccepted);
    return failed == 0 ? 0 : 1;
}
