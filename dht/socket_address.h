// SocketAddress: an IPv4 or IPv6 address with a port, without OpenDHT or asio types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>

namespace parley::dht {

class SocketAddress {
public:
    SocketAddress() = default;
    SocketAddress(const sockaddr* addr, socklen_t len);

    // Numeric forms only: "1.2.3.4", "::1", with an optional port ("1.2.3.4:5", "[::1]:5").
    static std::optional<SocketAddress> parse(std::string_view text, std::uint16_t defaultPort = 0);

    int family() const { return storage_.ss_family; }
    bool empty() const { return len_ == 0; }
    std::uint16_t port() const;
    void setPort(std::uint16_t port);
    bool isLoopback() const;
    bool isUnspecified() const;
    std::string toString() const; // "1.2.3.4:5" or "[::1]:5"
    std::string hostString() const;

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
    sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage_); }
    socklen_t length() const { return len_; }
    void setLength(socklen_t len) { len_ = len; }

    // Family, address bytes (and IPv6 scope) and port: no formatting.
    bool operator==(const SocketAddress& o) const;
    std::size_t hash() const;

private:
    sockaddr_storage storage_{};
    socklen_t len_ = 0;
};

// Splits "host:port" / "[v6]:port" into host and port text; nullopt when there is no port.
std::optional<std::pair<std::string, std::string>> splitHostPort(std::string_view text);

} // namespace parley::dht

template <> struct std::hash<parley::dht::SocketAddress> {
    std::size_t operator()(const parley::dht::SocketAddress& a) const noexcept { return a.hash(); }
};
