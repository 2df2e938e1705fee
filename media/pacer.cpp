#include "media/pacer.h"

#include <algorithm>

namespace parley::media {

namespace {
constexpr double kMaxBurstMicros = 5000; // at most 5 ms worth of budget saved up
}

void Pacer::setRate(std::int64_t bitsPerSecond) {
    bytesPerMicro_ = std::max<double>(double(bitsPerSecond), 8000.0) / 8 / 1e6;
}

void Pacer::enqueue(Bytes packet) {
    queuedBytes_ += packet.size();
    queue_.push_back(std::move(packet));
}

std::vector<Bytes> Pacer::release(Micros now) {
    if (last_ >= 0)
        budget_ = std::min(budget_ + bytesPerMicro_ * double(now - last_),
                           bytesPerMicro_ * kMaxBurstMicros + 1500);
    last_ = now;
    std::vector<Bytes> out;
    while (!queue_.empty() && budget_ >= 0) {
        budget_ -= double(queue_.front().size());
        queuedBytes_ -= queue_.front().size();
        out.push_back(std::move(queue_.front()));
        queue_.pop_front();
    }
    return out;
}

} // namespace parley::media
