// Named video sources and sinks: `testpattern[:WxH[@FPS]]` (moving, deterministic) and
// `y4m:PATH` (4:2:0) in; `ivf:PATH` (the encoded stream as received), `y4m:PATH` and `null`
// out.
#pragma once

#include "media/media_types.h"
#include "media/vpx_codec.h"

#include <cstdio>
#include <memory>
#include <span>
#include <string>

namespace parley::media {

class VideoSource {
public:
    virtual ~VideoSource() = default;
    virtual int width() const = 0;
    virtual int height() const = 0;
    virtual int fps() const = 0;
    // The next frame; false at the end of the source.
    virtual bool read(VideoFrame& out) = 0;
};

class VideoSink {
public:
    virtual ~VideoSink() = default;
    // `encoded` is the frame as it came off the wire, `frame` what the decoder made of it.
    virtual void write(const VideoFrame& frame, std::span<const std::uint8_t> encoded) = 0;
    virtual bool close(std::string& error) = 0;
};

// Moving content: a scrolling gradient, a bouncing box and moving colour bars.
class TestPatternSource : public VideoSource {
public:
    TestPatternSource(int width = 640, int height = 480, int fps = 30);
    int width() const override { return width_; }
    int height() const override { return height_; }
    int fps() const override { return fps_; }
    bool read(VideoFrame& out) override;
    static VideoFrame render(int width, int height, std::int64_t index);

private:
    int width_, height_, fps_;
    std::int64_t index_ = 0;
};

class Y4mSource : public VideoSource {
public:
    static std::unique_ptr<Y4mSource> open(const std::string& path, std::string& error);
    ~Y4mSource() override;
    int width() const override { return width_; }
    int height() const override { return height_; }
    int fps() const override { return fps_; }
    bool read(VideoFrame& out) override;

private:
    Y4mSource() = default;
    std::FILE* file_ = nullptr;
    int width_ = 0, height_ = 0, fps_ = 30;
};

class Y4mSink : public VideoSink {
public:
    static std::unique_ptr<Y4mSink> open(const std::string& path, int fps, std::string& error);
    ~Y4mSink() override;
    void write(const VideoFrame& frame, std::span<const std::uint8_t> encoded) override;
    bool close(std::string& error) override;

private:
    Y4mSink() = default;
    std::FILE* file_ = nullptr;
    int fps_ = 30;
    int width_ = 0, height_ = 0;
    bool ok_ = true;
};

class IvfSink : public VideoSink {
public:
    static std::unique_ptr<IvfSink> open(const std::string& path, VideoCodec codec, int width,
                                         int height, int fps, std::string& error);
    ~IvfSink() override;
    void write(const VideoFrame& frame, std::span<const std::uint8_t> encoded) override;
    bool close(std::string& error) override;

private:
    IvfSink() = default;
    std::FILE* file_ = nullptr;
    std::uint32_t frames_ = 0;
    bool ok_ = true;
};

class NullVideoSink : public VideoSink {
public:
    void write(const VideoFrame&, std::span<const std::uint8_t>) override {}
    bool close(std::string&) override { return true; }
};

std::unique_ptr<VideoSource> makeVideoSource(const std::string& spec, std::string& error);
std::unique_ptr<VideoSink> makeVideoSink(const std::string& spec, VideoCodec codec, int width,
                                         int height, int fps, std::string& error);

// Peak signal-to-noise ratio of the Y plane, in dB (99 for identical pictures).
double psnrY(const VideoFrame& a, const VideoFrame& b);

} // namespace parley::media
