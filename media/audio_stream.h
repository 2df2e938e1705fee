// The two ends of an audio stream: AudioSender (PCM -> Opus -> RTP, RFC 7587) and
// AudioReceiver (RTP -> jitter buffer -> Opus decode with FEC and PLC -> PCM). Sans-IO.
#pragma once

#include "media/audio_jitter_buffer.h"
#include "media/feedback.h"
#include "media/opus_codec.h"
#include "media/rtp_packet.h"

#include <optional>

namespace parley::media {

struct AudioSenderConfig {
    OpusSettings opus;
    std::uint32_t ssrc = 1;
    std::uint8_t payloadType = 111; // dynamic; negotiated by the node
    // Initial RTP sequence and timestamp: random in a real call (RFC 3550), given by the caller.
    std::uint16_t firstSequence = 0;
    std::uint32_t firstTimestamp = 0;
};

struct AudioSenderStats {
    std::uint64_t frames = 0;
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0; // RTP payload bytes
    std::uint64_t dtxFrames = 0;
};

class AudioSender {
public:
    explicit AudioSender(const AudioSenderConfig& config);
    int samplesPerFrame() const { return encoder_.samplesPerFrame(); }
    int channels() const { return config_.opus.channels; }
    // Encodes one frame (samplesPerFrame() samples per channel, interleaved) and returns the
    // RTP packet to send, or nothing when DTX suppresses it.
    std::optional<Bytes> sendFrame(std::span<const std::int16_t> pcm);
    // RTP timestamp the next frame will carry.
    std::uint32_t nextTimestamp() const { return timestamp_; }
    // Adapts the expected-loss hint and bitrate to the receiver's feedback.
    void onFeedback(const Feedback& feedback);
    int bitrate() const { return encoder_.settings().bitrate; }
    int lookaheadSamples() const { return encoder_.lookaheadSamples(); }
    const AudioSenderStats& stats() const { return stats_; }

private:
    AudioSenderConfig config_;
    OpusAudioEncoder encoder_;
    std::uint16_t sequence_;
    std::uint32_t timestamp_;
    bool inDtx_ = false;
    AudioSenderStats stats_;
};

enum class AudioPacketError { ok, badRtp, wrongPayloadType, wrongSsrc, badOpus, rejected };
const char* toString(AudioPacketError e);

struct AudioReceiverStats {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t malformed = 0;
    std::uint64_t samplesPlayed = 0; // per channel, after playout started
    std::uint64_t decodeErrors = 0;
};

class AudioReceiver {
public:
    // `ssrc` 0 accepts the first stream seen and locks to it.
    AudioReceiver(int channels, std::uint8_t payloadType, std::uint32_t ssrc = 0,
                  AudioJitterConfig jitter = {});
    AudioPacketError onPacket(std::span<const std::uint8_t> bytes, Micros now);
    // Called when the device wants the next frame: fills `out` (empty before playout
    // starts) and says how it was made.
    AudioPlayout::Kind playout(Micros now, AudioFrame& out, std::int64_t* timestamp = nullptr);
    Feedback makeFeedback();
    const AudioJitterBuffer& jitterBuffer() const { return jitter_; }
    const ReceptionStats& reception() const { return reception_; }
    const AudioReceiverStats& stats() const { return stats_; }

private:
    std::uint8_t payloadType_;
    std::uint32_t ssrc_;
    AudioJitterBuffer jitter_;
    OpusAudioDecoder decoder_;
    SequenceUnwrapper seqUnwrap_;
    ReceptionStats reception_;
    AudioReceiverStats stats_;
};

} // namespace parley::media
