// Named audio sources and sinks: `tone[:HZ]`, `wav:PATH` (16-bit PCM, 48 kHz, mono or
// stereo) in; `wav:PATH` and `null` out.
#pragma once

#include "media/media_types.h"

#include <cstdio>
#include <memory>
#include <string>

namespace parley::media {

class AudioSource {
public:
    virtual ~AudioSource() = default;
    virtual int channels() const = 0;
    // Fills `out` with `samples` samples per channel; false at the end of the source.
    virtual bool read(int samples, AudioFrame& out) = 0;
};

class AudioSink {
public:
    virtual ~AudioSink() = default;
    virtual void write(const AudioFrame& frame) = 0;
    // Finishes the file; false with a message on an I/O error.
    virtual bool close(std::string& error) = 0;
};

class ToneSource : public AudioSource {
public:
    explicit ToneSource(double hz = 440.0, int channels = 1, double amplitude = 0.5);
    int channels() const override { return channels_; }
    bool read(int samples, AudioFrame& out) override;

private:
    double hz_;
    int channels_;
    double amplitude_;
    std::uint64_t position_ = 0;
};

// Reads a RIFF/WAVE file of 16-bit PCM at 48 kHz. open() returns nullptr with a message.
class WavSource : public AudioSource {
public:
    static std::unique_ptr<WavSource> open(const std::string& path, std::string& error);
    ~WavSource() override;
    int channels() const override { return channels_; }
    bool read(int samples, AudioFrame& out) override;

private:
    WavSource() = default;
    std::FILE* file_ = nullptr;
    int channels_ = 1;
    std::uint64_t remaining_ = 0; // bytes of sample data left
};

class WavSink : public AudioSink {
public:
    static std::unique_ptr<WavSink> open(const std::string& path, int channels, std::string& error);
    ~WavSink() override;
    void write(const AudioFrame& frame) override;
    bool close(std::string& error) override;

private:
    WavSink() = default;
    std::FILE* file_ = nullptr;
    int channels_ = 1;
    std::uint64_t dataBytes_ = 0;
};

class NullAudioSink : public AudioSink {
public:
    void write(const AudioFrame&) override {}
    bool close(std::string&) override { return true; }
};

// Parses a source or sink name; nullptr with a message saying what is wrong.
std::unique_ptr<AudioSource> makeAudioSource(const std::string& spec, std::string& error);
std::unique_ptr<AudioSink> makeAudioSink(const std::string& spec, int channels, std::string& error);

} // namespace parley::media
