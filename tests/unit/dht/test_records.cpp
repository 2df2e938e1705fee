// Key card and presence records: round trips, caps, forgery and garbage.
#include "dht/records.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <functional>
#include <msgpack.hpp>
#include <utility>

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

// A record map written by hand, its entries in the given order (repeats included).
using Packer = msgpack::packer<msgpack::sbuffer>;
using Field = std::pair<std::string, std::function<void(Packer&)>>;

std::vector<std::uint8_t> record(const std::vector<Field>& fields) {
    return pack([&](Packer& pk) {
        pk.pack_map(static_cast<std::uint32_t>(fields.size()));
        for (const auto& [key, write] : fields) {
            pk.pack(key);
            write(pk);
        }
    });
}

Field certField(std::vector<std::uint8_t> der) {
    return {"cert", [der](Packer& pk) {
                pk.pack_bin(static_cast<std::uint32_t>(der.size()));
                pk.pack_bin_body(reinterpret_cast<const char*>(der.data()),
                                 static_cast<std::uint32_t>(der.size()));
            }};
}

template <class T> Field field(std::string key, T value) {
    return {std::move(key), [value](Packer& pk) { pk.pack(value); }};
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

TEST_CASE("a record with a key present twice is refused", "[records]") {
    auto alice = parley::test::makeIdentity("alice");
    auto cert = alice.certificateDer();
    auto other = parley::test::makeIdentity("bob").certificateDer();
    std::vector<Field> card = {field("v", 1), certField(cert), field("name", std::string("alice")),
                               field("proto", std::vector<std::uint32_t>{1}),
                               field("t", std::int64_t{1'790'000'000})};
    KeyCard out;
    REQUIRE(decodeKeyCard(record(card), out) == RecordError::ok);
    auto cardWith = [&](Field extra) {
        auto fields = card;
        fields.push_back(std::move(extra));
        return record(fields);
    };
    // With the same value or another one, a known key or an unknown one, wherever it is.
    CHECK(decodeKeyCard(cardWith(field("v", 1)), out) == RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(field("v", 2)), out) == RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(certField(cert)), out) == RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(certField(other)), out) == RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(field("name", std::string("alice"))), out) ==
          RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(field("name", std::string("mallory"))), out) ==
          RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(field("proto", std::vector<std::uint32_t>{2})), out) ==
          RecordError::malformed);
    CHECK(decodeKeyCard(cardWith(field("t", 5)), out) == RecordError::malformed);
    CHECK(decodeKeyCard(
              record({field("future", 1), field("v", 1), certField(cert), field("future", 1)}),
              out) == RecordError::malformed);
    // Out is only written on success.
    CHECK(out.name == "alice");

    std::vector<Field> presence = {field("v", 1), field("s", 1), field("t", 5), field("q", 7)};
    Presence p;
    REQUIRE(decodePresence(record(presence), p) == RecordError::ok);
    for (const auto& extra : {field("v", 1), field("s", 1), field("s", 2), field("t", 5),
                              field("t", 6), field("q", 7), field("q", 8)}) {
        auto fields = presence;
        fields.insert(fields.begin(), extra);
        CAPTURE(extra.first);
        CHECK(decodePresence(record(fields), p) == RecordError::malformed);
    }
    CHECK(decodePresence(
              record({field("v", 1), field("s", 1), field("t", 5), field("x", 0), field("x", 1)}),
              p) == RecordError::malformed);
    // Even when the record would otherwise be refused for another reason.
    CHECK(decodePresence(record({field("v", 2), field("v", 2), field("s", 1), field("t", 5)}), p) ==
          RecordError::malformed);
}

TEST_CASE("of several bad record fields, the first in the map gives the error", "[records]") {
    auto cert = parley::test::makeIdentity("alice").certificateDer();
    auto longName = field("name", std::string(kMaxNameSize + 1, 'n'));
    auto strCert = field("cert", std::string("not a bin"));
    KeyCard out;
    CHECK(decodeKeyCard(record({field("v", 1), longName, strCert}), out) ==
          RecordError::invalidField);
    CHECK(decodeKeyCard(record({field("v", 1), strCert, longName}), out) == RecordError::malformed);
    // A field out of range comes before a missing certificate.
    CHECK(decodeKeyCard(record({field("v", 1), longName}), out) == RecordError::invalidField);
    CHECK(decodeKeyCard(record({field("v", 1), certField({})}), out) == RecordError::invalidField);
    // The version is checked first, wherever it is.
    CHECK(decodeKeyCard(record({strCert, field("v", 2)}), out) == RecordError::unsupportedVersion);
    CHECK(decodeKeyCard(record({strCert, field("v", "1")}), out) == RecordError::malformed);
    CHECK(decodeKeyCard(
              record({field("v", 1), certField(cert), field("proto", std::vector<int>{1, -1})}),
              out) == RecordError::malformed);
    CHECK(decodeKeyCard(record({field("v", 1), certField(cert),
                                field("proto", std::vector<int>(kMaxProtocols + 1, 1))}),
                        out) == RecordError::invalidField);

    Presence p;
    CHECK(decodePresence(record({field("v", 1), field("s", 9), field("t", "x")}), p) ==
          RecordError::invalidField);
    CHECK(decodePresence(record({field("v", 1), field("t", "x"), field("s", 9)}), p) ==
          RecordError::malformed);
    CHECK(decodePresence(record({field("v", 1), field("t", -1), field("s", 1)}), p) ==
          RecordError::invalidField);
    CHECK(decodePresence(record({field("v", 1), field("t", -1)}), p) == RecordError::invalidField);
    CHECK(decodePresence(record({field("v", 1), field("s", 1)}), p) == RecordError::malformed);
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
