// Plain value types shared by the media engine: bytes, virtual time, raw audio and video.
#pragma once

#include <cstdint>
#include <vector>

namespace parley::media {

using Bytes = std::vector<std::uint8_t>;
// Time is microseconds on whatever clock the caller injects (virtual in tests).
using Micros = std::int64_t;

constexpr int kAudioRate = 48000;  // Opus and its RTP clock (RFC 7587) always run at 48 kHz.
constexpr int kVideoClock = 90000; // RTP clock of video payloads.

// Interleaved 16-bit PCM at 48 kHz.
struct AudioFrame {
    int channels = 1;
    std::vector<std::int16_t> samples;
    int sampleCount() const { return channels > 0 ? int(samples.size()) / channels : 0; }
};

// One I420 picture: Y plane (width*height), then U and V ((width+1)/2 * (height+1)/2 each).
struct VideoFrame {
    int width = 0;
    int height = 0;
    std::vector<std::uint8_t> data;
    static std::size_t sizeFor(int w, int h) {
        return std::size_t(w) * h + 2 * std::size_t((w + 1) / 2) * ((h + 1) / 2);
    }
};

} // namespace parley::media
