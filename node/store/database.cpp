// Database: opening, migrating and querying one SQLite file of the profile.
#include "node/store/database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

namespace parley::node {

namespace {

// Creates the file ourselves so that it (and the -wal and -shm files SQLite gives the same
// mode) is private from the start; an existing file is made private too. Failures are left for
// SQLite to report in its own words.
void prepareFile(const std::filesystem::path& file) {
    int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) != 0600)
        ::fchmod(fd, 0600);
    ::close(fd);
}

} // namespace

Database::Database(const std::filesystem::path& file, std::span<const char* const> migrations,
                   std::string lost)
    : file_(file), lost_(std::move(lost)) {
    // A constructor that throws gets no destructor call: close what was opened.
    try {
        open(migrations);
    } catch (...) {
        close();
        throw;
    }
}

void Database::open(std::span<const char* const> migrations) {
    prepareFile(file_);
    // NOMUTEX: one thread uses the database at a time, so SQLite's own locks are unnecessary.
    int rc =
        sqlite3_open_v2(file_.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        if (!db_)
            throw StoreError(file_.string() + ": cannot open: out of memory");
        fail("open", sqlite3_extended_errcode(db_));
    }
    sqlite3_extended_result_codes(db_, 1);
    // SQLite quietly falls back to read-only when it may not write the file; parley must write.
    if (sqlite3_db_readonly(db_, "main") == 1)
        throw StoreError(detail::storeErrorMessage(file_, "open", SQLITE_READONLY,
                                                   sqlite3_errstr(SQLITE_READONLY)));
    sqlite3_busy_timeout(db_, 2000);

    // Read the version before changing anything, so a newer database is left as it is.
    const int latest = static_cast<int>(migrations.size());
    int version = schemaVersion();
    if (version > latest)
        throw StoreError(file_.string() + ": the database has schema version " +
                         std::to_string(version) + ", newer than this parley understands (" +
                         std::to_string(latest) + "); upgrade parley, or use another profile");
    if (version < 0)
        damaged("negative schema version " + std::to_string(version));
    {
        auto q = query("PRAGMA journal_mode = WAL", "switch to write-ahead logging");
        if (!q.step() || q.text(0) != "wal")
            throw StoreError(file_.string() +
                             ": cannot switch to write-ahead logging (journal mode '" + q.text(0) +
                             "'); put the profile on a local file system");
    }
    exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;", "configure the database");
    // Each step re-reads the version inside its transaction: another process may have
    // migrated the file meanwhile.
    while (version < latest) {
        int next = version + 1;
        auto action = "upgrade the database to schema version " + std::to_string(next);
        exec("BEGIN IMMEDIATE", action);
        try {
            version = schemaVersion();
            if (version < next) {
                exec(migrations[static_cast<std::size_t>(next - 1)], action);
                // PRAGMA takes no parameters; `next` is our own integer.
                exec(("PRAGMA user_version = " + std::to_string(next)).c_str(), action);
                version = next;
            }
            exec("COMMIT", action);
        } catch (...) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }
}

Database::~Database() {
    close();
}

void Database::close() noexcept {
    for (auto& [sql, statement] : statements_)
        sqlite3_finalize(statement);
    statements_.clear();
    sqlite3_close_v2(db_);
    db_ = nullptr;
}

namespace {

std::string damagedAdvice(std::string_view lost) {
    return "the database is damaged; move it aside (parley then starts an empty one, without " +
           std::string(lost) + ") or restore a backup";
}

} // namespace

void Database::fail(std::string_view action, int code) const {
    // detail::storeErrorMessage's advice for a damaged file names what Store's file holds; this
    // is the same sentence with what this file holds.
    if ((code & 0xff) == SQLITE_CORRUPT)
        throw StoreError(file_.string() + ": cannot " + std::string(action) + ": " +
                         damagedAdvice(lost_) + " (sqlite: " + sqlite3_errmsg(db_) + ")");
    throw StoreError(detail::storeErrorMessage(file_, action, code, sqlite3_errmsg(db_)));
}

void Database::damaged(std::string_view what) const {
    throw StoreError(file_.string() + ": " + std::string(what) + ": " + damagedAdvice(lost_));
}

void Database::exec(const char* sql, std::string_view action) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK)
        fail(action, sqlite3_extended_errcode(db_));
}

Database::Query Database::query(const char* sql, std::string_view action) {
    auto& statement = statements_[sql];
    if (!statement) {
        int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
        if (rc != SQLITE_OK) {
            statements_.erase(sql);
            fail(action, sqlite3_extended_errcode(db_));
        }
    }
    return Query(*this, statement, action);
}

void Database::transaction(const std::function<void()>& body) {
    exec("BEGIN IMMEDIATE", "start a transaction");
    try {
        body();
    } catch (...) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
    exec("COMMIT", "commit a transaction");
}

int Database::schemaVersion() {
    auto q = query("PRAGMA user_version", "read the schema version");
    if (!q.step())
        damaged("no schema version");
    return static_cast<int>(q.int64(0));
}

Database::Query::~Query() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
}

Database::Query& Database::Query::bind(int index, std::int64_t value) {
    return check(sqlite3_bind_int64(statement_, index, value));
}

Database::Query& Database::Query::bind(int index, std::optional<std::int64_t> value) {
    return value ? bind(index, *value) : check(sqlite3_bind_null(statement_, index));
}

Database::Query& Database::Query::bind(int index, std::string_view text) {
    // A null pointer would bind NULL, not an empty string.
    const char* data = text.data() ? text.data() : "";
    return check(
        sqlite3_bind_text64(statement_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
}

Database::Query& Database::Query::bindBlob(int index, std::span<const std::uint8_t> bytes) {
    if (bytes.empty())
        return check(sqlite3_bind_zeroblob(statement_, index, 0));
    return check(
        sqlite3_bind_blob64(statement_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT));
}

bool Database::Query::step() {
    int rc = sqlite3_step(statement_);
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE)
        return false;
    db_.fail(action_, sqlite3_extended_errcode(db_.db_));
}

int Database::Query::run() {
    while (step()) {
    }
    return sqlite3_changes(db_.db_);
}

bool Database::Query::isNull(int column) const {
    return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

std::int64_t Database::Query::int64(int column) const {
    return sqlite3_column_int64(statement_, column);
}

std::string Database::Query::text(int column) const {
    auto data = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
    return data ? std::string(data,
                              static_cast<std::size_t>(sqlite3_column_bytes(statement_, column)))
                : std::string();
}

std::vector<std::uint8_t> Database::Query::blob(int column) const {
    auto data = static_cast<const std::uint8_t*>(sqlite3_column_blob(statement_, column));
    auto size = static_cast<std::size_t>(sqlite3_column_bytes(statement_, column));
    return data ? std::vector<std::uint8_t>(data, data + size) : std::vector<std::uint8_t>();
}

dht::ContactId Database::Query::contactId(int column) const {
    auto hex = text(column);
    auto id = dht::ContactId::parse(hex);
    if (!id)
        db_.damaged("invalid contact id '" + hex + "'");
    return *id;
}

Database::Query& Database::Query::check(int rc) {
    if (rc != SQLITE_OK)
        db_.fail(action_, rc);
    return *this;
}

} // namespace parley::node
