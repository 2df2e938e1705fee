// The write path of a connection: datagrams and stream send buffers into QUIC packets
// (ngtcp2_conn_writev_*), paced after the handshake, and packets into runs of same-sized
// datagrams to one address (PacketBatch: one system call per run with UDP GSO).
#include "dht/udp_endpoint.h"
#include "node/transport/quic_internal.h"

#include <asio/post.hpp>
#include <cstring>

namespace parley::node::quic {

namespace detail {

void PacketBatch::add(const ngtcp2_addr& remote, std::size_t n) {
    if (count_ > 0 && (n > segment_ || !sameRemote(remote))) {
        // It cannot join this run: send the run, then start a new one with it.
        std::uint8_t* packet = next();
        send();
        std::memmove(t_.buffer.data(), packet, n);
    }
    if (count_ == 0) {
        std::memcpy(&remote_, remote.addr, remote.addrlen);
        remoteLen_ = remote.addrlen;
        segment_ = n;
    }
    used_ += n;
    ++count_;
    // A short packet ends a run (only the last datagram may be shorter); so does a full one.
    if (n < segment_ || count_ == dht::UdpEndpoint::kMaxSegments ||
        used_ + maxPacket_ > dht::UdpEndpoint::kMaxSegmentedBytes)
        send();
}

void PacketBatch::send() {
    if (count_ == 0)
        return;
    t_.send(dht::SocketAddress(reinterpret_cast<const sockaddr*>(&remote_), remoteLen_),
            std::span<const std::uint8_t>(t_.buffer.data(), used_), count_ > 1 ? segment_ : 0);
    used_ = count_ = segment_ = 0;
}

bool PacketBatch::sameRemote(const ngtcp2_addr& remote) const {
    return remote.addrlen == remoteLen_ && std::memcmp(remote.addr, &remote_, remoteLen_) == 0;
}

} // namespace detail

namespace {

using detail::kMaxPacket;

using detail::PacketBatch;
using detail::SendStream;
using Streams = std::map<std::int64_t, SendStream>;

// The next stream with something to send, round robin over the map from `it`.
SendStream* nextStream(Streams& streams, Streams::iterator& it, std::int64_t& id) {
    for (std::size_t tries = 0; tries < streams.size(); ++tries) {
        if (it == streams.end())
            it = streams.begin();
        auto& cand = it->second;
        if (!cand.blocked && (cand.sent < cand.total || (cand.fin && !cand.finSent))) {
            id = it->first;
            return &cand;
        }
        ++it;
    }
    id = -1;
    return nullptr;
}

// The unsent part of `s` as vectors (at most vecs.size() chunks); FIN when that is all of it.
std::size_t gather(SendStream& s, std::array<ngtcp2_vec, 16>& vecs, std::uint32_t& flags) {
    std::size_t vcount = 0;
    std::size_t idx = s.sendChunk, pos = s.sendPos;
    while (idx < s.chunks.size() && vcount < vecs.size()) {
        auto& chunk = s.chunks[idx];
        vecs[vcount++] = {chunk.data() + pos, chunk.size() - pos};
        ++idx;
        pos = 0;
    }
    if (s.fin && idx == s.chunks.size())
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    return vcount;
}

// ngtcp2 took `accepted` more bytes of `s`: move the send position on.
void advance(SendStream& s, std::size_t accepted, std::uint32_t flags) {
    s.sent += accepted;
    while (accepted > 0) {
        auto& chunk = s.chunks[s.sendChunk];
        auto take = std::min(accepted, chunk.size() - s.sendPos);
        s.sendPos += take;
        accepted -= take;
        if (s.sendPos == chunk.size()) {
            ++s.sendChunk;
            s.sendPos = 0;
        }
    }
    if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s.sent == s.total)
        s.finSent = true;
}

} // namespace

int ConnectionDriver::writeDatagram(Connection& c, ngtcp2_path_storage& ps, ngtcp2_tstamp ts,
                                    PacketBatch& batch,
                                    const std::function<void(std::size_t)>& sent) {
    auto& ci = *c.impl_;
    ngtcp2_pkt_info pi{};
    ngtcp2_vec v{ci.datagrams.front().data(), ci.datagrams.front().size()};
    int accepted = 0;
    auto n = ngtcp2_conn_writev_datagram(ci.conn, &ps.path, &pi, batch.next(), batch.maxPacket(),
                                         &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
    if (accepted)
        ci.datagrams.pop_front();
    if (n == NGTCP2_ERR_WRITE_MORE)
        return 1;
    if (n < 0) {
        if (n == NGTCP2_ERR_INVALID_ARGUMENT || n == NGTCP2_ERR_INVALID_STATE) {
            ci.datagrams.pop_front(); // too large for the peer, or not supported
            ++ci.datagramsDropped;
            return 1;
        }
        failWrite(c, batch, n);
        return -1;
    }
    if (n == 0)
        return 0; // congestion limited
    sent(static_cast<std::size_t>(n));
    return 1;
}

bool ConnectionDriver::writeStreams(Connection& c, ngtcp2_path_storage& ps, ngtcp2_tstamp ts,
                                    PacketBatch& batch) {
    auto& ci = *c.impl_;
    std::size_t maxPacket = batch.maxPacket();
    ngtcp2_pkt_info pi{};
    auto streamIt = ci.streams.begin();
    // Pacing (after the handshake: before it, the initial RTT guess would slow it down): each
    // send quantum of packets moves the pacer's next send time on; a write before that time
    // returns 0 and the timer (ngtcp2_conn_get_expiry includes the pacer) resumes us.
    bool pacing = ci.t->config.pacing && c.established_;
    std::size_t quantum = 0;
    std::function<void(std::size_t)> sent = [&](std::size_t n) {
        batch.add(ps.path.remote, n);
        if (pacing && ++quantum >= std::max<std::size_t>(1, ngtcp2_conn_get_send_quantum(ci.conn) /
                                                                maxPacket)) {
            ngtcp2_conn_update_pkt_tx_time(ci.conn, ts);
            quantum = 0;
        }
    };
    for (int packets = 0; packets < 4096; ++packets) {
        // Datagrams first: they are for media and must not wait behind bulk data.
        if (!ci.datagrams.empty()) {
            int rv = writeDatagram(c, ps, ts, batch, sent);
            if (rv <= 0)
                return rv == 0;
            continue;
        }
        std::int64_t streamId = -1;
        SendStream* s = nextStream(ci.streams, streamIt, streamId);
        std::array<ngtcp2_vec, 16> vecs{};
        std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        std::size_t vcount = s ? gather(*s, vecs, flags) : 0;
        ngtcp2_ssize accepted = -1;
        auto n = ngtcp2_conn_writev_stream(ci.conn, &ps.path, &pi, batch.next(), maxPacket,
                                           &accepted, flags, streamId, vecs.data(), vcount, ts);
        if (s && accepted >= 0)
            advance(*s, static_cast<std::size_t>(accepted), flags);
        if (n == NGTCP2_ERR_WRITE_MORE) {
            ++streamIt;
            continue;
        }
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
            n == NGTCP2_ERR_STREAM_NOT_FOUND) {
            if (s && n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
                s->blocked = true;
            } else if (s) {
                ci.streams.erase(streamId); // closed for writing: nothing more will go out
                streamIt = ci.streams.begin();
            }
            continue;
        }
        if (n < 0) {
            failWrite(c, batch, n);
            return false;
        }
        if (n == 0)
            return true;
        sent(static_cast<std::size_t>(n));
        if (s)
            ++streamIt;
    }
    scheduleFlush(c); // more to send: yield to other work first
    return true;
}

void ConnectionDriver::failWrite(Connection& c, PacketBatch& batch, ngtcp2_ssize error) {
    batch.send(); // terminate() writes its CONNECTION_CLOSE into the same buffer
    ngtcp2_connection_close_error err;
    ngtcp2_connection_close_error_default(&err);
    ngtcp2_connection_close_error_set_transport_error_liberr(&err, static_cast<int>(error), nullptr,
                                                             0);
    terminate(c, ClosedBy::error,
              std::string("QUIC write error: ") + ngtcp2_strerror(static_cast<int>(error)), &err);
}

void ConnectionDriver::flush(Connection& c) {
    auto& ci = *c.impl_;
    if (!ci.conn || c.closed_ || ci.closing)
        return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    PacketBatch batch(*ci.t,
                      std::min(kMaxPacket, ngtcp2_conn_get_max_tx_udp_payload_size(ci.conn)));
    auto ts = ci.t->nowTs();
    bool ok = writeStreams(c, ps, ts, batch);
    batch.send();
    if (ok) {
        if (ci.t->config.pacing && c.established_)
            ngtcp2_conn_update_pkt_tx_time(ci.conn, ts);
        armTimer(c);
    }
}

void ConnectionDriver::runScheduled(Connection& c) {
    deliver(c); // writes its handlers make join this flush
    c.impl_->flushScheduled = false;
    flush(c);
}

void ConnectionDriver::scheduleFlush(Connection& c) {
    auto& ci = *c.impl_;
    if (ci.flushScheduled || !ci.t)
        return;
    ci.flushScheduled = true;
    asio::post(ci.t->io, [weak = c.weak_from_this()] {
        auto conn = weak.lock();
        if (!conn || !conn->impl_->flushScheduled)
            return; // gone, or Transport::endOfBurst did it
        runScheduled(*conn);
    });
}
} // namespace parley::node::quic
