// A receiver-side bandwidth estimate for the target bitrate in feedback: when packets queue
// up (their transit time rises above its recent minimum) or more than 10 % are lost, the
// estimate drops to a
// little below what actually arrived; when the path is clear it grows gently. A simple
// relative of GCC's delay-based controller (draft-ietf-rmcat-gcc), sans-IO.
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <deque>

namespace parley::media {

class BandwidthEstimator {
public:
    // Every packet received: its size and transit time (arrival minus RTP timestamp, ms,
    // plus any constant that keeps it non-negative: a fixed clock offset does not matter).
    // Retransmissions: pass transitMs < 0 (size only).
    void onPacket(std::size_t bytes, double transitMs, Micros now);
    // At each report: returns the estimate in bits per second, 0 while there is none.
    std::uint32_t update(double lossFraction, Micros now);
    double queuingMs() const { return queuingMs_; }

private:
    Micros intervalStart_ = -1;
    std::uint64_t intervalBytes_ = 0;
    double transitSum_ = 0;
    std::uint64_t transitCount_ = 0;
    double intervalMinTransit_ = 1e300;
    std::deque<double> minima_; // per-interval minimum transit, last ~10 s
    double queuingMs_ = 0;
    double estimate_ = 0;
};

} // namespace parley::media
