// Chat frames on the control stream: msg, ack, read.
#include "node/link/frame.h"

#include <catch2/catch.hpp>
#include <msgpack.hpp>

using namespace parley::node::wire;

namespace {

MessageId mid(std::uint8_t b) {
    MessageId id{};
    id.fill(b);
    return id;
}

Message roundTrip(const Message& m) {
    Message out;
    REQUIRE(decodeMessage(encodeMessage(m), out) == FrameError::ok);
    return out;
}

std::vector<std::uint8_t> pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& f) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    f(pk);
    return {buf.data(), buf.data() + buf.size()};
}

} // namespace

TEST_CASE("chat frames round-trip", "[frame][chat]") {
    ChatMessage m{mid(7), 42, 1'700'000'000'000, "h\xC3\xA9llo"};
    CHECK(roundTrip(m) == Message(m));
    CHECK(typeName(m) == "msg");
    ChatAck a{{mid(1), mid(2), mid(3)}};
    CHECK(roundTrip(a) == Message(a));
    ChatRead r{{mid(9)}};
    CHECK(roundTrip(r) == Message(r));
    CHECK(roundTrip(ChatAck{}) == Message(ChatAck{}));
    // The largest text and the most ids fit in one frame.
    ChatMessage big{mid(1), 1, 1, std::string(kMaxChatTextSize, 'x')};
    CHECK(roundTrip(big) == Message(big));
    ChatAck many{std::vector<MessageId>(kMaxIdsPerFrame, mid(5))};
    std::vector<std::uint8_t> framed;
    CHECK(encodeFrame(many, framed) == FrameError::ok);
    CHECK(framed.size() <= kFramePrefixSize + kMaxFrameSize);
    CHECK(roundTrip(many) == Message(many));
}

TEST_CASE("chat text travels as bytes: bad UTF-8 does not fail the frame", "[frame][chat]") {
    ChatMessage m{mid(7), 1, 1, "bad \xFF byte"};
    auto out = roundTrip(m);
    CHECK(std::get<ChatMessage>(out).text == "bad \xFF byte"); // repaired by the chat layer
}

TEST_CASE("malformed chat frames are refused", "[frame][chat]") {
    Message out;
    auto msg = [&](auto&& fields) {
        return pack([&](auto& pk) {
            pk.pack_map(5);
            pk.pack("t");
            pk.pack("msg");
            fields(pk);
        });
    };
    // seq 0 is not a sequence number.
    auto zeroSeq = msg([](auto& pk) {
        pk.pack("id");
        pk.pack_bin(16);
        pk.pack_bin_body("0123456789abcdef", 16);
        pk.pack("seq");
        pk.pack(0);
        pk.pack("ts");
        pk.pack(1);
        pk.pack("text");
        pk.pack("x");
    });
    CHECK(decodeMessage(zeroSeq, out) == FrameError::malformed);
    // An id of the wrong length.
    auto shortId = msg([](auto& pk) {
        pk.pack("id");
        pk.pack_bin(3);
        pk.pack_bin_body("abc", 3);
        pk.pack("seq");
        pk.pack(1);
        pk.pack("ts");
        pk.pack(1);
        pk.pack("text");
        pk.pack("x");
    });
    CHECK(decodeMessage(shortId, out) == FrameError::malformed);
    // Text over the limit.
    auto longText = msg([](auto& pk) {
        pk.pack("id");
        pk.pack_bin(16);
        pk.pack_bin_body("0123456789abcdef", 16);
        pk.pack("seq");
        pk.pack(1);
        pk.pack("ts");
        pk.pack(1);
        pk.pack("text");
        pk.pack(std::string(kMaxChatTextSize + 1, 'x'));
    });
    CHECK(decodeMessage(longText, out) == FrameError::malformed);
    // An ack with a non-binary id.
    auto badAck = pack([](auto& pk) {
        pk.pack_map(2);
        pk.pack("t");
        pk.pack("ack");
        pk.pack("ids");
        pk.pack_array(1);
        pk.pack("not an id");
    });
    CHECK(decodeMessage(badAck, out) == FrameError::malformed);
    // A message with its text twice: which one would be shown?
    auto twoTexts = pack([](auto& pk) {
        pk.pack_map(6);
        pk.pack("t");
        pk.pack("msg");
        pk.pack("id");
        pk.pack_bin(16);
        pk.pack_bin_body("0123456789abcdef", 16);
        pk.pack("seq");
        pk.pack(1);
        pk.pack("ts");
        pk.pack(1);
        pk.pack("text");
        pk.pack("pay 10 to alice");
        pk.pack("text");
        pk.pack("pay 10 to mallory");
    });
    CHECK(decodeMessage(twoTexts, out) == FrameError::malformed);
    auto twoIds = pack([](auto& pk) {
        pk.pack_map(3);
        pk.pack("t");
        pk.pack("read");
        pk.pack("ids");
        pk.pack_array(0);
        pk.pack("ids");
        pk.pack_array(0);
    });
    CHECK(decodeMessage(twoIds, out) == FrameError::malformed);
}
