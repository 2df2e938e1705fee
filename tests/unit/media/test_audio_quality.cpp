// End-to-end audio quality: a tone through Opus, RTP, the simulated link and the jitter
// buffer, judged on the output PCM.
#include "media/loopback_call.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <numbers>

using namespace parley::media;

namespace {

// Frequency of a mono signal from its zero crossings.
double estimateFrequency(const std::vector<std::int16_t>& s, std::size_t from, std::size_t to) {
    int crossings = 0;
    std::size_t first = 0, last = 0;
    for (std::size_t i = from + 1; i < to; ++i)
        if (s[i - 1] < 0 && s[i] >= 0) {
            if (crossings == 0)
                first = i;
            last = i;
            ++crossings;
        }
    if (crossings < 2)
        return 0;
    return double(crossings - 1) * kAudioRate / double(last - first);
}

// Lag (output behind input) maximising the cross-correlation, in [minLag, maxLag].
int bestLag(const std::vector<std::int16_t>& in, const std::vector<std::int16_t>& out, int minLag,
            int maxLag) {
    double best = -1e300;
    int lag = 0;
    for (int l = std::max(0, minLag); l <= maxLag; ++l) {
        double c = 0;
        for (std::size_t i = 4800; i + l < out.size() && i < in.size() && i < 4800 + 48000; ++i)
            c += double(in[i]) * double(out[i + std::size_t(l)]);
        if (c > best) {
            best = c;
            lag = l;
        }
    }
    return lag;
}

double snrDb(const std::vector<std::int16_t>& in, const std::vector<std::int16_t>& out, int lag,
             std::size_t from, std::size_t to) {
    double sig = 0, noise = 0;
    for (std::size_t i = from; i < to && i + std::size_t(lag) < out.size() && i < in.size(); ++i) {
        double d = double(out[i + std::size_t(lag)]) - double(in[i]);
        sig += double(in[i]) * double(in[i]);
        noise += d * d;
    }
    return noise > 0 ? 10 * std::log10(sig / noise) : 99;
}

LoopbackConfig toneCall(double lossRate, std::uint64_t seed) {
    LoopbackConfig c;
    c.audio = std::make_unique<ToneSource>(440.0);
    c.duration = 4000000;
    c.keepAudio = true;
    c.forward.lossRate = lossRate;
    c.forward.delay = 20000;
    c.forward.seed = seed;
    c.backward.delay = 20000;
    c.backward.seed = seed + 1;
    c.opus.bitrate = 32000;
    return c;
}

} // namespace

TEST_CASE("a tone crosses a clean link at the right frequency, aligned, with a good SNR",
          "[audio][quality]") {
    auto r = runLoopback(toneCall(0.0, 11));
    INFO("in " << r.audio.inputSamples << " out " << r.audio.outputSamples);
    REQUIRE(r.audio.receiver.packets == r.audio.sender.packets);
    REQUIRE(r.audio.jitter.concealed == 0);
    REQUIRE(r.audio.jitter.fec == 0);
    // Output covers exactly the input's span.
    REQUIRE(r.audio.outputSamples == r.audio.inputSamples);
    const auto& in = r.audioIn;
    const auto& out = r.audioOut;
    double f = estimateFrequency(out, 9600, out.size() - 9600);
    INFO("frequency " << f);
    REQUIRE(std::abs(f - 440.0) < 2.0);
    // Aligned: the only offset left is Opus' algorithmic delay (look-ahead), 312 samples. A
    // tone is periodic, so the lag is searched within one period after the output's onset.
    std::size_t onset = 0;
    while (onset < out.size() && std::abs(out[onset]) < 1000)
        ++onset;
    INFO("onset " << onset);
    REQUIRE(onset >= 200);
    REQUIRE(onset <= 420);
    int lag = bestLag(in, out, int(onset) - 60, int(onset) + 50);
    INFO("lag " << lag);
    REQUIRE(lag >= 302);
    REQUIRE(lag <= 322);
    double snr = snrDb(in, out, lag, 9600, in.size() - 9600);
    INFO("SNR " << snr << " dB");
    // Floor: Opus at 32 kbit/s keeps a pure tone's waveform; quantisation noise stays more
    // than 20 dB below it (measured 26.3 dB with this seed). A broken jitter buffer (a frame
    // out of order, a gap) or a wrong alignment costs far more than that.
    REQUIRE(snr > 20.0);
    REQUIRE(r.audio.latencyP50Ms < 80.0);
}

TEST_CASE("10% random loss: output as long as input, FEC and concealment counted, no gap",
          "[audio][loss]") {
    auto r = runLoopback(toneCall(0.10, 7));
    const auto& j = r.audio.jitter;
    INFO("sent " << r.audio.sender.packets << " received " << r.audio.receiver.packets << " fec "
                 << j.fec << " concealed " << j.concealed << " underruns " << j.underruns
                 << " dropped " << j.dropped << " in " << r.audio.inputSamples << " out "
                 << r.audio.outputSamples);
    REQUIRE(r.audio.lossPercent > 5.0);
    REQUIRE(r.audio.lossPercent < 15.0);
    REQUIRE(j.fec + j.concealed > 0);
    REQUIRE(j.fec > j.concealed); // most single losses come back from FEC
    // Every lost frame was recovered or concealed: counts add up to the frames played.
    std::int64_t frames = std::int64_t(r.audio.inputSamples / 960);
    std::int64_t played = std::int64_t(r.audio.outputSamples / 960);
    REQUIRE(std::llabs(played - frames) <= 1);
    REQUIRE(std::int64_t(j.normal + j.fec + j.concealed + j.underruns) >= played - 1);
    // No gap: no stretch of digital silence in the output after the start.
    const auto& out = r.audioOut;
    int zeros = 0, longest = 0;
    for (std::size_t i = 4800; i < out.size(); ++i) {
        zeros = out[i] == 0 ? zeros + 1 : 0;
        longest = std::max(longest, zeros);
    }
    REQUIRE(longest < 48); // 1 ms
    // FEC makes the loss nearly inaudible on a tone: SNR of the loss run stays useful.
    REQUIRE(estimateFrequency(out, 9600, out.size() - 9600) == Approx(440.0).margin(3.0));
}
