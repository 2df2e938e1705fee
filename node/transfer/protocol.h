// The transfer room's streams (DESIGN.md §8), each a typed bulk stream of the link
// (link/stream_router.h) whose header id is the 16-byte transfer id. No I/O here; every
// decoder takes untrusted bytes and never throws.
//
//   offer    (kOfferStream, the sender opens it)
//            -> version u8 (1) | message length u16 | message (UTF-8, at most kMaxOfferMessage)
//               | the manifest (manifest.h) to the end of the stream
//            <- an Answer: the receiver stored the offer (ok) or refused it (reason)
//   control  (kControlStream, either side)
//            -> op u8 | reason length u16 | reason (at most kMaxReasonSize)
//            <- an Answer (ok: the op was applied, or was already)
//   chunk    (kChunkStream, the receiver opens it)
//            -> file index u32 | chunk index u32 (8 bytes)
//            <- status u8; with ok the chunk's bytes follow to the end of the stream (exactly
//               its length per the manifest), else reason length u16 | reason
//
// An Answer is status u8 (0 ok, 1 refused) | reason length u16 | reason. Integers are
// big-endian.
#pragma once

#include "node/link/stream_router.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parley::node::transfer {

using TransferId = std::array<std::uint8_t, 16>;

inline constexpr link::StreamType kOfferStream = 0x10;
inline constexpr link::StreamType kControlStream = 0x11;
inline constexpr link::StreamType kChunkStream = 0x12;

inline constexpr std::uint8_t kOfferVersion = 1;
inline constexpr std::size_t kMaxOfferMessage = 4096;
inline constexpr std::size_t kMaxReasonSize = 512;
inline constexpr std::size_t kChunkRequestSize = 8;
// What a control stream or an answer may carry before the receiver resets it.
inline constexpr std::size_t kMaxControlSize = 3 + kMaxReasonSize;

// What one side tells the other about a transfer.
enum class Op : std::uint8_t {
    decline = 1,   // receiver: will not take it
    cancel = 2,    // either: ends it for good
    pause = 3,     // either: stop moving bytes until resume
    resume = 4,    // either
    completed = 5, // receiver: every file verified and in place
    failed = 6,    // receiver: it ended with the reason (files failed, nothing left to do)
    accepted = 7,  // receiver: it accepted (the sender shows it; chunk requests follow)
};
std::optional<Op> opFromByte(std::uint8_t byte);
std::string_view toString(Op op);

struct ControlMessage {
    Op op = Op::cancel;
    std::string reason;
    bool operator==(const ControlMessage&) const = default;
};

struct Answer {
    bool ok = true;
    std::string reason;
    bool operator==(const Answer&) const = default;
};

enum class ChunkStatus : std::uint8_t {
    ok = 0,
    unknown = 1,    // no such transfer, file or chunk for this peer
    changed = 2,    // the file changed on the sender's disk after it was offered
    readError = 3,  // the sender could not read it (the reason says why)
    notServing = 4, // paused, cancelled or busy: ask again later
};

struct ChunkRequest {
    std::uint32_t file = 0; // index in the manifest
    std::uint32_t chunk = 0;
    bool operator==(const ChunkRequest&) const = default;
};

// The offer stream's start: version, the message; the manifest follows at `manifestOffset`.
struct OfferPrefix {
    std::string message;
    std::size_t manifestOffset = 0;
};

void encodeOfferPrefix(std::string_view message, std::vector<std::uint8_t>& out);
// nullopt while `bytes` are too few to tell; a reason in `error` when malformed.
std::optional<OfferPrefix> decodeOfferPrefix(std::span<const std::uint8_t> bytes,
                                             std::string* error);

void encodeControl(const ControlMessage& message, std::vector<std::uint8_t>& out);
// A whole control stream's bytes; nullopt when malformed (unknown op, wrong length, too long).
std::optional<ControlMessage> decodeControl(std::span<const std::uint8_t> bytes);

void encodeAnswer(const Answer& answer, std::vector<std::uint8_t>& out);
std::optional<Answer> decodeAnswer(std::span<const std::uint8_t> bytes);

void encodeChunkRequest(const ChunkRequest& request, std::vector<std::uint8_t>& out);
std::optional<ChunkRequest> decodeChunkRequest(std::span<const std::uint8_t> bytes);

// The chunk answer's start: status, and the reason unless ok. `size` is how many bytes the
// prefix took (the chunk's bytes follow when ok); nullopt while too few bytes arrived, or when
// malformed (`malformed` set).
struct ChunkAnswerPrefix {
    ChunkStatus status = ChunkStatus::ok;
    std::string reason;
    std::size_t size = 0;
};
void encodeChunkAnswerPrefix(ChunkStatus status, std::string_view reason,
                             std::vector<std::uint8_t>& out);
std::optional<ChunkAnswerPrefix> decodeChunkAnswerPrefix(std::span<const std::uint8_t> bytes,
                                                         bool* malformed);

} // namespace parley::node::transfer
