// RpcTable: the control API's method table and JSON-RPC 2.0 dispatch of one request line,
// with no socket (ControlServer does the I/O). A pure core: a line in, replies out through
// the sink it is given, so it is unit-tested and fuzzed directly
// (tests/fuzz/fuzz_control_dispatch.cpp).
#pragma once

#include "node/api/control_server.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

namespace parley::node {

namespace rpc {
nlohmann::json errorObject(const nlohmann::json& id, int code, const std::string& message,
                           const nlohmann::json& data = nullptr);
} // namespace rpc

class RpcTable {
public:
    using Send = std::function<void(nlohmann::json)>;
    using Subscribe = std::function<void()>;

    void on(const std::string& method, ControlServer::Handler handler);

    // Parses `line` and runs its method. `send` gets the error for a bad request at once, and
    // is handed to the method's Reply (kept by handlers that answer later); a notification
    // (no id) is carried out and never answered. Never throws: a handler's exception becomes
    // an error reply (invalid params for JSON type errors, internal error otherwise).
    void dispatch(std::string_view line, const Send& send, const Subscribe& subscribe) const;

private:
    std::unordered_map<std::string, ControlServer::Handler> handlers_;
};

} // namespace parley::node
