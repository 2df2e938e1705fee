#include "media/vp8_payload.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("a VP8 frame is split into near-equal packets and parsed back", "[vp8]") {
    Bytes frame(3000);
    for (std::size_t i = 0; i < frame.size(); ++i)
        frame[i] = std::uint8_t(i * 7);
    frame[0] = 0x10; // P bit 0: keyframe
    auto packets = packetizeVp8(frame, 0x1234, 1200);
    REQUIRE(packets.size() == 3);
    Bytes joined;
    for (std::size_t i = 0; i < packets.size(); ++i) {
        REQUIRE(packets[i].size() <= 1200);
        Vp8Descriptor d;
        REQUIRE(parseVp8Descriptor(packets[i], d) == Vp8PayloadError::ok);
        REQUIRE(d.start == (i == 0));
        REQUIRE(d.partitionId == 0);
        REQUIRE(d.hasPictureId);
        REQUIRE(d.pictureId == 0x1234);
        REQUIRE(d.keyframe == (i == 0));
        REQUIRE(d.headerSize == 4);
        joined.insert(joined.end(), packets[i].begin() + 4, packets[i].end());
    }
    REQUIRE(joined == frame);
}

TEST_CASE("VP8 descriptors with every optional field, and truncated ones", "[vp8]") {
    // X=1 N=1 S=1 PID=0; I L T K; 7-bit picture id; TL0PICIDX; TID/Y/KEYIDX; payload (P=1).
    Bytes p = {0xb0, 0xf0, 0x05, 0x22, 0b10100011, 0x01};
    Vp8Descriptor d;
    REQUIRE(parseVp8Descriptor(p, d) == Vp8PayloadError::ok);
    REQUIRE(d.nonReference);
    REQUIRE(d.pictureId == 5);
    REQUIRE(d.tl0PicIdx == 0x22);
    REQUIRE(d.tid == 2);
    REQUIRE(d.layerSync);
    REQUIRE(d.keyIdx == 3);
    REQUIRE_FALSE(d.keyframe);
    REQUIRE(d.headerSize == 5);
    for (std::size_t n = 0; n < p.size(); ++n) {
        Bytes cut(p.begin(), p.begin() + std::ptrdiff_t(n));
        REQUIRE(parseVp8Descriptor(cut, d) != Vp8PayloadError::ok);
    }
}
