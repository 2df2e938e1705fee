// RFC 7741 section 4.2 payload descriptor:
//   X R N S R PID | I L T K RSV | M PictureID(7 or 15) | TL0PICIDX | TID Y KEYIDX
#include "media/vp8_payload.h"

#include <algorithm>

namespace parley::media {

const char* toString(Vp8PayloadError e) {
    switch (e) {
    case Vp8PayloadError::ok:
        return "ok";
    case Vp8PayloadError::empty:
        return "empty VP8 payload";
    case Vp8PayloadError::truncatedDescriptor:
        return "VP8 payload descriptor truncated";
    case Vp8PayloadError::noPayload:
        return "VP8 packet without payload";
    }
    return "unknown";
}

Vp8PayloadError parseVp8Descriptor(std::span<const std::uint8_t> p, Vp8Descriptor& out) {
    out = Vp8Descriptor{};
    if (p.empty())
        return Vp8PayloadError::empty;
    std::size_t pos = 0;
    std::uint8_t b0 = p[pos++];
    out.nonReference = b0 & 0x20;
    out.start = b0 & 0x10;
    out.partitionId = b0 & 0x07;
    if (b0 & 0x80) {
        if (pos >= p.size())
            return Vp8PayloadError::truncatedDescriptor;
        std::uint8_t x = p[pos++];
        if (x & 0x80) {
            if (pos >= p.size())
                return Vp8PayloadError::truncatedDescriptor;
            out.hasPictureId = true;
            if (p[pos] & 0x80) {
                if (pos + 1 >= p.size())
                    return Vp8PayloadError::truncatedDescriptor;
                out.pictureId = std::uint16_t((p[pos] & 0x7f) << 8 | p[pos + 1]);
                pos += 2;
            } else {
                out.pictureId = p[pos] & 0x7f;
                pos += 1;
            }
        }
        if (x & 0x40) {
            if (pos >= p.size())
                return Vp8PayloadError::truncatedDescriptor;
            out.hasTl0PicIdx = true;
            out.tl0PicIdx = p[pos++];
        }
        if (x & 0x30) {
            if (pos >= p.size())
                return Vp8PayloadError::truncatedDescriptor;
            std::uint8_t t = p[pos++];
            out.hasTid = x & 0x20;
            out.hasKeyIdx = x & 0x10;
            out.tid = std::uint8_t(t >> 6);
            out.layerSync = t & 0x20;
            out.keyIdx = t & 0x1f;
        }
    }
    if (pos >= p.size())
        return Vp8PayloadError::noPayload;
    out.headerSize = pos;
    // VP8 payload header (RFC 7741 4.3): P bit 0 means keyframe.
    out.keyframe = out.frameStart() && (p[pos] & 0x01) == 0;
    return Vp8PayloadError::ok;
}

std::vector<Bytes> packetizeVp8(std::span<const std::uint8_t> frame, std::uint16_t pictureId,
                                std::size_t maxPayload) {
    constexpr std::size_t kHeader = 4;
    std::vector<Bytes> out;
    if (frame.empty() || maxPayload <= kHeader)
        return out;
    std::size_t room = maxPayload - kHeader;
    std::size_t count = (frame.size() + room - 1) / room;
    std::size_t base = frame.size() / count, extra = frame.size() % count;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t len = base + (i < extra ? 1 : 0);
        Bytes b;
        b.reserve(kHeader + len);
        b.push_back(std::uint8_t(0x80 | (i == 0 ? 0x10 : 0)));
        b.push_back(0x80);
        b.push_back(std::uint8_t(0x80 | ((pictureId >> 8) & 0x7f)));
        b.push_back(std::uint8_t(pictureId));
        b.insert(b.end(), frame.begin() + std::ptrdiff_t(offset),
                 frame.begin() + std::ptrdiff_t(offset + len));
        offset += len;
        out.push_back(std::move(b));
    }
    return out;
}

} // namespace parley::media
