// The VP8 RTP payload (RFC 7741): packetizing an encoded frame behind payload descriptors,
// and parsing a descriptor from untrusted bytes.
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <span>
#include <vector>

namespace parley::media {

enum class Vp8PayloadError { ok, empty, truncatedDescriptor, noPayload };
const char* toString(Vp8PayloadError e);

struct Vp8Descriptor {
    bool nonReference = false; // N
    bool start = false;        // S: first packet of a partition
    int partitionId = 0;       // PID
    bool hasPictureId = false;
    std::uint16_t pictureId = 0; // 7 or 15 bits
    bool hasTl0PicIdx = false;
    std::uint8_t tl0PicIdx = 0;
    bool hasTid = false;
    std::uint8_t tid = 0;
    bool layerSync = false;
    bool hasKeyIdx = false;
    std::uint8_t keyIdx = 0;
    std::size_t headerSize = 0; // bytes before the VP8 payload
    // True if this packet starts a frame (S=1, PID=0) whose VP8 header says keyframe.
    bool keyframe = false;
    bool frameStart() const { return start && partitionId == 0; }
};

Vp8PayloadError parseVp8Descriptor(std::span<const std::uint8_t> payload, Vp8Descriptor& out);

// Splits one encoded frame into RTP payloads of at most `maxPayload` bytes each (nearly equal
// sizes), each behind a descriptor with X=1, I=1 and a 15-bit picture id; S=1 on the first.
std::vector<Bytes> packetizeVp8(std::span<const std::uint8_t> frame, std::uint16_t pictureId,
                                std::size_t maxPayload);

} // namespace parley::media
