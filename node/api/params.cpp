#include "node/api/params.h"

#include <cmath>

namespace parley::node::api {

std::optional<std::int64_t> intParam(const nlohmann::json& params, const char* name,
                                     std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
    if (!params.is_object() || !params.contains(name))
        return fallback;
    const auto& v = params[name];
    std::int64_t n = 0;
    if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(INT64_MAX))
            return std::nullopt;
        n = static_cast<std::int64_t>(u);
    } else if (v.is_number_integer()) {
        n = v.get<std::int64_t>();
    } else if (v.is_number_float()) {
        // 3.0 is 3; 3.5, 1e300 and NaN are not integers. The range is checked in double first,
        // so the conversion below is always defined.
        double d = v.get<double>();
        if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(lo) ||
            d > static_cast<double>(hi))
            return std::nullopt;
        n = static_cast<std::int64_t>(d);
    } else {
        return std::nullopt;
    }
    if (n < lo || n > hi)
        return std::nullopt;
    return n;
}

} // namespace parley::node::api
