#include "lookup.h"

namespace parley::dht {

std::string_view toString(LookupResult::State state) {
    switch (state) {
    case LookupResult::State::online:
        return "online";
    case LookupResult::State::offline:
        return "offline";
    case LookupResult::State::notFound:
        return "not-found";
    }
    return "not-found";
}

LookupSettler::LookupSettler(const ContactId& id, TimePoint started,
                             std::chrono::milliseconds timeout)
    : id_(id), started_(started), timeout_(timeout) {}

void LookupSettler::onCard(KeyCard card) {
    card_ = std::move(card);
}

bool LookupSettler::onPresence(const Presence& presence, std::int64_t nowUnixMs) {
    if (presence.timestampMs > nowUnixMs + kClockSkewAllowanceMs)
        return false;
    if (!presence_ || presence.timestampMs > presence_->timestampMs ||
        (presence.timestampMs == presence_->timestampMs && presence.sequence > presence_->sequence))
        presence_ = presence;
    return true;
}

bool LookupSettler::settled(TimePoint now, std::int64_t nowUnixMs) const {
    if (now >= deadline())
        return true;
    bool presenceSettled = (presence_ && isPresenceFresh(*presence_, nowUnixMs)) || presenceDone_;
    bool cardSettled = card_.has_value() || cardDone_;
    return presenceSettled && cardSettled;
}

LookupResult LookupSettler::result(TimePoint now, std::int64_t nowUnixMs) const {
    LookupResult result;
    result.id = id_;
    result.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(now - started_);
    if (card_) {
        result.name = card_->name;
        result.card = card_;
    }
    if (presence_) {
        result.lastSeenMs = presence_->timestampMs;
        result.status = presence_->status;
    }
    bool online = presence_ && presence_->status != PresenceStatus::offline &&
                  isPresenceFresh(*presence_, nowUnixMs);
    if (online)
        result.state = LookupResult::State::online;
    else if (card_ || presence_)
        result.state = LookupResult::State::offline;
    else
        result.state = LookupResult::State::notFound;
    return result;
}

} // namespace parley::dht
