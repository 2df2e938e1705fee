// QUIC transport on ngtcp2 0.12 + GnuTLS (see quic.h and FACTS.md "ngtcp2 0.12.1").
#include "node/transport/quic.h"

#include "dht/clock.h"
#include "dht/hex.h"
#include "dht/udp_endpoint.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <map>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unordered_map>

namespace parley::node::quic {

namespace {

constexpr std::size_t kCidLength = 16; // our source connection ids
constexpr std::size_t kMaxPacket = 1452;
// TLS 1.3 only, AES-GCM first (ChaCha20 is slow here), no middlebox compatibility mode
// (RFC 9001 §8.4).
constexpr const char* kPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE";
constexpr std::uint8_t kPunchByte = 0x00; // neither QUIC (0x40 clear) nor DHT (not a map)

ngtcp2_tstamp nowNs() {
    return static_cast<ngtcp2_tstamp>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

std::string cidKey(const std::uint8_t* data, std::size_t len) {
    return std::string(reinterpret_cast<const char*>(data), len);
}

std::string cidKey(const ngtcp2_cid& cid) {
    return cidKey(cid.data, cid.datalen);
}

// Never throws: it runs inside ngtcp2 callbacks (new connection ids).
void randomBytes(std::uint8_t* out, std::size_t len) noexcept {
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

void randCallback(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
    (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

std::string hostOf(const dht::SocketAddress& a) {
    return a.hostString();
}

// The ContactId of the first certificate the peer presented: SHA-256 of its DER
// SubjectPublicKeyInfo, the same bytes Identity::publicKeyDer() hashes.
std::optional<dht::ContactId> peerContactId(gnutls_session_t session) {
    if (gnutls_certificate_type_get2(session, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_X509)
        return std::nullopt;
    unsigned count = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &count);
    if (!certs || count == 0)
        return std::nullopt;
    gnutls_pubkey_t key = nullptr;
    if (gnutls_pubkey_init(&key) != 0)
        return std::nullopt;
    std::optional<dht::ContactId> id;
    gnutls_datum_t der{nullptr, 0};
    if (gnutls_pubkey_import_x509_raw(key, &certs[0], GNUTLS_X509_FMT_DER, 0) == 0 &&
        gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &der) == 0) {
        id = dht::ContactId::hashPublicKeyDer(std::span<const std::uint8_t>(der.data, der.size));
        gnutls_free(der.data);
    }
    gnutls_pubkey_deinit(key);
    return id;
}

} // namespace

// ---------------------------------------------------------------------------------------------

namespace {

struct SendStream {
    std::deque<std::vector<std::uint8_t>> chunks; // not yet acknowledged
    std::uint64_t base = 0;                       // stream offset of chunks.front()[0]
    std::uint64_t total = 0;                      // stream offset after the last byte queued
    std::uint64_t sent = 0;                       // handed to ngtcp2
    std::size_t sendChunk = 0, sendPos = 0;       // where `sent` is in `chunks`
    bool fin = false, finSent = false, blocked = false;
};

} // namespace

struct Transport::Impl : std::enable_shared_from_this<Transport::Impl> {
    Impl(asio::io_context& ioContext) : io(ioContext) {}
    ~Impl();

    asio::io_context& io;
    TransportConfig config;
    SendFn send;
    dht::ContactId self;
    gnutls_certificate_credentials_t credentials = nullptr;
    Authorizer authorizer;
    std::function<void(ConnectionPtr)> acceptHandler, suspectHandler;
    std::set<ConnectionPtr> connections;
    // Established connections we serve, by the client's current address: an unmatched
    // packet from a client that may have restarted is looked up in O(1), not by a scan.
    std::unordered_multimap<dht::SocketAddress, std::weak_ptr<Connection>> servedByRemote;
    void indexServed(Connection& c) { servedByRemote.emplace(c.remote(), c.weak_from_this()); }
    void unindexServed(Connection& c) {
        auto [from, to] = servedByRemote.equal_range(c.remote());
        for (auto it = from; it != to; ++it) {
            auto p = it->second.lock();
            if (!p || p.get() == &c) {
                servedByRemote.erase(it);
                return;
            }
        }
    }
    std::unordered_map<std::string, std::weak_ptr<Connection>> byCid;
    std::map<std::string, std::weak_ptr<Connection>> byResetToken;
    std::map<std::string, std::chrono::steady_clock::time_point> expected; // host:port -> until
    std::map<std::string, std::size_t> handshakesByHost;
    std::size_t handshakes = 0;
    TransportStats counters;
    // Stateless resets: a token bucket of 50 per second.
    double resetTokens = 50;
    std::chrono::steady_clock::time_point resetRefill = std::chrono::steady_clock::now();
    std::FILE* keyLog = nullptr;
    bool shuttingDown = false;
    std::array<std::uint8_t, 65536> buffer{};
    std::vector<std::weak_ptr<Connection>> touched; // read from in this burst
    bool burstsEnded = false;                       // the owner calls endOfBurst

    void accept(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from,
                const ngtcp2_version_cid& vc);
    void maybeReset(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from);
    bool isExpected(const dht::SocketAddress& from);
    const dht::SocketAddress& localFor(const dht::SocketAddress& remote) const {
        return remote.family() == AF_INET6 ? config.local6 : config.local4;
    }
};

struct Connection::Impl {
    std::weak_ptr<Transport::Impl> transport;
    Transport::Impl* t = nullptr; // valid while `transport` is alive
    ngtcp2_conn* conn = nullptr;
    gnutls_session_t session = nullptr;
    ngtcp2_crypto_conn_ref ref{};
    std::unique_ptr<asio::steady_timer> timer;
    dht::SocketAddress local;
    dht::ContactId expectedPeer; // client side
    bool peerVerified = false;
    bool countedHandshake = false; // server: holds a handshake slot
    std::string handshakeHost;
    bool flushScheduled = false;
    bool touched = false; // in the transport's list for endOfBurst
    bool closing = false;
    bool started = false;
    std::chrono::steady_clock::time_point lastSuspect{};
    std::map<std::int64_t, SendStream> streams;
    std::set<std::int64_t> drained;  // streams whose buffer shrank since the last report
    std::set<std::int64_t> finished; // streams ngtcp2 closed
    std::deque<std::vector<std::uint8_t>> datagrams;
    std::uint64_t datagramsDropped = 0;
    // Acknowledged send buffers, reused by the next writes: a bulk transfer otherwise
    // allocates, faults in and frees a large buffer per write.
    std::vector<std::vector<std::uint8_t>> spareChunks;
    static constexpr std::size_t kMaxSpareChunks = 32, kMaxSpareChunkCapacity = 1 << 20;
    void recycle(std::vector<std::uint8_t>&& chunk) {
        if (spareChunks.size() < kMaxSpareChunks && chunk.capacity() <= kMaxSpareChunkCapacity)
            spareChunks.push_back(std::move(chunk));
    }
    std::vector<std::uint8_t> chunkOf(std::span<const std::uint8_t> data) {
        std::vector<std::uint8_t> chunk;
        if (!spareChunks.empty()) {
            chunk = std::move(spareChunks.back());
            spareChunks.pop_back();
        }
        chunk.assign(data.begin(), data.end());
        return chunk;
    }
    std::vector<std::string> cids; // registered in byCid
    std::vector<std::string> resetTokens;
    Transport::DialDone dialDone;
    std::string closeReason;
    // Application data received inside ngtcp2 callbacks, delivered after read_pkt returns so
    // that handlers may call back into the connection.
    struct Inbound {
        std::int64_t stream; // -1: a datagram
        std::vector<std::uint8_t> data;
        bool fin;
    };
    std::vector<Inbound> inbound;
    static constexpr std::size_t kMaxInboundPiece = 1 << 20;
};

// --- ngtcp2 callbacks ------------------------------------------------------------------------

namespace {

Connection& self(void* userData) {
    return *static_cast<Connection*>(userData);
}

} // namespace

class ConnectionAccess {
public:
    static Connection::Impl& impl(Connection& c) { return *c.impl_; }
    static std::shared_ptr<Connection> create(bool client) {
        return std::shared_ptr<Connection>(new Connection(client));
    }
    static void setEstablished(Connection& c) { c.established_ = true; }
    static void setPeer(Connection& c, const dht::ContactId& id) { c.peer_ = id; }
    static void setRemote(Connection& c, const dht::SocketAddress& a) { c.remote_ = a; }
    static bool isClient(const Connection& c) { return c.client_; }
    static void markClosed(Connection& c) { c.closed_ = true; }
};

namespace {

// Every ngtcp2 and GnuTLS callback runs its body through this: an exception must never unwind
// through C code (DESIGN.md §2). It is logged, and the library gets its failure code, which
// closes that one connection.
template <class F> int guarded(const char* where, int failure, F&& body) noexcept {
    try {
        return body();
    } catch (const std::exception& e) {
        spdlog::error("QUIC: {} failed: {}", where, e.what());
    } catch (...) {
        spdlog::error("QUIC: {} failed with an unknown error", where);
    }
    return failure;
}

ngtcp2_conn* getConn(ngtcp2_crypto_conn_ref* ref) {
    auto& c = *static_cast<Connection*>(ref->user_data);
    return ConnectionAccess::impl(c).conn;
}

int onVerify(gnutls_session_t session) noexcept {
    return guarded("onVerify", -1, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto& c = *static_cast<Connection*>(ref->user_data);
        auto& ci = ConnectionAccess::impl(c);
        auto id = peerContactId(session);
        if (!id) {
            spdlog::info("QUIC handshake refused: the peer presented no usable certificate");
            return -1;
        }
        if (ConnectionAccess::isClient(c)) {
            if (*id != ci.expectedPeer) {
                spdlog::warn("QUIC handshake refused: {} presented the key of {}, not of {}",
                             c.remote().toString(), id->shortHex(), ci.expectedPeer.shortHex());
                return -1;
            }
        } else {
            auto* t = ci.t;
            if (!t || !t->authorizer || !t->authorizer(*id)) {
                spdlog::info("QUIC handshake refused: {} at {} is not an accepted contact",
                             id->shortHex(), c.remote().toString());
                if (t)
                    ++t->counters.handshakesRefused;
                return -1;
            }
        }
        ConnectionAccess::setPeer(c, *id);
        ci.peerVerified = true;
        return 0;
    });
}

// A server checks, once the ClientHello is read, that it carried QUIC transport parameters.
// Without them ngtcp2 0.12 never sets the negotiated version and later aborts the whole
// process on an assertion when it writes a packet (found by fuzz_quic_transport): one
// datagram from anyone would bring the node down. Refusing the ClientHello fails only that
// handshake.
int onClientHello(gnutls_session_t session, unsigned, unsigned, unsigned,
                  const gnutls_datum_t*) noexcept {
    return guarded("onClientHello", GNUTLS_E_MISSING_EXTENSION, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto* conn = ref ? getConn(ref) : nullptr;
        if (!conn || ngtcp2_conn_get_negotiated_version(conn) == 0) {
            spdlog::debug("QUIC handshake refused: a ClientHello without transport parameters");
            return GNUTLS_E_MISSING_EXTENSION;
        }
        return 0;
    });
}

int onKeyLog(gnutls_session_t session, const char* label, const gnutls_datum_t* secret) noexcept {
    return guarded("onKeyLog", -1, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto& ci = ConnectionAccess::impl(*static_cast<Connection*>(ref->user_data));
        if (!ci.t || !ci.t->keyLog)
            return 0;
        gnutls_datum_t clientRandom{nullptr, 0};
        gnutls_session_get_random(session, &clientRandom, nullptr);
        std::fprintf(ci.t->keyLog, "%s %s %s\n", label,
                     dht::toHex({clientRandom.data, clientRandom.size}).c_str(),
                     dht::toHex({secret->data, secret->size}).c_str());
        std::fflush(ci.t->keyLog);
        return 0;
    });
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

int onStreamClose(ngtcp2_conn*, std::uint32_t, std::int64_t stream, std::uint64_t, void* user,
                  void*) noexcept {
    return guarded("onStreamClose", NGTCP2_ERR_CALLBACK_FAILURE, [&]() -> int {
        auto& ci = ConnectionAccess::impl(self(user));
        ci.streams.erase(stream);
        ci.finished.insert(stream);
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
        randomBytes(cid->data, len);
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

} // namespace

// --- Connection --------------------------------------------------------------------------------

// The packets of one flush, written one after another into the transport's buffer and sent
// in runs of same-sized datagrams to one address: one system call per run (UDP GSO) instead
// of one per packet, which is what bulk transfers spend their time on (docs/PERFORMANCE.md).
namespace {

class PacketBatch {
public:
    PacketBatch(Transport::Impl& t, std::size_t maxPacket) : t_(t), maxPacket_(maxPacket) {}
    PacketBatch(const PacketBatch&) = delete;
    PacketBatch& operator=(const PacketBatch&) = delete;

    // Where the next packet goes; it has room for maxPacket() bytes.
    std::uint8_t* next() { return t_.buffer.data() + used_; }
    std::size_t maxPacket() const { return maxPacket_; }

    // The packet of `n` bytes just written at next(), for `remote`.
    void add(const ngtcp2_addr& remote, std::size_t n) {
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

    // Sends what is pending; the buffer is free again afterwards.
    void send() {
        if (count_ == 0)
            return;
        t_.send(dht::SocketAddress(reinterpret_cast<const sockaddr*>(&remote_), remoteLen_),
                std::span<const std::uint8_t>(t_.buffer.data(), used_), count_ > 1 ? segment_ : 0);
        used_ = count_ = segment_ = 0;
    }

private:
    bool sameRemote(const ngtcp2_addr& remote) const {
        return remote.addrlen == remoteLen_ && std::memcmp(remote.addr, &remote_, remoteLen_) == 0;
    }

    Transport::Impl& t_;
    std::size_t maxPacket_;
    std::size_t used_ = 0, count_ = 0, segment_ = 0;
    sockaddr_storage remote_{};
    socklen_t remoteLen_ = 0;
};

} // namespace

class ConnectionDriver {
public:
    // Creates the TLS session and the ngtcp2 connection. Throws std::runtime_error.
    static void setup(Connection& c, Transport::Impl& t, const ngtcp2_cid& dcid,
                      const ngtcp2_cid& scid, const ngtcp2_cid* originalDcid,
                      std::uint32_t version);
    static void read(Connection& c, std::span<const std::uint8_t> pkt,
                     const dht::SocketAddress& from);
    static void flush(Connection& c);
    static void scheduleFlush(Connection& c);
    // What scheduleFlush scheduled: deliver what arrived, then flush.
    static void runScheduled(Connection& c);
    static void armTimer(Connection& c);
    static void onTimer(Connection& c);
    static void deliver(Connection& c);
    // `peerCode`: the peer's application code when `by` is ClosedBy::peer.
    static void terminate(Connection& c, ClosedBy by, const std::string& reason,
                          const ngtcp2_connection_close_error* sendClose,
                          std::uint64_t peerCode = 0);
    static void established(Connection& c);
    static bool writeStreams(Connection& c, ngtcp2_path_storage& ps, ngtcp2_tstamp ts,
                             PacketBatch& batch);
    static void failWrite(Connection& c, PacketBatch& batch, ngtcp2_ssize error);
};

Connection::Connection(bool client) : impl_(std::make_unique<Impl>()), client_(client) {
    createdAt_ = std::chrono::steady_clock::now();
}

Connection::~Connection() {
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
    ci.timer = std::make_unique<asio::steady_timer>(t.io);
    ci.local = t.localFor(c.remote_);
    ci.ref.get_conn = getConn;
    ci.ref.user_data = &c;

    unsigned flags = c.client_ ? GNUTLS_CLIENT : GNUTLS_SERVER;
    if (gnutls_init(&ci.session, flags | GNUTLS_NO_END_OF_EARLY_DATA) != 0)
        throw std::runtime_error("gnutls_init failed");
    int rv = c.client_ ? ngtcp2_crypto_gnutls_configure_client_session(ci.session)
                       : ngtcp2_crypto_gnutls_configure_server_session(ci.session);
    if (rv != 0)
        throw std::runtime_error("cannot configure the QUIC TLS session");
    if (gnutls_priority_set_direct(ci.session, kPriority, nullptr) != 0 ||
        gnutls_credentials_set(ci.session, GNUTLS_CRD_CERTIFICATE, t.credentials) != 0)
        throw std::runtime_error("cannot configure the TLS session");
    gnutls_session_set_ptr(ci.session, &ci.ref);
    gnutls_session_set_verify_function(ci.session, onVerify);
    if (!c.client_) {
        gnutls_certificate_server_set_request(ci.session, GNUTLS_CERT_REQUIRE);
        gnutls_handshake_set_hook_function(ci.session, GNUTLS_HANDSHAKE_CLIENT_HELLO,
                                           GNUTLS_HOOK_POST, onClientHello);
    }
    gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kAlpn)),
                        static_cast<unsigned>(std::strlen(kAlpn))};
    gnutls_alpn_set_protocols(ci.session, &alpn, 1, GNUTLS_ALPN_MANDATORY);
    if (c.client_)
        gnutls_server_name_set(ci.session, GNUTLS_NAME_DNS, "parley", 6);
    if (t.keyLog)
        gnutls_session_set_keylog_function(ci.session, onKeyLog);

    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = nowNs();
    settings.initial_rtt =
        static_cast<ngtcp2_duration>(t.config.initialRtt.count()) * NGTCP2_MILLISECONDS;
    settings.handshake_timeout =
        static_cast<ngtcp2_duration>(t.config.handshakeTimeout.count()) * NGTCP2_MILLISECONDS;
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
    if (traceEnabled())
        settings.log_printf = tracePrintf;

    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_stream_data_bidi_local = t.config.streamWindow;
    params.initial_max_stream_data_bidi_remote = t.config.streamWindow;
    params.initial_max_stream_data_uni = t.config.streamWindow;
    params.initial_max_data = t.config.streamWindow * 4;
    params.initial_max_streams_bidi = 64;
    params.initial_max_streams_uni = 64;
    params.max_idle_timeout =
        static_cast<ngtcp2_duration>(t.config.idleTimeout.count()) * NGTCP2_MILLISECONDS;
    params.max_datagram_frame_size = 65535;
    params.active_connection_id_limit = 4;
    // A peer that sees RFC 9287 offered may clear the fixed bit (0x40) on packets to us;
    // the shared socket tells QUIC from DHT traffic without it too (classifyDatagram), but
    // we do not offer it where we can help it.
    params.grease_quic_bit = 0;

    ngtcp2_path path{{const_cast<sockaddr*>(ci.local.get()), ci.local.length()},
                     {const_cast<sockaddr*>(c.remote_.get()), c.remote_.length()},
                     nullptr};
    auto callbacks = makeCallbacks(c.client_);
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
    if (!ci.conn || c.closed_)
        return;
    ngtcp2_path path{{const_cast<sockaddr*>(ci.local.get()), ci.local.length()},
                     {const_cast<sockaddr*>(from.get()), from.length()},
                     nullptr};
    ngtcp2_pkt_info pi{};
    bool wasEstablished = c.established_;
    int rv = ngtcp2_conn_read_pkt(ci.conn, &path, &pi, pkt.data(), pkt.size(), nowNs());
    if (rv != 0) {
        deliver(c); // what arrived before the close (a goodbye, say) still reaches the owner
        if (c.closed_)
            return;
        if (rv == NGTCP2_ERR_DRAINING) {
            ngtcp2_connection_close_error err;
            ngtcp2_conn_get_connection_close_error(ci.conn, &err);
            std::string reason = "closed by the peer";
            // An application close carries our CloseCode; a transport close has none.
            std::uint64_t peerCode = err.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION
                                         ? err.error_code
                                         : 0;
            if (err.reasonlen)
                reason +=
                    ": " + std::string(reinterpret_cast<const char*>(err.reason), err.reasonlen);
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
        return;
    }
    // A client follows a NAT rebinding on the server's side only through path validation;
    // the remote address we report is the current path's.
    if (auto* p = ngtcp2_conn_get_path(ci.conn); p && p->remote.addrlen) {
        dht::SocketAddress now(p->remote.addr, p->remote.addrlen);
        if (!(now == c.remote_)) {
            bool indexed = wasEstablished && !c.client_ && ci.t;
            if (indexed)
                ci.t->unindexServed(c);
            ConnectionAccess::setRemote(c, now);
            if (indexed)
                ci.t->indexServed(c);
        }
    }
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

void ConnectionDriver::established(Connection& c) {
    auto& ci = *c.impl_;
    auto* t = ci.t;
    if (ci.countedHandshake && t) {
        ci.countedHandshake = false;
        --t->handshakes;
        if (auto it = t->handshakesByHost.find(ci.handshakeHost);
            it != t->handshakesByHost.end() && --it->second == 0)
            t->handshakesByHost.erase(it);
    }
    ngtcp2_conn_set_keep_alive_timeout(
        ci.conn, static_cast<ngtcp2_duration>(t->config.keepAlive.count()) * NGTCP2_MILLISECONDS);
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
    auto sent = [&](const ngtcp2_addr& remote, std::size_t n) {
        batch.add(remote, n);
        if (pacing && ++quantum >= std::max<std::size_t>(1, ngtcp2_conn_get_send_quantum(ci.conn) /
                                                                maxPacket)) {
            ngtcp2_conn_update_pkt_tx_time(ci.conn, ts);
            quantum = 0;
        }
    };
    for (int packets = 0; packets < 4096; ++packets) {
        // Datagrams first: they are for media and must not wait behind bulk data.
        if (!ci.datagrams.empty()) {
            ngtcp2_vec v{ci.datagrams.front().data(), ci.datagrams.front().size()};
            int accepted = 0;
            auto n = ngtcp2_conn_writev_datagram(ci.conn, &ps.path, &pi, batch.next(), maxPacket,
                                                 &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v,
                                                 1, ts);
            if (accepted)
                ci.datagrams.pop_front();
            if (n == NGTCP2_ERR_WRITE_MORE)
                continue;
            if (n < 0) {
                if (n == NGTCP2_ERR_INVALID_ARGUMENT || n == NGTCP2_ERR_INVALID_STATE) {
                    ci.datagrams.pop_front(); // too large for the peer, or not supported
                    ++ci.datagramsDropped;
                    continue;
                }
                failWrite(c, batch, n);
                return false;
            }
            if (n == 0)
                return true; // congestion limited
            sent(ps.path.remote, static_cast<std::size_t>(n));
            continue;
        }
        // Next stream with something to send (round robin over the map).
        std::int64_t streamId = -1;
        SendStream* s = nullptr;
        for (std::size_t tries = 0; tries < ci.streams.size(); ++tries) {
            if (streamIt == ci.streams.end())
                streamIt = ci.streams.begin();
            auto& cand = streamIt->second;
            if (!cand.blocked && (cand.sent < cand.total || (cand.fin && !cand.finSent))) {
                streamId = streamIt->first;
                s = &cand;
                break;
            }
            ++streamIt;
        }
        std::array<ngtcp2_vec, 16> vecs{};
        std::size_t vcount = 0;
        std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        if (s) {
            std::size_t idx = s->sendChunk, pos = s->sendPos;
            while (idx < s->chunks.size() && vcount < vecs.size()) {
                auto& chunk = s->chunks[idx];
                vecs[vcount++] = {chunk.data() + pos, chunk.size() - pos};
                ++idx;
                pos = 0;
            }
            if (s->fin && idx == s->chunks.size())
                flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize accepted = -1;
        auto n = ngtcp2_conn_writev_stream(ci.conn, &ps.path, &pi, batch.next(), maxPacket,
                                           &accepted, flags, streamId, vecs.data(), vcount, ts);
        if (s && accepted >= 0) {
            auto left = static_cast<std::size_t>(accepted);
            s->sent += left;
            while (left > 0) {
                auto& chunk = s->chunks[s->sendChunk];
                auto take = std::min(left, chunk.size() - s->sendPos);
                s->sendPos += take;
                left -= take;
                if (s->sendPos == chunk.size()) {
                    ++s->sendChunk;
                    s->sendPos = 0;
                }
            }
            if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->total)
                s->finSent = true;
        }
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
        sent(ps.path.remote, static_cast<std::size_t>(n));
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
    auto ts = nowNs();
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

void ConnectionDriver::armTimer(Connection& c) {
    auto& ci = *c.impl_;
    auto expiry = ngtcp2_conn_get_expiry(ci.conn);
    if (expiry == UINT64_MAX) {
        ci.timer->cancel();
        return;
    }
    auto now = nowNs();
    auto delay =
        expiry > now ? std::chrono::nanoseconds(expiry - now) : std::chrono::nanoseconds(0);
    ci.timer->expires_after(delay);
    ci.timer->async_wait([weak = c.weak_from_this()](const std::error_code& ec) {
        auto conn = weak.lock();
        if (ec || !conn)
            return;
        onTimer(*conn);
    });
}

void ConnectionDriver::onTimer(Connection& c) {
    auto& ci = *c.impl_;
    if (!ci.conn || c.closed_)
        return;
    int rv = ngtcp2_conn_handle_expiry(ci.conn, nowNs());
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

void ConnectionDriver::terminate(Connection& c, ClosedBy by, const std::string& reason,
                                 const ngtcp2_connection_close_error* sendClose,
                                 std::uint64_t peerCode) {
    auto& ci = *c.impl_;
    if (c.closed_)
        return;
    auto* t = ci.transport.expired() ? nullptr : ci.t;
    if (sendClose && ci.conn && t && !ngtcp2_conn_is_in_draining_period(ci.conn) &&
        !ngtcp2_conn_is_in_closing_period(ci.conn)) {
        ngtcp2_path_storage ps;
        ngtcp2_path_storage_zero(&ps);
        ngtcp2_pkt_info pi{};
        auto n = ngtcp2_conn_write_connection_close(ci.conn, &ps.path, &pi, t->buffer.data(),
                                                    kMaxPacket, sendClose, nowNs());
        if (n > 0)
            t->send(dht::SocketAddress(ps.path.remote.addr, ps.path.remote.addrlen),
                    std::span<const std::uint8_t>(t->buffer.data(), static_cast<std::size_t>(n)),
                    0);
    }
    ConnectionAccess::markClosed(c);
    ci.closeReason = reason;
    // Handlers are never called again: let go of what they hold (a handler that captured its
    // own connection would otherwise keep it alive forever).
    c.onStreamData = nullptr;
    c.onWritable = nullptr;
    c.onStreamClosed = nullptr;
    c.onDatagram = nullptr;
    if (ci.timer)
        ci.timer->cancel();
    ci.streams.clear();
    ci.datagrams.clear();
    auto keep = c.shared_from_this();
    if (t) {
        for (const auto& k : ci.cids)
            if (auto it = t->byCid.find(k); it != t->byCid.end() && it->second.lock().get() == &c)
                t->byCid.erase(it);
        for (const auto& k : ci.resetTokens)
            t->byResetToken.erase(k);
        if (ci.countedHandshake) {
            ci.countedHandshake = false;
            --t->handshakes;
            if (auto it = t->handshakesByHost.find(ci.handshakeHost);
                it != t->handshakesByHost.end() && --it->second == 0)
                t->handshakesByHost.erase(it);
        }
        if (!c.established_)
            ++t->counters.connectionsFailed;
        else if (!c.client_)
            t->unindexServed(c);
        t->connections.erase(keep);
    }
    if (c.established_)
        spdlog::info("QUIC connection to {} closed: {}", c.peer_.shortHex(), reason);
    else
        spdlog::debug("QUIC handshake with {} failed: {}", c.remote_.toString(), reason);
    // Handlers run later, never inside ngtcp2 or our own iteration.
    auto dialDone = std::move(ci.dialDone);
    ci.dialDone = nullptr;
    auto onClosed = std::move(c.onClosed);
    c.onClosed = nullptr;
    auto post = [&](std::function<void()> f) {
        if (t)
            asio::post(t->io, std::move(f));
    };
    if (dialDone)
        post([dialDone, reason] { dialDone(nullptr, reason); });
    if (onClosed && c.established_)
        post([onClosed, why = CloseReason{by, peerCode, reason}, keep] { onClosed(why); });
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

// --- Transport ---------------------------------------------------------------------------------

Transport::Impl::~Impl() {
    if (credentials)
        gnutls_certificate_free_credentials(credentials);
    if (keyLog)
        std::fclose(keyLog);
}

Transport::Transport(asio::io_context& io, TransportConfig config, SendFn send)
    : impl_(std::make_shared<Impl>(io)) {
    auto& s = *impl_;
    s.config = std::move(config);
    s.send = std::move(send);
    if (gnutls_certificate_allocate_credentials(&s.credentials) != 0)
        throw std::runtime_error("cannot allocate TLS credentials");
    // The identity certificate is OpenDHT's CA certificate (key usage: certificate signing
    // only), which GnuTLS refuses for TLS signatures. We present a leaf certificate for the
    // same key instead, made at start: the peer pins the key, not the certificate.
    gnutls_x509_privkey_t key = nullptr;
    gnutls_x509_crt_t crt = nullptr;
    auto fail = [&](const char* what, int rv) {
        if (crt)
            gnutls_x509_crt_deinit(crt);
        if (key)
            gnutls_x509_privkey_deinit(key);
        throw std::runtime_error(std::string("cannot set up the QUIC identity (") + what +
                                 "): " + gnutls_strerror(rv));
    };
    gnutls_datum_t keyPem{reinterpret_cast<unsigned char*>(s.config.privateKeyPem.data()),
                          static_cast<unsigned>(s.config.privateKeyPem.size())};
    int rv = gnutls_x509_privkey_init(&key);
    if (rv == 0)
        rv = gnutls_x509_privkey_import2(key, &keyPem, GNUTLS_X509_FMT_PEM, nullptr, 0);
    if (rv != 0)
        fail("private key", rv);
    if ((rv = gnutls_x509_crt_init(&crt)) != 0)
        fail("certificate", rv);
    std::array<std::uint8_t, 16> serial{};
    randomBytes(serial.data(), serial.size());
    serial[0] &= 0x7f; // a positive serial number
    auto now = std::time(nullptr);
    static constexpr char kCommonName[] = "parley";
    if ((rv = gnutls_x509_crt_set_version(crt, 3)) != 0 ||
        (rv = gnutls_x509_crt_set_serial(crt, serial.data(), serial.size())) != 0 ||
        (rv = gnutls_x509_crt_set_activation_time(crt, now - 24 * 3600)) != 0 ||
        (rv = gnutls_x509_crt_set_expiration_time(crt, now + 365 * 24 * 3600)) != 0 ||
        (rv = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, kCommonName,
                                            sizeof(kCommonName) - 1)) != 0 ||
        (rv = gnutls_x509_crt_set_key(crt, key)) != 0 ||
        (rv = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) != 0 ||
        (rv = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) != 0 ||
        (rv = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) != 0)
        fail("leaf certificate", rv);
    if ((rv = gnutls_certificate_set_x509_key(s.credentials, &crt, 1, key)) != 0)
        fail("credentials", rv);
    // Our own ContactId, from the key we present.
    gnutls_pubkey_t pub = nullptr;
    gnutls_datum_t der{nullptr, 0};
    if (gnutls_pubkey_init(&pub) == 0 && gnutls_pubkey_import_x509(pub, crt, 0) == 0 &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) == 0) {
        s.self = dht::ContactId::ofPublicKeyDer(std::span<const std::uint8_t>(der.data, der.size));
        gnutls_free(der.data);
    }
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    // The private key is not needed any more in our copy.
    std::fill(s.config.privateKeyPem.begin(), s.config.privateKeyPem.end(), '\0');
    s.config.privateKeyPem.clear();
    if (!s.config.keyLogFile.empty()) {
        auto old = ::umask(077);
        s.keyLog = std::fopen(s.config.keyLogFile.c_str(), "a");
        ::umask(old);
        if (s.keyLog)
            spdlog::warn("writing TLS secrets to {} (SSLKEYLOGFILE): anyone with this file can "
                         "decrypt captured traffic",
                         s.config.keyLogFile);
        else
            spdlog::error("cannot open SSLKEYLOGFILE {}", s.config.keyLogFile);
    }
}

Transport::~Transport() {
    shutdown();
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

void Transport::expect(const dht::SocketAddress& from,
                       std::chrono::steady_clock::time_point until) {
    auto& s = *impl_;
    auto now = std::chrono::steady_clock::now();
    for (auto it = s.expected.begin(); it != s.expected.end();)
        it = it->second < now ? s.expected.erase(it) : std::next(it);
    if (s.expected.size() < 4096)
        s.expected[from.toString()] = until;
}

bool Transport::Impl::isExpected(const dht::SocketAddress& from) {
    auto it = expected.find(from.toString());
    return it != expected.end() && it->second >= std::chrono::steady_clock::now();
}

void Transport::punch(const dht::SocketAddress& to) {
    std::array<std::uint8_t, 8> datagram{};
    datagram[0] = kPunchByte;
    randomBytes(datagram.data() + 1, datagram.size() - 1);
    impl_->send(to, datagram, 0);
}

void Transport::receive(std::span<const std::uint8_t> datagram, const dht::SocketAddress& from) {
    auto& s = *impl_;
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
        s.accept(datagram, from, vc);
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

void Transport::Impl::accept(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from,
                             const ngtcp2_version_cid& vc) {
    if (shuttingDown)
        return;
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt.data(), pkt.size()) != 0) {
        ++counters.packetsUnmatched;
        return;
    }
    bool expectedHost = isExpected(from);
    auto host = hostOf(from);
    if (!expectedHost) {
        auto perHost = handshakesByHost.count(host) ? handshakesByHost[host] : 0;
        if (handshakes >= config.maxHandshakes || perHost >= config.maxHandshakesPerHost) {
            ++counters.initialsDropped;
            return;
        }
    } else if (handshakes >= config.maxHandshakes + 64) {
        ++counters.initialsDropped; // room reserved for expected contacts is full too
        return;
    }
    if (connections.size() >= config.maxConnections + config.maxHandshakes) {
        ++counters.initialsDropped;
        return;
    }
    (void)vc;
    auto c = ConnectionAccess::create(false);
    ConnectionAccess::setRemote(*c, from);
    ngtcp2_cid scid;
    scid.datalen = kCidLength;
    randomBytes(scid.data, kCidLength);
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

void Transport::Impl::maybeReset(std::span<const std::uint8_t> pkt,
                                 const dht::SocketAddress& from) {
    ++counters.packetsUnmatched;
    // Is it a stateless reset for one of our connections? Its last 16 bytes are the token.
    if (pkt.size() >= 21) {
        auto key = cidKey(pkt.data() + pkt.size() - NGTCP2_STATELESS_RESET_TOKENLEN,
                          NGTCP2_STATELESS_RESET_TOKENLEN);
        if (auto it = byResetToken.find(key); it != byResetToken.end()) {
            if (auto c = it->second.lock()) {
                ConnectionDriver::terminate(*c, ClosedBy::reset,
                                            "the peer restarted (stateless reset)", nullptr);
                return;
            }
        }
    }
    // From the address of a client we serve (e.g. its stateless reset, which we cannot check:
    // no token for its first connection id): it may have restarted.
    if (suspectHandler)
        for (auto [it, end] = servedByRemote.equal_range(from); it != end; ++it) {
            auto c = it->second.lock();
            if (!c)
                continue;
            auto& ci = ConnectionAccess::impl(*c);
            if (!c->established() || c->isClient() || !(c->remote() == from) ||
                std::chrono::steady_clock::now() - ci.lastSuspect < std::chrono::seconds(5))
                continue;
            ci.lastSuspect = std::chrono::steady_clock::now();
            asio::post(io, [weak = weak_from_this(), c] {
                if (auto t = weak.lock(); t && t->suspectHandler && !c->closed())
                    t->suspectHandler(c);
            });
        }
    // A packet for a connection we do not know (we restarted, or it closed): tell the peer
    // with a stateless reset, smaller than what it sent so that two endpoints cannot loop.
    if (pkt.size() < 1 + kCidLength + 26)
        return;
    auto now = std::chrono::steady_clock::now();
    resetTokens = std::min(
        50.0, resetTokens + 50.0 * std::chrono::duration<double>(now - resetRefill).count());
    resetRefill = now;
    if (resetTokens < 1)
        return;
    resetTokens -= 1;
    ngtcp2_cid dcid;
    dcid.datalen = kCidLength;
    std::memcpy(dcid.data, pkt.data() + 1, kCidLength);
    std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> token{};
    if (ngtcp2_crypto_generate_stateless_reset_token(token.data(), config.resetSecret.data(),
                                                     config.resetSecret.size(), &dcid) != 0)
        return;
    std::array<std::uint8_t, 24> rand{};
    randomBytes(rand.data(), rand.size());
    std::size_t randLen = std::min(rand.size(), pkt.size() - 1 - NGTCP2_STATELESS_RESET_TOKENLEN);
    std::array<std::uint8_t, 64> out{};
    auto n = ngtcp2_pkt_write_stateless_reset(out.data(), out.size(), token.data(), rand.data(),
                                              randLen);
    if (n > 0) {
        ++counters.statelessResetsSent;
        send(from, std::span<const std::uint8_t>(out.data(), static_cast<std::size_t>(n)), 0);
    }
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
    auto c = ConnectionAccess::create(true);
    ConnectionAccess::setRemote(*c, to);
    auto& ci = ConnectionAccess::impl(*c);
    ci.expectedPeer = peer;
    ci.dialDone = std::move(done);
    ngtcp2_cid dcid, scid;
    dcid.datalen = kCidLength;
    scid.datalen = kCidLength;
    randomBytes(dcid.data, kCidLength);
    randomBytes(scid.data, kCidLength);
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
