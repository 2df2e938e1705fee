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

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

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

class LinkManager {
public:
    using EventSink = std::function<void(const nlohmann::json& event)>;
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
    // connect, then `count` pings `interval` apart; answers with the JSON of `parley ping`.
    void ping(const dht::ContactId& peer, int count, std::chrono::milliseconds interval,
              std::chrono::milliseconds timeout, std::function<void(nlohmann::json)> done);
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

    nlohmann::json status() const;
    nlohmann::json counters() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node
