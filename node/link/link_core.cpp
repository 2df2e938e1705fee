// LinkCore: attempts, punches, hello deadlines, standby paths, idle close, reconnect backoff.
#include "node/link/link_core.h"

#include <algorithm>

namespace parley::node::link {

using std::chrono::milliseconds;

namespace {

void earliest(std::optional<TimePoint>& best, const std::optional<TimePoint>& t) {
    if (t && (!best || *t < *best))
        best = t;
}

double msBetween(TimePoint from, TimePoint to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

} // namespace

LinkCore::LinkCore(const dht::ContactId& self, LinkOptions options, dht::Random& random,
                   std::function<bool(const dht::ContactId&)> accepted)
    : self_(self), options_(options), random_(random), accepted_(std::move(accepted)) {}

// --- attempts -----------------------------------------------------------------------------------

LinkCore::Attempt& LinkCore::attemptFor(const dht::ContactId& peer, bool withRequest,
                                        TimePoint now) {
    auto [it, created] = attempts_.try_emplace(peer);
    auto& a = it->second;
    if (created) {
        random_.fill(a.requestId);
        a.started = now;
        a.expires = now + options_.attemptLifetime;
        // A client that connected to this contact before tries the last address at once, in
        // parallel with the connect request.
        if (client(peer))
            if (auto last = lastRemote_.find(peer); last != lastRemote_.end())
                dialAll(peer, {last->second}, now);
    }
    if (withRequest && !a.requestSent) {
        a.requestSent = true;
        emit(act::SendRequest{peer, a.requestId});
    }
    return a;
}

WaiterId LinkCore::connect(const dht::ContactId& peer, milliseconds timeout, TimePoint now) {
    auto& a = attemptFor(peer, true, now);
    auto id = nextWaiter_++;
    a.waiters.push_back({id, now + timeout});
    return id;
}

void LinkCore::finishAttempt(const dht::ContactId& peer, bool ok, ConnId conn,
                             const std::string& error, TimePoint now) {
    auto it = attempts_.find(peer);
    if (it == attempts_.end())
        return;
    auto a = std::move(it->second);
    attempts_.erase(it);
    for (auto& [c, remote] : a.standby)
        emit(act::Close{c, CloseCode::replaced, "another path won"});
    bool reconnectWaiter = false;
    for (const auto& w : a.waiters) {
        if (!w.deadline) {
            reconnectWaiter = true;
            continue;
        }
        emit(act::WaiterDone{w.id, ok, ok ? conn : 0, ok ? msBetween(a.started, now) : 0.0,
                             ok ? std::string() : error});
    }
    // A reconnect that did not get through tries again (a dozen times at most).
    if (reconnectWaiter && !ok && !stopped_)
        if (auto r = reconnects_.find(peer); r != reconnects_.end() && r->second.tries < 12)
            scheduleReconnect(peer, now);
}

bool LinkCore::onConnectEnvelope(const dht::ContactId& from, bool answer, const RequestId& replyTo,
                                 const std::vector<dht::SocketAddress>& targets, TimePoint now) {
    if (stopped_)
        return false;
    if (answer) {
        auto it = attempts_.find(from);
        if (it == attempts_.end() || it->second.requestId != replyTo) {
            count("answers_unmatched"); // stale, or for an attempt that is over
            return false;
        }
        count("answers_received");
    } else {
        count("requests_received");
    }
    if (client(from)) {
        dialAll(from, targets, now);
        return true;
    }
    auto& a = attemptFor(from, false, now);
    for (const auto& t : targets)
        if (a.punched.insert(t.toString()).second)
            a.punchTargets.push_back(t);
    if (a.punchesLeft == 0) {
        a.punchesLeft = options_.punchCount;
        punchTick(from, a, now);
    } else {
        a.punchesLeft = options_.punchCount;
    }
    return true;
}

void LinkCore::dialAll(const dht::ContactId& peer, const std::vector<dht::SocketAddress>& targets,
                       TimePoint now) {
    auto& a = attemptFor(peer, false, now);
    for (const auto& to : targets) {
        // An address dialled moments ago is not dialled again; one dialled a while ago is (its
        // Initial may have gone to a process that was stopping, and QUIC's first retransmit
        // comes only after ~300 ms).
        auto [last, first] = a.dialed.try_emplace(to.toString(), now);
        if (!first && now - last->second < milliseconds(150))
            continue;
        last->second = now;
        count("dials");
        emit(act::Dial{peer, to});
    }
}

void LinkCore::punchTick(const dht::ContactId& peer, Attempt& a, TimePoint now) {
    a.nextPunch.reset();
    if (stopped_ || a.punchesLeft <= 0 || active_.count(peer))
        return;
    --a.punchesLeft;
    emit(act::Punch{a.punchTargets});
    count("punches");
    a.nextPunch = now + options_.punchInterval;
}

void LinkCore::onSuspect(ConnId conn, TimePoint now) {
    auto it = links_.find(conn);
    if (stopped_ || it == links_.end())
        return;
    auto act = active_.find(it->second.peer);
    if (act == active_.end() || act->second != conn)
        return;
    count("suspected_restarts");
    attemptFor(it->second.peer, true, now);
}

// --- connections
// ----------------------------------------------------------------------------------

void LinkCore::onDialed(ConnId conn, const dht::ContactId& peer, const dht::SocketAddress& remote,
                        TimePoint now) {
    if (stopped_) {
        emit(act::Close{conn, CloseCode::normal, "stopping"});
        return;
    }
    // The first confirmed handshake wins; a later one on another path waits on standby until
    // the first has said hello (the server keeps only the one that says hello), and is closed
    // then.
    bool have = false;
    for (const auto& [id, l] : links_)
        have = have || (l.peer == peer && l.client && l.pending);
    if (have) {
        auto it = attempts_.find(peer);
        if (it == attempts_.end()) {
            emit(act::Close{conn, CloseCode::replaced, "another path won"});
            return;
        }
        it->second.standby.emplace_back(conn, remote);
        return;
    }
    setupLink(conn, peer, true, remote, now);
}

void LinkCore::onAccepted(ConnId conn, const dht::ContactId& peer, const dht::SocketAddress& remote,
                          TimePoint now) {
    if (stopped_) {
        emit(act::Close{conn, CloseCode::normal, "stopping"});
        return;
    }
    setupLink(conn, peer, false, remote, now);
}

void LinkCore::setupLink(ConnId conn, const dht::ContactId& peer, bool isClient,
                         const dht::SocketAddress& remote, TimePoint now) {
    auto& l = links_[conn];
    l.peer = peer;
    l.client = isClient;
    l.remote = remote;
    l.lastUsed = l.establishedAt = now;
    l.deadline = now + options_.helloTimeout;
    emit(act::StartConnection{conn, isClient});
}

void LinkCore::onHello(ConnId conn, TimePoint now) {
    auto it = links_.find(conn);
    if (it == links_.end() || it->second.helloReceived)
        return;
    it->second.helloReceived = true;
    activate(conn, it->second, now);
}

void LinkCore::activate(ConnId conn, Link& link, TimePoint now) {
    link.pending = false;
    link.deadline.reset();
    if (!accepted_(link.peer)) {
        close(conn, CloseCode::unwanted, "not an accepted contact");
        return;
    }
    link.active = true;
    link.establishedAt = link.lastUsed = now;
    auto peer = link.peer;
    auto& slot = active_[peer];
    if (slot != 0 && slot != conn)
        close(slot, CloseCode::replaced, "replaced by a newer connection");
    slot = conn;
    lastRemote_[peer] = link.remote;
    reconnects_.erase(peer);
    // Other paths that are still being set up for this contact are not needed any more.
    if (auto at = attempts_.find(peer); at != attempts_.end()) {
        for (auto& [c, remote] : at->second.standby)
            emit(act::Close{c, CloseCode::replaced, "another path won"});
        at->second.standby.clear();
    }
    for (auto& [id, other] : links_)
        if (id != conn && other.peer == peer && other.pending && other.client && link.client) {
            other.pending = false;
            other.deadline.reset();
            close(id, CloseCode::replaced, "another path won");
        }
    count("links_up");
    emit(act::LinkUp{peer, conn});
    finishAttempt(peer, true, conn, {}, now);
    armIdle(link, now);
}

void LinkCore::armIdle(Link& link, TimePoint now) {
    auto check = std::max<milliseconds>(options_.idleClose / 4, milliseconds(100));
    link.deadline = now + std::min<milliseconds>(check, std::chrono::seconds(30));
}

void LinkCore::idleCheck(ConnId conn, Link& link, TimePoint now) {
    link.deadline.reset();
    if (!link.active) {
        count("protocol_errors");
        close(conn, CloseCode::protocol, "no hello within the deadline");
        return;
    }
    if (link.closedByUs)
        return; // closing already
    if (now - link.lastUsed >= options_.idleClose && link.pings == 0) {
        count("idle_closes");
        close(conn, CloseCode::normal, "idle");
        return;
    }
    armIdle(link, now);
}

void LinkCore::onUsed(ConnId conn, TimePoint now) {
    if (auto it = links_.find(conn); it != links_.end())
        it->second.lastUsed = now;
}

void LinkCore::onPingStarted(ConnId conn) {
    if (auto it = links_.find(conn); it != links_.end())
        ++it->second.pings;
}

void LinkCore::onPingFinished(ConnId conn) {
    if (auto it = links_.find(conn); it != links_.end() && it->second.pings > 0)
        --it->second.pings;
}

void LinkCore::onGoodbye(ConnId conn) {
    auto it = links_.find(conn);
    if (it == links_.end())
        return;
    it->second.goodbye = true;
    close(conn, CloseCode::normal, "goodbye");
}

void LinkCore::onProtocolError(ConnId conn, const std::string& reason) {
    count("protocol_errors");
    close(conn, CloseCode::protocol, reason);
}

void LinkCore::disconnect(const dht::ContactId& peer, const std::string& reason) {
    if (auto it = active_.find(peer); it != active_.end())
        close(it->second, CloseCode::unwanted, reason);
}

void LinkCore::close(ConnId conn, CloseCode code, std::string reason) {
    if (auto it = links_.find(conn); it != links_.end())
        it->second.closedByUs = true;
    emit(act::Close{conn, code, std::move(reason)});
}

void LinkCore::onClosed(ConnId conn, ClosedBy by, const std::string& reason, TimePoint now) {
    for (auto& [peer, a] : attempts_)
        std::erase_if(a.standby, [&](const auto& s) { return s.first == conn; });
    auto it = links_.find(conn);
    if (it == links_.end())
        return;
    auto link = std::move(it->second);
    links_.erase(it);
    // A path that never said hello: the next confirmed one (if any) takes over.
    if (link.pending && link.client)
        if (auto at = attempts_.find(link.peer);
            at != attempts_.end() && !at->second.standby.empty()) {
            auto [next, remote] = at->second.standby.front();
            at->second.standby.erase(at->second.standby.begin());
            count("standby_promoted");
            setupLink(next, link.peer, true, remote, now);
        }
    auto act = active_.find(link.peer);
    if (act == active_.end() || act->second != conn)
        return;
    active_.erase(act);
    count("links_down");
    // Lost rather than closed on purpose (the peer restarted, moved or vanished) while in use:
    // set it up again. A peer's own close (idle, shutdown, goodbye) is deliberate.
    bool deliberate = link.closedByUs || by != ClosedBy::other;
    bool reconnect = !deliberate && !stopped_ && now - link.lastUsed < options_.idleClose;
    emit(act::LinkDown{link.peer, conn, link.goodbye, reconnect, reason});
    if (reconnect)
        scheduleReconnect(link.peer, now);
}

// --- reconnects
// -----------------------------------------------------------------------------------

void LinkCore::scheduleReconnect(const dht::ContactId& peer, TimePoint now) {
    auto& r = reconnects_[peer];
    auto delay =
        std::min<milliseconds>(milliseconds(500 << std::min(r.tries, 8)), options_.reconnectMax);
    ++r.tries;
    r.due = now + delay;
}

void LinkCore::reconnectDue(const dht::ContactId& peer, TimePoint now) {
    if (stopped_ || active_.count(peer) || !accepted_(peer))
        return;
    count("reconnects");
    auto& a = attemptFor(peer, true, now);
    a.waiters.push_back({nextWaiter_++, std::nullopt});
}

// --- time
// -----------------------------------------------------------------------------------------

void LinkCore::tick(TimePoint now) {
    // Collected first: handlers below change the maps.
    std::vector<dht::ContactId> reconnects, expired, punches;
    std::vector<std::pair<dht::ContactId, WaiterId>> timedOut;
    for (auto& [peer, r] : reconnects_)
        if (r.due && *r.due <= now) {
            r.due.reset();
            reconnects.push_back(peer);
        }
    for (auto& [peer, a] : attempts_) {
        for (const auto& w : a.waiters)
            if (w.deadline && *w.deadline <= now)
                timedOut.emplace_back(peer, w.id);
        if (a.nextPunch && *a.nextPunch <= now)
            punches.push_back(peer);
        if (a.expires <= now)
            expired.push_back(peer);
    }
    std::vector<ConnId> links;
    for (const auto& [id, l] : links_)
        if (l.deadline && *l.deadline <= now)
            links.push_back(id);

    for (const auto& [peer, id] : timedOut) {
        auto& ws = attempts_.at(peer).waiters;
        std::erase_if(ws, [id = id](const Waiter& w) { return w.id == id; });
        emit(act::WaiterDone{id, false, 0, 0.0,
                             "timed out: no direct connection to " + peer.shortHex() +
                                 " yet (is the contact online?)"});
    }
    for (const auto& peer : punches)
        if (auto it = attempts_.find(peer); it != attempts_.end())
            punchTick(peer, it->second, now);
    for (auto id : links)
        if (auto it = links_.find(id); it != links_.end() && it->second.deadline)
            idleCheck(id, it->second, now);
    for (const auto& peer : expired)
        finishAttempt(peer, false, 0,
                      "no direct connection could be set up with " + peer.shortHex() +
                          " (offline or unreachable)",
                      now);
    for (const auto& peer : reconnects)
        reconnectDue(peer, now);
}

std::optional<TimePoint> LinkCore::nextDeadline() const {
    std::optional<TimePoint> best;
    for (const auto& [peer, r] : reconnects_)
        earliest(best, r.due);
    for (const auto& [peer, a] : attempts_) {
        earliest(best, a.expires);
        earliest(best, a.nextPunch);
        for (const auto& w : a.waiters)
            earliest(best, w.deadline);
    }
    for (const auto& [id, l] : links_)
        earliest(best, l.deadline);
    return best;
}

void LinkCore::stop() {
    if (stopped_)
        return;
    stopped_ = true;
    auto attempts = std::move(attempts_);
    attempts_.clear();
    for (auto& [peer, a] : attempts)
        for (const auto& w : a.waiters)
            if (w.deadline)
                emit(act::WaiterDone{w.id, false, 0, 0.0, "the node is stopping"});
    reconnects_.clear();
    for (auto& [id, l] : links_) {
        l.deadline.reset();
        if (l.active) {
            l.closedByUs = true;
            emit(act::SendGoodbye{id});
        }
    }
}

std::optional<Action> LinkCore::nextAction() {
    if (actions_.empty())
        return std::nullopt;
    auto a = std::move(actions_.front());
    actions_.pop_front();
    return a;
}

// --- queries
// --------------------------------------------------------------------------------------

std::optional<ConnId> LinkCore::activeLink(const dht::ContactId& peer) const {
    auto it = active_.find(peer);
    if (it == active_.end())
        return std::nullopt;
    return it->second;
}

bool LinkCore::helloSeen(ConnId conn) const {
    auto it = links_.find(conn);
    return it != links_.end() && it->second.helloReceived;
}

bool LinkCore::closing(ConnId conn) const {
    auto it = links_.find(conn);
    return it == links_.end() || it->second.closedByUs;
}

TimePoint LinkCore::establishedAt(ConnId conn) const {
    auto it = links_.find(conn);
    return it == links_.end() ? TimePoint{} : it->second.establishedAt;
}

TimePoint LinkCore::lastUsed(ConnId conn) const {
    auto it = links_.find(conn);
    return it == links_.end() ? TimePoint{} : it->second.lastUsed;
}

} // namespace parley::node::link
