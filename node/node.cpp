// Node: wiring of overlay, control API, events and the node thread.
#include "node/node.h"

#include "dht/hex.h"
#include "dht/thread_owner.h"
#include "dht/udp_endpoint.h"
#include "node/api/chat_methods.h"
#include "node/api/contact_methods.h"
#include "node/api/control_server.h"
#include "node/api/link_methods.h"
#include "node/api/node_methods.h"
#include "node/api/transfer_methods.h"
#include "node/chat/chat.h"
#include "node/contacts/contacts.h"
#include "node/link/contact_directory.h"
#include "node/link/links.h"
#include "node/store/store.h"
#include "node/transfer/transfers.h"
#include "node/transport/portmap.h"
#include "node/transport/quic.h"
#include "node/transport/quic_inbox.h"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <gnutls/crypto.h>
#include <mutex>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <thread>
#include <unistd.h>

namespace parley::node {

namespace {

// The contacts room seen through the narrow interface that the link and chat rooms use.
class ContactsDirectory final : public ContactDirectory {
public:
    explicit ContactsDirectory(ContactManager& contacts) : contacts_(contacts) {}
    bool isAccepted(const dht::ContactId& id) const override { return contacts_.isAccepted(id); }
    std::optional<bool> online(const dht::ContactId& id) const override {
        return contacts_.online(id);
    }
    void sendNow(const dht::Envelope& envelope, std::function<void(bool ok)> done) override {
        contacts_.sendNow(envelope, std::move(done));
    }

private:
    ContactManager& contacts_;
};

} // namespace

struct Node::Impl {
    // The node's io thread, once it runs; Node::overlay() and friends check it.
    dht::ThreadOwner owner;
    NodeOptions options;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::unique_ptr<dht::Overlay> overlay;
    std::unique_ptr<Store> store;
    std::unique_ptr<ContactManager> contacts;
    std::unique_ptr<ContactsDirectory> directory;
    std::unique_ptr<quic::Transport> transport;
    std::unique_ptr<LinkManager> links;
    std::unique_ptr<ChatManager> chat;
    std::unique_ptr<TransferManager> transfers;
    std::unique_ptr<PortMapper> portMapper;
    std::shared_ptr<quic::DatagramInbox> quicInbox;
    std::unique_ptr<ControlServer> control;
    asio::steady_timer stateTimer{io};
    std::string lastDhtState;
    std::thread thread;
    std::chrono::steady_clock::time_point startedAt;
    dht::ContactId id;
    std::uint16_t port = 0;
    bool started = false;
    std::atomic<bool> stopped{false}; // read by other threads in stop() and call()

    std::mutex stopMutex;
    std::condition_variable stopCv;
    bool stopRequested = false;

    void startTransport();
    void broadcast(const nlohmann::json& event) {
        if (control)
            control->broadcast(event);
    }
    void watchDhtState();
    api::NodeStatus gatherStatus();
};

api::NodeStatus Node::Impl::gatherStatus() {
    api::NodeStatus s;
    s.id = id;
    s.name = overlay->identity().name();
    s.version = PARLEY_VERSION;
    s.pid = ::getpid();
    s.profile = options.profileDir.string();
    s.uptimeS = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                 startedAt)
                    .count();
    s.dht = overlay->status();
    s.records = overlay->counters();
    if (links) {
        s.links = links->status();
        s.linkCounters = links->counters();
    }
    if (chat)
        s.chatCounters = chat->counters();
    if (transfers)
        s.transferCounters = transfers->counters();
    if (portMapper)
        s.portmap = portMapper->status();
    return s;
}

void Node::Impl::watchDhtState() {
    stateTimer.expires_after(std::chrono::milliseconds(500));
    stateTimer.async_wait([this](const std::error_code& ec) {
        if (ec || stopped)
            return;
        auto st = overlay->status();
        if (st.state != lastDhtState) {
            spdlog::info("DHT {} ({} nodes)", st.state, st.nodes);
            lastDhtState = st.state;
            broadcast(api::dhtStateEvent(st));
        }
        watchDhtState();
    });
}

// The QUIC transport shares the DHT's UDP port (DESIGN.md §5).
void Node::Impl::startTransport() {
    auto& identity = overlay->identity();
    auto& endpoint = overlay->endpoint();
    quic::TransportConfig config;
    config.certificatePem = identity.certificatePem();
    config.privateKeyPem = identity.privateKeyPem("");
    // Stable across restarts, secret to everyone else: derived from the private key.
    auto material = config.privateKeyPem + "\nparley/quic-stateless-reset/1";
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, material.data(), material.size(),
                         config.resetSecret.data()) != 0)
        throw std::runtime_error("SHA-256 unavailable in GnuTLS");
    std::fill(material.begin(), material.end(), '\0');
    if (const char* keyLog = std::getenv("SSLKEYLOGFILE"); keyLog && *keyLog)
        config.keyLogFile = keyLog;
    auto local = [&](bool v6) {
        auto a = v6 ? endpoint.bound6() : endpoint.bound4();
        return a;
    };
    config.local4 = local(false);
    config.local6 = local(true);
    transport = std::make_unique<quic::Transport>(
        io, std::move(config),
        [&endpoint](const dht::SocketAddress& to, std::span<const std::uint8_t> bytes,
                    std::size_t segmentSize) { endpoint.sendOther(to, bytes, segmentSize); });
    quicInbox = std::make_shared<quic::DatagramInbox>(
        io,
        [this](std::span<const std::uint8_t> bytes, const dht::SocketAddress& from) {
            if (transport && !stopped)
                transport->receive(bytes, from);
        },
        [this] {
            if (transport && !stopped)
                transport->endOfBurst();
        });
    endpoint.setOtherHandler([inbox = quicInbox](std::span<const std::uint8_t> run,
                                                 std::size_t segmentSize,
                                                 const dht::SocketAddress& from) {
        inbox->push(run, segmentSize, from);
    });
    links = std::make_unique<LinkManager>(
        io, *transport, *directory, *overlay, id,
        [this](const LinkEvent& event) { broadcast(api::toJson(event)); }, options.links);
    // Only a node on every address asks its router (never one bound to loopback or to one
    // address: the mapping would point at the address that reaches the gateway).
    if (options.portMapping && !endpoint.boundToLoopback() && endpoint.bound4().isUnspecified()) {
        portMapper = std::make_unique<PortMapper>(io, endpoint.port());
        portMapper->start();
        links->setMappedEndpoints([this] {
            return portMapper ? portMapper->mappedEndpoints() : std::vector<std::string>{};
        });
    }
    chat = std::make_unique<ChatManager>(
        io, *store, *links, *directory, id,
        [this](const ChatEvent& event) { broadcast(api::toJson(event)); }, options.chat);
    if (!options.transfers.enabled)
        return;
    auto transferOptions = options.transfers;
    if (transferOptions.downloads.empty()) {
        const char* home = std::getenv("HOME");
        if (home && *home)
            transferOptions.downloads = std::filesystem::path(home) / "Downloads" / "parley";
    }
    transfers = std::make_unique<TransferManager>(
        io, *links, *directory, options.profileDir,
        [this](const TransferEvent& event) { broadcast(api::toJson(event)); }, transferOptions);
}

Node::Node(NodeOptions options, dht::Identity identity) : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    impl_->id = identity.contactId();
    // The node's io thread reads the socket itself: one thread wake-up per burst of datagrams
    // instead of two (docs/PERFORMANCE.md).
    impl_->options.overlay.receiveOnIoThread = true;
    impl_->overlay =
        std::make_unique<dht::Overlay>(impl_->io, std::move(identity), impl_->options.overlay);
}

Node::~Node() {
    try {
        stop(std::chrono::milliseconds(500));
    } catch (const std::exception& e) {
        spdlog::error("error while stopping the node: {}", e.what());
    }
}

void Node::start() {
    auto& s = *impl_;
    if (s.started)
        return;
    s.startedAt = std::chrono::steady_clock::now();
    try {
        s.store = std::make_unique<Store>(s.options.profileDir / "parley.db");
    } catch (const StoreError& e) {
        throw std::runtime_error(e.what());
    }
    s.overlay->start(); // on this thread: the io thread does not run yet
    s.port = s.overlay->status().port;
    s.contacts = std::make_unique<ContactManager>(
        s.io, *s.overlay, *s.store, s.id, s.overlay->identity().name(),
        [&s](const ContactEvent& event) { s.broadcast(api::toJson(event)); },
        ContactLimits{.presenceSweep = s.options.presencePoll});
    s.directory = std::make_unique<ContactsDirectory>(*s.contacts);
    s.startTransport();
    // Envelopes that the contacts room accepted go to the room that handles their kind.
    s.contacts->setConnectHandler([&s](const dht::Envelope& e) { s.links->onConnectEnvelope(e); });
    s.contacts->setChatHandler([&s](const dht::Envelope& e) { s.chat->onEnvelope(e); });
    if (s.options.controlSocket) {
        s.control = std::make_unique<ControlServer>(s.io, s.options.profileDir / "control.sock");
        api::registerNodeMethods(
            *s.control, *s.overlay, [&s] { return s.gatherStatus(); }, [this] { requestStop(); });
        api::registerContactMethods(*s.control, *s.contacts);
        api::registerLinkMethods(*s.control, *s.links);
        api::registerChatMethods(*s.control, *s.chat);
        if (s.transfers)
            api::registerTransferMethods(*s.control, *s.transfers);
        try {
            s.control->start();
        } catch (...) {
            s.control.reset();
            s.overlay.reset();
            throw;
        }
    }
    if (s.options.publish)
        s.overlay->publish();
    s.contacts->start();
    s.links->start();
    s.chat->start();
    try {
        if (s.transfers)
            s.transfers->start();
    } catch (const StoreError& e) {
        throw std::runtime_error(e.what());
    }
    // Every room hears when a link comes up or goes.
    s.links->setLinkHandler([&s](const dht::ContactId& peer, const LinkManager::LinkChange& c) {
        if (s.chat)
            s.chat->onLink(peer, c.up, c.goodbye);
        if (s.transfers)
            s.transfers->onLink(peer, c.up);
    });
    s.watchDhtState();
    s.started = true;
    s.thread = std::thread([this] {
        impl_->owner.bindToCurrentThread();
        // A handler that throws must not end the node's loop: log it and carry on.
        for (;;) {
            try {
                impl_->io.run();
                return;
            } catch (const std::exception& e) {
                spdlog::error("unexpected error on the node loop (continuing): {}", e.what());
            }
        }
    });
}

void Node::stop(std::chrono::milliseconds budget) {
    auto& s = *impl_;
    if (!s.started)
        return;
    if (s.stopped.exchange(true))
        return;
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    asio::post(s.io, [&s, done, budget] {
        s.stateTimer.cancel();
        if (s.contacts) {
            s.contacts->setConnectHandler(nullptr);
            s.contacts->setChatHandler(nullptr);
        }
        // Goodbyes and CONNECTION_CLOSEs go out while the socket is still open.
        if (s.links)
            s.links->setLinkHandler(nullptr);
        if (s.chat)
            s.chat->stop();
        if (s.transfers)
            s.transfers->stop();
        if (s.links)
            s.links->stop();
        if (s.transport)
            s.transport->shutdown();
        s.overlay->endpoint().setOtherHandler(nullptr);
        if (s.portMapper)
            s.portMapper->stop(); // removes the router's mapping (bounded, about 2 s)
        if (s.contacts)
            s.contacts->stop();
        if (s.control)
            s.control->stop();
        s.overlay->shutdown(budget, [done] { done->set_value(); });
    });
    // The overlay bounds its own shutdown; the extra margin covers a stuck OpenDHT join.
    if (future.wait_for(budget + std::chrono::seconds(5)) != std::future_status::ready)
        spdlog::warn("DHT shutdown did not finish in time");
    s.work.reset();
    s.io.stop();
    if (s.thread.joinable())
        s.thread.join();
    s.owner.release();
    s.control.reset();
    s.chat.reset();
    s.transfers.reset();
    s.portMapper.reset();
    s.links.reset();
    s.transport.reset();
    s.directory.reset();
    s.contacts.reset();
    s.store.reset();
    s.overlay.reset();
    requestStop();
}

void Node::requestStop() {
    {
        std::lock_guard lock(impl_->stopMutex);
        impl_->stopRequested = true;
    }
    impl_->stopCv.notify_all();
}

bool Node::waitForStopRequest(std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->stopMutex);
    return impl_->stopCv.wait_for(lock, timeout, [this] { return impl_->stopRequested; });
}

dht::ContactId Node::id() const {
    return impl_->id;
}

std::uint16_t Node::port() const {
    return impl_->port;
}

dht::LookupResult Node::lookup(const dht::ContactId& id, std::chrono::milliseconds timeout) {
    if (impl_->stopped)
        throw std::runtime_error("the node is stopped");
    auto promise = std::make_shared<std::promise<dht::LookupResult>>();
    auto future = promise->get_future();
    post([this, id, timeout, promise] {
        impl_->overlay->lookup(id, timeout,
                               [promise](const dht::LookupResult& r) { promise->set_value(r); });
    });
    return future.get();
}

nlohmann::json Node::status() {
    return call([this] { return api::toJson(impl_->gatherStatus()); });
}

void Node::bootstrap(const std::string& hostPort) {
    call([this, hostPort] { impl_->overlay->bootstrap(hostPort); });
}

dht::Overlay& Node::overlay() {
    impl_->owner.check("Node::overlay()");
    return *impl_->overlay;
}

ContactManager& Node::contacts() {
    impl_->owner.check("Node::contacts()");
    return *impl_->contacts;
}

LinkManager& Node::links() {
    impl_->owner.check("Node::links()");
    return *impl_->links;
}

ChatManager& Node::chat() {
    impl_->owner.check("Node::chat()");
    return *impl_->chat;
}

TransferManager& Node::transfers() {
    impl_->owner.check("Node::transfers()");
    if (!impl_->transfers)
        throw std::logic_error(
            "this node has no transfer room (TransferOptions::enabled is false)");
    return *impl_->transfers;
}

PingResult Node::ping(const dht::ContactId& id, int count, std::chrono::milliseconds interval,
                      std::chrono::milliseconds timeout) {
    auto promise = std::make_shared<std::promise<PingResult>>();
    auto future = promise->get_future();
    post([this, id, count, interval, timeout, promise] {
        impl_->links->ping(id, count, interval, timeout,
                           [promise](const PingResult& result) { promise->set_value(result); });
    });
    return future.get();
}

void Node::post(std::function<void()> f) {
    if (impl_->stopped)
        throw std::runtime_error("the node is stopped");
    asio::post(impl_->io, std::move(f));
}

} // namespace parley::node
