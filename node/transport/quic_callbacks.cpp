// ngtcp2's callbacks into a connection: stream data, acknowledgements, stream ends,
// datagrams, handshake milestones, connection ids and reset tokens. Each one records what
// happened in the connection's state; handlers run later (ConnectionDriver::deliver).
#include "node/transport/quic_internal.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <gnutls/crypto.h>

namespace parley::node::quic::detail {

void secretRandom(std::uint8_t* out, std::size_t len) noexcept {
    dht::SystemRandom::instance().fill({out, len});
}

// PARLEY_QUIC_TRACE=1 prints ngtcp2's own log (very verbose; for debugging only).
void tracePrintf(void*, const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fputc('\n', stderr);
}

bool traceEnabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("PARLEY_QUIC_TRACE");
        return v && *v && *v != '0';
    }();
    return enabled;
}

ngtcp2_conn* getConn(ngtcp2_crypto_conn_ref* ref) {
    auto& c = *static_cast<Connection*>(ref->user_data);
    return ConnectionAccess::impl(c).conn;
}

namespace {

Connection& self(void* userData) {
    return *static_cast<Connection*>(userData);
}

// ngtcp2's own randomness stays cryptographic: we do not audit which of its uses an observer
// must not predict.
void randCallback(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
    (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

int onRecvStreamData(ngtcp2_conn* conn, std::uint32_t flags, std::int64_t stream, std::uint64_t,
                     const std::uint8_t* data, std::size_t len, void* user, void*) noexcept {
    return guarded("onRecvStreamData", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        bool fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
        // Data is handed to the owner once per burst of packets: what follows on the same stream
        // joins the previous piece (one handler call and one buffer instead of one per packet).
        if (!ci.inbound.empty() && ci.inbound.back().stream == stream && !ci.inbound.back().fin &&
            ci.inbound.back().data.size() + len <= Connection::Impl::kMaxInboundPiece) {
            auto& piece = ci.inbound.back();
            piece.data.insert(piece.data.end(), data, data + len);
            piece.fin = fin;
        } else {
            ci.inbound.push_back({stream, std::vector<std::uint8_t>(data, data + len), fin});
        }
        // Flow-control credit comes back when the owner consumes the data (at delivery, or
        // through Connection::consume), never on arrival: a slow reader slows the sender, and
        // what waits here before start() is bounded by the window.
        (void)conn;
        return 0;
    });
}

int onAckedStreamData(ngtcp2_conn*, std::int64_t stream, std::uint64_t offset, std::uint64_t len,
                      void* user, void*) noexcept {
    return guarded("onAckedStreamData", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        auto it = ci.streams.find(stream);
        if (it == ci.streams.end())
            return 0;
        auto& s = it->second;
        std::uint64_t acked = offset + len;
        while (!s.chunks.empty() && s.base + s.chunks.front().size() <= acked && s.sendChunk > 0) {
            s.base += s.chunks.front().size();
            ci.recycle(std::move(s.chunks.front()));
            s.chunks.pop_front();
            --s.sendChunk;
        }
        ci.drained.insert(stream);
        return 0;
    });
}

int onStreamClose(ngtcp2_conn* conn, std::uint32_t, std::int64_t stream, std::uint64_t, void* user,
                  void*) noexcept {
    return guarded("onStreamClose", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        ci.streams.erase(stream);
        ci.finished.insert(stream);
        // ngtcp2 never raises the peer's stream limit by itself: each stream of theirs that
        // ends lets them open one more, so the limit bounds the streams open at once, not the
        // streams of a connection's life (RFC 9000 §4.6). Bit 0 is set on streams the server
        // opened, bit 1 on unidirectional ones (§2.1).
        bool openedByServer = (stream & 1) != 0;
        if (openedByServer != (ngtcp2_conn_is_server(conn) != 0)) {
            if ((stream & 2) != 0)
                ngtcp2_conn_extend_max_streams_uni(conn, 1);
            else
                ngtcp2_conn_extend_max_streams_bidi(conn, 1);
        }
        return 0;
    });
}

int onStreamReset(ngtcp2_conn* conn, std::int64_t stream, std::uint64_t, std::uint64_t, void*,
                  void*) noexcept {
    return guarded("onStreamReset", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        // They abandoned the stream: stop ours too.
        ngtcp2_conn_shutdown_stream(conn, stream, 0);
        return 0;
    });
}

int onExtendMaxStreamData(ngtcp2_conn*, std::int64_t stream, std::uint64_t, void* user,
                          void*) noexcept {
    return guarded("onExtendMaxStreamData", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        if (auto it = ci.streams.find(stream); it != ci.streams.end())
            it->second.blocked = false;
        return 0;
    });
}

int onRecvDatagram(ngtcp2_conn*, std::uint32_t, const std::uint8_t* data, std::size_t len,
                   void* user) noexcept {
    return guarded("onRecvDatagram", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        ci.inbound.push_back({-1, std::vector<std::uint8_t>(data, data + len), false});
        return 0;
    });
}

int onHandshakeConfirmed(ngtcp2_conn*, void* user) noexcept {
    return guarded("onHandshakeConfirmed", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& c = self(user);
        auto& ci = ConnectionAccess::impl(c);
        if (!ci.peerVerified)
            return NGTCP2_ERR_CALLBACK_FAILURE; // cannot happen: TLS verified the certificate
        ConnectionAccess::setEstablished(c);
        return 0;
    });
}

// A server's handshake completes when the client's Finished arrives, after the client's
// certificate was checked: for a server that is the confirmation. (A client must wait for
// HANDSHAKE_DONE: its handshake completes before the server has checked it; FACTS.md.)
int onHandshakeCompleted(ngtcp2_conn* conn, void* user) noexcept {
    return guarded("onHandshakeCompleted", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        if (!ngtcp2_conn_is_server(conn))
            return 0;
        return onHandshakeConfirmed(conn, user);
    });
}

int onNewConnectionId(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t len,
                      void* user) noexcept {
    return guarded("onNewConnectionId", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& c = self(user);
        auto& ci = ConnectionAccess::impl(c);
        if (!ci.t)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        secretRandom(cid->data, len); // unlinkable across paths (RFC 9000 §9.5)
        cid->datalen = len;
        if (ngtcp2_crypto_generate_stateless_reset_token(token, ci.t->config.resetSecret.data(),
                                                         ci.t->config.resetSecret.size(), cid) != 0)
            return NGTCP2_ERR_CALLBACK_FAILURE;
        auto key = cidKey(*cid);
        ci.t->byCid[key] = c.weak_from_this();
        ci.cids.push_back(key);
        return 0;
    });
}

int onRemoveConnectionId(ngtcp2_conn*, const ngtcp2_cid* cid, void* user) noexcept {
    return guarded("onRemoveConnectionId", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        if (ci.t)
            ci.t->byCid.erase(cidKey(*cid));
        return 0;
    });
}

int onDcidStatus(ngtcp2_conn*, int type, std::uint64_t, const ngtcp2_cid*,
                 const std::uint8_t* token, void* user) noexcept {
    return guarded("onDcidStatus", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& c = self(user);
        auto& ci = ConnectionAccess::impl(c);
        if (!ci.t || !token || type != NGTCP2_CONNECTION_ID_STATUS_TYPE_ACTIVATE)
            return 0;
        auto key = cidKey(token, NGTCP2_STATELESS_RESET_TOKENLEN);
        ci.t->byResetToken[key] = c.weak_from_this();
        ci.resetTokens.push_back(key);
        return 0;
    });
}

} // namespace

ngtcp2_callbacks makeCallbacks(bool client) {
    ngtcp2_callbacks cb{};
    if (client) {
        cb.client_initial = ngtcp2_crypto_client_initial_cb;
        cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    } else {
        cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    }
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb.rand = randCallback;
    cb.get_new_connection_id = onNewConnectionId;
    cb.remove_connection_id = onRemoveConnectionId;
    cb.dcid_status = onDcidStatus;
    cb.recv_stream_data = onRecvStreamData;
    cb.acked_stream_data_offset = onAckedStreamData;
    cb.stream_close = onStreamClose;
    cb.stream_reset = onStreamReset;
    cb.extend_max_stream_data = onExtendMaxStreamData;
    cb.recv_datagram = onRecvDatagram;
    cb.handshake_confirmed = onHandshakeConfirmed;
    cb.handshake_completed = onHandshakeCompleted;
    return cb;
}

} // namespace parley::node::quic::detail
