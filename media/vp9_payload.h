// The VP9 RTP payload (RFC 9628): packetizing an encoded frame behind payload descriptors,
// and parsing a descriptor (every field, flexible and non-flexible mode) from untrusted bytes.
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <span>
#include <vector>

namespace parley::media {

enum class Vp9PayloadError { ok, empty, truncatedDescriptor, badScalability, noPayload };
const char* toString(Vp9PayloadError e);

struct Vp9Descriptor {
    bool interPredicted = false; // P
    bool flexible = false;       // F
    bool beginOfFrame = false;   // B
    bool endOfFrame = false;     // E
    bool hasScalability = false; // V
    bool notReference = false;   // Z
    bool hasPictureId = false;
    std::uint16_t pictureId = 0; // 7 or 15 bits
    bool hasLayers = false;      // L
    std::uint8_t temporalId = 0, spatialId = 0;
    bool switchingUp = false, interLayerDependency = false;
    std::uint8_t tl0PicIdx = 0;
    std::vector<std::uint8_t> pDiffs; // flexible mode reference differences
    int spatialLayers = 0;            // from the scalability structure
    std::vector<std::pair<std::uint16_t, std::uint16_t>> resolutions;
    std::size_t headerSize = 0;
    // First packet of a frame that is not inter-picture predicted.
    bool keyframe() const { return beginOfFrame && !interPredicted; }
};

Vp9PayloadError parseVp9Descriptor(std::span<const std::uint8_t> payload, Vp9Descriptor& out);

// Splits one encoded frame (one spatial layer) into payloads of at most `maxPayload` bytes:
// non-flexible mode, I=1 with a 15-bit picture id, P=0 on keyframes, B on the first and E on
// the last packet, and on a keyframe's first packet a scalability structure with the size.
std::vector<Bytes> packetizeVp9(std::span<const std::uint8_t> frame, std::uint16_t pictureId,
                                bool keyframe, int width, int height, std::size_t maxPayload);

} // namespace parley::media
