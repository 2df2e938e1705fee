#include "media/feedback.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("feedback round-trips compactly", "[feedback]") {
    Feedback f;
    f.ssrc = 0xabcdef01;
    f.nacks = {100, 101, 103, 116, 117, 65535, 0, 5000};
    f.pictureLoss = true;
    f.report = ReceiverReport{7, 25, 1234, 70000, 180};
    f.targetBitrate = 800000;
    Bytes b = encodeFeedback(f);
    // 5 header + NACK item (2 + 5 pairs * 4: 0, 100+{101,103,116}, 117, 5000, 65535) + PLI 2 +
    // RR 18 + bitrate 6
    REQUIRE(b.size() == 5 + 2 + 20 + 2 + 18 + 6);
    Feedback g;
    REQUIRE(decodeFeedback(b, g) == FeedbackError::ok);
    auto sorted = f.nacks;
    std::sort(sorted.begin(), sorted.end());
    auto got = g.nacks;
    std::sort(got.begin(), got.end());
    REQUIRE(got == sorted);
    REQUIRE(g.pictureLoss);
    REQUIRE(g.report == f.report);
    REQUIRE(g.targetBitrate == f.targetBitrate);
    REQUIRE(g.ssrc == f.ssrc);
}

TEST_CASE("malformed feedback is refused with a reason", "[feedback]") {
    Feedback g;
    REQUIRE(decodeFeedback(Bytes{}, g) == FeedbackError::empty);
    REQUIRE(decodeFeedback(Bytes{2, 0, 0, 0, 0}, g) == FeedbackError::badVersion);
    REQUIRE(decodeFeedback(Bytes{1, 0, 0}, g) == FeedbackError::truncated);
    REQUIRE(decodeFeedback(Bytes{1, 0, 0, 0, 0, 1}, g) == FeedbackError::truncated);
    REQUIRE(decodeFeedback(Bytes{1, 0, 0, 0, 0, 1, 3, 0, 0, 0}, g) == FeedbackError::badItem);
    REQUIRE(decodeFeedback(Bytes{1, 0, 0, 0, 0, 2, 1, 0}, g) == FeedbackError::badItem);
    REQUIRE(decodeFeedback(Bytes{1, 0, 0, 0, 0, 4, 8, 0}, g) == FeedbackError::truncated);
    // Unknown items are skipped.
    REQUIRE(decodeFeedback(Bytes{1, 0, 0, 0, 5, 99, 2, 1, 2, 2, 0}, g) == FeedbackError::ok);
    REQUIRE(g.ssrc == 5);
    REQUIRE(g.pictureLoss);
}

TEST_CASE("reception statistics make RFC 3550 loss fractions", "[feedback]") {
    ReceptionStats s;
    for (int i = 0; i < 100; ++i)
        if (i % 10 != 3)
            s.onPacket(65530 + i, 0.0);
    auto r = s.makeReport(1, 90000);
    REQUIRE(s.expected() == 100);
    REQUIRE(s.lost() == 10);
    REQUIRE(r.cumulativeLost == 10);
    REQUIRE(r.fractionLost == 25); // 10/100 * 256
    REQUIRE(r.highestSequence == 65530 + 99);
    auto r2 = s.makeReport(1, 90000);
    REQUIRE(r2.fractionLost == 0); // nothing new
}
