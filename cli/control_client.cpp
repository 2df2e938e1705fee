// ControlClient: blocking Unix-socket client with timeouts.
#include "control_client.h"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace parley::cli {

using nlohmann::json;

ControlClient::ControlClient(const std::filesystem::path& socketPath) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socketPath.native().size() >= sizeof(addr.sun_path))
        throw std::runtime_error("control socket path too long: " + socketPath.string());
    std::strncpy(addr.sun_path, socketPath.c_str(), sizeof(addr.sun_path) - 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0)
        throw std::runtime_error(std::string("cannot create socket: ") + std::strerror(errno));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int err = errno;
        ::close(fd_);
        fd_ = -1;
        if (err == ENOENT || err == ECONNREFUSED)
            throw DaemonNotRunning("no parley daemon is running for this profile");
        throw std::runtime_error("cannot connect to " + socketPath.string() + ": " +
                                 std::strerror(err));
    }
}

ControlClient::~ControlClient() {
    if (fd_ >= 0)
        ::close(fd_);
}

std::optional<std::string> ControlClient::readLine(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
            std::string line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            return line;
        }
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return std::nullopt;
        pollfd p{fd_, POLLIN, 0};
        int rc = ::poll(&p, 1, static_cast<int>(left.count()));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return std::nullopt;
        char buf[65536];
        auto n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw std::runtime_error("the daemon closed the connection");
        buffer_.append(buf, static_cast<std::size_t>(n));
    }
}

json ControlClient::call(const std::string& method, const json& params,
                         std::chrono::milliseconds timeout) {
    long id = nextId_++;
    std::string line =
        json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}}.dump() + "\n";
    std::size_t off = 0;
    while (off < line.size()) {
        auto n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::runtime_error(std::string("cannot talk to the daemon: ") +
                                     std::strerror(errno));
        }
        off += static_cast<std::size_t>(n);
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
        auto reply = readLine(left);
        if (!reply)
            throw std::runtime_error("the daemon did not answer '" + method + "' in time");
        json message = json::parse(*reply, nullptr, false);
        if (message.is_discarded() || !message.is_object())
            throw std::runtime_error("the daemon sent something that is not JSON");
        if (!message.contains("id") || message["id"] != id)
            continue; // a notification or someone else's answer
        if (message.contains("error")) {
            const auto& err = message["error"];
            throw RpcError(err.value("code", -1), err.value("message", std::string("error")));
        }
        return message.value("result", json());
    }
}

std::optional<json> ControlClient::nextMessage(std::chrono::milliseconds timeout) {
    auto line = readLine(timeout);
    if (!line)
        return std::nullopt;
    json message = json::parse(*line, nullptr, false);
    if (message.is_discarded())
        throw std::runtime_error("the daemon sent something that is not JSON");
    return message;
}

} // namespace parley::cli
