// Store: the profile's SQLite database (contacts, replay protection, envelopes waiting to be
// sent, counters). Used from the node's thread only.
#pragma once

#include "dht/contact_id.h"

#include <array>
#include <cstdint>
#include <filesystem>
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

// A failure of the database (disk full, locked, corrupt, not writable): the message says what
// happened and to which file, for a person to act on.
struct StoreError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Store {
public:
    static constexpr int kSchemaVersion = 1;

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

    // Named counters (dropped envelopes etc.), persisted.
    void addCounter(std::string_view name, std::int64_t delta);
    std::int64_t counter(std::string_view name) const; // 0 if never counted

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

namespace detail {
// The StoreError message for a failed SQLite call: the file, what was being done, a sentence a
// person can act on for the common causes, and SQLite's own words.
std::string storeErrorMessage(const std::filesystem::path& file, std::string_view action,
                              int sqliteCode, std::string_view sqliteMessage);
} // namespace detail

} // namespace parley::node
