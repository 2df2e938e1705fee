// Connect envelopes (DESIGN.md §6 step 1): request and answer round trips, the candidate and
// replyTo fields, the caps a receiver enforces on them, and their two-minute window.
#include "dht/envelope.h"
#include "dht/records.h"

#include <catch2/catch.hpp>
#include <functional>
#include <msgpack.hpp>
#include <utility>

using namespace parley::dht;

namespace {

using Bytes = std::vector<std::uint8_t>;
using Packer = msgpack::packer<msgpack::sbuffer>;

ContactId idOf(std::uint8_t b) {
    ContactId::Bytes bytes{};
    bytes.fill(b);
    return ContactId(bytes);
}

Envelope connectRequest() {
    Envelope e;
    e.kind = EnvelopeKind::connectRequest;
    e.id.fill(0x31);
    e.createdMs = 1'790'000'000'000;
    e.from = idOf(1);
    e.to = idOf(2);
    e.name = "alice";
    e.candidates = {"192.0.2.1:4000", "[2001:db8::1]:4000", "203.0.113.5:4000"};
    return e;
}

Envelope connectAnswer() {
    Envelope e = connectRequest();
    e.kind = EnvelopeKind::connectAnswer;
    e.id.fill(0x32);
    std::swap(e.from, e.to);
    e.name = "bob";
    e.candidates = {"198.51.100.2:5000"};
    e.replyTo.fill(0x31);
    return e;
}

// A connect envelope written by hand: the fields encodeEnvelope writes, with `cand` and `re`
// (and anything extra) supplied by the caller, so that values it would never produce can be
// tried.
using Field = std::pair<std::string, std::function<void(Packer&)>>;

void packBin(Packer& pk, const Bytes& bytes) {
    pk.pack_bin(static_cast<std::uint32_t>(bytes.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(bytes.data()),
                     static_cast<std::uint32_t>(bytes.size()));
}

// A map of exactly these entries, in this order (repeats included).
Bytes packFields(const std::vector<Field>& fields) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    pk.pack_map(static_cast<std::uint32_t>(fields.size()));
    for (const auto& [key, write] : fields) {
        pk.pack(key);
        write(pk);
    }
    return {buf.data(), buf.data() + buf.size()};
}

Bytes handWritten(std::vector<Field> extra, std::uint8_t kind = 3) {
    std::vector<Field> fields = {
        {"v", [](Packer& pk) { pk.pack(1); }},
        {"k", [kind](Packer& pk) { pk.pack(kind); }},
        {"id", [](Packer& pk) { packBin(pk, Bytes(16, 0x33)); }},
        {"t", [](Packer& pk) { pk.pack(std::int64_t{1'790'000'000'000}); }},
        {"from", [](Packer& pk) { packBin(pk, Bytes(32, 1)); }},
        {"to", [](Packer& pk) { packBin(pk, Bytes(32, 2)); }},
    };
    fields.insert(fields.end(), extra.begin(), extra.end());
    return packFields(fields);
}

Field candidates(std::vector<std::string> list) {
    return {"cand", [list](Packer& pk) { pk.pack(list); }};
}

} // namespace

TEST_CASE("connect envelopes round-trip with candidates and replyTo", "[envelope]") {
    for (const auto& e : {connectRequest(), connectAnswer()}) {
        auto bytes = encodeEnvelope(e);
        Envelope out;
        REQUIRE(decodeEnvelope(bytes, out) == EnvelopeError::ok);
        CHECK(out == e);
        CHECK(isConnectKind(out.kind));
    }
    Envelope out;
    REQUIRE(decodeEnvelope(encodeEnvelope(connectAnswer()), out) == EnvelopeError::ok);
    CHECK(out.replyTo == connectRequest().id);
    CHECK(out.candidates == std::vector<std::string>{"198.51.100.2:5000"});

    // No candidates at all (a node that knows no address of its own yet) is fine.
    auto empty = connectRequest();
    empty.candidates.clear();
    REQUIRE(decodeEnvelope(encodeEnvelope(empty), out) == EnvelopeError::ok);
    CHECK(out.candidates.empty());
    CHECK(out == empty);

    CHECK(toString(EnvelopeKind::connectRequest) == "connect-request");
    CHECK(toString(EnvelopeKind::connectAnswer) == "connect-answer");
    CHECK_FALSE(isConnectKind(EnvelopeKind::contactRequest));
    CHECK_FALSE(isConnectKind(EnvelopeKind::contactAccept));
}

TEST_CASE("only connect kinds carry candidates and replyTo", "[envelope]") {
    // A contact request does not leak the sender's addresses, even when the struct has some.
    auto e = connectRequest();
    e.kind = EnvelopeKind::contactRequest;
    e.replyTo.fill(9);
    auto bytes = encodeEnvelope(e);
    std::string text(bytes.begin(), bytes.end());
    CHECK(text.find("192.0.2.1") == std::string::npos);
    Envelope out;
    REQUIRE(decodeEnvelope(bytes, out) == EnvelopeError::ok);
    CHECK(out.candidates.empty());
    CHECK(out.replyTo == std::array<std::uint8_t, 16>{});

    // A request carries no replyTo (all zero), and an envelope without "re" decodes so.
    REQUIRE(decodeEnvelope(handWritten({candidates({"192.0.2.1:1"})}), out) == EnvelopeError::ok);
    CHECK(out.kind == EnvelopeKind::connectRequest);
    CHECK(out.replyTo == std::array<std::uint8_t, 16>{});
    CHECK(out.candidates == std::vector<std::string>{"192.0.2.1:1"});
    // Unknown keys are ignored (a newer sender), known ones still read.
    REQUIRE(decodeEnvelope(handWritten({candidates({"192.0.2.1:1"}),
                                        {"relay", [](Packer& pk) { pk.pack("somewhere"); }}},
                                       4),
                           out) == EnvelopeError::ok);
    CHECK(out.kind == EnvelopeKind::connectAnswer);
}

TEST_CASE("connect envelopes: candidate caps", "[envelope]") {
    Envelope out;
    // The most a sender may put in: kMaxCandidates of kMaxCandidateSize bytes, which still fits
    // in an envelope.
    auto full = connectRequest();
    full.candidates.clear();
    for (std::size_t i = 0; i < kMaxCandidates; ++i) {
        auto c = "[2001:db8:ffff:ffff:ffff:ffff:ffff:" + std::to_string(1000 + i) + "]:65535";
        c.resize(kMaxCandidateSize, '0');
        full.candidates.push_back(c);
    }
    auto bytes = encodeEnvelope(full);
    CHECK(bytes.size() <= kMaxEnvelopeSize);
    REQUIRE(decodeEnvelope(bytes, out) == EnvelopeError::ok);
    CHECK(out.candidates == full.candidates);

    // One candidate too many, or one byte too long: refused (not truncated).
    auto tooMany = connectRequest();
    tooMany.candidates.assign(kMaxCandidates + 1, "192.0.2.1:1");
    CHECK(decodeEnvelope(encodeEnvelope(tooMany), out) != EnvelopeError::ok);
    std::vector<std::string> hundreds(200, "192.0.2.1:1");
    CHECK(decodeEnvelope(handWritten({candidates(hundreds)}), out) != EnvelopeError::ok);

    auto tooLong = connectRequest();
    tooLong.candidates.push_back(std::string(kMaxCandidateSize + 1, '1'));
    CHECK(decodeEnvelope(encodeEnvelope(tooLong), out) == EnvelopeError::invalidField);
    auto badUtf8 = connectRequest();
    badUtf8.candidates.push_back("192.0.2.1:\xff");
    CHECK(decodeEnvelope(encodeEnvelope(badUtf8), out) == EnvelopeError::invalidField);
    // Out is only written on success.
    CHECK(out.candidates == full.candidates);
}

TEST_CASE("connect envelopes: mistyped candidates and replyTo are malformed", "[envelope]") {
    Envelope out;
    CHECK(decodeEnvelope(handWritten({{"cand", [](Packer& pk) { pk.pack("192.0.2.1:1"); }}}),
                         out) == EnvelopeError::malformed);
    CHECK(decodeEnvelope(handWritten({{"cand",
                                       [](Packer& pk) {
                                           pk.pack_array(2);
                                           pk.pack("192.0.2.1:1");
                                           pk.pack(42);
                                       }}}),
                         out) == EnvelopeError::malformed);
    CHECK(decodeEnvelope(handWritten({{"cand",
                                       [](Packer& pk) {
                                           pk.pack_array(1);
                                           packBin(pk, Bytes{'1', '.', '2'});
                                       }}}),
                         out) == EnvelopeError::malformed);
    // Nested deeper than an envelope can be.
    CHECK(decodeEnvelope(handWritten({{"cand",
                                       [](Packer& pk) {
                                           pk.pack_array(1);
                                           pk.pack_array(1);
                                           pk.pack_array(0);
                                       }}}),
                         out) != EnvelopeError::ok);
    for (std::size_t size : {0, 15, 17, 32}) {
        CAPTURE(size);
        CHECK(decodeEnvelope(handWritten({candidates({}),
                                          {"re", [size](Packer& pk) { packBin(pk, Bytes(size)); }}},
                                         4),
                             out) == EnvelopeError::malformed);
    }
    CHECK(decodeEnvelope(handWritten({{"re", [](Packer& pk) { pk.pack("0123456789abcdef"); }}}, 4),
                         out) == EnvelopeError::malformed);
    // Kinds nobody defined.
    for (std::uint8_t kind : {0, 200, 255}) {
        CAPTURE(int(kind));
        CHECK(decodeEnvelope(handWritten({}, kind), out) == EnvelopeError::invalidField);
    }
    // Every truncation of a real connect answer is refused.
    auto bytes = encodeEnvelope(connectAnswer());
    for (std::size_t n = 0; n < bytes.size(); ++n)
        CHECK(decodeEnvelope({bytes.data(), n}, out) != EnvelopeError::ok);
}

TEST_CASE("connect envelopes expire after two minutes, other envelopes after a week",
          "[envelope]") {
    REQUIRE(kConnectWindowMs == 120'000);
    for (auto e : {connectRequest(), connectAnswer()}) {
        auto t = e.createdMs;
        auto self = e.to, signer = e.from;
        CHECK(checkEnvelope(e, signer, self, t) == EnvelopeVerdict::accept);
        CHECK(checkEnvelope(e, signer, self, t + kConnectWindowMs) == EnvelopeVerdict::accept);
        CHECK(checkEnvelope(e, signer, self, t + kConnectWindowMs + 1) == EnvelopeVerdict::expired);
        CHECK(checkEnvelope(e, signer, self, t + kEnvelopeWindowMs) == EnvelopeVerdict::expired);
        // The clock-skew allowance is the same as for other envelopes.
        CHECK(checkEnvelope(e, signer, self, t - kClockSkewAllowanceMs) == EnvelopeVerdict::accept);
        CHECK(checkEnvelope(e, signer, self, t - kClockSkewAllowanceMs - 1) ==
              EnvelopeVerdict::fromTheFuture);
        // Signature and recipient are checked before the time.
        CHECK(checkEnvelope(e, idOf(9), self, t + kEnvelopeWindowMs) == EnvelopeVerdict::forged);
        CHECK(checkEnvelope(e, signer, idOf(9), t) == EnvelopeVerdict::wrongRecipient);
    }
    auto request = connectRequest();
    request.kind = EnvelopeKind::contactRequest;
    CHECK(checkEnvelope(request, request.from, request.to,
                        request.createdMs + kConnectWindowMs + 1) == EnvelopeVerdict::accept);
    request.kind = EnvelopeKind::contactAccept;
    CHECK(checkEnvelope(request, request.from, request.to, request.createdMs + kEnvelopeWindowMs) ==
          EnvelopeVerdict::accept);
}

// decode(encode(e)) == e for every envelope that decodes: the fuzz target asserts it
// (tests/fuzz/fuzz_envelope.cpp). The decoder reads every known key whatever the kind, the
// encoder writes "cand" and "re" only for connect kinds (and "seq", "text" only for chat
// messages), so e.g. a contact request carrying "cand" decodes to an envelope that does not
// survive a round trip.
TEST_CASE("an envelope that decodes re-encodes to itself, whatever keys it carried", "[envelope]") {
    std::vector<std::vector<Field>> extras = {
        {candidates({"192.0.2.1:4000"})},
        {{"re", [](Packer& pk) { packBin(pk, Bytes(16, 0x31)); }}},
        {{"seq", [](Packer& pk) { pk.pack(7); }}, {"text", [](Packer& pk) { pk.pack("hi"); }}},
    };
    for (std::uint8_t kind : {1, 2, 3, 4})
        for (std::size_t i = 0; i < extras.size(); ++i) {
            CAPTURE(int(kind), i);
            Envelope first, second;
            if (decodeEnvelope(handWritten(extras[i], kind), first) != EnvelopeError::ok)
                continue; // refusing such an envelope is fine too
            REQUIRE(decodeEnvelope(encodeEnvelope(first), second) == EnvelopeError::ok);
            CHECK(second == first);
        }
}

TEST_CASE("an envelope with a key present twice is refused", "[envelope]") {
    auto value = [](auto v) { return [v](Packer& pk) { pk.pack(v); }; };
    auto bin = [](std::size_t size, std::uint8_t fill) {
        return [size, fill](Packer& pk) { packBin(pk, Bytes(size, fill)); };
    };
    Envelope out;
    REQUIRE(decodeEnvelope(handWritten({candidates({"192.0.2.1:1"})}), out) == EnvelopeError::ok);
    auto before = out;
    // handWritten already has v=1, k=3, id=16 x 0x33, t, from=32 x 1 and to=32 x 2: each again,
    // with the same value and with another one.
    std::vector<Field> repeats = {
        {"v", value(1)},
        {"v", value(2)},
        {"k", value(3)},
        {"k", value(4)},
        {"id", bin(16, 0x33)},
        {"id", bin(16, 0x34)},
        {"t", value(std::int64_t{1'790'000'000'000})},
        {"t", value(std::int64_t{1'790'000'000'001})},
        {"from", bin(32, 1)},
        {"from", bin(32, 9)},
        {"to", bin(32, 2)},
        {"to", bin(32, 9)},
    };
    for (const auto& repeat : repeats) {
        CAPTURE(repeat.first);
        CHECK(decodeEnvelope(handWritten({candidates({"192.0.2.1:1"}), repeat}), out) ==
              EnvelopeError::malformed);
    }
    // Optional fields and unknown keys, twice with the same value or two different ones.
    std::vector<std::pair<Field, Field>> pairs = {
        {{"name", value("alice")}, {"name", value("alice")}},
        {{"name", value("alice")}, {"name", value("mallory")}},
        {{"msg", value("hi")}, {"msg", value("hi")}},
        {candidates({"192.0.2.1:1"}), candidates({"192.0.2.1:1"})},
        {candidates({"192.0.2.1:1"}), candidates({"198.51.100.7:1"})},
        {{"re", bin(16, 5)}, {"re", bin(16, 5)}},
        {{"re", bin(16, 5)}, {"re", bin(16, 6)}},
        {{"seq", value(1)}, {"seq", value(2)}},
        {{"text", value("x")}, {"text", value("y")}},
        {{"relay", value("somewhere")}, {"relay", value("somewhere")}},
        {{"relay", value("somewhere")}, {"relay", value(7)}},
    };
    for (const auto& [first, second] : pairs)
        for (std::uint8_t kind : {1, 4}) {
            CAPTURE(first.first, int(kind));
            Envelope once;
            CHECK(decodeEnvelope(handWritten({first}, kind), once) == EnvelopeError::ok);
            CHECK(decodeEnvelope(handWritten({first, second}, kind), out) ==
                  EnvelopeError::malformed);
        }
    // Even when the envelope would otherwise be refused for another reason.
    CHECK(decodeEnvelope(handWritten({{"v", value(2)}, {"name", value(std::string(100, 'n'))}}),
                         out) == EnvelopeError::malformed);
    CHECK(out == before); // out is only written on success
}

TEST_CASE("of several bad envelope fields, the first in the map gives the error", "[envelope]") {
    auto value = [](auto v) { return [v](Packer& pk) { pk.pack(v); }; };
    Field longName = {"name", value(std::string(kMaxNameSize + 1, 'n'))};
    Field shortReplyTo = {"re", [](Packer& pk) { packBin(pk, Bytes(3)); }};
    Envelope out;
    CHECK(decodeEnvelope(handWritten({longName, shortReplyTo}), out) ==
          EnvelopeError::invalidField);
    CHECK(decodeEnvelope(handWritten({shortReplyTo, longName}), out) == EnvelopeError::malformed);
    // Before a required field that is missing, or a chat message without a sequence.
    CHECK(decodeEnvelope(packFields({{"v", value(1)}, longName}), out) ==
          EnvelopeError::invalidField);
    CHECK(decodeEnvelope(handWritten({longName}, 5), out) == EnvelopeError::invalidField);
    CHECK(decodeEnvelope(handWritten({}, 5), out) == EnvelopeError::malformed);
    // The version and the kind where they are: after a bad field, or before one.
    CHECK(decodeEnvelope(packFields({longName, {"v", value(2)}}), out) ==
          EnvelopeError::invalidField);
    CHECK(decodeEnvelope(packFields({{"v", value(2)}, longName}), out) ==
          EnvelopeError::unsupportedVersion);
    CHECK(decodeEnvelope(packFields({shortReplyTo, {"k", value(9)}}), out) ==
          EnvelopeError::malformed);
    CHECK(decodeEnvelope(packFields({{"k", value(9)}, shortReplyTo}), out) ==
          EnvelopeError::invalidField);
    // A negative time is mistyped, not out of range.
    auto withTime = [&](std::int64_t t) {
        return packFields({{"v", value(1)},
                           {"k", value(1)},
                           {"id", [](Packer& pk) { packBin(pk, Bytes(16, 0x33)); }},
                           {"t", value(t)},
                           {"from", [](Packer& pk) { packBin(pk, Bytes(32, 1)); }},
                           {"to", [](Packer& pk) { packBin(pk, Bytes(32, 2)); }},
                           longName});
    };
    CHECK(decodeEnvelope(withTime(5), out) == EnvelopeError::invalidField);
    CHECK(decodeEnvelope(withTime(-1), out) == EnvelopeError::malformed);
}
