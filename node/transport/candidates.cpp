// Candidate selection and gathering.
#include "node/transport/candidates.h"

#include "dht/envelope.h"

#include <algorithm>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

namespace parley::node {

namespace {

bool unusableIPv4(std::uint32_t ip) {
    bool unspecified = ip == 0;
    bool multicast = (ip >> 28) == 0xE;
    bool broadcast = ip == 0xFFFFFFFF;
    bool linkLocal = (ip >> 16) == 0xA9FE; // 169.254/16
    return unspecified || multicast || broadcast || linkLocal;
}

bool unusable(const dht::SocketAddress& a) {
    if (a.empty() || a.port() == 0 || a.isUnspecified())
        return true;
    if (a.family() == AF_INET)
        return unusableIPv4(ntohl(reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr.s_addr));
    if (a.family() == AF_INET6) {
        const auto& addr = reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr;
        const auto* b = addr.s6_addr;
        // An IPv4-mapped address (::ffff:a.b.c.d) reaches the IPv4 address: same rules.
        if (IN6_IS_ADDR_V4MAPPED(&addr))
            return unusableIPv4(std::uint32_t{b[12]} << 24 | std::uint32_t{b[13]} << 16 |
                                std::uint32_t{b[14]} << 8 | b[15]);
        bool multicast = b[0] == 0xFF;
        bool linkLocal = b[0] == 0xFE && (b[1] & 0xC0) == 0x80; // needs a scope id
        return multicast || linkLocal;
    }
    return true;
}

} // namespace

std::vector<dht::SocketAddress> selectCandidates(const std::vector<std::string>& candidates,
                                                 const CandidatePolicy& policy) {
    std::vector<dht::SocketAddress> out;
    for (const auto& text : candidates) {
        if (out.size() >= dht::kMaxCandidates)
            break;
        if (text.size() > dht::kMaxCandidateSize)
            continue;
        auto a = dht::SocketAddress::parse(text);
        if (!a || unusable(*a))
            continue;
        if (a->isLoopback() && !policy.allowLoopback)
            continue;
        if ((a->family() == AF_INET && !policy.allowIPv4) ||
            (a->family() == AF_INET6 && !policy.allowIPv6))
            continue;
        if (std::find(out.begin(), out.end(), *a) == out.end())
            out.push_back(*a);
    }
    return out;
}

std::vector<std::string> mergeCandidates(const std::vector<dht::SocketAddress>& interfaces,
                                         const std::vector<std::string>& publicEndpoints,
                                         const std::vector<std::string>& mapped) {
    std::vector<std::string> out;
    auto add = [&out](const std::string& text) {
        auto a = dht::SocketAddress::parse(text);
        if (!a || unusable(*a) || out.size() >= dht::kMaxCandidates)
            return;
        auto canonical = a->toString();
        if (std::find(out.begin(), out.end(), canonical) == out.end())
            out.push_back(canonical);
    };
    // Public and mapped endpoints first: when the list is capped, they are what a peer on
    // another network needs; interface addresses serve peers on the same network.
    for (const auto& m : mapped)
        add(m);
    for (const auto& p : publicEndpoints)
        add(p);
    for (const auto& i : interfaces)
        add(i.toString());
    return out;
}

std::vector<dht::SocketAddress> interfaceAddresses(const dht::SocketAddress& bound4,
                                                   const dht::SocketAddress& bound6,
                                                   std::uint16_t port, bool includeLoopback) {
    std::vector<dht::SocketAddress> out;
    bool any4 = !bound4.empty() && bound4.isUnspecified();
    bool any6 = !bound6.empty() && bound6.isUnspecified();
    if (!bound4.empty() && !any4)
        out.push_back(bound4);
    if (!bound6.empty() && !any6)
        out.push_back(bound6);
    if (!any4 && !any6)
        return out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0)
        return out;
    for (auto* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || !(i->ifa_flags & IFF_UP))
            continue;
        int family = i->ifa_addr->sa_family;
        if ((family == AF_INET && !any4) || (family == AF_INET6 && !any6) ||
            (family != AF_INET && family != AF_INET6))
            continue;
        socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        dht::SocketAddress a(i->ifa_addr, len);
        a.setPort(port);
        if (unusable(a) || (a.isLoopback() && !includeLoopback))
            continue;
        if (std::find(out.begin(), out.end(), a) == out.end())
            out.push_back(a);
    }
    ::freeifaddrs(list);
    return out;
}

} // namespace parley::node
