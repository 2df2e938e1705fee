// DatagramInbox: hands QUIC datagrams from the UDP endpoint's receive thread to the io thread
// in batches, one post per burst instead of one per datagram (a flush per burst, not per
// packet, is what makes bulk transfers fast: docs/PERFORMANCE.md). A run of datagrams that
// the kernel coalesced (GRO) is queued as one piece. Bounded: beyond kMaxQueued datagrams
// waiting, new ones are dropped, like a full socket buffer.
#pragma once

#include "dht/socket_address.h"

#include <algorithm>
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

    // `deliver` runs on `io`'s thread, once per datagram; `burstDone` (optional) after each
    // batch (Transport::endOfBurst).
    DatagramInbox(asio::io_context& io, Deliver deliver, std::function<void()> burstDone = {})
        : io_(io), deliver_(std::move(deliver)), burstDone_(std::move(burstDone)) {}

    // Any thread. `run` holds datagrams of `segmentSize` bytes, the last possibly shorter
    // (one datagram: segmentSize == run.size()).
    void push(std::span<const std::uint8_t> run, std::size_t segmentSize,
              const dht::SocketAddress& from) {
        if (run.empty())
            return;
        segmentSize = segmentSize == 0 ? run.size() : std::min(segmentSize, run.size());
        std::size_t count = (run.size() + segmentSize - 1) / segmentSize;
        bool post = false;
        {
            std::lock_guard lock(mutex_);
            if (queued_ + count > kMaxQueued) {
                dropped_ += count;
                return;
            }
            queued_ += count;
            std::vector<std::uint8_t> bytes;
            if (!spare_.empty()) {
                bytes = std::move(spare_.back());
                spare_.pop_back();
            }
            bytes.assign(run.begin(), run.end());
            queue_.push_back({std::move(bytes), segmentSize, from});
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
    struct Run {
        std::vector<std::uint8_t> bytes;
        std::size_t segmentSize;
        dht::SocketAddress from;
    };

    void drain() {
        std::vector<Run> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(queue_);
            scheduled_ = false;
            ++batches_;
            delivered_ += queued_;
            queued_ = 0;
        }
        for (const auto& run : batch) {
            std::span<const std::uint8_t> all(run.bytes);
            for (std::size_t offset = 0; offset < all.size(); offset += run.segmentSize)
                deliver_(all.subspan(offset, std::min(run.segmentSize, all.size() - offset)),
                         run.from);
        }
        if (burstDone_)
            burstDone_();
        // The buffers serve the next runs: no allocation (and page faults) per receive.
        std::lock_guard lock(mutex_);
        for (auto& run : batch) {
            if (spare_.size() >= kMaxSpare)
                break;
            spare_.push_back(std::move(run.bytes));
        }
    }

    asio::io_context& io_;
    Deliver deliver_;
    std::function<void()> burstDone_;
    mutable std::mutex mutex_;
    std::vector<Run> queue_;
    static constexpr std::size_t kMaxSpare = 64; // kept buffers: at most 4 MiB of 64 KiB ones
    std::vector<std::vector<std::uint8_t>> spare_;
    std::size_t queued_ = 0; // datagrams in queue_
    bool scheduled_ = false;
    std::uint64_t dropped_ = 0, batches_ = 0, delivered_ = 0;
};

} // namespace parley::node::quic
