// QUIC transport (DESIGN.md §6): ngtcp2 0.12 with GnuTLS, TLS 1.3 with both sides'
// certificates, each side pinned to the ContactId it expects, ALPN "parley/1". Driven by the
// node's io_context over the shared UDP port. This header is the one internal interface to
// ngtcp2 (FACTS.md: ngtcp2 1.0 changed its callbacks), so it names no ngtcp2 or GnuTLS type.
//
// Everything here runs on the io thread: receive() must be called there, and every handler
// is called there.
#pragma once

#include "dht/clock.h"
#include "dht/contact_id.h"
#include "dht/socket_address.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::node::quic {

inline constexpr const char* kAlpn = "parley/1";
// Handshakes from expected hosts (Transport::expect) may go this far beyond maxHandshakes.
inline constexpr std::size_t kExpectedHandshakeRoom = 64;

// Application error codes in CONNECTION_CLOSE (QUIC application error space).
enum class CloseCode : std::uint64_t {
    normal = 0,   // nothing wrong: idle, shutdown, replaced
    protocol = 1, // a frame the peer should not have sent (malformed, oversized)
    replaced = 2, // a newer connection to the same contact took over
    unwanted = 3, // we do not (or no longer) accept this contact
};

// Why a connection ended, for control flow (never branch on the text).
enum class ClosedBy {
    us,      // our close(), or our transport shutting down
    peer,    // the peer's CONNECTION_CLOSE (its application code in `peerCode`)
    timeout, // idle timeout, or a handshake that never finished
    reset,   // a stateless reset: the peer restarted and forgot the connection
    error,   // a QUIC, TLS or socket error
};

struct CloseReason {
    ClosedBy by = ClosedBy::error;
    std::uint64_t peerCode = 0; // the peer's application error code when by == peer
    std::string text;           // for logs and people
};

enum class CongestionControl { cubic, bbr, bbr2 };

struct TransportConfig {
    std::string certificatePem; // our identity (the ContactId is the hash of its public key)
    std::string privateKeyPem;  // unencrypted PKCS#8
    // Secret for stateless reset tokens; stable across restarts, so that a peer that still
    // talks to our previous incarnation learns at once that the connection is gone.
    std::array<std::uint8_t, 32> resetSecret{};
    std::chrono::milliseconds handshakeTimeout{10'000};
    std::chrono::milliseconds idleTimeout{30'000}; // QUIC max_idle_timeout
    std::chrono::milliseconds keepAlive{10'000};   // PING when nothing else was sent
    std::chrono::milliseconds initialRtt{100};     // ngtcp2's default 333 ms stalls punching
    // Server-side handshakes in progress, in total, from hosts we do not expect; handshakes
    // from expected hosts (Transport::expect) are exempt from the per-host cap and may go up
    // to maxHandshakes + kExpectedHandshakeRoom (64) in total.
    std::size_t maxHandshakes = 64;
    std::size_t maxHandshakesPerHost = 4;     // ... from one IP address (expected ones exempt)
    std::size_t maxConnections = 1024;        // established connections
    std::uint64_t streamWindow = 1 << 20;     // initial per-stream flow-control window
    std::uint64_t maxStreamWindow = 16 << 20; // auto-tuned up to this
    std::size_t maxDatagramQueue = 256;       // datagrams waiting for the congestion window
    CongestionControl congestionControl = CongestionControl::cubic;
    // Spreads each flight over the round trip once the handshake is confirmed (ngtcp2's pacer,
    // at 1.25 x cwnd / RTT with up to 1 ms of burst), instead of sending the whole congestion
    // window in one burst after every acknowledgement.
    bool pacing = true;
    std::string keyLogFile; // NSS key log (SSLKEYLOGFILE) for Wireshark; debug
    // The shared socket's bound addresses (the local side of every QUIC path).
    dht::SocketAddress local4, local6;
    // Time and randomness; nullptr: the system's. Not owned; they must outlive the transport.
    // Every timestamp ngtcp2 sees and every deadline the transport keeps (timers, handshake
    // and idle timeouts, expected addresses, the reset rate limit) comes from `clock`.
    // `random` serves what need not be secret (punch and reset filler, the leaf certificate's
    // serial); keys, connection ids and ngtcp2's own randomness stay cryptographic (GnuTLS),
    // and reset tokens come from resetSecret.
    dht::Clock* clock = nullptr;
    dht::Random* random = nullptr;
};

struct ConnectionStats {
    std::chrono::microseconds smoothedRtt{0}, minRtt{0}, latestRtt{0};
    std::uint64_t bytesInFlight = 0;
    std::uint64_t congestionWindow = 0;
    std::uint64_t datagramsDropped = 0; // queue full or too large
};

struct TransportStats {
    std::uint64_t connectionsOpened = 0, connectionsFailed = 0, handshakesRefused = 0;
    std::uint64_t initialsDropped = 0; // over a handshake cap
    std::uint64_t statelessResetsSent = 0, packetsUnmatched = 0;
    std::size_t handshakesInProgress = 0, connections = 0;
};

class Transport;

// One QUIC connection to one contact. Owned by the Transport; users hold shared_ptrs, which
// stay safe to call after the connection closed (calls then do nothing).
class Connection : public std::enable_shared_from_this<Connection> {
public:
    using StreamData =
        std::function<void(std::int64_t stream, std::span<const std::uint8_t> data, bool fin)>;

    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    const dht::ContactId& peer() const { return peer_; }
    const dht::SocketAddress& remote() const { return remote_; }
    bool isClient() const { return client_; }
    bool established() const { return established_; } // handshake confirmed
    bool closed() const { return closed_; }
    dht::Clock::TimePoint createdAt() const // on the transport's clock
    {
        return createdAt_;
    }

    // Call once the handlers below are set: data that arrived before is delivered then.
    void start();

    // Opens a bidirectional stream; -1 when the peer's stream limit is reached for now.
    std::int64_t openBidiStream();
    std::int64_t openUniStream();
    // Queues `data` on the stream and returns how many bytes now wait on it (sent but not yet
    // acknowledged included): the backpressure signal. Writers stop above their own
    // threshold and wait for onWritable. Returns 0 after the stream or connection closed.
    std::size_t write(std::int64_t stream, std::span<const std::uint8_t> data, bool fin = false);
    std::size_t buffered(std::int64_t stream) const;
    void resetStream(std::int64_t stream, std::uint64_t code);
    // Returns `bytes` of flow-control credit on `stream` (and the connection): the owner has
    // processed that much of what onStreamData handed it. Without autoConsume the peer can
    // send no more than the window (TransportConfig::streamWindow) ahead of the owner.
    void consume(std::int64_t stream, std::size_t bytes);
    // Unreliable: false when the datagram is too large or the queue is full.
    bool sendDatagram(std::span<const std::uint8_t> data);
    std::size_t maxDatagramSize() const;
    // Sends CONNECTION_CLOSE with an application code and a reason; onClosed follows.
    void close(CloseCode code, const std::string& reason);

    ConnectionStats stats() const;

    // Handlers, set by the owner after the connection is established.
    StreamData onStreamData;
    // True: the credit for stream data is returned as soon as onStreamData returned (for
    // owners that copy or parse at once, like the control stream). False: the owner calls
    // consume() as it writes the data away (transfers), so a slow disk slows the sender.
    bool autoConsume = true;
    std::function<void(std::int64_t stream)> onWritable;     // a stream's buffer drained
    std::function<void(std::int64_t stream)> onStreamClosed; // both directions done or reset
    std::function<void(std::span<const std::uint8_t>)> onDatagram;
    // Once, when the connection is gone (closed by either side, idle, reset, error).
    std::function<void(const CloseReason& reason)> onClosed;

    struct Impl;

private:
    friend class ConnectionAccess;
    friend class ConnectionDriver;
    explicit Connection(bool client);

    std::unique_ptr<Impl> impl_;
    dht::ContactId peer_;
    dht::SocketAddress remote_;
    bool client_ = false;
    bool established_ = false;
    bool closed_ = false;
    dht::Clock::TimePoint createdAt_{};
};

using ConnectionPtr = std::shared_ptr<Connection>;

class Transport {
public:
    // Sends `data` to `to` as datagrams of `segmentSize` bytes each, the last one possibly
    // shorter (0: one datagram); at most 64 datagrams and 65,000 bytes, which
    // dht::UdpEndpoint::sendOther sends in one system call (GSO).
    using SendFn = std::function<void(const dht::SocketAddress& to, std::span<const std::uint8_t>,
                                      std::size_t segmentSize)>;
    // Decides during a server-side handshake whether `peer` may connect to us.
    using Authorizer = std::function<bool(const dht::ContactId& peer)>;
    using DialDone = std::function<void(ConnectionPtr connection, const std::string& error)>;

    // Throws std::runtime_error when the certificate or key cannot be loaded.
    Transport(asio::io_context& io, TransportConfig config, SendFn send);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // A datagram whose first byte has the QUIC fixed bit (UdpEndpoint's "other" kind). An
    // empty one is counted as unmatched and dropped.
    void receive(std::span<const std::uint8_t> datagram, const dht::SocketAddress& from);
    // Says that a burst of receive() calls is over: the connections they touched hand their
    // data to the owners and send their acknowledgements and answers now. Without it they do
    // so on the next turn of the io_context (one post later).
    void endOfBurst();

    // Client side: handshakes with `to`, expecting `peer`'s key. `done` runs once: with the
    // connection when the handshake is confirmed, or with nullptr and a reason.
    void dial(const dht::ContactId& peer, const dht::SocketAddress& to, DialDone done);

    // Server side: only peers the authorizer accepts complete a handshake; established
    // connections are handed to the accept handler.
    void setAuthorizer(Authorizer authorizer);
    void setAcceptHandler(std::function<void(ConnectionPtr)> handler);
    // Called when a packet for a connection we do not know comes from the address of an
    // established connection in which we are the server: the client may have restarted (a
    // server has no stateless-reset token for the client's first connection id, so it cannot
    // tell for sure). At most every 5 s per connection.
    void setSuspectHandler(std::function<void(ConnectionPtr)> handler);
    // Addresses we expect a handshake from (a contact's candidates): they bypass the
    // per-host cap and get reserved room under the total cap until `until`.
    void expect(const dht::SocketAddress& from, dht::Clock::TimePoint until);

    // A small datagram that QUIC and the DHT ignore (first byte 0x00): opens our NAT's
    // mapping towards `to` so that the peer's Initials get in.
    void punch(const dht::SocketAddress& to);

    // Runs the connections' timers that are due on the clock now. The transport calls it
    // itself from an io_context timer; a test on a ManualClock calls it after moving the clock.
    void handleTimers();
    // The earliest deadline of any connection's timers, on the transport's clock.
    std::optional<dht::Clock::TimePoint> nextDeadline() const;

    // Closes every connection (CONNECTION_CLOSE sent) and refuses new ones.
    void shutdown();

    TransportStats stats() const;
    const dht::ContactId& self() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node::quic
