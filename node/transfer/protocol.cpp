// The transfer room's stream formats (protocol.h).
#include "node/transfer/protocol.h"

#include "dht/records.h"

namespace parley::node::transfer {

namespace {

void putU16(std::vector<std::uint8_t>& out, std::size_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void putU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<std::uint8_t>(v >> shift));
}

std::uint16_t getU16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

std::uint32_t getU32(std::span<const std::uint8_t> b, std::size_t at) {
    return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
           (std::uint32_t{b[at + 2]} << 8) | std::uint32_t{b[at + 3]};
}

// A length-prefixed text, cut to `max` bytes on a character boundary by the encoder.
void putText(std::vector<std::uint8_t>& out, std::string_view text, std::size_t max) {
    auto cut = dht::truncateUtf8(text, max);
    putU16(out, cut.size());
    out.insert(out.end(), cut.begin(), cut.end());
}

// The text at `at` (u16 length, bytes): nullopt when it does not fit in `b`, is over `max` or
// is not UTF-8; `end` is where it ends.
std::optional<std::string> getText(std::span<const std::uint8_t> b, std::size_t at, std::size_t max,
                                   std::size_t& end) {
    if (b.size() < at + 2)
        return std::nullopt;
    std::size_t n = getU16(b, at);
    if (n > max || b.size() < at + 2 + n)
        return std::nullopt;
    std::string text(reinterpret_cast<const char*>(b.data() + at + 2), n);
    if (!dht::isValidUtf8(text))
        return std::nullopt;
    end = at + 2 + n;
    return text;
}

} // namespace

std::optional<Op> opFromByte(std::uint8_t byte) {
    if (byte >= static_cast<std::uint8_t>(Op::decline) &&
        byte <= static_cast<std::uint8_t>(Op::accepted))
        return static_cast<Op>(byte);
    return std::nullopt;
}

std::string_view toString(Op op) {
    switch (op) {
    case Op::decline:
        return "decline";
    case Op::cancel:
        return "cancel";
    case Op::pause:
        return "pause";
    case Op::resume:
        return "resume";
    case Op::completed:
        return "completed";
    case Op::failed:
        return "failed";
    case Op::accepted:
        return "accepted";
    }
    return "unknown";
}

void encodeOfferPrefix(std::string_view message, std::vector<std::uint8_t>& out) {
    out.push_back(kOfferVersion);
    putText(out, message, kMaxOfferMessage);
}

std::optional<OfferPrefix> decodeOfferPrefix(std::span<const std::uint8_t> bytes,
                                             std::string* error) {
    if (bytes.empty())
        return std::nullopt;
    if (bytes[0] != kOfferVersion) {
        if (error)
            *error = "offer version " + std::to_string(bytes[0]) + " is not supported";
        return std::nullopt;
    }
    if (bytes.size() < 3)
        return std::nullopt;
    std::size_t n = getU16(bytes, 1);
    if (n > kMaxOfferMessage) {
        if (error)
            *error = "the offer's message is too long";
        return std::nullopt;
    }
    if (bytes.size() < 3 + n)
        return std::nullopt;
    std::size_t end = 0;
    auto text = getText(bytes, 1, kMaxOfferMessage, end);
    if (!text) {
        if (error)
            *error = "the offer's message is not UTF-8";
        return std::nullopt;
    }
    return OfferPrefix{std::move(*text), end};
}

void encodeControl(const ControlMessage& message, std::vector<std::uint8_t>& out) {
    out.push_back(static_cast<std::uint8_t>(message.op));
    putText(out, message.reason, kMaxReasonSize);
}

std::optional<ControlMessage> decodeControl(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < 3)
        return std::nullopt;
    auto op = opFromByte(bytes[0]);
    std::size_t end = 0;
    auto reason = getText(bytes, 1, kMaxReasonSize, end);
    if (!op || !reason || end != bytes.size())
        return std::nullopt;
    return ControlMessage{*op, std::move(*reason)};
}

void encodeAnswer(const Answer& answer, std::vector<std::uint8_t>& out) {
    out.push_back(answer.ok ? 0 : 1);
    putText(out, answer.reason, kMaxReasonSize);
}

std::optional<Answer> decodeAnswer(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < 3 || bytes[0] > 1)
        return std::nullopt;
    std::size_t end = 0;
    auto reason = getText(bytes, 1, kMaxReasonSize, end);
    if (!reason || end != bytes.size())
        return std::nullopt;
    return Answer{bytes[0] == 0, std::move(*reason)};
}

void encodeChunkRequest(const ChunkRequest& request, std::vector<std::uint8_t>& out) {
    putU32(out, request.file);
    putU32(out, request.chunk);
}

std::optional<ChunkRequest> decodeChunkRequest(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != kChunkRequestSize)
        return std::nullopt;
    return ChunkRequest{getU32(bytes, 0), getU32(bytes, 4)};
}

void encodeChunkAnswerPrefix(ChunkStatus status, std::string_view reason,
                             std::vector<std::uint8_t>& out) {
    out.push_back(static_cast<std::uint8_t>(status));
    if (status != ChunkStatus::ok)
        putText(out, reason, kMaxReasonSize);
}

std::optional<ChunkAnswerPrefix> decodeChunkAnswerPrefix(std::span<const std::uint8_t> bytes,
                                                         bool* malformed) {
    if (malformed)
        *malformed = false;
    if (bytes.empty())
        return std::nullopt;
    if (bytes[0] > static_cast<std::uint8_t>(ChunkStatus::notServing)) {
        if (malformed)
            *malformed = true;
        return std::nullopt;
    }
    auto status = static_cast<ChunkStatus>(bytes[0]);
    if (status == ChunkStatus::ok)
        return ChunkAnswerPrefix{status, {}, 1};
    if (bytes.size() < 3)
        return std::nullopt;
    std::size_t n = getU16(bytes, 1);
    if (n > kMaxReasonSize) {
        if (malformed)
            *malformed = true;
        return std::nullopt;
    }
    if (bytes.size() < 3 + n)
        return std::nullopt;
    std::size_t end = 0;
    auto reason = getText(bytes, 1, kMaxReasonSize, end);
    if (!reason) {
        if (malformed)
            *malformed = true;
        return std::nullopt;
    }
    return ChunkAnswerPrefix{status, std::move(*reason), end};
}

} // namespace parley::node::transfer
