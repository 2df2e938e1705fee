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

std::optional<dht::ContactId> contactIdParam(const nlohmann::json& params,
                                             const ControlServer::Reply& reply) {
    std::string text;
    if (params.is_object() && params.contains("id") && params["id"].is_string())
        text = params["id"].get<std::string>();
    auto id = dht::ContactId::parse(text);
    if (!id)
        reply.error(rpc::kInvalidParams, "not a contact id: expected 64 hexadecimal characters");
    return id;
}

std::optional<std::chrono::milliseconds> secondsParam(const nlohmann::json& params,
                                                      const char* name, double fallback, double lo,
                                                      double hi) {
    double s = fallback;
    if (params.is_object() && params.contains(name)) {
        const auto& v = params[name];
        if (!v.is_number())
            return std::nullopt;
        s = v.get<double>();
    }
    if (!(s >= lo && s <= hi)) // also false for NaN
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(s * 1000)));
}

nlohmann::json toJson(const std::map<std::string, std::uint64_t>& counters) {
    auto j = nlohmann::json::object();
    for (const auto& [name, n] : counters)
        j[name] = n;
    return j;
}

} // namespace parley::node::api
