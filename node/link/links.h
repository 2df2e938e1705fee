// LinkManager: one direct connection per contact (DESIGN.md §6), set up through encrypted
// connect envelopes in the DHT inbox, reused by everything, kept alive while wanted, closed
// when idle and re-established after either side restarts or moves. Lives on the node's io
// thread.
//
// A "link" is a confirmed QUIC connection whose control stream has exchanged hellos. The
// client (lower ContactId) opens the control stream and says hello first; a server counts a
// connection as the link for that contact only once the hello arrived, so the client's
// choice among several candidate paths is the one both sides keep.
#pragma once

#include "dht/contact_id.h"
#include "dht/envelope.h"
#include "node/link/frame.h"
#include "node/link/link_core.h"
#include "node/link/stream_router.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::dht {
class Overlay;
}

namespace parley::node {

class ContactDirectory;

namespace quic {
class Transport;
}

struct ConnectResult {
    bool ok = false;
    bool reused = false;
    double setupMs = 0;
    std::string remote; // "ip:port"
    std::string role;   // "client" or "server"
    std::string error;
};

// What the link room reports; api/link_methods.cpp turns these into the control API's JSON.
struct LinkEvent {
    bool up = false;
    dht::ContactId peer;
    std::string remote; // when up: "ip:port"
    std::string role;   // when up: "client" or "server"
    std::string reason; // when down
};

// One active link, for `parley links` and `status`.
struct LinkStatus {
    dht::ContactId peer;
    std::string remote;
    std::string role;
    double rttMs = 0;  // smoothed
    double ageS = 0;   // since the link was established
    double idleS = 0;  // since something used it
    std::string agent; // the peer's hello
};

// `parley ping`: the connection, then one round trip per probe (nullopt: lost).
struct PingResult {
    dht::ContactId peer;
    bool connected = false;
    bool reused = false;
    std::string error;    // why it did not connect, or why the probes stopped; empty if neither
    double elapsedMs = 0; // when not connected: how long it tried
    double setupMs = 0;   // when connected and not reused
    std::string remote;
    std::string role;
    std::vector<std::optional<double>> rttMs;
    int lost() const;
};

class LinkManager {
public:
    using EventSink = std::function<void(const LinkEvent& event)>;
    using MessageHandler = std::function<void(const dht::ContactId&, const wire::Message&)>;
    // A link came up or went down; `goodbye` when the peer said it is shutting down (it is
    // going offline, not just moving), `reason` for logs.
    struct LinkChange {
        bool up = false;
        bool goodbye = false;
        std::string reason;
    };
    using LinkHandler = std::function<void(const dht::ContactId&, const LinkChange&)>;

    LinkManager(asio::io_context& io, quic::Transport& transport, ContactDirectory& contacts,
                dht::Overlay& overlay, const dht::ContactId& self, EventSink events,
                LinkOptions options = {});
    ~LinkManager();
    LinkManager(const LinkManager&) = delete;
    LinkManager& operator=(const LinkManager&) = delete;

    void start();
    void stop();

    // Reuses the link to `peer` or sets one up; `done` runs once (on the io thread).
    void connect(const dht::ContactId& peer, std::chrono::milliseconds timeout,
                 std::function<void(const ConnectResult&)> done);
    // connect, then `count` pings `interval` apart; `done` runs once with what `parley ping`
    // shows.
    void ping(const dht::ContactId& peer, int count, std::chrono::milliseconds interval,
              std::chrono::milliseconds timeout, std::function<void(const PingResult&)> done);
    // Sends on the control stream of the active link; false when there is none.
    bool send(const dht::ContactId& peer, const wire::Message& message);
    bool connected(const dht::ContactId& peer) const;
    // Closes the link (if any) without reconnecting, e.g. when the contact is removed.
    void disconnect(const dht::ContactId& peer, const std::string& reason);

    // Messages other than hello/ping/pong/goodbye, for chat and later features.
    void setMessageHandler(MessageHandler handler);
    void setLinkHandler(LinkHandler handler);

    // Connect request/answer from an accepted contact (ContactManager checked it).
    void onConnectEnvelope(const dht::Envelope& envelope);

    // Where router port mappings come from (see PortMapper); none by default.
    void setMappedEndpoints(std::function<std::vector<std::string>()> source);
    // Our candidate addresses right now (for connect envelopes).
    std::vector<std::string> candidates() const;

    std::vector<LinkStatus> status() const;
    // The room's counters and the QUIC transport's (quic_*).
    std::map<std::string, std::uint64_t> counters() const;

    // Typed bulk streams (DESIGN.md §6; the header is in stream_router.h). A handle names one
    // stream of one connection; it is valid until that stream's `closed`, which also comes
    // when the link closes. Calls with a stale handle do nothing.
    struct StreamHandle {
        dht::ContactId peer;
        std::uint64_t link = 0; // which connection to `peer`
        std::int64_t stream = -1;
    };
    // A room's callbacks for one stream type, on the io thread. The room returns flow-control
    // credit with consumeStream as it processes `data` (DESIGN.md §6): what it holds back
    // slows the sender, and, since QUIC also limits the whole connection, the other streams
    // of that link too.
    struct StreamHandler {
        // The peer opened a stream of this type for `id` (its data follows in `data`).
        std::function<void(const StreamHandle&, std::span<const std::uint8_t> id)> opened;
        // The peer's bytes after the header; `fin` once it ended its direction.
        std::function<void(const StreamHandle&, std::span<const std::uint8_t> data, bool fin)> data;
        // Optional: the peer acknowledged some of what writeStream queued (after each
        // acknowledgement: write more while writeStream reports little queued).
        std::function<void(const StreamHandle&)> writable;
        // The stream is gone (both directions done, reset by the peer, the link closed, or
        // one of this room's callbacks threw: the link then reset it with roomFailed).
        std::function<void(const StreamHandle&)> closed;
    };
    enum class StreamError {
        ok = 0,
        noLink,         // no link to that contact now
        unregistered,   // the type has no handler here (the answer would have nowhere to go)
        badHeader,      // type 0 or an id over link::kMaxStreamIdSize bytes
        tooManyStreams, // the peer's stream limit or ours (link::kMaxRoutedStreams) for now
    };
    struct OpenedStream {
        StreamError error = StreamError::ok;
        StreamHandle handle; // when ok
    };
    // False for type 0 or a type that already has a handler.
    bool registerStreamType(link::StreamType type, StreamHandler handler);
    // Opens a bidirectional stream of `type` for `id` on the active link to `peer` and sends
    // its header; what the peer answers on it goes to that type's handler.
    OpenedStream openStream(const dht::ContactId& peer, link::StreamType type,
                            std::span<const std::uint8_t> id);
    // Queues `data` (then FIN when `fin`); returns the bytes waiting on the stream, the
    // backpressure signal (quic::Connection::write), 0 when the stream or link is gone.
    std::size_t writeStream(const StreamHandle& handle, std::span<const std::uint8_t> data,
                            bool fin = false);
    // Returns `bytes` of credit: the room has processed that much of what `data` gave it
    // (capped at what it was given and has not returned). Credit still held when the stream
    // ends (closed, or reset by either side) goes back to the connection by itself.
    void consumeStream(const StreamHandle& handle, std::size_t bytes);
    // Abandons the stream in both directions with an application error code; the handle is
    // then spent (no `closed` follows).
    void resetStream(const StreamHandle& handle, std::uint64_t code);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node
