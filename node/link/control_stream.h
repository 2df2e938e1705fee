// The control stream of one link (DESIGN.md §6), without I/O: bytes in as they arrive, decoded
// messages or one protocol error (with a reason for the peer and the log) out. It also checks
// the hello: the first message must be one, with a version we still speak, and there is only
// one. Frames of a type this version does not know are skipped (a newer peer) and counted.
// Encoding is the frame codec with the caps the peer enforces; the caller writes the bytes and
// asks overBacklog() whether the peer still reads.
#pragma once

#include "node/link/frame.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace parley::node::link {

// Bytes queued on a control stream beyond which the peer counts as not reading: dropped.
inline constexpr std::size_t kMaxControlBacklog = 8 << 20;

class ControlStream {
public:
    // The stream is broken: close the connection with `reason`. Nothing follows it.
    struct Error {
        std::string reason;
    };
    using Event = std::variant<wire::Message, Error>;

    // `minVersion`: the oldest protocol version we talk to (our hello's minVersion).
    explicit ControlStream(std::uint32_t minVersion = wire::Hello{}.minVersion);

    // Bytes of the stream in order; `fin` when the peer ended it (an error once the messages
    // before it are out). Ignored after an error. A partial frame held here is bounded by
    // wire::kMaxFrameSize; complete frames wait until next() decodes them.
    void push(std::span<const std::uint8_t> bytes, bool fin = false);
    // The next message or the error, decoded on demand; nothing when more bytes are needed.
    // A bad length prefix in a push is reported before the frames that came with it.
    std::optional<Event> next();

    bool failed() const { return state_ == State::failed; }
    bool helloSeen() const { return helloSeen_; }
    const wire::Hello& peerHello() const { return peerHello_; } // valid once helloSeen()
    // Frames of unknown types skipped since the last call.
    std::size_t takeUnknownFrames();

    // The frame for `message` into `out`; malformed or tooLarge when it breaks a cap the peer
    // enforces (`out` untouched then).
    static wire::FrameError encode(const wire::Message& message, std::vector<std::uint8_t>& out);
    // True when `waiting` bytes queued on the stream mean the peer stopped reading.
    static bool overBacklog(std::size_t waiting) { return waiting > kMaxControlBacklog; }

private:
    enum class State { open, errorPending, failed };
    Error fail(std::string reason);

    std::uint32_t minVersion_;
    wire::FrameReader reader_;
    State state_ = State::open;
    std::string pendingReason_;
    bool fin_ = false;
    bool helloSeen_ = false;
    wire::Hello peerHello_;
    std::size_t unknownFrames_ = 0;
};

} // namespace parley::node::link
