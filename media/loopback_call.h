// One media call leg run in a single process on a virtual clock: source -> encoder -> RTP ->
// simulated link -> receiver -> sink, with feedback going back over a second simulated
// link. Used by the tests, the benchmarks and `parley media-check`.
#pragma once

#include "media/audio_io.h"
#include "media/audio_stream.h"
#include "media/simulated_link.h"
#include "media/video_io.h"
#include "media/video_stream.h"

#include <functional>
#include <memory>
#include <vector>

namespace parley::media {

// First byte of every datagram on the link: which flow it belongs to (DESIGN.md section 6).
enum class Flow : std::uint8_t { audioRtp = 0, videoRtp = 1, audioFeedback = 2, videoFeedback = 3 };

struct LoopbackConfig {
    std::unique_ptr<AudioSource> audio;
    std::unique_ptr<VideoSource> video;
    std::unique_ptr<AudioSink> audioSink;
    std::unique_ptr<VideoSink> videoSink;
    OpusSettings opus;
    VideoEncoderSettings videoEncoder; // size and rate come from the source
    LinkConfig forward;
    LinkConfig backward;
    Micros duration = 5000000;
    Micros drain = 600000;      // after the sources stop, time for the receivers to finish
    bool measureQuality = true; // PSNR of every shown frame against its source frame
    bool keepAudio = false;     // keep input and output PCM in the result
    bool lipSync = true;        // with audio and video: render video in sync with audio
    std::uint64_t seed = 1;     // initial RTP sequence numbers and timestamps
    // Called every millisecond before anything else: scripted link changes.
    std::function<void(Micros now, SimulatedLink& forward)> script;
};

struct AudioLegStats {
    bool enabled = false;
    AudioSenderStats sender;
    AudioReceiverStats receiver;
    AudioJitterStats jitter;
    double bitrateKbps = 0; // RTP payload bitrate sent
    double lossPercent = 0; // of packets sent, as seen by the receiver
    double jitterMs = 0;
    double latencyP50Ms = 0, latencyP95Ms = 0; // capture to playout, plus codec look-ahead
    std::uint64_t inputSamples = 0;            // per channel
    std::uint64_t outputSamples = 0;           // per channel, covering the input's time span
};

struct VideoFrameRecord {
    Micros shownAt = 0;
    Micros capturedAt = 0;
    double psnr = 0;
    bool keyframe = false;
};

struct VideoLegStats {
    bool enabled = false;
    VideoSenderStats sender;
    VideoReceiverStats receiver;
    FrameAssemblerStats assembler;
    double bitrateKbps = 0; // RTP bytes of first transmissions
    int finalBitrate = 0;   // the encoder's target at the end
    double lossPercent = 0; // first transmissions lost on the link, as the receiver saw it
    double jitterMs = 0;
    double shownPercent = 0; // frames shown / frames sent
    double meanPsnr = 0, minPsnr = 0;
    double latencyP50Ms = 0, latencyP95Ms = 0;
    std::vector<VideoFrameRecord> frames;
};

struct LoopbackResult {
    AudioLegStats audio;
    VideoLegStats video;
    LinkStats forward, backward;
    double avSyncMs = 0;                         // median video latency minus median audio latency
    std::vector<std::int16_t> audioIn, audioOut; // with keepAudio
    std::string error;                           // a sink that failed to write
};

// Runs the whole call; blocking, single-threaded, as fast as the codecs go.
LoopbackResult runLoopback(LoopbackConfig config);

} // namespace parley::media
