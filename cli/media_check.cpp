// `parley media-check`: runs sender -> simulated link -> receiver in this process on a
// virtual clock and prints the stats, so a user can check media before calling. Sends no
// packet anywhere.
#include "media_check.h"

#include "media/loopback_call.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

namespace parley::cli {

namespace {

struct MediaCheckOptions {
    std::string audio;
    std::string video;
    double loss = 0;
    double seconds = 5;
    std::string outAudio;
    std::string outVideo;
    int videoBitrate = 1000;
    int audioBitrate = 32;
    double delayMs = 20;
    double jitterMs = 0;
    std::uint64_t seed = 1;
    std::string codec = "vp8";
    bool json = false;
};

nlohmann::json toJson(const media::LoopbackResult& r) {
    nlohmann::json j;
    if (r.audio.enabled) {
        const auto& a = r.audio;
        j["audio"] = {
            {"bitrate_kbps", a.bitrateKbps},
            {"packets_sent", a.sender.packets},
            {"packets_received", a.receiver.packets},
            {"loss_percent", a.lossPercent},
            {"recovered_fec", a.jitter.fec},
            {"concealed", a.jitter.concealed},
            {"underruns", a.jitter.underruns},
            {"dtx_frames", a.jitter.dtx},
            {"late", a.jitter.late},
            {"dropped_for_delay", a.jitter.dropped},
            {"jitter_ms", a.jitterMs},
            {"jitter_buffer_delay_ms", a.jitter.meanDelayMs()},
            {"latency_p50_ms", a.latencyP50Ms},
            {"latency_p95_ms", a.latencyP95Ms},
            {"input_ms", double(a.inputSamples) / 48.0},
            {"output_ms", double(a.outputSamples) / 48.0},
        };
    }
    if (r.video.enabled) {
        const auto& v = r.video;
        j["video"] = {
            {"bitrate_kbps", v.bitrateKbps},
            {"final_target_kbps", v.finalBitrate / 1000},
            {"frames_sent", v.sender.frames},
            {"keyframes_sent", v.sender.keyframes},
            {"frames_decoded", v.receiver.framesDecoded},
            {"frames_dropped",
             v.sender.frames - std::min<std::uint64_t>(v.sender.frames, v.receiver.framesDecoded)},
            {"shown_percent", v.shownPercent},
            {"loss_percent", v.lossPercent},
            {"nacked", v.assembler.nacked},
            {"retransmitted", v.sender.retransmitted},
            {"recovered_nack", v.assembler.recovered},
            {"picture_loss_requests", v.receiver.pliSent},
            {"freezes", v.receiver.freezes},
            {"longest_gap_ms", double(v.receiver.longestGap) / 1000.0},
            {"decode_errors", v.receiver.decodeErrors},
            {"psnr_mean_db", v.meanPsnr},
            {"psnr_min_db", v.minPsnr},
            {"jitter_ms", v.jitterMs},
            {"latency_p50_ms", v.latencyP50Ms},
            {"latency_p95_ms", v.latencyP95Ms},
        };
    }
    if (r.audio.enabled && r.video.enabled)
        j["av_sync_ms"] = r.avSyncMs;
    j["link"] = {{"packets_sent", r.forward.sent},
                 {"packets_lost", r.forward.lost + r.forward.queueDrops},
                 {"feedback_sent", r.backward.sent},
                 {"feedback_lost", r.backward.lost}};
    return j;
}

void printHuman(const media::LoopbackResult& r) {
    if (r.audio.enabled) {
        const auto& a = r.audio;
        std::printf("audio  %.1f kbit/s, %llu packets, %.1f%% lost on the link\n", a.bitrateKbps,
                    (unsigned long long)a.sender.packets, a.lossPercent);
        std::printf("       recovered by FEC %llu, concealed %llu, underruns %llu, late %llu\n",
                    (unsigned long long)a.jitter.fec, (unsigned long long)a.jitter.concealed,
                    (unsigned long long)a.jitter.underruns, (unsigned long long)a.jitter.late);
        std::printf("       jitter %.1f ms, buffer %.1f ms, latency p50 %.1f ms p95 %.1f ms\n",
                    a.jitterMs, a.jitter.meanDelayMs(), a.latencyP50Ms, a.latencyP95Ms);
    }
    if (r.video.enabled) {
        const auto& v = r.video;
        std::printf("video  %.1f kbit/s (target now %d kbit/s), %llu frames, %llu keyframes\n",
                    v.bitrateKbps, v.finalBitrate / 1000, (unsigned long long)v.sender.frames,
                    (unsigned long long)v.sender.keyframes);
        std::printf("       shown %.1f%%, freezes %llu (longest gap %.0f ms), PSNR %.1f dB "
                    "(min %.1f)\n",
                    v.shownPercent, (unsigned long long)v.receiver.freezes,
                    double(v.receiver.longestGap) / 1000.0, v.meanPsnr, v.minPsnr);
        std::printf(
            "       NACKed %llu, retransmitted %llu, recovered %llu, keyframe requests "
            "%llu\n",
            (unsigned long long)v.assembler.nacked, (unsigned long long)v.sender.retransmitted,
            (unsigned long long)v.assembler.recovered, (unsigned long long)v.receiver.pliSent);
        std::printf("       latency p50 %.1f ms p95 %.1f ms\n", v.latencyP50Ms, v.latencyP95Ms);
    }
    if (r.audio.enabled && r.video.enabled)
        std::printf("sync   video behind audio by %.1f ms\n", r.avSyncMs);
}

// A source or sink that is there but cannot be opened (a missing file, a busy or absent
// device) is a runtime error; a bad or unknown name, or one this build lacks, a usage error.
int openFailureExit(const std::string& error) {
    return error.rfind("cannot", 0) == 0 ? 1 : 2;
}

int run(const MediaCheckOptions& o, bool audioGiven, bool videoGiven) {
    if (o.loss < 0 || o.loss > 100) {
        std::cerr << "parley media-check: --loss must be between 0 and 100\n";
        return 2;
    }
    if (!(o.seconds > 0 && o.seconds <= 600)) {
        std::cerr << "parley media-check: --seconds must be between 0 and 600\n";
        return 2;
    }
    if (o.codec != "vp8" && o.codec != "vp9") {
        std::cerr << "parley media-check: --codec must be vp8 or vp9\n";
        return 2;
    }
    media::VideoCodec codec = o.codec == "vp9" ? media::VideoCodec::vp9 : media::VideoCodec::vp8;
    media::LoopbackConfig c;
    c.videoEncoder.codec = codec;
    std::string error;
    // With neither given, check both with the built-in sources.
    bool both = !audioGiven && !videoGiven;
    if (audioGiven || both) {
        c.audio = media::makeAudioSource(audioGiven ? o.audio : "tone", error);
        if (!c.audio) {
            std::cerr << "parley media-check: " << error << "\n";
            return openFailureExit(error);
        }
    }
    if (videoGiven || both) {
        c.video = media::makeVideoSource(videoGiven ? o.video : "testpattern", error);
        if (!c.video) {
            std::cerr << "parley media-check: " << error << "\n";
            return openFailureExit(error);
        }
    }
    if (!o.outAudio.empty()) {
        if (!c.audio) {
            std::cerr << "parley media-check: --out-audio needs an audio source\n";
            return 2;
        }
        c.audioSink = media::makeAudioSink(o.outAudio, c.audio->channels(), error);
        if (!c.audioSink) {
            std::cerr << "parley media-check: " << error << "\n";
            return openFailureExit(error);
        }
    }
    if (!o.outVideo.empty()) {
        if (!c.video) {
            std::cerr << "parley media-check: --out-video needs a video source\n";
            return 2;
        }
        c.videoSink = media::makeVideoSink(o.outVideo, codec, c.video->width(), c.video->height(),
                                           c.video->fps(), error);
        if (!c.videoSink) {
            std::cerr << "parley media-check: " << error << "\n";
            return openFailureExit(error);
        }
    }
    c.duration = media::Micros(o.seconds * 1e6);
    c.opus.bitrate = o.audioBitrate * 1000;
    c.videoEncoder.bitrate = o.videoBitrate * 1000;
    c.forward.lossRate = o.loss / 100.0;
    c.forward.delay = media::Micros(o.delayMs * 1000);
    c.forward.jitter = media::Micros(o.jitterMs * 1000);
    c.forward.seed = o.seed;
    c.backward.lossRate = o.loss / 100.0;
    c.backward.delay = media::Micros(o.delayMs * 1000);
    c.backward.seed = o.seed + 1;
    c.seed = o.seed;
    media::LoopbackResult r;
    try {
        r = media::runLoopback(std::move(c));
    } catch (const std::exception& e) {
        std::cerr << "parley media-check: " << e.what() << "\n";
        return 1;
    }
    if (o.json)
        std::cout << toJson(r).dump() << "\n";
    else
        printHuman(r);
    if (!r.error.empty()) {
        std::cerr << "parley media-check: " << r.error << "\n";
        return 1;
    }
    return 0;
}

} // namespace

MediaCheckCommand addMediaCheckCommand(CLI::App& app) {
    auto o = std::make_shared<MediaCheckOptions>();
    auto* cmd = app.add_subcommand(
        "media-check", "run audio and video through a simulated link in this process and print "
                       "the stats (no network)");
    auto* audio = cmd->add_option("--audio", o->audio, "audio source: tone[:HZ] or wav:PATH");
    auto* video =
        cmd->add_option("--video", o->video, "video source: testpattern[:WxH[@FPS]] or y4m:PATH");
    cmd->add_option("--loss", o->loss, "random loss on the link, percent")->capture_default_str();
    cmd->add_option("--seconds", o->seconds, "length of the check")->capture_default_str();
    cmd->add_option("--out-audio", o->outAudio, "audio sink: wav:PATH or null");
    cmd->add_option("--out-video", o->outVideo, "video sink: ivf:PATH, y4m:PATH or null");
    cmd->add_option("--delay", o->delayMs, "one-way link delay, ms")->capture_default_str();
    cmd->add_option("--jitter", o->jitterMs, "link jitter, ms")->capture_default_str();
    cmd->add_option("--video-bitrate", o->videoBitrate, "kbit/s")->capture_default_str();
    cmd->add_option("--audio-bitrate", o->audioBitrate, "kbit/s")->capture_default_str();
    cmd->add_option("--seed", o->seed, "seed of the simulated link")->capture_default_str();
    cmd->add_option("--codec", o->codec, "video codec: vp8 or vp9")->capture_default_str();
    cmd->add_flag("--json", o->json, "print JSON");
    MediaCheckCommand result;
    result.command = cmd;
    result.run = [o, audio, video] { return run(*o, audio->count() > 0, video->count() > 0); };
    return result;
}

} // namespace parley::cli
