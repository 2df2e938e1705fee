// Database: one SQLite file of the profile, opened the way parley needs it (private mode 0600,
// WAL, synchronous=NORMAL, busy_timeout 2 s, foreign keys, migrations by PRAGMA user_version),
// with a statement cache and queries that throw StoreError with a sentence a person can act
// on. Used from one thread at a time (the node's). The rooms' stores (Store, the transfer
// room's) are built on it.
#pragma once

#include "dht/contact_id.h"
#include "node/store/store.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace parley::node {

class Database {
public:
    // Opens or creates `file` and applies `migrations` (index 0 takes the schema from
    // version 0 to 1), each in its own transaction. A file from a newer schema is refused and
    // left untouched. `lost` says what a person loses by moving a damaged file aside ("your
    // contacts"), for the error messages.
    Database(const std::filesystem::path& file, std::span<const char* const> migrations,
             std::string lost);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    class Query;
    // A cached statement; `sql` must live as long as the program (a literal): it is the cache
    // key. `action` says what was being done, for the error message.
    Query query(const char* sql, std::string_view action);
    void exec(const char* sql, std::string_view action);
    // Runs `body` in one transaction (BEGIN IMMEDIATE ... COMMIT; rolled back if it throws).
    void transaction(const std::function<void()>& body);
    int schemaVersion();
    const std::filesystem::path& file() const { return file_; }

    [[noreturn]] void fail(std::string_view action, int code) const;
    [[noreturn]] void damaged(std::string_view what) const;

private:
    void open(std::span<const char* const> migrations);
    void close() noexcept; // finalizes the statements and closes the connection

    std::filesystem::path file_;
    std::string lost_;
    sqlite3* db_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

// One use of a cached statement: binds, steps, reads columns, and resets it when done, so that
// no statement keeps a read transaction open between calls.
class Database::Query {
public:
    Query(Database& db, sqlite3_stmt* statement, std::string_view action)
        : db_(db), statement_(statement), action_(action) {}
    ~Query();
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& bind(int index, std::int64_t value);
    Query& bind(int index, std::optional<std::int64_t> value);
    Query& bind(int index, std::string_view text);
    Query& bind(int index, const dht::ContactId& id) { return bind(index, id.toHex()); }
    Query& bindBlob(int index, std::span<const std::uint8_t> bytes);

    bool step(); // true while there is a row to read
    int run();   // a statement that returns no rows; how many rows it changed

    bool isNull(int column) const;
    std::int64_t int64(int column) const;
    std::string text(int column) const;
    std::vector<std::uint8_t> blob(int column) const;
    dht::ContactId contactId(int column) const; // a damaged-file error when not one
    // For readers of rows that find a value the schema rules out: Database::damaged.
    [[noreturn]] void damaged(std::string_view what) const { db_.damaged(what); }
    template <std::size_t N> std::array<std::uint8_t, N> fixedBlob(int column) const {
        auto bytes = blob(column);
        std::array<std::uint8_t, N> out{};
        if (bytes.size() != N)
            db_.damaged("a " + std::to_string(bytes.size()) + "-byte value where " +
                        std::to_string(N) + " were expected");
        std::copy(bytes.begin(), bytes.end(), out.begin());
        return out;
    }

private:
    Query& check(int rc);
    Database& db_;
    sqlite3_stmt* statement_;
    std::string_view action_;
};

} // namespace parley::node
