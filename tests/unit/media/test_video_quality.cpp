// End-to-end video quality: the moving test pattern through VP8, RTP, the simulated link,
// NACK/PLI feedback and frame assembly, judged on what is shown.
#include "media/loopback_call.h"

#include <catch2/catch.hpp>

using namespace parley::media;

namespace {

LoopbackConfig videoCall(double lossRate, std::uint64_t seed, Micros seconds) {
    LoopbackConfig c;
    c.video = std::make_unique<TestPatternSource>(640, 480, 30);
    c.videoEncoder.bitrate = 1000000;
    c.videoEncoder.threads = 1;
    c.duration = seconds;
    c.forward.lossRate = lossRate;
    c.forward.delay = 20000;
    c.forward.jitter = 5000;
    c.forward.seed = seed;
    c.backward.lossRate = lossRate;
    c.backward.delay = 20000;
    c.backward.seed = seed + 100;
    return c;
}

Micros longestGap(const std::vector<VideoFrameRecord>& frames) {
    Micros longest = 0;
    for (std::size_t i = 1; i < frames.size(); ++i)
        longest = std::max(longest, frames[i].shownAt - frames[i - 1].shownAt);
    return longest;
}

} // namespace

TEST_CASE("640x480@30 at 1 Mbit/s on a clean link: mean PSNR of at least 32 dB",
          "[video][quality]") {
    auto r = runLoopback(videoCall(0.0, 3, 3000000));
    const auto& v = r.video;
    INFO("frames sent " << v.sender.frames << " shown " << v.frames.size() << " PSNR mean "
                        << v.meanPsnr << " min " << v.minPsnr << " kbit/s " << v.bitrateKbps);
    REQUIRE(v.sender.frames == 90);
    REQUIRE(v.frames.size() == 90);
    REQUIRE(v.meanPsnr >= 32.0);
    REQUIRE(v.bitrateKbps < 1300); // the rate control holds the target
    REQUIRE(v.receiver.pliSent == 0);
    REQUIRE(v.sender.keyframes == 1);
}

TEST_CASE("5% random loss both ways: at least 95% of frames shown, no freeze over 500 ms",
          "[video][loss]") {
    auto r = runLoopback(videoCall(0.05, 5, 4000000));
    const auto& v = r.video;
    Micros gap = longestGap(v.frames);
    INFO("frames sent " << v.sender.frames << " shown " << v.frames.size() << " nacked "
                        << v.assembler.nacked << " retransmitted " << v.sender.retransmitted
                        << " recovered " << v.assembler.recovered << " pli " << v.receiver.pliSent
                        << " longest gap ms " << gap / 1000 << " PSNR " << v.meanPsnr);
    REQUIRE(double(r.forward.lost) > 0.03 * double(r.forward.sent));
    REQUIRE(v.sender.retransmitted > 0);
    REQUIRE(v.assembler.recovered > 0);
    REQUIRE(v.shownPercent >= 95.0);
    REQUIRE(gap <= 500000);
    REQUIRE(v.receiver.decodeErrors == 0);
}

TEST_CASE("a 2 s burst of 50% loss: a decodable picture within 1 s after it ends",
          "[video][burst]") {
    auto c = videoCall(0.0, 9, 5000000);
    const Micros burstStart = 1500000, burstEnd = 3500000;
    c.script = [&](Micros now, SimulatedLink& link) {
        link.setLossRate(now >= burstStart && now < burstEnd ? 0.5 : 0.0);
    };
    auto r = runLoopback(std::move(c));
    const auto& v = r.video;
    // The first frame captured after the burst that is shown, and when.
    Micros firstAfter = -1;
    for (const auto& f : v.frames)
        if (f.capturedAt >= burstEnd) {
            firstAfter = f.shownAt;
            break;
        }
    INFO("shown " << v.frames.size() << " of " << v.sender.frames << " pli " << v.receiver.pliSent
                  << " keyframes " << v.sender.keyframes << " first after " << firstAfter / 1000
                  << " ms, final bitrate " << v.finalBitrate);
    REQUIRE(firstAfter >= 0);
    REQUIRE(firstAfter - burstEnd <= 1000000);
    // And it keeps going: the last second is shown smoothly.
    std::size_t lastSecond = 0;
    for (const auto& f : v.frames)
        lastSecond += f.capturedAt >= 4000000 ? 1 : 0;
    REQUIRE(lastSecond >= 28);
    REQUIRE(v.receiver.decodeErrors == 0);
}
