// Opus encoder and decoder wrappers: 48 kHz, mono or stereo, 10/20/40/60 ms frames, in-band
// FEC, DTX, expected-loss hint and bitrate changeable while running.
#pragma once

#include "media/media_types.h"

#include <memory>
#include <span>
#include <string>

struct OpusEncoder;
struct OpusDecoder;

namespace parley::media {

struct OpusSettings {
    int channels = 1;
    int frameMs = 20; // 10, 20, 40 or 60
    int bitrate = 32000;
    bool fec = true;
    bool dtx = false;
    int expectedLossPercent = 10;
    int complexity = 9;
    bool music = false; // OPUS_APPLICATION_AUDIO instead of VOIP
};

class OpusAudioEncoder {
public:
    // Throws std::invalid_argument on settings Opus refuses (start-up configuration).
    explicit OpusAudioEncoder(const OpusSettings& settings);
    ~OpusAudioEncoder();
    OpusAudioEncoder(const OpusAudioEncoder&) = delete;
    OpusAudioEncoder& operator=(const OpusAudioEncoder&) = delete;

    int samplesPerFrame() const { return kAudioRate / 1000 * settings_.frameMs; }
    const OpusSettings& settings() const { return settings_; }
    // Encodes exactly samplesPerFrame() samples per channel; returns the Opus packet (empty on
    // an encoder error). With DTX on, packets of 1-2 bytes mean "nothing to send".
    Bytes encode(std::span<const std::int16_t> interleaved);
    void setBitrate(int bitsPerSecond);
    void setExpectedLoss(int percent);
    int lookaheadSamples() const;

private:
    OpusSettings settings_;
    ::OpusEncoder* enc_ = nullptr;
};

class OpusAudioDecoder {
public:
    explicit OpusAudioDecoder(int channels);
    ~OpusAudioDecoder();
    OpusAudioDecoder(const OpusAudioDecoder&) = delete;
    OpusAudioDecoder& operator=(const OpusAudioDecoder&) = delete;

    int channels() const { return channels_; }
    // Normal decode. Returns false on a corrupt packet (`out` then holds concealment).
    bool decode(std::span<const std::uint8_t> packet, AudioFrame& out);
    // Recovers the frame before `nextPacket` from its in-band FEC data (`samples` long).
    bool decodeFec(std::span<const std::uint8_t> nextPacket, int samples, AudioFrame& out);
    // Packet loss concealment for `samples` samples per channel.
    void conceal(int samples, AudioFrame& out);

private:
    int channels_;
    ::OpusDecoder* dec_ = nullptr;
};

// Samples per channel in an Opus packet at 48 kHz, or -1 if it is not a valid Opus packet.
int opusPacketSamples(std::span<const std::uint8_t> packet);

} // namespace parley::media
