// A simulated one-way network link for tests and benchmarks: random and burst (Gilbert-
// Elliott) loss, fixed delay, jitter, reordering, duplication and a bandwidth cap with a
// bounded queue. Deterministic for a given seed; time is injected (a virtual clock).
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <random>
#include <vector>

namespace parley::media {

struct LinkConfig {
    double lossRate = 0;        // independent random loss, 0..1
    double burstEnter = 0;      // per packet: probability good -> bad state
    double burstExit = 0.5;     // per packet: probability bad -> good state
    double burstLossRate = 1.0; // loss in the bad state
    Micros delay = 0;           // one-way propagation delay
    Micros jitter = 0;          // extra delay, uniform in [0, jitter]
    double reorderRate = 0;     // probability a packet is held back by reorderDelay
    Micros reorderDelay = 30000;
    double duplicateRate = 0;      // probability a packet is delivered twice
    std::int64_t bandwidthBps = 0; // 0 = unlimited
    Micros maxQueueDelay = 300000; // tail drop when the queue holds more than this
    std::uint64_t seed = 1;
};

struct LinkStats {
    std::uint64_t sent = 0;
    std::uint64_t lost = 0;
    std::uint64_t queueDrops = 0;
    std::uint64_t duplicated = 0;
    std::uint64_t delivered = 0;
    std::uint64_t bytesDelivered = 0;
};

class SimulatedLink {
public:
    explicit SimulatedLink(LinkConfig config = {});
    void send(Bytes packet, Micros now);
    // Every packet whose delivery time is <= now, in delivery order.
    std::vector<Bytes> receive(Micros now);
    // When the next packet is due, or -1 if none is in flight.
    Micros nextDeadline() const;
    // Changes the loss rate from now on (scripted outages in tests).
    void setLossRate(double rate) { config_.lossRate = rate; }
    const LinkConfig& config() const { return config_; }
    const LinkStats& stats() const { return stats_; }

private:
    struct InFlight {
        Micros due;
        std::uint64_t order;
        Bytes bytes;
    };
    bool chance(double p);
    LinkConfig config_;
    std::mt19937_64 rng_;
    bool badState_ = false;
    Micros queueFreeAt_ = 0;
    std::uint64_t order_ = 0;
    std::vector<InFlight> inFlight_; // a min-heap on (due, order)
    LinkStats stats_;
};

} // namespace parley::media
