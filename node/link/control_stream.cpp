// The control stream's decoder and hello check (see control_stream.h).
#include "node/link/control_stream.h"

#include <utility>

namespace parley::node::link {

ControlStream::ControlStream(std::uint32_t minVersion) : minVersion_(minVersion) {}

void ControlStream::push(std::span<const std::uint8_t> bytes, bool fin) {
    if (state_ != State::open || fin_)
        return;
    if (auto err = reader_.push(bytes); err != wire::FrameError::ok) {
        state_ = State::errorPending;
        pendingReason_ = std::string(wire::describe(err));
        return;
    }
    fin_ = fin;
}

ControlStream::Error ControlStream::fail(std::string reason) {
    state_ = State::failed;
    return Error{std::move(reason)};
}

std::optional<ControlStream::Event> ControlStream::next() {
    if (state_ == State::failed)
        return std::nullopt;
    if (state_ == State::errorPending)
        return fail(std::move(pendingReason_));
    while (auto payload = reader_.next()) {
        wire::Message message;
        auto err = wire::decodeMessage(*payload, message);
        if (err == wire::FrameError::unknownType) {
            ++unknownFrames_; // a newer peer: ignore
            continue;
        }
        if (err != wire::FrameError::ok)
            return fail(std::string(wire::describe(err)));
        if (auto* h = std::get_if<wire::Hello>(&message)) {
            if (helloSeen_)
                return fail("a second hello");
            if (h->version < minVersion_)
                return fail("incompatible protocol version " + std::to_string(h->version));
            helloSeen_ = true;
            peerHello_ = *h;
        } else if (!helloSeen_) {
            return fail("a frame before the hello");
        }
        return message;
    }
    if (fin_)
        return fail("the peer ended its control stream");
    return std::nullopt;
}

std::size_t ControlStream::takeUnknownFrames() {
    return std::exchange(unknownFrames_, 0);
}

wire::FrameError ControlStream::encode(const wire::Message& message,
                                       std::vector<std::uint8_t>& out) {
    return wire::encodeFrame(message, out);
}

} // namespace parley::node::link
