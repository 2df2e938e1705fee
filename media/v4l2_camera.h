// `camera[:/dev/videoN][:WxH[@FPS]]`: a V4L2 camera, mmap streaming, YUYV, NV12 or I420
// converted to I420. Built only with -DPARLEY_DEVICES=ON.
#pragma once

#include "media/video_io.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace parley::media {

class V4l2Camera : public VideoSource {
public:
    // Asks for `width`x`height` at `fps`; the driver may choose the nearest it supports,
    // which width()/height()/fps() then report. nullptr with a message.
    static std::unique_ptr<V4l2Camera> open(const std::string& device, int width, int height,
                                            int fps, std::string& error);
    ~V4l2Camera() override;
    int width() const override { return width_; }
    int height() const override { return height_; }
    int fps() const override { return fps_; }
    // Blocks until the camera delivers a frame; false when it stops (unplugged, timeout),
    // error() says why.
    bool read(VideoFrame& out) override;
    const std::string& error() const { return error_; }

private:
    struct Buffer {
        void* start = nullptr;
        std::size_t length = 0;
    };
    V4l2Camera() = default;
    void convert(const std::uint8_t* src, std::size_t size, VideoFrame& out) const;

    int fd_ = -1;
    std::string device_;
    std::vector<Buffer> buffers_;
    std::uint32_t pixelFormat_ = 0;
    int stride_ = 0; // bytes per line of the first plane
    int width_ = 0, height_ = 0, fps_ = 30;
    bool streaming_ = false;
    std::string error_;
};

} // namespace parley::media
