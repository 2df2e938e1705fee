// Packets that match no connection (short headers with an unknown connection id): a peer's
// stateless reset for one of ours, a client of ours that may have restarted, or a peer that
// still talks to a connection we forgot, which gets a stateless reset from us. Every step is
// a hash lookup: an unmatched packet costs O(1), whatever the number of connections.
#include "node/transport/quic_internal.h"

#include <asio/post.hpp>
#include <cstring>

namespace parley::node::quic {

using detail::cidKey;
using detail::kCidLength;

void Transport::Impl::maybeReset(std::span<const std::uint8_t> pkt,
                                 const dht::SocketAddress& from) {
    ++counters.packetsUnmatched;
    if (resetFor(pkt))
        return;
    if (suspectHandler)
        suspectClientAt(from);
    sendReset(pkt, from);
}

// Is it a stateless reset for one of our connections? Its last 16 bytes are the token.
bool Transport::Impl::resetFor(std::span<const std::uint8_t> pkt) {
    if (pkt.size() < 21)
        return false;
    auto key = cidKey(pkt.data() + pkt.size() - NGTCP2_STATELESS_RESET_TOKENLEN,
                      NGTCP2_STATELESS_RESET_TOKENLEN);
    auto it = byResetToken.find(key);
    if (it == byResetToken.end())
        return false;
    auto c = it->second.lock();
    if (!c)
        return false;
    ConnectionDriver::terminate(*c, ClosedBy::reset, "the peer restarted (stateless reset)",
                                nullptr);
    return true;
}

// From the address of a client we serve (e.g. its stateless reset, which we cannot check: no
// token for its first connection id): it may have restarted.
void Transport::Impl::suspectClientAt(const dht::SocketAddress& from) {
    auto t = now();
    for (auto [it, end] = servedByRemote.equal_range(from); it != end; ++it) {
        auto c = it->second.lock();
        if (!c)
            continue;
        auto& ci = ConnectionAccess::impl(*c);
        if (!c->established() || c->isClient() || !(c->remote() == from) ||
            (ci.lastSuspect && t - *ci.lastSuspect < std::chrono::seconds(5)))
            continue;
        ci.lastSuspect = t;
        asio::post(io, [weak = weak_from_this(), c] {
            if (auto tt = weak.lock(); tt && tt->suspectHandler && !c->closed())
                tt->suspectHandler(c);
        });
    }
}

// A packet for a connection we do not know (we restarted, or it closed): tell the peer with a
// stateless reset, smaller than what it sent so that two endpoints cannot loop; at most 50 a
// second.
void Transport::Impl::sendReset(std::span<const std::uint8_t> pkt, const dht::SocketAddress& from) {
    if (pkt.size() < 1 + kCidLength + 26)
        return;
    auto t = now();
    resetTokens =
        std::min(50.0, resetTokens + 50.0 * std::chrono::duration<double>(t - resetRefill).count());
    resetRefill = t;
    if (resetTokens < 1)
        return;
    resetTokens -= 1;
    ngtcp2_cid dcid;
    dcid.datalen = kCidLength;
    std::memcpy(dcid.data, pkt.data() + 1, kCidLength);
    // The token is secret material (derived from resetSecret); the filler around it only has
    // to look random to an observer: the injected Random.
    std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> token{};
    if (ngtcp2_crypto_generate_stateless_reset_token(token.data(), config.resetSecret.data(),
                                                     config.resetSecret.size(), &dcid) != 0)
        return;
    std::array<std::uint8_t, 24> filler{};
    random->fill(filler);
    std::size_t fillerLen =
        std::min(filler.size(), pkt.size() - 1 - NGTCP2_STATELESS_RESET_TOKENLEN);
    std::array<std::uint8_t, 64> out{};
    auto n = ngtcp2_pkt_write_stateless_reset(out.data(), out.size(), token.data(), filler.data(),
                                              fillerLen);
    if (n > 0) {
        ++counters.statelessResetsSent;
        send(from, std::span<const std::uint8_t>(out.data(), static_cast<std::size_t>(n)), 0);
    }
}

} // namespace parley::node::quic
