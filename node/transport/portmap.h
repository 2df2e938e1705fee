// PortMapper: asks the router for a UDP port mapping to the node's shared port (DESIGN.md §6,
// docs/NAT.md "Port mapping"), by NAT-PMP (RFC 6886, libnatpmp) and else UPnP IGD
// (miniupnpc), and keeps it renewed. A mapping is a connection candidate that is reachable
// from anywhere, also behind a NAT that hole punching does not get through.
//
// The libraries block, so the asking happens on a worker thread; results are posted to the
// node's io thread, where the accessors live. The owner starts it only when the node is not
// bound to loopback: the requests go to the default gateway and to the LAN's SSDP group.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::node {

struct PortMapping {
    std::string method;   // "NAT-PMP" or "UPnP"
    std::string gateway;  // the router that granted it
    std::string external; // "ip:port" on the router's public side
    std::int64_t expiresUnixS = 0;
};

// What a PortMapper is doing: "disabled", "discovering", "mapped" (with the mapping) or
// "unavailable" (with the reason).
struct PortMapStatus {
    std::string state;
    std::optional<PortMapping> mapping; // only when mapped
    std::string reason;                 // only when not mapped
};

class PortMapper {
public:
    PortMapper(asio::io_context& io, std::uint16_t internalPort,
               std::chrono::seconds lifetime = std::chrono::hours(1));
    ~PortMapper(); // stop()
    PortMapper(const PortMapper&) = delete;
    PortMapper& operator=(const PortMapper&) = delete;

    // Discovery and mapping on a worker thread, renewed at half the lifetime, retried with
    // backoff while no router offers one. Idempotent while running.
    void start();
    // Best-effort removal of the mapping from the router, bounded (about 2 s); joins the
    // worker (or, if a library call hangs past the bound, leaves it to finish on its own
    // without touching the io_context again). Safe to call twice.
    void stop();

    // io thread. "ip:port" of the current mapping; empty until one exists.
    std::vector<std::string> mappedEndpoints() const;
    // io thread.
    PortMapStatus status() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// The sans-I/O parts, exposed for tests.
namespace detail {

// How long to wait before renewing a mapping granted for `granted`: half of it (RFC 6886
// §3.3 suggests renewing at half the lifetime), never less than 30 s.
std::chrono::seconds renewalDelay(std::chrono::seconds granted);

// How long to wait after the `failures`-th failed attempt in a row (1 for the first): 1 min,
// doubling, at most 30 min. While an earlier mapping still holds for `leftOnMapping`, retry
// before it lapses: at most half of what is left, at least 5 s.
std::chrono::seconds retryDelay(unsigned failures,
                                std::optional<std::chrono::seconds> leftOnMapping = {});

// Whether a dotted IPv4 address can be a public address: not private, shared (CGNAT),
// loopback, link-local, documentation, benchmarking, multicast or otherwise reserved
// (the IANA special-purpose ranges miniupnpd and miniupnpc also refuse). A router reporting
// such an external address sits behind another NAT, and its mappings are not reachable
// from the internet.
bool isPublicIPv4(std::string_view dotted);

// The host of a URL such as UPnP's control URL ("http://10.1.0.1:5000/ctl" -> "10.1.0.1");
// empty when there is none.
std::string urlHost(std::string_view url);

// "UPnP mapping 198.51.100.7:4301 -> port 4301 via 10.1.0.1"
std::string describeMapping(const PortMapping& m, std::uint16_t internalPort);

} // namespace detail

} // namespace parley::node
