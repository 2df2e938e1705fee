// The senders adapt: video bitrate to loss reports and the receiver's target, audio playout
// delay to jitter.
#include "media/loopback_call.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("video backs off below a bandwidth cap and keeps showing frames", "[adapt][video]") {
    LoopbackConfig c;
    c.video = std::make_unique<TestPatternSource>(640, 480, 30);
    c.videoEncoder.bitrate = 1500000;
    c.duration = 6000000;
    c.forward.bandwidthBps = 600000;
    c.forward.maxQueueDelay = 250000;
    c.forward.delay = 20000;
    c.backward.delay = 20000;
    c.measureQuality = false;
    auto r = runLoopback(std::move(c));
    const auto& v = r.video;
    INFO("final bitrate " << v.finalBitrate << " changes " << v.sender.bitrateChanges
                          << " queue drops " << r.forward.queueDrops << " shown "
                          << v.shownPercent);
    // It starts at 2.5 times the capacity and ends up sending, on average, within it (it
    // keeps probing around the cap), while frames keep coming.
    REQUIRE(v.sender.bitrateChanges > 0);
    REQUIRE(v.bitrateKbps < 620);
    REQUIRE(v.shownPercent > 90);
}

TEST_CASE("the receiver's target bitrate caps the sender", "[adapt][video]") {
    VideoSenderConfig vc;
    vc.encoder.width = 160;
    vc.encoder.height = 120;
    vc.encoder.bitrate = 800000;
    VideoSender sender(vc);
    Feedback f;
    f.targetBitrate = 300000;
    f.report = ReceiverReport{};
    sender.onFeedback(f, 0);
    REQUIRE(sender.bitrate() == 300000);
    f.targetBitrate = 5000000; // never above the configured maximum
    for (int i = 0; i < 50; ++i)
        sender.onFeedback(f, i * 250000);
    REQUIRE(sender.bitrate() == 800000);
    f.report->fractionLost = 128; // 50 % loss: back off by a quarter
    sender.onFeedback(f, 50 * 250000);
    REQUIRE(sender.bitrate() == 600000);
}

TEST_CASE("audio playout delay grows with jitter, few late packets, length kept",
          "[adapt][audio]") {
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440);
    c.duration = 6000000;
    c.forward.delay = 30000;
    c.forward.jitter = 40000;
    c.forward.seed = 17;
    auto r = runLoopback(std::move(c));
    const auto& a = r.audio;
    INFO("jitter " << a.jitterMs << " buffer " << a.jitter.meanDelayMs() << " latency p50 "
                   << a.latencyP50Ms << " late " << a.jitter.late << " underruns "
                   << a.jitter.underruns << " dropped " << a.jitter.dropped << " in "
                   << a.inputSamples << " out " << a.outputSamples);
    REQUIRE(a.jitterMs > 5);
    // Without jitter the latency would be 30 + 20 + 6.5 ms: the buffer adds to cover jitter.
    REQUIRE(a.latencyP50Ms > 56.5 + 20);
    REQUIRE(a.latencyP50Ms < 56.5 + 150);
    // Adapting costs a few frames of concealment at first, then late packets are rare.
    REQUIRE(a.jitter.late <= 10);
    REQUIRE(double(a.jitter.normal) > 0.95 * double(a.sender.packets));
    // Delay grown by holding is output time: within the delay bound of the input's length.
    REQUIRE(a.outputSamples >= a.inputSamples);
    REQUIRE(a.outputSamples <= a.inputSamples + 48 * 300);
}

TEST_CASE("DTX: silence is not sent and plays as silence", "[adapt][audio]") {
    struct Bursts : AudioSource {
        ToneSource tone{440};
        int n = 0;
        int channels() const override { return 1; }
        bool read(int samples, AudioFrame& out) override {
            tone.read(samples, out);
            if ((n++ / 50) % 2 == 1) // one second on, one second off
                std::fill(out.samples.begin(), out.samples.end(), 0);
            return true;
        }
    };
    LoopbackConfig c;
    c.audio = std::make_unique<Bursts>();
    c.opus.dtx = true;
    c.duration = 4500000; // ends talking: silence at the very end would not be output
    c.forward.delay = 10000;
    auto r = runLoopback(std::move(c));
    const auto& a = r.audio;
    INFO("frames " << a.sender.frames << " packets " << a.sender.packets << " dtx " << a.jitter.dtx
                   << " concealed " << a.jitter.concealed);
    REQUIRE(a.sender.dtxFrames > 50);
    REQUIRE(a.jitter.dtx > 40);
    REQUIRE(a.jitter.concealed == 0);
    REQUIRE(a.outputSamples + 960 >= a.inputSamples);
}

TEST_CASE("stereo audio crosses the link", "[adapt][audio]") {
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440, 2);
    c.duration = 1000000;
    c.keepAudio = true;
    auto r = runLoopback(std::move(c));
    REQUIRE(r.audio.outputSamples == r.audio.inputSamples);
    REQUIRE(r.audioOut.size() == 2 * r.audio.outputSamples);
}

TEST_CASE("lip sync: video is rendered with the audio captured at the same moment",
          "[adapt][sync]") {
    for (bool sync : {false, true}) {
        LoopbackConfig c;
        c.audio = std::make_unique<ToneSource>(440);
        c.video = std::make_unique<TestPatternSource>(320, 240, 30);
        c.videoEncoder.bitrate = 400000;
        c.duration = 3000000;
        c.forward.delay = 20000;
        c.forward.jitter = 20000;
        c.forward.seed = 8;
        c.measureQuality = false;
        c.lipSync = sync;
        auto r = runLoopback(std::move(c));
        INFO("lip sync " << sync << ": audio p50 " << r.audio.latencyP50Ms << " video p50 "
                         << r.video.latencyP50Ms << " offset " << r.avSyncMs);
        REQUIRE(r.video.shownPercent >= 95);
        if (sync) // within one video frame interval and an audio frame
            REQUIRE(std::abs(r.avSyncMs) < 20.0);
        else // audio waits in its jitter buffer and framing: video would be well ahead
            REQUIRE(r.avSyncMs < -20.0);
    }
}
