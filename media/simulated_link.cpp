#include "media/simulated_link.h"

#include <algorithm>

namespace parley::media {

namespace {
bool later(const auto& a, const auto& b) {
    return a.due != b.due ? a.due > b.due : a.order > b.order;
}
} // namespace

SimulatedLink::SimulatedLink(LinkConfig config) : config_(config), rng_(config.seed) {}

bool SimulatedLink::chance(double p) {
    if (p <= 0)
        return false;
    if (p >= 1)
        return true;
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p;
}

void SimulatedLink::send(Bytes packet, Micros now) {
    ++stats_.sent;
    // Decide every random event for every packet, so that one setting does not shift the
    // random sequence of another.
    bool randomLoss = chance(config_.lossRate);
    if (badState_) {
        if (chance(config_.burstExit))
            badState_ = false;
    } else if (chance(config_.burstEnter)) {
        badState_ = true;
    }
    bool burstLoss = badState_ && chance(config_.burstLossRate);
    Micros jitter =
        config_.jitter > 0 ? std::uniform_int_distribution<Micros>(0, config_.jitter)(rng_) : 0;
    bool reorder = chance(config_.reorderRate);
    bool duplicate = chance(config_.duplicateRate);
    if (randomLoss || burstLoss) {
        ++stats_.lost;
        return;
    }
    Micros leave = now;
    if (config_.bandwidthBps > 0) {
        Micros start = std::max(now, queueFreeAt_);
        if (start - now > config_.maxQueueDelay) {
            ++stats_.queueDrops;
            return;
        }
        queueFreeAt_ = start + Micros(packet.size()) * 8 * 1000000 / config_.bandwidthBps;
        leave = queueFreeAt_;
    }
    Micros due = leave + config_.delay + jitter + (reorder ? config_.reorderDelay : 0);
    if (duplicate) {
        ++stats_.duplicated;
        inFlight_.push_back({due + 1000, order_++, packet});
        std::push_heap(inFlight_.begin(), inFlight_.end(), later<InFlight, InFlight>);
    }
    inFlight_.push_back({due, order_++, std::move(packet)});
    std::push_heap(inFlight_.begin(), inFlight_.end(), later<InFlight, InFlight>);
}

std::vector<Bytes> SimulatedLink::receive(Micros now) {
    std::vector<Bytes> out;
    while (!inFlight_.empty() && inFlight_.front().due <= now) {
        std::pop_heap(inFlight_.begin(), inFlight_.end(), later<InFlight, InFlight>);
        ++stats_.delivered;
        stats_.bytesDelivered += inFlight_.back().bytes.size();
        out.push_back(std::move(inFlight_.back().bytes));
        inFlight_.pop_back();
    }
    return out;
}

Micros SimulatedLink::nextDeadline() const {
    return inFlight_.empty() ? -1 : inFlight_.front().due;
}

} // namespace parley::media
