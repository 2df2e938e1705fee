// The system clock and random generator, and the deterministic ones for tests.
#include "dht/clock.h"

#include <cstdlib>
#include <cstring>
#include <gnutls/crypto.h>

namespace parley::dht {

std::int64_t unixMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

SystemClock& SystemClock::instance() {
    static SystemClock clock;
    return clock;
}

std::uint64_t Random::next64() noexcept {
    std::uint8_t bytes[8];
    fill(bytes);
    std::uint64_t v;
    std::memcpy(&v, bytes, sizeof v);
    return v;
}

std::uint64_t Random::below(std::uint64_t bound) noexcept {
    if (bound <= 1)
        return 0;
    // Rejection sampling: no modulo bias.
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % bound);
    for (;;) {
        auto v = next64();
        if (v < limit)
            return v % bound;
    }
}

SystemRandom& SystemRandom::instance() {
    static SystemRandom random;
    return random;
}

void SystemRandom::fill(std::span<std::uint8_t> out) noexcept {
    if (out.empty())
        return;
    // gnutls_rnd fails only when the library's generator is broken (FIPS self-test failure):
    // then no key, id or token may be made at all.
    if (gnutls_rnd(GNUTLS_RND_RANDOM, out.data(), out.size()) != 0)
        std::abort();
}

void SeededRandom::fill(std::span<std::uint8_t> out) noexcept {
    std::size_t i = 0;
    while (i < out.size()) {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (int b = 0; b < 8 && i < out.size(); ++b, ++i)
            out[i] = static_cast<std::uint8_t>(z >> (8 * b));
    }
}

} // namespace parley::dht
