// libvpx VP8/VP9 encoder and decoder in real-time mode: CBR, no lag, error resilient, a
// thread count, keyframes on request, bitrate changeable while running.
#pragma once

#include "media/media_types.h"

#include <memory>
#include <span>
#include <string>

namespace parley::media {

enum class VideoCodec { vp8, vp9 };
const char* toString(VideoCodec c);

struct VideoEncoderSettings {
    VideoCodec codec = VideoCodec::vp8;
    int width = 640;
    int height = 480;
    int fps = 30;
    int bitrate = 1000000; // bits per second
    int threads = 1;
    int cpuUsed = 8;             // libvpx speed: higher is faster
    int keyframeInterval = 3000; // frames; keyframes come mostly on request
};

struct EncodedFrame {
    Bytes data;
    bool keyframe = false;
};

class VideoEncoder {
public:
    // Throws std::runtime_error when libvpx refuses the settings (start-up configuration).
    explicit VideoEncoder(const VideoEncoderSettings& settings);
    ~VideoEncoder();
    VideoEncoder(const VideoEncoder&) = delete;
    VideoEncoder& operator=(const VideoEncoder&) = delete;

    // Encodes one I420 frame of the configured size. `pts` counts frames.
    EncodedFrame encode(const VideoFrame& frame, std::int64_t pts, bool forceKeyframe = false);
    void setBitrate(int bitsPerSecond);
    int bitrate() const { return settings_.bitrate; }
    const VideoEncoderSettings& settings() const { return settings_; }

private:
    struct Impl;
    VideoEncoderSettings settings_;
    std::unique_ptr<Impl> impl_;
};

class VideoDecoder {
public:
    explicit VideoDecoder(VideoCodec codec, int threads = 1);
    ~VideoDecoder();
    VideoDecoder(const VideoDecoder&) = delete;
    VideoDecoder& operator=(const VideoDecoder&) = delete;

    // Decodes one complete frame; false if libvpx rejects it (then it needs a keyframe).
    bool decode(std::span<const std::uint8_t> frame, VideoFrame& out);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// VP8 frame header (RFC 6386 9.1): true if the frame is a keyframe.
bool isVp8Keyframe(std::span<const std::uint8_t> frame);

} // namespace parley::media
