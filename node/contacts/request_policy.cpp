// The contact request policy: admission of inbox envelopes, per-sender windows, card retries.
#include "node/contacts/request_policy.h"

#include <algorithm>

namespace parley::node {

namespace {
constexpr std::int64_t kHourMs = 3600'000;
}

Admission RequestPolicy::admit(dht::EnvelopeKind kind, const dht::ContactId& from,
                               Relation relation, std::int64_t nowMs,
                               const std::function<std::size_t()>& pendingIncoming) {
    if (relation == Relation::blocked)
        return Admission::blocked;
    // Only accepted contacts learn where we are or get their messages read.
    if (dht::isConnectKind(kind) || kind == dht::EnvelopeKind::chatMessage)
        return relation == Relation::accepted ? Admission::act : Admission::stranger;
    if (kind == dht::EnvelopeKind::contactAccept) {
        if (relation == Relation::outgoing)
            return Admission::act;
        return relation == Relation::accepted ? Admission::ignore : Admission::unsolicited;
    }
    // A contact request. From an accepted contact (who lost its state) or one we asked
    // ourselves, it is an answer: no rate, no cap.
    if (relation == Relation::accepted || relation == Relation::outgoing)
        return Admission::act;
    if (overRate(from, nowMs))
        return Admission::overRate;
    if (relation == Relation::stranger && pendingIncoming &&
        pendingIncoming() >= limits_.maxPendingIncoming)
        return Admission::overCap;
    return Admission::act;
}

std::string_view RequestPolicy::counterName(Admission admission, dht::EnvelopeKind kind) {
    switch (admission) {
    case Admission::act:
    case Admission::ignore:
        return {};
    case Admission::stranger:
        return dht::isConnectKind(kind) ? "connect_from_stranger" : "chat_from_stranger";
    case Admission::blocked:
        return "envelopes_from_blocked";
    case Admission::overRate:
        return "requests_over_rate";
    case Admission::overCap:
        return "requests_over_cap";
    case Admission::unsolicited:
        return "accepts_unsolicited";
    }
    return {};
}

std::optional<std::chrono::seconds> RequestPolicy::cardRetryDelay(int attempt) const {
    if (attempt < 0 || attempt >= limits_.cardRetries || attempt > 30)
        return std::nullopt;
    return std::chrono::seconds(std::int64_t{1} << attempt);
}

void RequestPolicy::prune(std::int64_t nowMs) {
    std::erase_if(windows_, [&](const auto& w) { return nowMs - w.second.first > kHourMs; });
}

bool RequestPolicy::overRate(const dht::ContactId& from, std::int64_t nowMs) {
    if (windows_.size() >= limits_.maxSenderWindows && !windows_.count(from)) {
        auto oldest = std::min_element(windows_.begin(), windows_.end(), [](auto& a, auto& b) {
            return a.second.first < b.second.first;
        });
        if (oldest != windows_.end())
            windows_.erase(oldest);
    }
    auto& [start, n] = windows_[from];
    if (nowMs - start > kHourMs) {
        start = nowMs;
        n = 0;
    }
    return ++n > limits_.maxRequestsPerSenderPerHour;
}

} // namespace parley::node
