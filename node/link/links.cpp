// LinkManager: connect envelopes, dialling and punching, hello, ping, idle close, reconnect.
#include "node/link/links.h"

#include "dht/clock.h"
#include "dht/overlay.h"
#include "dht/timer_set.h"
#include "dht/udp_endpoint.h"
#include "node/link/contact_directory.h"
#include "node/transport/candidates.h"
#include "node/transport/quic.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <gnutls/crypto.h>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace parley::node {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double msSince(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::uint64_t monotonicUs() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count());
}

std::array<std::uint8_t, 16> randomId() {
    std::array<std::uint8_t, 16> id{};
    if (gnutls_rnd(GNUTLS_RND_NONCE, id.data(), id.size()) != 0)
        throw std::runtime_error("GnuTLS random generator failed");
    return id;
}

constexpr std::size_t kMaxControlBacklog = 8 << 20; // a peer that stops reading is dropped

ConnectResult failed(std::string error) {
    ConnectResult r;
    r.error = std::move(error);
    return r;
}

struct Link {
    dht::ContactId peer;
    quic::ConnectionPtr conn;
    std::int64_t control = -1;
    wire::FrameReader reader;
    bool active = false, helloReceived = false;
    bool closedByUs = false; // idle close, replaced, stop: no reconnect
    bool goodbye = false;    // the peer said it is going away (shutting down)
    wire::Hello peerHello;
    Clock::time_point lastUsed = Clock::now(), establishedAt = Clock::now();
    std::unique_ptr<asio::steady_timer> timer; // hello deadline, then idle checks
    std::uint64_t nextPing = 1;
    std::map<std::uint64_t, std::function<void(std::optional<double>)>> pings;
};

ConnectResult succeeded(const std::shared_ptr<Link>& link, bool reused) {
    ConnectResult r;
    r.ok = true;
    r.reused = reused;
    r.remote = link->conn->remote().toString();
    r.role = link->conn->isClient() ? "client" : "server";
    return r;
}

struct Waiter {
    std::function<void(const ConnectResult&)> done;
    std::shared_ptr<asio::steady_timer> timer;
};

struct Attempt {
    dht::ContactId peer;
    std::array<std::uint8_t, 16> requestId{};
    bool requestSent = false;
    Clock::time_point started = Clock::now();
    std::vector<std::shared_ptr<Waiter>> waiters;
    std::map<std::string, Clock::time_point> dialed; // address -> last dial
    std::set<std::string> punched;
    std::unique_ptr<asio::steady_timer> lifetime, punchTimer;
    std::vector<dht::SocketAddress> punchTargets;
    int punchesLeft = 0;
    // Confirmed connections on other paths, kept while the first one has not said hello: if
    // it never does, the next takes its place.
    std::vector<quic::ConnectionPtr> standby;
};

} // namespace

struct LinkManager::Impl : std::enable_shared_from_this<LinkManager::Impl> {
    Impl(asio::io_context& ioContext, quic::Transport& t, ContactDirectory& c, dht::Overlay& o)
        : io(ioContext), transport(t), contacts(c), overlay(o), timers(ioContext) {}
    asio::io_context& io;
    quic::Transport& transport;
    ContactDirectory& contacts;
    dht::Overlay& overlay;
    dht::ContactId self;
    EventSink events;
    LinkOptions options;
    MessageHandler messageHandler;
    LinkHandler linkHandler;
    std::function<std::vector<std::string>()> mapped;
    std::map<dht::ContactId, std::shared_ptr<Link>> active;
    std::set<std::shared_ptr<Link>> pending; // handshake done, hello not yet
    std::map<dht::ContactId, std::shared_ptr<Attempt>> attempts;
    std::map<dht::ContactId, dht::SocketAddress> lastRemote;
    std::map<dht::ContactId, std::pair<int, std::unique_ptr<asio::steady_timer>>> reconnects;
    dht::TimerSet timers; // pings' loss deadlines
    std::map<std::string, std::uint64_t> counts;
    bool stopped = false;

    bool client(const dht::ContactId& peer) const { return isClientRole(self, peer); }
    void count(const std::string& name) { ++counts[name]; }
    CandidatePolicy policy() const;
    std::vector<std::string> ourCandidates() const;

    std::shared_ptr<Attempt> attemptFor(const dht::ContactId& peer, bool sendRequest);
    void sendRequest(Attempt& a);
    void finishAttempt(const dht::ContactId& peer, const ConnectResult& result);
    void dialAll(const dht::ContactId& peer, const std::vector<dht::SocketAddress>& targets);
    void punchAll(const dht::ContactId& peer, const std::vector<dht::SocketAddress>& targets);
    void punchTick(const std::shared_ptr<Attempt>& a);

    void setupLink(const quic::ConnectionPtr& conn);
    void onData(const std::shared_ptr<Link>& link, std::int64_t stream,
                std::span<const std::uint8_t> data, bool fin);
    void onMessage(const std::shared_ptr<Link>& link, const wire::Message& message);
    void activate(const std::shared_ptr<Link>& link);
    void onClosed(const std::shared_ptr<Link>& link, const quic::CloseReason& why);
    void protocolError(const std::shared_ptr<Link>& link, const std::string& reason);
    bool sendOn(const std::shared_ptr<Link>& link, const wire::Message& message);
    void armIdle(const std::shared_ptr<Link>& link);
    void scheduleReconnect(const dht::ContactId& peer);
    wire::Hello hello() const;
};

CandidatePolicy LinkManager::Impl::policy() const {
    // Loopback addresses are candidates only in a network that lives on loopback (tests,
    // the demo): bound to loopback, or seen by DHT peers at a loopback address.
    auto& ep = overlay.endpoint();
    bool loopback = ep.boundToLoopback();
    if (!loopback) {
        auto st = overlay.status();
        loopback = !st.publicEndpoints.empty();
        for (const auto& p : st.publicEndpoints) {
            auto a = dht::SocketAddress::parse(p);
            loopback = loopback && a && a->isLoopback();
        }
    }
    return CandidatePolicy{.allowLoopback = loopback};
}

std::vector<std::string> LinkManager::Impl::ourCandidates() const {
    auto& ep = overlay.endpoint();
    auto pol = policy();
    auto interfaces = interfaceAddresses(ep.hasIPv4() ? ep.bound4() : dht::SocketAddress{},
                                         ep.hasIPv6() ? ep.bound6() : dht::SocketAddress{},
                                         ep.port(), pol.allowLoopback);
    std::vector<std::string> publicEndpoints;
    for (const auto& p : overlay.status().publicEndpoints) {
        auto a = dht::SocketAddress::parse(p);
        if (a && (pol.allowLoopback || !a->isLoopback()))
            publicEndpoints.push_back(p);
    }
    return mergeCandidates(interfaces, publicEndpoints,
                           mapped ? mapped() : std::vector<std::string>{});
}

wire::Hello LinkManager::Impl::hello() const {
    wire::Hello h;
    h.features = {"ping"};
    h.agent = std::string("parley/") + PARLEY_VERSION;
    return h;
}

// --- set-up -----------------------------------------------------------------------------------

std::shared_ptr<Attempt> LinkManager::Impl::attemptFor(const dht::ContactId& peer,
                                                       bool withRequest) {
    auto& a = attempts[peer];
    if (!a) {
        a = std::make_shared<Attempt>();
        a->peer = peer;
        a->requestId = randomId();
        a->lifetime = std::make_unique<asio::steady_timer>(io, options.attemptLifetime);
        a->punchTimer = std::make_unique<asio::steady_timer>(io);
        a->lifetime->async_wait(
            [weak = weak_from_this(), peer, id = a->requestId](const std::error_code& ec) {
                auto s = weak.lock();
                if (ec || !s || s->stopped)
                    return;
                auto it = s->attempts.find(peer);
                if (it == s->attempts.end() || it->second->requestId != id)
                    return;
                s->finishAttempt(peer, failed("no direct connection could be set up with " +
                                              peer.shortHex() + " (offline or unreachable)"));
            });
        // A client that connected to this contact before tries the last address at once,
        // in parallel with the connect request.
        if (client(peer))
            if (auto it = lastRemote.find(peer); it != lastRemote.end())
                dialAll(peer, {it->second});
    }
    if (withRequest && !a->requestSent)
        sendRequest(*a);
    return a;
}

void LinkManager::Impl::sendRequest(Attempt& a) {
    a.requestSent = true;
    dht::Envelope e;
    e.kind = dht::EnvelopeKind::connectRequest;
    e.id = a.requestId;
    e.createdMs = dht::unixMs();
    e.from = self;
    e.to = a.peer;
    e.candidates = ourCandidates();
    count("requests_sent");
    spdlog::debug("connect request to {} with {} candidates", a.peer.shortHex(),
                  e.candidates.size());
    contacts.sendNow(e, [weak = weak_from_this(), peer = a.peer](bool ok) {
        auto s = weak.lock();
        if (!s || ok)
            return;
        s->count("requests_not_stored");
        spdlog::info("connect request to {} was not stored in the DHT", peer.shortHex());
    });
}

void LinkManager::Impl::finishAttempt(const dht::ContactId& peer, const ConnectResult& result) {
    auto it = attempts.find(peer);
    if (it == attempts.end())
        return;
    auto a = it->second;
    attempts.erase(it);
    a->lifetime->cancel();
    a->punchTimer->cancel();
    for (auto& c : a->standby)
        c->close(quic::CloseCode::replaced, "another path won");
    a->standby.clear();
    auto r = result;
    if (r.ok)
        r.setupMs = msSince(a->started);
    for (auto& w : a->waiters) {
        w->timer->cancel();
        if (auto done = std::move(w->done)) {
            w->done = nullptr;
            done(r);
        }
    }
}

void LinkManager::Impl::dialAll(const dht::ContactId& peer,
                                const std::vector<dht::SocketAddress>& targets) {
    auto a = attemptFor(peer, false);
    for (const auto& to : targets) {
        // An address dialled moments ago is not dialled again; one dialled a while ago is (its
        // Initial may have gone to a process that was stopping, and QUIC's first retransmit
        // comes only after ~300 ms).
        auto& last = a->dialed[to.toString()];
        if (last != Clock::time_point{} && Clock::now() - last < std::chrono::milliseconds(150))
            continue;
        last = Clock::now();
        count("dials");
        spdlog::debug("dialling {} at {}", peer.shortHex(), to.toString());
        transport.dial(peer, to,
                       [weak = weak_from_this(), peer, to](quic::ConnectionPtr conn,
                                                           const std::string& error) {
                           auto s = weak.lock();
                           if (!s || s->stopped) {
                               if (conn)
                                   conn->close(quic::CloseCode::normal, "stopping");
                               return;
                           }
                           if (!conn) {
                               s->count("dials_failed");
                               spdlog::debug("dial {} at {}: {}", peer.shortHex(), to.toString(),
                                             error);
                               return;
                           }
                           // The first confirmed handshake wins; a later one on another path
                           // waits on standby until the first has said hello (the server keeps
                           // only the one that says hello), and is closed then.
                           bool have = false;
                           for (const auto& l : s->pending)
                               have = have || (l->peer == peer && l->conn->isClient());
                           if (have) {
                               auto it = s->attempts.find(peer);
                               if (it == s->attempts.end()) {
                                   conn->close(quic::CloseCode::replaced, "another path won");
                                   return;
                               }
                               it->second->standby.push_back(conn);
                               return;
                           }
                           s->setupLink(conn);
                       });
    }
}

void LinkManager::Impl::punchAll(const dht::ContactId& peer,
                                 const std::vector<dht::SocketAddress>& targets) {
    auto a = attemptFor(peer, false);
    for (const auto& t : targets)
        if (a->punched.insert(t.toString()).second)
            a->punchTargets.push_back(t);
    if (a->punchesLeft == 0) {
        a->punchesLeft = options.punchCount;
        punchTick(a);
    } else {
        a->punchesLeft = options.punchCount;
    }
}

void LinkManager::Impl::punchTick(const std::shared_ptr<Attempt>& a) {
    if (stopped || a->punchesLeft <= 0 || active.count(a->peer))
        return;
    --a->punchesLeft;
    for (const auto& t : a->punchTargets)
        transport.punch(t);
    count("punches");
    a->punchTimer->expires_after(options.punchInterval);
    a->punchTimer->async_wait([weak = weak_from_this(), a](const std::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->stopped)
            return;
        s->punchTick(a);
    });
}

void LinkManager::Impl::setupLink(const quic::ConnectionPtr& conn) {
    auto link = std::make_shared<Link>();
    link->peer = conn->peer();
    link->conn = conn;
    link->timer = std::make_unique<asio::steady_timer>(io);
    pending.insert(link);
    std::weak_ptr<Link> wl = link;
    auto weak = weak_from_this();
    conn->onStreamData = [weak, wl](std::int64_t stream, std::span<const std::uint8_t> data,
                                    bool fin) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onData(l, stream, data, fin);
    };
    conn->onClosed = [weak, wl](const quic::CloseReason& why) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onClosed(l, why);
    };
    conn->start();
    if (conn->isClient()) {
        link->control = conn->openBidiStream();
        if (link->control < 0 || !sendOn(link, hello())) {
            protocolError(link, "cannot open the control stream");
            return;
        }
    }
    link->timer->expires_after(options.helloTimeout);
    link->timer->async_wait([weak, wl](const std::error_code& ec) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (ec || !s || !l || l->active)
            return;
        s->protocolError(l, "no hello within the deadline");
    });
}

// --- control stream -----------------------------------------------------------------------------

bool LinkManager::Impl::sendOn(const std::shared_ptr<Link>& link, const wire::Message& message) {
    if (link->control < 0 || link->conn->closed())
        return false;
    std::vector<std::uint8_t> bytes;
    if (auto error = wire::encodeFrame(message, bytes); error != wire::FrameError::ok) {
        count("encode_errors");
        spdlog::error("not sending a {} frame to {}: {}", wire::typeName(message),
                      link->peer.shortHex(), wire::describe(error));
        return false;
    }
    auto backlog = link->conn->write(link->control, bytes);
    if (backlog > kMaxControlBacklog) {
        protocolError(link, "the peer does not read its control stream");
        return false;
    }
    return backlog > 0;
}

void LinkManager::Impl::protocolError(const std::shared_ptr<Link>& link,
                                      const std::string& reason) {
    count("protocol_errors");
    spdlog::warn("closing the connection with {}: {}", link->peer.shortHex(), reason);
    link->closedByUs = true;
    link->conn->close(quic::CloseCode::protocol, reason);
}

void LinkManager::Impl::onData(const std::shared_ptr<Link>& link, std::int64_t stream,
                               std::span<const std::uint8_t> data, bool fin) {
    if (link->control < 0 && !link->conn->isClient() && stream % 4 == 0)
        link->control = stream; // the client's first bidirectional stream
    if (stream != link->control) {
        count("unknown_streams");
        link->conn->resetStream(stream, 0); // nothing else is defined yet
        return;
    }
    auto err = link->reader.push(data);
    if (err != wire::FrameError::ok) {
        protocolError(link, std::string(wire::describe(err)));
        return;
    }
    while (auto payload = link->reader.next()) {
        wire::Message message;
        err = wire::decodeMessage(*payload, message);
        if (err == wire::FrameError::unknownType) {
            count("unknown_frames"); // a newer peer: ignore
            continue;
        }
        if (err != wire::FrameError::ok) {
            protocolError(link, std::string(wire::describe(err)));
            return;
        }
        onMessage(link, message);
        if (link->conn->closed())
            return;
    }
    if (fin)
        protocolError(link, "the peer ended its control stream");
}

void LinkManager::Impl::onMessage(const std::shared_ptr<Link>& link, const wire::Message& message) {
    if (auto* h = std::get_if<wire::Hello>(&message)) {
        if (link->helloReceived) {
            protocolError(link, "a second hello");
            return;
        }
        if (h->version < hello().minVersion) {
            protocolError(link, "incompatible protocol version " + std::to_string(h->version));
            return;
        }
        link->helloReceived = true;
        link->peerHello = *h;
        if (!link->conn->isClient() && !sendOn(link, hello()))
            return;
        activate(link);
        return;
    }
    if (!link->helloReceived) {
        protocolError(link, "a frame before the hello");
        return;
    }
    if (auto* p = std::get_if<wire::Ping>(&message)) {
        sendOn(link, wire::Pong{p->seq, p->sentUs});
        return;
    }
    if (auto* p = std::get_if<wire::Pong>(&message)) {
        auto it = link->pings.find(p->seq);
        if (it == link->pings.end())
            return; // late: the pinger gave up on it
        auto done = std::move(it->second);
        link->pings.erase(it);
        done(static_cast<double>(monotonicUs() - p->sentUs) / 1000.0);
        return;
    }
    if (auto* g = std::get_if<wire::Goodbye>(&message)) {
        spdlog::info("{} says goodbye: {}", link->peer.shortHex(), g->reason);
        link->closedByUs = true;
        link->goodbye = true;
        link->conn->close(quic::CloseCode::normal, "goodbye");
        return;
    }
    link->lastUsed = Clock::now();
    if (messageHandler)
        messageHandler(link->peer, message);
}

void LinkManager::Impl::activate(const std::shared_ptr<Link>& link) {
    pending.erase(link);
    if (!contacts.isAccepted(link->peer)) {
        link->closedByUs = true;
        link->conn->close(quic::CloseCode::unwanted, "not an accepted contact");
        return;
    }
    link->active = true;
    link->establishedAt = link->lastUsed = Clock::now();
    auto& slot = active[link->peer];
    if (slot && slot != link) {
        slot->closedByUs = true;
        slot->conn->close(quic::CloseCode::replaced, "replaced by a newer connection");
    }
    slot = link;
    lastRemote[link->peer] = link->conn->remote();
    reconnects.erase(link->peer);
    // Other paths that are still being set up for this contact are not needed any more.
    if (auto at = attempts.find(link->peer); at != attempts.end()) {
        for (auto& c : at->second->standby)
            c->close(quic::CloseCode::replaced, "another path won");
        at->second->standby.clear();
    }
    for (auto it = pending.begin(); it != pending.end();) {
        auto other = *it;
        if (other->peer == link->peer && other->conn->isClient() && link->conn->isClient()) {
            it = pending.erase(it);
            other->closedByUs = true;
            other->conn->close(quic::CloseCode::replaced, "another path won");
        } else {
            ++it;
        }
    }
    count("links_up");
    auto role = link->conn->isClient() ? "client" : "server";
    spdlog::info("direct link to {} at {} ({})", link->peer.shortHex(),
                 link->conn->remote().toString(), role);
    events({{"type", "link.up"},
            {"id", link->peer.toHex()},
            {"remote", link->conn->remote().toString()},
            {"role", role}});
    finishAttempt(link->peer, succeeded(link, false));
    armIdle(link);
    if (linkHandler)
        linkHandler(link->peer, {.up = true, .goodbye = false, .reason = {}});
}

void LinkManager::Impl::armIdle(const std::shared_ptr<Link>& link) {
    auto check =
        std::max<std::chrono::milliseconds>(options.idleClose / 4, std::chrono::milliseconds(100));
    link->timer->expires_after(
        std::min<std::chrono::milliseconds>(check, std::chrono::seconds(30)));
    link->timer->async_wait(
        [weak = weak_from_this(), wl = std::weak_ptr<Link>(link)](const std::error_code& ec) {
            auto s = weak.lock();
            auto l = wl.lock();
            if (ec || !s || !l || l->conn->closed())
                return;
            if (Clock::now() - l->lastUsed >= s->options.idleClose && l->pings.empty()) {
                l->closedByUs = true;
                s->count("idle_closes");
                l->conn->close(quic::CloseCode::normal, "idle");
                return;
            }
            s->armIdle(l);
        });
}

void LinkManager::Impl::onClosed(const std::shared_ptr<Link>& link, const quic::CloseReason& why) {
    const std::string& reason = why.text;
    bool wasPending = pending.erase(link) > 0;
    link->timer->cancel();
    // A path that never said hello: the next confirmed one (if any) takes over.
    if (wasPending && link->conn->isClient())
        if (auto at = attempts.find(link->peer); at != attempts.end())
            while (!at->second->standby.empty()) {
                auto next = at->second->standby.front();
                at->second->standby.erase(at->second->standby.begin());
                if (!next->closed()) {
                    count("standby_promoted");
                    setupLink(next);
                    break;
                }
            }
    for (auto& [seq, done] : link->pings)
        done(std::nullopt);
    link->pings.clear();
    auto it = active.find(link->peer);
    if (it == active.end() || it->second != link)
        return;
    active.erase(it);
    count("links_down");
    events({{"type", "link.down"}, {"id", link->peer.toHex()}, {"reason", reason}});
    if (linkHandler)
        linkHandler(link->peer, {.up = false, .goodbye = link->goodbye, .reason = reason});
    // Lost rather than closed on purpose (the peer restarted, moved or vanished) while in
    // use: set it up again. A peer's own close (idle, shutdown, goodbye) is deliberate.
    bool deliberate =
        link->closedByUs || why.by == quic::ClosedBy::us || why.by == quic::ClosedBy::peer;
    if (!deliberate && !stopped && Clock::now() - link->lastUsed < options.idleClose) {
        spdlog::info("link to {} lost ({}); reconnecting", link->peer.shortHex(), reason);
        scheduleReconnect(link->peer);
    }
}

void LinkManager::Impl::scheduleReconnect(const dht::ContactId& peer) {
    auto& [tries, timer] = reconnects[peer];
    if (!timer)
        timer = std::make_unique<asio::steady_timer>(io);
    auto delay = std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(500 << std::min(tries, 8)), options.reconnectMax);
    ++tries;
    timer->expires_after(delay);
    timer->async_wait([weak = weak_from_this(), peer](const std::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->stopped || s->active.count(peer) || !s->contacts.isAccepted(peer))
            return;
        s->count("reconnects");
        s->attemptFor(peer, true);
        auto w = std::make_shared<Waiter>();
        w->timer = std::make_shared<asio::steady_timer>(s->io);
        w->done = [weak, peer](const ConnectResult& r) {
            auto s2 = weak.lock();
            if (!s2 || r.ok || s2->stopped)
                return;
            auto it = s2->reconnects.find(peer);
            if (it != s2->reconnects.end() && it->second.first < 12)
                s2->scheduleReconnect(peer);
        };
        s->attempts[peer]->waiters.push_back(w);
    });
}

// --- public -----------------------------------------------------------------------------------

LinkManager::LinkManager(asio::io_context& io, quic::Transport& transport,
                         ContactDirectory& contacts, dht::Overlay& overlay,
                         const dht::ContactId& self, EventSink events, LinkOptions options)
    : impl_(std::make_shared<Impl>(io, transport, contacts, overlay)) {
    impl_->self = self;
    impl_->events = std::move(events);
    impl_->options = options;
}

LinkManager::~LinkManager() {
    stop();
}

void LinkManager::start() {
    auto weak = std::weak_ptr<Impl>(impl_);
    impl_->transport.setAuthorizer([weak](const dht::ContactId& peer) {
        auto s = weak.lock();
        return s && !s->stopped && s->contacts.isAccepted(peer);
    });
    impl_->transport.setAcceptHandler([weak](quic::ConnectionPtr conn) {
        auto s = weak.lock();
        if (!s || s->stopped) {
            conn->close(quic::CloseCode::normal, "stopping");
            return;
        }
        s->setupLink(conn);
    });
    // Our client restarted? Ask it to connect again: if it did, its new connection replaces
    // the dead one at once instead of after the 30 s idle timeout.
    impl_->transport.setSuspectHandler([weak](quic::ConnectionPtr conn) {
        auto s = weak.lock();
        if (!s || s->stopped)
            return;
        auto it = s->active.find(conn->peer());
        if (it == s->active.end() || it->second->conn != conn)
            return;
        s->count("suspected_restarts");
        spdlog::info("{} at {} may have restarted; asking it to connect again",
                     conn->peer().shortHex(), conn->remote().toString());
        s->attemptFor(conn->peer(), true);
    });
}

void LinkManager::stop() {
    auto& s = *impl_;
    if (s.stopped)
        return;
    s.stopped = true;
    s.timers.cancelAll();
    for (auto& [peer, a] : s.attempts) {
        a->lifetime->cancel();
        a->punchTimer->cancel();
    }
    auto attempts = std::move(s.attempts);
    for (auto& [peer, a] : attempts)
        for (auto& w : a->waiters) {
            w->timer->cancel();
            if (auto done = std::move(w->done))
                done(failed("the node is stopping"));
        }
    for (auto& [peer, r] : s.reconnects)
        if (r.second)
            r.second->cancel();
    for (auto& [peer, link] : s.active) {
        link->closedByUs = true;
        link->timer->cancel();
        s.sendOn(link, wire::Goodbye{"shutting down"});
    }
    for (auto& link : s.pending)
        link->timer->cancel();
}

bool LinkManager::send(const dht::ContactId& peer, const wire::Message& message) {
    auto it = impl_->active.find(peer);
    if (it == impl_->active.end())
        return false;
    it->second->lastUsed = Clock::now();
    return impl_->sendOn(it->second, message);
}

void LinkManager::connect(const dht::ContactId& peer, std::chrono::milliseconds timeout,
                          std::function<void(const ConnectResult&)> done) {
    auto& s = *impl_;
    auto fail = [&](const std::string& error) {
        asio::post(s.io, [done, error] { done(failed(error)); });
    };
    if (s.stopped)
        return fail("the node is stopping");
    if (peer == s.self)
        return fail("that is this node's own contact id");
    if (!s.contacts.isAccepted(peer))
        return fail(peer.shortHex() + " is not an accepted contact: only contacts get "
                                      "direct connections");
    if (auto it = s.active.find(peer); it != s.active.end() && !it->second->conn->closed()) {
        auto& link = it->second;
        link->lastUsed = Clock::now();
        auto r = succeeded(link, true);
        asio::post(s.io, [done, r] { done(r); });
        return;
    }
    auto a = s.attemptFor(peer, true);
    auto w = std::make_shared<Waiter>();
    w->done = std::move(done);
    w->timer = std::make_shared<asio::steady_timer>(s.io, timeout);
    w->timer->async_wait([w, peer](const std::error_code& ec) {
        if (ec)
            return;
        if (auto d = std::move(w->done)) {
            w->done = nullptr;
            d(failed("timed out: no direct connection to " + peer.shortHex() +
                     " yet (is the contact online?)"));
        }
    });
    a->waiters.push_back(w);
}

void LinkManager::ping(const dht::ContactId& peer, int count, std::chrono::milliseconds interval,
                       std::chrono::milliseconds timeout, std::function<void(json)> done) {
    auto weak = std::weak_ptr<Impl>(impl_);
    auto started = Clock::now();
    connect(peer, timeout, [weak, peer, count, interval, done, started](const ConnectResult& r) {
        auto s = weak.lock();
        json out = {{"contact", peer.toHex()}, {"connected", r.ok}, {"reused", r.reused}};
        if (!r.ok || !s) {
            out["error"] = r.ok ? "the node is stopping" : r.error;
            out["elapsed_ms"] = msSince(started);
            done(out);
            return;
        }
        out["setup_ms"] = r.reused ? 0.0 : r.setupMs;
        out["remote"] = r.remote;
        out["role"] = r.role;
        out["rtt_ms"] = json::array();
        auto state = std::make_shared<json>(std::move(out));
        auto remaining = std::make_shared<int>(count);
        auto timer = std::make_shared<asio::steady_timer>(s->io);
        auto next = std::make_shared<std::function<void()>>();
        *next = [weak, peer, interval, done, state, remaining, timer, next]() {
            auto s2 = weak.lock();
            auto finish = [&] {
                (*state)["lost"] = 0;
                for (const auto& v : (*state)["rtt_ms"])
                    if (v.is_null())
                        (*state)["lost"] = (*state)["lost"].get<int>() + 1;
                done(*state);
                *next = nullptr; // break the cycle
            };
            if (!s2 || *remaining <= 0) {
                finish();
                return;
            }
            auto it = s2->active.find(peer);
            if (it == s2->active.end()) {
                (*state)["error"] = "the link closed";
                finish();
                return;
            }
            auto link = it->second;
            --*remaining;
            link->lastUsed = Clock::now();
            auto seq = link->nextPing++;
            auto answered = std::make_shared<bool>(false);
            auto record = [weak, state, remaining, timer, next, interval,
                           answered](std::optional<double> rtt) {
                if (*answered)
                    return;
                *answered = true;
                (*state)["rtt_ms"].push_back(rtt ? json(*rtt) : json(nullptr));
                auto s3 = weak.lock();
                if (!s3 || !*next)
                    return;
                timer->expires_after(*remaining > 0 ? interval : std::chrono::milliseconds(0));
                timer->async_wait([next](const std::error_code& ec) {
                    if (!ec && *next)
                        (*next)();
                });
            };
            link->pings[seq] = record;
            // A ping that gets no pong in 5 s counts as lost.
            // (Cancelled at stop; the link's close then answers the ping as lost.)
            s2->timers.after(std::chrono::seconds(5),
                             [wl = std::weak_ptr<Link>(link), seq, record] {
                                 if (auto l = wl.lock())
                                     l->pings.erase(seq);
                                 record(std::nullopt);
                             });
            s2->sendOn(link, wire::Ping{seq, monotonicUs()});
        };
        (*next)();
    });
}

bool LinkManager::connected(const dht::ContactId& peer) const {
    return impl_->active.count(peer) > 0;
}

void LinkManager::disconnect(const dht::ContactId& peer, const std::string& reason) {
    auto it = impl_->active.find(peer);
    if (it == impl_->active.end())
        return;
    it->second->closedByUs = true;
    it->second->conn->close(quic::CloseCode::unwanted, reason);
}

void LinkManager::setMessageHandler(MessageHandler handler) {
    impl_->messageHandler = std::move(handler);
}

void LinkManager::setMappedEndpoints(std::function<std::vector<std::string>()> source) {
    impl_->mapped = std::move(source);
}

void LinkManager::setLinkHandler(LinkHandler handler) {
    impl_->linkHandler = std::move(handler);
}

void LinkManager::onConnectEnvelope(const dht::Envelope& e) {
    auto& s = *impl_;
    if (s.stopped)
        return;
    auto targets = selectCandidates(e.candidates, s.policy());
    auto until = Clock::now() + s.options.attemptLifetime;
    for (const auto& t : targets)
        s.transport.expect(t, until);
    if (e.kind == dht::EnvelopeKind::connectRequest) {
        s.count("requests_received");
        dht::Envelope answer;
        answer.kind = dht::EnvelopeKind::connectAnswer;
        answer.id = randomId();
        answer.createdMs = dht::unixMs();
        answer.from = s.self;
        answer.to = e.from;
        answer.replyTo = e.id;
        answer.candidates = s.ourCandidates();
        s.contacts.sendNow(answer, [weak = std::weak_ptr<Impl>(impl_)](bool ok) {
            if (auto st = weak.lock(); st && !ok)
                st->count("answers_not_stored");
        });
    } else {
        auto it = s.attempts.find(e.from);
        if (it == s.attempts.end() || it->second->requestId != e.replyTo) {
            s.count("answers_unmatched"); // stale, or for an attempt that is over
            return;
        }
        s.count("answers_received");
    }
    spdlog::debug("{} from {}: {} usable candidates", dht::toString(e.kind), e.from.shortHex(),
                  targets.size());
    if (s.client(e.from))
        s.dialAll(e.from, targets);
    else
        s.punchAll(e.from, targets);
}

std::vector<std::string> LinkManager::candidates() const {
    return impl_->ourCandidates();
}

json LinkManager::status() const {
    json links = json::array();
    for (const auto& [peer, link] : impl_->active) {
        auto st = link->conn->stats();
        links.push_back(
            {{"id", peer.toHex()},
             {"remote", link->conn->remote().toString()},
             {"role", link->conn->isClient() ? "client" : "server"},
             {"rtt_ms", static_cast<double>(st.smoothedRtt.count()) / 1000.0},
             {"age_s", std::chrono::duration<double>(Clock::now() - link->establishedAt).count()},
             {"idle_s", std::chrono::duration<double>(Clock::now() - link->lastUsed).count()},
             {"agent", link->peerHello.agent}});
    }
    return links;
}

json LinkManager::counters() const {
    json out = json::object();
    for (const auto& [k, v] : impl_->counts)
        out[k] = v;
    auto t = impl_->transport.stats();
    out["quic_connections"] = t.connections;
    out["quic_handshakes_in_progress"] = t.handshakesInProgress;
    out["quic_handshakes_refused"] = t.handshakesRefused;
    out["quic_initials_dropped"] = t.initialsDropped;
    out["quic_connections_failed"] = t.connectionsFailed;
    out["quic_stateless_resets_sent"] = t.statelessResetsSent;
    return out;
}

} // namespace parley::node
