#include "media/rtp_packet.h"

#include <catch2/catch.hpp>

using namespace parley::media;

TEST_CASE("RTP packets round-trip and malformed ones are refused", "[rtp]") {
    RtpPacket p;
    p.marker = true;
    p.payloadType = 111;
    p.sequence = 0xfffe;
    p.timestamp = 0xfffffff0;
    p.ssrc = 0x12345678;
    p.payload = {1, 2, 3};
    Bytes b = serializeRtp(p);
    REQUIRE(b.size() == 15);
    REQUIRE(b[0] == 0x80);
    REQUIRE(b[1] == (0x80 | 111));
    RtpPacket q;
    REQUIRE(parseRtp(b, q) == RtpError::ok);
    REQUIRE(q.marker);
    REQUIRE(q.payloadType == 111);
    REQUIRE(q.sequence == 0xfffe);
    REQUIRE(q.timestamp == 0xfffffff0);
    REQUIRE(q.ssrc == 0x12345678);
    REQUIRE(q.payload == Bytes{1, 2, 3});

    REQUIRE(parseRtp(Bytes(11, 0x80), q) == RtpError::tooShort);
    Bytes v1 = b;
    v1[0] = 0x40;
    REQUIRE(parseRtp(v1, q) == RtpError::badVersion);
    Bytes csrc = b;
    csrc[0] = 0x81; // one CSRC: 4 more bytes than there are
    REQUIRE(parseRtp(csrc, q) == RtpError::badCsrcCount);
    Bytes ext = b;
    ext[0] = 0x90;
    REQUIRE(parseRtp(ext, q) == RtpError::badExtension);
    Bytes pad = b;
    pad[0] = 0xa0;
    pad.back() = 9;
    REQUIRE(parseRtp(pad, q) == RtpError::badPadding);
    pad.back() = 1; // one byte of padding: that byte itself
    REQUIRE(parseRtp(pad, q) == RtpError::ok);
    REQUIRE(q.payload == Bytes{1, 2});
}

TEST_CASE("CSRCs and a header extension are skipped", "[rtp]") {
    Bytes b = {0x91, 96,   0, 1, 0, 0, 0, 2, 0, 0, 0, 3, // V=2 X=1 CC=1
               0,    0,    0, 9,                         // CSRC
               0xbe, 0xde, 0, 1, 1, 2, 3, 4,             // one-word extension
               7,    8};
    RtpPacket q;
    REQUIRE(parseRtp(b, q) == RtpError::ok);
    REQUIRE(q.payload == Bytes{7, 8});
}

TEST_CASE("sequence numbers and timestamps unwrap across the wrap-around", "[rtp]") {
    SequenceUnwrapper s;
    REQUIRE(s.unwrap(65534) == 65534);
    REQUIRE(s.unwrap(65535) == 65535);
    REQUIRE(s.unwrap(0) == 65536);
    REQUIRE(s.unwrap(65535) == 65535); // reordered across the wrap
    REQUIRE(s.unwrap(2) == 65538);
    TimestampUnwrapper t;
    REQUIRE(t.unwrap(0xffffff00u) == 0xffffff00ll);
    REQUIRE(t.unwrap(0x00000100u) == 0x100000100ll);
}
