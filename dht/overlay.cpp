// Overlay: DhtRunner over the shared UdpEndpoint, record publication and lookups.
#include "overlay.h"

#include "clock.h"
#include "detail/identity_handle.h"
#include "udp_endpoint.h"

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <netdb.h>
#include <opendht.h>
#include <opendht/log_enable.h>
#include <opendht/network_utils.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/stat.h>
#include <unordered_map>

namespace parley::dht {

namespace {

constexpr ::dht::ValueType::Id kCardType = kCardValueType;
constexpr ::dht::ValueType::Id kPresenceType = kPresenceValueType;
constexpr auto kNodesSaveInterval = std::chrono::minutes(5);
constexpr std::size_t kMaxSavedNodes = 512;

::dht::InfoHash recordKey(std::string_view kind, const ContactId& id) {
    return ::dht::InfoHash::get("parley/" + std::string(kind) + "/" + id.toHex());
}

bool ownedBy(const ::dht::Value& v, const ContactId& id) {
    if (!v.owner || !*v.owner || v.signature.empty())
        return false;
    const auto& longId = v.owner->getLongId();
    return longId.size() == ContactId::kSize &&
           std::memcmp(longId.data(), id.bytes().data(), ContactId::kSize) == 0;
}

// OpenDHT logs routine remote trouble at error level: keep it out of a user's way unless
// they ask for debug output.
std::shared_ptr<::dht::Logger> makeDhtLogger() {
    auto method = [](spdlog::level::level_enum level) {
        return ::dht::LogMethod([level](char const* format, va_list args) {
            if (!spdlog::should_log(level))
                return;
            char buf[1024];
            std::vsnprintf(buf, sizeof buf, format, args);
            spdlog::log(level, "[opendht] {}", buf);
        });
    };
    return std::make_shared<::dht::Logger>(
        method(spdlog::level::debug), method(spdlog::level::debug), method(spdlog::level::trace));
}

// OpenDHT's view of our UdpEndpoint: it sends through the endpoint (whose filter learns our
// own announces) and receives only the DHT datagrams the filter let through.
class DhtSocket final : public ::dht::net::DatagramSocket {
public:
    explicit DhtSocket(std::shared_ptr<UdpEndpoint> endpoint) : endpoint_(std::move(endpoint)) {
        if (endpoint_->hasIPv4())
            bound4_ = ::dht::SockAddr(endpoint_->bound4().get(), endpoint_->bound4().length());
        if (endpoint_->hasIPv6())
            bound6_ = ::dht::SockAddr(endpoint_->bound6().get(), endpoint_->bound6().length());
        endpoint_->setDhtHandler(
            [this](std::span<const std::uint8_t> data, const SocketAddress& from) {
                ::dht::net::PacketList packets;
                auto& packet = packets.emplace_back();
                packet.data.assign(data.begin(), data.end());
                packet.from = ::dht::SockAddr(from.get(), from.length());
                packet.received = ::dht::clock::now();
                onReceived(std::move(packets));
            });
    }
    ~DhtSocket() override { endpoint_->setDhtHandler({}); }

    int sendTo(const ::dht::SockAddr& dest, const std::uint8_t* data, std::size_t size,
               bool /*replied*/) override {
        return endpoint_->sendDht(SocketAddress(dest.get(), dest.getLength()), {data, size});
    }
    const ::dht::SockAddr& getBoundRef(sa_family_t family) const override {
        return family == AF_INET6 ? bound6_ : bound4_;
    }
    bool hasIPv4() const override { return endpoint_->hasIPv4(); }
    bool hasIPv6() const override { return endpoint_->hasIPv6(); }
    void stop() override { endpoint_->setDhtHandler({}); }
    // OpenDHT would resolve host names here, on its own thread, while holding its main lock:
    // a slow DNS server would freeze the whole node. The overlay resolves names itself
    // (asynchronously) and hands OpenDHT numeric addresses only.
    std::vector<::dht::SockAddr> resolve(const std::string& host,
                                         const std::string& service) override {
        std::vector<::dht::SockAddr> out;
        addrinfo hints{};
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        hints.ai_socktype = SOCK_DGRAM;
        addrinfo* res = nullptr;
        if (::getaddrinfo(host.c_str(), service.empty() ? nullptr : service.c_str(), &hints,
                          &res) == 0) {
            for (auto* r = res; r; r = r->ai_next)
                out.emplace_back(r->ai_addr, static_cast<socklen_t>(r->ai_addrlen));
            ::freeaddrinfo(res);
        }
        return out;
    }

private:
    std::shared_ptr<UdpEndpoint> endpoint_;
    ::dht::SockAddr bound4_, bound6_;
};

struct LookupOp {
    LookupOp(const ContactId& id, std::chrono::milliseconds timeout,
             Overlay::LookupCallback callback)
        : settler(id, std::chrono::steady_clock::now(), timeout), done(std::move(callback)) {}
    LookupSettler settler;
    Overlay::LookupCallback done;
    bool finished = false;
    std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
    std::unique_ptr<asio::steady_timer> timer;
};

} // namespace

std::string recordKeyHex(std::string_view kind, const ContactId& id) {
    return recordKey(kind, id).toString();
}

struct Overlay::Impl : std::enable_shared_from_this<Impl> {
    asio::io_context& io;
    Identity identity;
    OverlayConfig config;
    std::shared_ptr<UdpEndpoint> endpoint;
    std::unique_ptr<::dht::DhtRunner> runner;
    asio::steady_timer presenceTimer;
    asio::steady_timer nodesTimer;
    asio::steady_timer statusTimer;
    asio::ip::udp::resolver resolver;
    OverlayStatus snapshot; // refreshed asynchronously: status() never waits on OpenDHT
    std::uint16_t lastPresenceSeq = 0;
    unsigned statusTicks = 0;
    bool shutdownFinished = false;
    std::vector<std::function<void()>> shutdownWaiters;
    std::unordered_map<ContactId, std::shared_future<std::size_t>> presenceListens;
    PresenceStatus presenceStatus = PresenceStatus::online;
    std::uint64_t presenceSequence = 0;
    bool publishing = false;
    bool stopping = false;
    bool lanActive = false;
    std::vector<std::string> bootstrapList;
    OverlayCounters counters;
    // Written by OpenDHT's thread through the status callback.
    std::shared_ptr<std::atomic<int>> dhtStatus =
        std::make_shared<std::atomic<int>>(static_cast<int>(::dht::NodeStatus::Disconnected));

    Impl(asio::io_context& ioContext, Identity id, OverlayConfig cfg)
        : io(ioContext), identity(std::move(id)), config(std::move(cfg)), presenceTimer(io),
          nodesTimer(io), statusTimer(io), resolver(io) {}

    ~Impl() {
        if (runner)
            runner->join();
        runner.reset();
        if (endpoint)
            endpoint->stop();
    }

    // Runs `f` on the io_context if the overlay still exists by then. Safe from OpenDHT's
    // threads: the weak reference is only locked on the io thread, so the last reference to
    // Impl is never dropped (and ~Impl never runs) on a thread that ~Impl would have to join.
    template <class F> void post(F&& f) { postTo(io, weak_from_this(), std::forward<F>(f)); }
    template <class F> static void postTo(asio::io_context& ctx, std::weak_ptr<Impl> weak, F&& f) {
        asio::post(ctx, [weak = std::move(weak), f = std::forward<F>(f)]() mutable {
            if (auto self = weak.lock())
                f(*self);
        });
    }

    void start();
    void loadNodes();
    void saveNodes();
    void scheduleNodeSaves();
    // OpenDHT stores our own signed values locally: the packet filter must guard them too.
    void protectOwnValue(const ::dht::InfoHash& key, ::dht::Value::Id id,
                         ::dht::ValueType::Id type) {
        endpoint->trackOwnSignedValue(std::span<const std::uint8_t, 20>(key.data(), 20), id, type);
    }
    // Every signed publication goes through here, so that no own value is left unguarded.
    void putSigned(const ::dht::InfoHash& key, const std::shared_ptr<::dht::Value>& value,
                   ::dht::DoneCallback done, bool permanent = false) {
        protectOwnValue(key, value->id, value->type);
        runner->putSigned(key, value, std::move(done), permanent);
    }
    void bootstrapAll();
    void bootstrapOne(const std::string& hostPort);
    void refreshStatus();
    void publishCard();
    // The current presence as an (unsigned) OpenDHT value, with the next sequence number.
    std::shared_ptr<::dht::Value> makePresenceValue();
    void publishPresence(std::function<void(bool)> done = {});
    // Signs locally and puts at once, without putSigned's preliminary get (which can take
    // seconds): for the offline presence at shutdown.
    void publishPresenceNow(std::function<void(bool)> done);
    void finishShutdown();
    void schedulePresence();
    void lookup(const ContactId& id, std::chrono::milliseconds timeout, LookupCallback done);
    void maybeFinish(const std::shared_ptr<LookupOp>& op, bool timedOut = false);
};

void Overlay::Impl::start() {
    endpoint = std::make_shared<UdpEndpoint>(config.bindAddress, config.port);
    lanActive = config.lanDiscovery && !endpoint->boundToLoopback();

    ::dht::DhtRunner::Config cfg;
    cfg.dht_config.node_config.network = config.network;
    // Bounded storage keeps memory predictable; the packet filter tracks as many values.
    cfg.dht_config.node_config.max_store_size = 16 * 1024 * 1024;
    cfg.dht_config.id = identity.handle().id;
    cfg.threaded = true;
    cfg.peer_discovery = lanActive;
    cfg.peer_publish = lanActive;

    ::dht::DhtRunner::Context ctx;
    ctx.logger = makeDhtLogger();
    ctx.statusChangedCallback = [status = dhtStatus](::dht::NodeStatus v4, ::dht::NodeStatus v6) {
        status->store(std::max(static_cast<int>(v4), static_cast<int>(v6)));
    };
    ctx.sock = std::make_unique<DhtSocket>(endpoint);

    runner = std::make_unique<::dht::DhtRunner>();
    if (config.receiveOnIoThread)
        endpoint->start(io);
    else
        endpoint->start();
    runner->run(cfg, std::move(ctx));

    bootstrapList = config.bootstrap;
    if (bootstrapList.empty() && config.network == 0 && config.publicBootstrap)
        bootstrapList.emplace_back(kPublicBootstrap);
    bootstrapAll();
    loadNodes();
    scheduleNodeSaves();
    refreshStatus();
    spdlog::info("DHT node on UDP port {} (network {}, LAN discovery {})", endpoint->port(),
                 config.network, lanActive ? "on" : "off");
}

void Overlay::Impl::bootstrapOne(const std::string& hostPort) {
    auto hp = splitHostPort(hostPort);
    if (!hp) {
        spdlog::warn("ignoring bootstrap '{}': expected HOST:PORT", hostPort);
        return;
    }
    if (auto numeric = SocketAddress::parse(hostPort)) {
        runner->bootstrap(::dht::SockAddr(numeric->get(), numeric->length()));
        return;
    }
    resolver.async_resolve(
        hp->first, hp->second, asio::ip::udp::resolver::numeric_service,
        [weak = weak_from_this(), hostPort](const std::error_code& ec,
                                            asio::ip::udp::resolver::results_type results) {
            auto self = weak.lock();
            if (!self || self->stopping)
                return;
            if (ec) {
                spdlog::warn("cannot resolve bootstrap {}: {}", hostPort, ec.message());
                return;
            }
            std::vector<::dht::SockAddr> addrs;
            for (const auto& entry : results)
                addrs.emplace_back(entry.endpoint().data(),
                                   static_cast<socklen_t>(entry.endpoint().size()));
            spdlog::debug("bootstrap {}: {} addresses", hostPort, addrs.size());
            self->runner->bootstrap(std::move(addrs));
        });
}

void Overlay::Impl::bootstrapAll() {
    for (const auto& hostPort : bootstrapList)
        bootstrapOne(hostPort);
}

// Node counts and public addresses come from OpenDHT's thread through its asynchronous
// queries; the io thread only reads the snapshot. While disconnected this also retries the
// bootstrap nodes every 30 s (OpenDHT's own retry would resolve names on its thread).
void Overlay::Impl::refreshStatus() {
    if (stopping)
        return;
    auto weak = weak_from_this();
    auto* ioPtr = &io;
    runner->getNodeInfo([weak, ioPtr](std::shared_ptr<::dht::NodeInfo> info) {
        if (!info)
            return;
        unsigned v4 = info->ipv4.getKnownNodes(), v6 = info->ipv6.getKnownNodes();
        postTo(*ioPtr, weak, [v4, v6](Impl& s) {
            s.snapshot.nodes = v4 + v6;
            s.snapshot.nodesIPv6 = v6;
        });
    });
    runner->getPublicAddress([weak, ioPtr](std::vector<::dht::SockAddr>&& addrs) {
        std::vector<std::string> text, endpoints;
        for (const auto& a : addrs) {
            SocketAddress address(a.get(), a.getLength());
            text.push_back(address.hostString());
            endpoints.push_back(address.toString());
        }
        postTo(*ioPtr, weak,
               [text = std::move(text), endpoints = std::move(endpoints)](Impl& s) mutable {
                   s.snapshot.publicAddresses = std::move(text);
                   // OpenDHT reports the address without the port peers saw. A NAT that keeps
                   // the port (Linux masquerade does when it can) maps us to our own port.
                   for (auto& e : endpoints)
                       if (auto a = SocketAddress::parse(e); a && a->port() == 0) {
                           a->setPort(s.endpoint ? s.endpoint->port() : 0);
                           e = a->toString();
                       }
                   s.snapshot.publicEndpoints = std::move(endpoints);
               });
    });
    constexpr unsigned kRetryTicks = 30;
    if (dhtStatus->load() == static_cast<int>(::dht::NodeStatus::Disconnected) &&
        ++statusTicks % kRetryTicks == 0)
        bootstrapAll();
    statusTimer.expires_after(std::chrono::seconds(1));
    statusTimer.async_wait([weak](const std::error_code& ec) {
        if (auto self = weak.lock(); self && !ec)
            self->refreshStatus();
    });
}

void Overlay::Impl::loadNodes() {
    if (config.nodesFile.empty())
        return;
    std::ifstream in(config.nodesFile);
    if (!in)
        return;
    std::vector<::dht::NodeExport> nodes;
    std::string line;
    while (std::getline(in, line) && nodes.size() < kMaxSavedNodes) {
        std::istringstream fields(line);
        std::string idHex, addrText;
        if (!(fields >> idHex >> addrText) || idHex.size() != 40)
            continue;
        auto addr = SocketAddress::parse(addrText);
        if (!addr || addr->port() == 0)
            continue;
        ::dht::NodeExport node{};
        node.id = ::dht::InfoHash(idHex);
        std::memcpy(&node.ss, addr->get(), addr->length());
        node.sslen = addr->length();
        nodes.push_back(node);
    }
    if (!nodes.empty()) {
        spdlog::debug("rejoining through {} saved nodes", nodes.size());
        runner->bootstrap(std::move(nodes));
    }
}

void Overlay::Impl::saveNodes() {
    if (config.nodesFile.empty() || !runner)
        return;
    auto nodes = runner->exportNodes();
    if (nodes.empty())
        return; // keep what we had: an empty table says nothing about the network
    std::string tmp = config.nodesFile + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        std::size_t written = 0;
        for (const auto& node : nodes) {
            if (written++ >= kMaxSavedNodes)
                break;
            SocketAddress addr(reinterpret_cast<const sockaddr*>(&node.ss), node.sslen);
            out << node.id.toString() << ' ' << addr.toString() << '\n';
        }
        if (!out) {
            spdlog::warn("cannot save known nodes to {}", tmp);
            return;
        }
    }
    ::chmod(tmp.c_str(), 0600);
    if (std::rename(tmp.c_str(), config.nodesFile.c_str()) != 0)
        spdlog::warn("cannot save known nodes to {}", config.nodesFile);
}

void Overlay::Impl::scheduleNodeSaves() {
    nodesTimer.expires_after(kNodesSaveInterval);
    nodesTimer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || self->stopping)
            return;
        self->saveNodes();
        self->scheduleNodeSaves();
    });
}

void Overlay::Impl::publishCard() {
    KeyCard card;
    card.certificate = identity.certificateDer();
    card.name = truncateUtf8(config.name, kMaxNameSize);
    card.protocols = {1};
    card.createdAt = unixMs() / 1000;
    auto bytes = encodeKeyCard(card);
    auto value =
        std::make_shared<::dht::Value>(kCardType, bytes.data(), bytes.size(), kCardValueId);
    auto key = recordKey("card", identity.contactId());
    putSigned(
        key, value,
        [](bool ok, const std::vector<std::shared_ptr<::dht::Node>>&) {
            spdlog::debug("key card published: {}", ok ? "ok" : "no node took it yet");
        },
        /*permanent=*/true);
}

std::shared_ptr<::dht::Value> Overlay::Impl::makePresenceValue() {
    Presence presence;
    presence.status = presenceStatus;
    presence.timestampMs = unixMs();
    presence.sequence = ++presenceSequence;
    auto bytes = encodePresence(presence);
    auto value =
        std::make_shared<::dht::Value>(kPresenceType, bytes.data(), bytes.size(), kPresenceValueId);
    return value;
}

void Overlay::Impl::publishPresence(std::function<void(bool)> done) {
    auto value = makePresenceValue();
    auto key = recordKey("presence", identity.contactId());
    putSigned(
        key, value,
        [weak = weak_from_this(), ioPtr = &io, value, done = std::move(done)](
            bool ok, const std::vector<std::shared_ptr<::dht::Node>>&) mutable {
            // putSigned chose the seq on this thread; the offline presence at shutdown
            // must go above it.
            postTo(*ioPtr, weak, [ok, seq = value->seq, done = std::move(done)](Impl& s) {
                s.lastPresenceSeq = std::max(s.lastPresenceSeq, seq);
                if (done)
                    done(ok);
            });
        },
        // Permanent: OpenDHT re-announces it as its view of the closest nodes improves
        // (a one-shot put from a young routing table can miss them); each refresh
        // replaces the announcement, since the value id is the same.
        /*permanent=*/true);
}

void Overlay::Impl::publishPresenceNow(std::function<void(bool)> done) {
    auto value = makePresenceValue();
    value->seq = static_cast<std::uint16_t>(lastPresenceSeq + 1);
    value->sign(*identity.handle().id.first);
    auto key = recordKey("presence", identity.contactId());
    protectOwnValue(key, kPresenceValueId, kPresenceType);
    runner->put(
        key, value,
        [weak = weak_from_this(), ioPtr = &io, done = std::move(done)](
            bool ok, const std::vector<std::shared_ptr<::dht::Node>>&) mutable {
            postTo(*ioPtr, weak, [ok, done = std::move(done)](Impl&) { done(ok); });
        },
        ::dht::time_point::max(), false);
}

void Overlay::Impl::schedulePresence() {
    presenceTimer.expires_after(std::chrono::milliseconds(kPresenceRefreshMs));
    presenceTimer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || self->stopping)
            return;
        self->publishPresence();
        // The card is re-announced by OpenDHT; keep the filter's entry for it alive as well.
        self->protectOwnValue(recordKey("card", self->identity.contactId()), kCardValueId,
                              kCardType);
        self->schedulePresence();
    });
}

void Overlay::Impl::lookup(const ContactId& id, std::chrono::milliseconds timeout,
                           LookupCallback done) {
    auto op = std::make_shared<LookupOp>(id, timeout, std::move(done));
    op->timer = std::make_unique<asio::steady_timer>(io, timeout);
    op->timer->async_wait([weak = weak_from_this(), op](const std::error_code& ec) {
        if (auto self = weak.lock(); self && !ec)
            self->maybeFinish(op, /*timedOut=*/true);
    });
    auto weak = weak_from_this();
    auto* ioPtr = &io;
    auto cancelled = op->cancelled;

    // Both callbacks run on OpenDHT's thread: check ownership and decode there (pure work),
    // then move the result onto the io_context.
    runner->get(
        recordKey("card", id),
        [weak, ioPtr, op, id, cancelled](const std::vector<std::shared_ptr<::dht::Value>>& values) {
            for (const auto& v : values) {
                if (v->type != kCardType)
                    continue;
                KeyCard card;
                RecordError err =
                    ownedBy(*v, id) ? decodeKeyCard(v->data, card) : RecordError::wrongOwner;
                if (err == RecordError::ok)
                    err = verifyKeyCard(card, id);
                postTo(*ioPtr, weak, [op, err, card = std::move(card)](Impl& s) mutable {
                    if (err != RecordError::ok) {
                        ++(err == RecordError::wrongOwner ? s.counters.recordsWrongOwner
                                                          : s.counters.recordsMalformed);
                        return;
                    }
                    ++s.counters.recordsAccepted;
                    op->settler.onCard(std::move(card));
                    s.maybeFinish(op);
                });
            }
            return !cancelled->load();
        },
        [weak, ioPtr, op](bool) {
            postTo(*ioPtr, weak, [op](Impl& s) {
                op->settler.onCardDone();
                s.maybeFinish(op);
            });
        });
    runner->get(
        recordKey("presence", id),
        [weak, ioPtr, op, id, cancelled](const std::vector<std::shared_ptr<::dht::Value>>& values) {
            for (const auto& v : values) {
                if (v->type != kPresenceType)
                    continue;
                Presence presence;
                RecordError err =
                    ownedBy(*v, id) ? decodePresence(v->data, presence) : RecordError::wrongOwner;
                postTo(*ioPtr, weak, [op, err, presence](Impl& s) {
                    if (err != RecordError::ok) {
                        ++(err == RecordError::wrongOwner ? s.counters.recordsWrongOwner
                                                          : s.counters.recordsMalformed);
                        return;
                    }
                    if (!op->settler.onPresence(presence, unixMs())) {
                        ++s.counters.recordsStale;
                        return;
                    }
                    ++s.counters.recordsAccepted;
                    s.maybeFinish(op);
                });
            }
            return !cancelled->load();
        },
        [weak, ioPtr, op](bool) {
            postTo(*ioPtr, weak, [op](Impl& s) {
                op->settler.onPresenceDone();
                s.maybeFinish(op);
            });
        });
}

void Overlay::Impl::maybeFinish(const std::shared_ptr<LookupOp>& op, bool timedOut) {
    if (op->finished)
        return;
    auto now = std::chrono::steady_clock::now();
    if (!timedOut && !op->settler.settled(now, unixMs()))
        return;
    op->finished = true;
    op->cancelled->store(true);
    op->timer->cancel();
    auto done = std::move(op->done);
    if (done)
        done(op->settler.result(now, unixMs()));
}

Overlay::Overlay(asio::io_context& io, Identity identity, OverlayConfig config)
    : impl_(std::make_shared<Impl>(io, std::move(identity), std::move(config))) {}

Overlay::~Overlay() = default;

void Overlay::start() {
    try {
        impl_->start();
    } catch (const std::system_error&) {
        throw; // its error code tells the caller what failed (e.g. address in use)
    } catch (const ::dht::DhtException& e) {
        throw std::runtime_error(std::string("cannot start the DHT node: ") + e.what());
    }
}

void Overlay::publish() {
    if (impl_->publishing)
        return;
    impl_->publishing = true;
    impl_->publishCard();
    impl_->publishPresence();
    impl_->schedulePresence();
}

void Overlay::setPresence(PresenceStatus status) {
    impl_->presenceStatus = status;
    if (impl_->publishing)
        impl_->publishPresence();
}

void Overlay::lookup(const ContactId& id, std::chrono::milliseconds timeout, LookupCallback done) {
    impl_->lookup(id, timeout, std::move(done));
}

void Overlay::bootstrap(const std::string& hostPort) {
    if (splitHostPort(hostPort)) {
        impl_->bootstrapList.push_back(hostPort);
        impl_->bootstrapOne(hostPort);
    }
}

void Overlay::Impl::finishShutdown() {
    if (shutdownFinished)
        return;
    shutdownFinished = true;
    saveNodes();
    if (runner)
        runner->join();
    if (endpoint)
        endpoint->stop();
    for (auto& waiter : std::exchange(shutdownWaiters, {}))
        if (waiter)
            waiter();
}

void Overlay::shutdown(std::chrono::milliseconds budget, std::function<void()> done) {
    auto& s = *impl_;
    if (s.shutdownFinished) {
        if (done)
            asio::post(s.io, std::move(done));
        return;
    }
    s.shutdownWaiters.push_back(std::move(done));
    if (s.stopping)
        return;
    s.stopping = true;
    s.presenceTimer.cancel();
    s.nodesTimer.cancel();
    s.statusTimer.cancel();
    s.resolver.cancel();
    auto timer = std::make_shared<asio::steady_timer>(s.io, budget);
    std::weak_ptr<Impl> weak = impl_;
    timer->async_wait([weak](const std::error_code&) {
        if (auto self = weak.lock())
            self->finishShutdown();
    });
    auto afterOffline = [weak, timer](bool) {
        auto self = weak.lock();
        if (!self || self->shutdownFinished)
            return;
        // Leave gracefully (OpenDHT cancels its announces), still within the budget.
        auto* ioPtr = &self->io;
        self->runner->shutdown([weak, ioPtr, timer] {
            Impl::postTo(*ioPtr, weak, [timer](Impl& st) {
                timer->cancel();
                st.finishShutdown();
            });
        });
    };
    if (s.publishing) {
        s.presenceStatus = PresenceStatus::offline;
        s.publishPresenceNow(afterOffline);
    } else {
        asio::post(s.io, [afterOffline] { afterOffline(true); });
    }
}

void Overlay::listenInbox(EnvelopeHandler handler) {
    auto& s = *impl_;
    auto weak = std::weak_ptr<Impl>(impl_);
    auto* ioPtr = &s.io;
    auto shared = std::make_shared<EnvelopeHandler>(std::move(handler));
    s.runner->listen(recordKey("inbox", s.identity.contactId()),
                     [weak, ioPtr, shared](const std::vector<std::shared_ptr<::dht::Value>>& values,
                                           bool expired) {
                         if (expired)
                             return true;
                         for (const auto& v : values) {
                             // SecureDht decrypted it for us and checked the inner signature; a
                             // value that is still encrypted was for someone else, one without
                             // owner is not signed.
                             if (v->isEncrypted() || !v->owner || !*v->owner)
                                 continue;
                             Envelope envelope;
                             auto err = decodeEnvelope(v->data, envelope);
                             ::dht::Blob keyDer;
                             v->owner->pack(keyDer);
                             std::vector<std::uint8_t> signerKey(keyDer.begin(), keyDer.end());
                             auto signer = ContactId::ofPublicKeyDer(signerKey);
                             Impl::postTo(*ioPtr, weak,
                                          [shared, err, envelope = std::move(envelope), signer,
                                           signerKey = std::move(signerKey)](Impl& st) {
                                              if (err != EnvelopeError::ok) {
                                                  ++st.counters.envelopesMalformed;
                                                  return;
                                              }
                                              (*shared)(envelope, signer, signerKey);
                                          });
                         }
                         return true;
                     });
}

void Overlay::sendEnvelope(const std::vector<std::uint8_t>& recipientKey, const Envelope& envelope,
                           std::function<void(bool)> done) {
    auto& s = *impl_;
    std::shared_ptr<::dht::crypto::PublicKey> key;
    try {
        key = std::make_shared<::dht::crypto::PublicKey>(
            ::dht::Blob(recipientKey.begin(), recipientKey.end()));
        if (!*key || ContactId::ofPublicKeyDer(recipientKey) != envelope.to)
            throw std::runtime_error("the key is not the recipient's");
    } catch (const std::exception& e) {
        spdlog::warn("cannot encrypt to {}: {}", envelope.to.shortHex(), e.what());
        asio::post(s.io, [done = std::move(done)] { done(false); });
        return;
    }
    auto bytes = encodeEnvelope(envelope);
    // Connect envelopes matter for two minutes: they go as user data, which storing nodes keep
    // for 10 minutes, instead of the 7 days of other envelopes.
    auto type = isConnectKind(envelope.kind) ? ::dht::ValueType::USER_DATA.id : kInboxValueType;
    auto value = std::make_shared<::dht::Value>(type, ::dht::Blob(bytes.begin(), bytes.end()));
    auto weak = std::weak_ptr<Impl>(impl_);
    auto* ioPtr = &s.io;
    s.runner->putEncrypted(recordKey("inbox", envelope.to), key, value,
                           [weak, ioPtr, done = std::move(done)](
                               bool ok, const std::vector<std::shared_ptr<::dht::Node>>&) {
                               Impl::postTo(*ioPtr, weak, [ok, done](Impl&) { done(ok); });
                           });
}

void Overlay::followPresence(const ContactId& id, PresenceHandler handler) {
    auto& s = *impl_;
    if (s.presenceListens.count(id))
        return;
    auto weak = std::weak_ptr<Impl>(impl_);
    auto* ioPtr = &s.io;
    auto shared = std::make_shared<PresenceHandler>(std::move(handler));
    auto token = s.runner->listen(
        recordKey("presence", id),
        [weak, ioPtr, shared, id](const std::vector<std::shared_ptr<::dht::Value>>& values,
                                  bool expired) {
            spdlog::debug("presence listen {}: {} values{}", id.shortHex(), values.size(),
                          expired ? " expired" : "");
            if (expired)
                return true;
            for (const auto& v : values) {
                if (v->type != kPresenceType)
                    continue;
                Presence presence;
                RecordError err =
                    ownedBy(*v, id) ? decodePresence(v->data, presence) : RecordError::wrongOwner;
                Impl::postTo(*ioPtr, weak, [shared, id, err, presence](Impl& st) {
                    if (err != RecordError::ok) {
                        ++(err == RecordError::wrongOwner ? st.counters.recordsWrongOwner
                                                          : st.counters.recordsMalformed);
                        return;
                    }
                    ++st.counters.recordsAccepted;
                    (*shared)(id, presence);
                });
            }
            return true;
        });
    s.presenceListens.emplace(id, token.share());
}

void Overlay::unfollowPresence(const ContactId& id) {
    auto& s = *impl_;
    auto it = s.presenceListens.find(id);
    if (it == s.presenceListens.end())
        return;
    s.runner->cancelListen(recordKey("presence", id), it->second);
    s.presenceListens.erase(it);
}

OverlayStatus Overlay::status() const {
    const auto& s = *impl_;
    OverlayStatus st = s.snapshot;
    st.port = s.endpoint ? s.endpoint->port() : 0;
    st.network = s.config.network;
    st.lanDiscovery = s.lanActive;
    st.bootstrap = s.bootstrapList;
    if (!s.runner || s.shutdownFinished) {
        st.state = "disconnected";
        return st;
    }
    switch (static_cast<::dht::NodeStatus>(s.dhtStatus->load())) {
    case ::dht::NodeStatus::Connected:
        st.state = "connected";
        break;
    case ::dht::NodeStatus::Connecting:
        st.state = "connecting";
        break;
    default:
        st.state = "disconnected";
    }
    return st;
}

const OverlayCounters& Overlay::counters() const {
    return impl_->counters;
}

UdpEndpoint& Overlay::endpoint() {
    return *impl_->endpoint;
}

const Identity& Overlay::identity() const {
    return impl_->identity;
}

void Overlay::publishRawPresenceAs(const ContactId& victim, std::vector<std::uint8_t> bytes) {
    auto value = std::make_shared<::dht::Value>(kPresenceType, bytes.data(), bytes.size(),
                                                kPresenceValueId + 1);
    auto key = recordKey("presence", victim);
    impl_->putSigned(key, value, {});
}

} // namespace parley::dht
