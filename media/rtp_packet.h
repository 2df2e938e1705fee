// RTP packets (RFC 3550 fixed header, CSRCs, header extension, padding) and the unwrapping
// of 16-bit sequence numbers and 32-bit timestamps into monotonic 64-bit counters.
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <optional>
#include <span>

namespace parley::media {

enum class RtpError {
    ok,
    tooShort,
    badVersion,
    badCsrcCount,
    badExtension,
    badPadding,
};
const char* toString(RtpError e);

struct RtpPacket {
    bool marker = false;
    std::uint8_t payloadType = 0;
    std::uint16_t sequence = 0;
    std::uint32_t timestamp = 0;
    std::uint32_t ssrc = 0;
    Bytes payload;
};

// Parses one RTP packet; never throws, whatever the bytes.
RtpError parseRtp(std::span<const std::uint8_t> bytes, RtpPacket& out);
// Writes a packet with no CSRCs, no extension, no padding.
Bytes serializeRtp(const RtpPacket& packet);

// Extends wrapping counters of `Bits` bits to 64 bits, relative to the highest value seen.
template <int Bits> class Unwrapper {
public:
    std::int64_t unwrap(std::uint64_t value) {
        constexpr std::int64_t range = std::int64_t(1) << Bits;
        value &= std::uint64_t(range - 1);
        if (!last_) {
            last_ = std::int64_t(value);
            return *last_;
        }
        std::int64_t delta = std::int64_t(value) - (*last_ & (range - 1));
        if (delta > range / 2)
            delta -= range;
        else if (delta < -range / 2)
            delta += range;
        std::int64_t result = *last_ + delta;
        if (result > *last_)
            last_ = result;
        return result;
    }

private:
    std::optional<std::int64_t> last_;
};
using SequenceUnwrapper = Unwrapper<16>;
using TimestampUnwrapper = Unwrapper<32>;

} // namespace parley::media
