// Real audio devices through SDL2: `mic[:NAME]` (capture) and `speaker[:NAME]` (playback),
// 16-bit PCM at 48 kHz, mono or stereo (SDL converts from whatever the device runs at).
// Built only with -DPARLEY_DEVICES=ON.
#pragma once

#include "media/audio_io.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

namespace parley::media {

// Both use an SDL callback rather than SDL's own queue: SDL gives a queue's thread a 64 KiB
// stack, smaller than parley's thread-local storage, and that thread cannot start.
//
// Blocks in read() until the device has captured the samples asked for, so a pipeline fed by
// it runs in real time.
class SdlAudioCapture : public AudioSource {
public:
    // An empty `name` is the system's default microphone. nullptr with a message.
    static std::unique_ptr<SdlAudioCapture> open(const std::string& name, int channels,
                                                 std::string& error);
    ~SdlAudioCapture() override;
    int channels() const override { return channels_; }
    // False when the device stops delivering (unplugged); error() says why.
    bool read(int samples, AudioFrame& out) override;
    const std::string& error() const { return error_; }

private:
    SdlAudioCapture() = default;
    static void onAudio(void* self, std::uint8_t* stream, int bytes);
    std::uint32_t device_ = 0;
    std::deque<std::int16_t> captured_; // filled by SDL's audio thread, under the device lock
    int channels_ = 1;
    bool subsystem_ = false;
    std::string error_;
};

// Queues what it is given; write() waits while more than a few frames are queued, so a
// source faster than real time (a file, the test tone) plays at its real speed. close()
// waits until the queue has played.
class SdlAudioPlayback : public AudioSink {
public:
    static std::unique_ptr<SdlAudioPlayback> open(const std::string& name, int channels,
                                                  std::string& error);
    ~SdlAudioPlayback() override;
    void write(const AudioFrame& frame) override;
    bool close(std::string& error) override;

private:
    SdlAudioPlayback() = default;
    static void onAudio(void* self, std::uint8_t* stream, int bytes);
    std::size_t queued();
    std::uint32_t device_ = 0;
    std::deque<std::int16_t> queue_; // drained by SDL's audio thread, under the device lock
    int channels_ = 1;
    bool subsystem_ = false;
};

} // namespace parley::media
