// ControlClient: the CLI's side of the control API (JSON-RPC 2.0 over DIR/control.sock).
#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace parley::cli {

// No daemon listens on the socket (exit code 3 in the CLI).
struct DaemonNotRunning : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The daemon answered with a JSON-RPC error.
struct RpcError : std::runtime_error {
    RpcError(int c, const std::string& message) : std::runtime_error(message), code(c) {}
    int code;
};

class ControlClient {
public:
    // Throws DaemonNotRunning when nothing listens, std::runtime_error for other failures.
    explicit ControlClient(const std::filesystem::path& socketPath);
    ~ControlClient();
    ControlClient(const ControlClient&) = delete;
    ControlClient& operator=(const ControlClient&) = delete;

    // Sends one request and waits for its answer. Throws RpcError, std::runtime_error.
    nlohmann::json call(const std::string& method, const nlohmann::json& params,
                        std::chrono::milliseconds timeout);
    // Reads the next notification (for subscribe); nullopt on timeout.
    std::optional<nlohmann::json> nextMessage(std::chrono::milliseconds timeout);
    // For poll(): the socket, and whether a whole message is already buffered.
    int fd() const { return fd_; }
    bool hasLine() const { return buffer_.find('\n') != std::string::npos; }

private:
    std::optional<std::string> readLine(std::chrono::milliseconds timeout);
    int fd_ = -1;
    std::string buffer_;
    long nextId_ = 1;
};

} // namespace parley::cli
