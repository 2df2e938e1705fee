// ChatOutbox on a virtual clock: the window (messages and bytes), retries at the deadline, link
// drops, goodbye and away, the DHT inbox once per message, too-long texts, connect failures,
// strangers, unknown acks, failed sends (also a store failure while preparing them), the flush
// at stop, and the exact deadlines.
#include "node/chat/outbox.h"

#include <catch2/catch.hpp>

using namespace parley;
using namespace parley::node;
using namespace std::chrono_literals;

namespace {

using TimePoint = ChatOutbox::TimePoint;

TimePoint at(std::chrono::milliseconds offset) {
    return TimePoint{} + offset;
}

dht::ContactId contact(std::uint8_t n) {
    dht::ContactId::Bytes b{};
    b.fill(n);
    return dht::ContactId(b);
}

MessageId idOf(std::uint64_t seq) {
    MessageId id{};
    id[0] = static_cast<std::uint8_t>(seq);
    id[1] = static_cast<std::uint8_t>(seq >> 8);
    id[15] = 0xAB;
    return id;
}

OutboxMessage message(std::uint64_t seq, std::size_t bytes = 10, bool inDht = false) {
    return OutboxMessage{idOf(seq), seq, bytes, inDht};
}

const PeerView kOnline{true, false};
const PeerView kOffline{false, false};
const PeerView kStranger{std::nullopt, false};

std::vector<LinkSend> firstSends(std::initializer_list<std::uint64_t> seqs) {
    std::vector<LinkSend> out;
    for (auto s : seqs)
        out.push_back({idOf(s), false});
    return out;
}

std::vector<LinkSend> resends(std::initializer_list<std::uint64_t> seqs) {
    std::vector<LinkSend> out;
    for (auto s : seqs)
        out.push_back({idOf(s), true});
    return out;
}

std::vector<MessageId> ids(std::initializer_list<std::uint64_t> seqs) {
    std::vector<MessageId> out;
    for (auto s : seqs)
        out.push_back(idOf(s));
    return out;
}

} // namespace

TEST_CASE("outbox: the window fills by messages, acks move it") {
    OutboxOptions o;
    o.window = 3;
    ChatOutbox box(o);
    auto a = contact(1);
    CHECK(box.linkUp(a, at(0ms)).send.empty());
    CHECK(box.queued(a, message(1), kOnline, at(1ms)).send == firstSends({1}));
    CHECK(box.queued(a, message(2), kOnline, at(1ms)).send == firstSends({2}));
    CHECK(box.queued(a, message(3), kOnline, at(1ms)).send == firstSends({3}));
    CHECK(box.queued(a, message(4), kOnline, at(1ms)).send.empty()); // window full
    CHECK(box.queued(a, message(5), kOnline, at(1ms)).send.empty());
    CHECK(box.inFlight(a) == 3);
    CHECK(box.inFlightBytes(a) == 30);
    CHECK(box.outboxSize(a) == 5);
    CHECK(box.pump(a, kOnline, at(2ms)).send.empty());

    auto one = ids({1});
    CHECK(box.acked(a, one, false, at(3ms)).send == firstSends({4}));
    CHECK(box.outboxSize(a) == 4);
    CHECK(box.inFlight(a) == 3);
    auto two = ids({2, 3});
    CHECK(box.acked(a, two, false, at(4ms)).send == firstSends({5}));
    CHECK(box.inFlight(a) == 2);
    auto rest = ids({4, 5});
    CHECK(box.acked(a, rest, true, at(5ms)).send.empty());
    CHECK(box.outboxSize(a) == 0);
    CHECK(box.inFlight(a) == 0);
    CHECK(box.inFlightBytes(a) == 0);
    CHECK_FALSE(box.nextDeadline());
}

TEST_CASE("outbox: the window fills by bytes (a message goes out while less is in flight)") {
    OutboxOptions o;
    o.windowBytes = 100;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    CHECK(box.queued(a, message(1, 40), kOnline, at(0ms)).send == firstSends({1}));
    CHECK(box.queued(a, message(2, 40), kOnline, at(0ms)).send == firstSends({2}));
    CHECK(box.queued(a, message(3, 40), kOnline, at(0ms)).send == firstSends({3}));
    CHECK(box.inFlightBytes(a) == 120);
    CHECK(box.queued(a, message(4, 40), kOnline, at(0ms)).send.empty());
    auto one = ids({1});
    CHECK(box.acked(a, one, false, at(1ms)).send == firstSends({4}));
    CHECK(box.inFlightBytes(a) == 120);

    SECTION("one message larger than the window still goes out alone") {
        auto all = ids({2, 3, 4});
        box.acked(a, all, false, at(2ms));
        CHECK(box.queued(a, message(5, 500), kOnline, at(3ms)).send == firstSends({5}));
        CHECK(box.queued(a, message(6, 1), kOnline, at(3ms)).send.empty());
    }
}

TEST_CASE("outbox: in-flight messages are resent exactly at the retry deadline") {
    OutboxOptions o;
    o.retry = 5000ms;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    CHECK(box.queued(a, message(1), kOnline, at(0ms)).send == firstSends({1}));
    CHECK(box.queued(a, message(2), kOnline, at(10ms)).send == firstSends({2}));
    REQUIRE(box.nextDeadline() == at(5000ms));
    CHECK(box.due(at(4999ms)).empty());
    CHECK(box.pump(a, kOnline, at(4999ms)).send.empty());
    CHECK(box.due(at(5000ms)) == std::vector<dht::ContactId>{a});
    CHECK(box.pump(a, kOnline, at(5000ms)).send == resends({1}));
    CHECK(box.nextDeadline() == at(5010ms));
    CHECK(box.pump(a, kOnline, at(5010ms)).send == resends({2}));
    CHECK(box.nextDeadline() == at(10000ms));
    CHECK(box.inFlight(a) == 2); // a resend is not counted twice
    CHECK(box.inFlightBytes(a) == 20);
}

TEST_CASE("outbox: a link dropping while the window is full puts in flight back, in seq order") {
    OutboxOptions o;
    o.window = 2;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    for (std::uint64_t s = 1; s <= 4; ++s)
        box.queued(a, message(s), kOnline, at(0ms));
    CHECK(box.inFlight(a) == 2);
    auto down = box.linkDown(a, false, at(100ms));
    CHECK(down.empty());
    CHECK_FALSE(box.linked(a));
    CHECK(box.inFlight(a) == 0);
    CHECK(box.inFlightBytes(a) == 0);
    CHECK_FALSE(box.isInFlight(a, idOf(1)));
    CHECK(box.outboxSize(a) == 4);
    auto up = box.linkUp(a, at(200ms));
    CHECK(up.sendReceipts);
    CHECK(up.send == firstSends({1, 2}));
    auto first = ids({1, 2});
    CHECK(box.acked(a, first, false, at(300ms)).send == firstSends({3, 4}));
}

TEST_CASE("outbox: goodbye puts everything into the DHT inbox, and new messages for awayFor") {
    OutboxOptions o;
    o.awayFor = 30'000ms;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    box.queued(a, message(1), kOnline, at(0ms));
    box.queued(a, message(2), kOnline, at(0ms));
    auto bye = box.linkDown(a, true, at(1000ms));
    CHECK(bye.putToDht == ids({1, 2}));
    CHECK(bye.dhtReason == DhtReason::goodbye);
    CHECK_FALSE(bye.connect);

    // Its presence still says online, but it is going away: no connect, the DHT inbox.
    auto q3 = box.queued(a, message(3), kOnline, at(2000ms));
    CHECK_FALSE(q3.connect);
    CHECK(q3.putToDht == ids({3}));
    CHECK(q3.dhtReason == DhtReason::away);
    auto q4 = box.queued(a, message(4), kOnline, at(30'999ms));
    CHECK_FALSE(q4.connect);
    CHECK(q4.putToDht == ids({4}));

    // After awayFor its presence decides again.
    auto q5 = box.queued(a, message(5), kOnline, at(31'000ms));
    CHECK(q5.connect);
    CHECK(q5.putToDht.empty());
    CHECK(q5.dhtReason == DhtReason::none);

    SECTION("offline after awayFor: the DHT inbox, counted as offline") {
        ChatOutbox b2(o);
        b2.linkUp(a, at(0ms));
        b2.queued(a, message(1), kOnline, at(0ms));
        b2.linkDown(a, true, at(0ms));
        auto q = b2.queued(a, message(2), kOffline, at(30'000ms));
        CHECK(q.dhtReason == DhtReason::offline);
        CHECK(q.putToDht == ids({2}));
    }
}

TEST_CASE("outbox: an offline contact gets each message into its DHT inbox once") {
    OutboxOptions o;
    o.retry = 5000ms;
    ChatOutbox box(o);
    auto a = contact(1);
    auto q1 = box.queued(a, message(1), kOffline, at(0ms));
    CHECK(q1.putToDht == ids({1}));
    CHECK(q1.dhtReason == DhtReason::offline);
    CHECK_FALSE(q1.connect);
    auto q2 = box.queued(a, message(2), kOffline, at(1ms));
    CHECK(q2.putToDht == ids({2})); // 1 is under way
    CHECK(box.nextDeadline() == at(5001ms));
    CHECK(box.pump(a, kOffline, at(5001ms)).putToDht.empty()); // both still under way

    box.dhtResult(a, idOf(1), true);
    box.dhtResult(a, idOf(2), false);
    auto again = box.pump(a, kOffline, at(10'001ms));
    CHECK(again.putToDht == ids({2})); // the failed one, not the stored one
    box.dhtResult(a, idOf(2), true);
    CHECK(box.pump(a, kOffline, at(15'001ms)).putToDht.empty());
    CHECK(box.outboxSize(a) == 2);             // in their inbox, still unacknowledged
    CHECK(box.nextDeadline() == at(20'001ms)); // looked at again: they may come online

    // Stored in the DHT inbox does not stop the link: the receiver acks over it.
    CHECK(box.linkUp(a, at(20'000ms)).send == firstSends({1, 2}));
    // ... and a result for an acknowledged message changes nothing.
    auto both = ids({1, 2});
    box.acked(a, both, false, at(20'001ms));
    box.dhtResult(a, idOf(1), false);
    CHECK(box.outboxSize(a) == 0);
}

TEST_CASE("outbox: a message loaded as already in the DHT inbox is not put again") {
    ChatOutbox box;
    auto a = contact(1);
    std::vector<OutboxMessage> stored{message(1, 10, true), message(2)};
    box.load(a, stored, at(0ms));
    CHECK(box.outboxSize(a) == 2);
    CHECK(box.due(at(0ms)) == std::vector<dht::ContactId>{a}); // resumed at once
    // Loading again keeps what is known as it is.
    std::vector<OutboxMessage> again{message(1), message(2), message(3)};
    box.load(a, again, at(0ms));
    CHECK(box.outboxSize(a) == 3);
    CHECK(box.pump(a, kOffline, at(0ms)).putToDht == ids({2, 3}));
}

TEST_CASE("outbox: texts too long for an envelope wait for a link") {
    OutboxOptions o;
    o.maxDhtBytes = 3000;
    ChatOutbox box(o);
    auto a = contact(1);
    box.load(a, std::vector<OutboxMessage>{message(1, 3001), message(2, 3000)}, at(0ms));
    auto p = box.pump(a, kOffline, at(0ms));
    CHECK(p.putToDht == ids({2}));
    CHECK(p.tooLongForDht == 1);
    CHECK_FALSE(p.empty());
    auto p2 = box.pump(a, kOffline, at(1ms));
    CHECK(p2.putToDht.empty());
    CHECK(p2.tooLongForDht == 1); // still waiting
    CHECK(box.linkUp(a, at(2ms)).send == firstSends({1, 2}));
}

TEST_CASE("outbox: an online contact is connected to, and a failed connect means the DHT inbox") {
    OutboxOptions o;
    o.retry = 5000ms;
    ChatOutbox box(o);
    auto a = contact(1);
    auto q1 = box.queued(a, message(1), kOnline, at(0ms));
    CHECK(q1.connect);
    CHECK(q1.putToDht.empty());
    auto q2 = box.queued(a, message(2), kOnline, at(1ms));
    CHECK_FALSE(q2.connect); // one connect at a time
    CHECK(q2.empty());
    auto failed = box.connectResult(a, false, kOnline, at(3000ms));
    CHECK(failed.dhtReason == DhtReason::connectFailed);
    CHECK(failed.putToDht == ids({1, 2}));
    CHECK(box.nextDeadline() == at(8000ms));
    auto later = box.pump(a, kOnline, at(8000ms));
    CHECK(later.connect); // tried again
    CHECK(later.putToDht.empty());

    SECTION("a connect that works: the link sends") {
        CHECK(box.linkUp(a, at(8100ms)).send == firstSends({1, 2}));
        auto ok = box.connectResult(a, true, kOnline, at(8100ms));
        CHECK(ok.send.empty()); // linkUp did it
        CHECK_FALSE(ok.connect);
    }
    SECTION("a failed connect after a link came up the other way does nothing") {
        box.linkUp(a, at(8100ms));
        CHECK(box.connectResult(a, false, kOnline, at(8200ms)).empty());
    }
}

TEST_CASE("outbox: receipts we owe are a reason to connect, not to wake up") {
    ChatOutbox box;
    auto a = contact(1);
    auto p = box.pump(a, PeerView{true, true}, at(0ms));
    CHECK(p.connect);
    CHECK_FALSE(box.nextDeadline());
    CHECK(box.pump(a, PeerView{true, false}, at(0ms)).empty());
    box.linkUp(a, at(1ms));
    CHECK(box.pump(a, PeerView{true, true}, at(2ms)).sendReceipts);
    CHECK_FALSE(box.pump(a, PeerView{true, false}, at(2ms)).sendReceipts);
}

TEST_CASE("outbox: a contact that is no longer accepted gets nothing") {
    ChatOutbox box;
    auto a = contact(1);
    CHECK(box.queued(a, message(1), kStranger, at(0ms)).empty());
    CHECK(box.pump(a, PeerView{std::nullopt, true}, at(0ms)).empty());
    CHECK(box.outboxSize(a) == 1); // the message waits: they could be accepted again
    // Accepted again: delivered as usual.
    CHECK(box.pump(a, kOffline, at(10'000ms)).putToDht == ids({1}));
}

TEST_CASE("outbox: acks for ids that are not in the contact's outbox are ignored") {
    OutboxOptions o;
    o.window = 1;
    ChatOutbox box(o);
    auto a = contact(1), b = contact(2);
    box.linkUp(a, at(0ms));
    box.linkUp(b, at(0ms));
    box.queued(a, message(1), kOnline, at(0ms));
    box.queued(a, message(2), kOnline, at(0ms));
    std::vector<MessageId> unknown{idOf(77), idOf(78)};
    CHECK(box.acked(a, unknown, false, at(1ms)).empty());
    auto aOnes = ids({1});
    CHECK(box.acked(b, aOnes, false, at(1ms)).empty()); // b cannot ack a's messages
    CHECK(box.acked(contact(9), aOnes, false, at(1ms)).empty());
    CHECK(box.outboxSize(a) == 2);
    CHECK(box.inFlight(a) == 1);
    CHECK(box.isInFlight(a, idOf(1)));
    // A duplicate ack after the real one changes nothing either.
    CHECK(box.acked(a, aOnes, false, at(2ms)).send == firstSends({2}));
    CHECK(box.acked(a, aOnes, false, at(3ms)).empty());
    CHECK(box.outboxSize(a) == 1);
}

TEST_CASE("outbox: failed sends") {
    OutboxOptions o;
    o.retry = 5000ms;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    box.queued(a, message(1), kOnline, at(0ms));
    box.queued(a, message(2), kOnline, at(0ms));
    REQUIRE(box.inFlight(a) == 2);

    SECTION("a first send that failed waits again and goes out at the next look") {
        auto failed = firstSends({2});
        box.sendFailed(a, failed, at(100ms));
        CHECK_FALSE(box.isInFlight(a, idOf(2)));
        CHECK(box.inFlight(a) == 1);
        CHECK(box.inFlightBytes(a) == 10);
        CHECK(box.nextDeadline() == at(5000ms)); // message 1's retry comes first
        auto p = box.pump(a, kOnline, at(5000ms));
        CHECK(p.send == std::vector<LinkSend>{{idOf(1), true}, {idOf(2), false}});
    }
    SECTION("a resend that failed stays in flight and is tried again after retry") {
        auto r = box.pump(a, kOnline, at(5000ms));
        REQUIRE(r.send == resends({1, 2}));
        box.sendFailed(a, r.send, at(5000ms));
        CHECK(box.inFlight(a) == 2);
        CHECK(box.due(at(9999ms)).empty());
        CHECK(box.pump(a, kOnline, at(9999ms)).send.empty());
        CHECK(box.pump(a, kOnline, at(10'000ms)).send == resends({1, 2}));
    }
    SECTION("sends for ids that are gone are ignored") {
        auto stale = firstSends({9});
        box.sendFailed(a, stale, at(1ms));
        CHECK(box.inFlight(a) == 2);
        CHECK(box.nextDeadline() == at(5000ms));
    }
}

TEST_CASE("outbox: a store failure while preparing sends or recording acks leaves it consistent") {
    // The glue could not read the texts (StoreError): the sends become sendFailed. Nothing may
    // stay in flight forever: the next look sends them again, and the window is whole.
    OutboxOptions o;
    o.retry = 5000ms;
    o.window = 2;
    ChatOutbox box(o);
    auto a = contact(1);
    box.linkUp(a, at(0ms));
    auto q1 = box.queued(a, message(1), kOnline, at(0ms));
    auto q2 = box.queued(a, message(2), kOnline, at(0ms));
    box.sendFailed(a, q1.send, at(0ms));
    box.sendFailed(a, q2.send, at(0ms));
    CHECK(box.inFlight(a) == 0);
    CHECK(box.inFlightBytes(a) == 0);
    REQUIRE(box.nextDeadline() == at(5000ms));
    CHECK(box.due(at(4999ms)).empty());
    auto again = box.pump(a, kOnline, at(5000ms));
    CHECK(again.send == firstSends({1, 2}));
    CHECK(box.inFlight(a) == 2);

    // The store could not record an ack: the glue does not call acked(); the message stays
    // in flight and is resent at its deadline, so the receiver acks again.
    CHECK(box.pump(a, kOnline, at(10'000ms)).send == resends({1, 2}));
    auto both = ids({1, 2});
    box.acked(a, both, false, at(10'001ms));
    CHECK(box.outboxSize(a) == 0);
    CHECK_FALSE(box.nextDeadline());

    // The store could not record a DHT put: dhtResult(false), put again by a later look.
    auto b = contact(2);
    auto put = box.queued(b, message(3), kOffline, at(0ms));
    REQUIRE(put.putToDht == ids({3}));
    box.dhtResult(b, idOf(3), false);
    CHECK(box.pump(b, kOffline, at(5000ms)).putToDht == ids({3}));
}

TEST_CASE("outbox: at stop everything not yet in a DHT inbox goes there") {
    OutboxOptions o;
    o.maxDhtBytes = 100;
    ChatOutbox box(o);
    auto a = contact(1), b = contact(2), c = contact(3);
    box.linkUp(a, at(0ms));
    box.queued(a, message(1), kOnline, at(0ms));      // in flight
    box.queued(a, message(2, 101), kOnline, at(0ms)); // too long
    box.load(b, std::vector<OutboxMessage>{message(3, 10, true), message(4)}, at(0ms));
    box.load(c, std::vector<OutboxMessage>{message(5, 10, true)}, at(0ms));
    auto flushed = box.flushToDht();
    REQUIRE(flushed.size() == 2); // c has nothing to put
    CHECK(flushed[0].first == a);
    CHECK(flushed[0].second.putToDht == ids({1}));
    CHECK(flushed[0].second.tooLongForDht == 1);
    CHECK(flushed[0].second.dhtReason == DhtReason::stopping);
    CHECK(flushed[1].first == b);
    CHECK(flushed[1].second.putToDht == ids({4}));
    CHECK(box.flushToDht().size() == 1); // only a's too-long one is left, and it stays
}

TEST_CASE("outbox: nextDeadline and due are exact, over several contacts") {
    OutboxOptions o;
    o.retry = 1000ms;
    ChatOutbox box(o);
    CHECK_FALSE(box.nextDeadline());
    CHECK(box.due(at(1'000'000ms)).empty());
    auto a = contact(1), b = contact(2);
    box.linkUp(a, at(0ms));
    box.queued(a, message(1), kOnline, at(300ms));
    box.queued(b, message(2), kOffline, at(200ms)); // looked at again at 1200
    CHECK(box.nextDeadline() == at(1200ms));
    CHECK(box.due(at(1199ms)).empty());
    CHECK(box.due(at(1200ms)) == std::vector<dht::ContactId>{b});
    CHECK(box.due(at(1300ms)) == std::vector<dht::ContactId>{a, b});
    box.pump(b, kOffline, at(1200ms));
    CHECK(box.nextDeadline() == at(1300ms));
    auto one = ids({1});
    box.acked(a, one, false, at(1250ms));
    CHECK(box.nextDeadline() == at(2200ms));
    box.forget(b, idOf(2));
    CHECK_FALSE(box.nextDeadline()); // nothing left to deliver
}
