#include "media/bandwidth_estimator.h"

#include <algorithm>

namespace parley::media {

namespace {
constexpr double kOveruseMs = 50;   // queuing above this: the path is full
constexpr double kUnderuseMs = 20;  // below this: room to grow
constexpr std::size_t kWindow = 40; // intervals of the transit-minimum window
} // namespace

void BandwidthEstimator::onPacket(std::size_t bytes, double transitMs, Micros now) {
    if (intervalStart_ < 0)
        intervalStart_ = now;
    intervalBytes_ += bytes;
    if (transitMs >= 0) {
        transitSum_ += transitMs;
        ++transitCount_;
        intervalMinTransit_ = std::min(intervalMinTransit_, transitMs);
    }
}

std::uint32_t BandwidthEstimator::update(double lossFraction, Micros now) {
    if (intervalStart_ < 0 || now <= intervalStart_ || transitCount_ == 0) {
        return std::uint32_t(estimate_);
    }
    double seconds = double(now - intervalStart_) / 1e6;
    double rate = double(intervalBytes_) * 8 / seconds;
    minima_.push_back(intervalMinTransit_);
    if (minima_.size() > kWindow)
        minima_.pop_front();
    double base = *std::min_element(minima_.begin(), minima_.end());
    queuingMs_ = transitSum_ / double(transitCount_) - base;
    if (queuingMs_ > kOveruseMs || lossFraction > 0.10) {
        double backoff = 0.85 * rate;
        estimate_ = estimate_ > 0 ? std::min(estimate_, backoff) : backoff;
    } else if (queuingMs_ < kUnderuseMs && estimate_ > 0) {
        estimate_ = std::min(estimate_ * 1.08, 1.5 * rate + 50000);
    }
    intervalStart_ = now;
    intervalBytes_ = 0;
    transitSum_ = 0;
    transitCount_ = 0;
    intervalMinTransit_ = 1e300;
    return std::uint32_t(std::min(estimate_, 4e9));
}

} // namespace parley::media
