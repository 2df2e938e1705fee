// Reading the control API's parameters without undefined behaviour: JSON numbers can be
// anything (1e300, 2^40, 0.5), and converting them straight to an int is UB or wraps.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>

namespace parley::node::api {

// The integer `name` of `params` (`fallback` when it is absent), if it is a whole number in
// [lo, hi]; nullopt otherwise (a fraction, out of range, not a number).
std::optional<std::int64_t> intParam(const nlohmann::json& params, const char* name,
                                     std::int64_t fallback, std::int64_t lo, std::int64_t hi);

} // namespace parley::node::api
