// ContactManager: contact requests, acceptance, blocking and live presence of contacts, all
// through encrypted DHT envelopes (issue 3, DESIGN.md §4). Lives on the node's io thread.
#pragma once

#include "dht/contact_id.h"
#include "dht/envelope.h"
#include "dht/overlay.h"
#include "node/store/store.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::node {

// How a command went: empty when it was carried out, else a sentence for the person who
// asked (the control API answers it as a failure). Store failures still throw StoreError.
struct [[nodiscard]] CommandStatus {
    std::string error;
    bool ok() const { return error.empty(); }
    static CommandStatus refused(std::string why) { return {std::move(why)}; }
};

// What happened to a contact, for the control API's events (api/ maps them to JSON).
struct ContactEvent {
    enum class Kind {
        request,  // a contact request arrived: name, message
        accepted, // by: "us", "them" or "both"
        sent,     // an envelope is in their DHT inbox: envelopeKind
        presence, // online, lastSeenMs
    };
    Kind kind = Kind::request;
    dht::ContactId id;
    std::string by, name, message, envelopeKind;
    bool online = false;
    std::int64_t lastSeenMs = 0;
};

// The answer of `add`: the contact's state now and how the request went ("stored",
// "no-card", "not-stored", "expired"; "queued" when adding accepted their request; "none"
// when already a contact).
struct AddResult {
    dht::ContactId id;
    ContactState state = ContactState::outgoing;
    std::string delivery;
};

// A contact as listed, with the messages from them not read yet.
struct ContactSummary {
    ContactRecord record;
    std::uint64_t unread = 0;
};

struct ContactLimits {
    std::size_t maxPendingIncoming = 100; // incoming requests waiting for an answer
    int maxRequestsPerSenderPerHour = 3;  // new request envelopes accepted from one sender
    std::chrono::seconds retryInterval{15};
    std::chrono::seconds presenceSweep{30};
    std::chrono::seconds maintenance{5};         // counters saved, old rate windows pruned
    std::chrono::seconds seenPurgeInterval{600}; // expired envelope ids forgotten
};

// Bounds of the tables the network feeds (ContactManager).
inline constexpr std::size_t kMaxKeys = 4096; // cached public keys

class ContactManager {
public:
    using EventSink = std::function<void(const ContactEvent& event)>;

    ContactManager(asio::io_context& io, dht::Overlay& overlay, Store& store,
                   const dht::ContactId& self, std::string selfName, EventSink events,
                   ContactLimits limits = {});
    ~ContactManager();
    ContactManager(const ContactManager&) = delete;
    ContactManager& operator=(const ContactManager&) = delete;

    // Listens on our inbox, follows accepted contacts' presence, resumes pending sends.
    void start();
    void stop();

    // Commands: a refusal comes back as a value with a readable sentence (StoreError is
    // still thrown when the database fails).
    // `add` answers through `done` (only when it is not refused) once the first delivery
    // attempt is over: "stored" (in their DHT inbox), "no-card" (their key card is not found
    // yet) or "not-stored" (no DHT node took it yet); the request stays pending and is
    // retried in the last two cases.
    using SendStatus = std::function<void(const std::string& status)>;
    CommandStatus add(const dht::ContactId& id, const std::string& message,
                      const std::string& alias, std::function<void(const AddResult&)> done);
    CommandStatus accept(const dht::ContactId& id);
    CommandStatus decline(const dht::ContactId& id);
    CommandStatus block(const dht::ContactId& id);
    CommandStatus unblock(const dht::ContactId& id);
    CommandStatus remove(const dht::ContactId& id);
    std::vector<ContactSummary> contacts() const;
    std::vector<ContactRecord> requests() const; // incoming, waiting for an answer

    // Connect envelopes from accepted contacts (replay, window and signature checked) go to
    // this handler; from anyone else they are dropped and counted.
    using ConnectHandler = std::function<void(const dht::Envelope&)>;
    void setConnectHandler(ConnectHandler handler);
    // Chat envelopes from accepted contacts (the same checks), for the chat manager.
    void setChatHandler(ConnectHandler handler);
    // An accepted contact's presence as last seen (nullopt: not an accepted contact).
    std::optional<bool> online(const dht::ContactId& id) const;
    // From memory (mirrored from the store): safe inside TLS callbacks.
    bool isAccepted(const dht::ContactId& id) const noexcept;
    // Their DER public key (cached, or from their key card); empty when not found.
    void withKey(const dht::ContactId& id,
                 std::function<void(const std::vector<std::uint8_t>&)> done);
    // Encrypts and puts an envelope now, without the persistent retry queue (connect
    // envelopes are worthless after two minutes). `done(false)`: no key or not stored.
    void sendNow(const dht::Envelope& envelope, std::function<void(bool ok)> done);

    // Test and status hooks.
    void onEnvelope(const dht::Envelope& envelope, const dht::ContactId& signer);
    std::map<std::string, std::uint64_t> counters() const;

private:
    // false: no randomness for an envelope id (nothing queued).
    bool queue(dht::EnvelopeKind kind, const dht::ContactId& to, const std::string& message,
               SendStatus status = {});
    void trySend(const PendingEnvelope& pending, SendStatus status = {});
    void scheduleRetry();
    void dropPending(const dht::ContactId& id);
    void follow(const dht::ContactId& id);
    void unfollow(const dht::ContactId& id);
    void onPresence(const dht::ContactId& id, const dht::Presence& presence);
    void sweepPresence(); // re-arms its timer, then sweepStale()
    void sweepStale();    // stale presences offline, and a poll of every contact's
    void maintain();
    void count(const std::string& name);

    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node
