// Inbox envelopes: round trip, bad input, and the receiver's checks.
#include "dht/envelope.h"
#include "dht/records.h"

#include <catch2/catch.hpp>

using namespace parley::dht;

namespace {
ContactId idOf(std::uint8_t b) {
    ContactId::Bytes bytes{};
    bytes.fill(b);
    return ContactId(bytes);
}
Envelope sample() {
    Envelope e;
    e.kind = EnvelopeKind::contactRequest;
    e.id.fill(7);
    e.createdMs = 1'790'000'000'000;
    e.from = idOf(1);
    e.to = idOf(2);
    e.name = "alice";
    e.message = "hi, it's Alice from the conference";
    return e;
}
} // namespace

TEST_CASE("envelopes round-trip") {
    auto e = sample();
    auto bytes = encodeEnvelope(e);
    CHECK(bytes.size() < kMaxEnvelopeSize);
    Envelope out;
    REQUIRE(decodeEnvelope(bytes, out) == EnvelopeError::ok);
    CHECK(out == e);
    e.kind = EnvelopeKind::contactAccept;
    e.message.clear();
    REQUIRE(decodeEnvelope(encodeEnvelope(e), out) == EnvelopeError::ok);
    CHECK(out.kind == EnvelopeKind::contactAccept);
}

TEST_CASE("envelope decoding refuses bad input") {
    auto bytes = encodeEnvelope(sample());
    Envelope out;
    for (std::size_t n = 0; n < bytes.size(); ++n)
        CHECK(decodeEnvelope({bytes.data(), n}, out) != EnvelopeError::ok);
    std::vector<std::uint8_t> big(kMaxEnvelopeSize + 1, 0x80);
    CHECK(decodeEnvelope(big, out) == EnvelopeError::tooLarge);
    auto e = sample();
    e.message = std::string(kMaxRequestMessageSize + 1, 'm');
    CHECK(decodeEnvelope(encodeEnvelope(e), out) == EnvelopeError::invalidField);
    e = sample();
    e.message = "bad \xff utf-8";
    CHECK(decodeEnvelope(encodeEnvelope(e), out) == EnvelopeError::invalidField);
    e = sample();
    e.name = std::string(kMaxNameSize + 1, 'n');
    CHECK(decodeEnvelope(encodeEnvelope(e), out) == EnvelopeError::invalidField);
}

TEST_CASE("receivers drop forged, misdirected, stale and future envelopes") {
    auto e = sample();
    auto now = e.createdMs + 1000;
    CHECK(checkEnvelope(e, idOf(1), idOf(2), now) == EnvelopeVerdict::accept);
    CHECK(checkEnvelope(e, idOf(3), idOf(2), now) == EnvelopeVerdict::forged);
    CHECK(checkEnvelope(e, idOf(1), idOf(4), now) == EnvelopeVerdict::wrongRecipient);
    CHECK(checkEnvelope(e, idOf(1), idOf(2), e.createdMs + kEnvelopeWindowMs + 1) ==
          EnvelopeVerdict::expired);
    CHECK(checkEnvelope(e, idOf(1), idOf(2), e.createdMs - kClockSkewAllowanceMs - 1) ==
          EnvelopeVerdict::fromTheFuture);
    CHECK(toString(EnvelopeVerdict::forged) == "forged");
}
