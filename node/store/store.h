// Store: the profile's SQLite database (contacts, replay protection, envelopes waiting to be
// sent, counters). Used from the node's thread only.
#pragma once

#include "dht/contact_id.h"

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley::node {

enum class ContactState { outgoing, incoming, accepted, blocked };

std::string_view toString(ContactState state); // "outgoing", "incoming", "accepted", "blocked"
std::optional<ContactState> contactStateFromString(std::string_view text);

struct ContactRecord {
    dht::ContactId id;
    std::string alias; // chosen locally, may be empty
    std::string name;  // from their key card / request, may be empty
    ContactState state = ContactState::outgoing;
    std::string message; // the request's message (incoming or outgoing)
    std::int64_t createdMs = 0, updatedMs = 0;
    std::optional<std::int64_t> lastSeenMs;
    bool online = false;
    bool operator==(const ContactRecord&) const = default;
};

using EnvelopeId = std::array<std::uint8_t, 16>;

// An envelope waiting to be put into a recipient's DHT inbox.
struct PendingEnvelope {
    EnvelopeId id{};
    dht::ContactId recipient;
    std::uint8_t kind = 0;
    std::vector<std::uint8_t> payload;
    std::int64_t createdMs = 0;
    int attempts = 0;
    bool operator==(const PendingEnvelope&) const = default;
};

using MessageId = std::array<std::uint8_t, 16>;

// A chat message as stored (issue 5). `state`: outgoing queued / stored / delivered / read;
// incoming received / read.
struct ChatRecord {
    MessageId id{};
    dht::ContactId contact;
    bool outgoing = false;
    std::uint64_t seq = 0;   // the sender's per-conversation sequence
    std::int64_t sentMs = 0; // the sender's clock
    std::optional<std::int64_t> receivedMs;
    std::string text;
    std::string state;
    std::optional<std::int64_t> dhtPutMs; // outgoing: when it went into their DHT inbox
    std::int64_t updatedMs = 0;
    bool operator==(const ChatRecord&) const = default;
};

// A failure of the database (disk full, locked, corrupt, not writable): the message says what
// happened and to which file, for a person to act on.
struct StoreError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Store {
public:
    static constexpr int kSchemaVersion = 2;

    // Opens or creates the database (mode 0600), WAL, synchronous=NORMAL, busy_timeout 2 s,
    // foreign keys on, then applies migrations up to kSchemaVersion (PRAGMA user_version), each
    // in a transaction. A database from a newer schema is refused, and left untouched.
    explicit Store(const std::filesystem::path& file);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    int schemaVersion() const;

    std::optional<ContactRecord> contact(const dht::ContactId& id) const;
    // Accepted, incoming, outgoing, blocked; within a state by display name (the alias, else the
    // name; ASCII case ignored), contacts with neither last; then by id.
    std::vector<ContactRecord> contacts() const;
    // Stores the record as given (all fields, including createdMs and presence).
    void upsertContact(const ContactRecord& record);
    bool removeContact(const dht::ContactId& id); // true if it existed
    std::size_t countContacts(ContactState state) const;
    // Does nothing for an unknown contact. A lastSeenMs of nullopt keeps the one stored.
    void setPresence(const dht::ContactId& id, bool online, std::optional<std::int64_t> lastSeenMs);

    // Replay protection: records the envelope id until expiresMs; false if it was already
    // recorded (and not yet purged).
    bool markEnvelopeSeen(const EnvelopeId& id, std::int64_t expiresMs);
    void purgeSeen(std::int64_t nowMs); // forgets ids whose expiry is before nowMs
    std::size_t seenCount() const;

    // A second envelope with the same id is refused with a StoreError.
    void addPending(const PendingEnvelope& envelope);
    bool removePending(const EnvelopeId& id);
    void bumpPendingAttempts(const EnvelopeId& id);
    std::vector<PendingEnvelope> pending() const; // oldest first (createdMs, then insertion)

    // Runs `body` in one transaction (BEGIN IMMEDIATE ... COMMIT; rolled back if it throws).
    void transaction(const std::function<void()>& body);

    // Chat. addOutgoing numbers the message (the conversation's next seq) and queues it.
    ChatRecord addOutgoing(const dht::ContactId& contact, const MessageId& id,
                           const std::string& text, std::int64_t nowMs);
    // Stores a received message once: false when its id is known already. `ackDue`: we still
    // owe the sender an ack (it came through the DHT, not over a link we answer on at once).
    bool addIncoming(const ChatRecord& record, bool ackDue);
    std::optional<ChatRecord> message(const MessageId& id) const;
    // Outgoing messages not yet acknowledged (queued or stored), by seq.
    std::vector<ChatRecord> outbox(const dht::ContactId& contact, std::size_t limit) const;
    std::vector<dht::ContactId> outboxContacts() const;
    // Moves an outgoing message's state forward; false when it was there already (or past).
    bool advanceState(const MessageId& id, std::string_view state, std::int64_t nowMs);
    void setDhtPut(const MessageId& id, std::int64_t nowMs);
    // The last `limit` messages of a conversation, oldest first (sender time, then seq).
    std::vector<ChatRecord> history(const dht::ContactId& contact, std::size_t limit) const;
    // Receipts we owe (acks, or read receipts) and forgetting them once sent.
    std::vector<MessageId> receiptsDue(const dht::ContactId& contact, bool read,
                                       std::size_t limit) const;
    void clearReceiptDue(const MessageId& id, bool read);
    // Incoming messages of the conversation become read (and owe a read receipt); how many.
    std::size_t markRead(const dht::ContactId& contact, std::int64_t nowMs);
    std::map<dht::ContactId, std::size_t> unreadCounts() const;

    // Named counters (dropped envelopes etc.), persisted.
    void addCounter(std::string_view name, std::int64_t delta);
    std::int64_t counter(std::string_view name) const; // 0 if never counted

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

namespace detail {
// The StoreError message for a failed SQLite call: the file, what was being done, a sentence a
// person can act on for the common causes, and SQLite's own words.
std::string storeErrorMessage(const std::filesystem::path& file, std::string_view action,
                              int sqliteCode, std::string_view sqliteMessage);
} // namespace detail

} // namespace parley::node
