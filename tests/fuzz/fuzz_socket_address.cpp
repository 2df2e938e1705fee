// Fuzz target: address text from strangers. Connect envelopes carry a contact's candidate
// addresses ("ip:port" strings) that selectCandidates filters before we dial them; bootstrap
// and peer addresses go through splitHostPort and SocketAddress::parse. The first byte is a
// CandidatePolicy, the rest is split at '\n' into candidate strings (each also parsed alone).
// What parses must print in a form that parses back to the same address; what the selection
// keeps must respect its cap and its filters; what mergeCandidates offers must pass a peer's
// selection unchanged.
#include "dht/envelope.h"
#include "dht/socket_address.h"
#include "node/transport/candidates.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstdint>
#include <cstdlib>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <vector>

namespace dht = parley::dht;
namespace node = parley::node;

namespace {

// What candidates.h promises never to keep, for the address families' native forms.
bool excludedByPolicy(const dht::SocketAddress& a, const node::CandidatePolicy& policy) {
    if (a.port() == 0 || a.isUnspecified())
        return true;
    if (a.isLoopback() && !policy.allowLoopback)
        return true;
    if (a.family() == AF_INET) {
        if (!policy.allowIPv4)
            return true;
        auto ip = ntohl(reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr.s_addr);
        return (ip >> 28) == 0xE || ip == 0xFFFFFFFF || (ip >> 16) == 0xA9FE;
    }
    if (a.family() == AF_INET6) {
        if (!policy.allowIPv6)
            return true;
        const auto& addr = reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr;
        const auto* b = addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&addr)) { // the IPv4 rules, for the mapped form
            std::uint32_t ip = std::uint32_t{b[12]} << 24 | std::uint32_t{b[13]} << 16 |
                               std::uint32_t{b[14]} << 8 | b[15];
            return ip == 0 || (ip >> 28) == 0xE || ip == 0xFFFFFFFF || (ip >> 16) == 0xA9FE;
        }
        return b[0] == 0xFF || (b[0] == 0xFE && (b[1] & 0xC0) == 0x80);
    }
    return true;
}

void checkSplit(std::string_view text) {
    auto hp = dht::splitHostPort(text);
    if (!hp)
        return;
    // The two parts are the text itself, minus the separator (and the brackets).
    const auto& [host, port] = *hp;
    bool bracketed = !text.empty() && text.front() == '[';
    std::string joined = bracketed ? "[" + host + "]:" + port : host + ":" + port;
    if (joined != text)
        std::abort();
    if (port.empty() || (!bracketed && (host.empty() || host.find(':') != std::string::npos)))
        std::abort();
}

void checkParse(std::string_view text) {
    auto a = dht::SocketAddress::parse(text);
    auto withDefault = dht::SocketAddress::parse(text, 7);
    if (a.has_value() != withDefault.has_value())
        std::abort();
    if (!a)
        return;
    if (text.find('\0') != std::string_view::npos) // NUL never belongs in an address
        std::abort();
    if (a->empty() || (a->family() != AF_INET && a->family() != AF_INET6) ||
        a->length() != (a->family() == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)))
        std::abort();
    // A text with a port gives that port whatever the default; one without takes the default.
    bool hasPort = dht::splitHostPort(text).has_value();
    if (hasPort ? withDefault->port() != a->port() : (a->port() != 0 || withDefault->port() != 7))
        std::abort();
    auto printed = a->toString();
    auto again = dht::SocketAddress::parse(printed);
    if (!again || !(*again == *a) || again->toString() != printed)
        std::abort();
    auto host = dht::SocketAddress::parse(a->hostString());
    if (!host || host->port() != 0 || host->hostString() != a->hostString() ||
        a->isLoopback() != host->isLoopback() || a->isUnspecified() != host->isUnspecified())
        std::abort();
}

void checkSelection(const std::vector<std::string>& lines, const node::CandidatePolicy& policy) {
    auto selected = node::selectCandidates(lines, policy);
    if (selected.size() > dht::kMaxCandidates)
        std::abort();
    // Each kept address comes from a line short enough to travel in an envelope, in the order
    // of the lines, once, and passes the documented filters.
    std::size_t line = 0;
    for (std::size_t i = 0; i < selected.size(); ++i) {
        const auto& a = selected[i];
        if (excludedByPolicy(a, policy))
            std::abort();
        if (std::count(selected.begin(), selected.end(), a) != 1)
            std::abort();
        auto printed = dht::SocketAddress::parse(a.toString());
        if (!printed || !(*printed == a))
            std::abort();
        for (;; ++line) {
            if (line == lines.size())
                std::abort();
            if (lines[line].size() > dht::kMaxCandidateSize)
                continue;
            if (auto p = dht::SocketAddress::parse(lines[line]); p && *p == a)
                break;
        }
    }
}

// Our own candidates, made from the same strings, must reach a peer whole: what we offer is
// canonical, capped, and survives the receiving side's selection (loopback allowed there).
void checkMerge(const std::vector<std::string>& lines) {
    std::vector<dht::SocketAddress> interfaces;
    std::vector<std::string> publicEndpoints, mapped;
    for (std::size_t i = 0; i < lines.size() && i < 3 * dht::kMaxCandidates; ++i) {
        if (i % 3 == 0) {
            if (auto a = dht::SocketAddress::parse(lines[i]))
                interfaces.push_back(*a);
        } else {
            (i % 3 == 1 ? publicEndpoints : mapped).push_back(lines[i]);
        }
    }
    auto merged = node::mergeCandidates(interfaces, publicEndpoints, mapped);
    if (merged.size() > dht::kMaxCandidates)
        std::abort();
    for (std::size_t i = 0; i < merged.size(); ++i) {
        auto a = dht::SocketAddress::parse(merged[i]);
        if (!a || a->toString() != merged[i] ||
            std::count(merged.begin(), merged.end(), merged[i]) != 1)
            std::abort();
    }
    node::CandidatePolicy permissive;
    permissive.allowLoopback = true;
    if (node::selectCandidates(merged, permissive).size() != merged.size())
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    checkSplit(text);
    checkParse(text);
    if (text.empty())
        return 0;

    node::CandidatePolicy policy;
    policy.allowLoopback = (data[0] & 1) != 0;
    policy.allowIPv4 = (data[0] & 2) == 0;
    policy.allowIPv6 = (data[0] & 4) == 0;
    std::vector<std::string> lines;
    for (std::string_view rest = text.substr(1); !rest.empty() || lines.empty();) {
        auto end = rest.find('\n');
        lines.emplace_back(rest.substr(0, end));
        if (end == std::string_view::npos)
            break;
        rest.remove_prefix(end + 1);
    }
    for (const auto& line : lines) {
        checkSplit(line);
        checkParse(line);
    }
    checkSelection(lines, policy);
    checkMerge(lines);
    return 0;
}
