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

namespace asio {
class io_context;
}

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
    // QUIC datagrams arrive in runs from one sender: `data` holds datagrams of `segmentSize`
    // bytes each, the last one possibly shorter (a single datagram: segmentSize == size).
    using RunHandler = std::function<void(std::span<const std::uint8_t> data,
                                          std::size_t segmentSize, const SocketAddress& from)>;

    // Datagram counts (a segmented send or a coalesced receive counts each datagram), and
    // the system calls that carried the "other" (QUIC) ones.
    struct Stats {
        std::uint64_t dhtIn = 0, dhtOut = 0, otherIn = 0, otherOut = 0;
        std::uint64_t droppedUnknown = 0, droppedByFilter = 0, sendErrors = 0;
        std::uint64_t otherSendCalls = 0, receiveCalls = 0;
    };

    // The most datagrams one segmented send may carry, and its most bytes in all.
    static constexpr std::size_t kMaxSegments = 64;
    static constexpr std::size_t kMaxSegmentedBytes = 65000;

    // Binds `bindAddress` (empty: every IPv4 and IPv6 address) on `port` (0: ephemeral; IPv6
    // then takes the port IPv4 got). Throws std::system_error with a readable message.
    UdpEndpoint(const std::string& bindAddress, std::uint16_t port);
    ~UdpEndpoint();
    UdpEndpoint(const UdpEndpoint&) = delete;
    UdpEndpoint& operator=(const UdpEndpoint&) = delete;

    // Handlers run on the endpoint's receive thread (or `io`'s, below); they must not block.
    void setDhtHandler(Handler handler);
    void setOtherHandler(RunHandler handler);
    void start();
    // Receives on `io`'s thread instead of a thread of its own (asio watches the sockets): a
    // burst of datagrams then costs one thread wake-up instead of two (the receive thread's,
    // then the io thread's), and the handlers run on that thread. stop() must then run on
    // that thread, or once nothing runs `io` any more.
    void start(asio::io_context& io);
    void stop();

    int sendDht(const SocketAddress& to, std::span<const std::uint8_t> data);
    // Sends `data` as datagrams of `segmentSize` bytes, the last one possibly shorter, in one
    // system call where the kernel segments them (UDP GSO); 0 or data.size(): one datagram.
    // At most kMaxSegments datagrams and kMaxSegmentedBytes. Returns 0 or an errno value.
    int sendOther(const SocketAddress& to, std::span<const std::uint8_t> data,
                  std::size_t segmentSize = 0);

    // UDP segmentation offload on send (GSO) and coalescing on receive (GRO): on by default
    // where the kernel has them; off sends and receives one datagram per system call (for
    // comparisons and tests; call before start()). Sends fall back by themselves when a
    // segmented send fails.
    void setSegmentationOffload(bool on);
    bool segmentationOffload() const { return gso_; }

    // Tells the DHT filter about a signed value this node publishes (see DhtPacketFilter).
    void trackOwnSignedValue(std::span<const std::uint8_t, 20> key, std::uint64_t valueId,
                             std::uint16_t type);

    std::uint16_t port() const { return port_; }
    bool receivesOnIo() const { return watch_ != nullptr; }
    const SocketAddress& bound4() const { return bound4_; }
    const SocketAddress& bound6() const { return bound6_; }
    bool hasIPv4() const { return fd4_ >= 0; }
    bool hasIPv6() const { return fd6_ >= 0; }
    bool boundToLoopback() const;
    Stats stats() const;

private:
    int send(const SocketAddress& to, std::span<const std::uint8_t> data);
    int sendSegmented(int fd, const SocketAddress& to, std::span<const std::uint8_t> data,
                      std::size_t segmentSize);
    void receiveLoop();
    // Reads up to a budget of receives; false when the budget ran out before the socket was
    // empty.
    bool receiveFrom(int fd);
    struct Watch; // start(io): the sockets as asio sees them
    void watch(std::size_t index);
    void drainOnIo(std::size_t index);
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true); // for posted continuations
    // One datagram, or a run of QUIC datagrams of `segmentSize` bytes (the last may be shorter).
    void dispatch(std::span<const std::uint8_t> data, std::size_t segmentSize,
                  const SocketAddress& from);

    int fd4_ = -1, fd6_ = -1, wakeRead_ = -1, wakeWrite_ = -1;
    SocketAddress bound4_, bound6_;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::unique_ptr<Watch> watch_;
    std::atomic<bool> running_{false};

    mutable std::mutex handlerMutex_; // guards the handlers against concurrent replacement
    Handler dhtHandler_;
    RunHandler otherHandler_;
    std::atomic<bool> gso_{true}; // segmented sends still to be tried
    bool gro_ = false;            // coalesced receives asked of the sockets
    std::mutex filterMutex_; // the filter sees inbound (receive thread) and outbound (OpenDHT's)
    std::unique_ptr<DhtPacketFilter> filter_;

    mutable std::mutex statsMutex_;
    Stats stats_;
    std::array<std::uint8_t, 64 * 1024> receiveBuffer_{}; // receive thread only
};

} // namespace parley::dht
