// Control-stream frames: the length-prefix reader (splits, bounds, failure) and the message
// codec (round trips, refusals of malformed, mistyped, oversized and unknown messages).
#include "node/link/frame.h"

#include <catch2/catch.hpp>
#include <limits>
#include <msgpack.hpp>

using namespace parley::node::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

// frame() and encodeFrame() that must succeed.
Bytes framed(std::span<const std::uint8_t> payload) {
    Bytes out;
    REQUIRE(frame(payload, out) == FrameError::ok);
    return out;
}
Bytes encoded(const Message& message) {
    Bytes out;
    REQUIRE(encodeFrame(message, out) == FrameError::ok);
    return out;
}
using Packer = msgpack::packer<msgpack::sbuffer>;

// Hand-written msgpack, for payloads encodeMessage would never produce.
template <class Write> Bytes packed(Write&& write) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    write(pk);
    return {buf.data(), buf.data() + buf.size()};
}

Bytes prefix(std::uint32_t length) {
    return {static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
            static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& part : parts)
        out.insert(out.end(), part.begin(), part.end());
    return out;
}

std::vector<Bytes> drain(FrameReader& reader) {
    std::vector<Bytes> out;
    while (auto payload = reader.next())
        out.push_back(std::move(*payload));
    return out;
}

Hello fullHello() {
    Hello h;
    h.version = 3;
    h.minVersion = 1;
    h.features = {"chat", "receipts", "calls/v1"};
    h.agent = "parley/0.1.0 (Débian)";
    return h;
}

FrameError decode(const Bytes& payload) {
    Message out;
    return decodeMessage(payload, out);
}

} // namespace

TEST_CASE("every control message round-trips", "[frame]") {
    std::vector<Message> messages = {
        Hello{},
        fullHello(),
        Ping{},
        Ping{42, 1'790'000'000'000'000},
        Ping{std::numeric_limits<std::uint64_t>::max(), std::numeric_limits<std::uint64_t>::max()},
        Pong{42, 1'790'000'000'000'000},
        Pong{},
        Goodbye{},
        Goodbye{"shutting down: the user quit"},
        Hello{std::numeric_limits<std::uint32_t>::max(), 1,
              std::vector<std::string>(kMaxFeatures, std::string(kMaxFeatureSize, 'f')),
              std::string(kMaxAgentSize, 'a')},
        Goodbye{std::string(kMaxGoodbyeReasonSize / 2, '\0') +
                std::string(kMaxGoodbyeReasonSize / 4, '\x7f') + "\xc3\xa9\xe2\x82\xac"},
    };
    for (const auto& message : messages) {
        auto payload = encodeMessage(message);
        Message out = Goodbye{"not overwritten?"};
        REQUIRE(decodeMessage(payload, out) == FrameError::ok);
        CHECK(out == message);
        CHECK(typeName(out) == typeName(message));

        FrameReader reader;
        REQUIRE(reader.push(encoded(message)) == FrameError::ok);
        auto got = reader.next();
        REQUIRE(got);
        CHECK(*got == payload);
        CHECK(reader.buffered() == 0);
    }
    CHECK(typeName(Hello{}) == "hello");
    CHECK(typeName(Ping{}) == "ping");
    CHECK(typeName(Pong{}) == "pong");
    CHECK(typeName(Goodbye{}) == "goodbye");
    CHECK(encoded(Ping{1, 2}) == framed(encodeMessage(Ping{1, 2})));
}

TEST_CASE("frames carry a big-endian length prefix", "[frame]") {
    Bytes payload = {1, 2, 3};
    CHECK(framed(payload) == Bytes{0, 0, 0, 3, 1, 2, 3});
    Bytes big(kMaxFrameSize, 0xab);
    auto bytes = framed(big);
    CHECK(Bytes(bytes.begin(), bytes.begin() + 4) == prefix(kMaxFrameSize));
    CHECK(bytes.size() == kFramePrefixSize + kMaxFrameSize);
    big.push_back(0);
    Bytes out = {9};
    CHECK(frame(big, out) == FrameError::tooLarge);
    CHECK(frame(Bytes{}, out) == FrameError::empty);
    CHECK(out == Bytes{9}); // untouched on error
}

TEST_CASE("the reader finds the same frames wherever the stream is split", "[frame][reader]") {
    std::vector<Message> messages = {fullHello(), Ping{1, 2}, Pong{1, 2}, Goodbye{"bye"}};
    Bytes stream;
    std::vector<Bytes> payloads;
    for (const auto& message : messages) {
        payloads.push_back(encodeMessage(message));
        auto bytes = framed(payloads.back());
        stream.insert(stream.end(), bytes.begin(), bytes.end());
    }
    std::span<const std::uint8_t> all(stream);

    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        FrameReader reader;
        REQUIRE(reader.push(all.first(cut)) == FrameError::ok);
        auto got = drain(reader);
        REQUIRE(reader.push(all.subspan(cut)) == FrameError::ok);
        for (auto& payload : drain(reader))
            got.push_back(std::move(payload));
        CHECK(got == payloads);
        CHECK(reader.buffered() == 0);
    }

    SECTION("one byte at a time, draining after each") {
        FrameReader reader;
        std::vector<Bytes> got;
        for (std::size_t i = 0; i < stream.size(); ++i) {
            REQUIRE(reader.push(all.subspan(i, 1)) == FrameError::ok);
            for (auto& payload : drain(reader))
                got.push_back(std::move(payload));
        }
        CHECK(got == payloads);
    }
    SECTION("two cuts, never draining until the end") {
        for (std::size_t a = 0; a <= stream.size(); a += 7)
            for (std::size_t b = a; b <= stream.size(); b += 5) {
                FrameReader reader;
                REQUIRE(reader.push(all.subspan(0, a)) == FrameError::ok);
                REQUIRE(reader.push(all.subspan(a, b - a)) == FrameError::ok);
                REQUIRE(reader.push(all.subspan(b)) == FrameError::ok);
                CHECK(reader.buffered() == stream.size());
                CHECK(drain(reader) == payloads);
            }
    }
}

TEST_CASE("many small frames in one push come out in order", "[frame][reader]") {
    constexpr std::uint64_t count = 20'000;
    Bytes stream;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        auto bytes = encoded(Ping{seq, seq * 1000});
        stream.insert(stream.end(), bytes.begin(), bytes.end());
    }
    // A partial frame at the end stays buffered until the rest arrives.
    auto last = encoded(Goodbye{"done"});
    stream.insert(stream.end(), last.begin(), last.end() - 2);

    FrameReader reader;
    REQUIRE(reader.push(stream) == FrameError::ok);
    std::uint64_t seq = 0;
    while (auto payload = reader.next()) {
        Message m;
        REQUIRE(decodeMessage(*payload, m) == FrameError::ok);
        REQUIRE(std::get<Ping>(m) == Ping{seq, seq * 1000});
        ++seq;
    }
    CHECK(seq == count);
    CHECK(reader.buffered() == last.size() - 2);
    REQUIRE(reader.push(std::span(last).last(2)) == FrameError::ok);
    auto payload = reader.next();
    REQUIRE(payload);
    Message m;
    REQUIRE(decodeMessage(*payload, m) == FrameError::ok);
    CHECK(m == Message{Goodbye{"done"}});
    CHECK(reader.buffered() == 0);
}

TEST_CASE("a long stream in chunks keeps the reader's buffer bounded", "[frame][reader]") {
    // Frames from 1 byte to the maximum, pushed in 4000-byte chunks and drained after each:
    // what stays buffered is at most one partial frame plus the chunk just pushed.
    Bytes stream;
    std::vector<std::size_t> sizes = {1, 5, kMaxFrameSize, 300, kMaxFrameSize - 1, 70'000, 2};
    for (std::size_t round = 0; round < 3; ++round)
        for (auto size : sizes) {
            auto bytes = framed(Bytes(size, static_cast<std::uint8_t>(size)));
            stream.insert(stream.end(), bytes.begin(), bytes.end());
        }
    FrameReader reader;
    std::vector<std::size_t> got;
    constexpr std::size_t chunk = 4000;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
        auto piece = std::span(stream).subspan(at, std::min(chunk, stream.size() - at));
        REQUIRE(reader.push(piece) == FrameError::ok);
        while (auto payload = reader.next()) {
            CHECK(*payload == Bytes(payload->size(), static_cast<std::uint8_t>(payload->size())));
            got.push_back(payload->size());
        }
        CHECK(reader.buffered() < kFramePrefixSize + kMaxFrameSize);
    }
    CHECK(got.size() == 3 * sizes.size());
    CHECK(reader.buffered() == 0);
}

TEST_CASE("length prefixes over the maximum fail as soon as they are known", "[frame][reader]") {
    SECTION("exactly the maximum is fine, one more is too large") {
        FrameReader ok;
        CHECK(ok.push(prefix(kMaxFrameSize)) == FrameError::ok);
        CHECK(ok.buffered() == kFramePrefixSize);
        CHECK_FALSE(ok.next());

        FrameReader bad;
        CHECK(bad.push(prefix(kMaxFrameSize + 1)) == FrameError::tooLarge);
        CHECK(bad.error() == FrameError::tooLarge);
    }
    SECTION("a prefix split over pushes") {
        FrameReader reader;
        auto p = prefix(0xffffffff);
        CHECK(reader.push(std::span(p).first(3)) == FrameError::ok);
        CHECK(reader.push(std::span(p).last(1)) == FrameError::tooLarge);
    }
    SECTION("behind a frame still waiting to be read") {
        FrameReader reader;
        CHECK(reader.push(concat({encoded(Ping{}), prefix(kMaxFrameSize + 1)})) ==
              FrameError::tooLarge);
        CHECK_FALSE(reader.next()); // the connection is going away; nothing more is handed out
    }
    SECTION("a smaller maximum") {
        FrameReader reader(16);
        CHECK(reader.push(concat({prefix(16), Bytes(16, 1)})) == FrameError::ok);
        CHECK(reader.next() == Bytes(16, 1));
        CHECK(reader.push(prefix(17)) == FrameError::tooLarge);
    }
}

TEST_CASE("a zero length prefix is an empty frame", "[frame][reader]") {
    FrameReader reader;
    CHECK(reader.push(concat({encoded(Ping{}), prefix(0)})) == FrameError::empty);
    CHECK(reader.error() == FrameError::empty);
}

TEST_CASE("a failed reader stays failed", "[frame][reader]") {
    FrameReader reader;
    auto ping = encoded(Ping{7, 7});
    REQUIRE(reader.push(concat({ping, ping})) == FrameError::ok);
    REQUIRE(reader.next());
    CHECK(reader.push(concat({prefix(0), ping})) == FrameError::empty);
    CHECK(reader.buffered() == 0);
    CHECK_FALSE(reader.next());
    CHECK(reader.push(ping) == FrameError::empty);
    CHECK(reader.push({}) == FrameError::empty);
    CHECK_FALSE(reader.next());
    CHECK(reader.error() == FrameError::empty);
}

TEST_CASE("payloads that are not msgpack maps are malformed", "[frame][codec]") {
    CHECK(decode({}) == FrameError::empty);
    CHECK(decode(Bytes(kMaxFrameSize + 1, 0xc0)) == FrameError::tooLarge);
    CHECK(decode({0xc1}) == FrameError::malformed);                   // never used in msgpack
    CHECK(decode({0xff, 0x00, 0x13, 0x37}) == FrameError::malformed); // an int, then junk
    CHECK(decode({0x2a}) == FrameError::malformed);                   // an int
    CHECK(decode({0x91, 0x01}) == FrameError::malformed);             // an array
    CHECK(decode({0xa4, 'p', 'i', 'n', 'g'}) == FrameError::malformed);
    CHECK(decode({0x80}) == FrameError::malformed); // a map without "t"

    auto payload = encodeMessage(fullHello());
    for (std::size_t n = 1; n < payload.size(); ++n)
        CHECK(decode(Bytes(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n))) ==
              FrameError::malformed);
    payload.push_back(0xc0); // a trailing nil after the map
    CHECK(decode(payload) == FrameError::malformed);

    SECTION("\"t\" missing, twice or not a string") {
        CHECK(decode(packed([](Packer& pk) {
                  pk.pack_map(2);
                  pk.pack("seq");
                  pk.pack(1);
                  pk.pack("sent");
                  pk.pack(2);
              })) == FrameError::malformed);
        CHECK(decode(packed([](Packer& pk) {
                  pk.pack_map(3);
                  pk.pack("t");
                  pk.pack(1);
                  pk.pack("seq");
                  pk.pack(1);
                  pk.pack("sent");
                  pk.pack(2);
              })) == FrameError::malformed);
        CHECK(decode(packed([](Packer& pk) {
                  pk.pack_map(4);
                  pk.pack("t");
                  pk.pack("ping");
                  pk.pack("t");
                  pk.pack("pong");
                  pk.pack("seq");
                  pk.pack(1);
                  pk.pack("sent");
                  pk.pack(2);
              })) == FrameError::malformed);
        CHECK(decode(packed([](Packer& pk) {
                  pk.pack_map(1);
                  pk.pack("t");
                  pk.pack_bin(4);
                  pk.pack_bin_body("ping", 4);
              })) == FrameError::malformed);
    }
}

TEST_CASE("a small payload cannot make the decoder allocate much", "[frame][codec]") {
    // Without the unpack limits these would ask for tens of GiB before finding the payload
    // short; under ASan that aborts the test.
    // A map whose "t" is an array announcing 2^32-1 elements, in 8 bytes.
    CHECK(decode({0x81, 0xa1, 't', 0xdd, 0xff, 0xff, 0xff, 0xff}) == FrameError::malformed);
    // A map announcing 2^32-1 pairs.
    CHECK(decode({0xdf, 0xff, 0xff, 0xff, 0xff}) == FrameError::malformed);
    // A string announcing 4 GiB.
    CHECK(decode({0x81, 0xa1, 't', 0xdb, 0xff, 0xff, 0xff, 0xff}) == FrameError::malformed);
    // Deep nesting under an extra key of an unknown type (unknownType if it were accepted).
    Bytes deep = {0x82, 0xa1, 't', 0xa4, 'z', 'z', 'z', 'z', 0xa1, 'x'};
    deep.insert(deep.end(), 100, 0x91);
    deep.push_back(0x01);
    CHECK(decode(deep) == FrameError::malformed);
}

TEST_CASE("fields of the wrong type are malformed", "[frame][codec]") {
    auto ping = [](auto seq, auto sent) {
        return packed([&](Packer& pk) {
            pk.pack_map(3);
            pk.pack("t");
            pk.pack("ping");
            pk.pack("seq");
            pk.pack(seq);
            pk.pack("sent");
            pk.pack(sent);
        });
    };
    CHECK(decode(ping(1, 2)) == FrameError::ok);
    CHECK(decode(ping("1", 2)) == FrameError::malformed);
    CHECK(decode(ping(1, -2)) == FrameError::malformed);
    CHECK(decode(ping(1, 2.5)) == FrameError::malformed);
    CHECK(decode(ping(true, 2)) == FrameError::malformed);
    CHECK(decode(ping(msgpack::type::nil_t{}, 2)) == FrameError::malformed);

    auto hello = [](auto version, auto features, auto agent) {
        return packed([&](Packer& pk) {
            pk.pack_map(5);
            pk.pack("t");
            pk.pack("hello");
            pk.pack("v");
            pk.pack(version);
            pk.pack("min");
            pk.pack(1);
            pk.pack("features");
            pk.pack(features);
            pk.pack("agent");
            pk.pack(agent);
        });
    };
    using Strings = std::vector<std::string>;
    CHECK(decode(hello(1, Strings{"chat"}, "parley")) == FrameError::ok);
    CHECK(decode(hello(std::uint64_t{1} << 32, Strings{}, "parley")) == FrameError::malformed);
    CHECK(decode(hello(1, "chat", "parley")) == FrameError::malformed);
    CHECK(decode(hello(1, std::vector<int>{1}, "parley")) == FrameError::malformed);
    CHECK(decode(hello(1, Strings{}, 7)) == FrameError::malformed);
    CHECK(decode(hello(1, Strings{}, Strings{"parley"})) == FrameError::malformed);

    auto goodbyeBin = packed([](Packer& pk) {
        pk.pack_map(2);
        pk.pack("t");
        pk.pack("goodbye");
        pk.pack("reason");
        pk.pack_bin(3);
        pk.pack_bin_body("bye", 3);
    });
    CHECK(decode(goodbyeBin) == FrameError::malformed);
}

TEST_CASE("required fields must be there, optional ones default", "[frame][codec]") {
    auto fields = [](std::vector<std::pair<std::string, int>> extra, std::string type) {
        return packed([&](Packer& pk) {
            pk.pack_map(static_cast<std::uint32_t>(1 + extra.size()));
            pk.pack("t");
            pk.pack(type);
            for (const auto& [key, value] : extra) {
                pk.pack(key);
                pk.pack(value);
            }
        });
    };
    CHECK(decode(fields({{"seq", 1}}, "ping")) == FrameError::malformed);
    CHECK(decode(fields({{"sent", 1}}, "pong")) == FrameError::malformed);
    CHECK(decode(fields({{"v", 1}}, "hello")) == FrameError::malformed);
    CHECK(decode(fields({{"min", 1}}, "hello")) == FrameError::malformed);
    CHECK(decode(fields({{"seq", 1}, {"seq", 1}, {"sent", 2}}, "ping")) == FrameError::malformed);

    Message out;
    REQUIRE(decodeMessage(fields({{"v", 1}, {"min", 1}}, "hello"), out) == FrameError::ok);
    CHECK(out == Message{Hello{1, 1, {}, ""}});
    REQUIRE(decodeMessage(fields({}, "goodbye"), out) == FrameError::ok);
    CHECK(out == Message{Goodbye{}});
}

TEST_CASE("unknown types and unknown keys are for newer peers", "[frame][codec]") {
    auto unknown = packed([](Packer& pk) {
        pk.pack_map(2);
        pk.pack("t");
        pk.pack("reaction");
        pk.pack("emoji");
        pk.pack("👍");
    });
    Message out = Ping{9, 9};
    CHECK(decodeMessage(unknown, out) == FrameError::unknownType);
    CHECK(out == Message{Ping{9, 9}});
    CHECK(decode(packed([](Packer& pk) {
              pk.pack_map(1);
              pk.pack("t");
              pk.pack("");
          })) == FrameError::unknownType);

    // Extra keys, of any type and including non-string ones, are skipped.
    auto extended = packed([](Packer& pk) {
        pk.pack_map(6);
        pk.pack("t");
        pk.pack("pong");
        pk.pack("seq");
        pk.pack(5);
        pk.pack(17);
        pk.pack("an integer key");
        pk.pack("sent");
        pk.pack(6);
        pk.pack("nested");
        pk.pack(std::map<std::string, std::vector<int>>{{"a", {1, 2}}});
        pk.pack("seq2");
        pk.pack("x");
    });
    REQUIRE(decodeMessage(extended, out) == FrameError::ok);
    CHECK(out == Message{Pong{5, 6}});
}

TEST_CASE("a key present twice is malformed, even one nobody reads", "[frame][codec]") {
    auto pong = [](auto&& extra) {
        return packed([&](Packer& pk) {
            pk.pack_map(5);
            pk.pack("t");
            pk.pack("pong");
            pk.pack("seq");
            pk.pack(5);
            pk.pack("sent");
            pk.pack(6);
            extra(pk);
        });
    };
    CHECK(decode(pong([](Packer& pk) {
              pk.pack("seq2");
              pk.pack("x");
              pk.pack("seq3");
              pk.pack("x");
          })) == FrameError::ok);
    CHECK(decode(pong([](Packer& pk) {
              pk.pack("seq2");
              pk.pack("x");
              pk.pack("seq2");
              pk.pack("x");
          })) == FrameError::malformed);
    CHECK(decode(pong([](Packer& pk) {
              pk.pack("seq2");
              pk.pack("x");
              pk.pack("seq2");
              pk.pack(7);
          })) == FrameError::malformed);
    CHECK(decode(pong([](Packer& pk) {
              pk.pack("sent");
              pk.pack(6);
              pk.pack("x");
              pk.pack(0);
          })) == FrameError::malformed);
    // In a type this version does not know, too: it is refused, not ignored.
    CHECK(decode(packed([](Packer& pk) {
              pk.pack_map(3);
              pk.pack("t");
              pk.pack("reaction");
              pk.pack("emoji");
              pk.pack("a");
              pk.pack("emoji");
              pk.pack("b");
          })) == FrameError::malformed);
    // Keys are strings; other keys are skipped unread, repeated or not.
    CHECK(decode(pong([](Packer& pk) {
              pk.pack(17);
              pk.pack("x");
              pk.pack(17);
              pk.pack("y");
          })) == FrameError::ok);
}

TEST_CASE("hello versions", "[frame][codec]") {
    auto check = [](std::uint32_t version, std::uint32_t minVersion) {
        Hello h;
        h.version = version;
        h.minVersion = minVersion;
        Message out;
        return decodeMessage(encodeMessage(h), out);
    };
    CHECK(check(kProtocolVersion, 1) == FrameError::ok);
    CHECK(check(kProtocolVersion + 5, kProtocolVersion) == FrameError::ok); // a newer peer
    CHECK(check(kProtocolVersion + 1, kProtocolVersion + 1) == FrameError::unsupportedVersion);
    CHECK(check(1000, 999) == FrameError::unsupportedVersion);
    CHECK(check(1, 0) == FrameError::malformed);
    CHECK(check(1, 2) == FrameError::malformed); // below its own minimum
}

TEST_CASE("text and list caps are enforced", "[frame][codec]") {
    auto hello = fullHello();
    CHECK(decode(encodeMessage(hello)) == FrameError::ok);

    hello.features.assign(kMaxFeatures, "f");
    CHECK(decode(encodeMessage(hello)) == FrameError::ok);
    hello.features.push_back("f");
    CHECK(decode(encodeMessage(hello)) == FrameError::malformed);

    hello = fullHello();
    hello.features.back() = std::string(kMaxFeatureSize, 'x');
    CHECK(decode(encodeMessage(hello)) == FrameError::ok);
    hello.features.back() += 'x';
    CHECK(decode(encodeMessage(hello)) == FrameError::malformed);
    hello.features.back() = "bad \xff utf-8";
    CHECK(decode(encodeMessage(hello)) == FrameError::malformed);

    hello = fullHello();
    hello.agent = std::string(kMaxAgentSize, 'a');
    CHECK(decode(encodeMessage(hello)) == FrameError::ok);
    hello.agent += 'a';
    CHECK(decode(encodeMessage(hello)) == FrameError::malformed);
    hello.agent = "\xc3\x28";
    CHECK(decode(encodeMessage(hello)) == FrameError::malformed);

    Goodbye bye{std::string(kMaxGoodbyeReasonSize, 'r')};
    CHECK(decode(encodeMessage(bye)) == FrameError::ok);
    bye.reason += 'r';
    CHECK(decode(encodeMessage(bye)) == FrameError::malformed);
    bye.reason = "cut in the middle \xe2\x82";
    CHECK(decode(encodeMessage(bye)) == FrameError::malformed);
}

TEST_CASE("every frame error has its own description", "[frame]") {
    std::vector<FrameError> errors = {FrameError::ok,          FrameError::tooLarge,
                                      FrameError::empty,       FrameError::malformed,
                                      FrameError::unknownType, FrameError::unsupportedVersion};
    for (std::size_t i = 0; i < errors.size(); ++i) {
        CHECK_FALSE(describe(errors[i]).empty());
        for (std::size_t j = i + 1; j < errors.size(); ++j)
            CHECK(describe(errors[i]) != describe(errors[j]));
    }
}

TEST_CASE("encoders check the caps the peer enforces and return an error", "[frame]") {
    Bytes out = {9};
    Hello hello;
    hello.agent = std::string(kMaxAgentSize + 1, 'a');
    CHECK(encodeFrame(hello, out) == FrameError::malformed);
    hello.agent = "parley";
    hello.features.assign(kMaxFeatures + 1, "f");
    CHECK(encodeFrame(hello, out) == FrameError::malformed);
    hello.features = {std::string(kMaxFeatureSize + 1, 'f')};
    CHECK(encodeFrame(hello, out) == FrameError::malformed);
    CHECK(encodeFrame(Goodbye{std::string(kMaxGoodbyeReasonSize + 1, 'r')}, out) ==
          FrameError::malformed);
    ChatMessage text;
    text.id.fill(7);
    text.seq = 1;
    text.sentMs = 1'700'000'000'000;
    text.text = std::string(kMaxChatTextSize + 1, 'x');
    CHECK(encodeFrame(text, out) == FrameError::malformed);
    ChatAck ack;
    ack.ids.resize(kMaxIdsPerFrame + 1);
    CHECK(encodeFrame(ack, out) == FrameError::malformed);
    CHECK(encodeFrame(ChatRead{ack.ids}, out) == FrameError::malformed);
    CHECK(out == Bytes{9}); // nothing written
    // At the caps exactly, the frame encodes and the peer decodes it.
    text.text.pop_back();
    ack.ids.pop_back();
    for (const Message& m : std::vector<Message>{text, ack}) {
        REQUIRE(encodeFrame(m, out) == FrameError::ok);
        Message back;
        CHECK(decodeMessage(std::span(out).subspan(kFramePrefixSize), back) == FrameError::ok);
        CHECK(back == m);
    }
}
