// Typed bulk streams (DESIGN.md §6): a stream other than the control stream opens with a
// short header saying what it carries and the id it belongs to, and the link routes it to the
// room that registered that type. No I/O here: the router takes a stream's bytes as they
// arrive and says which bytes are the header's, which belong to the type's handler, and when
// the stream must be reset instead.
//
// The header, at the very start of the stream, in the direction of its opener:
//
//   offset 0      1 byte   header version, kStreamHeaderVersion (1)
//   offset 1      1 byte   stream type (StreamType); 0 is reserved and never valid
//   offset 2      1 byte   id length N, 0..kMaxStreamIdSize (64)
//   offset 3      N bytes  the id (opaque to the link: a transfer id, a call id, ...)
//   offset 3 + N           the stream's data, the room's own format
//
// A stream that ends before its header is complete, has another version, type 0 or an id
// over 64 bytes is malformed. The answering direction of a bidirectional stream has no
// header: both sides already know what the stream is.
#pragma once

#include "node/link/link_core.h"

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <variant>
#include <vector>

namespace parley::node::link {

using StreamType = std::uint8_t;

inline constexpr std::uint8_t kStreamHeaderVersion = 1;
inline constexpr std::size_t kMaxStreamIdSize = 64;
inline constexpr std::size_t kStreamHeaderFixedSize = 3;
inline constexpr std::size_t kMaxStreamHeaderSize = kStreamHeaderFixedSize + kMaxStreamIdSize;
// Streams one connection may have in the router at once (routed, waiting for their header, or
// reset and not yet closed). The transport lets a peer open 64 bidirectional and 64
// unidirectional streams at a time, so a well-behaved peer stays below this; what comes over
// is reset with tooManyStreams.
inline constexpr std::size_t kMaxRoutedStreams = 256;

// Application error codes in RESET_STREAM / STOP_SENDING for streams the link refuses.
enum class StreamResetCode : std::uint64_t {
    unknownType = 0x100,     // a well-formed header of a type no room here registered
    malformedHeader = 0x101, // see the header above
    tooManyStreams = 0x102,  // over kMaxRoutedStreams on this connection
    notRouted = 0x103,       // a stream of ours that we did not open for a room
    roomFailed = 0x104,      // the room's handler threw
};

struct StreamHeader {
    StreamType type = 0;
    std::vector<std::uint8_t> id; // at most kMaxStreamIdSize bytes
    bool operator==(const StreamHeader&) const = default;
};

// The header's bytes into `out` (appended); false (nothing written) for type 0 or an id over
// kMaxStreamIdSize.
bool encodeStreamHeader(StreamType type, std::span<const std::uint8_t> id,
                        std::vector<std::uint8_t>& out);

// Reads one header from bytes that arrive in pieces; safe on any bytes. It holds at most
// kMaxStreamHeaderSize bytes and never reads past the header's end.
class StreamHeaderDecoder {
public:
    enum class Status { incomplete, complete, malformed };

    // Takes bytes from the front of `in` up to the end of the header and returns how many it
    // took; the rest of `in` is the stream's data. Takes nothing once complete or malformed.
    std::size_t push(std::span<const std::uint8_t> in);
    Status status() const { return status_; }
    StreamHeader header() const; // meaningful once complete

private:
    std::array<std::uint8_t, kMaxStreamHeaderSize> bytes_{};
    std::size_t size_ = 0;
    Status status_ = Status::incomplete;
};

// Which stream of which connection.
struct StreamKey {
    ConnId conn = 0;
    std::int64_t stream = -1;
    auto operator<=>(const StreamKey&) const = default;
};

// The routing state of every connection's streams: which types are registered, each
// incoming stream's header decoder until its header is complete, then its type. A table fed
// by the network: at most kMaxRoutedStreams entries per connection; an entry goes when the
// stream closes (closed) or its connection does (closedConnection).
class StreamRouter {
public:
    // What to do with one piece of a stream.
    struct Routed {
        std::optional<StreamHeader> opened;   // the header completed with this piece
        std::optional<StreamType> type;       // set when `data` (or `fin`) goes to a handler
        std::span<const std::uint8_t> data;   // the bytes for the type's handler (in the piece)
        bool fin = false;                     // the peer ended its direction (handler's to hear)
        std::optional<StreamResetCode> reset; // reset the stream; nothing goes to a handler
    };

    // False for type 0 or a type already registered.
    bool registerType(StreamType type);
    bool registered(StreamType type) const { return types_.contains(type); }

    // A piece of a stream the peer opened (`peerOpened`) or that we opened. Bytes of a
    // stream that was reset, or of one of ours not adopted, never reach a handler. Every
    // byte not in `data` is the link's own to return as flow-control credit.
    Routed push(StreamKey key, bool peerOpened, std::span<const std::uint8_t> bytes, bool fin);
    // A stream we opened (and sent a header on) for `type`: the peer's answer goes to that
    // type's handler. False when the connection is at kMaxRoutedStreams or the type is not
    // registered.
    bool adopt(StreamKey key, StreamType type);
    // We reset a routed stream: bytes still in flight are dropped, and it is no longer routed.
    void abandon(StreamKey key);
    // The stream is gone; its type when it had been routed to a handler (who must hear of it).
    std::optional<StreamType> closed(StreamKey key);
    // The connection is gone: its streams that had been routed, with their types.
    std::vector<std::pair<std::int64_t, StreamType>> closedConnection(ConnId conn);
    // The type of a routed stream.
    std::optional<StreamType> typeOf(StreamKey key) const;
    std::size_t streams() const { return entries_.size(); }

private:
    struct Reset {};
    using Entry = std::variant<StreamHeaderDecoder, StreamType, Reset>;
    Routed reset(StreamKey key, StreamResetCode code);
    bool atCapacity(ConnId conn) const;

    std::set<StreamType> types_;
    std::map<StreamKey, Entry> entries_;
    std::map<ConnId, std::size_t> perConnection_;
};

} // namespace parley::node::link
