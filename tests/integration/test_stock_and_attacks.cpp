// Interoperation with a stock OpenDHT node, and the OpenDHT 2.4.12 remote-crash attack
// (FACTS.md): an unsigned value reusing a signed value's id at the same key.
#include "dht/overlay.h"
#include "dht/records.h"
#include "dht/udp_endpoint.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test = parley::test;
namespace pd = parley::dht;
namespace node = parley::node;
using namespace std::chrono_literals;
using State = pd::LookupResult::State;

namespace {

std::uint16_t freeUdpPort() {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// A stock `dhtnode` process, killed at scope exit.
struct StockNode {
    StockNode(std::uint16_t p, std::uint32_t network) : port(p) {
        pid = ::fork();
        if (pid == 0) {
            std::string portText = std::to_string(port), net = std::to_string(network);
            ::execlp("dhtnode", "dhtnode", "-s", "-p", portText.c_str(), "-n", net.c_str(),
                     static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    ~StockNode() {
        ::kill(pid, SIGTERM);
        int status = 0;
        if (!test::eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 5s))
            ::kill(pid, SIGKILL), ::waitpid(pid, &status, 0);
    }
    // dhtnode has bound its port (a bind of ours fails with EADDRINUSE): it is serving.
    bool listening() const {
        int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        bool inUse =
            ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == EADDRINUSE;
        ::close(fd);
        return inUse;
    }
    bool running() {
        int status = 0;
        return ::waitpid(pid, &status, WNOHANG) == 0;
    }
    pid_t pid;
    std::uint16_t port;
};

pd::LookupResult lookupUntil(node::Node& from, const pd::ContactId& id, State want,
                             std::chrono::milliseconds budget = 20s) {
    pd::LookupResult r;
    test::eventually(
        [&] {
            r = from.lookup(id, 3s);
            // Online is settled once the card (the name) is in as well.
            return r.state == want && (want != State::online || r.name);
        },
        budget, 100ms);
    return r;
}

} // namespace

TEST_CASE("nodes meet through a stock dhtnode as their only bootstrap") {
    auto network = test::randomNetworkId();
    StockNode stock(freeUdpPort(), network);
    REQUIRE(test::eventually([&] { return stock.listening() || !stock.running(); }, 10s));
    REQUIRE(stock.running());
    std::string bootstrap = "127.0.0.1:" + std::to_string(stock.port);
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = test::startTestNode(aId, network, {bootstrap});
    auto b = test::startTestNode(bId, network, {bootstrap});
    auto r = lookupUntil(*a.node, bId.contactId(), State::online);
    CHECK(r.state == State::online);
    CHECK(r.name == "bob");
    CHECK(lookupUntil(*b.node, aId.contactId(), State::online).state == State::online);
    CHECK(stock.running());
}

TEST_CASE("an unsigned value reusing a signed value's id does not crash a parley node") {
    auto network = test::randomNetworkId();
    auto aId = test::makeIdentity("alice");
    auto a = test::startTestNode(aId, network, {});
    auto b = test::startTestNode(test::makeIdentity("bob"), network, {a.address()});
    auto c = test::startTestNode(test::makeIdentity("carol"), network, {a.address()});
    REQUIRE(lookupUntil(*b.node, aId.contactId(), State::online).state == State::online);

    // The attacker runs in its own process (tests/integration/dht_attacker.cpp): a stock
    // OpenDHT node that announces unsigned values with the ids of Alice's signed records.
    std::string cmd = std::string(PARLEY_DHT_ATTACKER) + " " + std::to_string(network) + " " +
                      std::to_string(a.node->port());
    for (auto [kind, id, type] :
         {std::tuple{"presence", pd::kPresenceValueId, pd::kPresenceValueType},
          std::tuple{"card", pd::kCardValueId, pd::kCardValueType}})
        cmd += " " + pd::recordKeyHex(kind, aId.contactId()) + " " + std::to_string(id) + " " +
               std::to_string(type);
    REQUIRE(std::system(cmd.c_str()) == 0);

    // Every parley node is still alive, and Alice's records are intact.
    for (auto* n : {a.node.get(), b.node.get(), c.node.get()})
        CHECK(n->status()["dht"]["state"] == "connected");
    auto r = b.node->lookup(aId.contactId(), 5s);
    CHECK(r.state == State::online);
    CHECK(r.name == "alice");
    std::uint64_t dropped = 0;
    for (auto* n : {a.node.get(), b.node.get(), c.node.get()})
        dropped += n->call([n] { return n->overlay().endpoint().stats().droppedByFilter; });
    CHECK(dropped > 0);
}
