#include "media/audio_stream.h"

#include <algorithm>

namespace parley::media {

AudioSender::AudioSender(const AudioSenderConfig& config)
    : config_(config), encoder_(config.opus), sequence_(config.firstSequence),
      timestamp_(config.firstTimestamp) {}

std::optional<Bytes> AudioSender::sendFrame(std::span<const std::int16_t> pcm) {
    Bytes payload = encoder_.encode(pcm);
    std::uint32_t ts = timestamp_;
    timestamp_ += std::uint32_t(samplesPerFrame());
    ++stats_.frames;
    // RFC 7587 section 3.2: with DTX, packets of 1-2 bytes need not be sent.
    if (payload.empty() || (config_.opus.dtx && payload.size() <= 2)) {
        ++stats_.dtxFrames;
        inDtx_ = true;
        return std::nullopt;
    }
    RtpPacket p;
    p.marker = inDtx_; // first packet of a talkspurt
    inDtx_ = false;
    p.payloadType = config_.payloadType;
    p.sequence = sequence_++;
    p.timestamp = ts;
    p.ssrc = config_.ssrc;
    stats_.bytes += payload.size();
    p.payload = std::move(payload);
    ++stats_.packets;
    return serializeRtp(p);
}

void AudioSender::onFeedback(const Feedback& feedback) {
    if (feedback.report) {
        int lossPercent = feedback.report->fractionLost * 100 / 256;
        // Ask for a little more protection than what was seen, within Opus' useful range.
        encoder_.setExpectedLoss(std::clamp(lossPercent + 2, 0, 50));
    }
    if (feedback.targetBitrate) {
        int rate = int(std::clamp<std::uint32_t>(*feedback.targetBitrate, 6000, 510000));
        if (rate < encoder_.settings().bitrate || rate > encoder_.settings().bitrate)
            encoder_.setBitrate(std::min(rate, config_.opus.bitrate));
    }
}

const char* toString(AudioPacketError e) {
    switch (e) {
    case AudioPacketError::ok:
        return "ok";
    case AudioPacketError::badRtp:
        return "malformed RTP";
    case AudioPacketError::wrongPayloadType:
        return "unexpected payload type";
    case AudioPacketError::wrongSsrc:
        return "unexpected SSRC";
    case AudioPacketError::badOpus:
        return "not a valid Opus packet";
    case AudioPacketError::rejected:
        return "not taken by the jitter buffer";
    }
    return "unknown";
}

AudioReceiver::AudioReceiver(int channels, std::uint8_t payloadType, std::uint32_t ssrc,
                             AudioJitterConfig jitter)
    : payloadType_(payloadType), ssrc_(ssrc), jitter_(jitter), decoder_(channels) {}

AudioPacketError AudioReceiver::onPacket(std::span<const std::uint8_t> bytes, Micros now) {
    RtpPacket p;
    if (parseRtp(bytes, p) != RtpError::ok) {
        ++stats_.malformed;
        return AudioPacketError::badRtp;
    }
    if (p.payloadType != payloadType_) {
        ++stats_.malformed;
        return AudioPacketError::wrongPayloadType;
    }
    if (ssrc_ == 0)
        ssrc_ = p.ssrc;
    if (p.ssrc != ssrc_) {
        ++stats_.malformed;
        return AudioPacketError::wrongSsrc;
    }
    int samples = opusPacketSamples(p.payload);
    if (samples <= 0 || samples > 5760) {
        ++stats_.malformed;
        return AudioPacketError::badOpus;
    }
    ++stats_.packets;
    stats_.bytes += p.payload.size();
    reception_.onPacket(seqUnwrap_.unwrap(p.sequence),
                        double(now) / 1000.0 - double(p.timestamp) / 48.0);
    auto r = jitter_.insert(p.sequence, p.timestamp, std::move(p.payload), samples, now);
    return r == AudioJitterBuffer::InsertResult::ok ? AudioPacketError::ok
                                                    : AudioPacketError::rejected;
}

AudioPlayout::Kind AudioReceiver::playout(Micros now, AudioFrame& out, std::int64_t* timestamp) {
    AudioPlayout p = jitter_.pull(now);
    if (timestamp)
        *timestamp = p.timestamp;
    out.channels = decoder_.channels();
    switch (p.kind) {
    case AudioPlayout::Kind::wait:
        out.samples.clear();
        return p.kind;
    case AudioPlayout::Kind::normal:
        if (!decoder_.decode(p.payload, out))
            ++stats_.decodeErrors;
        break;
    case AudioPlayout::Kind::fec:
        if (!decoder_.decodeFec(p.payload, p.samples, out))
            ++stats_.decodeErrors;
        break;
    case AudioPlayout::Kind::conceal:
    case AudioPlayout::Kind::dtx:
        decoder_.conceal(p.samples, out);
        break;
    }
    stats_.samplesPlayed += std::uint64_t(out.sampleCount());
    return p.kind;
}

Feedback AudioReceiver::makeFeedback() {
    Feedback f;
    f.ssrc = ssrc_;
    f.report = reception_.makeReport(ssrc_, kAudioRate);
    return f;
}

} // namespace parley::media
