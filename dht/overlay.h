// Overlay: this node's place in the OpenDHT network. It runs a DhtRunner over the shared
// UdpEndpoint, publishes the key card and presence, and looks contacts up by ContactId.
// Every method is called on the owning io_context's thread, and every callback is delivered
// there; OpenDHT's own threads never touch Overlay state.
#pragma once

#include "contact_id.h"
#include "envelope.h"
#include "identity.h"
#include "lookup.h"
#include "records.h"
#include "socket_address.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::dht {

class UdpEndpoint;

inline constexpr const char* kPublicBootstrap = "bootstrap.jami.net:4222";

struct OverlayConfig {
    std::string bindAddress;            // empty: every local address
    std::uint16_t port = 0;             // 0: ephemeral
    std::uint32_t network = 0;          // OpenDHT network id; 0 is the public network
    std::vector<std::string> bootstrap; // "host:port"
    bool lanDiscovery = true;           // forced off when bound to loopback
    bool publicBootstrap = true;        // use kPublicBootstrap on network 0 when nothing else
    std::string nodesFile;              // known nodes, loaded at start and saved at stop
    std::string name;                   // display name for the key card
    // Receive on the io_context's thread instead of the endpoint's own (UdpEndpoint::start(io));
    // the owner then runs the io_context for the overlay's whole life, shutdown included.
    bool receiveOnIoThread = false;
};

struct OverlayStatus {
    std::string state; // "connected", "connecting" or "disconnected"
    std::uint16_t port = 0;
    std::uint32_t network = 0;
    unsigned nodes = 0;     // good + dubious IPv4 and IPv6 nodes in the routing table
    unsigned nodesIPv6 = 0; // of which IPv6
    std::vector<std::string> publicAddresses;
    std::vector<std::string> publicEndpoints; // the same with the port DHT peers saw ("ip:port")
    bool lanDiscovery = false;
    std::vector<std::string> bootstrap;
};

// Counts of records that readers dropped, for status output and tests.
struct OverlayCounters {
    std::uint64_t envelopesMalformed = 0; // inbox values that did not decode
    std::uint64_t recordsAccepted = 0;
    std::uint64_t recordsWrongOwner = 0;
    std::uint64_t recordsMalformed = 0;
    std::uint64_t recordsStale = 0;
};

class Overlay {
public:
    using LookupCallback = std::function<void(const LookupResult&)>;

    Overlay(asio::io_context& io, Identity identity, OverlayConfig config);
    ~Overlay();
    Overlay(const Overlay&) = delete;
    Overlay& operator=(const Overlay&) = delete;

    // Binds the port and joins the network. Throws std::runtime_error (bind failure, ...).
    void start();
    // Publishes an offline presence (bounded by `budget`), saves known nodes, leaves the
    // network, then calls `done` on the io_context.
    void shutdown(std::chrono::milliseconds budget, std::function<void()> done);

    // Publishes the key card (kept alive while running) and presence "online", refreshed
    // every kPresenceRefreshMs.
    void publish();
    void setPresence(PresenceStatus status);

    // Answers as soon as the records are known, or with what it has after `timeout`.
    void lookup(const ContactId& id, std::chrono::milliseconds timeout, LookupCallback done);

    // Inbox: envelopes encrypted to us, decrypted and signature-checked by OpenDHT, decoded
    // here; `handler` gets each with the ContactId of its signer (re-delivered after restarts:
    // the receiver drops ids it has seen). Only one handler.
    // `signerKey` is the signer's DER public key, so that an answer needs no card lookup.
    using EnvelopeHandler = std::function<void(const Envelope&, const ContactId& signer,
                                               const std::vector<std::uint8_t>& signerKey)>;
    void listenInbox(EnvelopeHandler handler);
    // Encrypts `envelope` to the key in `recipientCard` and puts it into the recipient's inbox.
    // `recipientKey`: their DER public key (publicKeyOfCard, or an envelope's signerKey).
    void sendEnvelope(const std::vector<std::uint8_t>& recipientKey, const Envelope& envelope,
                      std::function<void(bool ok)> done);

    // Follows a contact's presence record live (DHT listen); owner-checked values only.
    using PresenceHandler = std::function<void(const ContactId&, const Presence&)>;
    void followPresence(const ContactId& id, PresenceHandler handler);
    void unfollowPresence(const ContactId& id);

    // Adds a bootstrap node at run time.
    void bootstrap(const std::string& hostPort);

    OverlayStatus status() const;
    const OverlayCounters& counters() const;
    UdpEndpoint& endpoint();
    const Identity& identity() const;

    // For tests: publish raw signed bytes under another ContactId's presence key, as an
    // impostor would.
    void publishRawPresenceAs(const ContactId& victim, std::vector<std::uint8_t> bytes);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// DHT keys of parley's records: InfoHash::get("parley/<kind>/" + hex(ContactId)), as hex.
std::string recordKeyHex(std::string_view kind, const ContactId& id);

} // namespace parley::dht
