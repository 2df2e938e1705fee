// StreamRouter and the stream header: headers split across pushes, malformed and oversized
// headers, unknown types reset, interleaved streams, our own streams, bounds and cleanup.
#include "node/link/stream_router.h"

#include <catch2/catch.hpp>

using namespace parley::node::link;

namespace {

constexpr StreamType kFile = 7;
constexpr StreamType kCall = 9;

std::vector<std::uint8_t> bytes(std::initializer_list<int> list) {
    std::vector<std::uint8_t> out;
    for (int b : list)
        out.push_back(static_cast<std::uint8_t>(b));
    return out;
}

std::vector<std::uint8_t> header(StreamType type, const std::vector<std::uint8_t>& id) {
    std::vector<std::uint8_t> out;
    REQUIRE(encodeStreamHeader(type, id, out));
    return out;
}

std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<std::uint8_t> copy(std::span<const std::uint8_t> s) {
    return {s.begin(), s.end()};
}

StreamRouter routerWith(std::initializer_list<StreamType> types) {
    StreamRouter r;
    for (auto t : types)
        REQUIRE(r.registerType(t));
    return r;
}

} // namespace

TEST_CASE("stream header: the documented bytes, and the encoder's refusals") {
    std::vector<std::uint8_t> out;
    REQUIRE(encodeStreamHeader(kFile, bytes({0xaa, 0xbb}), out));
    CHECK(out == bytes({1, 7, 2, 0xaa, 0xbb}));
    out.clear();
    CHECK_FALSE(encodeStreamHeader(0, {}, out));
    CHECK_FALSE(encodeStreamHeader(kFile, std::vector<std::uint8_t>(kMaxStreamIdSize + 1), out));
    CHECK(out.empty());
    CHECK(encodeStreamHeader(kFile, std::vector<std::uint8_t>(kMaxStreamIdSize), out));
    CHECK(out.size() == kMaxStreamHeaderSize);
}

TEST_CASE("stream header: the decoder takes the header and leaves the data, byte by byte") {
    auto wire = concat(header(kFile, bytes({1, 2, 3})), bytes({0xd0, 0xd1}));
    StreamHeaderDecoder d;
    std::size_t taken = 0;
    for (std::size_t i = 0; i < wire.size(); ++i)
        taken += d.push(std::span(wire).subspan(i, 1));
    CHECK(taken == 6); // 3 fixed bytes and the id, not the data
    REQUIRE(d.status() == StreamHeaderDecoder::Status::complete);
    CHECK(d.header() == StreamHeader{kFile, bytes({1, 2, 3})});

    StreamHeaderDecoder empty;
    CHECK(empty.push(bytes({1, 9, 0, 5})) == 3);
    CHECK(empty.status() == StreamHeaderDecoder::Status::complete);
    CHECK(empty.header().id.empty());
}

TEST_CASE("stream header: bad bytes fail as soon as they arrive") {
    auto check = [](std::vector<std::uint8_t> in) {
        StreamHeaderDecoder d;
        d.push(in);
        return d.status();
    };
    using S = StreamHeaderDecoder::Status;
    CHECK(check(bytes({2})) == S::malformed);        // another version
    CHECK(check(bytes({1, 0})) == S::malformed);     // type 0
    CHECK(check(bytes({1, 7, 65})) == S::malformed); // an id over 64 bytes
    CHECK(check(bytes({1, 7, 255})) == S::malformed);
    CHECK(check(bytes({1, 7, 64})) == S::incomplete); // 64 is fine, the id is still to come
}

TEST_CASE("stream router: a header split across pushes opens the stream once, data follows") {
    auto r = routerWith({kFile});
    StreamKey key{1, 1};
    auto wire = concat(header(kFile, bytes({0x42, 0x43})), bytes({10, 11, 12}));
    auto a = r.push(key, true, std::span(wire).first(2), false);
    CHECK_FALSE(a.opened);
    CHECK_FALSE(a.type);
    CHECK(a.data.empty());
    CHECK_FALSE(a.reset);
    auto b = r.push(key, true, std::span(wire).subspan(2, 4), false); // the header's end + 1
    REQUIRE(b.opened);
    CHECK(b.opened->type == kFile);
    CHECK(b.opened->id == bytes({0x42, 0x43}));
    CHECK(b.type == kFile);
    CHECK(copy(b.data) == bytes({10}));
    auto c = r.push(key, true, std::span(wire).subspan(6), true);
    CHECK_FALSE(c.opened);
    CHECK(c.type == kFile);
    CHECK(copy(c.data) == bytes({11, 12}));
    CHECK(c.fin);
    CHECK(r.typeOf(key) == kFile);
    CHECK(r.closed(key) == kFile);
    CHECK(r.streams() == 0);
}

TEST_CASE("stream router: unknown types and malformed headers are reset, late bytes dropped") {
    auto r = routerWith({kFile});
    SECTION("unknown type") {
        StreamKey key{1, 5};
        auto a = r.push(key, true, concat(header(kCall, {}), bytes({1, 2})), false);
        CHECK(a.reset == StreamResetCode::unknownType);
        CHECK_FALSE(a.type);
        CHECK(a.data.empty());
        auto late = r.push(key, true, bytes({3, 4}), false);
        CHECK_FALSE(late.reset);
        CHECK_FALSE(late.type);
        CHECK(late.data.empty());
        CHECK_FALSE(r.closed(key)); // never routed: no handler to tell
    }
    SECTION("an oversized id, even when the bytes come in pieces") {
        StreamKey key{1, 9};
        CHECK_FALSE(r.push(key, true, bytes({1, kFile}), false).reset);
        CHECK(r.push(key, true, bytes({65, 0, 0}), false).reset ==
              StreamResetCode::malformedHeader);
    }
    SECTION("a stream that ends inside its header") {
        StreamKey key{1, 13};
        CHECK(r.push(key, true, bytes({1, kFile, 4, 0}), true).reset ==
              StreamResetCode::malformedHeader);
    }
    SECTION("an empty stream ended at once") {
        CHECK(r.push({1, 17}, true, {}, true).reset == StreamResetCode::malformedHeader);
    }
}

TEST_CASE("stream router: two streams interleaved keep their own headers and data") {
    auto r = routerWith({kFile, kCall});
    StreamKey one{3, 1}, two{3, 5};
    auto w1 = concat(header(kFile, bytes({1})), bytes({0x11, 0x12}));
    auto w2 = concat(header(kCall, bytes({2, 2})), bytes({0x21}));
    CHECK_FALSE(r.push(one, true, std::span(w1).first(2), false).type);
    CHECK_FALSE(r.push(two, true, std::span(w2).first(3), false).type);
    auto a = r.push(one, true, std::span(w1).subspan(2), false);
    auto b = r.push(two, true, std::span(w2).subspan(3), false);
    REQUIRE(a.opened);
    REQUIRE(b.opened);
    CHECK(*a.opened == StreamHeader{kFile, bytes({1})});
    CHECK(*b.opened == StreamHeader{kCall, bytes({2, 2})});
    CHECK(copy(a.data) == bytes({0x11, 0x12}));
    CHECK(copy(b.data) == bytes({0x21}));
    // The same stream number on another connection is another stream.
    CHECK_FALSE(r.push({4, 1}, true, bytes({1}), false).type);
    CHECK(r.streams() == 3);
    auto gone = r.closedConnection(3);
    CHECK(gone.size() == 2);
    CHECK(r.streams() == 1);
    CHECK_FALSE(r.typeOf(one));
}

TEST_CASE("stream router: our own streams need adopting, answers carry no header") {
    auto r = routerWith({kFile});
    CHECK_FALSE(r.adopt({1, 0}, kCall)); // not registered
    REQUIRE(r.adopt({1, 0}, kFile));
    CHECK_FALSE(r.adopt({1, 0}, kFile)); // already there
    auto answer = bytes({1, 2, 3}); // `data` points into the pushed bytes
    auto a = r.push({1, 0}, false, answer, false);
    CHECK(a.type == kFile);
    CHECK_FALSE(a.opened);
    CHECK(copy(a.data) == bytes({1, 2, 3}));
    CHECK(r.push({1, 4}, false, bytes({1}), false).reset == StreamResetCode::notRouted);
    r.abandon({1, 0});
    CHECK_FALSE(r.push({1, 0}, false, bytes({4}), false).type);
    CHECK_FALSE(r.closed({1, 0}));
}

TEST_CASE("stream router: registration refuses type 0 and a second handler") {
    StreamRouter r;
    CHECK_FALSE(r.registerType(0));
    CHECK(r.registerType(kFile));
    CHECK_FALSE(r.registerType(kFile));
    CHECK(r.registered(kFile));
    CHECK_FALSE(r.registered(kCall));
}

TEST_CASE("stream router: a connection holds at most kMaxRoutedStreams streams") {
    auto r = routerWith({kFile});
    for (std::size_t i = 0; i < kMaxRoutedStreams; ++i)
        REQUIRE_FALSE(
            r.push({1, static_cast<std::int64_t>(4 * i + 1)}, true, bytes({1}), false).reset);
    StreamKey over{1, static_cast<std::int64_t>(4 * kMaxRoutedStreams + 1)};
    CHECK(r.push(over, true, bytes({1}), false).reset == StreamResetCode::tooManyStreams);
    CHECK_FALSE(r.adopt({1, 0}, kFile));
    CHECK_FALSE(r.push({2, 1}, true, bytes({1}), false).reset); // another connection is fine
    CHECK(r.streams() == kMaxRoutedStreams + 1);
    r.closed({1, 1});
    CHECK_FALSE(r.push(over, true, bytes({1}), false).reset);
}
