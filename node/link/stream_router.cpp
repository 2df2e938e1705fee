// Typed bulk streams: the header codec and the router's table (see stream_router.h).
#include "node/link/stream_router.h"

#include <algorithm>
#include <limits>

namespace parley::node::link {

bool encodeStreamHeader(StreamType type, std::span<const std::uint8_t> id,
                        std::vector<std::uint8_t>& out) {
    if (type == 0 || id.size() > kMaxStreamIdSize)
        return false;
    out.push_back(kStreamHeaderVersion);
    out.push_back(type);
    out.push_back(static_cast<std::uint8_t>(id.size()));
    out.insert(out.end(), id.begin(), id.end());
    return true;
}

std::size_t StreamHeaderDecoder::push(std::span<const std::uint8_t> in) {
    std::size_t taken = 0;
    while (status_ == Status::incomplete && taken < in.size()) {
        std::size_t end = size_ < kStreamHeaderFixedSize ? kStreamHeaderFixedSize
                                                         : kStreamHeaderFixedSize + bytes_[2];
        std::size_t n = std::min(end - size_, in.size() - taken);
        std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(taken), n, bytes_.begin() + size_);
        size_ += n;
        taken += n;
        // Each fixed byte is checked as soon as it is there, so a bad stream fails early.
        if ((size_ > 0 && bytes_[0] != kStreamHeaderVersion) || (size_ > 1 && bytes_[1] == 0) ||
            (size_ > 2 && bytes_[2] > kMaxStreamIdSize))
            status_ = Status::malformed;
        else if (size_ >= kStreamHeaderFixedSize && size_ == kStreamHeaderFixedSize + bytes_[2])
            status_ = Status::complete;
    }
    return taken;
}

StreamHeader StreamHeaderDecoder::header() const {
    StreamHeader h;
    if (status_ != Status::complete)
        return h;
    h.type = bytes_[1];
    auto first = bytes_.begin() + kStreamHeaderFixedSize;
    h.id.assign(first, first + bytes_[2]);
    return h;
}

bool StreamRouter::registerType(StreamType type) {
    return type != 0 && types_.insert(type).second;
}

bool StreamRouter::atCapacity(ConnId conn) const {
    auto it = perConnection_.find(conn);
    return it != perConnection_.end() && it->second >= kMaxRoutedStreams;
}

StreamRouter::Routed StreamRouter::reset(StreamKey key, StreamResetCode code) {
    entries_[key] = Reset{}; // until the stream closes: late bytes are dropped, not re-read
    Routed r;
    r.reset = code;
    return r;
}

StreamRouter::Routed StreamRouter::push(StreamKey key, bool peerOpened,
                                        std::span<const std::uint8_t> bytes, bool fin) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        Routed r;
        if (atCapacity(key.conn)) {
            r.reset = StreamResetCode::tooManyStreams;
            return r;
        }
        Entry fresh = StreamHeaderDecoder{};
        if (!peerOpened)
            fresh = Reset{};
        it = entries_.emplace(key, fresh).first;
        ++perConnection_[key.conn];
        if (!peerOpened) {
            r.reset = StreamResetCode::notRouted;
            return r;
        }
    }
    if (std::holds_alternative<Reset>(it->second))
        return {};
    if (auto* type = std::get_if<StreamType>(&it->second)) {
        Routed r;
        r.type = *type;
        r.data = bytes;
        r.fin = fin;
        return r;
    }
    auto& decoder = std::get<StreamHeaderDecoder>(it->second);
    auto used = decoder.push(bytes);
    switch (decoder.status()) {
    case StreamHeaderDecoder::Status::malformed:
        return reset(key, StreamResetCode::malformedHeader);
    case StreamHeaderDecoder::Status::incomplete:
        if (fin)
            return reset(key, StreamResetCode::malformedHeader);
        return {};
    case StreamHeaderDecoder::Status::complete:
        break;
    }
    auto header = decoder.header();
    if (!registered(header.type))
        return reset(key, StreamResetCode::unknownType);
    it->second = header.type;
    Routed r;
    r.type = header.type;
    r.opened = std::move(header);
    r.data = bytes.subspan(used);
    r.fin = fin;
    return r;
}

bool StreamRouter::adopt(StreamKey key, StreamType type) {
    if (!registered(type) || atCapacity(key.conn))
        return false;
    if (!entries_.emplace(key, type).second)
        return false;
    ++perConnection_[key.conn];
    return true;
}

void StreamRouter::abandon(StreamKey key) {
    if (auto it = entries_.find(key); it != entries_.end())
        it->second = Reset{};
}

std::optional<StreamType> StreamRouter::typeOf(StreamKey key) const {
    auto it = entries_.find(key);
    if (it == entries_.end())
        return std::nullopt;
    if (auto* type = std::get_if<StreamType>(&it->second))
        return *type;
    return std::nullopt;
}

std::optional<StreamType> StreamRouter::closed(StreamKey key) {
    auto type = typeOf(key);
    if (entries_.erase(key) == 0)
        return std::nullopt;
    if (auto it = perConnection_.find(key.conn); it != perConnection_.end() && --it->second == 0)
        perConnection_.erase(it);
    return type;
}

std::vector<std::pair<std::int64_t, StreamType>> StreamRouter::closedConnection(ConnId conn) {
    std::vector<std::pair<std::int64_t, StreamType>> routed;
    auto it = entries_.lower_bound(StreamKey{conn, std::numeric_limits<std::int64_t>::min()});
    while (it != entries_.end() && it->first.conn == conn) {
        if (auto* type = std::get_if<StreamType>(&it->second))
            routed.emplace_back(it->first.stream, *type);
        it = entries_.erase(it);
    }
    perConnection_.erase(conn);
    return routed;
}

} // namespace parley::node::link
