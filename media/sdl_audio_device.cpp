#include "media/sdl_audio_device.h"

#define SDL_MAIN_HANDLED
#include <SDL.h>
#include <algorithm>

namespace parley::media {

namespace {

constexpr std::uint32_t kFrameMs = 20;
// Playback keeps at most this much queued before write() waits; capture keeps at most this
// much when nobody reads, dropping the oldest.
constexpr std::size_t kQueuedMsMax = 200;
constexpr std::size_t kCapturedMsMax = 1000;

bool initAudio(std::string& error) {
    if (SDL_InitSubSystem(SDL_INIT_AUDIO) != 0) {
        error = std::string("cannot open audio: no audio driver (") + SDL_GetError() +
                "); is a sound server running? SDL_AUDIODRIVER=pulseaudio, alsa or pipewire "
                "chooses one";
        return false;
    }
    return true;
}

// Checks `name` against the devices SDL lists, so that a wrong name gets the list back.
bool knownDevice(const std::string& name, bool capture, std::string& error) {
    int n = SDL_GetNumAudioDevices(capture ? 1 : 0);
    if (n < 0)
        return true; // the driver cannot list devices; let the open say whether it exists
    std::string names;
    for (int i = 0; i < n; ++i) {
        const char* d = SDL_GetAudioDeviceName(i, capture ? 1 : 0);
        if (!d)
            continue;
        if (name == d)
            return true;
        names += std::string(names.empty() ? "" : ", ") + "'" + d + "'";
    }
    error = std::string("cannot open ") + (capture ? "microphone" : "speaker") + " '" + name +
            "': no such device; " +
            (names.empty() ? std::string("the audio driver lists none")
                           : "the audio driver has " + names);
    return false;
}

std::uint32_t openDevice(const std::string& name, bool capture, int channels,
                         SDL_AudioCallback callback, void* user, std::string& error) {
    if (!name.empty() && !knownDevice(name, capture, error))
        return 0;
    SDL_AudioSpec want{};
    want.freq = kAudioRate;
    want.format = AUDIO_S16SYS;
    want.channels = std::uint8_t(channels);
    want.samples = kAudioRate * kFrameMs / 1000 / 2; // 10 ms device buffers
    want.callback = callback;
    want.userdata = user;
    // No allowed changes: SDL converts between this and what the device runs at.
    SDL_AudioDeviceID device = SDL_OpenAudioDevice(name.empty() ? nullptr : name.c_str(),
                                                   capture ? 1 : 0, &want, nullptr, 0);
    if (device == 0) {
        const char* what = capture ? "microphone" : "speaker";
        error = std::string("cannot open ") + what + " " +
                (name.empty() ? "(the default)" : "'" + name + "'") + ": " + SDL_GetError() +
                " (is it in use or unplugged?)";
    }
    return device;
}

} // namespace

std::unique_ptr<SdlAudioCapture> SdlAudioCapture::open(const std::string& name, int channels,
                                                       std::string& error) {
    std::unique_ptr<SdlAudioCapture> s(new SdlAudioCapture);
    if (!initAudio(error))
        return nullptr;
    s->subsystem_ = true;
    s->channels_ = channels;
    s->device_ = openDevice(name, true, channels, &SdlAudioCapture::onAudio, s.get(), error);
    if (s->device_ == 0)
        return nullptr;
    SDL_PauseAudioDevice(s->device_, 0);
    return s;
}

SdlAudioCapture::~SdlAudioCapture() {
    if (device_)
        SDL_CloseAudioDevice(device_);
    if (subsystem_)
        SDL_QuitSubSystem(SDL_INIT_AUDIO);
}

void SdlAudioCapture::onAudio(void* self, std::uint8_t* stream, int bytes) {
    auto* s = static_cast<SdlAudioCapture*>(self);
    std::size_t n = std::size_t(bytes) / sizeof(std::int16_t);
    const auto* samples = reinterpret_cast<const std::int16_t*>(stream);
    s->captured_.insert(s->captured_.end(), samples, samples + n);
    std::size_t max = kCapturedMsMax * kAudioRate / 1000 * std::size_t(s->channels_);
    if (s->captured_.size() > max)
        s->captured_.erase(s->captured_.begin(),
                           s->captured_.begin() + std::ptrdiff_t(s->captured_.size() - max));
}

bool SdlAudioCapture::read(int samples, AudioFrame& out) {
    if (device_ == 0)
        return false;
    out.channels = channels_;
    out.samples.resize(std::size_t(samples * channels_));
    std::size_t got = 0;
    std::uint32_t idleMs = 0;
    while (got < out.samples.size()) {
        SDL_LockAudioDevice(device_);
        std::size_t n = std::min(captured_.size(), out.samples.size() - got);
        std::copy_n(captured_.begin(), n, out.samples.begin() + std::ptrdiff_t(got));
        captured_.erase(captured_.begin(), captured_.begin() + std::ptrdiff_t(n));
        SDL_UnlockAudioDevice(device_);
        got += n;
        if (n > 0) {
            idleMs = 0;
            continue;
        }
        if (SDL_GetAudioDeviceStatus(device_) == SDL_AUDIO_STOPPED || idleMs >= 2000) {
            error_ = "the microphone stopped delivering audio (unplugged?)";
            return false;
        }
        SDL_Delay(2);
        idleMs += 2;
    }
    return true;
}

std::unique_ptr<SdlAudioPlayback> SdlAudioPlayback::open(const std::string& name, int channels,
                                                         std::string& error) {
    std::unique_ptr<SdlAudioPlayback> s(new SdlAudioPlayback);
    if (!initAudio(error))
        return nullptr;
    s->subsystem_ = true;
    s->channels_ = channels;
    s->device_ = openDevice(name, false, channels, &SdlAudioPlayback::onAudio, s.get(), error);
    if (s->device_ == 0)
        return nullptr;
    SDL_PauseAudioDevice(s->device_, 0);
    return s;
}

SdlAudioPlayback::~SdlAudioPlayback() {
    std::string ignored;
    close(ignored);
    if (subsystem_)
        SDL_QuitSubSystem(SDL_INIT_AUDIO);
}

void SdlAudioPlayback::onAudio(void* self, std::uint8_t* stream, int bytes) {
    auto* s = static_cast<SdlAudioPlayback*>(self);
    std::size_t want = std::size_t(bytes) / sizeof(std::int16_t);
    std::size_t n = std::min(want, s->queue_.size());
    auto* out = reinterpret_cast<std::int16_t*>(stream);
    std::copy_n(s->queue_.begin(), n, out);
    s->queue_.erase(s->queue_.begin(), s->queue_.begin() + std::ptrdiff_t(n));
    std::fill(out + n, out + want, std::int16_t(0)); // an underrun plays silence
}

std::size_t SdlAudioPlayback::queued() {
    SDL_LockAudioDevice(device_);
    std::size_t n = queue_.size();
    SDL_UnlockAudioDevice(device_);
    return n;
}

void SdlAudioPlayback::write(const AudioFrame& frame) {
    if (device_ == 0 || frame.channels != channels_)
        return; // the device was opened for the stream's channel count
    const std::size_t queuedMax = kQueuedMsMax * kAudioRate / 1000 * std::size_t(channels_);
    // Bounded wait: a device that stops playing must not hang the pipeline.
    for (int waited = 0; queued() > queuedMax && waited < 2000; waited += 2)
        SDL_Delay(2);
    SDL_LockAudioDevice(device_);
    queue_.insert(queue_.end(), frame.samples.begin(), frame.samples.end());
    SDL_UnlockAudioDevice(device_);
}

bool SdlAudioPlayback::close(std::string& error) {
    if (device_ == 0)
        return true;
    // Let what is queued play out, for at most its length and a margin.
    const std::size_t perMs = std::size_t(kAudioRate / 1000 * channels_);
    std::size_t limitMs = queued() / perMs + 500;
    for (std::size_t waited = 0; queued() > 0 && waited < limitMs; waited += 5)
        SDL_Delay(5);
    bool stopped = SDL_GetAudioDeviceStatus(device_) == SDL_AUDIO_STOPPED;
    SDL_CloseAudioDevice(device_);
    device_ = 0;
    if (stopped) {
        error = "the speaker stopped playing (unplugged?)";
        return false;
    }
    return true;
}

} // namespace parley::media
