// Test helpers.
#include "test_support.h"

#include "node/contacts/contacts.h"

#include <cstdlib>
#include <future>
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
    return startTestNode(identity, network, std::move(bootstrap),
                         TestNodeOptions{.controlSocket = controlSocket}, std::move(dir));
}

TestNode startTestNode(const dht::Identity& identity, std::uint32_t network,
                       std::vector<std::string> bootstrap, const TestNodeOptions& testOptions,
                       std::unique_ptr<TempDir> dir) {
    applyTestLogLevel();
    TestNode t;
    t.dir = dir ? std::move(dir) : std::make_unique<TempDir>();
    node::NodeOptions options;
    options.profileDir = t.dir->path;
    options.controlSocket = testOptions.controlSocket;
    options.links = testOptions.links;
    options.overlay.bindAddress = "127.0.0.1";
    options.overlay.port = testOptions.port;
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

bool waitDhtConnected(node::Node& n, std::chrono::milliseconds timeout) {
    return eventually([&] { return n.status()["dht"]["state"] == "connected"; }, timeout,
                      std::chrono::milliseconds(1));
}

TestNetwork::TestNetwork(int helperCount)
    : id(randomNetworkId()), seed(startTestNode(makeIdentity("seed"), id, {})) {
    for (int i = 0; i < helperCount; ++i)
        helpers.push_back(startTestNode(makeIdentity("helper"), id, {seed.address()}));
}

TestNode TestNetwork::start(const dht::Identity& who, std::unique_ptr<TempDir> dir,
                            const TestNodeOptions& options) {
    auto t = startTestNode(who, id, {seed.address()}, options, std::move(dir));
    if (!waitDhtConnected(*t.node))
        throw std::runtime_error("test node " + who.name() + ": DHT not connected after 20 s");
    return t;
}

std::string contactState(node::Node& n, const dht::ContactId& id) {
    auto list = n.call([&] { return n.contacts().contacts(); });
    for (const auto& c : list)
        if (c.record.id == id)
            return std::string(node::toString(c.record.state));
    return "none";
}

bool makeContacts(node::Node& a, const dht::ContactId& aId, node::Node& b,
                  const dht::ContactId& bId) {
    using namespace std::chrono_literals;
    if (!eventually([&] { return a.lookup(bId, 3s).card.has_value(); }, 20s))
        return false;
    auto added = std::make_shared<std::promise<void>>();
    auto future = added->get_future();
    a.call([&] {
        return a.contacts()
            .add(bId, "let us talk", "", [added](const node::AddResult&) { added->set_value(); })
            .ok();
    });
    if (future.wait_for(20s) != std::future_status::ready)
        return false;
    if (!eventually([&] { return contactState(b, aId) == "incoming"; }, 20s, 2ms))
        return false;
    if (!b.call([&] { return b.contacts().accept(aId).ok(); }))
        return false;
    return eventually([&] { return contactState(a, bId) == "accepted"; }, 20s, 2ms);
}

bool makeContacts(node::Node& a, const dht::Identity& aId, node::Node& b,
                  const dht::Identity& bId) {
    return makeContacts(a, aId.contactId(), b, bId.contactId());
}

} // namespace parley::test
