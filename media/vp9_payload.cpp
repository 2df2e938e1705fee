// RFC 9628 section 4.2 payload descriptor:
//   I P L F B E V Z | M PictureID(7 or 15) | [TID U SID D | TL0PICIDX] | [P_DIFF N]... | [SS]
// SS: N_S(3) Y G RES(3) | Y: (N_S+1) x (u16 width, u16 height) | G: N_G, N_G x (TID U R RES,
// R x P_DIFF)
#include "media/vp9_payload.h"

namespace parley::media {

const char* toString(Vp9PayloadError e) {
    switch (e) {
    case Vp9PayloadError::ok:
        return "ok";
    case Vp9PayloadError::empty:
        return "empty VP9 payload";
    case Vp9PayloadError::truncatedDescriptor:
        return "VP9 payload descriptor truncated";
    case Vp9PayloadError::badScalability:
        return "malformed VP9 scalability structure";
    case Vp9PayloadError::noPayload:
        return "VP9 packet without payload";
    }
    return "unknown";
}

Vp9PayloadError parseVp9Descriptor(std::span<const std::uint8_t> p, Vp9Descriptor& out) {
    out = Vp9Descriptor{};
    if (p.empty())
        return Vp9PayloadError::empty;
    std::size_t pos = 0;
    auto need = [&](std::size_t n) { return pos + n <= p.size(); };
    std::uint8_t b0 = p[pos++];
    bool hasI = b0 & 0x80;
    out.interPredicted = b0 & 0x40;
    out.hasLayers = b0 & 0x20;
    out.flexible = b0 & 0x10;
    out.beginOfFrame = b0 & 0x08;
    out.endOfFrame = b0 & 0x04;
    out.hasScalability = b0 & 0x02;
    out.notReference = b0 & 0x01;
    if (hasI) {
        if (!need(1))
            return Vp9PayloadError::truncatedDescriptor;
        out.hasPictureId = true;
        if (p[pos] & 0x80) {
            if (!need(2))
                return Vp9PayloadError::truncatedDescriptor;
            out.pictureId = std::uint16_t((p[pos] & 0x7f) << 8 | p[pos + 1]);
            pos += 2;
        } else {
            out.pictureId = p[pos++] & 0x7f;
        }
    }
    if (out.hasLayers) {
        if (!need(1))
            return Vp9PayloadError::truncatedDescriptor;
        std::uint8_t l = p[pos++];
        out.temporalId = std::uint8_t(l >> 5);
        out.switchingUp = l & 0x10;
        out.spatialId = std::uint8_t((l >> 1) & 0x07);
        out.interLayerDependency = l & 0x01;
        if (!out.flexible) {
            if (!need(1))
                return Vp9PayloadError::truncatedDescriptor;
            out.tl0PicIdx = p[pos++];
        }
    }
    if (out.flexible && out.interPredicted) {
        for (int i = 0; i < 3; ++i) {
            if (!need(1))
                return Vp9PayloadError::truncatedDescriptor;
            std::uint8_t d = p[pos++];
            out.pDiffs.push_back(std::uint8_t(d >> 1));
            if (!(d & 0x01))
                break;
            if (i == 2)
                return Vp9PayloadError::truncatedDescriptor; // more than three references
        }
    }
    if (out.hasScalability) {
        if (!need(1))
            return Vp9PayloadError::badScalability;
        std::uint8_t ss = p[pos++];
        out.spatialLayers = (ss >> 5) + 1;
        bool y = ss & 0x10, g = ss & 0x08;
        if (y) {
            for (int i = 0; i < out.spatialLayers; ++i) {
                if (!need(4))
                    return Vp9PayloadError::badScalability;
                out.resolutions.emplace_back(std::uint16_t(p[pos] << 8 | p[pos + 1]),
                                             std::uint16_t(p[pos + 2] << 8 | p[pos + 3]));
                pos += 4;
            }
        }
        if (g) {
            if (!need(1))
                return Vp9PayloadError::badScalability;
            int groups = p[pos++];
            for (int i = 0; i < groups; ++i) {
                if (!need(1))
                    return Vp9PayloadError::badScalability;
                int refs = (p[pos++] >> 2) & 0x03;
                if (!need(std::size_t(refs)))
                    return Vp9PayloadError::badScalability;
                pos += std::size_t(refs);
            }
        }
    }
    if (pos >= p.size())
        return Vp9PayloadError::noPayload;
    out.headerSize = pos;
    return Vp9PayloadError::ok;
}

std::vector<Bytes> packetizeVp9(std::span<const std::uint8_t> frame, std::uint16_t pictureId,
                                bool keyframe, int width, int height, std::size_t maxPayload) {
    std::vector<Bytes> out;
    constexpr std::size_t kHeader = 3, kScalability = 5;
    if (frame.empty() || maxPayload <= kHeader + kScalability)
        return out;
    // The first packet of a keyframe carries the scalability structure: size for that.
    std::size_t room = maxPayload - kHeader - (keyframe ? kScalability : 0);
    std::size_t count = (frame.size() + room - 1) / room;
    std::size_t base = frame.size() / count, extra = frame.size() % count;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t len = base + (i < extra ? 1 : 0);
        bool first = i == 0, last = i + 1 == count;
        bool ss = keyframe && first;
        Bytes b;
        b.reserve(kHeader + (ss ? kScalability : 0) + len);
        b.push_back(std::uint8_t(0x80 | (keyframe ? 0 : 0x40) | (first ? 0x08 : 0) |
                                 (last ? 0x04 : 0) | (ss ? 0x02 : 0)));
        b.push_back(std::uint8_t(0x80 | ((pictureId >> 8) & 0x7f)));
        b.push_back(std::uint8_t(pictureId));
        if (ss) {
            b.push_back(0x10); // N_S = 0 (one spatial layer), Y = 1, G = 0
            b.push_back(std::uint8_t(width >> 8));
            b.push_back(std::uint8_t(width));
            b.push_back(std::uint8_t(height >> 8));
            b.push_back(std::uint8_t(height));
        }
        b.insert(b.end(), frame.begin() + std::ptrdiff_t(offset),
                 frame.begin() + std::ptrdiff_t(offset + len));
        offset += len;
        out.push_back(std::move(b));
    }
    return out;
}

} // namespace parley::media
