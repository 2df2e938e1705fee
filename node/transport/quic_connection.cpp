// A QUIC connection's life: setup (TLS session and ngtcp2 connection), reading packets,
// handing data to the owner, timers on the transport's clock, closing, and the public
// Connection API. The write path is in quic_send.cpp, the callbacks in quic_callbacks.cpp.
#include "node/transport/quic_internal.h"

#include <asio/post.hpp>

namespace parley::node::quic {

using detail::cidKey;
using detail::kMaxPacket;

namespace {

ngtcp2_duration ms(std::chrono::milliseconds d) {
    return static_cast<ngtcp2_duration>(d.count()) * NGTCP2_MILLISECONDS;
}

ngtcp2_settings makeSettings(const Transport::Impl& t) {
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = t.nowTs();
    settings.initial_rtt = ms(t.config.initialRtt);
    settings.handshake_timeout = ms(t.config.handshakeTimeout);
    settings.max_window = t.config.maxStreamWindow * 4;
    settings.max_stream_window = t.config.maxStreamWindow;
    settings.rand_ctx.native_handle = nullptr;
    switch (t.config.congestionControl) {
    case CongestionControl::cubic:
        settings.cc_algo = NGTCP2_CC_ALGO_CUBIC;
        break;
    case CongestionControl::bbr:
        settings.cc_algo = NGTCP2_CC_ALGO_BBR;
        break;
    case CongestionControl::bbr2:
        settings.cc_algo = NGTCP2_CC_ALGO_BBR2;
        break;
    }
    if (detail::traceEnabled())
        settings.log_printf = detail::tracePrintf;
    return settings;
}

ngtcp2_transport_params makeParams(const TransportConfig& config) {
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_stream_data_bidi_local = config.streamWindow;
    params.initial_max_stream_data_bidi_remote = config.streamWindow;
    params.initial_max_stream_data_uni = config.streamWindow;
    params.initial_max_data = config.streamWindow * 4;
    params.initial_max_streams_bidi = 64;
    params.initial_max_streams_uni = 64;
    params.max_idle_timeout = ms(config.idleTimeout);
    params.max_datagram_frame_size = 65535;
    params.active_connection_id_limit = 4;
    // A peer that sees RFC 9287 offered may clear the fixed bit (0x40) on packets to us;
    // the shared socket tells QUIC from DHT traffic without it too (classifyDatagram), but
    // we do not offer it where we can help it.
    params.grease_quic_bit = 0;
    return params;
}

} // namespace

Connection::Connection(bool client) : impl_(std::make_unique<Impl>()), client_(client) {}

Connection::~Connection() {
    if (!impl_->transport.expired())
        ConnectionDriver::disarmTimer(*this);
    if (impl_->conn)
        ngtcp2_conn_del(impl_->conn);
    if (impl_->session)
        gnutls_deinit(impl_->session);
}

void ConnectionDriver::setup(Connection& c, Transport::Impl& t, const ngtcp2_cid& dcid,
                             const ngtcp2_cid& scid, const ngtcp2_cid* originalDcid,
                             std::uint32_t version) {
    auto& ci = *c.impl_;
    ci.t = &t;
    ci.transport = t.weak_from_this();
    ci.local = t.localFor(c.remote_);
    ci.ref.get_conn = detail::getConn;
    ci.ref.user_data = &c;
    detail::setupTlsSession(c, ci, t);

    auto settings = makeSettings(t);
    auto params = makeParams(t.config);
    ngtcp2_path path{{const_cast<sockaddr*>(ci.local.get()), ci.local.length()},
                     {const_cast<sockaddr*>(c.remote_.get()), c.remote_.length()},
                     nullptr};
    auto callbacks = detail::makeCallbacks(c.client_);
    int rv = 0;
    if (c.client_) {
        rv = ngtcp2_conn_client_new(&ci.conn, &dcid, &scid, &path, version, &callbacks, &settings,
                                    &params, nullptr, &c);
    } else {
        params.original_dcid = *originalDcid;
        params.stateless_reset_token_present = 1;
        ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token,
                                                     t.config.resetSecret.data(),
                                                     t.config.resetSecret.size(), &scid);
        rv = ngtcp2_conn_server_new(&ci.conn, &dcid, &scid, &path, version, &callbacks, &settings,
                                    &params, nullptr, &c);
    }
    if (rv != 0)
        throw std::runtime_error(std::string("cannot create the QUIC connection: ") +
                                 ngtcp2_strerror(rv));
    if (!c.client_) {
        // ngtcp2 0.12 turns grease_quic_bit on whatever we pass; a server can turn it off
        // again, so clients keep the fixed bit on packets to us (a client cannot).
        auto local = *ngtcp2_conn_get_local_transport_params(ci.conn);
        local.grease_quic_bit = 0;
        ngtcp2_conn_set_local_transport_params(ci.conn, &local);
    }
    ngtcp2_conn_set_tls_native_handle(ci.conn, ci.session);
    auto key = cidKey(scid);
    t.byCid[key] = c.weak_from_this();
    ci.cids.push_back(key);
}

void ConnectionDriver::read(Connection& c, std::span<const std::uint8_t> pkt,
                            const dht::SocketAddress& from) {
    auto& ci = *c.impl_;
    if (!ci.conn || c.closed_ || !ci.t)
        return;
    ngtcp2_path path{{const_cast<sockaddr*>(ci.local.get()), ci.local.length()},
                     {const_cast<sockaddr*>(from.get()), from.length()},
                     nullptr};
    ngtcp2_pkt_info pi{};
    bool wasEstablished = c.established_;
    int rv = ngtcp2_conn_read_pkt(ci.conn, &path, &pi, pkt.data(), pkt.size(), ci.t->nowTs());
    if (rv != 0) {
        readFailed(c, rv);
        return;
    }
    followPath(c, wasEstablished);
    if (!wasEstablished && c.established_)
        established(c);
    // Data reaches the owner, and acknowledgements and answers go out, once per burst of
    // datagrams (the node hands them over in batches), not once per packet: that halves the
    // packets and the timer updates, and the handler calls go from one per packet to one per
    // burst.
    if (ci.t && ci.t->burstsEnded && !ci.touched) {
        ci.touched = true;
        ci.t->touched.push_back(c.weak_from_this());
    }
    scheduleFlush(c);
}

void ConnectionDriver::readFailed(Connection& c, int rv) {
    auto& ci = *c.impl_;
    deliver(c); // what arrived before the close (a goodbye, say) still reaches the owner
    if (c.closed_)
        return;
    if (rv == NGTCP2_ERR_DRAINING) {
        ngtcp2_connection_close_error err;
        ngtcp2_conn_get_connection_close_error(ci.conn, &err);
        std::string reason = "closed by the peer";
        // An application close carries our CloseCode; a transport close has none.
        std::uint64_t peerCode =
            err.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? err.error_code : 0;
        if (err.reasonlen)
            reason += ": " + std::string(reinterpret_cast<const char*>(err.reason), err.reasonlen);
        terminate(c, ClosedBy::peer, reason, nullptr, peerCode);
        return;
    }
    if (rv == NGTCP2_ERR_DROP_CONN) {
        terminate(c, ClosedBy::error, "dropped", nullptr);
        return;
    }
    ngtcp2_connection_close_error err;
    ngtcp2_connection_close_error_default(&err);
    std::string reason;
    if (rv == NGTCP2_ERR_CRYPTO) {
        auto alert = ngtcp2_conn_get_tls_alert(ci.conn);
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&err, alert, nullptr, 0);
        reason = std::string("TLS handshake failed: ") +
                 gnutls_alert_get_name(static_cast<gnutls_alert_description_t>(alert));
    } else {
        ngtcp2_connection_close_error_set_transport_error_liberr(&err, rv, nullptr, 0);
        reason = std::string("QUIC error: ") + ngtcp2_strerror(rv);
    }
    terminate(c, ClosedBy::error, reason, &err);
}

// A client follows a NAT rebinding on the server's side only through path validation; the
// remote address we report is the current path's.
void ConnectionDriver::followPath(Connection& c, bool wasEstablished) {
    auto& ci = *c.impl_;
    auto* p = ngtcp2_conn_get_path(ci.conn);
    if (!p || !p->remote.addrlen)
        return;
    dht::SocketAddress now(p->remote.addr, p->remote.addrlen);
    if (now == c.remote_)
        return;
    bool indexed = wasEstablished && !c.client_ && ci.t;
    if (indexed)
        ci.t->unindexServed(c);
    ConnectionAccess::setRemote(c, now);
    if (indexed)
        ci.t->indexServed(c);
}

void ConnectionDriver::established(Connection& c) {
    auto& ci = *c.impl_;
    auto* t = ci.t;
    t->releaseHandshake(c);
    ngtcp2_conn_set_keep_alive_timeout(ci.conn, ms(t->config.keepAlive));
    if (!c.client_)
        t->indexServed(c);
    if (c.client_) {
        if (auto* params = ngtcp2_conn_get_remote_transport_params(ci.conn);
            params && params->stateless_reset_token_present) {
            auto key = cidKey(params->stateless_reset_token, NGTCP2_STATELESS_RESET_TOKENLEN);
            t->byResetToken[key] = c.weak_from_this();
            ci.resetTokens.push_back(key);
        }
    }
    ++t->counters.connectionsOpened;
    spdlog::debug("QUIC connection to {} at {} established ({})", c.peer_.shortHex(),
                  c.remote_.toString(), c.client_ ? "client" : "server");
    auto ptr = c.shared_from_this();
    if (c.client_) {
        if (auto done = std::move(ci.dialDone)) {
            ci.dialDone = nullptr;
            asio::post(t->io, [done, ptr] { done(ptr, ""); });
        }
    } else if (t->acceptHandler) {
        asio::post(t->io, [weak = t->weak_from_this(), ptr] {
            if (auto tt = weak.lock(); tt && tt->acceptHandler && !ptr->closed())
                tt->acceptHandler(ptr);
        });
    }
}

void ConnectionDriver::deliver(Connection& c) {
    auto& ci = *c.impl_;
    if (!ci.started)
        return; // kept until the owner has set its handlers and called start()
    auto inbound = std::move(ci.inbound);
    ci.inbound.clear();
    auto drained = std::move(ci.drained);
    ci.drained.clear();
    auto finished = std::move(ci.finished);
    ci.finished.clear();
    auto keep = c.shared_from_this(); // a handler may close and drop the last reference
    for (auto& in : inbound) {
        if (c.closed_)
            return;
        if (in.stream < 0) {
            if (c.onDatagram)
                c.onDatagram(in.data);
        } else {
            if (c.onStreamData)
                c.onStreamData(in.stream, in.data, in.fin);
            if (c.autoConsume && !c.closed_)
                c.consume(in.stream, in.data.size());
        }
    }
    for (auto stream : drained)
        if (!c.closed_ && c.onWritable)
            c.onWritable(stream);
    for (auto stream : finished)
        if (!c.closed_ && c.onStreamClosed)
            c.onStreamClosed(stream);
}

// --- Timers: one entry per connection in the transport's table, on its clock -------------------

void ConnectionDriver::disarmTimer(Connection& c) {
    auto& ci = *c.impl_;
    if (ci.timer && ci.t) {
        ci.t->timers.erase(*ci.timer);
        ci.timer.reset();
    }
}

// Runs after every flush (once per burst of packets): the entry moves without an allocation,
// and the transport's one asio wait is touched only when the first deadline moves earlier.
void ConnectionDriver::armTimer(Connection& c) {
    auto& ci = *c.impl_;
    auto expiry = ngtcp2_conn_get_expiry(ci.conn);
    if (expiry == UINT64_MAX || !ci.t) {
        disarmTimer(c);
        return;
    }
    auto at = dht::Clock::TimePoint(
        std::chrono::duration_cast<dht::Clock::Duration>(std::chrono::nanoseconds(expiry)));
    auto& timers = ci.t->timers;
    if (ci.timer) {
        if ((*ci.timer)->first == at)
            return;
        auto node = timers.extract(*ci.timer);
        node.key() = at;
        ci.timer = timers.insert(std::move(node));
    } else {
        ci.timer = timers.emplace(at, c.weak_from_this());
    }
    ci.t->rearmWake();
}

void ConnectionDriver::onTimer(Connection& c) {
    auto& ci = *c.impl_;
    if (!ci.conn || c.closed_ || !ci.t)
        return;
    int rv = ngtcp2_conn_handle_expiry(ci.conn, ci.t->nowTs());
    if (rv != 0) {
        if (rv == NGTCP2_ERR_IDLE_CLOSE)
            terminate(c, ClosedBy::timeout, "idle timeout: no answer from the peer", nullptr);
        else if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT)
            terminate(c, ClosedBy::timeout, "handshake timed out", nullptr);
        else
            terminate(c, ClosedBy::error, std::string("QUIC timer error: ") + ngtcp2_strerror(rv),
                      nullptr);
        return;
    }
    flush(c);
}

// --- Closing ------------------------------------------------------------------------------------

void ConnectionDriver::sendClose(Connection& c, Transport::Impl& t,
                                 const ngtcp2_connection_close_error& error) {
    auto& ci = *c.impl_;
    if (!ci.conn || ngtcp2_conn_is_in_draining_period(ci.conn) ||
        ngtcp2_conn_is_in_closing_period(ci.conn))
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    auto n = ngtcp2_conn_write_connection_close(ci.conn, &ps.path, &pi, t.buffer.data(), kMaxPacket,
                                                &error, t.nowTs());
    if (n > 0)
        t.send(dht::SocketAddress(ps.path.remote.addr, ps.path.remote.addrlen),
               std::span<const std::uint8_t>(t.buffer.data(), static_cast<std::size_t>(n)), 0);
}

// Takes the connection out of the transport's tables and counts how it ended.
void ConnectionDriver::unregister(Connection& c, Transport::Impl& t) {
    auto& ci = *c.impl_;
    disarmTimer(c);
    for (const auto& k : ci.cids)
        if (auto it = t.byCid.find(k); it != t.byCid.end() && it->second.lock().get() == &c)
            t.byCid.erase(it);
    for (const auto& k : ci.resetTokens)
        t.byResetToken.erase(k);
    t.releaseHandshake(c);
    if (!c.established_)
        ++t.counters.connectionsFailed;
    else if (!c.client_)
        t.unindexServed(c);
    t.connections.erase(c.shared_from_this());
}

void ConnectionDriver::terminate(Connection& c, ClosedBy by, const std::string& reason,
                                 const ngtcp2_connection_close_error* sendCloseError,
                                 std::uint64_t peerCode) {
    auto& ci = *c.impl_;
    if (c.closed_)
        return;
    auto* t = ci.transport.expired() ? nullptr : ci.t;
    if (sendCloseError && t)
        sendClose(c, *t, *sendCloseError);
    ConnectionAccess::markClosed(c);
    ci.closeReason = reason;
    // Handlers are never called again: let go of what they hold (a handler that captured its
    // own connection would otherwise keep it alive forever).
    c.onStreamData = nullptr;
    c.onWritable = nullptr;
    c.onStreamClosed = nullptr;
    c.onDatagram = nullptr;
    ci.streams.clear();
    ci.datagrams.clear();
    auto keep = c.shared_from_this();
    if (t)
        unregister(c, *t);
    if (c.established_)
        spdlog::info("QUIC connection to {} closed: {}", c.peer_.shortHex(), reason);
    else
        spdlog::debug("QUIC handshake with {} failed: {}", c.remote_.toString(), reason);
    // Handlers run later, never inside ngtcp2 or our own iteration.
    auto dialDone = std::move(ci.dialDone);
    ci.dialDone = nullptr;
    auto onClosed = std::move(c.onClosed);
    c.onClosed = nullptr;
    if (!t)
        return;
    if (dialDone)
        asio::post(t->io, [dialDone, reason] { dialDone(nullptr, reason); });
    if (onClosed && c.established_)
        asio::post(t->io,
                   [onClosed, why = CloseReason{by, peerCode, reason}, keep] { onClosed(why); });
}

void Connection::start() {
    if (impl_->started)
        return;
    impl_->started = true;
    if (!impl_->t || closed_)
        return;
    asio::post(impl_->t->io, [weak = weak_from_this()] {
        if (auto c = weak.lock(); c && !c->closed_)
            ConnectionDriver::deliver(*c);
    });
}

std::int64_t Connection::openBidiStream() {
    if (closed_ || !impl_->conn)
        return -1;
    std::int64_t id = -1;
    if (ngtcp2_conn_open_bidi_stream(impl_->conn, &id, nullptr) != 0)
        return -1;
    impl_->streams[id];
    return id;
}

std::int64_t Connection::openUniStream() {
    if (closed_ || !impl_->conn)
        return -1;
    std::int64_t id = -1;
    if (ngtcp2_conn_open_uni_stream(impl_->conn, &id, nullptr) != 0)
        return -1;
    impl_->streams[id];
    return id;
}

std::size_t Connection::write(std::int64_t stream, std::span<const std::uint8_t> data, bool fin) {
    if (closed_ || !impl_->conn)
        return 0;
    auto& s = impl_->streams[stream];
    if (s.fin)
        return s.total - s.base;
    if (!data.empty()) {
        s.chunks.push_back(impl_->chunkOf(data));
        s.total += data.size();
    }
    s.fin = fin;
    ConnectionDriver::scheduleFlush(*this);
    return s.total - s.base;
}

std::size_t Connection::buffered(std::int64_t stream) const {
    auto it = impl_->streams.find(stream);
    return it == impl_->streams.end() ? 0 : it->second.total - it->second.base;
}

void Connection::consume(std::int64_t stream, std::size_t bytes) {
    if (closed_ || !impl_->conn || bytes == 0)
        return;
    // A stream that is already gone still returns its credit to the connection's window.
    (void)ngtcp2_conn_extend_max_stream_offset(impl_->conn, stream, bytes);
    ngtcp2_conn_extend_max_offset(impl_->conn, bytes);
    ConnectionDriver::scheduleFlush(*this);
}

void Connection::resetStream(std::int64_t stream, std::uint64_t code) {
    if (closed_ || !impl_->conn)
        return;
    ngtcp2_conn_shutdown_stream(impl_->conn, stream, code);
    impl_->streams.erase(stream);
    ConnectionDriver::scheduleFlush(*this);
}

bool Connection::sendDatagram(std::span<const std::uint8_t> data) {
    if (closed_ || !impl_->conn || !established_)
        return false;
    auto* t = impl_->t;
    if (data.size() > maxDatagramSize() || impl_->datagrams.size() >= t->config.maxDatagramQueue) {
        ++impl_->datagramsDropped;
        return false;
    }
    impl_->datagrams.emplace_back(data.begin(), data.end());
    ConnectionDriver::scheduleFlush(*this);
    return true;
}

std::size_t Connection::maxDatagramSize() const {
    if (!impl_->conn)
        return 0;
    auto* params = ngtcp2_conn_get_remote_transport_params(impl_->conn);
    if (!params || params->max_datagram_frame_size == 0)
        return 0;
    // One packet: 1200 bytes is what every path carries; leave room for the headers.
    std::size_t limit = 1200 - 60;
    return std::min<std::size_t>(limit, params->max_datagram_frame_size);
}

void Connection::close(CloseCode code, const std::string& reason) {
    if (closed_ || !impl_->t)
        return;
    // Never inside ngtcp2: post it.
    asio::post(impl_->t->io, [weak = weak_from_this(), code, reason] {
        auto c = weak.lock();
        if (!c || c->closed_ || !c->impl_->conn)
            return;
        ngtcp2_connection_close_error err;
        ngtcp2_connection_close_error_default(&err);
        ngtcp2_connection_close_error_set_application_error(
            &err, static_cast<std::uint64_t>(code),
            reinterpret_cast<const std::uint8_t*>(reason.data()),
            std::min<std::size_t>(reason.size(), 200));
        ConnectionDriver::terminate(*c, ClosedBy::us, reason, &err);
    });
}

ConnectionStats Connection::stats() const {
    ConnectionStats out;
    out.datagramsDropped = impl_->datagramsDropped;
    if (!impl_->conn)
        return out;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(impl_->conn, &st);
    out.smoothedRtt = std::chrono::microseconds(st.smoothed_rtt / 1000);
    out.minRtt = std::chrono::microseconds(st.min_rtt / 1000);
    out.congestionWindow = st.cwnd;
    out.latestRtt = std::chrono::microseconds(st.latest_rtt / 1000);
    out.bytesInFlight = st.bytes_in_flight;
    return out;
}

} // namespace parley::node::quic
