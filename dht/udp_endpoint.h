// UdpEndpoint: the node's one UDP port, shared by OpenDHT and the transport (DESIGN.md §5).
// Inbound datagrams are told apart by their first byte; DHT traffic passes through the
// DhtPacketFilter (which stops OpenDHT 2.4.12's remote crash) before OpenDHT sees it.
#pragma once

#include "socket_address.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

namespace parley::dht {

class DhtPacketFilter;

enum class DatagramKind { dht, quic, unknown };

// OpenDHT packets are msgpack maps (0x80-0x8f); QUIC packets have the fixed bit (0x40) set,
// or are v1 long headers (second byte 0x00), or short headers of at least this size whose
// fixed bit a peer greased (RFC 9287). Anything else (e.g. punch datagrams) is dropped.
inline constexpr std::size_t kMinGreasedShortHeader = 35;
DatagramKind classifyDatagram(std::span<const std::uint8_t> datagram);

class UdpEndpoint {
public:
    using Handler = std::function<void(std::span<const std::uint8_t>, const SocketAddress& from)>;

    struct Stats {
        std::uint64_t dhtIn = 0, dhtOut = 0, otherIn = 0, otherOut = 0;
        std::uint64_t droppedUnknown = 0, droppedByFilter = 0, sendErrors = 0;
    };

    // Binds `bindAddress` (empty: every IPv4 and IPv6 address) on `port` (0: ephemeral; IPv6
    // then takes the port IPv4 got). Throws std::system_error with a readable message.
    UdpEndpoint(const std::string& bindAddress, std::uint16_t port);
    ~UdpEndpoint();
    UdpEndpoint(const UdpEndpoint&) = delete;
    UdpEndpoint& operator=(const UdpEndpoint&) = delete;

    // Handlers run on the endpoint's receive thread; they must not block.
    void setDhtHandler(Handler handler);
    void setOtherHandler(Handler handler);
    void start();
    void stop();

    int sendDht(const SocketAddress& to, std::span<const std::uint8_t> data);
    int sendOther(const SocketAddress& to, std::span<const std::uint8_t> data);

    // Tells the DHT filter about a signed value this node publishes (see DhtPacketFilter).
    void trackOwnSignedValue(std::span<const std::uint8_t, 20> key, std::uint64_t valueId,
                             std::uint16_t type);

    std::uint16_t port() const { return port_; }
    const SocketAddress& bound4() const { return bound4_; }
    const SocketAddress& bound6() const { return bound6_; }
    bool hasIPv4() const { return fd4_ >= 0; }
    bool hasIPv6() const { return fd6_ >= 0; }
    bool boundToLoopback() const;
    Stats stats() const;

private:
    int send(const SocketAddress& to, std::span<const std::uint8_t> data);
    void receiveLoop();
    void receiveFrom(int fd);

    int fd4_ = -1, fd6_ = -1, wakeRead_ = -1, wakeWrite_ = -1;
    SocketAddress bound4_, bound6_;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<bool> running_{false};

    mutable std::mutex handlerMutex_; // guards the handlers against concurrent replacement
    Handler dhtHandler_, otherHandler_;
    std::mutex filterMutex_; // the filter sees inbound (receive thread) and outbound (OpenDHT's)
    std::unique_ptr<DhtPacketFilter> filter_;

    mutable std::mutex statsMutex_;
    Stats stats_;
    std::array<std::uint8_t, 64 * 1024> receiveBuffer_{}; // receive thread only
};

} // namespace parley::dht
