// Private to node/transport/quic_*.cpp: the state behind quic.h's Transport and Connection and
// the pieces the files share (ngtcp2 and GnuTLS types may appear here, and only here and in
// those files). quic.h stays the one public boundary.
//
// The files, one job each:
//   quic_tls.cpp        TLS sessions, the leaf certificate, peer verification, key log
//   quic_callbacks.cpp  ngtcp2's callbacks into a connection
//   quic_connection.cpp a connection's life: setup, reading, delivery, timers, close, its API
//   quic_send.cpp       the write path: send buffers into packets, packets into GSO runs
//   quic_transport.cpp  the transport: admission, connection-id routing, dialling, shutdown
//   quic_reset.cpp      unmatched packets: stateless resets (both ways) and restarted clients
#pragma once

#include "dht/clock.h"
#include "node/transport/quic.h"

#include <asio/steady_timer.hpp>
#include <deque>
#include <gnutls/gnutls.h>
#include <map>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>
#include <unordered_map>

namespace parley::node::quic::detail {

inline constexpr std::size_t kCidLength = 16; // our source connection ids
inline constexpr std::size_t kMaxPacket = 1452;
inline constexpr std::uint8_t kPunchByte = 0x00; // neither QUIC (0x40 clear) nor DHT (not a map)

inline std::string cidKey(const std::uint8_t* data, std::size_t len) {
    return std::string(reinterpret_cast<const char*>(data), len);
}
inline std::string cidKey(const ngtcp2_cid& cid) {
    return cidKey(cid.data, cid.datalen);
}

// Cryptographically random bytes (GnuTLS), for what must be unpredictable: connection ids.
// Never throws: it runs inside ngtcp2 callbacks (new connection ids).
void secretRandom(std::uint8_t* out, std::size_t len) noexcept;

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

struct SendStream {
    std::deque<std::vector<std::uint8_t>> chunks; // not yet acknowledged
    std::uint64_t base = 0;                       // stream offset of chunks.front()[0]
    std::uint64_t total = 0;                      // stream offset after the last byte queued
    std::uint64_t sent = 0;                       // handed to ngtcp2
    std::size_t sendChunk = 0, sendPos = 0;       // where `sent` is in `chunks`
    bool fin = false, finSent = false, blocked = false;
};

} // namespace parley::node::quic::detail

namespace parley::node::quic {

struct Transport::Impl : std::enable_shared_from_this<Transport::Impl> {
    Impl(asio::io_context& ioContext) : io(ioContext), wake(ioContext) {}
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
    void indexServed(Connection& c);
    void unindexServed(Connection& c);
    // Routing: connection ids and reset tokens of live connections (bounded by them; each
    // connection removes its own entries when it ends).
    std::unordered_map<std::string, std::weak_ptr<Connection>> byCid;
    std::unordered_map<std::string, std::weak_ptr<Connection>> byResetToken;
    // Addresses we expect a handshake from, until when. At most kMaxExpected; expired ones
    // are pruned when the table is full.
    static constexpr std::size_t kMaxExpected = 4096;
    std::unordered_map<dht::SocketAddress, dht::Clock::TimePoint> expected;
    // Server-side handshakes in progress by host (the address with port 0).
    std::unordered_map<dht::SocketAddress, std::size_t> handshakesByHost;
    std::size_t handshakes = 0;
    TransportStats counters;
    // Stateless resets: a token bucket of 50 per second.
    double resetTokens = 50;
    dht::Clock::TimePoint resetRefill{};
    std::FILE* keyLog = nullptr;
    bool shuttingDown = false;
    std::array<std::uint8_t, 65536> buffer{};
    std::vector<std::weak_ptr<Connection>> touched; // read from in this burst
    bool burstsEnded = false;                       // the owner calls endOfBurst

    // Time and randomness (TransportConfig::clock and ::random, or the system's).
    dht::Clock* clock = nullptr;
    dht::Random* random = nullptr;
    dht::Clock::TimePoint now() const { return clock->now(); }
    ngtcp2_tstamp nowTs() const;

    // Connection timers: each connection's next ngtcp2 expiry, in the clock's time. One asio
    // timer wakes the transport at the earliest; handleTimers() runs what is due.
    std::multimap<dht::Clock::TimePoint, std::weak_ptr<Connection>> timers;
    asio::steady_timer wake;
    std::optional<dht::Clock::TimePoint> wakeAt;
    void rearmWake();
    void runDueTimers();

    void accept(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from);
    bool admit(const dht::SocketAddress& from, const dht::SocketAddress& host);
    void maybeReset(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from);
    bool resetFor(std::span<const std::uint8_t> pkt);
    void suspectClientAt(const dht::SocketAddress& from);
    void sendReset(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from);
    bool isExpected(const dht::SocketAddress& from);
    void releaseHandshake(Connection& c);
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
    // Our entry in the transport's timers, when one is armed.
    std::optional<std::multimap<dht::Clock::TimePoint, std::weak_ptr<Connection>>::iterator> timer;
    dht::SocketAddress local;
    dht::ContactId expectedPeer; // client side
    bool peerVerified = false;
    bool countedHandshake = false; // server: holds a handshake slot
    dht::SocketAddress handshakeHost;
    bool flushScheduled = false;
    bool touched = false; // in the transport's list for endOfBurst
    bool closing = false;
    bool started = false;
    std::optional<dht::Clock::TimePoint> lastSuspect;
    std::map<std::int64_t, detail::SendStream> streams;
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

class ConnectionAccess {
public:
    static Connection::Impl& impl(Connection& c) { return *c.impl_; }
    static std::shared_ptr<Connection> create(bool client, dht::Clock::TimePoint now) {
        auto c = std::shared_ptr<Connection>(new Connection(client));
        c->createdAt_ = now;
        return c;
    }
    static void setEstablished(Connection& c) { c.established_ = true; }
    static void setPeer(Connection& c, const dht::ContactId& id) { c.peer_ = id; }
    static void setRemote(Connection& c, const dht::SocketAddress& a) { c.remote_ = a; }
    static bool isClient(const Connection& c) { return c.client_; }
    static void markClosed(Connection& c) { c.closed_ = true; }
};

namespace detail {

// The packets of one flush, written one after another into the transport's buffer and sent
// in runs of same-sized datagrams to one address: one system call per run (UDP GSO) instead
// of one per packet, which is what bulk transfers spend their time on (docs/PERFORMANCE.md).
class PacketBatch {
public:
    PacketBatch(Transport::Impl& t, std::size_t maxPacket) : t_(t), maxPacket_(maxPacket) {}
    PacketBatch(const PacketBatch&) = delete;
    PacketBatch& operator=(const PacketBatch&) = delete;

    // Where the next packet goes; it has room for maxPacket() bytes.
    std::uint8_t* next() { return t_.buffer.data() + used_; }
    std::size_t maxPacket() const { return maxPacket_; }

    // The packet of `n` bytes just written at next(), for `remote`.
    void add(const ngtcp2_addr& remote, std::size_t n);
    // Sends what is pending; the buffer is free again afterwards.
    void send();

private:
    bool sameRemote(const ngtcp2_addr& remote) const;

    Transport::Impl& t_;
    std::size_t maxPacket_;
    std::size_t used_ = 0, count_ = 0, segment_ = 0;
    sockaddr_storage remote_{};
    socklen_t remoteLen_ = 0;
};

// TLS (quic_tls.cpp).
// Loads our key, makes the leaf certificate we present and sets t.credentials and t.self.
// Throws std::runtime_error.
void loadIdentity(Transport::Impl& t);
void openKeyLog(Transport::Impl& t);
// The GnuTLS session of a new connection. Throws std::runtime_error.
void setupTlsSession(Connection& c, Connection::Impl& ci, Transport::Impl& t);

// ngtcp2 (quic_callbacks.cpp).
ngtcp2_callbacks makeCallbacks(bool client);
ngtcp2_conn* getConn(ngtcp2_crypto_conn_ref* ref);
bool traceEnabled();
void tracePrintf(void*, const char* format, ...);

} // namespace detail

// Everything that drives a connection, with access to its private state.
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
    static void disarmTimer(Connection& c);
    static void onTimer(Connection& c);
    static void deliver(Connection& c);
    // `peerCode`: the peer's application code when `by` is ClosedBy::peer.
    static void terminate(Connection& c, ClosedBy by, const std::string& reason,
                          const ngtcp2_connection_close_error* sendClose,
                          std::uint64_t peerCode = 0);
    static void established(Connection& c);

private:
    static void readFailed(Connection& c, int rv);
    static void followPath(Connection& c, bool wasEstablished);
    static void sendClose(Connection& c, Transport::Impl& t,
                          const ngtcp2_connection_close_error& error);
    static void unregister(Connection& c, Transport::Impl& t);
    static bool writeStreams(Connection& c, ngtcp2_path_storage& ps, ngtcp2_tstamp ts,
                             detail::PacketBatch& batch);
    // One datagram into the batch: 1 written or retry, 0 congestion limited, -1 failed.
    static int writeDatagram(Connection& c, ngtcp2_path_storage& ps, ngtcp2_tstamp ts,
                             detail::PacketBatch& batch,
                             const std::function<void(std::size_t)>& sent);
    static void failWrite(Connection& c, detail::PacketBatch& batch, ngtcp2_ssize error);
};

} // namespace parley::node::quic
