// Connection candidates (DESIGN.md §6): the addresses where a node can be reached on its
// shared UDP port, as exchanged in connect envelopes. The selection rules are pure functions
// so that they can be tested without a network.
#pragma once

#include "dht/contact_id.h"
#include "dht/socket_address.h"

#include <cstdint>
#include <string>
#include <vector>

namespace parley::node {

// The lower ContactId is the QUIC client: both sides know the roles before dialling (QUIC
// has no simultaneous open).
inline bool isClientRole(const dht::ContactId& self, const dht::ContactId& peer) {
    return self < peer;
}

struct CandidatePolicy {
    // Loopback candidates only make sense when both nodes are on one machine bound to
    // loopback; otherwise "127.0.0.1" would lead a peer to itself.
    bool allowLoopback = false;
    bool allowIPv4 = true;
    bool allowIPv6 = true;
};

// Addresses a contact sent us, parsed and filtered: numeric "ip:port" only, no unspecified,
// multicast, broadcast, link-local or port 0, duplicates removed, at most kMaxCandidates.
std::vector<dht::SocketAddress> selectCandidates(const std::vector<std::string>& candidates,
                                                 const CandidatePolicy& policy);

// Our own candidates: each interface address (with our port), then the public endpoints DHT
// peers reported and mapped ports from the router, deduplicated and capped.
std::vector<std::string> mergeCandidates(const std::vector<dht::SocketAddress>& interfaces,
                                         const std::vector<std::string>& publicEndpoints,
                                         const std::vector<std::string>& mapped);

// The addresses of this machine's interfaces that are up, with `port`; loopback included
// only when `includeLoopback`. When the node is bound to one address, just that one.
std::vector<dht::SocketAddress> interfaceAddresses(const dht::SocketAddress& bound4,
                                                   const dht::SocketAddress& bound6,
                                                   std::uint16_t port, bool includeLoopback);

} // namespace parley::node
