#include "media/v4l2_camera.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace parley::media {

namespace {

constexpr int kBufferCount = 4;
constexpr int kFrameTimeoutMs = 2000;

int xioctl(int fd, unsigned long request, void* arg) {
    int r;
    do
        r = ::ioctl(fd, request, arg);
    while (r == -1 && errno == EINTR);
    return r;
}

std::string openHint(int err) {
    switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
        return " (no camera there: `ls /dev/video*` lists them; choose one with "
               "camera:/dev/videoN)";
    case EBUSY:
        return " (another program is using the camera: close it and try again)";
    case EACCES:
    case EPERM:
        return " (no permission: add yourself to the video group, then log in again)";
    default:
        return "";
    }
}

} // namespace

std::unique_ptr<V4l2Camera> V4l2Camera::open(const std::string& device, int width, int height,
                                             int fps, std::string& error) {
    std::unique_ptr<V4l2Camera> c(new V4l2Camera);
    c->device_ = device;
    const std::string what = "cannot open camera " + device + ": ";
    c->fd_ = ::open(device.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (c->fd_ < 0) {
        int err = errno;
        error = what + std::strerror(err) + openHint(err);
        return nullptr;
    }
    v4l2_capability cap{};
    if (xioctl(c->fd_, VIDIOC_QUERYCAP, &cap) != 0) {
        error = what + "not a V4L2 device (" + std::strerror(errno) + ")";
        return nullptr;
    }
    std::uint32_t caps =
        (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
    if (!(caps & V4L2_CAP_VIDEO_CAPTURE) || !(caps & V4L2_CAP_STREAMING)) {
        error = what + "it does not capture video by streaming (a metadata node? try the "
                       "next /dev/videoN)";
        return nullptr;
    }

    // The formats we can convert, best first: no conversion, then a cheap one.
    bool haveI420 = false, haveNv12 = false, haveYuyv = false;
    v4l2_fmtdesc desc{};
    desc.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    for (desc.index = 0; xioctl(c->fd_, VIDIOC_ENUM_FMT, &desc) == 0; ++desc.index) {
        haveI420 |= desc.pixelformat == V4L2_PIX_FMT_YUV420;
        haveNv12 |= desc.pixelformat == V4L2_PIX_FMT_NV12;
        haveYuyv |= desc.pixelformat == V4L2_PIX_FMT_YUYV;
    }
    std::uint32_t pixelFormat = haveI420   ? V4L2_PIX_FMT_YUV420
                                : haveNv12 ? V4L2_PIX_FMT_NV12
                                : haveYuyv ? V4L2_PIX_FMT_YUYV
                                           : 0;
    if (pixelFormat == 0) {
        error = what + "it offers none of YUYV, NV12 or I420 (MJPEG-only cameras are not "
                       "supported yet)";
        return nullptr;
    }
    v4l2_format fmt{};
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    fmt.fmt.pix.width = std::uint32_t(width);
    fmt.fmt.pix.height = std::uint32_t(height);
    fmt.fmt.pix.pixelformat = pixelFormat;
    fmt.fmt.pix.field = V4L2_FIELD_NONE;
    if (xioctl(c->fd_, VIDIOC_S_FMT, &fmt) != 0) {
        int err = errno;
        error = what + "setting the format failed: " + std::strerror(err) + openHint(err);
        return nullptr;
    }
    if (fmt.fmt.pix.pixelformat != pixelFormat || fmt.fmt.pix.width < 16 ||
        fmt.fmt.pix.height < 16 || fmt.fmt.pix.width > 4096 || fmt.fmt.pix.height > 4096 ||
        fmt.fmt.pix.width % 2 != 0 || fmt.fmt.pix.height % 2 != 0) {
        error = what + "the driver did not accept the format (an even size of 16..4096 in "
                       "YUYV, NV12 or I420)";
        return nullptr;
    }
    c->pixelFormat_ = pixelFormat;
    c->width_ = int(fmt.fmt.pix.width);
    c->height_ = int(fmt.fmt.pix.height);
    std::uint32_t minStride =
        pixelFormat == V4L2_PIX_FMT_YUYV ? fmt.fmt.pix.width * 2 : fmt.fmt.pix.width;
    c->stride_ = int(std::max(fmt.fmt.pix.bytesperline, minStride));

    // The frame rate is a request; many drivers only offer a few.
    v4l2_streamparm parm{};
    parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    parm.parm.capture.timeperframe.numerator = 1;
    parm.parm.capture.timeperframe.denominator = std::uint32_t(fps);
    c->fps_ = fps;
    if (xioctl(c->fd_, VIDIOC_S_PARM, &parm) == 0 &&
        (parm.parm.capture.capability & V4L2_CAP_TIMEPERFRAME) &&
        parm.parm.capture.timeperframe.numerator > 0) {
        const auto& t = parm.parm.capture.timeperframe;
        c->fps_ = std::max(1, int((t.denominator + t.numerator / 2) / t.numerator));
    }

    v4l2_requestbuffers req{};
    req.count = kBufferCount;
    req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    req.memory = V4L2_MEMORY_MMAP;
    if (xioctl(c->fd_, VIDIOC_REQBUFS, &req) != 0 || req.count < 2) {
        int err = errno;
        error = what + "no capture buffers (" + std::strerror(err) + ")" + openHint(err);
        return nullptr;
    }
    for (std::uint32_t i = 0; i < req.count; ++i) {
        v4l2_buffer buf{};
        buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = V4L2_MEMORY_MMAP;
        buf.index = i;
        if (xioctl(c->fd_, VIDIOC_QUERYBUF, &buf) != 0) {
            error = what + "querying a buffer failed: " + std::strerror(errno);
            return nullptr;
        }
        void* p =
            ::mmap(nullptr, buf.length, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd_, buf.m.offset);
        if (p == MAP_FAILED) {
            error = what + "mapping a buffer failed: " + std::strerror(errno);
            return nullptr;
        }
        c->buffers_.push_back({p, buf.length});
        if (xioctl(c->fd_, VIDIOC_QBUF, &buf) != 0) {
            error = what + "queueing a buffer failed: " + std::strerror(errno);
            return nullptr;
        }
    }
    v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(c->fd_, VIDIOC_STREAMON, &type) != 0) {
        int err = errno;
        error = what + "starting the stream failed: " + std::strerror(err) + openHint(err);
        return nullptr;
    }
    c->streaming_ = true;
    return c;
}

V4l2Camera::~V4l2Camera() {
    if (streaming_) {
        v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        xioctl(fd_, VIDIOC_STREAMOFF, &type);
    }
    for (const auto& b : buffers_)
        ::munmap(b.start, b.length);
    if (fd_ >= 0)
        ::close(fd_);
}

bool V4l2Camera::read(VideoFrame& out) {
    if (!streaming_)
        return false;
    for (;;) {
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, kFrameTimeoutMs);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            error_ = "camera " + device_ + " delivered no frame for 2 s";
            return false;
        }
        if (r < 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
            error_ = "camera " + device_ + " stopped (unplugged?)";
            return false;
        }
        v4l2_buffer buf{};
        buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = V4L2_MEMORY_MMAP;
        if (xioctl(fd_, VIDIOC_DQBUF, &buf) != 0) {
            if (errno == EAGAIN)
                continue;
            error_ = "camera " + device_ + ": taking a frame failed: " + std::strerror(errno);
            return false;
        }
        bool usable = buf.index < buffers_.size() && !(buf.flags & V4L2_BUF_FLAG_ERROR);
        if (usable)
            convert(static_cast<const std::uint8_t*>(buffers_[buf.index].start),
                    std::min<std::size_t>(buf.bytesused, buffers_[buf.index].length), out);
        if (xioctl(fd_, VIDIOC_QBUF, &buf) != 0) {
            error_ = "camera " + device_ + ": returning a buffer failed: " + std::strerror(errno);
            return false;
        }
        if (usable && !out.data.empty())
            return true;
    }
}

// To I420. A buffer shorter than the format says (a corrupt frame) leaves `out` empty.
void V4l2Camera::convert(const std::uint8_t* src, std::size_t size, VideoFrame& out) const {
    const int w = width_, h = height_, cw = (w + 1) / 2, ch = (h + 1) / 2;
    const std::size_t stride = std::size_t(stride_);
    out.width = w;
    out.height = h;
    out.data.resize(VideoFrame::sizeFor(w, h));
    std::uint8_t* y = out.data.data();
    std::uint8_t* u = y + std::size_t(w) * h;
    std::uint8_t* v = u + std::size_t(cw) * ch;
    auto need = [&](std::size_t bytes) {
        if (size >= bytes)
            return true;
        out.data.clear();
        return false;
    };
    if (pixelFormat_ == V4L2_PIX_FMT_YUYV) {
        if (!need(stride * std::size_t(h)))
            return;
        for (int row = 0; row < h; ++row) {
            const std::uint8_t* line = src + stride * std::size_t(row);
            for (int col = 0; col < w; ++col)
                y[std::size_t(row) * w + col] = line[2 * col];
        }
        // Chroma from each pair of lines, averaged (4:2:2 to 4:2:0).
        for (int row = 0; row < ch; ++row) {
            const std::uint8_t* a = src + stride * std::size_t(2 * row);
            const std::uint8_t* b = 2 * row + 1 < h ? a + stride : a;
            for (int col = 0; col < cw; ++col) {
                std::size_t i = std::size_t(4 * col);
                u[std::size_t(row) * cw + col] = std::uint8_t((a[i + 1] + b[i + 1] + 1) / 2);
                v[std::size_t(row) * cw + col] = std::uint8_t((a[i + 3] + b[i + 3] + 1) / 2);
            }
        }
        return;
    }
    // Planar formats: the chroma planes follow the luma plane at the same line stride
    // (NV12: interleaved UV, full stride; I420: U then V, half stride).
    const bool nv12 = pixelFormat_ == V4L2_PIX_FMT_NV12;
    const std::size_t cstride = nv12 ? stride : stride / 2;
    const std::size_t lumaBytes = stride * std::size_t(h);
    if (!need(lumaBytes + cstride * std::size_t(ch) * (nv12 ? 1 : 2)))
        return;
    for (int row = 0; row < h; ++row)
        std::memcpy(y + std::size_t(row) * w, src + stride * std::size_t(row), std::size_t(w));
    const std::uint8_t* c0 = src + lumaBytes;
    for (int row = 0; row < ch; ++row) {
        const std::uint8_t* line = c0 + cstride * std::size_t(row);
        if (nv12) {
            for (int col = 0; col < cw; ++col) {
                u[std::size_t(row) * cw + col] = line[2 * col];
                v[std::size_t(row) * cw + col] = line[2 * col + 1];
            }
        } else {
            std::memcpy(u + std::size_t(row) * cw, line, std::size_t(cw));
            std::memcpy(v + std::size_t(row) * cw, line + cstride * std::size_t(ch),
                        std::size_t(cw));
        }
    }
}

} // namespace parley::media
