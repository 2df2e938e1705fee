// DatagramInbox: hands QUIC datagrams from the UDP endpoint's receive thread to the io thread
// in batches, one post per burst instead of one per datagram (a flush per burst, not per
// packet, is what makes bulk transfers fast: docs/PERFORMANCE.md). Bounded: beyond kMaxQueued
// datagrams waiting, new ones are dropped, like a full socket buffer.
#pragma once

#include "dht/socket_address.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

namespace parley::node::quic {

class DatagramInbox : public std::enable_shared_from_this<DatagramInbox> {
public:
    using Deliver = std::function<void(std::span<const std::uint8_t>, const dht::SocketAddress&)>;
    static constexpr std::size_t kMaxQueued = 8192;

    // `deliver` runs on `io`'s thread.
    DatagramInbox(asio::io_context& io, Deliver deliver) : io_(io), deliver_(std::move(deliver)) {}

    // Any thread.
    void push(std::span<const std::uint8_t> bytes, const dht::SocketAddress& from) {
        bool post = false;
        {
            std::lock_guard lock(mutex_);
            if (queue_.size() >= kMaxQueued) {
                ++dropped_;
                return;
            }
            queue_.push_back({std::vector<std::uint8_t>(bytes.begin(), bytes.end()), from});
            post = !std::exchange(scheduled_, true);
        }
        if (post)
            asio::post(io_, [self = shared_from_this()] { self->drain(); });
    }

    // Counters for benchmarks and status (any thread).
    struct Counters {
        std::uint64_t dropped = 0, batches = 0, delivered = 0;
    };
    Counters counters() const {
        std::lock_guard lock(mutex_);
        return {dropped_, batches_, delivered_};
    }

private:
    struct Datagram {
        std::vector<std::uint8_t> bytes;
        dht::SocketAddress from;
    };

    void drain() {
        std::vector<Datagram> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(queue_);
            scheduled_ = false;
            ++batches_;
            delivered_ += batch.size();
        }
        for (const auto& d : batch)
            deliver_(d.bytes, d.from);
    }

    asio::io_context& io_;
    Deliver deliver_;
    mutable std::mutex mutex_;
    std::vector<Datagram> queue_;
    bool scheduled_ = false;
    std::uint64_t dropped_ = 0, batches_ = 0, delivered_ = 0;
};

} // namespace parley::node::quic
