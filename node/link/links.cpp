// LinkManager: the glue that performs LinkCore's actions on QUIC and asio (links come up and
// go down, idle close, reconnect) and the public calls connect, send and status. Rendezvous
// is in rendezvous.cpp, the control stream's messages and ping in link_control.cpp, typed
// bulk streams in link_streams.cpp.
#include "dht/clock.h"
#include "node/link/contact_directory.h"
#include "node/link/links_internal.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <spdlog/spdlog.h>

namespace parley::node {

using Clock = link::SteadyClock;
using link::failed;
using link::Link;
using link::succeeded;

namespace {

quic::CloseCode closeCode(link::CloseCode code) {
    switch (code) {
    case link::CloseCode::protocol:
        return quic::CloseCode::protocol;
    case link::CloseCode::replaced:
        return quic::CloseCode::replaced;
    case link::CloseCode::unwanted:
        return quic::CloseCode::unwanted;
    case link::CloseCode::normal:
        break;
    }
    return quic::CloseCode::normal;
}

} // namespace

namespace link {

ConnectResult failed(std::string error) {
    ConnectResult r;
    r.error = std::move(error);
    return r;
}

ConnectResult succeeded(const Link& link, bool reused) {
    ConnectResult r;
    r.ok = true;
    r.reused = reused;
    r.remote = link.conn->remote().toString();
    r.role = link.conn->isClient() ? "client" : "server";
    return r;
}

} // namespace link

LinkManager::Impl::Impl(asio::io_context& ioContext, quic::Transport& t, ContactDirectory& c,
                        dht::Overlay& o, const dht::ContactId& selfId, LinkOptions opts)
    : io(ioContext), transport(t), contacts(c), overlay(o), self(selfId), options(opts),
      core(selfId, opts, dht::SystemRandom::instance(),
           [&c](const dht::ContactId& peer) { return c.isAccepted(peer); }),
      deadline(ioContext), timers(ioContext) {}

wire::Hello LinkManager::Impl::hello() const {
    wire::Hello h;
    h.features = {"ping"};
    h.agent = std::string("parley/") + PARLEY_VERSION;
    return h;
}

std::shared_ptr<Link> LinkManager::Impl::activeLink(const dht::ContactId& peer) const {
    auto id = core.activeLink(peer);
    if (!id)
        return nullptr;
    auto it = links.find(*id);
    return it == links.end() ? nullptr : it->second;
}

// --- performing the core's actions
// ----------------------------------------------------------------

// Performs actions until the core has none left, then waits for its next deadline. Actions
// that lead to more events (a waiter's callback connecting again) queue behind.
void LinkManager::Impl::drain() {
    if (draining)
        return;
    draining = true;
    while (auto action = core.nextAction())
        perform(*action);
    draining = false;
    arm();
}

void LinkManager::Impl::arm() {
    auto next = core.nextDeadline();
    if (next == armedFor)
        return;
    armedFor = next;
    if (!next) {
        deadline.cancel();
        return;
    }
    deadline.expires_at(*next);
    deadline.async_wait([weak = weak_from_this(), at = *next](const std::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->armedFor != at)
            return;
        s->armedFor.reset();
        s->core.tick(Clock::now());
        s->drain();
    });
}

void LinkManager::Impl::perform(const link::Action& action) {
    namespace act = link::act;
    auto find = [&](link::ConnId id) {
        auto it = links.find(id);
        return it == links.end() ? nullptr : it->second;
    };
    if (auto* a = std::get_if<act::SendRequest>(&action)) {
        sendRequest(a->peer, a->id);
    } else if (auto* d = std::get_if<act::Dial>(&action)) {
        dial(d->peer, d->to);
    } else if (auto* p = std::get_if<act::Punch>(&action)) {
        punch(p->targets);
    } else if (auto* st = std::get_if<act::StartConnection>(&action)) {
        if (auto l = find(st->conn))
            startConnection(l);
    } else if (auto* g = std::get_if<act::SendGoodbye>(&action)) {
        if (auto l = find(g->conn))
            sendOn(l, wire::Goodbye{"shutting down"});
    } else if (auto* c = std::get_if<act::Close>(&action)) {
        auto l = find(c->conn);
        if (!l)
            return;
        if (c->code == link::CloseCode::protocol)
            spdlog::warn("closing the connection with {}: {}", l->peer.shortHex(), c->reason);
        l->conn->close(closeCode(c->code), c->reason);
    } else if (auto* up = std::get_if<act::LinkUp>(&action)) {
        if (auto l = find(up->conn))
            linkUp(l);
    } else if (auto* down = std::get_if<act::LinkDown>(&action)) {
        linkDown(*down);
    } else if (auto* w = std::get_if<act::WaiterDone>(&action)) {
        waiterDone(*w);
    }
}

// Gives a confirmed connection an id; the core hears of its close.
std::shared_ptr<Link> LinkManager::Impl::track(const quic::ConnectionPtr& conn) {
    auto link = std::make_shared<Link>();
    link->id = nextConn++;
    link->peer = conn->peer();
    link->conn = conn;
    links[link->id] = link;
    conn->onClosed = [weak = weak_from_this(),
                      wl = std::weak_ptr<Link>(link)](const quic::CloseReason& why) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onClosed(l, why);
    };
    return link;
}

void LinkManager::Impl::startConnection(const std::shared_ptr<Link>& link) {
    auto& conn = link->conn;
    conn->onStreamData = [weak = weak_from_this(), wl = std::weak_ptr<Link>(link)](
                             std::int64_t stream, std::span<const std::uint8_t> data, bool fin) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onData(l, stream, data, fin);
    };
    conn->autoConsume = false;
    conn->onStreamClosed = [weak = weak_from_this(),
                            wl = std::weak_ptr<Link>(link)](std::int64_t stream) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onStreamClosed(l, stream);
    };
    conn->onWritable = [weak = weak_from_this(),
                        wl = std::weak_ptr<Link>(link)](std::int64_t stream) {
        auto s = weak.lock();
        auto l = wl.lock();
        if (s && l)
            s->onWritable(l, stream);
    };
    conn->start();
    if (conn->isClient()) {
        link->control = conn->openBidiStream();
        if (link->control < 0 || !sendOn(link, hello()))
            protocolError(link, "cannot open the control stream");
    }
}

void LinkManager::Impl::linkUp(const std::shared_ptr<Link>& link) {
    auto role = link->conn->isClient() ? "client" : "server";
    spdlog::info("direct link to {} at {} ({})", link->peer.shortHex(),
                 link->conn->remote().toString(), role);
    events({.up = true,
            .peer = link->peer,
            .remote = link->conn->remote().toString(),
            .role = role,
            .reason = {}});
    if (linkHandler)
        linkHandler(link->peer, {.up = true, .goodbye = false, .reason = {}});
}

void LinkManager::Impl::linkDown(const link::act::LinkDown& down) {
    events({.up = false, .peer = down.peer, .remote = {}, .role = {}, .reason = down.reason});
    if (linkHandler)
        linkHandler(down.peer, {.up = false, .goodbye = down.goodbye, .reason = down.reason});
    if (down.reconnect)
        spdlog::info("link to {} lost ({}); reconnecting", down.peer.shortHex(), down.reason);
}

void LinkManager::Impl::waiterDone(const link::act::WaiterDone& w) {
    auto it = waiters.find(w.waiter);
    if (it == waiters.end())
        return;
    auto done = std::move(it->second);
    waiters.erase(it);
    ConnectResult r = failed(w.error);
    if (w.ok) {
        auto l = links.find(w.conn);
        if (l == links.end())
            r = failed("the link closed");
        else
            r = succeeded(*l->second, false);
        r.setupMs = w.setupMs;
    }
    done(r);
}

void LinkManager::Impl::onClosed(const std::shared_ptr<Link>& link, const quic::CloseReason& why) {
    auto pings = std::move(link->pings);
    link->pings.clear();
    for (auto& [seq, done] : pings)
        done(std::nullopt);
    closeStreams(link);
    auto by = why.by == quic::ClosedBy::us     ? link::ClosedBy::us
              : why.by == quic::ClosedBy::peer ? link::ClosedBy::peer
                                               : link::ClosedBy::other;
    core.onClosed(link->id, by, why.text, Clock::now());
    links.erase(link->id);
    drain();
}

// --- public -----------------------------------------------------------------------------------

LinkManager::LinkManager(asio::io_context& io, quic::Transport& transport,
                         ContactDirectory& contacts, dht::Overlay& overlay,
                         const dht::ContactId& self, EventSink events, LinkOptions options)
    : impl_(std::make_shared<Impl>(io, transport, contacts, overlay, self, options)) {
    impl_->events = std::move(events);
}

LinkManager::~LinkManager() {
    stop();
}

void LinkManager::start() {
    auto weak = std::weak_ptr<Impl>(impl_);
    impl_->transport.setAuthorizer([weak](const dht::ContactId& peer) {
        auto s = weak.lock();
        return s && !s->stopped() && s->contacts.isAccepted(peer);
    });
    impl_->transport.setAcceptHandler([weak](quic::ConnectionPtr conn) {
        auto s = weak.lock();
        if (!s || s->stopped()) {
            conn->close(quic::CloseCode::normal, "stopping");
            return;
        }
        auto l = s->track(conn);
        s->core.onAccepted(l->id, conn->peer(), conn->remote(), Clock::now());
        s->drain();
    });
    // Our client restarted? Ask it to connect again: if it did, its new connection replaces
    // the dead one at once instead of after the 30 s idle timeout.
    impl_->transport.setSuspectHandler([weak](quic::ConnectionPtr conn) {
        auto s = weak.lock();
        if (!s || s->stopped())
            return;
        auto l = s->activeLink(conn->peer());
        if (!l || l->conn != conn)
            return;
        spdlog::info("{} at {} may have restarted; asking it to connect again",
                     conn->peer().shortHex(), conn->remote().toString());
        s->core.onSuspect(l->id, Clock::now());
        s->drain();
    });
}

void LinkManager::stop() {
    auto& s = *impl_;
    if (s.stopped())
        return;
    s.timers.cancelAll();
    s.core.stop(); // fails the waiters, says goodbye on every link
    s.drain();
}

bool LinkManager::send(const dht::ContactId& peer, const wire::Message& message) {
    auto link = impl_->activeLink(peer);
    if (!link)
        return false;
    impl_->core.onUsed(link->id, Clock::now());
    return impl_->sendOn(link, message);
}

void LinkManager::connect(const dht::ContactId& peer, std::chrono::milliseconds timeout,
                          std::function<void(const ConnectResult&)> done) {
    auto& s = *impl_;
    auto fail = [&](const std::string& error) {
        asio::post(s.io, [done, error] { done(failed(error)); });
    };
    if (s.stopped())
        return fail("the node is stopping");
    if (peer == s.self)
        return fail("that is this node's own contact id");
    if (!s.contacts.isAccepted(peer))
        return fail(peer.shortHex() + " is not an accepted contact: only contacts get "
                                      "direct connections");
    if (auto link = s.activeLink(peer); link && !link->conn->closed()) {
        s.core.onUsed(link->id, Clock::now());
        auto r = succeeded(*link, true);
        asio::post(s.io, [done, r] { done(r); });
        return;
    }
    auto id = s.core.connect(peer, timeout, Clock::now());
    s.waiters[id] = std::move(done);
    s.drain();
}

bool LinkManager::connected(const dht::ContactId& peer) const {
    return impl_->core.activeLink(peer).has_value();
}

void LinkManager::disconnect(const dht::ContactId& peer, const std::string& reason) {
    impl_->core.disconnect(peer, reason);
    impl_->drain();
}

void LinkManager::setMessageHandler(MessageHandler handler) {
    impl_->messageHandler = std::move(handler);
}

void LinkManager::setLinkHandler(LinkHandler handler) {
    impl_->linkHandler = std::move(handler);
}

std::vector<LinkStatus> LinkManager::status() const {
    std::vector<LinkStatus> out;
    for (const auto& [peer, id] : impl_->core.active()) {
        auto it = impl_->links.find(id);
        if (it == impl_->links.end())
            continue;
        auto& link = *it->second;
        auto st = link.conn->stats();
        auto seconds = [](Clock::time_point t) {
            return std::chrono::duration<double>(Clock::now() - t).count();
        };
        out.push_back({.peer = peer,
                       .remote = link.conn->remote().toString(),
                       .role = link.conn->isClient() ? "client" : "server",
                       .rttMs = static_cast<double>(st.smoothedRtt.count()) / 1000.0,
                       .ageS = seconds(impl_->core.establishedAt(id)),
                       .idleS = seconds(impl_->core.lastUsed(id)),
                       .agent = link.controlStream.peerHello().agent});
    }
    return out;
}

std::map<std::string, std::uint64_t> LinkManager::counters() const {
    auto out = impl_->counts;
    for (const auto& [k, v] : impl_->core.counts())
        out[k] += v;
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
