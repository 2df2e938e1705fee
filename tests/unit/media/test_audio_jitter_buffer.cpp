#include "media/audio_jitter_buffer.h"

#include <catch2/catch.hpp>

using namespace parley::media;
using Kind = AudioPlayout::Kind;

namespace {
Bytes payloadFor(int i) {
    return Bytes{std::uint8_t(i), std::uint8_t(i >> 8)};
}
} // namespace

TEST_CASE("in-order packets play in order, across sequence and timestamp wrap-around", "[jitter]") {
    AudioJitterBuffer jb;
    std::uint16_t seq0 = 65530;
    std::uint32_t ts0 = 0xffffffff - 960 * 3;
    Micros now = 0;
    int played = 0;
    for (int i = 0; i < 20; ++i, now += 20000) {
        jb.insert(std::uint16_t(seq0 + i), ts0 + std::uint32_t(960 * i), payloadFor(i), 960, now);
        auto p = jb.pull(now);
        REQUIRE(p.kind == Kind::normal);
        REQUIRE(p.payload == payloadFor(played));
        ++played;
    }
    REQUIRE(jb.stats().normal == 20);
    REQUIRE(jb.stats().concealed == 0);
}

TEST_CASE("reordering and duplicates are absorbed, late packets are dropped", "[jitter]") {
    AudioJitterBuffer jb(AudioJitterConfig{40, 300, 500, 0});
    Micros now = 0;
    jb.insert(0, 0, payloadFor(0), 960, now);
    REQUIRE(jb.pull(now).kind == Kind::wait); // 20 ms buffered, target 40 ms
    jb.insert(2, 1920, payloadFor(2), 960, now);
    jb.insert(1, 960, payloadFor(1), 960, now);
    REQUIRE(jb.insert(1, 960, payloadFor(1), 960, now) ==
            AudioJitterBuffer::InsertResult::duplicate);
    for (int i = 0; i < 3; ++i) {
        auto p = jb.pull(now += 20000);
        REQUIRE(p.kind == Kind::normal);
        REQUIRE(p.payload == payloadFor(i));
    }
    REQUIRE(jb.insert(1, 960, payloadFor(1), 960, now) == AudioJitterBuffer::InsertResult::late);
    REQUIRE(jb.stats().duplicates == 1);
    REQUIRE(jb.stats().late == 1);
}

TEST_CASE("a lost packet is recovered from the next one's FEC, two from PLC then FEC", "[jitter]") {
    AudioJitterBuffer jb(AudioJitterConfig{40, 300, 500, 0});
    Micros now = 0;
    for (int i : {0, 1, 3, 6, 7})
        jb.insert(std::uint16_t(i), std::uint32_t(960 * i), payloadFor(i), 960, now);
    std::vector<Kind> kinds;
    for (int i = 0; i < 8; ++i)
        kinds.push_back(jb.pull(now += 20000).kind);
    REQUIRE(kinds == std::vector<Kind>{Kind::normal, Kind::normal, Kind::fec, Kind::normal,
                                       Kind::conceal, Kind::fec, Kind::normal, Kind::normal});
    REQUIRE(jb.stats().fec == 2);
    REQUIRE(jb.stats().concealed == 1);
}

TEST_CASE("an underrun holds the playout point, a gap in timestamps without one in "
          "sequence numbers is DTX",
          "[jitter]") {
    AudioJitterBuffer jb(AudioJitterConfig{20, 300, 500, 0});
    Micros now = 0;
    jb.insert(0, 0, payloadFor(0), 960, now);
    REQUIRE(jb.pull(now).kind == Kind::normal);
    // Nothing arrives for two frames: concealment, cursor held.
    REQUIRE(jb.pull(now += 20000).kind == Kind::conceal);
    REQUIRE(jb.pull(now += 20000).kind == Kind::conceal);
    REQUIRE(jb.stats().underruns == 2);
    // The next packet (sequence 1) was delayed, not lost: it plays next, delay grew.
    jb.insert(1, 960, payloadFor(1), 960, now);
    auto p = jb.pull(now += 20000);
    REQUIRE(p.kind == Kind::normal);
    REQUIRE(p.payload == payloadFor(1));
    // DTX: sequence 2 carries timestamp of frame 5 (frames 2-4 not sent).
    jb.insert(2, 960 * 5, payloadFor(5), 960, now);
    std::vector<Kind> kinds;
    for (int i = 0; i < 4; ++i)
        kinds.push_back(jb.pull(now += 20000).kind);
    REQUIRE(kinds == std::vector<Kind>{Kind::dtx, Kind::dtx, Kind::dtx, Kind::normal});
    REQUIRE(jb.stats().dtx == 3);
}

TEST_CASE("the target delay follows jitter and stays within bounds", "[jitter]") {
    AudioJitterBuffer jb;
    Micros now = 0;
    REQUIRE(jb.targetDelayMs() == 20);
    for (int i = 0; i < 200; ++i) {
        Micros jitter = (i % 2) ? 30000 : 0;
        jb.insert(std::uint16_t(i), std::uint32_t(960 * i), payloadFor(i), 960,
                  now + 20000 * i + jitter);
    }
    REQUIRE(jb.jitterMs() > 10);
    REQUIRE(jb.targetDelayMs() > 60);
    REQUIRE(jb.targetDelayMs() <= 300);
    REQUIRE(jb.insert(0, 0, {}, 0, now) == AudioJitterBuffer::InsertResult::badSamples);
}
