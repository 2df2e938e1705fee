// TransferStore: the schema of transfers.db and its queries.
#include "node/transfer/transfer_store.h"

namespace parley::node::transfer {

namespace {

// Migration N takes the schema from version N-1 to N; once released, a migration never
// changes.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE transfers (
    id          BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    contact     TEXT    NOT NULL CHECK (length(contact) = 64),
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    state       TEXT    NOT NULL CHECK (state IN ('offered', 'accepted', 'transferring',
                        'paused', 'verifying', 'completed', 'failed', 'cancelled', 'declined')),
    reason      TEXT    NOT NULL DEFAULT '',
    name        TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    files       INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL,
    done_bytes  INTEGER NOT NULL DEFAULT 0,
    dest        TEXT    NOT NULL DEFAULT '',
    roots       TEXT    NOT NULL DEFAULT '',
    delivered   INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    peer_paused INTEGER NOT NULL DEFAULT 0 CHECK (peer_paused IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    manifest    BLOB    NOT NULL
);
CREATE INDEX transfers_by_contact ON transfers (contact, created_ms);
CREATE TABLE transfer_files (
    transfer BLOB    NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    state    TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    reason   TEXT    NOT NULL DEFAULT '',
    chunks   BLOB    NOT NULL,
    PRIMARY KEY (transfer, idx)
) WITHOUT ROWID;
CREATE TABLE transfer_ops (
    seq      INTEGER PRIMARY KEY,
    transfer BLOB    NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
    op       INTEGER NOT NULL,
    reason   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX transfer_ops_by_transfer ON transfer_ops (transfer);
CREATE TABLE auto_accept (
    contact TEXT PRIMARY KEY NOT NULL CHECK (length(contact) = 64),
    dir     TEXT NOT NULL
) WITHOUT ROWID;
)sql",
};
static_assert(std::size(kMigrations) == TransferStore::kSchemaVersion);

// The statement cache is keyed by pointer: each text is one constant.
constexpr const char* kInsert =
    "INSERT INTO transfers (id, contact, outgoing, state, reason, name, message, files, "
    "total_bytes, done_bytes, dest, roots, delivered, peer_paused, created_ms, updated_ms, "
    "manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
    "?17)";
constexpr const char* kSelectOne =
    "SELECT id, contact, outgoing, state, reason, name, message, files, total_bytes, done_bytes, "
    "dest, roots, delivered, peer_paused, created_ms, updated_ms FROM transfers WHERE id = ?1";
constexpr const char* kSelectAll =
    "SELECT id, contact, outgoing, state, reason, name, message, files, total_bytes, done_bytes, "
    "dest, roots, delivered, peer_paused, created_ms, updated_ms FROM transfers "
    "ORDER BY created_ms DESC, id";
constexpr const char* kSelectContact =
    "SELECT id, contact, outgoing, state, reason, name, message, files, total_bytes, done_bytes, "
    "dest, roots, delivered, peer_paused, created_ms, updated_ms FROM transfers "
    "WHERE contact = ?1 ORDER BY created_ms, id";
constexpr const char* kSelectManifest = "SELECT manifest FROM transfers WHERE id = ?1";
constexpr const char* kUpdate =
    "UPDATE transfers SET state = ?2, reason = ?3, name = ?4, message = ?5, files = ?6, "
    "total_bytes = ?7, done_bytes = ?8, dest = ?9, roots = ?10, delivered = ?11, "
    "peer_paused = ?12, updated_ms = ?13 WHERE id = ?1";
constexpr const char* kDeleteFiles = "DELETE FROM transfer_files WHERE transfer = ?1";
constexpr const char* kSaveFile =
    "INSERT INTO transfer_files (transfer, idx, state, reason, chunks) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (transfer, idx) DO UPDATE SET "
    "state = excluded.state, reason = excluded.reason, chunks = excluded.chunks";
constexpr const char* kSelectFiles =
    "SELECT idx, state, reason, chunks FROM transfer_files WHERE transfer = ?1 ORDER BY idx";
constexpr const char* kOwe = "INSERT INTO transfer_ops (transfer, op, reason) VALUES (?1, ?2, ?3)";
constexpr const char* kOwed =
    "SELECT o.seq, o.transfer, o.op, o.reason FROM transfer_ops o "
    "JOIN transfers t ON t.id = o.transfer WHERE t.contact = ?1 ORDER BY o.seq";
constexpr const char* kSetAuto = "INSERT INTO auto_accept (contact, dir) VALUES (?1, ?2) "
                                 "ON CONFLICT (contact) DO UPDATE SET dir = excluded.dir";
constexpr const char* kClearAuto = "DELETE FROM auto_accept WHERE contact = ?1";
constexpr const char* kSelectAuto = "SELECT dir FROM auto_accept WHERE contact = ?1";
constexpr const char* kPaid = "DELETE FROM transfer_ops WHERE seq = ?1";

TransferRecord readRecord(const Database::Query& q) {
    TransferRecord r;
    r.id = q.fixedBlob<16>(0);
    r.contact = q.contactId(1);
    r.outgoing = q.int64(2) != 0;
    r.state = q.text(3);
    r.reason = q.text(4);
    r.name = q.text(5);
    r.message = q.text(6);
    r.files = static_cast<std::uint64_t>(q.int64(7));
    r.totalBytes = static_cast<std::uint64_t>(q.int64(8));
    r.doneBytes = static_cast<std::uint64_t>(q.int64(9));
    r.dest = q.text(10);
    r.roots = q.text(11);
    r.offerDelivered = q.int64(12) != 0;
    r.pausedByPeer = q.int64(13) != 0;
    r.createdMs = q.int64(14);
    r.updatedMs = q.int64(15);
    return r;
}

std::int64_t i64(std::uint64_t v) {
    return static_cast<std::int64_t>(v);
}

} // namespace

TransferStore::TransferStore(const std::filesystem::path& file)
    : db_(file, kMigrations, "the list of your transfers (files already received stay)") {}

void TransferStore::add(const TransferRecord& r, std::span<const std::uint8_t> manifest) {
    auto q = db_.query(kInsert, "save a transfer");
    q.bindBlob(1, r.id)
        .bind(2, r.contact)
        .bind(3, std::int64_t{r.outgoing ? 1 : 0})
        .bind(4, std::string_view(r.state))
        .bind(5, std::string_view(r.reason))
        .bind(6, std::string_view(r.name))
        .bind(7, std::string_view(r.message))
        .bind(8, i64(r.files))
        .bind(9, i64(r.totalBytes))
        .bind(10, i64(r.doneBytes))
        .bind(11, std::string_view(r.dest))
        .bind(12, std::string_view(r.roots))
        .bind(13, std::int64_t{r.offerDelivered ? 1 : 0})
        .bind(14, std::int64_t{r.pausedByPeer ? 1 : 0})
        .bind(15, r.createdMs)
        .bind(16, r.updatedMs)
        .bindBlob(17, manifest);
    q.run();
}

std::optional<TransferRecord> TransferStore::get(const TransferId& id) {
    auto q = db_.query(kSelectOne, "read a transfer");
    q.bindBlob(1, id);
    if (!q.step())
        return std::nullopt;
    return readRecord(q);
}

std::vector<TransferRecord> TransferStore::list() {
    auto q = db_.query(kSelectAll, "read the transfers");
    std::vector<TransferRecord> out;
    while (q.step())
        out.push_back(readRecord(q));
    return out;
}

std::vector<TransferRecord> TransferStore::withContact(const dht::ContactId& contact) {
    auto q = db_.query(kSelectContact, "read a contact's transfers");
    q.bind(1, contact);
    std::vector<TransferRecord> out;
    while (q.step())
        out.push_back(readRecord(q));
    return out;
}

std::vector<std::uint8_t> TransferStore::manifest(const TransferId& id) {
    auto q = db_.query(kSelectManifest, "read a transfer's manifest");
    q.bindBlob(1, id);
    if (!q.step())
        return {};
    return q.blob(0);
}

void TransferStore::update(const TransferRecord& r) {
    auto q = db_.query(kUpdate, "save a transfer's state");
    q.bindBlob(1, r.id)
        .bind(2, std::string_view(r.state))
        .bind(3, std::string_view(r.reason))
        .bind(4, std::string_view(r.name))
        .bind(5, std::string_view(r.message))
        .bind(6, i64(r.files))
        .bind(7, i64(r.totalBytes))
        .bind(8, i64(r.doneBytes))
        .bind(9, std::string_view(r.dest))
        .bind(10, std::string_view(r.roots))
        .bind(11, std::int64_t{r.offerDelivered ? 1 : 0})
        .bind(12, std::int64_t{r.pausedByPeer ? 1 : 0})
        .bind(13, r.updatedMs);
    q.run();
}

void TransferStore::setFiles(const TransferId& id, const std::vector<FileProgress>& files) {
    db_.transaction([&] {
        {
            auto q = db_.query(kDeleteFiles, "reset a transfer's files");
            q.bindBlob(1, id);
            q.run();
        }
        for (const auto& f : files)
            saveFile(id, f);
    });
}

std::vector<FileProgress> TransferStore::files(const TransferId& id) {
    auto q = db_.query(kSelectFiles, "read a transfer's files");
    q.bindBlob(1, id);
    std::vector<FileProgress> out;
    while (q.step())
        out.push_back(
            FileProgress{static_cast<std::uint32_t>(q.int64(0)), q.text(1), q.text(2), q.blob(3)});
    return out;
}

void TransferStore::saveFile(const TransferId& id, const FileProgress& f) {
    auto q = db_.query(kSaveFile, "save a file's progress");
    q.bindBlob(1, id)
        .bind(2, std::int64_t{f.index})
        .bind(3, std::string_view(f.state))
        .bind(4, std::string_view(f.reason));
    // An empty bitmap binds a zero-length blob, never NULL (the column is NOT NULL).
    q.bindBlob(5, f.chunks);
    q.run();
}

void TransferStore::owe(const TransferId& id, Op op, const std::string& reason) {
    auto q = db_.query(kOwe, "queue a message for the peer");
    q.bindBlob(1, id).bind(2, std::int64_t{static_cast<std::uint8_t>(op)}).bind(3, reason);
    q.run();
}

std::vector<OwedOp> TransferStore::owed(const dht::ContactId& contact) {
    auto q = db_.query(kOwed, "read the messages owed to a contact");
    q.bind(1, contact);
    std::vector<OwedOp> out;
    while (q.step()) {
        auto op = opFromByte(static_cast<std::uint8_t>(q.int64(2)));
        if (!op)
            db_.damaged("an unknown transfer message " + std::to_string(q.int64(2)));
        out.push_back(OwedOp{q.int64(0), q.fixedBlob<16>(1), *op, q.text(3)});
    }
    return out;
}

void TransferStore::paid(std::int64_t seq) {
    auto q = db_.query(kPaid, "forget a message sent to the peer");
    q.bind(1, seq);
    q.run();
}

void TransferStore::setAutoAccept(const dht::ContactId& contact,
                                  const std::optional<std::string>& dir) {
    if (!dir) {
        auto q = db_.query(kClearAuto, "forget a contact's auto-accept folder");
        q.bind(1, contact);
        q.run();
        return;
    }
    auto q = db_.query(kSetAuto, "save a contact's auto-accept folder");
    q.bind(1, contact).bind(2, std::string_view(*dir));
    q.run();
}

std::optional<std::string> TransferStore::autoAccept(const dht::ContactId& contact) {
    auto q = db_.query(kSelectAuto, "read a contact's auto-accept folder");
    q.bind(1, contact);
    if (!q.step())
        return std::nullopt;
    return q.text(0);
}

} // namespace parley::node::transfer
