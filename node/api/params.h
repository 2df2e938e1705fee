// What every method table of the control API uses: reading parameters without undefined
// behaviour (JSON numbers can be anything: 1e300, 2^40, 0.5, and converting them straight to
// an int is UB or wraps), and the JSON of a room's counters.
#pragma once

#include "dht/contact_id.h"
#include "node/api/control_server.h"
#include "node/store/store.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace parley::node::api {

// The integer `name` of `params` (`fallback` when it is absent), if it is a whole number in
// [lo, hi]; nullopt otherwise (a fraction, out of range, not a number).
std::optional<std::int64_t> intParam(const nlohmann::json& params, const char* name,
                                     std::int64_t fallback, std::int64_t lo, std::int64_t hi);

// The "id" parameter as a ContactId; on anything else answers invalid params, nullopt.
std::optional<dht::ContactId> contactIdParam(const nlohmann::json& params,
                                             const ControlServer::Reply& reply);

// The "seconds" parameter `name` (`fallback` when absent) if it is a number in [lo, hi].
std::optional<std::chrono::milliseconds>
secondsParam(const nlohmann::json& params, const char* name, double fallback, double lo, double hi);

nlohmann::json toJson(const std::map<std::string, std::uint64_t>& counters);

// Runs a method's body; a failing database (disk full, locked, corrupt) answers as a failure
// with the store's sentence instead of the generic internal error.
template <class F> void storeGuarded(const ControlServer::Reply& reply, F&& f) {
    try {
        f();
    } catch (const StoreError& e) {
        reply.error(rpc::kFailed, e.what());
    }
}

} // namespace parley::node::api
