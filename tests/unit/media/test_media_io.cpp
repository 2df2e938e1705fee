// Sources and sinks: names, file formats, and validation by tools nobody here wrote
// (vpxdec, soxi, ffprobe) when they are installed.
#include "media/audio_io.h"
#include "media/loopback_call.h"
#include "media/video_io.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace parley::media;

namespace {

std::string tmpPath(const std::string& name) {
    return std::string(PARLEY_MEDIA_TMP) + "/media_" + name;
}

bool haveTool(const char* tool) {
    return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

std::string capture(const std::string& cmd) {
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof buf, p))
            out += buf;
        pclose(p);
    }
    return out;
}

} // namespace

TEST_CASE("source and sink names are parsed, bad ones explained", "[io]") {
    std::string err;
    REQUIRE(makeAudioSource("tone", err));
    REQUIRE(makeAudioSource("tone:1000", err));
    REQUIRE_FALSE(makeAudioSource("tone:abc", err));
    REQUIRE(err.find("tone:HZ") != std::string::npos);
    REQUIRE_FALSE(makeAudioSource("mic", err));
    REQUIRE_FALSE(makeAudioSource("wav:/nonexistent/x.wav", err));
    REQUIRE(err.find("cannot open") != std::string::npos);
    auto tp = makeVideoSource("testpattern:320x240@15", err);
    REQUIRE(tp);
    REQUIRE(tp->width() == 320);
    REQUIRE(tp->height() == 240);
    REQUIRE(tp->fps() == 15);
    REQUIRE(makeVideoSource("testpattern:320x240", err));
    REQUIRE_FALSE(makeVideoSource("testpattern:320x", err));
    REQUIRE_FALSE(makeVideoSource("testpattern:321x240", err));
    REQUIRE(makeVideoSink("null", VideoCodec::vp8, 320, 240, 15, err));
    REQUIRE_FALSE(makeVideoSink("window", VideoCodec::vp8, 320, 240, 15, err));
    REQUIRE(makeAudioSink("null", 1, err));
    REQUIRE_FALSE(makeAudioSink("speaker", 1, err));
}

TEST_CASE("the test pattern moves", "[io]") {
    auto a = TestPatternSource::render(320, 240, 0);
    auto b = TestPatternSource::render(320, 240, 1);
    REQUIRE(a.data.size() == VideoFrame::sizeFor(320, 240));
    REQUIRE(a.data != b.data);
    REQUIRE(psnrY(a, a) == 99);
    REQUIRE(psnrY(a, b) < 30);
}

TEST_CASE("WAV written is read back sample for sample, soxi agrees", "[io][validate]") {
    std::string path = tmpPath("tone.wav");
    std::string err;
    {
        auto sink = WavSink::open(path, 2, err);
        REQUIRE(sink);
        ToneSource tone(440, 2);
        AudioFrame f;
        for (int i = 0; i < 50; ++i) {
            tone.read(960, f);
            sink->write(f);
        }
        REQUIRE(sink->close(err));
    }
    auto src = WavSource::open(path, err);
    REQUIRE(src);
    REQUIRE(src->channels() == 2);
    ToneSource tone(440, 2);
    AudioFrame expect, got;
    int frames = 0;
    while (src->read(960, got)) {
        tone.read(960, expect);
        REQUIRE(got.samples == expect.samples);
        ++frames;
    }
    REQUIRE(frames == 50);
    if (!haveTool("soxi")) {
        WARN("soxi not installed (package sox): skipping the external check");
        return;
    }
    REQUIRE(capture("soxi -r '" + path + "'") == "48000\n");
    REQUIRE(capture("soxi -c '" + path + "'") == "2\n");
    REQUIRE(capture("soxi -s '" + path + "'") == "48000\n");
}

TEST_CASE("Y4M written is read back, ffprobe agrees", "[io][validate]") {
    std::string path = tmpPath("pattern.y4m");
    std::string err;
    {
        auto sink = Y4mSink::open(path, 15, err);
        REQUIRE(sink);
        for (int i = 0; i < 10; ++i)
            sink->write(TestPatternSource::render(160, 120, i), {});
        REQUIRE(sink->close(err));
    }
    auto src = Y4mSource::open(path, err);
    REQUIRE(src);
    REQUIRE(src->width() == 160);
    REQUIRE(src->fps() == 15);
    VideoFrame f;
    int n = 0;
    while (src->read(f)) {
        REQUIRE(f.data == TestPatternSource::render(160, 120, n).data);
        ++n;
    }
    REQUIRE(n == 10);
    if (!haveTool("ffprobe")) {
        WARN("ffprobe not installed (package ffmpeg): skipping the external check");
        return;
    }
    auto out = capture("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                       "stream=width,height,nb_read_frames -of csv=p=0 '" +
                       path + "'");
    REQUIRE(out == "160,120,10\n");
}

TEST_CASE("a call's IVF, WAV and Y4M output are valid for vpxdec, soxi and ffprobe",
          "[io][validate]") {
    std::string ivf = tmpPath("call.ivf"), wav = tmpPath("call.wav"), y4m = tmpPath("call.y4m");
    std::string err;
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440);
    c.video = std::make_unique<TestPatternSource>(320, 240, 30);
    c.videoEncoder.bitrate = 500000;
    c.audioSink = makeAudioSink("wav:" + wav, 1, err);
    c.videoSink = makeVideoSink("ivf:" + ivf, VideoCodec::vp8, 320, 240, 30, err);
    c.duration = 2000000;
    c.forward.lossRate = 0.05;
    c.forward.delay = 10000;
    c.forward.seed = 4;
    auto r = runLoopback(std::move(c));
    REQUIRE(r.error.empty());
    std::size_t shown = r.video.frames.size();
    REQUIRE(shown >= 57);
    // Our own reading of the IVF: header frame count.
    std::ifstream in(ivf, std::ios::binary);
    char header[32];
    in.read(header, 32);
    REQUIRE(std::string(header, 4) == "DKIF");
    REQUIRE(std::string(header + 8, 4) == "VP80");
    REQUIRE(std::size_t(std::uint8_t(header[24]) | std::uint8_t(header[25]) << 8) == shown);
    if (haveTool("vpxdec")) {
        auto status = capture("vpxdec --i420 -o /dev/null '" + ivf + "' 2>&1; echo rc=$?");
        REQUIRE(status.find("rc=0") != std::string::npos);
        // Count the decoded frames: raw I420 out, divided by the frame size.
        auto bytes = capture("vpxdec --i420 -o - '" + ivf + "' 2>/dev/null | wc -c");
        REQUIRE(std::stoull(bytes) == shown * VideoFrame::sizeFor(320, 240));
    } else {
        WARN("vpxdec not installed (package vpx-tools): skipping the external check");
    }
    if (haveTool("soxi")) {
        REQUIRE(capture("soxi -r '" + wav + "'") == "48000\n");
        // The output covers the input, within a frame.
        double seconds = std::stod(capture("soxi -D '" + wav + "'"));
        REQUIRE(seconds == Approx(2.0).margin(0.03));
    }
    // The same call's pictures as Y4M.
    LoopbackConfig c2;
    c2.video = std::make_unique<TestPatternSource>(320, 240, 30);
    c2.videoSink = makeVideoSink("y4m:" + y4m, VideoCodec::vp8, 320, 240, 30, err);
    c2.duration = 1000000;
    auto r2 = runLoopback(std::move(c2));
    REQUIRE(r2.video.frames.size() == 30);
    if (haveTool("ffprobe")) {
        auto out = capture("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                           "stream=width,height,nb_read_frames -of csv=p=0 '" +
                           y4m + "'");
        REQUIRE(out == "320,240,30\n");
    }
}
