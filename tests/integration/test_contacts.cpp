// Contacts over encrypted DHT envelopes: requests, acceptance, presence, decline, block,
// offline delivery, replay and forgery, persistence across restarts. Real nodes on loopback.
#include "dht/clock.h"
#include "dht/envelope.h"
#include "node/api/contact_methods.h"
#include "node/contacts/contacts.h"
#include "node/contacts/request_policy.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace parley;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

json contactsOf(node::Node& n) {
    return node::api::toJson(n.call([&] { return n.contacts().contacts(); }));
}

json requestsOf(node::Node& n) {
    return node::api::requestsJson(n.call([&] { return n.contacts().requests(); }));
}

// The entry for `id` in `parley contacts`, or null.
json entry(node::Node& n, const dht::ContactId& id) {
    for (const auto& c : contactsOf(n))
        if (c["id"] == id.toHex())
            return c;
    return nullptr;
}

std::string add(node::Node& from, const dht::ContactId& to, const std::string& message) {
    auto promise = std::make_shared<std::promise<json>>();
    auto future = promise->get_future();
    from.call([&] {
        return from.contacts()
            .add(to, message, "",
                 [promise](const node::AddResult& r) { promise->set_value(node::api::toJson(r)); })
            .error;
    });
    return future.get()["delivery"].get<std::string>();
}

std::int64_t counter(node::Node& n, const std::string& name) {
    return static_cast<std::int64_t>(n.call([&] { return n.contacts().counters()[name]; }));
}

} // namespace

TEST_CASE("A adds B, B accepts, both see each other's presence change") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    // B's card must be findable before A can encrypt to B.
    REQUIRE(test::eventually([&] { return a.node->lookup(bId.contactId(), 3s).card.has_value(); },
                             20s));

    CHECK(add(*a.node, bId.contactId(), "hi bob") == "stored");
    CHECK(test::contactState(*a.node, bId.contactId()) == "outgoing");
    REQUIRE(test::eventually([&] { return requestsOf(*b.node).size() == 1; }, 20s));
    auto request = requestsOf(*b.node)[0];
    CHECK(request["id"] == aId.contactId().toHex());
    CHECK(request["name"] == "alice");
    CHECK(request["message"] == "hi bob");
    CHECK(test::contactState(*b.node, aId.contactId()) == "incoming");

    CHECK(b.node->call([&] { return b.node->contacts().accept(aId.contactId()).error; }) == "");
    CHECK(test::contactState(*b.node, aId.contactId()) == "accepted");
    REQUIRE(test::eventually(
        [&] { return test::contactState(*a.node, bId.contactId()) == "accepted"; }, 20s));
    CHECK(entry(*a.node, bId.contactId())["name"] == "bob");

    // Presence: online, then offline when B stops, then online again when B comes back.
    REQUIRE(test::eventually(
        [&] { return entry(*a.node, bId.contactId())["presence"] == "online"; }, 20s));
    CHECK(test::eventually([&] { return entry(*b.node, aId.contactId())["presence"] == "online"; },
                           20s));
    b.node->stop();
    b.node.reset();
    CHECK(test::eventually([&] { return entry(*a.node, bId.contactId())["presence"] == "offline"; },
                           20s));
    auto b2 = net.start(bId, std::move(b.dir));
    CHECK(test::eventually([&] { return entry(*a.node, bId.contactId())["presence"] == "online"; },
                           20s));
    // All states survived B's restart.
    CHECK(test::contactState(*b2.node, aId.contactId()) == "accepted");
}

TEST_CASE("decline and block: a blocked sender's new request is dropped unseen") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::eventually([&] { return a.node->lookup(bId.contactId(), 3s).card.has_value(); },
                             20s));
    add(*a.node, bId.contactId(), "first");
    REQUIRE(test::eventually([&] { return requestsOf(*b.node).size() == 1; }, 20s));
    CHECK(b.node->call([&] { return b.node->contacts().decline(aId.contactId()).error; }) == "");
    CHECK(requestsOf(*b.node).empty());
    CHECK(test::contactState(*a.node, bId.contactId()) == "outgoing"); // A is not told

    CHECK(b.node->call([&] { return b.node->contacts().block(aId.contactId()).error; }) == "");
    CHECK(test::contactState(*b.node, aId.contactId()) == "blocked");
    // A asks again: the envelope arrives but is dropped without a reply.
    CHECK(a.node->call([&] { return a.node->contacts().remove(bId.contactId()).error; }) == "");
    add(*a.node, bId.contactId(), "second");
    CHECK(test::eventually([&] { return counter(*b.node, "envelopes_from_blocked") >= 1; }, 20s));
    CHECK(requestsOf(*b.node).empty());
    CHECK(test::contactState(*a.node, bId.contactId()) == "outgoing");

    CHECK(b.node->call([&] { return b.node->contacts().unblock(aId.contactId()).error; }) == "");
    CHECK(test::contactState(*b.node, aId.contactId()) == "none");
    // A refusal is a value with a sentence for the person, not an exception.
    auto refused = b.node->call([&] { return b.node->contacts().accept(aId.contactId()); });
    CHECK_FALSE(refused.ok());
    CHECK(refused.error == "no contact request from " + aId.contactId().toHex());
    CHECK(b.node->call([&] { return b.node->contacts().remove(aId.contactId()).error; }) ==
          "unknown contact " + aId.contactId().toHex());
    CHECK(b.node->call([&] { return b.node->contacts().block(bId.contactId()).error; }) ==
          "that is your own contact id");
}

TEST_CASE("a request reaches a recipient who was offline, after the sender left") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), cId = test::makeIdentity("carol");
    auto a = net.start(aId);
    // Carol has been online once (her key card is in the DHT), then left.
    auto c = net.start(cId);
    REQUIRE(test::eventually([&] { return a.node->lookup(cId.contactId(), 3s).card.has_value(); },
                             20s));
    c.node->stop();
    c.node.reset();
    CHECK(add(*a.node, cId.contactId(), "are you there?") == "stored");
    a.node->stop();
    a.node.reset();
    auto c2 = net.start(cId, std::move(c.dir));
    REQUIRE(test::eventually([&] { return requestsOf(*c2.node).size() == 1; }, 20s));
    CHECK(requestsOf(*c2.node)[0]["message"] == "are you there?");
}

TEST_CASE("replayed and forged envelopes do nothing") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto mallory = test::makeIdentity("mallory");
    auto b = net.start(bId);
    dht::Envelope e;
    e.kind = dht::EnvelopeKind::contactRequest;
    e.id.fill(0x42);
    e.createdMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    e.from = aId.contactId();
    e.to = bId.contactId();
    e.name = "alice";
    e.message = "once";
    auto deliver = [&](const dht::Envelope& env, const dht::ContactId& signer) {
        b.node->call([&] {
            b.node->contacts().onEnvelope(env, signer);
            return 0;
        });
    };
    // Signed by Mallory but claiming to be Alice.
    deliver(e, mallory.contactId());
    CHECK(requestsOf(*b.node).empty());
    CHECK(counter(*b.node, "envelopes_forged") == 1);
    // Genuine, then replayed.
    deliver(e, aId.contactId());
    CHECK(requestsOf(*b.node).size() == 1);
    deliver(e, aId.contactId());
    CHECK(requestsOf(*b.node).size() == 1);
    CHECK(counter(*b.node, "envelopes_replayed") == 1);
    // Too old, and for someone else.
    auto old = e;
    old.id.fill(0x43);
    old.createdMs -= dht::kEnvelopeWindowMs + 60'000;
    deliver(old, aId.contactId());
    CHECK(counter(*b.node, "envelopes_expired") == 1);
    auto other = e;
    other.id.fill(0x44);
    other.to = mallory.contactId();
    deliver(other, aId.contactId());
    CHECK(counter(*b.node, "envelopes_wrong-recipient") == 1);
    // Flooding from one sender is capped; the cap does not stop others.
    for (int i = 0; i < 10; ++i) {
        auto flood = e;
        flood.id.fill(static_cast<std::uint8_t>(0x50 + i));
        flood.from = mallory.contactId();
        deliver(flood, mallory.contactId());
    }
    CHECK(counter(*b.node, "requests_over_rate") >= 7);
    CHECK(requestsOf(*b.node).size() == 2); // alice and (one) mallory

    // Many senders: pending requests are capped at 100; the rest are dropped and counted.
    for (int i = 0; i < 110; ++i) {
        auto many = e;
        many.id.fill(0);
        many.id[0] = 0x80;
        many.id[1] = static_cast<std::uint8_t>(i);
        dht::ContactId::Bytes sender{};
        sender[0] = 0xee;
        sender[1] = static_cast<std::uint8_t>(i);
        many.from = dht::ContactId(sender);
        deliver(many, many.from);
    }
    CHECK(requestsOf(*b.node).size() == 100);
    CHECK(counter(*b.node, "requests_over_cap") == 12);
    // Once B answers some, a legitimate request gets through again.
    b.node->call([&] {
        return b.node->contacts().decline(aId.contactId()).ok() &&
               b.node->contacts().decline(mallory.contactId()).ok();
    });
    auto carol = test::makeIdentity("carol");
    auto fromCarol = e;
    fromCarol.id.fill(0x99);
    fromCarol.from = carol.contactId();
    deliver(fromCarol, carol.contactId());
    CHECK(requestsOf(*b.node).size() == 99);
    CHECK(test::contactState(*b.node, carol.contactId()) == "incoming");
}

namespace {

std::uintmax_t databaseBytes(const std::filesystem::path& dir) {
    std::uintmax_t total = 0;
    for (const char* name : {"parley.db", "parley.db-wal"}) {
        std::error_code ec;
        auto n = std::filesystem::file_size(dir / name, ec);
        if (!ec)
            total += n;
    }
    return total;
}

long residentKiB() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stol(line.substr(6));
    return 0;
}

} // namespace

TEST_CASE("20,000 forged and strangers' envelopes leave memory and the database bounded") {
    test::TestNetwork net;
    auto bId = test::makeIdentity("bob"), mallory = test::makeIdentity("mallory");
    auto aId = test::makeIdentity("alice");
    auto b = net.start(bId);
    auto now = dht::unixMs();
    std::uint32_t serial = 0;
    auto envelope = [&](dht::EnvelopeKind kind, const dht::ContactId& from) {
        dht::Envelope e;
        e.kind = kind;
        ++serial;
        std::memcpy(e.id.data(), &serial, sizeof serial); // every id is new: no replay
        e.createdMs = now;
        e.from = from;
        e.to = bId.contactId();
        e.name = "x";
        if (kind == dht::EnvelopeKind::chatMessage) {
            e.seq = serial;
            e.text = "hello";
        }
        return e;
    };
    auto flood = [&](int n, dht::EnvelopeKind kind, auto from, auto signer) {
        b.node->call([&] {
            for (int i = 0; i < n; ++i)
                b.node->contacts().onEnvelope(envelope(kind, from(i)), signer(i));
            return 0;
        });
    };
    auto strangerId = [](int i) {
        dht::ContactId::Bytes bytes{};
        bytes[0] = 0xee;
        std::memcpy(bytes.data() + 1, &i, sizeof i);
        return dht::ContactId(bytes);
    };
    auto m = [&](int) { return mallory.contactId(); };
    // Let the start-up writes settle, then measure.
    b.node->call([&] { return b.node->contacts().counters(); });
    auto bytesBefore = databaseBytes(b.dir->path);
    auto rssBefore = residentKiB();

    auto alice = [&](int) { return aId.contactId(); };
    flood(5000, dht::EnvelopeKind::contactRequest, alice, m); // forged: signed by mallory
    flood(5000, dht::EnvelopeKind::connectRequest, m, m);
    flood(5000, dht::EnvelopeKind::chatMessage, m, m);
    auto bytesDropped = databaseBytes(b.dir->path);
    // 100 strangers' requests are kept (the cap on pending requests), 4,900 more are not.
    flood(100, dht::EnvelopeKind::contactRequest, strangerId, strangerId);
    auto bytesKept = databaseBytes(b.dir->path);
    auto later = [&](int i) { return strangerId(100 + i); };
    flood(4900, dht::EnvelopeKind::contactRequest, later, later);

    auto c = node::api::toJson(b.node->call([&] { return b.node->contacts().counters(); }));
    auto bytesAfter = databaseBytes(b.dir->path);
    auto rssAfter = residentKiB();
    std::printf("20,000 envelopes: database %ju bytes before, %ju after 15,000 dropped, %ju after "
                "100 kept, %ju after 4,900 more dropped; RSS %ld -> %ld KiB, %lld sender windows, "
                "%lld cached keys\n",
                bytesBefore, bytesDropped, bytesKept, bytesAfter, rssBefore, rssAfter,
                static_cast<long long>(c["sender_windows"].get<std::int64_t>()),
                static_cast<long long>(c["cached_keys"].get<std::int64_t>()));
    CHECK(c["envelopes_forged"] == 5000);
    CHECK(c["connect_from_stranger"] == 5000);
    CHECK(c["chat_from_stranger"] == 5000);
    CHECK(c["requests_over_cap"] == 4900); // 100 incoming requests are kept, the cap
    CHECK(requestsOf(*b.node).size() == 100);
    CHECK(c["sender_windows"].get<std::size_t>() <= node::RequestLimits{}.maxSenderWindows);
    CHECK(c["cached_keys"].get<std::size_t>() <= node::kMaxKeys);
    // A dropped envelope costs no write (a counter saved every 5 s may add a page or two); a
    // write each would be megabytes of WAL, as the 100 kept requests show.
    CHECK(bytesDropped < bytesBefore + 64 * 1024);
    CHECK(bytesAfter < bytesKept + 64 * 1024);
}
