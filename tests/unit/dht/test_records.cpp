// Key card and presence records: round trips, caps, forgery and garbage.
#include "dht/records.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <msgpack.hpp>

using namespace parley::dht;

namespace {

KeyCard sampleCard(const Identity& identity) {
    KeyCard card;
    card.certificate = identity.certificateDer();
    card.name = identity.name();
    card.protocols = {1};
    card.createdAt = 1'790'000'000;
    return card;
}

template <class F> std::vector<std::uint8_t> pack(F&& body) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    body(pk);
    return {buf.data(), buf.data() + buf.size()};
}

} // namespace

TEST_CASE("key card round trip and ownership") {
    auto alice = parley::test::makeIdentity("alice");
    auto bob = parley::test::makeIdentity("bob");
    auto card = sampleCard(alice);
    auto bytes = encodeKeyCard(card);
    CHECK(bytes.size() < kMaxCardSize);
    KeyCard decoded;
    REQUIRE(decodeKeyCard(bytes, decoded) == RecordError::ok);
    CHECK(decoded == card);
    CHECK(verifyKeyCard(decoded, alice.contactId()) == RecordError::ok);
    // A card carrying Alice's certificate is not Bob's card.
    CHECK(verifyKeyCard(decoded, bob.contactId()) == RecordError::wrongOwner);
    decoded.certificate[decoded.certificate.size() / 2] ^= 0xff;
    CHECK(verifyKeyCard(decoded, alice.contactId()) != RecordError::ok);
}

TEST_CASE("key card decoding rejects what it must") {
    auto alice = parley::test::makeIdentity("alice");
    auto bytes = encodeKeyCard(sampleCard(alice));
    KeyCard out;
    SECTION("every truncation") {
        for (std::size_t n = 0; n < bytes.size(); ++n)
            CHECK(decodeKeyCard({bytes.data(), n}, out) != RecordError::ok);
    }
    SECTION("oversized") {
        std::vector<std::uint8_t> big(kMaxCardSize + 1, 0x80);
        CHECK(decodeKeyCard(big, out) == RecordError::tooLarge);
    }
    SECTION("garbage") {
        std::vector<std::uint8_t> junk = {0xc1, 0xff, 0x00, 0x13};
        CHECK(decodeKeyCard(junk, out) == RecordError::malformed);
        CHECK(decodeKeyCard(pack([](auto& pk) { pk.pack(42); }), out) == RecordError::malformed);
    }
    SECTION("another major version") {
        auto v2 = pack([&](auto& pk) {
            pk.pack_map(2);
            pk.pack("v");
            pk.pack(2);
            pk.pack("cert");
            pk.pack_bin(1);
            pk.pack_bin_body("x", 1);
        });
        CHECK(decodeKeyCard(v2, out) == RecordError::unsupportedVersion);
    }
    SECTION("a name too long or not UTF-8") {
        auto card = sampleCard(alice);
        card.name = std::string(kMaxNameSize + 1, 'n');
        CHECK(decodeKeyCard(encodeKeyCard(card), out) == RecordError::invalidField);
        card.name = "bad\xff\xfe";
        CHECK(decodeKeyCard(encodeKeyCard(card), out) == RecordError::invalidField);
    }
    SECTION("no certificate") {
        auto noCert = pack([](auto& pk) {
            pk.pack_map(2);
            pk.pack("v");
            pk.pack(1);
            pk.pack("name");
            pk.pack("x");
        });
        CHECK(decodeKeyCard(noCert, out) == RecordError::malformed);
    }
    SECTION("unknown fields are ignored") {
        auto extra = pack([&](auto& pk) {
            auto card = sampleCard(alice);
            pk.pack_map(3);
            pk.pack("v");
            pk.pack(1);
            pk.pack("cert");
            pk.pack_bin(static_cast<std::uint32_t>(card.certificate.size()));
            pk.pack_bin_body(reinterpret_cast<const char*>(card.certificate.data()),
                             static_cast<std::uint32_t>(card.certificate.size()));
            pk.pack("future");
            pk.pack("field");
        });
        CHECK(decodeKeyCard(extra, out) == RecordError::ok);
    }
}

TEST_CASE("presence round trip, staleness and bad input") {
    Presence p{PresenceStatus::online, 1'790'000'000'000, 7};
    auto bytes = encodePresence(p);
    Presence decoded;
    REQUIRE(decodePresence(bytes, decoded) == RecordError::ok);
    CHECK(decoded == p);
    CHECK(toString(decoded.status) == "online");

    CHECK(isPresenceFresh(p, p.timestampMs));
    CHECK(isPresenceFresh(p, p.timestampMs + kPresenceStaleAfterMs));
    CHECK_FALSE(isPresenceFresh(p, p.timestampMs + kPresenceStaleAfterMs + 1));
    CHECK_FALSE(isPresenceFresh(p, p.timestampMs - kClockSkewAllowanceMs - 1)); // from the future

    for (std::size_t n = 0; n < bytes.size(); ++n)
        CHECK(decodePresence({bytes.data(), n}, decoded) != RecordError::ok);
    std::vector<std::uint8_t> big(kMaxPresenceSize + 1, 0x80);
    CHECK(decodePresence(big, decoded) == RecordError::tooLarge);
    auto badStatus = pack([](auto& pk) {
        pk.pack_map(3);
        pk.pack("v");
        pk.pack(1);
        pk.pack("s");
        pk.pack(9);
        pk.pack("t");
        pk.pack(1);
    });
    CHECK(decodePresence(badStatus, decoded) == RecordError::invalidField);
    auto negativeTime = pack([](auto& pk) {
        pk.pack_map(3);
        pk.pack("v");
        pk.pack(1);
        pk.pack("s");
        pk.pack(1);
        pk.pack("t");
        pk.pack(-5);
    });
    CHECK(decodePresence(negativeTime, decoded) == RecordError::invalidField);
}

TEST_CASE("names are cut on a UTF-8 boundary so that cards always decode") {
    CHECK(truncateUtf8("hello", 3) == "hel");
    std::string accents = "\xc3\xa9\xc3\xa9\xc3\xa9"; // "ééé", 6 bytes
    CHECK(truncateUtf8(accents, 5) == "\xc3\xa9\xc3\xa9");
    CHECK(truncateUtf8("ab\xff"
                       "cd",
                       10) == "abcd"); // invalid bytes dropped
    CHECK(isValidUtf8(truncateUtf8(std::string(100, '\xe2'), 64)));
    // Ill-formed sequences (RFC 3629) are dropped whole or byte by byte, never kept.
    CHECK(truncateUtf8("a\xc0\xaf"
                       "b",
                       10) == "ab"); // an overlong "/"
    CHECK(truncateUtf8("a\xed\xa0\x80"
                       "b",
                       10) == "ab"); // a UTF-16 surrogate
    CHECK(utf8SequenceAt("\xe2\x82\xac", 0) == 3);
    CHECK(utf8SequenceAt("\xf4\x90\x80\x80", 0) == 0); // above U+10FFFF
    CHECK(utf8SequenceAt("ab", 2) == 0);
    std::string longName;
    for (int i = 0; i < 40; ++i)
        longName += "\xe2\x82\xac"; // "€" x 40 = 120 bytes
    auto cut = truncateUtf8(longName, kMaxNameSize);
    CHECK(cut.size() == 63);
    CHECK(isValidUtf8(cut));
}
