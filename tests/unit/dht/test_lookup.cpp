// LookupSettler: when a lookup has its answer, on virtual time.
#include "dht/lookup.h"

#include <catch2/catch.hpp>

using namespace parley::dht;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
constexpr std::int64_t nowMs = 1'790'000'000'000;

ContactId someId() {
    ContactId::Bytes b{};
    b[0] = 0x42;
    return ContactId(b);
}

KeyCard card(std::string name) {
    KeyCard c;
    c.name = std::move(name);
    return c;
}

Presence presence(PresenceStatus status, std::int64_t ts, std::uint64_t seq = 1) {
    return Presence{status, ts, seq};
}

} // namespace

TEST_CASE("lookup: nothing known settles only at the deadline, as not-found") {
    LookupSettler s(someId(), t0, 3000ms);
    CHECK(s.deadline() == t0 + 3000ms);
    CHECK_FALSE(s.settled(t0, nowMs));
    CHECK_FALSE(s.settled(t0 + 2999ms, nowMs));
    CHECK(s.settled(t0 + 3000ms, nowMs));
    auto r = s.result(t0 + 3000ms, nowMs);
    CHECK(r.state == LookupResult::State::notFound);
    CHECK(r.id == someId());
    CHECK(r.elapsed == 3000ms);
    CHECK_FALSE(r.name);
}

TEST_CASE("lookup: card and fresh presence settle at once, before the gets are done") {
    LookupSettler s(someId(), t0, 3000ms);
    s.onCard(card("alice"));
    CHECK_FALSE(s.settled(t0 + 10ms, nowMs));
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs - 1000), nowMs));
    CHECK(s.settled(t0 + 20ms, nowMs));
    auto r = s.result(t0 + 20ms, nowMs);
    CHECK(r.state == LookupResult::State::online);
    CHECK(r.name == "alice");
    CHECK(r.lastSeenMs == nowMs - 1000);
    CHECK(r.elapsed == 20ms);
}

TEST_CASE("lookup: a stale presence waits for the get to finish, then reads offline") {
    LookupSettler s(someId(), t0, 3000ms);
    s.onCard(card("bob"));
    // A replica that missed the latest refreshes answers first.
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs - kPresenceStaleAfterMs - 1), nowMs));
    CHECK_FALSE(s.settled(t0 + 50ms, nowMs));
    s.onPresenceDone();
    CHECK(s.settled(t0 + 60ms, nowMs));
    CHECK(s.result(t0 + 60ms, nowMs).state == LookupResult::State::offline);
}

TEST_CASE("lookup: the newest presence wins whatever order replicas answer in") {
    LookupSettler s(someId(), t0, 3000ms);
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs - 500, 7), nowMs));
    CHECK(s.onPresence(presence(PresenceStatus::offline, nowMs - 100, 8), nowMs));
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs - 900, 6), nowMs)); // older
    // Same timestamp: the higher sequence wins.
    CHECK(s.onPresence(presence(PresenceStatus::away, nowMs - 100, 9), nowMs));
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs - 100, 3), nowMs));
    auto r = s.result(t0, nowMs);
    REQUIRE(r.status);
    CHECK(*r.status == PresenceStatus::away);
    CHECK(r.state == LookupResult::State::online); // away counts as reachable
}

TEST_CASE("lookup: a presence from the far future is refused and changes nothing") {
    LookupSettler s(someId(), t0, 3000ms);
    CHECK_FALSE(
        s.onPresence(presence(PresenceStatus::online, nowMs + kClockSkewAllowanceMs + 1), nowMs));
    CHECK(s.onPresence(presence(PresenceStatus::online, nowMs + kClockSkewAllowanceMs), nowMs));
    s.onCardDone();
    CHECK(s.settled(t0, nowMs));
}

TEST_CASE("lookup: offline presence with no card reads offline, and done gets without records is "
          "not-found") {
    {
        LookupSettler s(someId(), t0, 3000ms);
        CHECK(s.onPresence(presence(PresenceStatus::offline, nowMs - 10), nowMs));
        s.onCardDone();
        CHECK(s.settled(t0 + 1ms, nowMs));
        CHECK(s.result(t0 + 1ms, nowMs).state == LookupResult::State::offline);
    }
    {
        LookupSettler s(someId(), t0, 3000ms);
        s.onCardDone();
        CHECK_FALSE(s.settled(t0 + 1ms, nowMs));
        s.onPresenceDone();
        CHECK(s.settled(t0 + 2ms, nowMs));
        CHECK(s.result(t0 + 2ms, nowMs).state == LookupResult::State::notFound);
    }
}
