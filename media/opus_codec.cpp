// Thin RAII wrappers over libopus.
#include "media/opus_codec.h"

#include <opus/opus.h>
#include <stdexcept>

namespace parley::media {

OpusAudioEncoder::OpusAudioEncoder(const OpusSettings& settings) : settings_(settings) {
    if (settings.channels != 1 && settings.channels != 2)
        throw std::invalid_argument("Opus: channels must be 1 or 2");
    if (settings.frameMs != 10 && settings.frameMs != 20 && settings.frameMs != 40 &&
        settings.frameMs != 60)
        throw std::invalid_argument("Opus: frame duration must be 10, 20, 40 or 60 ms");
    int err = 0;
    enc_ =
        opus_encoder_create(kAudioRate, settings.channels,
                            settings.music ? OPUS_APPLICATION_AUDIO : OPUS_APPLICATION_VOIP, &err);
    if (err != OPUS_OK || !enc_)
        throw std::invalid_argument(std::string("Opus encoder: ") + opus_strerror(err));
    opus_encoder_ctl(enc_, OPUS_SET_BITRATE(settings.bitrate));
    opus_encoder_ctl(enc_, OPUS_SET_INBAND_FEC(settings.fec ? 1 : 0));
    opus_encoder_ctl(enc_, OPUS_SET_DTX(settings.dtx ? 1 : 0));
    opus_encoder_ctl(enc_, OPUS_SET_PACKET_LOSS_PERC(settings.expectedLossPercent));
    opus_encoder_ctl(enc_, OPUS_SET_COMPLEXITY(settings.complexity));
}

OpusAudioEncoder::~OpusAudioEncoder() {
    opus_encoder_destroy(enc_);
}

Bytes OpusAudioEncoder::encode(std::span<const std::int16_t> interleaved) {
    int frame = samplesPerFrame();
    if (interleaved.size() != std::size_t(frame * settings_.channels))
        return {};
    Bytes out(1500);
    int n = opus_encode(enc_, interleaved.data(), frame, out.data(), opus_int32(out.size()));
    if (n < 0)
        return {};
    out.resize(std::size_t(n));
    return out;
}

void OpusAudioEncoder::setBitrate(int bitsPerSecond) {
    settings_.bitrate = bitsPerSecond;
    opus_encoder_ctl(enc_, OPUS_SET_BITRATE(bitsPerSecond));
}

void OpusAudioEncoder::setExpectedLoss(int percent) {
    settings_.expectedLossPercent = percent < 0 ? 0 : percent > 100 ? 100 : percent;
    opus_encoder_ctl(enc_, OPUS_SET_PACKET_LOSS_PERC(settings_.expectedLossPercent));
}

int OpusAudioEncoder::lookaheadSamples() const {
    opus_int32 v = 0;
    opus_encoder_ctl(enc_, OPUS_GET_LOOKAHEAD(&v));
    return int(v);
}

OpusAudioDecoder::OpusAudioDecoder(int channels) : channels_(channels) {
    if (channels != 1 && channels != 2)
        throw std::invalid_argument("Opus: channels must be 1 or 2");
    int err = 0;
    dec_ = opus_decoder_create(kAudioRate, channels, &err);
    if (err != OPUS_OK || !dec_)
        throw std::invalid_argument(std::string("Opus decoder: ") + opus_strerror(err));
}

OpusAudioDecoder::~OpusAudioDecoder() {
    opus_decoder_destroy(dec_);
}

bool OpusAudioDecoder::decode(std::span<const std::uint8_t> packet, AudioFrame& out) {
    int samples = opusPacketSamples(packet);
    if (samples <= 0 || samples > 5760) {
        conceal(960, out);
        return false;
    }
    out.channels = channels_;
    out.samples.assign(std::size_t(samples * channels_), 0);
    int n =
        opus_decode(dec_, packet.data(), opus_int32(packet.size()), out.samples.data(), samples, 0);
    if (n < 0) {
        conceal(samples, out);
        return false;
    }
    out.samples.resize(std::size_t(n * channels_));
    return true;
}

bool OpusAudioDecoder::decodeFec(std::span<const std::uint8_t> nextPacket, int samples,
                                 AudioFrame& out) {
    if (samples <= 0 || samples > 5760 || samples % 120 != 0 ||
        opusPacketSamples(nextPacket) <= 0) {
        conceal(samples > 0 && samples <= 5760 ? samples : 960, out);
        return false;
    }
    out.channels = channels_;
    out.samples.assign(std::size_t(samples * channels_), 0);
    int n = opus_decode(dec_, nextPacket.data(), opus_int32(nextPacket.size()), out.samples.data(),
                        samples, 1);
    if (n < 0) {
        conceal(samples, out);
        return false;
    }
    out.samples.resize(std::size_t(n * channels_));
    return true;
}

void OpusAudioDecoder::conceal(int samples, AudioFrame& out) {
    out.channels = channels_;
    out.samples.assign(std::size_t(samples * channels_), 0);
    int n = opus_decode(dec_, nullptr, 0, out.samples.data(), samples, 0);
    if (n < 0)
        n = 0;
    out.samples.resize(std::size_t(samples * channels_));
}

int opusPacketSamples(std::span<const std::uint8_t> packet) {
    if (packet.empty())
        return -1;
    int n = opus_packet_get_nb_samples(packet.data(), opus_int32(packet.size()), kAudioRate);
    return n > 0 ? n : -1;
}

} // namespace parley::media
