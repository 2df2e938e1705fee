// The QUIC transport: set-up, admission of new handshakes (caps per host and in total, room
// for expected contacts), routing datagrams to connections by connection id, dialling, the
// connections' timers on the injected clock, and shutdown.
#include "node/transport/quic_internal.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace parley::node::quic {

using detail::cidKey;
using detail::kCidLength;
using detail::secretRandom;

namespace {

// The host part of an address (port 0): what the per-host handshake cap counts.
dht::SocketAddress hostOf(const dht::SocketAddress& a) {
    auto host = a;
    host.setPort(0);
    return host;
}

} // namespace

Transport::Impl::~Impl() {
    if (credentials)
        gnutls_certificate_free_credentials(credentials);
    if (keyLog)
        std::fclose(keyLog);
}

ngtcp2_tstamp Transport::Impl::nowTs() const {
    return static_cast<ngtcp2_tstamp>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now().time_since_epoch()).count());
}

void Transport::Impl::indexServed(Connection& c) {
    servedByRemote.emplace(c.remote(), c.weak_from_this());
}

void Transport::Impl::unindexServed(Connection& c) {
    auto [from, to] = servedByRemote.equal_range(c.remote());
    for (auto it = from; it != to; ++it) {
        auto p = it->second.lock();
        if (!p || p.get() == &c) {
            servedByRemote.erase(it);
            return;
        }
    }
}

void Transport::Impl::releaseHandshake(Connection& c) {
    auto& ci = ConnectionAccess::impl(c);
    if (!ci.countedHandshake)
        return;
    ci.countedHandshake = false;
    --handshakes;
    if (auto it = handshakesByHost.find(ci.handshakeHost);
        it != handshakesByHost.end() && --it->second == 0)
        handshakesByHost.erase(it);
}

Transport::Transport(asio::io_context& io, TransportConfig config, SendFn send)
    : impl_(std::make_shared<Impl>(io)) {
    auto& s = *impl_;
    s.config = std::move(config);
    s.send = std::move(send);
    s.clock = s.config.clock ? s.config.clock : &dht::SystemClock::instance();
    s.random = s.config.random ? s.config.random : &dht::SystemRandom::instance();
    s.resetRefill = s.now();
    detail::loadIdentity(s);
    detail::openKeyLog(s);
}

Transport::~Transport() {
    shutdown();
    impl_->wake.cancel();
}

const dht::ContactId& Transport::self() const {
    return impl_->self;
}

void Transport::setAuthorizer(Authorizer authorizer) {
    impl_->authorizer = std::move(authorizer);
}

void Transport::setAcceptHandler(std::function<void(ConnectionPtr)> handler) {
    impl_->acceptHandler = std::move(handler);
}

void Transport::setSuspectHandler(std::function<void(ConnectionPtr)> handler) {
    impl_->suspectHandler = std::move(handler);
}

void Transport::expect(const dht::SocketAddress& from, dht::Clock::TimePoint until) {
    auto& s = *impl_;
    if (s.expected.size() >= Impl::kMaxExpected) {
        auto now = s.now();
        std::erase_if(s.expected, [now](const auto& e) { return e.second < now; });
    }
    if (s.expected.size() < Impl::kMaxExpected || s.expected.count(from))
        s.expected[from] = until;
}

bool Transport::Impl::isExpected(const dht::SocketAddress& from) {
    auto it = expected.find(from);
    return it != expected.end() && it->second >= now();
}

void Transport::punch(const dht::SocketAddress& to) {
    std::array<std::uint8_t, 8> datagram{};
    datagram[0] = detail::kPunchByte;
    // Filler that nobody reads: not secret.
    impl_->random->fill(std::span(datagram).subspan(1));
    impl_->send(to, datagram, 0);
}

void Transport::receive(std::span<const std::uint8_t> datagram, const dht::SocketAddress& from) {
    auto& s = *impl_;
    if (datagram.empty()) {
        // ngtcp2_pkt_decode_version_cid asserts on an empty datagram: never hand it one.
        ++s.counters.packetsUnmatched;
        return;
    }
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, datagram.data(), datagram.size(), kCidLength);
    if (rv != 0) {
        ++s.counters.packetsUnmatched; // unsupported version or garbage: no answer
        return;
    }
    if (auto it = s.byCid.find(cidKey(vc.dcid, vc.dcidlen)); it != s.byCid.end()) {
        if (auto c = it->second.lock()) {
            ConnectionDriver::read(*c, datagram, from);
            return;
        }
        s.byCid.erase(it);
    }
    bool longHeader = (datagram[0] & 0x80) != 0;
    if (longHeader)
        s.accept(datagram, from);
    else
        s.maybeReset(datagram, from);
}

void Transport::endOfBurst() {
    impl_->burstsEnded = true;
    auto touched = std::move(impl_->touched);
    impl_->touched.clear();
    for (auto& weak : touched)
        if (auto c = weak.lock()) {
            auto& ci = ConnectionAccess::impl(*c);
            ci.touched = false;
            if (ci.flushScheduled)
                ConnectionDriver::runScheduled(*c);
        }
}

// Whether a new handshake from `from` fits under the caps.
bool Transport::Impl::admit(const dht::SocketAddress& from, const dht::SocketAddress& host) {
    if (!isExpected(from)) {
        auto it = handshakesByHost.find(host);
        auto perHost = it == handshakesByHost.end() ? 0 : it->second;
        if (handshakes >= config.maxHandshakes || perHost >= config.maxHandshakesPerHost)
            return false;
    } else if (handshakes >= config.maxHandshakes + kExpectedHandshakeRoom) {
        return false; // room reserved for expected contacts is full too
    }
    return connections.size() < config.maxConnections + config.maxHandshakes;
}

void Transport::Impl::accept(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from) {
    if (shuttingDown)
        return;
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt.data(), pkt.size()) != 0) {
        ++counters.packetsUnmatched;
        return;
    }
    auto host = hostOf(from);
    if (!admit(from, host)) {
        ++counters.initialsDropped;
        return;
    }
    auto c = ConnectionAccess::create(false, now());
    ConnectionAccess::setRemote(*c, from);
    ngtcp2_cid scid;
    scid.datalen = kCidLength;
    secretRandom(scid.data, kCidLength);
    try {
        ConnectionDriver::setup(*c, *this, hd.scid, scid, &hd.dcid, hd.version);
    } catch (const std::exception& e) {
        spdlog::warn("cannot accept a QUIC connection from {}: {}", from.toString(), e.what());
        for (const auto& k : ConnectionAccess::impl(*c).cids)
            byCid.erase(k);
        return;
    }
    auto& ci = ConnectionAccess::impl(*c);
    // The client keeps sending Initials to the id it chose until it hears from us.
    auto original = cidKey(hd.dcid);
    byCid[original] = c;
    ci.cids.push_back(original);
    ci.countedHandshake = true;
    ci.handshakeHost = host;
    ++handshakes;
    ++handshakesByHost[host];
    connections.insert(c);
    ConnectionDriver::read(*c, pkt, from);
}

void Transport::dial(const dht::ContactId& peer, const dht::SocketAddress& to, DialDone done) {
    auto& s = *impl_;
    if (s.shuttingDown) {
        asio::post(s.io, [done] { done(nullptr, "the node is stopping"); });
        return;
    }
    if (peer == s.self) {
        asio::post(s.io, [done] { done(nullptr, "cannot connect to ourselves"); });
        return;
    }
    auto c = ConnectionAccess::create(true, s.now());
    ConnectionAccess::setRemote(*c, to);
    auto& ci = ConnectionAccess::impl(*c);
    ci.expectedPeer = peer;
    ci.dialDone = std::move(done);
    ngtcp2_cid dcid, scid;
    dcid.datalen = kCidLength;
    scid.datalen = kCidLength;
    secretRandom(dcid.data, kCidLength);
    secretRandom(scid.data, kCidLength);
    try {
        ConnectionDriver::setup(*c, s, dcid, scid, nullptr, NGTCP2_PROTO_VER_V1);
    } catch (const std::exception& e) {
        for (const auto& k : ci.cids)
            s.byCid.erase(k);
        auto d = std::move(ci.dialDone);
        std::string reason = e.what();
        asio::post(s.io, [d, reason] { d(nullptr, reason); });
        return;
    }
    s.connections.insert(c);
    ConnectionDriver::flush(*c);
}

// --- Timers -------------------------------------------------------------------------------------

// A pending wake that comes at or before the first deadline stays: when it fires early it
// finds nothing due and waits again. So a deadline that moves later (ngtcp2's expiry does, with
// every burst) costs no cancel and no new wait; only an earlier one re-arms.
void Transport::Impl::rearmWake() {
    if (timers.empty())
        return; // a pending wake finds nothing to do
    auto first = timers.begin()->first;
    if (wakeAt && *wakeAt <= first)
        return;
    wakeAt = first;
    // The wait is measured on the injected clock; on the system clock that is the deadline
    // itself. (On a ManualClock the owner calls handleTimers after moving it; a wake that
    // comes early finds nothing due and waits again.)
    auto left = first - now();
    wake.expires_after(left.count() > 0 ? left : dht::Clock::Duration::zero());
    wake.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto t = weak.lock();
        if (ec || !t)
            return;
        t->wakeAt.reset();
        t->runDueTimers();
    });
}

void Transport::Impl::runDueTimers() {
    auto t = now();
    std::vector<ConnectionPtr> due;
    while (!timers.empty() && timers.begin()->first <= t) {
        auto c = timers.begin()->second.lock();
        timers.erase(timers.begin());
        if (c) {
            ConnectionAccess::impl(*c).timer.reset();
            due.push_back(std::move(c));
        }
    }
    for (auto& c : due)
        ConnectionDriver::onTimer(*c);
    rearmWake();
}

void Transport::handleTimers() {
    impl_->runDueTimers();
}

std::optional<dht::Clock::TimePoint> Transport::nextDeadline() const {
    if (impl_->timers.empty())
        return std::nullopt;
    return impl_->timers.begin()->first;
}

void Transport::shutdown() {
    auto& s = *impl_;
    s.shuttingDown = true;
    auto all = s.connections;
    for (const auto& c : all) {
        ngtcp2_connection_close_error err;
        ngtcp2_connection_close_error_default(&err);
        static constexpr char kReason[] = "shutting down";
        ngtcp2_connection_close_error_set_application_error(
            &err, static_cast<std::uint64_t>(CloseCode::normal),
            reinterpret_cast<const std::uint8_t*>(kReason), sizeof(kReason) - 1);
        ConnectionDriver::terminate(*c, ClosedBy::us, "this node is shutting down", &err);
    }
    s.connections.clear();
}

TransportStats Transport::stats() const {
    auto out = impl_->counters;
    out.handshakesInProgress = impl_->handshakes;
    out.connections = impl_->connections.size();
    return out;
}

} // namespace parley::node::quic
