// What the benchmarks share to print figures: milliseconds of a duration, percentiles and
// medians of samples. Header-only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace parley::bench {

inline double ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// The sample at quantile `p` (0: the least, 1: the most), by rank rounded down; 0 for none.
inline double pct(std::vector<double> v, double p) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// The middle sample, or the mean of the two middle ones; 0 for none.
inline double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

} // namespace parley::bench
