// Lookup settling: when a contact lookup (key card + presence, two DHT gets running at once)
// has its answer, and what that answer is. A pure core (DESIGN.md §1): the overlay feeds it
// the records its gets decode, the gets' completions and the time; it keeps no clock, timer
// or thread, so it is tested on virtual time (tests/unit/dht/test_lookup.cpp).
#pragma once

#include "contact_id.h"
#include "records.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace parley::dht {

struct LookupResult {
    enum class State { online, offline, notFound };
    ContactId id;
    State state = State::notFound;
    std::optional<std::string> name;
    std::optional<std::int64_t> lastSeenMs; // the presence record's timestamp
    std::optional<PresenceStatus> status;
    std::optional<KeyCard> card;
    std::chrono::microseconds elapsed{0};
};

std::string_view toString(LookupResult::State state);

class LookupSettler {
public:
    using TimePoint = std::chrono::steady_clock::time_point;

    LookupSettler(const ContactId& id, TimePoint started, std::chrono::milliseconds timeout);

    // A card that decoded, is owned by the looked-up id and verified against it.
    void onCard(KeyCard card);
    // A presence record owned by the looked-up id; false (and ignored) when its timestamp is
    // further in the future than the clock-skew allowance. The newest (timestamp, sequence)
    // wins: replicas answer in any order.
    bool onPresence(const Presence& presence, std::int64_t nowUnixMs);
    void onCardDone() { cardDone_ = true; }
    void onPresenceDone() { presenceDone_ = true; }

    // Settled once both records are known (a fresh presence settles before its get is done:
    // a replica that missed the latest refresh can answer first), or at the deadline.
    bool settled(TimePoint now, std::int64_t nowUnixMs) const;
    TimePoint deadline() const { return started_ + timeout_; }

    // The answer with what is known at `now`; call once settled (or whenever: it never lies).
    LookupResult result(TimePoint now, std::int64_t nowUnixMs) const;

private:
    ContactId id_;
    TimePoint started_;
    std::chrono::milliseconds timeout_;
    std::optional<KeyCard> card_;
    std::optional<Presence> presence_;
    bool cardDone_ = false;
    bool presenceDone_ = false;
};

} // namespace parley::dht
