// UdpEndpoint: sockets, the receive thread, demultiplexing and the DHT filter.
#include "udp_endpoint.h"

#include "dht_packet_filter.h"

#include <array>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace parley::dht {

struct UdpEndpoint::Watch {
    struct Socket {
        int fd;                                 // ours, read by receiveFrom
        asio::posix::stream_descriptor watcher; // a duplicate of it, which asio owns
    };
    asio::io_context& io;
    std::vector<std::unique_ptr<Socket>> sockets;
};

namespace {

std::system_error sysError(const std::string& what) {
    return std::system_error(errno, std::generic_category(), what);
}

int openBound(SocketAddress& addr) {
    int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw sysError("cannot create UDP socket");
    if (addr.family() == AF_INET6) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    int size = 1 << 21;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (::bind(fd, addr.get(), addr.length()) != 0) {
        auto err = sysError("cannot bind UDP " + addr.toString());
        ::close(fd);
        throw err;
    }
    socklen_t len = sizeof(sockaddr_storage);
    if (::getsockname(fd, addr.get(), &len) != 0) {
        // Without it the port would silently read as 0.
        auto err = sysError("cannot read the bound address of UDP " + addr.toString());
        ::close(fd);
        throw err;
    }
    addr.setLength(len);
    return fd;
}

// Asks the kernel to hand over runs of same-sized datagrams from one sender in one receive
// (UDP GRO, Linux 5.0); false where it cannot.
bool setGro(int fd, bool on) {
    int value = on ? 1 : 0;
    return ::setsockopt(fd, SOL_UDP, UDP_GRO, &value, sizeof value) == 0;
}

} // namespace

DatagramKind classifyDatagram(std::span<const std::uint8_t> datagram) {
    if (datagram.empty())
        return DatagramKind::unknown;
    std::uint8_t b = datagram[0];
    // A QUIC long header is 0x80 plus flags, then the 32-bit version: v1 and version
    // negotiation (0) put 0x00 in the second byte, where an OpenDHT message (a msgpack map,
    // whose first key is a string) never has it. This also catches long headers whose fixed
    // bit (0x40) a peer cleared: ngtcp2 0.12 always offers RFC 9287 greasing (FACTS.md).
    if ((b & 0x80) && datagram.size() >= 5 && datagram[1] == 0x00)
        return DatagramKind::quic;
    if (b >= 0x80 && b <= 0x8f)
        return DatagramKind::dht;
    if (b & 0x40)
        return DatagramKind::quic;
    // A short header with the fixed bit greased: at least a byte, our 16-byte connection id,
    // a packet number, a byte of payload and the 16-byte tag. Punch datagrams are shorter.
    if (!(b & 0x80) && datagram.size() >= kMinGreasedShortHeader)
        return DatagramKind::quic;
    return DatagramKind::unknown;
}

UdpEndpoint::UdpEndpoint(const std::string& bindAddress, std::uint16_t port)
    : filter_(std::make_unique<DhtPacketFilter>()) {
    if (bindAddress.empty()) {
        bound4_ = *SocketAddress::parse("0.0.0.0", port);
        fd4_ = openBound(bound4_);
        port_ = bound4_.port();
        bound6_ = *SocketAddress::parse("::", port_);
        try {
            fd6_ = openBound(bound6_);
        } catch (const std::system_error&) {
            bound6_ = {}; // no IPv6 on this host: IPv4 alone is fine
        }
    } else {
        auto addr = SocketAddress::parse(bindAddress, port);
        if (!addr)
            throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                    "not a numeric IP address: " + bindAddress);
        if (addr->family() == AF_INET) {
            bound4_ = *addr;
            fd4_ = openBound(bound4_);
            port_ = bound4_.port();
        } else {
            bound6_ = *addr;
            fd6_ = openBound(bound6_);
            port_ = bound6_.port();
        }
    }
    int pipefd[2];
    if (::pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        auto err = sysError("cannot create wake-up pipe");
        for (int fd : {fd4_, fd6_})
            if (fd >= 0)
                ::close(fd);
        throw err;
    }
    wakeRead_ = pipefd[0];
    wakeWrite_ = pipefd[1];
    setSegmentationOffload(true);
}

void UdpEndpoint::setSegmentationOffload(bool on) {
    bool gro = on;
    for (int fd : {fd4_, fd6_})
        if (fd >= 0 && !setGro(fd, on))
            gro = false;
    gro_ = gro;
    gso_ = on;
}

UdpEndpoint::~UdpEndpoint() {
    stop();
    for (int fd : {fd4_, fd6_, wakeRead_, wakeWrite_})
        if (fd >= 0)
            ::close(fd);
}

bool UdpEndpoint::boundToLoopback() const {
    bool v4 = fd4_ < 0 || bound4_.isLoopback();
    bool v6 = fd6_ < 0 || bound6_.isLoopback();
    return v4 && v6;
}

void UdpEndpoint::setDhtHandler(Handler handler) {
    std::lock_guard lock(handlerMutex_);
    dhtHandler_ = std::move(handler);
}

void UdpEndpoint::setOtherHandler(RunHandler handler) {
    std::lock_guard lock(handlerMutex_);
    otherHandler_ = std::move(handler);
}

void UdpEndpoint::start() {
    if (running_.exchange(true))
        return;
    thread_ = std::thread([this] { receiveLoop(); });
}

void UdpEndpoint::start(asio::io_context& io) {
    if (running_.exchange(true))
        return;
    watch_ = std::make_unique<Watch>(Watch{io, {}});
    for (int fd : {fd4_, fd6_}) {
        if (fd < 0)
            continue;
        int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
            running_ = false;
            watch_.reset();
            throw sysError("cannot watch the UDP socket");
        }
        watch_->sockets.push_back(std::make_unique<Watch::Socket>(
            Watch::Socket{fd, asio::posix::stream_descriptor(io, copy)}));
    }
    for (std::size_t i = 0; i < watch_->sockets.size(); ++i)
        watch(i);
}

void UdpEndpoint::watch(std::size_t index) {
    auto& socket = *watch_->sockets[index];
    // A handler that runs after stop() sees an error (the watcher was closed) and returns at
    // once, without touching the endpoint, which may be gone by then.
    socket.watcher.async_wait(asio::posix::stream_descriptor::wait_read,
                              [this, index](const std::error_code& ec) {
                                  if (ec || !running_)
                                      return;
                                  drainOnIo(index);
                              });
}

void UdpEndpoint::drainOnIo(std::size_t index) {
    if (receiveFrom(watch_->sockets[index]->fd)) {
        watch(index);
        return;
    }
    // More to read than one budget: let other work on the io thread run first, then read on.
    asio::post(watch_->io, [this, index, alive = std::weak_ptr<bool>(alive_)] {
        if (!alive.expired() && running_)
            drainOnIo(index);
    });
}

void UdpEndpoint::stop() {
    if (!running_.exchange(false))
        return;
    if (watch_) {
        watch_.reset(); // closes the duplicates; pending waits end with an error
        return;
    }
    std::uint8_t b = 1;
    [[maybe_unused]] auto n = ::write(wakeWrite_, &b, 1);
    if (thread_.joinable())
        thread_.join();
}

int UdpEndpoint::send(const SocketAddress& to, std::span<const std::uint8_t> data) {
    int fd = to.family() == AF_INET6 ? fd6_ : fd4_;
    if (fd < 0) {
        std::lock_guard lock(statsMutex_);
        ++stats_.sendErrors;
        return EAFNOSUPPORT;
    }
    auto n = ::sendto(fd, data.data(), data.size(), MSG_DONTWAIT, to.get(), to.length());
    if (n < 0) {
        int err = errno;
        std::lock_guard lock(statsMutex_);
        ++stats_.sendErrors;
        return err;
    }
    return 0;
}

int UdpEndpoint::sendDht(const SocketAddress& to, std::span<const std::uint8_t> data) {
    {
        std::lock_guard lock(filterMutex_);
        filter_->onOutbound(data, to.toString(), DhtPacketFilter::Clock::now());
    }
    {
        std::lock_guard lock(statsMutex_);
        ++stats_.dhtOut;
    }
    return send(to, data);
}

int UdpEndpoint::sendOther(const SocketAddress& to, std::span<const std::uint8_t> data,
                           std::size_t segmentSize) {
    if (segmentSize == 0 || segmentSize >= data.size()) {
        {
            std::lock_guard lock(statsMutex_);
            ++stats_.otherOut;
            ++stats_.otherSendCalls;
        }
        return send(to, data);
    }
    int fd = to.family() == AF_INET6 ? fd6_ : fd4_;
    std::size_t count = (data.size() + segmentSize - 1) / segmentSize;
    if (fd >= 0 && gso_ && count <= kMaxSegments && data.size() <= kMaxSegmentedBytes) {
        int err = sendSegmented(fd, to, data, segmentSize);
        if (err == 0) {
            std::lock_guard lock(statsMutex_);
            stats_.otherOut += count;
            ++stats_.otherSendCalls;
            return 0;
        }
        if (err != EIO && err != EINVAL && err != ENOPROTOOPT && err != EOPNOTSUPP) {
            std::lock_guard lock(statsMutex_);
            ++stats_.sendErrors; // e.g. EAGAIN: the datagrams are lost, as a full link loses
            return err;
        }
        // The kernel or the device cannot segment (EIO: no checksum offload): one datagram
        // per call from now on.
        gso_ = false;
    }
    int result = 0;
    for (std::size_t offset = 0; offset < data.size(); offset += segmentSize) {
        auto part = data.subspan(offset, std::min(segmentSize, data.size() - offset));
        {
            std::lock_guard lock(statsMutex_);
            ++stats_.otherOut;
            ++stats_.otherSendCalls;
        }
        if (int err = send(to, part); err != 0 && result == 0)
            result = err;
    }
    return result;
}

int UdpEndpoint::sendSegmented(int fd, const SocketAddress& to, std::span<const std::uint8_t> data,
                               std::size_t segmentSize) {
    iovec iov{const_cast<std::uint8_t*>(data.data()), data.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(std::uint16_t))> control{};
    msghdr msg{};
    msg.msg_name = const_cast<sockaddr*>(to.get());
    msg.msg_namelen = to.length();
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    auto* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    auto size = static_cast<std::uint16_t>(segmentSize);
    std::memcpy(CMSG_DATA(cm), &size, sizeof size);
    if (::sendmsg(fd, &msg, MSG_DONTWAIT) < 0)
        return errno;
    return 0;
}

void UdpEndpoint::trackOwnSignedValue(std::span<const std::uint8_t, 20> key, std::uint64_t valueId,
                                      std::uint16_t type) {
    std::lock_guard lock(filterMutex_);
    filter_->trackOwnSignedValue(key, valueId, type, DhtPacketFilter::Clock::now());
}

UdpEndpoint::Stats UdpEndpoint::stats() const {
    std::lock_guard lock(statsMutex_);
    return stats_;
}

void UdpEndpoint::receiveLoop() {
    while (running_) {
        std::array<pollfd, 3> fds{};
        nfds_t n = 0;
        fds[n++] = {wakeRead_, POLLIN, 0};
        if (fd4_ >= 0)
            fds[n++] = {fd4_, POLLIN, 0};
        if (fd6_ >= 0)
            fds[n++] = {fd6_, POLLIN, 0};
        int rc = ::poll(fds.data(), n, -1);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            // Nothing we can recover from; say so instead of going quietly deaf.
            std::fprintf(stderr, "parley: UDP receive loop stopped: %s\n", std::strerror(errno));
            break;
        }
        if (fds[0].revents)
            break;
        for (nfds_t i = 1; i < n; ++i)
            if (fds[i].revents & POLLIN)
                receiveFrom(fds[i].fd);
    }
}

bool UdpEndpoint::receiveFrom(int fd) {
    // The receive thread's buffer lives in the endpoint: a thread_local of this size would
    // enlarge the static TLS block of every thread in the process (SDL's audio thread, with
    // its 64 KiB stack, then failed to start).
    auto& buf = receiveBuffer_;
    for (int budget = 256; budget > 0; --budget) {
        SocketAddress from;
        iovec iov{buf.data(), buf.size()};
        alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
        msghdr msg{};
        msg.msg_name = from.get();
        msg.msg_namelen = sizeof(sockaddr_storage);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (gro_) {
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
        }
        auto n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            continue; // EINTR, or a socket error surfaced (and cleared): read on
        }
        from.setLength(msg.msg_namelen);
        // With GRO, one receive may carry several datagrams of one size from one sender.
        auto size = static_cast<std::size_t>(n);
        std::size_t segment = size;
        for (auto* cm = gro_ ? CMSG_FIRSTHDR(&msg) : nullptr; cm; cm = CMSG_NXTHDR(&msg, cm))
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
                int value = 0;
                std::memcpy(&value, CMSG_DATA(cm), sizeof value);
                if (value > 0)
                    segment = std::min(size, static_cast<std::size_t>(value));
            }
        {
            std::lock_guard lock(statsMutex_);
            ++stats_.receiveCalls;
        }
        if (size == 0) {
            dispatch(std::span<const std::uint8_t>(), 0, from);
            continue;
        }
        // Consecutive QUIC datagrams go to the handler as one run; the rest one by one.
        std::span<const std::uint8_t> all(buf.data(), size);
        std::size_t runStart = 0, runEnd = 0;
        for (std::size_t offset = 0; offset < size; offset += segment) {
            auto datagram = all.subspan(offset, std::min(segment, size - offset));
            if (classifyDatagram(datagram) == DatagramKind::quic) {
                runEnd = offset + datagram.size();
                continue;
            }
            if (runEnd > runStart)
                dispatch(all.subspan(runStart, runEnd - runStart), segment, from);
            dispatch(datagram, datagram.size(), from);
            runStart = runEnd = offset + datagram.size();
        }
        if (runEnd > runStart)
            dispatch(all.subspan(runStart, runEnd - runStart), segment, from);
    }
    return false;
}

void UdpEndpoint::dispatch(std::span<const std::uint8_t> data, std::size_t segmentSize,
                           const SocketAddress& from) {
    switch (classifyDatagram(data)) {
    case DatagramKind::dht: {
        bool pass;
        {
            std::lock_guard lock(filterMutex_);
            pass = filter_->onInbound(data, from.toString(), DhtPacketFilter::Clock::now()) ==
                   DhtPacketFilter::Verdict::pass;
        }
        {
            std::lock_guard lock(statsMutex_);
            ++(pass ? stats_.dhtIn : stats_.droppedByFilter);
        }
        if (pass) {
            std::lock_guard lock(handlerMutex_);
            if (dhtHandler_)
                dhtHandler_(data, from);
        }
        break;
    }
    case DatagramKind::quic: {
        {
            std::lock_guard lock(statsMutex_);
            stats_.otherIn += (data.size() + segmentSize - 1) / segmentSize;
        }
        std::lock_guard lock(handlerMutex_);
        if (otherHandler_)
            otherHandler_(data, segmentSize, from);
        break;
    }
    case DatagramKind::unknown: {
        std::lock_guard lock(statsMutex_);
        ++stats_.droppedUnknown;
        break;
    }
    }
}

} // namespace parley::dht
