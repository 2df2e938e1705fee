// The profile's SQLite database: schema, migrations and the queries the node needs.
#include "node/store/store.h"

#include "node/store/database.h"

#include <algorithm>
#include <sqlite3.h>

namespace parley::node {

namespace {

// Migration N takes the schema from version N-1 to N; index 0 holds migration 1. Once released,
// a migration never changes: a new schema is a new entry (and kSchemaVersion goes up).
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE contacts (
    id           TEXT    PRIMARY KEY NOT NULL CHECK (length(id) = 64),
    alias        TEXT    NOT NULL DEFAULT '',
    name         TEXT    NOT NULL DEFAULT '',
    state        TEXT    NOT NULL
                         CHECK (state IN ('outgoing', 'incoming', 'accepted', 'blocked')),
    message      TEXT    NOT NULL DEFAULT '',
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER,
    online       INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1))
) WITHOUT ROWID;
CREATE INDEX contacts_by_state ON contacts (state);

CREATE TABLE seen_envelopes (
    id         BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_envelopes_by_expiry ON seen_envelopes (expires_ms);

CREATE TABLE pending_envelopes (
    seq        INTEGER PRIMARY KEY,
    id         BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    recipient  TEXT    NOT NULL CHECK (length(recipient) = 64),
    kind       INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 255),
    payload    BLOB    NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pending_envelopes_by_age ON pending_envelopes (created_ms, seq);

CREATE TABLE counters (
    name  TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
    // 2: chat messages (issue 5). Outgoing: queued -> stored -> delivered -> read; incoming:
    // received -> read. ack_due / read_due: a receipt we still owe the sender.
    R"sql(
CREATE TABLE messages (
    id          BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    contact     TEXT    NOT NULL CHECK (length(contact) = 64),
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    seq         INTEGER NOT NULL CHECK (seq > 0),
    sent_ms     INTEGER NOT NULL,
    received_ms INTEGER,
    text        TEXT    NOT NULL,
    state       TEXT    NOT NULL
                        CHECK (state IN ('queued', 'stored', 'delivered', 'read', 'received')),
    dht_put_ms  INTEGER,
    ack_due     INTEGER NOT NULL DEFAULT 0 CHECK (ack_due IN (0, 1)),
    read_due    INTEGER NOT NULL DEFAULT 0 CHECK (read_due IN (0, 1)),
    updated_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX messages_by_time ON messages (contact, sent_ms, outgoing, seq);
CREATE INDEX messages_by_seq ON messages (contact, outgoing, seq);
-- Partial indexes keep the hot queries independent of the conversation's length.
CREATE INDEX messages_outbox ON messages (contact, seq)
    WHERE outgoing = 1 AND state IN ('queued', 'stored');
CREATE INDEX messages_ack_due ON messages (contact) WHERE outgoing = 0 AND ack_due = 1;
CREATE INDEX messages_read_due ON messages (contact) WHERE outgoing = 0 AND read_due = 1;
CREATE INDEX messages_unread ON messages (contact) WHERE outgoing = 0 AND state = 'received';
)sql",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

// SQL texts are the keys of the statement cache, so they live as long as the program.
constexpr const char* kSelectContact =
    "SELECT id, alias, name, state, message, created_ms, updated_ms, last_seen_ms, online "
    "FROM contacts WHERE id = ?1";
constexpr const char* kSelectContacts =
    "SELECT id, alias, name, state, message, created_ms, updated_ms, last_seen_ms, online "
    "FROM contacts ORDER BY "
    "CASE state WHEN 'accepted' THEN 0 WHEN 'incoming' THEN 1 WHEN 'outgoing' THEN 2 ELSE 3 END, "
    "(alias = '' AND name = ''), "
    "CASE WHEN alias <> '' THEN alias ELSE name END COLLATE NOCASE, id";
constexpr const char* kUpsertContact =
    "INSERT INTO contacts (id, alias, name, state, message, created_ms, updated_ms, "
    "last_seen_ms, online) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
    "ON CONFLICT (id) DO UPDATE SET alias = excluded.alias, name = excluded.name, "
    "state = excluded.state, message = excluded.message, created_ms = excluded.created_ms, "
    "updated_ms = excluded.updated_ms, last_seen_ms = excluded.last_seen_ms, "
    "online = excluded.online";
constexpr const char* kDeleteContact = "DELETE FROM contacts WHERE id = ?1";
constexpr const char* kCountContacts = "SELECT count(*) FROM contacts WHERE state = ?1";
constexpr const char* kSetPresence =
    "UPDATE contacts SET online = ?2, last_seen_ms = coalesce(?3, last_seen_ms) WHERE id = ?1";
constexpr const char* kInsertSeen =
    "INSERT OR IGNORE INTO seen_envelopes (id, expires_ms) VALUES (?1, ?2)";
constexpr const char* kPurgeSeen = "DELETE FROM seen_envelopes WHERE expires_ms < ?1";
constexpr const char* kCountSeen = "SELECT count(*) FROM seen_envelopes";
constexpr const char* kInsertPending =
    "INSERT INTO pending_envelopes (id, recipient, kind, payload, created_ms, attempts) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kDeletePending = "DELETE FROM pending_envelopes WHERE id = ?1";
constexpr const char* kBumpPending =
    "UPDATE pending_envelopes SET attempts = attempts + 1 WHERE id = ?1";
constexpr const char* kSelectPending =
    "SELECT id, recipient, kind, payload, created_ms, attempts FROM pending_envelopes "
    "ORDER BY created_ms, seq";
constexpr const char* kAddCounter =
    "INSERT INTO counters (name, value) VALUES (?1, ?2) "
    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value";
constexpr const char* kSelectCounter = "SELECT value FROM counters WHERE name = ?1";

constexpr const char* kNextSeq =
    "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE contact = ?1 AND outgoing = 1";
constexpr const char* kInsertMessage =
    "INSERT OR IGNORE INTO messages (id, contact, outgoing, seq, sent_ms, received_ms, text, "
    "state, ack_due, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
constexpr const char* kSelectMessage =
    "SELECT id, contact, outgoing, seq, sent_ms, received_ms, text, state, dht_put_ms, "
    "updated_ms FROM messages WHERE id = ?1";
constexpr const char* kSelectOutbox =
    "SELECT id, contact, outgoing, seq, sent_ms, received_ms, text, state, dht_put_ms, "
    "updated_ms FROM messages INDEXED BY messages_outbox WHERE contact = ?1 AND outgoing = 1 "
    "AND state IN ('queued', 'stored') ORDER BY seq LIMIT ?2";
constexpr const char* kSelectOutboxContacts =
    "SELECT DISTINCT contact FROM messages INDEXED BY messages_outbox "
    "WHERE outgoing = 1 AND state IN ('queued', 'stored')";
// States only move forward.
constexpr const char* kAdvanceState =
    "UPDATE messages SET state = ?2, updated_ms = ?3 WHERE id = ?1 AND outgoing = 1 AND "
    "(CASE state WHEN 'queued' THEN 0 WHEN 'stored' THEN 1 WHEN 'delivered' THEN 2 ELSE 3 END) < "
    "(CASE ?2 WHEN 'queued' THEN 0 WHEN 'stored' THEN 1 WHEN 'delivered' THEN 2 ELSE 3 END)";
constexpr const char* kSetDhtPut = "UPDATE messages SET dht_put_ms = ?2 WHERE id = ?1";
constexpr const char* kSelectHistory =
    "SELECT * FROM (SELECT id, contact, outgoing, seq, sent_ms, received_ms, text, state, "
    "dht_put_ms, updated_ms FROM messages WHERE contact = ?1 "
    "ORDER BY sent_ms DESC, outgoing DESC, seq DESC LIMIT ?2) "
    "ORDER BY sent_ms, outgoing, seq";
constexpr const char* kSelectAckDue =
    "SELECT id FROM messages INDEXED BY messages_ack_due "
    "WHERE contact = ?1 AND outgoing = 0 AND ack_due = 1 LIMIT ?2";
constexpr const char* kClearAckDue = "UPDATE messages SET ack_due = 0 WHERE id = ?1";
constexpr const char* kSelectReadDue =
    "SELECT id FROM messages INDEXED BY messages_read_due "
    "WHERE contact = ?1 AND outgoing = 0 AND read_due = 1 LIMIT ?2";
constexpr const char* kClearReadDue = "UPDATE messages SET read_due = 0 WHERE id = ?1";
constexpr const char* kMarkRead =
    "UPDATE messages SET state = 'read', read_due = 1, updated_ms = ?2 "
    "WHERE contact = ?1 AND outgoing = 0 AND state = 'received'";
constexpr const char* kUnreadCounts =
    "SELECT contact, count(*) FROM messages INDEXED BY messages_unread "
    "WHERE outgoing = 0 AND state = 'received' "
    "GROUP BY contact";

std::string_view adviceFor(int code) {
    switch (code) {
    case SQLITE_READONLY_DBMOVED:
        return "the database file was moved or deleted while parley was using it; "
               "restart parley";
    default:
        break;
    }
    switch (code & 0xff) {
    case SQLITE_FULL:
        return "the disk is full; free some space and try again";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return "another program holds the database (is a second parley daemon using this "
               "profile?); stop it and try again";
    case SQLITE_READONLY:
        return "the database is read-only; make the file and its directory writable by this user";
    case SQLITE_CORRUPT:
        return "the database is damaged; move it aside (parley then starts an empty one, "
               "without your contacts) or restore a backup";
    case SQLITE_NOTADB:
        return "the file is not a SQLite database; move it aside or use another profile";
    case SQLITE_CANTOPEN:
        return "the file cannot be opened or created; check that its directory exists and is "
               "writable by this user";
    case SQLITE_IOERR:
        return "reading or writing the file failed; check the disk";
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return "access was denied; check the permissions of the file and its directory";
    case SQLITE_NOMEM:
        return "out of memory";
    default:
        return {};
    }
}

} // namespace

std::string_view toString(ContactState state) {
    switch (state) {
    case ContactState::outgoing:
        return "outgoing";
    case ContactState::incoming:
        return "incoming";
    case ContactState::accepted:
        return "accepted";
    case ContactState::blocked:
        return "blocked";
    }
    return "unknown";
}

std::optional<ContactState> contactStateFromString(std::string_view text) {
    for (auto state : {ContactState::outgoing, ContactState::incoming, ContactState::accepted,
                       ContactState::blocked})
        if (toString(state) == text)
            return state;
    return std::nullopt;
}

namespace detail {
std::string storeErrorMessage(const std::filesystem::path& file, std::string_view action,
                              int sqliteCode, std::string_view sqliteMessage) {
    std::string out = file.string() + ": cannot " + std::string(action) + ": ";
    auto advice = adviceFor(sqliteCode);
    if (advice.empty())
        return out + std::string(sqliteMessage);
    return out + std::string(advice) + " (sqlite: " + std::string(sqliteMessage) + ")";
}
} // namespace detail

struct Store::Impl {
    Database db;
    explicit Impl(const std::filesystem::path& file) : db(file, kMigrations, "your contacts") {}
};

namespace {

// The columns of kSelectContact, in that order.
ContactRecord contactRecord(const Database::Query& q) {
    ContactRecord r;
    r.id = q.contactId(0);
    r.alias = q.text(1);
    r.name = q.text(2);
    auto state = q.text(3);
    auto parsed = contactStateFromString(state);
    // The CHECK constraint keeps other values out; a damaged file may not.
    if (!parsed)
        q.damaged("contact " + r.id.toHex() + " has an unknown state '" + state + "'");
    r.state = *parsed;
    r.message = q.text(4);
    r.createdMs = q.int64(5);
    r.updatedMs = q.int64(6);
    if (!q.isNull(7))
        r.lastSeenMs = q.int64(7);
    r.online = q.int64(8) != 0;
    return r;
}

// An envelope or message id (16 bytes). Not fixedBlob<16>: that words the damage differently.
EnvelopeId envelopeId(const Database::Query& q, int column) {
    auto bytes = q.blob(column);
    EnvelopeId id{};
    if (bytes.size() != id.size())
        q.damaged("an envelope id of " + std::to_string(bytes.size()) + " bytes");
    std::copy(bytes.begin(), bytes.end(), id.begin());
    return id;
}

// The columns of kSelectMessage (and the other message queries), in that order.
ChatRecord readMessage(const Database::Query& q) {
    ChatRecord r;
    r.id = envelopeId(q, 0);
    r.contact = q.contactId(1);
    r.outgoing = q.int64(2) != 0;
    r.seq = static_cast<std::uint64_t>(q.int64(3));
    r.sentMs = q.int64(4);
    if (!q.isNull(5))
        r.receivedMs = q.int64(5);
    r.text = q.text(6);
    r.state = q.text(7);
    if (!q.isNull(8))
        r.dhtPutMs = q.int64(8);
    r.updatedMs = q.int64(9);
    return r;
}

} // namespace

Store::Store(const std::filesystem::path& file) : impl_(std::make_unique<Impl>(file)) {}

Store::~Store() = default;

int Store::schemaVersion() const {
    return impl_->db.schemaVersion();
}

std::optional<ContactRecord> Store::contact(const dht::ContactId& id) const {
    auto q = impl_->db.query(kSelectContact, "read a contact");
    q.bind(1, id);
    if (!q.step())
        return std::nullopt;
    return contactRecord(q);
}

std::vector<ContactRecord> Store::contacts() const {
    auto q = impl_->db.query(kSelectContacts, "read the contacts");
    std::vector<ContactRecord> out;
    while (q.step())
        out.push_back(contactRecord(q));
    return out;
}

void Store::upsertContact(const ContactRecord& r) {
    auto q = impl_->db.query(kUpsertContact, "save a contact");
    q.bind(1, r.id)
        .bind(2, std::string_view(r.alias))
        .bind(3, std::string_view(r.name))
        .bind(4, toString(r.state))
        .bind(5, std::string_view(r.message))
        .bind(6, r.createdMs)
        .bind(7, r.updatedMs)
        .bind(8, r.lastSeenMs)
        .bind(9, std::int64_t{r.online ? 1 : 0});
    q.run();
}

bool Store::removeContact(const dht::ContactId& id) {
    auto q = impl_->db.query(kDeleteContact, "remove a contact");
    q.bind(1, id);
    return q.run() > 0;
}

std::size_t Store::countContacts(ContactState state) const {
    auto q = impl_->db.query(kCountContacts, "count contacts");
    q.bind(1, toString(state));
    return q.step() ? static_cast<std::size_t>(q.int64(0)) : 0;
}

void Store::setPresence(const dht::ContactId& id, bool online,
                        std::optional<std::int64_t> lastSeenMs) {
    auto q = impl_->db.query(kSetPresence, "save a contact's presence");
    q.bind(1, id).bind(2, std::int64_t{online ? 1 : 0}).bind(3, lastSeenMs);
    q.run();
}

bool Store::markEnvelopeSeen(const EnvelopeId& id, std::int64_t expiresMs) {
    auto q = impl_->db.query(kInsertSeen, "record a received envelope");
    q.bindBlob(1, id).bind(2, expiresMs);
    return q.run() > 0;
}

void Store::purgeSeen(std::int64_t nowMs) {
    auto q = impl_->db.query(kPurgeSeen, "forget expired envelope ids");
    q.bind(1, nowMs);
    q.run();
}

std::size_t Store::seenCount() const {
    auto q = impl_->db.query(kCountSeen, "count received envelopes");
    return q.step() ? static_cast<std::size_t>(q.int64(0)) : 0;
}

void Store::addPending(const PendingEnvelope& e) {
    auto q = impl_->db.query(kInsertPending, "queue an envelope");
    q.bindBlob(1, e.id)
        .bind(2, e.recipient)
        .bind(3, std::int64_t{e.kind})
        .bindBlob(4, e.payload)
        .bind(5, e.createdMs)
        .bind(6, std::int64_t{e.attempts});
    q.run();
}

bool Store::removePending(const EnvelopeId& id) {
    auto q = impl_->db.query(kDeletePending, "remove a queued envelope");
    q.bindBlob(1, id);
    return q.run() > 0;
}

void Store::bumpPendingAttempts(const EnvelopeId& id) {
    auto q = impl_->db.query(kBumpPending, "count an attempt to send an envelope");
    q.bindBlob(1, id);
    q.run();
}

std::vector<PendingEnvelope> Store::pending() const {
    auto q = impl_->db.query(kSelectPending, "read the queued envelopes");
    std::vector<PendingEnvelope> out;
    while (q.step()) {
        PendingEnvelope e;
        e.id = envelopeId(q, 0);
        e.recipient = q.contactId(1);
        e.kind = static_cast<std::uint8_t>(q.int64(2));
        e.payload = q.blob(3);
        e.createdMs = q.int64(4);
        e.attempts = static_cast<int>(q.int64(5));
        out.push_back(std::move(e));
    }
    return out;
}

void Store::addCounter(std::string_view name, std::int64_t delta) {
    auto q = impl_->db.query(kAddCounter, "update a counter");
    q.bind(1, name).bind(2, delta);
    q.run();
}

void Store::transaction(const std::function<void()>& body) {
    impl_->db.transaction(body);
}

ChatRecord Store::addOutgoing(const dht::ContactId& contact, const MessageId& id,
                              const std::string& text, std::int64_t nowMs) {
    ChatRecord r;
    transaction([&] {
        auto next = impl_->db.query(kNextSeq, "number a message");
        next.bind(1, contact);
        r.seq = next.step() ? static_cast<std::uint64_t>(next.int64(0)) : 1;
        r.id = id;
        r.contact = contact;
        r.outgoing = true;
        r.sentMs = nowMs;
        r.text = text;
        r.state = "queued";
        r.updatedMs = nowMs;
        auto q = impl_->db.query(kInsertMessage, "queue a message");
        q.bindBlob(1, id)
            .bind(2, contact)
            .bind(3, std::int64_t{1})
            .bind(4, static_cast<std::int64_t>(r.seq))
            .bind(5, nowMs)
            .bind(6, std::optional<std::int64_t>{})
            .bind(7, std::string_view(text))
            .bind(8, std::string_view("queued"))
            .bind(9, std::int64_t{0})
            .bind(10, nowMs);
        if (q.run() == 0)
            throw StoreError("a message with this id exists already");
    });
    return r;
}

bool Store::addIncoming(const ChatRecord& r, bool ackDue) {
    auto q = impl_->db.query(kInsertMessage, "store a received message");
    q.bindBlob(1, r.id)
        .bind(2, r.contact)
        .bind(3, std::int64_t{0})
        .bind(4, static_cast<std::int64_t>(r.seq))
        .bind(5, r.sentMs)
        .bind(6, r.receivedMs)
        .bind(7, std::string_view(r.text))
        .bind(8, std::string_view("received"))
        .bind(9, std::int64_t{ackDue ? 1 : 0})
        .bind(10, r.updatedMs);
    return q.run() > 0;
}

std::optional<ChatRecord> Store::message(const MessageId& id) const {
    auto q = impl_->db.query(kSelectMessage, "read a message");
    q.bindBlob(1, id);
    if (!q.step())
        return std::nullopt;
    return readMessage(q);
}

std::vector<ChatRecord> Store::outbox(const dht::ContactId& contact, std::size_t limit) const {
    auto q = impl_->db.query(kSelectOutbox, "read the outbox");
    q.bind(1, contact).bind(2, static_cast<std::int64_t>(limit));
    std::vector<ChatRecord> out;
    while (q.step())
        out.push_back(readMessage(q));
    return out;
}

std::vector<dht::ContactId> Store::outboxContacts() const {
    auto q = impl_->db.query(kSelectOutboxContacts, "read the outbox");
    std::vector<dht::ContactId> out;
    while (q.step())
        out.push_back(q.contactId(0));
    return out;
}

bool Store::advanceState(const MessageId& id, std::string_view state, std::int64_t nowMs) {
    auto q = impl_->db.query(kAdvanceState, "update a message's state");
    q.bindBlob(1, id).bind(2, state).bind(3, nowMs);
    return q.run() > 0;
}

void Store::setDhtPut(const MessageId& id, std::int64_t nowMs) {
    auto q = impl_->db.query(kSetDhtPut, "note a message put into the DHT");
    q.bindBlob(1, id).bind(2, nowMs);
    q.run();
}

std::vector<ChatRecord> Store::history(const dht::ContactId& contact, std::size_t limit) const {
    auto q = impl_->db.query(kSelectHistory, "read the conversation");
    q.bind(1, contact).bind(2, static_cast<std::int64_t>(limit));
    std::vector<ChatRecord> out;
    while (q.step())
        out.push_back(readMessage(q));
    return out;
}

std::vector<MessageId> Store::receiptsDue(const dht::ContactId& contact, bool read,
                                          std::size_t limit) const {
    auto q = impl_->db.query(read ? kSelectReadDue : kSelectAckDue, "read the receipts to send");
    q.bind(1, contact).bind(2, static_cast<std::int64_t>(limit));
    std::vector<MessageId> out;
    while (q.step())
        out.push_back(envelopeId(q, 0));
    return out;
}

void Store::clearReceiptDue(const MessageId& id, bool read) {
    auto q = impl_->db.query(read ? kClearReadDue : kClearAckDue, "note a receipt sent");
    q.bindBlob(1, id);
    q.run();
}

std::size_t Store::markRead(const dht::ContactId& contact, std::int64_t nowMs) {
    auto q = impl_->db.query(kMarkRead, "mark messages read");
    q.bind(1, contact).bind(2, nowMs);
    return static_cast<std::size_t>(q.run());
}

std::map<dht::ContactId, std::size_t> Store::unreadCounts() const {
    auto q = impl_->db.query(kUnreadCounts, "count unread messages");
    std::map<dht::ContactId, std::size_t> out;
    while (q.step())
        out[q.contactId(0)] = static_cast<std::size_t>(q.int64(1));
    return out;
}

std::int64_t Store::counter(std::string_view name) const {
    auto q = impl_->db.query(kSelectCounter, "read a counter");
    q.bind(1, name);
    return q.step() ? q.int64(0) : 0;
}

} // namespace parley::node
