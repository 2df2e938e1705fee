#include "media/video_frame_assembler.h"

#include <catch2/catch.hpp>

using namespace parley::media;

namespace {
// Frame `f` made of `n` packets starting at sequence `seq`.
std::vector<VideoPacketInfo> frame(int f, int n, std::uint16_t seq, bool key) {
    std::vector<VideoPacketInfo> out;
    for (int i = 0; i < n; ++i) {
        VideoPacketInfo p;
        p.sequence = std::uint16_t(seq + i);
        p.timestamp = std::uint32_t(0xffffffff - 6000 + 3000 * f); // wraps after two frames
        p.marker = i == n - 1;
        p.frameStart = i == 0;
        p.keyframe = key && i == 0;
        p.pictureId = std::uint16_t((0x7ffe + f) & 0x7fff); // wraps too
        p.data = Bytes{std::uint8_t(f), std::uint8_t(i)};
        out.push_back(p);
    }
    return out;
}
} // namespace

TEST_CASE("frames come out whole, in order, across wrap-arounds, whatever the packet order",
          "[assembler]") {
    VideoFrameAssembler a;
    std::uint16_t seq = 65530;
    std::vector<VideoPacketInfo> all;
    for (int f = 0; f < 5; ++f) {
        auto ps = frame(f, 3, seq, f == 0);
        seq = std::uint16_t(seq + 3);
        all.insert(all.end(), ps.begin(), ps.end());
    }
    std::swap(all[1], all[2]);
    std::swap(all[4], all[7]);
    Micros now = 0;
    std::vector<std::int64_t> out;
    for (auto& p : all) {
        a.insert(p, now += 1000);
        while (auto f = a.nextFrame(now)) {
            REQUIRE(f->data.size() == 6);
            out.push_back(f->data[0]);
        }
    }
    REQUIRE(out == std::vector<std::int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("a missing packet is NACKed, retried, and completes its frame when it comes",
          "[assembler]") {
    FrameAssemblerConfig cfg;
    cfg.nackInterval = 40000;
    VideoFrameAssembler a(cfg);
    auto f0 = frame(0, 2, 100, true);
    auto f1 = frame(1, 3, 102, false);
    Micros now = 0;
    for (auto& p : f0)
        a.insert(p, now);
    REQUIRE(a.nextFrame(now));
    a.insert(f1[0], now);
    a.insert(f1[2], now);
    REQUIRE_FALSE(a.nextFrame(now));
    REQUIRE(a.takeNacks(now).empty()); // may be reordering
    REQUIRE(a.takeNacks(now + 10000) == std::vector<std::uint16_t>{103});
    REQUIRE(a.takeNacks(now + 20000).empty()); // not yet again
    REQUIRE(a.takeNacks(now + 50000) == std::vector<std::uint16_t>{103});
    a.insert(f1[1], now + 50000);
    auto f = a.nextFrame(now + 50000);
    REQUIRE(f);
    REQUIRE(f->data == Bytes{1, 0, 1, 1, 1, 2});
    REQUIRE(a.stats().recovered == 1);
    REQUIRE(a.takeNacks(now + 100000).empty());
}

TEST_CASE("a frame that cannot be completed in time leads to a keyframe request, the next "
          "keyframe resumes",
          "[assembler]") {
    FrameAssemblerConfig cfg;
    cfg.maxWait = 200000;
    VideoFrameAssembler a(cfg);
    Micros now = 0;
    for (auto& p : frame(0, 1, 10, true))
        a.insert(p, now);
    REQUIRE(a.nextFrame(now));
    // Frame 1 lost entirely; frames 2 and 3 arrive but are not decodable.
    for (int f = 2; f < 4; ++f)
        for (auto& p : frame(f, 1, std::uint16_t(10 + f), false))
            a.insert(p, now += 33000);
    REQUIRE_FALSE(a.nextFrame(now));
    REQUIRE_FALSE(a.keyframeNeeded(now));
    now += 200000;
    REQUIRE_FALSE(a.nextFrame(now));
    REQUIRE(a.keyframeNeeded(now));
    REQUIRE_FALSE(a.keyframeNeeded(now)); // once
    for (auto& p : frame(4, 2, 14, true))
        a.insert(p, now);
    auto f = a.nextFrame(now);
    REQUIRE(f);
    REQUIRE(f->keyframe);
    REQUIRE(a.stats().framesSkipped == 2);
    REQUIRE(a.stats().keyframeRequests == 1);
}
