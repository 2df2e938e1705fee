// SocketAddress parsing and formatting.
#include "socket_address.h"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <netinet/in.h>

namespace parley::dht {

SocketAddress::SocketAddress(const sockaddr* addr, socklen_t len) {
    if (addr && len > 0 && len <= static_cast<socklen_t>(sizeof(storage_))) {
        std::memcpy(&storage_, addr, len);
        len_ = len;
    }
}

std::optional<std::pair<std::string, std::string>> splitHostPort(std::string_view text) {
    if (text.empty())
        return std::nullopt;
    if (text.front() == '[') {
        auto close = text.find(']');
        // "[v6]:" needs a port after the colon: an empty one is an error, not port 0.
        if (close == std::string_view::npos || close + 2 >= text.size() || text[close + 1] != ':')
            return std::nullopt;
        return std::pair{std::string(text.substr(1, close - 1)),
                         std::string(text.substr(close + 2))};
    }
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size())
        return std::nullopt;
    if (text.find(':') != colon) // a bare IPv6 address has several colons and no port
        return std::nullopt;
    return std::pair{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

std::optional<SocketAddress> SocketAddress::parse(std::string_view text,
                                                  std::uint16_t defaultPort) {
    // inet_pton reads a C string: an embedded NUL would cut the text short ("1.2.3.4\0junk"
    // would parse as 1.2.3.4). Such text is not an address.
    if (text.find('\0') != std::string_view::npos)
        return std::nullopt;
    std::string host(text);
    std::uint16_t port = defaultPort;
    if (auto hp = splitHostPort(text)) {
        unsigned value = 0;
        auto& p = hp->second;
        auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
        if (ec != std::errc() || ptr != p.data() + p.size() || value > 65535)
            return std::nullopt;
        host = hp->first;
        port = static_cast<std::uint16_t>(value);
    } else if (!text.empty() && text.front() == '[' && text.back() == ']') {
        host = std::string(text.substr(1, text.size() - 2));
    }
    SocketAddress out;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage_);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out.len_ = sizeof(sockaddr_in);
        return out;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out.len_ = sizeof(sockaddr_in6);
        return out;
    }
    return std::nullopt;
}

std::uint16_t SocketAddress::port() const {
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    return 0;
}

void SocketAddress::setPort(std::uint16_t port) {
    if (family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
    else if (family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

bool SocketAddress::isLoopback() const {
    if (family() == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr) >> 24) ==
               127;
    if (family() == AF_INET6) {
        const auto& a = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    }
    return false;
}

bool SocketAddress::isUnspecified() const {
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == INADDR_ANY;
    if (family() == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(
            &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
    return true;
}

std::string SocketAddress::hostString() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
                  sizeof buf);
    else if (family() == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
                  sizeof buf);
    return buf;
}

std::string SocketAddress::toString() const {
    if (family() == AF_INET6) {
        // Appended, not "[" + ...: GCC 12 at -O3 warns about that form (-Wrestrict, a false
        // positive), which breaks a Release build under -Werror.
        std::string out = "[";
        out += hostString();
        out += "]:";
        out += std::to_string(port());
        return out;
    }
    if (family() == AF_INET)
        return hostString() + ":" + std::to_string(port());
    return "<none>";
}

bool SocketAddress::operator==(const SocketAddress& o) const {
    if (family() != o.family() || port() != o.port())
        return false;
    if (family() == AF_INET) {
        const auto& a = reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr;
        const auto& b = reinterpret_cast<const sockaddr_in*>(&o.storage_)->sin_addr;
        return std::memcmp(&a, &b, sizeof a) == 0;
    }
    if (family() == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
        const auto* b = reinterpret_cast<const sockaddr_in6*>(&o.storage_);
        return std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0 &&
               a->sin6_scope_id == b->sin6_scope_id;
    }
    return len_ == o.len_; // both empty (or a family we do not know)
}

std::size_t SocketAddress::hash() const {
    // FNV-1a over the address bytes and the port.
    std::size_t h = 1469598103934665603ULL;
    auto mix = [&h](const void* p, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            h = (h ^ static_cast<const std::uint8_t*>(p)[i]) * 1099511628211ULL;
    };
    if (family() == AF_INET)
        mix(&reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, 4);
    else if (family() == AF_INET6)
        mix(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, 16);
    auto p = port();
    mix(&p, sizeof p);
    return h;
}

} // namespace parley::dht
