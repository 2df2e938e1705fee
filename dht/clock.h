// Clock and Random: time and randomness as interfaces, so that protocol cores and the
// managers around them run on a virtual clock with seeded randomness in tests (DESIGN.md §1),
// and on the system's clock and GnuTLS's generator in a node.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>

namespace parley::dht {

// Wall-clock milliseconds since the Unix epoch (what records and envelopes carry).
std::int64_t unixMs();

class Clock {
public:
    using Duration = std::chrono::steady_clock::duration;
    using TimePoint = std::chrono::steady_clock::time_point;
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;       // monotonic: timeouts, deadlines, rates
    virtual std::int64_t unixMs() const = 0; // wall clock: what goes on the wire
};

// The system's clocks. One shared instance: SystemClock::instance().
class SystemClock final : public Clock {
public:
    static SystemClock& instance();
    TimePoint now() const override { return std::chrono::steady_clock::now(); }
    std::int64_t unixMs() const override { return dht::unixMs(); }
};

// A clock that moves only when told: tests drive cores through their timeouts with it.
class ManualClock final : public Clock {
public:
    explicit ManualClock(std::int64_t unixMsAtStart = 1'700'000'000'000)
        : unixStart_(unixMsAtStart) {}
    TimePoint now() const override { return TimePoint{} + elapsed_; }
    std::int64_t unixMs() const override {
        return unixStart_ + std::chrono::duration_cast<std::chrono::milliseconds>(elapsed_).count();
    }
    void advance(Duration d) { elapsed_ += d; }
    // Moves to `t` (never backwards).
    void advanceTo(TimePoint t) {
        if (t > now())
            elapsed_ = t - TimePoint{};
    }

private:
    std::int64_t unixStart_;
    Duration elapsed_{0};
};

class Random {
public:
    virtual ~Random() = default;
    // Never throws (it is called inside ngtcp2 and GnuTLS callbacks).
    virtual void fill(std::span<std::uint8_t> out) noexcept = 0;
    std::uint64_t next64() noexcept;
    // Uniform in [0, bound); bound > 0.
    std::uint64_t below(std::uint64_t bound) noexcept;
};

// GnuTLS's generator (GNUTLS_RND_RANDOM): keys, ids, tokens. One shared instance.
class SystemRandom final : public Random {
public:
    static SystemRandom& instance();
    void fill(std::span<std::uint8_t> out) noexcept override;
};

// A deterministic generator (splitmix64) for tests and fuzzers: the same seed, the same bytes.
class SeededRandom final : public Random {
public:
    explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
    void fill(std::span<std::uint8_t> out) noexcept override;

private:
    std::uint64_t state_;
};

} // namespace parley::dht
