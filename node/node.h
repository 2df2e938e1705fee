// Node: the composition root. One io_context thread owns all node state (DESIGN.md §2);
// the overlay, the control API and timers live on it. Other threads reach the node only
// through the blocking helpers below, which post onto that thread and wait.
#pragma once

#include "dht/contact_id.h"
#include "dht/identity.h"
#include "dht/overlay.h"
#include "node/chat/chat.h"
#include "node/link/links.h"
#include "node/transfer/transfers.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

namespace asio {
class io_context;
}

namespace parley::node {

class ContactManager;
class LinkManager;
class ChatManager;

struct NodeOptions {
    std::filesystem::path profileDir; // where control.sock and nodes.txt live
    dht::OverlayConfig overlay;
    bool controlSocket = true; // tests running many nodes in one process may turn it off
    bool publish = true;       // publish key card and presence
    // How often contacts' presence is re-checked (besides live DHT listens).
    std::chrono::seconds presencePoll{30};
    LinkOptions links;
    ChatOptions chat;
    TransferOptions transfers; // downloads: empty for ~/Downloads/parley
    // Ask the router for a UDP port mapping (NAT-PMP, then UPnP) when bound to every address.
    bool portMapping = true;
};

class Node {
public:
    Node(NodeOptions options, dht::Identity identity);
    ~Node();
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Binds the UDP port, joins the DHT, opens the control socket and starts the node's
    // thread. Throws std::runtime_error with a readable message.
    void start();
    // Graceful stop: offline presence (within `budget`), known nodes saved, sockets closed.
    // Blocks; call from any thread except the node's own. Idempotent.
    void stop(std::chrono::milliseconds budget = std::chrono::seconds(3));

    // Set by the control API's "shutdown" or requestStop(); the daemon waits for it.
    void requestStop();
    // Returns true when a stop was requested, false when `timeout` passed first.
    bool waitForStopRequest(std::chrono::milliseconds timeout);

    dht::ContactId id() const;
    std::uint16_t port() const;

    // Blocking helpers for tests and the daemon's main thread.
    dht::LookupResult lookup(const dht::ContactId& id, std::chrono::milliseconds timeout);
    nlohmann::json status(); // what `parley status --json` shows
    void bootstrap(const std::string& hostPort);

    // Runs `f` on the node's thread and returns its result.
    template <class F> auto call(F&& f) -> decltype(f()) {
        using R = decltype(f());
        auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
        auto future = task->get_future();
        post([task] { (*task)(); });
        return future.get();
    }
    // Only on the node's thread (inside call()); builds with PARLEY_THREAD_CHECKS abort otherwise.
    dht::Overlay& overlay();
    ContactManager& contacts();
    LinkManager& links();
    ChatManager& chat();
    TransferManager& transfers();
    // Blocking: sets up (or reuses) the direct link and pings over it (`parley ping`).
    PingResult ping(const dht::ContactId& id, int count, std::chrono::milliseconds interval,
                    std::chrono::milliseconds timeout);

private:
    void post(std::function<void()> f);

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace parley::node
