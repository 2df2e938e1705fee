// Chat in the store (schema 2): numbering, exactly-once receipt, forward-only states, history
// order, receipts owed, unread counts; and the UTF-8 repair of received text.
#include "dht/records.h"
#include "node/chat/chat.h"
#include "node/store/store.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>

using namespace parley;
using node::ChatRecord;
using node::MessageId;
using node::Store;

namespace {

dht::ContactId contact(std::uint8_t b) {
    dht::ContactId::Bytes bytes{};
    bytes.fill(b);
    return dht::ContactId(bytes);
}

MessageId mid(std::uint8_t b) {
    MessageId id{};
    id.fill(b);
    return id;
}

ChatRecord incoming(const dht::ContactId& from, std::uint8_t id, std::uint64_t seq,
                    std::int64_t sentMs, std::string text = "hi") {
    ChatRecord r;
    r.id = mid(id);
    r.contact = from;
    r.seq = seq;
    r.sentMs = sentMs;
    r.receivedMs = sentMs + 1;
    r.text = std::move(text);
    r.state = "received";
    r.updatedMs = sentMs + 1;
    return r;
}

} // namespace

TEST_CASE("chat store: outgoing messages are numbered per conversation and queued", "[chat]") {
    test::TempDir dir;
    Store store(dir.path / "parley.db");
    CHECK(store.schemaVersion() == 2);
    auto bob = contact(1), carol = contact(2);
    auto m1 = store.addOutgoing(bob, mid(1), "one", 1000);
    auto m2 = store.addOutgoing(bob, mid(2), "two", 1001);
    auto c1 = store.addOutgoing(carol, mid(3), "uno", 1002);
    CHECK(m1.seq == 1);
    CHECK(m2.seq == 2);
    CHECK(c1.seq == 1);
    CHECK(m1.state == "queued");
    CHECK_THROWS_AS(store.addOutgoing(bob, mid(1), "again", 1003), node::StoreError);
    auto outbox = store.outbox(bob, 10);
    REQUIRE(outbox.size() == 2);
    CHECK(outbox[0].text == "one");
    CHECK(outbox[1].text == "two");
    auto contacts = store.outboxContacts();
    CHECK(contacts.size() == 2);
}

TEST_CASE("chat store: states only move forward, delivered leaves the outbox", "[chat]") {
    test::TempDir dir;
    Store store(dir.path / "parley.db");
    auto bob = contact(1);
    store.addOutgoing(bob, mid(1), "one", 1000);
    CHECK(store.advanceState(mid(1), "stored", 1001));
    CHECK_FALSE(store.advanceState(mid(1), "stored", 1002));
    CHECK_FALSE(store.advanceState(mid(1), "queued", 1002));
    CHECK(store.advanceState(mid(1), "read", 1003)); // a read receipt may overtake the ack
    CHECK_FALSE(store.advanceState(mid(1), "delivered", 1004));
    CHECK(store.message(mid(1))->state == "read");
    CHECK(store.outbox(bob, 10).empty());
    CHECK(store.outboxContacts().empty());
    // Incoming messages are not moved by receipts.
    store.addIncoming(incoming(bob, 9, 1, 500), false);
    CHECK_FALSE(store.advanceState(mid(9), "delivered", 1005));
    CHECK(store.message(mid(9))->state == "received");
}

TEST_CASE("chat store: a received message is stored once, history is in sender order", "[chat]") {
    test::TempDir dir;
    Store store(dir.path / "parley.db");
    auto bob = contact(1);
    // Arrival order 2, 1, 3 (e.g. one came through the DHT): shown by the sender's time/seq.
    CHECK(store.addIncoming(incoming(bob, 2, 2, 2000, "second"), false));
    CHECK(store.addIncoming(incoming(bob, 1, 1, 1000, "first"), true));
    CHECK(store.addIncoming(incoming(bob, 3, 3, 3000, "third"), false));
    CHECK_FALSE(store.addIncoming(incoming(bob, 1, 1, 1000, "first"), false));
    store.addOutgoing(bob, mid(50), "mine", 2500);
    auto h = store.history(bob, 10);
    REQUIRE(h.size() == 4);
    CHECK(h[0].text == "first");
    CHECK(h[1].text == "second");
    CHECK(h[2].text == "mine");
    CHECK(h[3].text == "third");
    auto last2 = store.history(bob, 2);
    REQUIRE(last2.size() == 2);
    CHECK(last2[0].text == "mine");
    CHECK(last2[1].text == "third");
    // Only the one that came through the DHT still owes an ack.
    auto due = store.receiptsDue(bob, false, 10);
    REQUIRE(due.size() == 1);
    CHECK(due[0] == mid(1));
    store.clearReceiptDue(mid(1), false);
    CHECK(store.receiptsDue(bob, false, 10).empty());
}

TEST_CASE("chat store: unread counts and read receipts owed", "[chat]") {
    test::TempDir dir;
    Store store(dir.path / "parley.db");
    auto bob = contact(1), carol = contact(2);
    store.addIncoming(incoming(bob, 1, 1, 1000), false);
    store.addIncoming(incoming(bob, 2, 2, 1001), false);
    store.addIncoming(incoming(carol, 3, 1, 1002), false);
    auto unread = store.unreadCounts();
    CHECK(unread[bob] == 2);
    CHECK(unread[carol] == 1);
    CHECK(store.receiptsDue(bob, true, 10).empty());
    CHECK(store.markRead(bob, 2000) == 2);
    CHECK(store.markRead(bob, 2001) == 0);
    CHECK(store.unreadCounts().count(bob) == 0);
    auto due = store.receiptsDue(bob, true, 10);
    CHECK(due.size() == 2);
    for (const auto& id : due)
        store.clearReceiptDue(id, true);
    CHECK(store.receiptsDue(bob, true, 10).empty());
}

TEST_CASE("chat store: a transaction is all or nothing", "[chat]") {
    test::TempDir dir;
    Store store(dir.path / "parley.db");
    auto bob = contact(1);
    CHECK_THROWS(store.transaction([&] {
        store.addIncoming(incoming(bob, 1, 1, 1000), false);
        throw std::runtime_error("disk full, say");
    }));
    CHECK_FALSE(store.message(mid(1)));
    store.transaction([&] { store.addIncoming(incoming(bob, 1, 1, 1000), false); });
    CHECK(store.message(mid(1)));
}

TEST_CASE("received text is repaired to valid UTF-8", "[chat]") {
    using node::repairUtf8;
    CHECK(repairUtf8("plain") == "plain");
    CHECK(repairUtf8("h\xC3\xA9") == "h\xC3\xA9");
    CHECK(repairUtf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");
    CHECK(repairUtf8("a\xFFz") == "a\xEF\xBF\xBDz");
    CHECK(repairUtf8("\xC3") == "\xEF\xBF\xBD");                         // truncated
    CHECK(repairUtf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");         // overlong
    CHECK(repairUtf8("\xED\xA0\x80").find("\xED") == std::string::npos); // surrogate
    for (int b = 0; b < 256; ++b) {
        std::string s(1, static_cast<char>(b));
        CHECK(dht::isValidUtf8(repairUtf8(s + "x" + s)));
    }
}
