// Control-stream framing (DESIGN.md §6, "Inside a connection"): each frame on the control
// stream is a 4-byte big-endian payload length followed by the payload, a msgpack map whose
// key "t" names the message type. No I/O here: FrameReader takes bytes as they arrive and
// hands back whole payloads; decodeMessage takes untrusted payloads and never throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace parley::node::wire {

inline constexpr std::size_t kFramePrefixSize = 4;
inline constexpr std::size_t kMaxFrameSize = 256 * 1024; // payload bytes
inline constexpr std::uint32_t kProtocolVersion = 1;

// Caps every receiver enforces (bytes of UTF-8); a message over them is malformed.
inline constexpr std::size_t kMaxFeatures = 32;
inline constexpr std::size_t kMaxFeatureSize = 32;
inline constexpr std::size_t kMaxAgentSize = 64;
inline constexpr std::size_t kMaxGoodbyeReasonSize = 256;
inline constexpr std::size_t kMaxChatTextSize = 64 * 1024; // bytes of a chat message's text
inline constexpr std::size_t kMaxIdsPerFrame = 1024;       // ids in one ack or read frame

enum class FrameError {
    ok = 0,
    tooLarge,           // a length prefix over the maximum: close the connection
    empty,              // a zero length prefix: close the connection
    malformed,          // not msgpack, not a map, a missing or mistyped field, a cap exceeded
    unknownType,        // a "t" this version does not know: ignore the frame
    unsupportedVersion, // a hello whose minVersion is above kProtocolVersion
};

std::string_view describe(FrameError error);

// Splits a byte stream into frame payloads. Every length prefix is checked as soon as its
// four bytes arrive, so a partial frame held here is never more than prefix + maxFrame bytes;
// complete frames stay buffered until next() takes them, so drain next() after each push.
// After an error the reader stays failed: push returns that error, next() returns nothing.
class FrameReader {
public:
    explicit FrameReader(std::size_t maxFrame = kMaxFrameSize);

    FrameError push(std::span<const std::uint8_t> bytes);
    std::optional<std::vector<std::uint8_t>> next(); // the next whole payload, if any
    std::size_t buffered() const;                    // bytes pushed and not yet returned
    FrameError error() const { return error_; }

private:
    FrameError fail(FrameError error);
    void compact();

    std::size_t maxFrame_;
    std::vector<std::uint8_t> buffer_;
    std::size_t offset_ = 0;  // start of the first frame next() has not returned
    std::size_t checked_ = 0; // start of the first frame whose prefix has not been checked
    FrameError error_ = FrameError::ok;
};

// The length prefix followed by the payload, into `out`. tooLarge for a payload over
// kMaxFrameSize and empty for an empty one (the peer would refuse either); `out` is only
// written on ok.
FrameError frame(std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out);

// Sent first by both sides. The connection speaks min(version, peer's version); a peer
// whose minVersion is above ours cannot be talked to.
struct Hello {
    std::uint32_t version = kProtocolVersion;
    std::uint32_t minVersion = 1;
    std::vector<std::string> features; // at most kMaxFeatures, each at most kMaxFeatureSize
    std::string agent;                 // e.g. "parley/0.1.0", at most kMaxAgentSize

    bool operator==(const Hello&) const = default;
};

struct Ping {
    std::uint64_t seq = 0;
    std::uint64_t sentUs = 0; // the sender's clock, echoed back in the pong

    bool operator==(const Ping&) const = default;
};

struct Pong {
    std::uint64_t seq = 0;    // the ping's seq
    std::uint64_t sentUs = 0; // the ping's sentUs, so the pinger measures round trips alone

    bool operator==(const Pong&) const = default;
};

struct Goodbye {
    std::string reason; // for the peer's log, at most kMaxGoodbyeReasonSize (dht::truncateUtf8)

    bool operator==(const Goodbye&) const = default;
};

using MessageId = std::array<std::uint8_t, 16>;

// A chat message (DESIGN.md §7). The text travels as bytes: the receiver repairs bad UTF-8
// rather than closing the connection over it.
struct ChatMessage {
    MessageId id{};           // random; the receiver applies a message once per id
    std::uint64_t seq = 0;    // the sender's per-conversation sequence, from 1
    std::uint64_t sentMs = 0; // the sender's clock, unix ms
    std::string text;         // at most kMaxChatTextSize bytes
    bool operator==(const ChatMessage&) const = default;
};

// "These messages are stored on my side" (delivered), and "the person has seen them" (read).
struct ChatAck {
    std::vector<MessageId> ids; // at most kMaxIdsPerFrame
    bool operator==(const ChatAck&) const = default;
};
struct ChatRead {
    std::vector<MessageId> ids; // at most kMaxIdsPerFrame
    bool operator==(const ChatRead&) const = default;
};

using Message = std::variant<Hello, Ping, Pong, Goodbye, ChatMessage, ChatAck, ChatRead>;

std::string_view typeName(const Message& message); // the "t" on the wire, e.g. "hello"

// The payload without the length prefix. Caps are not checked here: a message over them
// encodes, and the peer refuses it as malformed.
std::vector<std::uint8_t> encodeMessage(const Message& message);
// Never throws; `out` is only written on ok. Unknown keys in a known type are ignored.
FrameError decodeMessage(std::span<const std::uint8_t> payload, Message& out);

// malformed when `message` is over a cap the peer enforces (the kMax* above), else ok.
FrameError checkCaps(const Message& message);
// checkCaps, then frame(encodeMessage(message)) into `out`; never throws.
FrameError encodeFrame(const Message& message, std::vector<std::uint8_t>& out);

} // namespace parley::node::wire
