#include "media/video_io.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#ifdef PARLEY_DEVICES
#include "media/sdl_video_window.h"
#include "media/v4l2_camera.h"
#endif

namespace parley::media {

namespace {
int triangle(int v, int period) {
    v %= 2 * period;
    if (v < 0)
        v += 2 * period;
    return v < period ? v : 2 * period - 1 - v;
}
} // namespace

TestPatternSource::TestPatternSource(int width, int height, int fps)
    : width_(width), height_(height), fps_(fps) {}

VideoFrame TestPatternSource::render(int w, int h, std::int64_t t) {
    VideoFrame f;
    f.width = w;
    f.height = h;
    f.data.resize(VideoFrame::sizeFor(w, h));
    std::uint8_t* y = f.data.data();
    int ti = int(t % 100000);
    for (int row = 0; row < h; ++row)
        for (int col = 0; col < w; ++col)
            y[std::size_t(row) * w + col] =
                std::uint8_t(16 + triangle(col + row / 2 + 4 * ti, 256) * 219 / 255);
    // A band of fine texture scrolling sideways (motion search has to find it) and, over the
    // whole picture, low-amplitude noise that changes every frame, as a camera sensor makes.
    auto hash = [](std::uint32_t v) {
        v ^= v >> 16;
        v *= 0x7feb352du;
        v ^= v >> 15;
        v *= 0x846ca68bu;
        return v ^ (v >> 16);
    };
    for (int row = h * 2 / 3; row < h * 5 / 6; ++row)
        for (int col = 0; col < w; ++col) {
            auto tx = std::uint32_t(col + 3 * ti) / 2, tyy = std::uint32_t(row) / 2;
            y[std::size_t(row) * w + col] = std::uint8_t(60 + hash(tx * 7919u + tyy) % 140);
        }
    for (int row = 0; row < h; ++row)
        for (int col = 0; col < w; ++col) {
            std::uint8_t& px = y[std::size_t(row) * w + col];
            int noise =
                int(hash(std::uint32_t(row * w + col) ^ std::uint32_t(ti) * 2654435761u) % 5) - 2;
            px = std::uint8_t(std::clamp(int(px) + noise, 16, 235));
        }
    // A box bouncing across the picture.
    int box = std::max(8, std::min(w, h) / 6);
    int bx = triangle(7 * ti, std::max(1, w - box));
    int by = triangle(5 * ti, std::max(1, h - box));
    for (int row = by; row < by + box && row < h; ++row)
        for (int col = bx; col < bx + box && col < w; ++col) {
            bool border =
                row < by + 4 || row >= by + box - 4 || col < bx + 4 || col >= bx + box - 4;
            y[std::size_t(row) * w + col] = border ? 40 : 220;
        }
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    std::uint8_t* u = y + std::size_t(w) * h;
    std::uint8_t* v = u + std::size_t(cw) * ch;
    for (int row = 0; row < ch; ++row)
        for (int col = 0; col < cw; ++col) {
            u[std::size_t(row) * cw + col] = std::uint8_t(64 + triangle(col + 2 * ti, 128));
            v[std::size_t(row) * cw + col] = std::uint8_t(64 + triangle(row + ti, 128));
        }
    return f;
}

bool TestPatternSource::read(VideoFrame& out) {
    out = render(width_, height_, index_++);
    return true;
}

std::unique_ptr<Y4mSource> Y4mSource::open(const std::string& path, std::string& error) {
    std::unique_ptr<Y4mSource> s(new Y4mSource);
    s->file_ = std::fopen(path.c_str(), "rb");
    if (!s->file_) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    char line[512];
    if (!std::fgets(line, sizeof line, s->file_) || std::strncmp(line, "YUV4MPEG2 ", 10) != 0) {
        error = path + " is not a YUV4MPEG2 file";
        return nullptr;
    }
    for (char* tok = std::strtok(line + 10, " \n"); tok; tok = std::strtok(nullptr, " \n")) {
        if (tok[0] == 'W')
            s->width_ = std::atoi(tok + 1);
        else if (tok[0] == 'H')
            s->height_ = std::atoi(tok + 1);
        else if (tok[0] == 'F') {
            int num = 0, den = 1;
            if (std::sscanf(tok + 1, "%d:%d", &num, &den) == 2 && den > 0 && num > 0)
                s->fps_ = std::max(1, (num + den / 2) / den);
        } else if (tok[0] == 'C' && std::strncmp(tok + 1, "420", 3) != 0) {
            error = path + ": only 4:2:0 Y4M is supported (convert with "
                           "`ffmpeg -i in -pix_fmt yuv420p out.y4m`)";
            return nullptr;
        }
    }
    if (s->width_ <= 0 || s->height_ <= 0 || s->width_ > 4096 || s->height_ > 4096) {
        error = path + ": bad or missing frame size";
        return nullptr;
    }
    return s;
}

Y4mSource::~Y4mSource() {
    if (file_)
        std::fclose(file_);
}

bool Y4mSource::read(VideoFrame& out) {
    char line[256];
    if (!std::fgets(line, sizeof line, file_) || std::strncmp(line, "FRAME", 5) != 0)
        return false;
    out.width = width_;
    out.height = height_;
    out.data.resize(VideoFrame::sizeFor(width_, height_));
    return std::fread(out.data.data(), 1, out.data.size(), file_) == out.data.size();
}

std::unique_ptr<Y4mSink> Y4mSink::open(const std::string& path, int fps, std::string& error) {
    std::unique_ptr<Y4mSink> s(new Y4mSink);
    s->file_ = std::fopen(path.c_str(), "wb");
    if (!s->file_) {
        error = "cannot create " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    s->fps_ = fps;
    return s;
}

Y4mSink::~Y4mSink() {
    std::string ignored;
    close(ignored);
}

void Y4mSink::write(const VideoFrame& frame, std::span<const std::uint8_t>) {
    if (!file_)
        return;
    if (width_ == 0) {
        width_ = frame.width;
        height_ = frame.height;
        std::fprintf(file_, "YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n", width_, height_, fps_);
    }
    if (frame.width != width_ || frame.height != height_)
        return; // a Y4M stream has one size
    ok_ = std::fputs("FRAME\n", file_) >= 0 &&
          std::fwrite(frame.data.data(), 1, frame.data.size(), file_) == frame.data.size() && ok_;
}

bool Y4mSink::close(std::string& error) {
    if (!file_)
        return true;
    bool ok = std::fclose(file_) == 0 && ok_;
    file_ = nullptr;
    if (!ok)
        error = "writing the Y4M file failed";
    return ok;
}

namespace {
void putLe(std::uint8_t* p, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = std::uint8_t(v >> (8 * i));
}
} // namespace

std::unique_ptr<IvfSink> IvfSink::open(const std::string& path, VideoCodec codec, int width,
                                       int height, int fps, std::string& error) {
    std::unique_ptr<IvfSink> s(new IvfSink);
    s->file_ = std::fopen(path.c_str(), "wb");
    if (!s->file_) {
        error = "cannot create " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    std::uint8_t h[32] = {};
    std::memcpy(h, "DKIF", 4);
    putLe(h + 4, 0, 2);
    putLe(h + 6, 32, 2);
    std::memcpy(h + 8, codec == VideoCodec::vp8 ? "VP80" : "VP90", 4);
    putLe(h + 12, std::uint64_t(width), 2);
    putLe(h + 14, std::uint64_t(height), 2);
    putLe(h + 16, std::uint64_t(fps), 4);
    putLe(h + 20, 1, 4);
    s->ok_ = std::fwrite(h, 1, 32, s->file_) == 32;
    return s;
}

IvfSink::~IvfSink() {
    std::string ignored;
    close(ignored);
}

void IvfSink::write(const VideoFrame&, std::span<const std::uint8_t> encoded) {
    if (!file_)
        return;
    std::uint8_t h[12];
    putLe(h, encoded.size(), 4);
    putLe(h + 4, frames_, 8);
    ok_ = std::fwrite(h, 1, 12, file_) == 12 &&
          std::fwrite(encoded.data(), 1, encoded.size(), file_) == encoded.size() && ok_;
    ++frames_;
}

bool IvfSink::close(std::string& error) {
    if (!file_)
        return true;
    std::uint8_t count[4];
    putLe(count, frames_, 4);
    bool ok = std::fseek(file_, 24, SEEK_SET) == 0 && std::fwrite(count, 1, 4, file_) == 4;
    ok = std::fclose(file_) == 0 && ok && ok_;
    file_ = nullptr;
    if (!ok)
        error = "writing the IVF file failed";
    return ok;
}

namespace {
bool isDeviceSpec(const std::string& spec, const std::string& device) {
    return spec == device || spec.rfind(device + ":", 0) == 0;
}

#ifndef PARLEY_DEVICES
const char* const kNoDeviceSupport =
    "parley was built without device support: configure with -DPARLEY_DEVICES=ON";
#else
// camera[:/dev/videoN][:WxH[@FPS]]
std::unique_ptr<VideoSource> openCamera(const std::string& spec, std::string& error) {
    std::string device = "/dev/video0";
    int w = 640, h = 480, fps = 30;
    std::string rest = spec.size() > 6 ? spec.substr(7) : std::string();
    if (rest.rfind("/", 0) == 0) {
        auto colon = rest.find(':');
        device = rest.substr(0, colon);
        rest = colon == std::string::npos ? std::string() : rest.substr(colon + 1);
    }
    if (!rest.empty()) {
        char tail = 0;
        int n = std::sscanf(rest.c_str(), "%dx%d@%d%c", &w, &h, &fps, &tail);
        bool ok = (n == 2 && rest.find('@') == std::string::npos) || n == 3;
        if (!ok || w < 16 || h < 16 || w > 4096 || h > 4096 || fps < 1 || fps > 120) {
            error = "bad camera '" + spec +
                    "': use camera[:/dev/videoN][:WxH[@FPS]], sizes 16..4096, 1..120 fps";
            return nullptr;
        }
    }
    return V4l2Camera::open(device, w, h, fps, error);
}
#endif
} // namespace

std::unique_ptr<VideoSource> makeVideoSource(const std::string& spec, std::string& error) {
    if (spec == "testpattern")
        return std::make_unique<TestPatternSource>();
    if (spec.rfind("testpattern:", 0) == 0) {
        int w = 0, h = 0, fps = 30;
        char tail = 0;
        std::string arg = spec.substr(12);
        int n = std::sscanf(arg.c_str(), "%dx%d@%d%c", &w, &h, &fps, &tail);
        bool ok = (n == 2 && arg.find('@') == std::string::npos) || n == 3;
        if (!ok || w < 16 || h < 16 || w > 4096 || h > 4096 || w % 2 || h % 2 || fps < 1 ||
            fps > 120) {
            error = "bad test pattern '" + spec +
                    "': use testpattern[:WxH[@FPS]], even sizes 16..4096, 1..120 fps";
            return nullptr;
        }
        return std::make_unique<TestPatternSource>(w, h, fps);
    }
    if (spec.rfind("y4m:", 0) == 0)
        return Y4mSource::open(spec.substr(4), error);
    if (isDeviceSpec(spec, "camera")) {
#ifdef PARLEY_DEVICES
        return openCamera(spec, error);
#else
        error = std::string(kNoDeviceSupport) + " (for '" + spec + "')";
        return nullptr;
#endif
    }
#ifdef PARLEY_DEVICES
    error = "unknown video source '" + spec +
            "': use testpattern[:WxH[@FPS]], y4m:PATH or camera[:/dev/videoN][:WxH[@FPS]]";
#else
    error = "unknown video source '" + spec + "': use testpattern[:WxH[@FPS]] or y4m:PATH";
#endif
    return nullptr;
}

std::unique_ptr<VideoSink> makeVideoSink(const std::string& spec, VideoCodec codec, int width,
                                         int height, int fps, std::string& error) {
    if (spec == "null")
        return std::make_unique<NullVideoSink>();
    if (spec.rfind("ivf:", 0) == 0)
        return IvfSink::open(spec.substr(4), codec, width, height, fps, error);
    if (spec.rfind("y4m:", 0) == 0)
        return Y4mSink::open(spec.substr(4), fps, error);
    if (spec == "window") {
#ifdef PARLEY_DEVICES
        return SdlVideoWindow::open("parley", width, height, fps, error);
#else
        error = std::string(kNoDeviceSupport) + " (for '" + spec + "')";
        return nullptr;
#endif
    }
#ifdef PARLEY_DEVICES
    error = "unknown video sink '" + spec + "': use ivf:PATH, y4m:PATH, window or null";
#else
    error = "unknown video sink '" + spec + "': use ivf:PATH, y4m:PATH or null";
#endif
    return nullptr;
}

double psnrY(const VideoFrame& a, const VideoFrame& b) {
    if (a.width != b.width || a.height != b.height || a.width <= 0)
        return 0;
    std::size_t n = std::size_t(a.width) * a.height;
    if (a.data.size() < n || b.data.size() < n)
        return 0;
    double sse = 0;
    for (std::size_t i = 0; i < n; ++i) {
        int d = int(a.data[i]) - int(b.data[i]);
        sse += double(d * d);
    }
    if (sse == 0)
        return 99;
    return 10 * std::log10(255.0 * 255.0 * double(n) / sse);
}

} // namespace parley::media
