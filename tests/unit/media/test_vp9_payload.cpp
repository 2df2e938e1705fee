#include "media/loopback_call.h"
#include "media/vp9_payload.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("a VP9 keyframe is split with B/E bits and a scalability structure, and parsed back",
          "[vp9]") {
    Bytes frame(2500);
    for (std::size_t i = 0; i < frame.size(); ++i)
        frame[i] = std::uint8_t(i * 13);
    auto packets = packetizeVp9(frame, 0x2345, true, 640, 480, 1000);
    REQUIRE(packets.size() == 3);
    Bytes joined;
    for (std::size_t i = 0; i < packets.size(); ++i) {
        REQUIRE(packets[i].size() <= 1000);
        Vp9Descriptor d;
        REQUIRE(parseVp9Descriptor(packets[i], d) == Vp9PayloadError::ok);
        REQUIRE(d.beginOfFrame == (i == 0));
        REQUIRE(d.endOfFrame == (i == 2));
        REQUIRE_FALSE(d.interPredicted);
        REQUIRE(d.pictureId == 0x2345);
        REQUIRE(d.keyframe() == (i == 0));
        REQUIRE(d.hasScalability == (i == 0));
        if (i == 0) {
            REQUIRE(d.spatialLayers == 1);
            REQUIRE(d.resolutions ==
                    std::vector<std::pair<std::uint16_t, std::uint16_t>>{{640, 480}});
        }
        joined.insert(joined.end(), packets[i].begin() + std::ptrdiff_t(d.headerSize),
                      packets[i].end());
    }
    REQUIRE(joined == frame);
    auto delta = packetizeVp9(Bytes(10, 1), 7, false, 640, 480, 1000);
    Vp9Descriptor d;
    REQUIRE(parseVp9Descriptor(delta[0], d) == Vp9PayloadError::ok);
    REQUIRE(d.interPredicted);
    REQUIRE_FALSE(d.keyframe());
    REQUIRE(d.headerSize == 3);
}

TEST_CASE("VP9 descriptors in flexible mode with layers and groups, truncations refused", "[vp9]") {
    // I P L F B E V Z = 1 1 1 1 1 0 1 0; 7-bit picture id; layer byte; two P_DIFFs; SS with
    // one layer, Y and G: size, one group with one reference; then payload.
    Bytes p = {0xfa, 0x11, 0x45, 0x03, 0x04, 0x18, 0, 64, 0, 48, 1, 0x24, 0x02, 0xaa};
    Vp9Descriptor d;
    REQUIRE(parseVp9Descriptor(p, d) == Vp9PayloadError::ok);
    REQUIRE(d.pictureId == 0x11);
    REQUIRE(d.temporalId == 2);
    REQUIRE(d.spatialId == 2);
    REQUIRE(d.pDiffs == std::vector<std::uint8_t>{1, 2});
    REQUIRE(d.resolutions.size() == 1);
    REQUIRE(d.headerSize == p.size() - 1);
    for (std::size_t n = 0; n + 1 < p.size(); ++n) {
        Bytes cut(p.begin(), p.begin() + std::ptrdiff_t(n));
        REQUIRE(parseVp9Descriptor(cut, d) != Vp9PayloadError::ok);
    }
}

TEST_CASE("VP9 end to end: clean PSNR, and 5% loss recovered", "[vp9][video]") {
    for (double loss : {0.0, 0.05}) {
        LoopbackConfig c;
        c.video = std::make_unique<TestPatternSource>(640, 480, 30);
        c.videoEncoder.codec = VideoCodec::vp9;
        c.videoEncoder.bitrate = 1000000;
        c.duration = 2000000;
        c.forward.lossRate = loss;
        c.forward.delay = 20000;
        c.forward.seed = 21;
        c.backward.lossRate = loss;
        c.backward.delay = 20000;
        c.backward.seed = 22;
        auto r = runLoopback(std::move(c));
        const auto& v = r.video;
        INFO("loss " << loss << " shown " << v.frames.size() << " of " << v.sender.frames
                     << " PSNR " << v.meanPsnr << " retransmitted " << v.sender.retransmitted);
        REQUIRE(v.sender.frames == 60);
        REQUIRE(v.shownPercent >= 95.0);
        REQUIRE(v.meanPsnr >= 32.0);
        REQUIRE(v.receiver.decodeErrors == 0);
    }
}
