// Test helpers.
#include "test_support.h"

#include <cstdlib>
#include <random>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace parley::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
    static std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        auto candidate = fs::temp_directory_path() / ("parley-test-" + std::to_string(rd()));
        std::error_code ec;
        if (fs::create_directory(candidate, ec)) {
            fs::permissions(candidate, fs::perms::owner_all, ec);
            path = candidate;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

std::uint32_t randomNetworkId() {
    static std::random_device rd;
    std::uint32_t id = 0;
    while (id == 0)
        id = rd();
    return id;
}

dht::Identity makeIdentity(const std::string& name) {
    return dht::Identity::generate(name, 2048);
}

// PARLEY_TEST_LOG=debug (or trace, info, ...) shows the nodes' logs while a test runs.
static void applyTestLogLevel() {
    static bool done = false;
    if (done)
        return;
    done = true;
    if (const char* level = std::getenv("PARLEY_TEST_LOG"))
        spdlog::set_level(spdlog::level::from_str(level));
}

TestNode startTestNode(const dht::Identity& identity, std::uint32_t network,
                       std::vector<std::string> bootstrap, bool controlSocket,
                       std::unique_ptr<TempDir> dir) {
    applyTestLogLevel();
    TestNode t;
    t.dir = dir ? std::move(dir) : std::make_unique<TempDir>();
    node::NodeOptions options;
    options.profileDir = t.dir->path;
    options.controlSocket = controlSocket;
    options.overlay.bindAddress = "127.0.0.1";
    options.overlay.port = 0;
    options.overlay.network = network;
    options.overlay.bootstrap = std::move(bootstrap);
    options.overlay.lanDiscovery = false;
    options.overlay.publicBootstrap = false;
    options.overlay.nodesFile = (t.dir->path / "nodes.txt").string();
    options.overlay.name = identity.name();
    options.presencePoll = std::chrono::seconds(2); // tests wait for presence changes
    t.node = std::make_unique<node::Node>(options, identity);
    t.node->start();
    return t;
}

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (predicate())
            return true;
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(step);
    }
}

} // namespace parley::test
