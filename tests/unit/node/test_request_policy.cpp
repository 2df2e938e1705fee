// The contact request policy on a virtual clock: who is answered, rates per sender and hour,
// the cap on waiting requests, the bound on tracked senders, the card retry schedule.
#include "dht/clock.h"
#include "node/contacts/request_policy.h"

#include <catch2/catch.hpp>
#include <cstring>

using namespace parley;
using node::Admission;
using node::Relation;
using node::RequestLimits;
using node::RequestPolicy;
using Kind = dht::EnvelopeKind;

namespace {

dht::ContactId idOf(int n) {
    dht::ContactId::Bytes b{};
    std::memcpy(b.data(), &n, sizeof n);
    return dht::ContactId(b);
}

auto none() {
    return [] { return std::size_t{0}; };
}

} // namespace

TEST_CASE("only accepted contacts get connect and chat envelopes through", "[policy]") {
    RequestPolicy p;
    dht::ManualClock clock;
    for (auto kind : {Kind::connectRequest, Kind::connectAnswer, Kind::chatMessage}) {
        CHECK(p.admit(kind, idOf(1), Relation::accepted, clock.unixMs(), none()) == Admission::act);
        for (auto r : {Relation::stranger, Relation::incoming, Relation::outgoing})
            CHECK(p.admit(kind, idOf(1), r, clock.unixMs(), none()) == Admission::stranger);
        CHECK(p.admit(kind, idOf(1), Relation::blocked, clock.unixMs(), none()) ==
              Admission::blocked);
    }
    CHECK(RequestPolicy::counterName(Admission::stranger, Kind::connectRequest) ==
          "connect_from_stranger");
    CHECK(RequestPolicy::counterName(Admission::stranger, Kind::chatMessage) ==
          "chat_from_stranger");
    CHECK(RequestPolicy::counterName(Admission::act, Kind::chatMessage).empty());
}

TEST_CASE("an acceptance counts only for a request we sent", "[policy]") {
    RequestPolicy p;
    CHECK(p.admit(Kind::contactAccept, idOf(1), Relation::outgoing, 0, none()) == Admission::act);
    CHECK(p.admit(Kind::contactAccept, idOf(1), Relation::accepted, 0, none()) ==
          Admission::ignore);
    CHECK(p.admit(Kind::contactAccept, idOf(1), Relation::stranger, 0, none()) ==
          Admission::unsolicited);
    CHECK(p.admit(Kind::contactAccept, idOf(1), Relation::incoming, 0, none()) ==
          Admission::unsolicited);
}

TEST_CASE("requests: three per sender and hour, a new hour starts afresh", "[policy]") {
    RequestPolicy p;
    dht::ManualClock clock;
    auto request = [&](int who) {
        return p.admit(Kind::contactRequest, idOf(who), Relation::stranger, clock.unixMs(), none());
    };
    for (int i = 0; i < 3; ++i)
        CHECK(request(1) == Admission::act);
    CHECK(request(1) == Admission::overRate);
    CHECK(request(2) == Admission::act); // others are not affected
    clock.advance(std::chrono::minutes(59));
    CHECK(request(1) == Admission::overRate);
    clock.advance(std::chrono::minutes(2));
    CHECK(request(1) == Admission::act);
    // Answers (from accepted contacts, or to our own request) are not rate limited.
    for (int i = 0; i < 10; ++i) {
        CHECK(p.admit(Kind::contactRequest, idOf(1), Relation::accepted, clock.unixMs(), none()) ==
              Admission::act);
        CHECK(p.admit(Kind::contactRequest, idOf(1), Relation::outgoing, clock.unixMs(), none()) ==
              Admission::act);
    }
}

TEST_CASE("the cap on waiting requests stops new senders, not known ones", "[policy]") {
    RequestPolicy p(RequestLimits{.maxPendingIncoming = 2});
    std::size_t waiting = 2;
    int asked = 0;
    auto count = [&] {
        ++asked;
        return waiting;
    };
    CHECK(p.admit(Kind::contactRequest, idOf(1), Relation::stranger, 0, count) ==
          Admission::overCap);
    CHECK(asked == 1);
    // A sender already waiting may ask again (within its rate): no new row.
    CHECK(p.admit(Kind::contactRequest, idOf(2), Relation::incoming, 0, count) == Admission::act);
    CHECK(asked == 1); // the store is not asked when the answer does not depend on it
    waiting = 1;
    CHECK(p.admit(Kind::contactRequest, idOf(3), Relation::stranger, 0, count) == Admission::act);
}

TEST_CASE("tracked senders are bounded and pruned after an hour", "[policy]") {
    RequestPolicy p(RequestLimits{.maxSenderWindows = 100});
    dht::ManualClock clock;
    for (int i = 0; i < 1000; ++i) {
        p.admit(Kind::contactRequest, idOf(i), Relation::stranger, clock.unixMs(), none());
        clock.advance(std::chrono::milliseconds(1));
        REQUIRE(p.senderWindows() <= 100);
    }
    // The newest senders are the ones kept: the last one is still over its rate after 3 more.
    for (int i = 0; i < 2; ++i)
        CHECK(p.admit(Kind::contactRequest, idOf(999), Relation::stranger, clock.unixMs(),
                      none()) == Admission::act);
    CHECK(p.admit(Kind::contactRequest, idOf(999), Relation::stranger, clock.unixMs(), none()) ==
          Admission::overRate);
    clock.advance(std::chrono::minutes(61));
    p.prune(clock.unixMs());
    CHECK(p.senderWindows() == 0);
}

TEST_CASE("a missing key card is retried after 1, 2, 4 and 8 s, then by the regular retries",
          "[policy]") {
    RequestPolicy p;
    std::vector<std::int64_t> delays;
    for (int attempt = 0;; ++attempt) {
        auto d = p.cardRetryDelay(attempt);
        if (!d)
            break;
        delays.push_back(d->count());
    }
    CHECK(delays == std::vector<std::int64_t>{1, 2, 4, 8});
    CHECK_FALSE(p.cardRetryDelay(-1));
    CHECK_FALSE(RequestPolicy(RequestLimits{.cardRetries = 0}).cardRetryDelay(0));
}
