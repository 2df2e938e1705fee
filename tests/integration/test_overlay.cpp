// Real nodes on 127.0.0.1 with a random network id: lookups, forgery, restarts, shutdown.
#include "dht/overlay.h"
#include "dht/udp_endpoint.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>

using namespace parley;
using namespace std::chrono_literals;
using State = dht::LookupResult::State;

namespace {

// Lookups right after start may race the first publication: retry a few times.
dht::LookupResult lookupUntil(node::Node& from, const dht::ContactId& id, State want,
                              std::chrono::milliseconds budget = 20s) {
    dht::LookupResult r;
    auto deadline = std::chrono::steady_clock::now() + budget;
    do {
        r = from.lookup(id, 3s);
        // Online is settled once the card (the name) is in as well.
        if (r.state == want && (want != State::online || r.name))
            return r;
        std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return r;
}

bool waitConnected(node::Node& n, std::chrono::milliseconds budget = 20s) {
    return test::eventually([&] { return n.status()["dht"]["state"] == "connected"; }, budget);
}

} // namespace

TEST_CASE("ten nodes find every other node by key hash") {
    auto network = test::randomNetworkId();
    std::vector<dht::Identity> ids;
    std::vector<test::TestNode> nodes;
    for (int i = 0; i < 10; ++i) {
        ids.push_back(test::makeIdentity("node-" + std::to_string(i)));
        std::vector<std::string> bootstrap;
        if (i > 0)
            bootstrap.push_back(nodes[0].address());
        nodes.push_back(test::startTestNode(ids.back(), network, bootstrap));
    }
    for (auto& n : nodes)
        REQUIRE(waitConnected(*n.node));
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        for (std::size_t j = 0; j < nodes.size(); ++j) {
            if (i == j)
                continue;
            auto r = lookupUntil(*nodes[i].node, ids[j].contactId(), State::online);
            INFO("node " << i << " looking up node " << j);
            CHECK(r.state == State::online);
            CHECK(r.name == "node-" + std::to_string(j));
            CHECK(r.lastSeenMs.has_value());
        }
    }
}

TEST_CASE("a contact id that never existed is not-found within the timeout") {
    auto network = test::randomNetworkId();
    auto a = test::startTestNode(test::makeIdentity("a"), network, {});
    auto b = test::startTestNode(test::makeIdentity("b"), network, {a.address()});
    REQUIRE(waitConnected(*b.node));
    dht::ContactId::Bytes bytes{};
    bytes.fill(0x42);
    auto start = std::chrono::steady_clock::now();
    auto r = b.node->lookup(dht::ContactId(bytes), 3s);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.state == State::notFound);
    CHECK_FALSE(r.name);
    CHECK_FALSE(r.lastSeenMs);
    CHECK(took < 4s);
}

TEST_CASE("a graceful stop shows offline at once, with the name still known") {
    auto network = test::randomNetworkId();
    auto a = test::startTestNode(test::makeIdentity("a"), network, {});
    auto bId = test::makeIdentity("bob");
    auto b = test::startTestNode(bId, network, {a.address()});
    auto c = test::startTestNode(test::makeIdentity("c"), network, {a.address()});
    REQUIRE(waitConnected(*c.node));
    REQUIRE(lookupUntil(*a.node, bId.contactId(), State::online).state == State::online);
    b.node->stop();
    auto r = a.node->lookup(bId.contactId(), 5s);
    CHECK(r.state == State::offline);
    CHECK(r.name == "bob");
    CHECK(r.status == dht::PresenceStatus::offline);
}

TEST_CASE("presence published under someone else's key is ignored") {
    auto network = test::randomNetworkId();
    auto a = test::startTestNode(test::makeIdentity("a"), network, {});
    auto mallory = test::startTestNode(test::makeIdentity("mallory"), network, {a.address()});
    auto c = test::startTestNode(test::makeIdentity("c"), network, {a.address()});
    REQUIRE(waitConnected(*mallory.node));
    auto victim = test::makeIdentity("victim"); // never runs
    dht::Presence fake{dht::PresenceStatus::online,
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count(),
                       1};
    mallory.node->call([&] {
        mallory.node->overlay().publishRawPresenceAs(victim.contactId(), dht::encodePresence(fake));
        return 0;
    });
    // The forged record is in the DHT: c sees it and drops it.
    bool sawForgery = test::eventually(
        [&] {
            auto r = c.node->lookup(victim.contactId(), 2s);
            CHECK(r.state == State::notFound);
            return c.node->call([&] { return c.node->overlay().counters().recordsWrongOwner; }) > 0;
        },
        20s, 200ms);
    CHECK(sawForgery);
}

TEST_CASE("a restarted node rejoins from its saved nodes without a bootstrap") {
    auto network = test::randomNetworkId();
    auto a = test::startTestNode(test::makeIdentity("a"), network, {});
    auto bId = test::makeIdentity("b");
    auto b = test::startTestNode(bId, network, {a.address()});
    auto rId = test::makeIdentity("r");
    auto r = test::startTestNode(rId, network, {a.address()});
    REQUIRE(waitConnected(*r.node));
    REQUIRE(lookupUntil(*r.node, bId.contactId(), State::online).state == State::online);
    r.node->stop();
    r.node.reset();
    REQUIRE(std::filesystem::exists(r.dir->path / "nodes.txt"));
    auto again = test::startTestNode(rId, network, {}, false, std::move(r.dir));
    REQUIRE(waitConnected(*again.node));
    CHECK(lookupUntil(*again.node, bId.contactId(), State::online).state == State::online);
    CHECK(lookupUntil(*b.node, rId.contactId(), State::online).state == State::online);
}
