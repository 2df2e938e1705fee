#include "media/audio_io.h"
#include "media/opus_codec.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("Opus encodes and decodes 10/20/40/60 ms frames, mono and stereo", "[opus]") {
    for (int channels : {1, 2})
        for (int ms : {10, 20, 40, 60}) {
            OpusSettings s;
            s.channels = channels;
            s.frameMs = ms;
            OpusAudioEncoder enc(s);
            OpusAudioDecoder dec(channels);
            ToneSource tone(1000, channels);
            AudioFrame in, out;
            REQUIRE(enc.samplesPerFrame() == 48 * ms);
            for (int i = 0; i < 5; ++i) {
                tone.read(enc.samplesPerFrame(), in);
                Bytes packet = enc.encode(in.samples);
                REQUIRE(!packet.empty());
                REQUIRE(opusPacketSamples(packet) == 48 * ms);
                REQUIRE(dec.decode(packet, out));
                REQUIRE(out.sampleCount() == 48 * ms);
                REQUIRE(out.channels == channels);
            }
        }
    REQUIRE_THROWS(OpusAudioEncoder(OpusSettings{3}));
    OpusSettings bad;
    bad.frameMs = 30;
    REQUIRE_THROWS(OpusAudioEncoder(bad));
}

TEST_CASE("bitrate changes while running, FEC decode and PLC give whole frames", "[opus]") {
    OpusSettings s;
    s.bitrate = 64000;
    OpusAudioEncoder enc(s);
    OpusAudioDecoder dec(1);
    ToneSource tone(440);
    AudioFrame in, out;
    auto averageSize = [&](int frames) {
        std::size_t total = 0;
        for (int i = 0; i < frames; ++i) {
            tone.read(960, in);
            total += enc.encode(in.samples).size();
        }
        return double(total) / frames;
    };
    double high = averageSize(25);
    enc.setBitrate(12000);
    enc.setExpectedLoss(20);
    double low = averageSize(25);
    REQUIRE(low < high / 2);
    tone.read(960, in);
    Bytes next = enc.encode(in.samples);
    REQUIRE(dec.decodeFec(next, 960, out));
    REQUIRE(out.sampleCount() == 960);
    dec.conceal(960, out);
    REQUIRE(out.sampleCount() == 960);
    REQUIRE_FALSE(dec.decode(Bytes{}, out));
    REQUIRE(opusPacketSamples(Bytes{0xff}) == -1); // code 3 without a frame count byte
}

TEST_CASE("with DTX, silence stops being sent", "[opus]") {
    OpusSettings s;
    s.dtx = true;
    OpusAudioEncoder enc(s);
    std::vector<std::int16_t> silence(960, 0);
    int tiny = 0;
    for (int i = 0; i < 50; ++i)
        tiny += enc.encode(silence).size() <= 2 ? 1 : 0;
    REQUIRE(tiny > 30);
}
