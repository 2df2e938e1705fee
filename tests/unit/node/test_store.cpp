// Store: schema and migrations, contacts, replay protection, the pending queue, counters, and
// the errors a person sees when the database cannot be used.
#include "node/store/store.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <grp.h>
#include <iterator>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace parley;
using node::ContactRecord;
using node::ContactState;
using node::EnvelopeId;
using node::PendingEnvelope;
using node::Store;
using node::StoreError;
namespace fs = std::filesystem;

namespace {

unsigned modeOf(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

dht::ContactId contactId(std::uint8_t fill) {
    dht::ContactId::Bytes bytes;
    bytes.fill(fill);
    return dht::ContactId(bytes);
}

EnvelopeId envelopeId(std::uint8_t fill) {
    EnvelopeId id;
    id.fill(fill);
    return id;
}

ContactRecord contactRecord(std::uint8_t fill, ContactState state, std::string alias,
                            std::string name) {
    ContactRecord r;
    r.id = contactId(fill);
    r.alias = std::move(alias);
    r.name = std::move(name);
    r.state = state;
    r.message = "hello from " + std::to_string(fill);
    r.createdMs = 1000 + fill;
    r.updatedMs = 2000 + fill;
    return r;
}

PendingEnvelope pendingEnvelope(std::uint8_t fill, std::int64_t createdMs,
                                std::vector<std::uint8_t> payload) {
    PendingEnvelope e;
    e.id = envelopeId(fill);
    e.recipient = contactId(fill);
    e.kind = fill;
    e.payload = std::move(payload);
    e.createdMs = createdMs;
    return e;
}

std::vector<std::string> aliasesOrNames(const std::vector<ContactRecord>& records) {
    std::vector<std::string> out;
    for (const auto& r : records)
        out.push_back(!r.alias.empty() ? r.alias : !r.name.empty() ? r.name : r.id.shortHex());
    return out;
}

std::string readBytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// PRAGMA user_version lives in the database header, 4 bytes big-endian at offset 60.
void writeUserVersion(const fs::path& p, std::uint32_t version) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f);
    f.seekp(60);
    char bytes[4] = {char(version >> 24), char(version >> 16), char(version >> 8), char(version)};
    f.write(bytes, 4);
    REQUIRE(f);
}

// What opening `file` says: "opened", or the StoreError's message.
std::string tryOpen(const fs::path& file) {
    try {
        Store store(file);
        return "opened";
    } catch (const StoreError& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("not a StoreError: ") + e.what();
    }
}

// Root ignores file permissions, so as root the attempt runs in a child process that became
// "nobody" (65534). nullopt when that is not possible here.
std::optional<std::string> tryOpenUnprivileged(const fs::path& file) {
    if (::geteuid() != 0)
        return tryOpen(file);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        std::string out;
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)
            out = "\x01";
        else
            out = tryOpen(file);
        std::size_t off = 0;
        while (off < out.size()) {
            auto n = ::write(fds[1], out.data() + off, out.size() - off);
            if (n <= 0)
                break;
            off += static_cast<std::size_t>(n);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string out;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
        out.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    if (out == "\x01")
        return std::nullopt;
    return out;
}

} // namespace

TEST_CASE("a contact state has a name and back") {
    for (auto state : {ContactState::outgoing, ContactState::incoming, ContactState::accepted,
                       ContactState::blocked})
        CHECK(node::contactStateFromString(node::toString(state)) == state);
    CHECK(node::toString(ContactState::blocked) == "blocked");
    CHECK_FALSE(node::contactStateFromString("Accepted"));
    CHECK_FALSE(node::contactStateFromString(""));
}

TEST_CASE("a new store is a private database at the current schema version") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    auto oldMask = ::umask(0);
    {
        Store store(file);
        ::umask(oldMask);
        CHECK(store.schemaVersion() == Store::kSchemaVersion);
        CHECK(store.contacts().empty());
        CHECK(store.pending().empty());
        CHECK(store.seenCount() == 0);
        store.addCounter("written", 1); // so that the write-ahead log exists
        CHECK(modeOf(file) == 0600);
        auto wal = file;
        wal += "-wal";
        REQUIRE(fs::exists(wal));
        CHECK(modeOf(wal) == 0600);
    }
    ::umask(oldMask);
    Store again(file);
    CHECK(again.schemaVersion() == Store::kSchemaVersion);
    CHECK(again.counter("written") == 1);
}

TEST_CASE("an existing database file is made private") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    { std::ofstream create(file); }
    REQUIRE(::chmod(file.c_str(), 0644) == 0);
    Store store(file);
    CHECK(modeOf(file) == 0600);
    CHECK(store.schemaVersion() == Store::kSchemaVersion);
}

TEST_CASE("contacts are added, updated, listed in order and removed") {
    test::TempDir tmp;
    Store store(tmp.path / "parley.db");
    auto bob = contactRecord(1, ContactState::accepted, "bob", "");
    auto carl = contactRecord(2, ContactState::accepted, "Carl", "Aaron"); // the alias wins
    auto alice = contactRecord(3, ContactState::accepted, "", "Alice");
    auto unnamed = contactRecord(4, ContactState::accepted, "", "");
    auto zed = contactRecord(5, ContactState::blocked, "Zed", "");
    auto dave = contactRecord(6, ContactState::outgoing, "", "Dave");
    auto erin = contactRecord(7, ContactState::incoming, "", "erin");
    unnamed.message.clear(); // empty strings are stored as such, not as NULL
    for (const auto& r : {zed, unnamed, dave, bob, erin, carl, alice})
        store.upsertContact(r);

    CHECK(store.contact(carl.id) == carl);
    CHECK(store.contact(unnamed.id) == unnamed);
    CHECK_FALSE(store.contact(contactId(99)));
    CHECK(aliasesOrNames(store.contacts()) == std::vector<std::string>{"Alice", "bob", "Carl",
                                                                       unnamed.id.shortHex(),
                                                                       "erin", "Dave", "Zed"});
    CHECK(store.countContacts(ContactState::accepted) == 4);
    CHECK(store.countContacts(ContactState::incoming) == 1);
    CHECK(store.countContacts(ContactState::outgoing) == 1);
    CHECK(store.countContacts(ContactState::blocked) == 1);

    // An outgoing request is accepted: the same id, a new state.
    dave.state = ContactState::accepted;
    dave.alias = "dave";
    dave.updatedMs = 9000;
    dave.lastSeenMs = 8500;
    dave.online = true;
    store.upsertContact(dave);
    CHECK(store.contact(dave.id) == dave);
    CHECK(store.contacts().size() == 7);
    CHECK(store.countContacts(ContactState::outgoing) == 0);
    CHECK(store.countContacts(ContactState::accepted) == 5);
    CHECK(aliasesOrNames(store.contacts()) ==
          std::vector<std::string>{"Alice", "bob", "Carl", "dave", unnamed.id.shortHex(), "erin",
                                   "Zed"});

    CHECK(store.removeContact(zed.id));
    CHECK_FALSE(store.removeContact(zed.id));
    CHECK_FALSE(store.contact(zed.id));
    CHECK(store.countContacts(ContactState::blocked) == 0);
    CHECK(store.contacts().size() == 6);
}

TEST_CASE("presence is saved and an unknown last-seen time keeps the known one") {
    test::TempDir tmp;
    Store store(tmp.path / "parley.db");
    auto bob = contactRecord(1, ContactState::accepted, "bob", "");
    store.upsertContact(bob);
    CHECK_FALSE(store.contact(bob.id)->online);
    CHECK_FALSE(store.contact(bob.id)->lastSeenMs);

    store.setPresence(bob.id, true, 5000);
    auto seen = store.contact(bob.id);
    CHECK(seen->online);
    CHECK(seen->lastSeenMs == 5000);
    CHECK(seen->updatedMs == bob.updatedMs);

    store.setPresence(bob.id, false, std::nullopt);
    seen = store.contact(bob.id);
    CHECK_FALSE(seen->online);
    CHECK(seen->lastSeenMs == 5000);

    store.setPresence(bob.id, false, 7000);
    CHECK(store.contact(bob.id)->lastSeenMs == 7000);

    store.setPresence(contactId(42), true, 1); // not a contact: nothing happens
    CHECK_FALSE(store.contact(contactId(42)));
    CHECK(store.contacts().size() == 1);
}

TEST_CASE("a seen envelope id is refused a second time until its expiry passes") {
    test::TempDir tmp;
    Store store(tmp.path / "parley.db");
    auto a = envelopeId(0xaa);
    auto b = envelopeId(0xbb);
    CHECK(store.markEnvelopeSeen(a, 100));
    CHECK_FALSE(store.markEnvelopeSeen(a, 100));
    CHECK_FALSE(store.markEnvelopeSeen(a, 500));
    CHECK(store.markEnvelopeSeen(b, 200));
    CHECK(store.seenCount() == 2);

    store.purgeSeen(100); // "until 100" still holds at 100
    CHECK(store.seenCount() == 2);
    CHECK_FALSE(store.markEnvelopeSeen(a, 100));
    store.purgeSeen(101);
    CHECK(store.seenCount() == 1);
    CHECK_FALSE(store.markEnvelopeSeen(b, 200));
    CHECK(store.markEnvelopeSeen(a, 300));
    store.purgeSeen(1000);
    CHECK(store.seenCount() == 0);
}

TEST_CASE("pending envelopes come back oldest first and count their attempts") {
    test::TempDir tmp;
    Store store(tmp.path / "parley.db");
    auto first = pendingEnvelope(1, 200, {1, 2, 3});
    auto older = pendingEnvelope(2, 100, {0, 0xff, 0});
    auto sameTime = pendingEnvelope(3, 200, {}); // empty payload, inserted after `first`
    store.addPending(first);
    store.addPending(older);
    store.addPending(sameTime);
    CHECK(store.pending() == std::vector<PendingEnvelope>{older, first, sameTime});

    store.bumpPendingAttempts(first.id);
    store.bumpPendingAttempts(first.id);
    store.bumpPendingAttempts(envelopeId(99)); // unknown: nothing happens
    auto queue = store.pending();
    REQUIRE(queue.size() == 3);
    CHECK(queue[1].id == first.id);
    CHECK(queue[1].attempts == 2);
    CHECK(queue[0].attempts == 0);

    CHECK_THROWS_AS(store.addPending(first), StoreError); // same id twice
    CHECK(store.removePending(older.id));
    CHECK_FALSE(store.removePending(older.id));
    queue = store.pending();
    REQUIRE(queue.size() == 2);
    CHECK(queue[0].id == first.id);
    CHECK(queue[1] == sameTime);
}

TEST_CASE("counters add up and start at zero") {
    test::TempDir tmp;
    Store store(tmp.path / "parley.db");
    CHECK(store.counter("dropped.replay") == 0);
    store.addCounter("dropped.replay", 3);
    store.addCounter("dropped.replay", -1);
    store.addCounter("dropped.forged", 1);
    CHECK(store.counter("dropped.replay") == 2);
    CHECK(store.counter("dropped.forged") == 1);
    CHECK(store.counter("dropped") == 0);
}

TEST_CASE("everything survives closing and reopening the store") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    auto bob = contactRecord(1, ContactState::accepted, "bob", "Robert");
    bob.lastSeenMs = 123456;
    bob.online = true;
    auto erin = contactRecord(2, ContactState::incoming, "", "erin");
    auto envelope = pendingEnvelope(3, 500, {9, 8, 7});
    {
        Store store(file);
        store.upsertContact(bob);
        store.upsertContact(erin);
        CHECK(store.markEnvelopeSeen(envelopeId(7), 1000));
        store.addPending(envelope);
        store.bumpPendingAttempts(envelope.id);
        store.addCounter("dropped.replay", 5);
    }
    Store store(file);
    CHECK(store.schemaVersion() == Store::kSchemaVersion);
    CHECK(store.contacts() == std::vector<ContactRecord>{bob, erin});
    CHECK_FALSE(store.markEnvelopeSeen(envelopeId(7), 1000));
    envelope.attempts = 1;
    CHECK(store.pending() == std::vector<PendingEnvelope>{envelope});
    CHECK(store.counter("dropped.replay") == 5);
}

TEST_CASE("a database from a newer schema is refused and left as it is") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    {
        Store store(file);
        store.upsertContact(contactRecord(1, ContactState::accepted, "bob", ""));
    }
    writeUserVersion(file, Store::kSchemaVersion + 1);
    auto before = readBytes(file);
    auto message = tryOpen(file);
    CHECK_THAT(message, Catch::Contains(file.string()) && Catch::Contains("newer") &&
                            Catch::Contains("upgrade parley"));
    CHECK(readBytes(file) == before);
}

TEST_CASE("a file that is not a database is reported with its path and left alone") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    std::string junk;
    for (int i = 0; i < 200; ++i)
        junk += "these are somebody's notes, not a database\n";
    { std::ofstream(file, std::ios::binary) << junk; }
    auto message = tryOpen(file);
    CHECK_THAT(message, Catch::Contains(file.string()) && Catch::Contains("not a SQLite database"));
    CHECK(readBytes(file) == junk);
}

TEST_CASE("a missing directory is reported with the path") {
    test::TempDir tmp;
    auto file = tmp.path / "no" / "such" / "parley.db";
    CHECK_THAT(tryOpen(file), Catch::Contains(file.string()) &&
                                  Catch::Contains("check that its directory exists"));
}

TEST_CASE("a read-only file or directory gives a clear error") {
    test::TempDir tmp;
    REQUIRE(::chmod(tmp.path.c_str(), 0755) == 0); // "nobody" must reach the files below
    auto roFileDir = tmp.path / "ro-file";
    auto roDir = tmp.path / "ro-dir";
    fs::create_directory(roFileDir);
    fs::create_directory(roDir);
    auto roFile = roFileDir / "parley.db";
    { Store store(roFile); }
    REQUIRE(::chmod(roFile.c_str(), 0444) == 0);
    REQUIRE(::chmod(roFileDir.c_str(), 0777) == 0); // only the file is read-only
    REQUIRE(::chmod(roDir.c_str(), 0555) == 0);

    auto fileMessage = tryOpenUnprivileged(roFile);
    auto dirMessage = tryOpenUnprivileged(roDir / "parley.db");
    ::chmod(roDir.c_str(), 0755); // so that the temporary directory can be removed
    if (!fileMessage || !dirMessage) {
        WARN("running as root and cannot become another user: read-only checks skipped");
        return;
    }
    CHECK_THAT(*fileMessage,
               Catch::Contains(roFile.string()) && Catch::Contains("the database is read-only"));
    CHECK_THAT(*dirMessage, Catch::Contains((roDir / "parley.db").string()) &&
                                Catch::Contains("check that its directory exists"));
}

TEST_CASE("a database held by another program gives a clear error, then works again") {
    test::TempDir tmp;
    auto file = tmp.path / "parley.db";
    Store store(file);
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    // Waits out the 2 s busy timeout.
    CHECK_THROWS_WITH(store.addCounter("x", 1),
                      Catch::Contains(file.string()) && Catch::Contains("another program"));
    CHECK(store.counter("x") == 0); // readers are not blocked in WAL mode
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(other);
    store.addCounter("x", 1);
    CHECK(store.counter("x") == 1);
}

TEST_CASE("the common failures get a sentence a person can act on") {
    fs::path file = "/home/someone/.local/share/parley/parley.db";
    auto message = [&](int code) {
        return node::detail::storeErrorMessage(file, "save a contact", code, "sqlite says");
    };
    CHECK_THAT(message(SQLITE_FULL), Catch::StartsWith(file.string() + ": cannot save a contact") &&
                                         Catch::Contains("the disk is full") &&
                                         Catch::EndsWith("(sqlite: sqlite says)"));
    CHECK_THAT(message(SQLITE_BUSY), Catch::Contains("another program holds the database"));
    CHECK_THAT(message(SQLITE_BUSY_SNAPSHOT), Catch::Contains("another program"));
    CHECK_THAT(message(SQLITE_READONLY), Catch::Contains("read-only"));
    CHECK_THAT(message(SQLITE_READONLY_DBMOVED), Catch::Contains("moved or deleted"));
    CHECK_THAT(message(SQLITE_CORRUPT), Catch::Contains("damaged"));
    CHECK_THAT(message(SQLITE_IOERR_WRITE), Catch::Contains("check the disk"));
    CHECK(message(SQLITE_CONSTRAINT_UNIQUE) ==
          file.string() + ": cannot save a contact: sqlite says");
}
