// RequestPolicy: which envelopes from our DHT inbox are acted on (DESIGN.md §4), and when a
// request whose recipient's key card is missing is tried again. A sans-IO core: the caller
// says who the sender is to us and what time it is; the policy keeps the per-sender request
// windows (bounded) and answers. ContactManager performs what it decides.
#pragma once

#include "dht/contact_id.h"
#include "dht/envelope.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string_view>

namespace parley::node {

// Who the sender of an envelope is to us.
enum class Relation { stranger, incoming, outgoing, accepted, blocked };

enum class Admission {
    act,         // mark the envelope seen (replay check), then act on it
    ignore,      // harmless and not worth a counter (an acceptance we already applied)
    stranger,    // connect or chat envelope from someone who is not an accepted contact
    blocked,     // from someone we blocked: dropped without a reply
    overRate,    // more new requests from this sender this hour than allowed
    overCap,     // too many incoming requests wait for an answer already
    unsolicited, // an acceptance of a request we never sent
};

struct RequestLimits {
    std::size_t maxPendingIncoming = 100; // incoming requests waiting for an answer
    int maxRequestsPerSenderPerHour = 3;  // new request envelopes accepted from one sender
    std::size_t maxSenderWindows = 4096;  // senders whose hour is tracked (oldest go first)
    int cardRetries = 4;                  // quick retries while a key card is missing: 1, 2, 4, 8 s
};

class RequestPolicy {
public:
    explicit RequestPolicy(RequestLimits limits = {}) : limits_(limits) {}

    // For an envelope whose signature, recipient and time window were checked.
    // `pendingIncoming` is asked only when a new request needs it (it may read the store).
    Admission admit(dht::EnvelopeKind kind, const dht::ContactId& from, Relation relation,
                    std::int64_t nowMs, const std::function<std::size_t()>& pendingIncoming);
    // The counter a dropped envelope adds to ("connect_from_stranger", ...); empty for act
    // and ignore.
    static std::string_view counterName(Admission admission, dht::EnvelopeKind kind);

    // The delay before quick retry number `attempt` (0, 1, ...) of a request whose recipient's
    // card was not found; nullopt once the regular retries take over.
    std::optional<std::chrono::seconds> cardRetryDelay(int attempt) const;

    // Forgets windows older than an hour.
    void prune(std::int64_t nowMs);
    std::size_t senderWindows() const { return windows_.size(); }

private:
    bool overRate(const dht::ContactId& from, std::int64_t nowMs);

    RequestLimits limits_;
    // Per sender: the start of its hour and the requests counted in it.
    // Bound: limits_.maxSenderWindows; pruned after an hour, the oldest first when full.
    std::map<dht::ContactId, std::pair<std::int64_t, int>> windows_;
};

} // namespace parley::node
