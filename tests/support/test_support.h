// Helpers for tests and benchmarks: temporary profiles, identities and loopback networks.
#pragma once

#include "dht/identity.h"
#include "node/node.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace parley::test {

// A fresh directory under $TMPDIR, removed again at scope exit.
struct TempDir {
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path path;
};

// A random non-zero OpenDHT network id, so that concurrent test runs never meet.
std::uint32_t randomNetworkId();

// RSA-2048 identities: fast enough for tests (DESIGN.md §3 allows it).
dht::Identity makeIdentity(const std::string& name);

// A node bound to 127.0.0.1 on an ephemeral port, no LAN discovery, no control socket.
struct TestNode {
    std::unique_ptr<TempDir> dir;
    std::unique_ptr<node::Node> node;
    std::string address() const { return "127.0.0.1:" + std::to_string(node->port()); }
};

// What a test node may have beyond the defaults.
struct TestNodeOptions {
    bool controlSocket = false;
    std::uint16_t port = 0; // 0: ephemeral; a fixed one for a restart in place
    node::LinkOptions links{};
};

// `dir`: reuse a profile directory (a restart); a new one otherwise.
TestNode startTestNode(const dht::Identity& identity, std::uint32_t network,
                       std::vector<std::string> bootstrap, bool controlSocket = false,
                       std::unique_ptr<TempDir> dir = nullptr);
TestNode startTestNode(const dht::Identity& identity, std::uint32_t network,
                       std::vector<std::string> bootstrap, const TestNodeOptions& options,
                       std::unique_ptr<TempDir> dir = nullptr);

// True once `n`'s DHT is connected, false after `timeout`.
bool waitDhtConnected(node::Node& n, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A loopback network on its own network id: a seed node that stays up (bootstrap and
// storage while others come and go) and `helpers` more nodes bootstrapped from it.
struct TestNetwork {
    explicit TestNetwork(int helpers = 0);
    std::uint32_t id;
    TestNode seed;
    std::vector<TestNode> helpers;
    // A node bootstrapped from the seed, returned once its DHT is connected; throws
    // std::runtime_error when that takes over 20 s. `dir`: a restart on that profile.
    TestNode start(const dht::Identity& who, std::unique_ptr<TempDir> dir = nullptr,
                   const TestNodeOptions& options = {});
};

// The state of `id` in n's contact list ("outgoing", "incoming", "accepted", ...) or "none".
std::string contactState(node::Node& n, const dht::ContactId& id);

// a finds b's card and asks, b accepts, a sees it accepted. False when a step takes over 20 s.
bool makeContacts(node::Node& a, const dht::ContactId& aId, node::Node& b,
                  const dht::ContactId& bId);
bool makeContacts(node::Node& a, const dht::Identity& aId, node::Node& b, const dht::Identity& bId);

// Polls `predicate` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(20));

} // namespace parley::test
