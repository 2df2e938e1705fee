// Fuzz target: DhtPacketFilter sees every DHT datagram from any host before OpenDHT does.
// The input is fed whole as one inbound and one outbound datagram, then split into the msgpack
// objects it concatenates (e.g. a put header followed by its value parts) and fed as a sequence,
// so that reassembly, learning and the limits are exercised within one input.
#include "dht/dht_packet_filter.h"

#include <chrono>
#include <cstdint>
#include <msgpack.hpp>
#include <span>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using parley::dht::DhtPacketFilter;
    DhtPacketFilter::Limits limits;
    // Small limits so that the fail-closed paths are reached as well.
    limits.maxTrackedValues = 8;
    limits.maxTrackedPerHost = 4;
    limits.maxOwnValues = 4;
    limits.maxPendingMessages = 4;
    limits.maxPendingPerHost = 2;
    limits.maxPendingBytes = 8192;
    DhtPacketFilter filter(limits);
    auto now = DhtPacketFilter::Clock::time_point{} + std::chrono::hours(1);
    const std::span<const std::uint8_t> whole(data, size);

    (void)filter.onInbound(whole, "10.0.0.1:4222", now);
    filter.onOutbound(whole, "10.0.0.1:4222", now);

    std::vector<std::span<const std::uint8_t>> datagrams;
    std::size_t offset = 0;
    while (offset < size && datagrams.size() < 64) {
        const std::size_t start = offset;
        try {
            const msgpack::unpack_limit limit(size, size, size, size, size, size);
            (void)msgpack::unpack(reinterpret_cast<const char*>(data), size, offset, nullptr,
                                  nullptr, limit);
        } catch (...) {
            datagrams.push_back(whole.subspan(start));
            break;
        }
        datagrams.push_back(whole.subspan(start, offset - start));
    }
    if (datagrams.size() < 2)
        return 0;
    // The first object is sent by us when it is a put (we learn our own values), the rest
    // arrive from two hosts, with time moving on so that entries expire.
    filter.onOutbound(datagrams[0], "10.0.0.2:4222", now);
    for (std::size_t i = 0; i < datagrams.size(); ++i) {
        const std::string peer = i % 3 == 2 ? "10.0.0.3:4222" : "10.0.0.2:4222";
        (void)filter.onInbound(datagrams[i], peer, now);
        now += std::chrono::seconds(7 * (datagrams[i].size() % 5));
    }
    const auto& stats = filter.stats();
    if (stats.dropped > stats.inspected || filter.trackedValues() > 12 ||
        filter.pendingMessages() > limits.maxPendingMessages)
        __builtin_trap();
    return 0;
}
