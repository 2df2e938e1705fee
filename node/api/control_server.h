// ControlServer: JSON-RPC 2.0 over a Unix socket (mode 0600), one JSON object per line.
// Runs on the node's io_context; handlers may answer later through their Reply.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace asio {
class io_context;
}

namespace parley::node {

// JSON-RPC error codes: the standard ones, then parley's (-32000 and below).
namespace rpc {
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
inline constexpr int kFailed = -32000;
inline constexpr std::size_t kMaxLineBytes = 1 << 20;
} // namespace rpc

class ControlServer {
public:
    // Sends the answer to one request; copyable, and harmless once the client has gone.
    class Reply {
    public:
        Reply() = default;
        void ok(nlohmann::json result) const;
        void error(int code, const std::string& message, nlohmann::json data = nullptr) const;
        // Marks this connection as a subscriber: events are streamed to it from now on.
        void subscribe() const;

    private:
        friend class RpcTable;
        std::function<void(nlohmann::json)> send_;
        std::function<void()> subscribe_;
        nlohmann::json id_;
    };
    using Handler = std::function<void(const nlohmann::json& params, const Reply& reply)>;

    ControlServer(asio::io_context& io, std::filesystem::path socketPath);
    ~ControlServer();

    void on(const std::string& method, Handler handler);
    // Throws std::runtime_error if the socket cannot be created (another daemon, permissions).
    void start();
    void stop();
    // Sends {"jsonrpc":"2.0","method":"event","params":event} to every subscriber.
    void broadcast(const nlohmann::json& event);
    std::size_t connections() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node
