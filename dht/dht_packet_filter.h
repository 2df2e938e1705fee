// DhtPacketFilter: a sans-IO guard in front of OpenDHT 2.4.12 that stops a remote crash.
//
// OpenDHT 2.4.12 dereferences a null owner in SecureDht's edit policy (reached from
// Dht::onAnnounce) when a peer announces an owner-less value (plain, or encrypted with only a
// cypher) under a key and value id where the node already stores a signed value. Our socket sees
// every DHT datagram before OpenDHT does, so this filter learns which (key, value id) pairs may be
// stored as signed values and drops the inbound datagram that would deliver an owner-less value
// with such a pair. Values larger than 600 bytes travel in "value part" datagrams after the put
// header, so the filter mirrors OpenDHT's reassembly and drops the part that would complete a
// forbidden value. It also drops two other crafted datagrams that crash 2.4.12 (a request
// object that is not a map; an empty "fileds" list). Everything else passes unchanged. All
// state is bounded; when it is full the filter fails closed (drops what it can no longer
// follow) rather than forgetting.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace parley::dht {

class DhtPacketFilter {
public:
    using Clock = std::chrono::steady_clock;

    struct Limits {
        // (key, id) pairs learned from peers' signed puts. When full, a datagram that carries a
        // new signed value is dropped, so that OpenDHT never stores a signed value we forgot.
        std::size_t maxTrackedValues = 65536;
        // Share of maxTrackedValues that one remote host (address without port) may fill.
        std::size_t maxTrackedPerHost = 8192;
        // Pairs learned from our own outbound puts; when full the earliest to expire is evicted.
        std::size_t maxOwnValues = 8192;
        // Put messages whose values are still arriving in parts; a header beyond these is dropped.
        std::size_t maxPendingMessages = 1024;
        std::size_t maxPendingPerHost = 64;
        std::size_t maxPendingBytes = 4u << 20;
        // Added to a value type's lifetime: OpenDHT may process a datagram later than we see it
        // and purges expired values lazily.
        std::chrono::seconds expiryMargin{600};
    };

    enum class Verdict { pass, drop };

    struct Stats {
        std::uint64_t inspected = 0;  // inbound datagrams seen
        std::uint64_t dropped = 0;    // inbound datagrams dropped, for any reason
        std::uint64_t malformed = 0;  // datagrams we could not interpret (dropped when inbound)
        std::uint64_t tracked = 0;    // (key, id) pairs learned, counted once per new pair
        std::uint64_t collisions = 0; // drops that stopped an owner-less value hitting a signed one
        std::uint64_t overCapacity = 0; // drops because the filter's state was full
    };

    DhtPacketFilter(); // default Limits (a `= {}` default argument trips GCC on nested types)
    explicit DhtPacketFilter(Limits limits);
    ~DhtPacketFilter();
    DhtPacketFilter(const DhtPacketFilter&) = delete;
    DhtPacketFilter& operator=(const DhtPacketFilter&) = delete;
    DhtPacketFilter(DhtPacketFilter&&) noexcept;
    DhtPacketFilter& operator=(DhtPacketFilter&&) noexcept;

    // Lifetime OpenDHT applies to a value type on this node; the stock table is built in, a
    // custom type registered with OpenDHT must be declared here too.
    void setTypeLifetime(std::uint16_t type, std::chrono::seconds lifetime);

    // `peer` identifies the remote endpoint (e.g. "127.0.0.1:4222" or "[::1]:4222"); it must be
    // spelled the same way for every datagram of that endpoint. Never throws. Not thread-safe:
    // call both from the thread that owns the socket.
    //
    // Malformed input: a datagram that is not a msgpack map, has duplicate keys that decide its
    // meaning, or is a put / refresh / value part that OpenDHT would reject is dropped (OpenDHT
    // would discard it anyway, and dropping leaves no room for our parser and OpenDHT's to
    // disagree). Other malformed messages (replies, pings, ...) pass: they cannot store a value.
    void onOutbound(std::span<const std::uint8_t> packet, std::string_view peer,
                    Clock::time_point now) noexcept;
    Verdict onInbound(std::span<const std::uint8_t> packet, std::string_view peer,
                      Clock::time_point now) noexcept;

    // A signed value this node publishes itself. OpenDHT's put stores it locally before (or
    // without) announcing it on the wire, so the wire alone would not teach us about it.
    // Call again to extend; `key` is the 20-byte InfoHash.
    void trackOwnSignedValue(std::span<const std::uint8_t, 20> key, std::uint64_t valueId,
                             std::uint16_t type, Clock::time_point now) noexcept;

    const Stats& stats() const;
    std::size_t trackedValues() const;   // pairs learned from peers and from ourselves
    std::size_t pendingMessages() const; // inbound put messages waiting for value parts

private:
    struct State;
    std::unique_ptr<State> state_;
};

} // namespace parley::dht
