// A pacer: spreads a burst of packets (a keyframe is dozens) over time at a multiple of the
// media bitrate, so that a bottleneck's queue is not overrun at once. Sans-IO.
#pragma once

#include "media/media_types.h"

#include <deque>
#include <vector>

namespace parley::media {

class Pacer {
public:
    // Bits per second at which queued packets leave.
    void setRate(std::int64_t bitsPerSecond);
    void enqueue(Bytes packet);
    // Packets allowed to leave by `now`.
    std::vector<Bytes> release(Micros now);
    std::size_t queuedBytes() const { return queuedBytes_; }

private:
    std::deque<Bytes> queue_;
    std::size_t queuedBytes_ = 0;
    double bytesPerMicro_ = 1.0;
    double budget_ = 0; // bytes that may leave now; negative while paying off a packet
    Micros last_ = -1;
};

} // namespace parley::media
