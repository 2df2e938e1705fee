// Chat between real nodes on loopback: over the direct link, through the DHT inbox while the
// recipient is offline, three contacts pairwise, replay and forgery, a locked database.
#include "dht/envelope.h"
#include "node/chat/chat.h"
#include "node/contacts/contacts.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>

using namespace parley;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

node::SendResult trySend(node::Node& n, const dht::ContactId& to, const std::string& text) {
    return n.call([&] { return n.chat().send(to, text); });
}

// A message that must be accepted (queued).
void send(node::Node& n, const dht::ContactId& to, const std::string& text) {
    auto r = trySend(n, to, text);
    INFO(r.error);
    REQUIRE(r.ok());
}

std::vector<node::ChatRecord> history(node::Node& n, const dht::ContactId& with,
                                      std::size_t limit = 10000) {
    return n.call([&] { return n.chat().history(with, limit); });
}

// How many of our messages to `with` are in one of `states`.
std::size_t countOut(node::Node& n, const dht::ContactId& with,
                     std::initializer_list<std::string_view> states) {
    std::size_t count = 0;
    for (const auto& m : history(n, with))
        if (m.outgoing)
            for (auto s : states)
                count += m.state == s ? 1 : 0;
    return count;
}

// The incoming messages of a conversation: exactly `n`, seq 1..n in order, with the texts
// the sender used ("<prefix><seq>").
void checkIncoming(node::Node& n, const dht::ContactId& from, std::size_t expected,
                   const std::string& prefix) {
    std::vector<std::uint64_t> seqs;
    for (const auto& m : history(n, from))
        if (!m.outgoing) {
            auto seq = m.seq;
            seqs.push_back(seq);
            CHECK(m.text == prefix + std::to_string(seq));
        }
    REQUIRE(seqs.size() == expected);
    for (std::size_t i = 0; i < seqs.size(); ++i)
        CHECK(seqs[i] == i + 1);
}

std::uint64_t counter(const json& counters, const std::string& name) {
    return counters.contains(name) ? counters[name].get<std::uint64_t>() : 0;
}

} // namespace

TEST_CASE("chat: both directions at once over the link, exactly once, in order, read receipts") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    // Both online in each other's view, so that nothing has a reason to go through the DHT.
    auto presence = [](test::TestNode& n, const dht::ContactId& of) {
        for (const auto& c : n.node->call([&] { return n.node->contacts().contacts(); }))
            if (c.record.id == of)
                return std::string(c.record.online ? "online" : "offline");
        return std::string();
    };
    REQUIRE(test::eventually([&] { return presence(a, bId.contactId()) == "online"; }, 20s));
    REQUIRE(test::eventually([&] { return presence(b, aId.contactId()) == "online"; }, 20s));

    constexpr int kEach = 200;
    auto first = trySend(*a.node, bId.contactId(), "a1");
    REQUIRE(first.ok());
    CHECK(first.seq == 1);
    // Catch2's assertions are for the test's own thread: the other one counts refusals.
    auto sender = std::async(std::launch::async, [&] {
        int refused = 0;
        for (int i = 2; i <= kEach; ++i)
            refused += trySend(*a.node, bId.contactId(), "a" + std::to_string(i)).ok() ? 0 : 1;
        return refused;
    });
    for (int i = 1; i <= kEach; ++i)
        send(*b.node, aId.contactId(), "b" + std::to_string(i));
    REQUIRE(sender.get() == 0);
    REQUIRE(test::eventually(
        [&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == kEach; }, 30s));
    REQUIRE(test::eventually(
        [&] { return countOut(*b.node, aId.contactId(), {"delivered"}) == kEach; }, 30s));
    checkIncoming(*b.node, aId.contactId(), kEach, "a");
    checkIncoming(*a.node, bId.contactId(), kEach, "b");

    // Unread until B reads; then A sees "read".
    auto unread = [&] {
        for (const auto& c : b.node->call([&] { return b.node->contacts().contacts(); }))
            if (c.record.id == aId.contactId())
                return static_cast<int>(c.unread);
        return -1;
    };
    CHECK(unread() == kEach);
    auto marked = b.node->call([&] { return b.node->chat().markRead(aId.contactId()); });
    CHECK(marked == kEach);
    CHECK(unread() == 0);
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"read"}) == kEach; },
                             20s));
    // Nothing went through the DHT: both were online and connected.
    auto bc = b.node->status()["chat_counters"];
    INFO("a: " << a.node->status()["chat_counters"].dump() << " b: " << bc.dump());
    CHECK(counter(bc, "dht_received") == 0);
    CHECK(counter(bc, "received") == kEach);
}

TEST_CASE("chat: a message for an offline contact arrives after the sender has left") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    send(*a.node, bId.contactId(), "m1"); // over the link, to have one
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == 1; },
                             20s));

    auto bDir = std::move(b.dir);
    b.node->stop();
    b.node.reset();
    send(*a.node, bId.contactId(), "m2");
    send(*a.node, bId.contactId(), "m3");
    // B said goodbye when it stopped, so A puts the messages into B's inbox at once.
    REQUIRE(
        test::eventually([&] { return countOut(*a.node, bId.contactId(), {"stored"}) == 2; }, 20s));
    auto aDir = std::move(a.dir);
    a.node->stop();
    a.node.reset();

    auto b2 = net.start(bId, std::move(bDir));
    REQUIRE(test::eventually([&] { return history(*b2.node, aId.contactId()).size() == 3; }, 30s));
    checkIncoming(*b2.node, aId.contactId(), 3, "m");
    CHECK(counter(b2.node->status()["chat_counters"], "dht_received") == 2);

    // A comes back: its outbox connects to B, and B's owed acknowledgements arrive.
    auto a2 = net.start(aId, std::move(aDir));
    REQUIRE(test::eventually(
        [&] { return countOut(*a2.node, bId.contactId(), {"delivered"}) == 3; }, 30s));
    CHECK(history(*b2.node, aId.contactId()).size() == 3); // the resend was not applied twice
}

TEST_CASE("chat: three contacts chatting pairwise") {
    test::TestNetwork net;
    std::vector<dht::Identity> ids = {test::makeIdentity("ann"), test::makeIdentity("ben"),
                                      test::makeIdentity("cat")};
    std::vector<test::TestNode> nodes;
    for (const auto& id : ids)
        nodes.push_back(net.start(id));
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = i + 1; j < 3; ++j)
            REQUIRE(test::makeContacts(*nodes[i].node, ids[i], *nodes[j].node, ids[j]));
    constexpr int kEach = 20;
    for (int k = 1; k <= kEach; ++k)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 3; ++j)
                if (i != j)
                    send(*nodes[i].node, ids[j].contactId(), ids[i].name() + std::to_string(k));
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            if (i == j)
                continue;
            REQUIRE(test::eventually(
                [&] {
                    return countOut(*nodes[i].node, ids[j].contactId(), {"delivered"}) == kEach;
                },
                30s));
            checkIncoming(*nodes[j].node, ids[i].contactId(), kEach, ids[i].name());
        }
}

TEST_CASE("chat: replayed, forged and strangers' messages through the DHT are dropped") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob"),
         mId = test::makeIdentity("mallory");
    auto a = net.start(aId);
    auto b = net.start(bId);
    auto m = net.start(mId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    auto bKey = bId.publicKeyDer();

    auto put = [&](node::Node& from, const dht::Envelope& e) {
        auto done = std::make_shared<std::promise<bool>>();
        auto f = done->get_future();
        from.call([&] {
            from.overlay().sendEnvelope(bKey, e, [done](bool ok) { done->set_value(ok); });
            return 0;
        });
        return f.get();
    };
    dht::Envelope e;
    e.kind = dht::EnvelopeKind::chatMessage;
    e.id = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    e.createdMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    e.from = aId.contactId();
    e.to = bId.contactId();
    e.seq = 1;
    e.text = "through the inbox";
    REQUIRE(put(*a.node, e));
    REQUIRE(test::eventually([&] { return history(*b.node, aId.contactId()).size() == 1; }, 20s));

    // The same envelope again (a new DHT value, same id): not applied twice.
    REQUIRE(put(*a.node, e));
    REQUIRE(test::eventually(
        [&] {
            return b.node->call(
                       [&] { return b.node->contacts().counters(); })["envelopes_replayed"] >= 1;
        },
        20s));
    CHECK(history(*b.node, aId.contactId()).size() == 1);

    // Mallory signs an envelope that claims to be from Alice: forged.
    auto forged = e;
    forged.id[0] = 99;
    forged.text = "I am alice, honest";
    REQUIRE(put(*m.node, forged));
    // Mallory as herself, not a contact of Bob: dropped and counted.
    auto stranger = e;
    stranger.id[0] = 77;
    stranger.from = mId.contactId();
    stranger.text = "hi from a stranger";
    REQUIRE(put(*m.node, stranger));
    REQUIRE(test::eventually(
        [&] {
            auto c = b.node->call([&] { return b.node->contacts().counters(); });
            return c["envelopes_forged"] >= 1 && c["chat_from_stranger"] >= 1;
        },
        20s));
    CHECK(history(*b.node, aId.contactId()).size() == 1);
    CHECK(history(*b.node, mId.contactId()).empty());
    // Mallory cannot send over the link either: she is not a contact.
    auto refused = trySend(*m.node, bId.contactId(), "let me in");
    CHECK_FALSE(refused.ok());
    CHECK(refused.error.find("not an accepted contact") != std::string::npos);
}

TEST_CASE("chat: while the receiver's database is locked, nothing is acknowledged") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    send(*a.node, bId.contactId(), "before");
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == 1; },
                             20s));

    // Another program holds B's database for 6 s (longer than the store's 2 s busy timeout).
    auto db = (b.dir->path / "parley.db").string();
    auto ready = (b.dir->path / "locked").string();
    std::string cmd = "python3 -c \"import sqlite3, time, pathlib; "
                      "c = sqlite3.connect('" +
                      db +
                      "', isolation_level=None); "
                      "c.execute('BEGIN EXCLUSIVE'); pathlib.Path('" +
                      ready +
                      "').touch(); "
                      "time.sleep(6); c.execute('COMMIT')\" &";
    REQUIRE(std::system(cmd.c_str()) == 0);
    REQUIRE(test::eventually([&] { return std::filesystem::exists(ready); }, 10s));
    send(*a.node, bId.contactId(), "during");
    // B cannot store it, so it does not acknowledge it: A's copy never says delivered while
    // B's database refuses it.
    REQUIRE(test::eventually(
        [&] { return counter(b.node->status()["chat_counters"], "store_errors") >= 1; }, 10s));
    CHECK(countOut(*a.node, bId.contactId(), {"delivered"}) == 1);
    // Once the lock is gone, A's retry gets it through.
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == 2; },
                             30s));
    auto got = history(*b.node, aId.contactId());
    REQUIRE(got.size() == 2);
    CHECK(got[0].text == "before");
    CHECK(got[1].text == "during");
}

TEST_CASE("chat: while the sender's database is locked, a contact leaving is counted, not thrown") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    send(*a.node, bId.contactId(), "before");
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == 1; },
                             20s));

    // Another program holds A's database for 5 s (WAL: reads go on, writes fail after the 2 s
    // busy timeout); meanwhile B goes offline politely, and A wants to record B's presence.
    auto db = (a.dir->path / "parley.db").string();
    auto ready = (a.dir->path / "locked").string();
    std::string cmd = "python3 -c \"import sqlite3, time, pathlib, os; "
                      "c = sqlite3.connect('" +
                      db +
                      "', isolation_level=None); "
                      "c.execute('BEGIN EXCLUSIVE'); pathlib.Path('" +
                      ready +
                      "').touch(); "
                      "time.sleep(5); c.execute('COMMIT'); os.remove('" +
                      ready + "')\" &";
    REQUIRE(std::system(cmd.c_str()) == 0);
    REQUIRE(test::eventually([&] { return std::filesystem::exists(ready); }, 10s));
    auto bDir = std::move(b.dir);
    b.node->stop();
    b.node.reset();
    // The failure is counted and logged by the room, not thrown into OpenDHT's callback or
    // the node loop (it was, before).
    REQUIRE(test::eventually(
        [&] {
            return a.node->call([&] { return a.node->contacts().counters(); })["store_errors"] >= 1;
        },
        15s));
    REQUIRE(test::eventually([&] { return !std::filesystem::exists(ready); }, 15s));

    // Once the lock is gone, nothing is lost: a message sent while B is away reaches it.
    send(*a.node, bId.contactId(), "after");
    auto b2 = net.start(bId, std::move(bDir));
    REQUIRE(test::eventually([&] { return countOut(*a.node, bId.contactId(), {"delivered"}) == 2; },
                             40s));
    auto got = history(*b2.node, aId.contactId());
    REQUIRE(got.size() == 2);
    CHECK(got[1].text == "after");
}
