// Media benchmarks: prints figures, asserts nothing. Run: build/bin/bench_media [seconds]
//  - VP8/VP9 encode and decode frames/s at 640x480 and 1280x720 with the call settings, next
//    to vpxenc --rt / vpxdec on the same raw frames (when vpx-tools is installed);
//  - Opus encode+decode real-time factor;
//  - end-to-end latency through the pipeline on a zero-delay link, p50/p95;
//  - CPU of one 720p30 audio+video leg (encode + decode), in % of one core.
#include "media/loopback_call.h"
#include "media/opus_codec.h"
#include "media/video_io.h"
#include "media/video_stream.h"
#include "media/vpx_codec.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

using namespace parley::media;
using Clock = std::chrono::steady_clock;

namespace {

double cpuSeconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

double wallSeconds(const std::string& cmd) {
    auto start = Clock::now();
    if (std::system(cmd.c_str()) != 0)
        return -1;
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void videoBench(VideoCodec codec, int w, int h, int frames, int cpuUsed, int bitrate) {
    std::vector<VideoFrame> raw;
    for (int i = 0; i < frames; ++i)
        raw.push_back(TestPatternSource::render(w, h, i));
    VideoEncoderSettings s;
    s.codec = codec;
    s.width = w;
    s.height = h;
    s.fps = 30;
    s.bitrate = bitrate;
    s.threads = 1;
    s.cpuUsed = cpuUsed;
    VideoEncoder enc(s);
    std::vector<Bytes> encoded;
    double t0 = cpuSeconds();
    for (int i = 0; i < frames; ++i)
        encoded.push_back(enc.encode(raw[std::size_t(i)], i).data);
    double encodeCpu = cpuSeconds() - t0;
    VideoDecoder dec(codec);
    VideoFrame out;
    t0 = cpuSeconds();
    for (auto& e : encoded)
        dec.decode(e, out);
    double decodeCpu = cpuSeconds() - t0;
    std::printf("%s %dx%d cpu-used %d, %d kbit/s, 1 thread: parley encode %.0f fps, decode %.0f "
                "fps\n",
                toString(codec), w, h, cpuUsed, bitrate / 1000, frames / encodeCpu,
                frames / decodeCpu);
    if (std::system("command -v vpxenc >/dev/null 2>&1") != 0) {
        std::printf("  (vpxenc not installed: no comparison)\n");
        return;
    }
    std::string y4m = "/tmp/parley_bench.y4m", ivf = "/tmp/parley_bench.ivf";
    std::string err;
    {
        auto sink = Y4mSink::open(y4m, 30, err);
        for (auto& f : raw)
            sink->write(f, {});
        sink->close(err);
    }
    std::string cmd =
        "vpxenc --quiet --codec=" + std::string(codec == VideoCodec::vp8 ? "vp8" : "vp9") +
        " --rt --lag-in-frames=0 --error-resilient=1 --end-usage=cbr --threads=1"
        " --cpu-used=" +
        std::to_string(cpuUsed) + " --target-bitrate=" + std::to_string(bitrate / 1000) +
        " --kf-max-dist=3000"
        " -o " +
        ivf + " " + y4m + " 2>/dev/null";
    // Reading the Y4M file is part of vpxenc's time; its cost is small next to encoding.
    double encWall = wallSeconds(cmd);
    double decWall = wallSeconds("vpxdec --i420 -o /dev/null " + ivf + " 2>/dev/null");
    std::printf("  vpxenc --rt %.0f fps (parley at %.0f%% of it), vpxdec %.0f fps (wall, incl. "
                "process start)\n",
                frames / encWall, 100.0 * (frames / encodeCpu) / (frames / encWall),
                frames / decWall);
    std::remove(y4m.c_str());
    std::remove(ivf.c_str());
}

void opusBench(int seconds) {
    OpusSettings s;
    OpusAudioEncoder enc(s);
    OpusAudioDecoder dec(1);
    ToneSource tone(440);
    AudioFrame in, out;
    int frames = seconds * 50;
    double t0 = cpuSeconds();
    for (int i = 0; i < frames; ++i) {
        tone.read(960, in);
        dec.decode(enc.encode(in.samples), out);
    }
    double cpu = cpuSeconds() - t0;
    std::printf("Opus 32 kbit/s mono 20 ms, complexity %d, FEC on: encode+decode %.0fx real "
                "time (%.3f ms per frame)\n",
                s.complexity, seconds / cpu, cpu * 1000 / frames);
}

double pct(std::vector<double> v, double p) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, std::size_t(p * double(v.size() - 1) + 0.5))];
}

void latencyBench(int seconds) {
    // Video: the real pipeline (encode, packetize, depacketize, assemble, decode) on a
    // zero-delay link, timed with a steady clock from "frame captured" to "frame decoded".
    std::vector<VideoFrame> raw;
    for (int i = 0; i < 30; ++i)
        raw.push_back(TestPatternSource::render(640, 480, i));
    VideoSenderConfig vc;
    VideoSender sender(vc);
    VideoReceiver receiver(VideoCodec::vp8, vc.payloadType);
    std::vector<double> video;
    for (int i = 0; i < seconds * 30; ++i) {
        auto start = Clock::now();
        Micros t = Micros(i) * 33333;
        for (auto& p : sender.sendFrame(raw[std::size_t(i) % raw.size()], t))
            receiver.onPacket(p, t);
        if (!receiver.poll(t).empty())
            video.push_back(
                std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    // Audio: framing and jitter buffer from the virtual-clock pipeline, plus measured codec time.
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440);
    c.duration = Micros(seconds) * 1000000;
    auto r = runLoopback(std::move(c));
    OpusAudioEncoder enc(OpusSettings{});
    OpusAudioDecoder dec(1);
    ToneSource tone(440);
    AudioFrame in, out;
    std::vector<double> codec;
    for (int i = 0; i < 500; ++i) {
        tone.read(960, in);
        auto start = Clock::now();
        dec.decode(enc.encode(in.samples), out);
        codec.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    std::printf("End-to-end latency on a zero-delay link:\n"
                "  audio p50 %.1f ms p95 %.1f ms (capture of a frame's first sample to its "
                "playout: 20 ms framing + 6.5 ms Opus look-ahead + jitter buffer, plus codec "
                "time p50 %.2f / p95 %.2f ms)\n"
                "  video 640x480 VP8 p50 %.1f ms p95 %.1f ms (capture to decoded, measured)\n",
                r.audio.latencyP50Ms + pct(codec, 0.5), r.audio.latencyP95Ms + pct(codec, 0.95),
                pct(codec, 0.5), pct(codec, 0.95), pct(video, 0.5), pct(video, 0.95));
}

void legBench(int seconds) {
    // Pre-render the pattern so that drawing it is not counted.
    std::vector<VideoFrame> frames;
    for (int i = 0; i < 60; ++i)
        frames.push_back(TestPatternSource::render(1280, 720, i));
    struct Loop : VideoSource {
        std::vector<VideoFrame>* frames;
        std::size_t i = 0;
        int width() const override { return 1280; }
        int height() const override { return 720; }
        int fps() const override { return 30; }
        bool read(VideoFrame& out) override {
            out = (*frames)[i++ % frames->size()];
            return true;
        }
    };
    auto loop = std::make_unique<Loop>();
    loop->frames = &frames;
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440);
    c.video = std::move(loop);
    c.videoEncoder.bitrate = 2000000;
    c.videoEncoder.cpuUsed = 8;
    c.duration = Micros(seconds) * 1000000;
    c.drain = 0;
    c.measureQuality = false;
    double t0 = cpuSeconds();
    auto r = runLoopback(std::move(c));
    double cpu = cpuSeconds() - t0;
    std::printf("One 720p30 leg (VP8 2 Mbit/s cpu-used 8 + Opus, encode + decode, 1 thread): "
                "%.1f%% of one core (%llu frames)\n",
                100.0 * cpu / seconds, (unsigned long long)r.video.sender.frames);
}

} // namespace

int main(int argc, char** argv) {
    int seconds = argc > 1 ? std::atoi(argv[1]) : 10;
    if (seconds <= 0)
        seconds = 10;
    int frames = seconds * 30;
    videoBench(VideoCodec::vp8, 640, 480, frames, 8, 1000000);
    videoBench(VideoCodec::vp8, 1280, 720, frames, 8, 2000000);
    videoBench(VideoCodec::vp9, 640, 480, frames, 8, 1000000);
    videoBench(VideoCodec::vp9, 1280, 720, frames, 8, 2000000);
    opusBench(seconds * 6);
    latencyBench(seconds);
    legBench(seconds);
    return 0;
}
