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

// `dir`: reuse a profile directory (a restart); a new one otherwise.
TestNode startTestNode(const dht::Identity& identity, std::uint32_t network,
                       std::vector<std::string> bootstrap, bool controlSocket = false,
                       std::unique_ptr<TempDir> dir = nullptr);

// Polls `predicate` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(20));

} // namespace parley::test
