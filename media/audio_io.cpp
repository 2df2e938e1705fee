#include "media/audio_io.h"

#include <cmath>
#include <cstring>
#include <numbers>

#ifdef PARLEY_DEVICES
#include "media/sdl_audio_device.h"
#endif

namespace parley::media {

ToneSource::ToneSource(double hz, int channels, double amplitude)
    : hz_(hz), channels_(channels), amplitude_(amplitude) {}

bool ToneSource::read(int samples, AudioFrame& out) {
    out.channels = channels_;
    out.samples.resize(std::size_t(samples * channels_));
    for (int i = 0; i < samples; ++i) {
        double t = double(position_++) / kAudioRate;
        auto v = std::int16_t(
            std::lround(amplitude_ * 32767.0 * std::sin(2 * std::numbers::pi * hz_ * t)));
        for (int c = 0; c < channels_; ++c)
            out.samples[std::size_t(i * channels_ + c)] = v;
    }
    return true;
}

namespace {
std::uint32_t le32(const std::uint8_t* p) {
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
           std::uint32_t(p[3]) << 24;
}
std::uint16_t le16(const std::uint8_t* p) {
    return std::uint16_t(p[0] | p[1] << 8);
}
void putLe32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = std::uint8_t(v >> (8 * i));
}
void putLe16(std::uint8_t* p, std::uint16_t v) {
    p[0] = std::uint8_t(v);
    p[1] = std::uint8_t(v >> 8);
}
} // namespace

std::unique_ptr<WavSource> WavSource::open(const std::string& path, std::string& error) {
    std::unique_ptr<WavSource> s(new WavSource);
    s->file_ = std::fopen(path.c_str(), "rb");
    if (!s->file_) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    std::uint8_t riff[12];
    if (std::fread(riff, 1, 12, s->file_) != 12 || std::memcmp(riff, "RIFF", 4) != 0 ||
        std::memcmp(riff + 8, "WAVE", 4) != 0) {
        error = path + " is not a WAV file";
        return nullptr;
    }
    bool haveFormat = false;
    for (;;) {
        std::uint8_t chunk[8];
        if (std::fread(chunk, 1, 8, s->file_) != 8) {
            error = path + ": no data chunk";
            return nullptr;
        }
        std::uint32_t size = le32(chunk + 4);
        if (std::memcmp(chunk, "fmt ", 4) == 0) {
            std::uint8_t fmt[16];
            if (size < 16 || std::fread(fmt, 1, 16, s->file_) != 16) {
                error = path + ": bad format chunk";
                return nullptr;
            }
            std::uint16_t format = le16(fmt);
            s->channels_ = le16(fmt + 2);
            std::uint32_t rate = le32(fmt + 4);
            std::uint16_t bits = le16(fmt + 14);
            if ((format != 1 && format != 0xfffe) || bits != 16 || rate != 48000 ||
                (s->channels_ != 1 && s->channels_ != 2)) {
                error = path + ": need 16-bit PCM at 48000 Hz, mono or stereo (convert with "
                               "`sox in.wav -r 48000 -b 16 out.wav`)";
                return nullptr;
            }
            std::fseek(s->file_, long(size - 16 + (size & 1)), SEEK_CUR);
            haveFormat = true;
        } else if (std::memcmp(chunk, "data", 4) == 0) {
            if (!haveFormat) {
                error = path + ": data before format";
                return nullptr;
            }
            s->remaining_ = size;
            return s;
        } else {
            std::fseek(s->file_, long(size + (size & 1)), SEEK_CUR);
        }
    }
}

WavSource::~WavSource() {
    if (file_)
        std::fclose(file_);
}

bool WavSource::read(int samples, AudioFrame& out) {
    std::size_t want = std::size_t(samples * channels_);
    if (remaining_ < want * 2)
        return false;
    std::vector<std::uint8_t> raw(want * 2);
    if (std::fread(raw.data(), 1, raw.size(), file_) != raw.size())
        return false;
    remaining_ -= raw.size();
    out.channels = channels_;
    out.samples.resize(want);
    for (std::size_t i = 0; i < want; ++i)
        out.samples[i] = std::int16_t(le16(raw.data() + 2 * i));
    return true;
}

std::unique_ptr<WavSink> WavSink::open(const std::string& path, int channels, std::string& error) {
    std::unique_ptr<WavSink> s(new WavSink);
    s->file_ = std::fopen(path.c_str(), "wb");
    if (!s->file_) {
        error = "cannot create " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    s->channels_ = channels;
    std::uint8_t header[44] = {};
    std::fwrite(header, 1, 44, s->file_); // written for real by close()
    return s;
}

WavSink::~WavSink() {
    std::string ignored;
    close(ignored);
}

void WavSink::write(const AudioFrame& frame) {
    if (!file_)
        return;
    std::vector<std::uint8_t> raw(frame.samples.size() * 2);
    for (std::size_t i = 0; i < frame.samples.size(); ++i)
        putLe16(raw.data() + 2 * i, std::uint16_t(frame.samples[i]));
    dataBytes_ += std::fwrite(raw.data(), 1, raw.size(), file_);
}

bool WavSink::close(std::string& error) {
    if (!file_)
        return true;
    std::uint8_t h[44];
    std::memcpy(h, "RIFF", 4);
    putLe32(h + 4, std::uint32_t(36 + dataBytes_));
    std::memcpy(h + 8, "WAVEfmt ", 8);
    putLe32(h + 16, 16);
    putLe16(h + 20, 1);
    putLe16(h + 22, std::uint16_t(channels_));
    putLe32(h + 24, kAudioRate);
    putLe32(h + 28, std::uint32_t(kAudioRate * channels_ * 2));
    putLe16(h + 32, std::uint16_t(channels_ * 2));
    putLe16(h + 34, 16);
    std::memcpy(h + 36, "data", 4);
    putLe32(h + 40, std::uint32_t(dataBytes_));
    bool ok = std::fseek(file_, 0, SEEK_SET) == 0 && std::fwrite(h, 1, 44, file_) == 44;
    ok = std::fclose(file_) == 0 && ok;
    file_ = nullptr;
    if (!ok)
        error = "writing the WAV file failed";
    return ok;
}

namespace {
bool isDeviceSpec(const std::string& spec, const std::string& device) {
    return spec == device || spec.rfind(device + ":", 0) == 0;
}

#ifdef PARLEY_DEVICES
// What follows `device:`; empty for the default device.
std::string deviceArgument(const std::string& spec, const std::string& device) {
    return spec.size() > device.size() ? spec.substr(device.size() + 1) : std::string();
}
#else
const char* const kNoDeviceSupport =
    "parley was built without device support: configure with -DPARLEY_DEVICES=ON";
#endif
} // namespace

std::unique_ptr<AudioSource> makeAudioSource(const std::string& spec, std::string& error) {
    if (spec == "tone")
        return std::make_unique<ToneSource>();
    if (spec.rfind("tone:", 0) == 0) {
        char* end = nullptr;
        double hz = std::strtod(spec.c_str() + 5, &end);
        if (!end || *end != '\0' || !(hz > 0 && hz < 24000)) {
            error = "bad tone frequency in '" + spec + "': use tone:HZ with 0 < HZ < 24000";
            return nullptr;
        }
        return std::make_unique<ToneSource>(hz);
    }
    if (spec.rfind("wav:", 0) == 0)
        return WavSource::open(spec.substr(4), error);
    if (isDeviceSpec(spec, "mic")) {
#ifdef PARLEY_DEVICES
        return SdlAudioCapture::open(deviceArgument(spec, "mic"), 1, error);
#else
        error = std::string(kNoDeviceSupport) + " (for '" + spec + "')";
        return nullptr;
#endif
    }
#ifdef PARLEY_DEVICES
    error = "unknown audio source '" + spec + "': use tone[:HZ], wav:PATH or mic[:NAME]";
#else
    error = "unknown audio source '" + spec + "': use tone[:HZ] or wav:PATH";
#endif
    return nullptr;
}

std::unique_ptr<AudioSink> makeAudioSink(const std::string& spec, int channels,
                                         std::string& error) {
    if (spec == "null")
        return std::make_unique<NullAudioSink>();
    if (spec.rfind("wav:", 0) == 0)
        return WavSink::open(spec.substr(4), channels, error);
    if (isDeviceSpec(spec, "speaker")) {
#ifdef PARLEY_DEVICES
        return SdlAudioPlayback::open(deviceArgument(spec, "speaker"), channels, error);
#else
        error = std::string(kNoDeviceSupport) + " (for '" + spec + "')";
        return nullptr;
#endif
    }
#ifdef PARLEY_DEVICES
    error = "unknown audio sink '" + spec + "': use wav:PATH, speaker[:NAME] or null";
#else
    error = "unknown audio sink '" + spec + "': use wav:PATH or null";
#endif
    return nullptr;
}

} // namespace parley::media
