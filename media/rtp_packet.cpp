// RFC 3550 section 5.1 header parsing and writing.
#include "media/rtp_packet.h"

namespace parley::media {

const char* toString(RtpError e) {
    switch (e) {
    case RtpError::ok:
        return "ok";
    case RtpError::tooShort:
        return "packet shorter than an RTP header";
    case RtpError::badVersion:
        return "not RTP version 2";
    case RtpError::badCsrcCount:
        return "CSRC list longer than the packet";
    case RtpError::badExtension:
        return "header extension longer than the packet";
    case RtpError::badPadding:
        return "padding longer than the payload";
    }
    return "unknown";
}

static std::uint16_t be16(const std::uint8_t* p) {
    return std::uint16_t(p[0] << 8 | p[1]);
}
static std::uint32_t be32(const std::uint8_t* p) {
    return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | p[3];
}

RtpError parseRtp(std::span<const std::uint8_t> bytes, RtpPacket& out) {
    if (bytes.size() < 12)
        return RtpError::tooShort;
    const std::uint8_t* p = bytes.data();
    if ((p[0] >> 6) != 2)
        return RtpError::badVersion;
    bool padding = p[0] & 0x20;
    bool extension = p[0] & 0x10;
    std::size_t csrcs = p[0] & 0x0f;
    std::size_t offset = 12 + 4 * csrcs;
    if (offset > bytes.size())
        return RtpError::badCsrcCount;
    if (extension) {
        if (offset + 4 > bytes.size())
            return RtpError::badExtension;
        std::size_t words = be16(p + offset + 2);
        offset += 4 + 4 * words;
        if (offset > bytes.size())
            return RtpError::badExtension;
    }
    std::size_t end = bytes.size();
    if (padding) {
        std::size_t pad = p[end - 1];
        if (pad == 0 || pad > end - offset)
            return RtpError::badPadding;
        end -= pad;
    }
    out.marker = p[1] & 0x80;
    out.payloadType = p[1] & 0x7f;
    out.sequence = be16(p + 2);
    out.timestamp = be32(p + 4);
    out.ssrc = be32(p + 8);
    out.payload.assign(p + offset, p + end);
    return RtpError::ok;
}

Bytes serializeRtp(const RtpPacket& packet) {
    Bytes b(12 + packet.payload.size());
    b[0] = 0x80;
    b[1] = std::uint8_t((packet.marker ? 0x80 : 0) | (packet.payloadType & 0x7f));
    b[2] = std::uint8_t(packet.sequence >> 8);
    b[3] = std::uint8_t(packet.sequence);
    for (int i = 0; i < 4; ++i) {
        b[4 + i] = std::uint8_t(packet.timestamp >> (24 - 8 * i));
        b[8 + i] = std::uint8_t(packet.ssrc >> (24 - 8 * i));
    }
    std::copy(packet.payload.begin(), packet.payload.end(), b.begin() + 12);
    return b;
}

} // namespace parley::media
