// Control-stream frames: the length-prefix reader and the msgpack codec of each message type.
#include "node/link/frame.h"

#include "dht/msgpack_reader.h"

#include <algorithm>
#include <array>
#include <msgpack.hpp>
#include <stdexcept>
#include <utility>

namespace parley::node::wire {

namespace {

// A capacity the reader keeps once drained; above it the buffer is released.
constexpr std::size_t kKeptCapacity = 64 * 1024;

std::uint32_t readLength(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

// msgpack-cxx allocates an array's or a map's objects when it reads the header, before the
// elements arrive, so these caps (with the depth) bound what a few bytes can make it allocate.
// Strings and binaries are only copied once all their bytes are there: the frame bounds them.
msgpack::unpack_limit messageLimits() {
    return msgpack::unpack_limit(/*array*/ 1024, /*map*/ 256, /*str*/ kMaxFrameSize,
                                 /*bin*/ kMaxFrameSize, /*ext*/ 0, /*depth*/ 8);
}

using Packer = msgpack::packer<msgpack::sbuffer>;

using dht::Need;
// Every way a message map can be wrong is the same error: the connection closes.
using FieldReader = dht::MsgpackFields<FrameError>;
constexpr dht::FieldErrors<FrameError> kFieldErrors{FrameError::malformed, FrameError::malformed};

void packKey(Packer& pk, std::string_view key) {
    pk.pack_str(static_cast<std::uint32_t>(key.size()));
    pk.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
}

// One codec per message type: its "t", how many fields it writes besides "t", how it writes
// them and how it reads them back. A new message type is a struct in frame.h, an alternative
// in Message and a Codec here.
template <class T> struct Codec;

template <> struct Codec<Hello> {
    static constexpr std::string_view type = "hello";
    static constexpr std::uint32_t fields = 4;

    static void pack(Packer& pk, const Hello& m) {
        packKey(pk, "v");
        pk.pack(m.version);
        packKey(pk, "min");
        pk.pack(m.minVersion);
        packKey(pk, "features");
        pk.pack(m.features);
        packKey(pk, "agent");
        pk.pack(m.agent);
    }

    static FrameError read(FieldReader& in, Hello& m) {
        in.unsignedNumber("v", m.version, Need::required);
        in.unsignedNumber("min", m.minVersion, Need::required);
        in.textList("features", kMaxFeatures, kMaxFeatureSize, m.features, Need::optional);
        in.text("agent", kMaxAgentSize, m.agent, Need::optional);
        if (in.failed() || m.minVersion == 0 || m.version < m.minVersion)
            return FrameError::malformed;
        if (m.minVersion > kProtocolVersion)
            return FrameError::unsupportedVersion;
        return FrameError::ok;
    }
};

// Ping and pong carry the same fields; only their "t" differs.
template <class Probe> struct ProbeCodec {
    static constexpr std::uint32_t fields = 2;

    static void pack(Packer& pk, const Probe& m) {
        packKey(pk, "seq");
        pk.pack(m.seq);
        packKey(pk, "sent");
        pk.pack(m.sentUs);
    }

    static FrameError read(FieldReader& in, Probe& m) {
        in.unsignedNumber("seq", m.seq, Need::required);
        in.unsignedNumber("sent", m.sentUs, Need::required);
        return in.failed() ? FrameError::malformed : FrameError::ok;
    }
};

template <> struct Codec<Ping> : ProbeCodec<Ping> {
    static constexpr std::string_view type = "ping";
};

template <> struct Codec<Pong> : ProbeCodec<Pong> {
    static constexpr std::string_view type = "pong";
};

template <> struct Codec<Goodbye> {
    static constexpr std::string_view type = "goodbye";
    static constexpr std::uint32_t fields = 1;

    static void pack(Packer& pk, const Goodbye& m) {
        packKey(pk, "reason");
        pk.pack(m.reason);
    }

    static FrameError read(FieldReader& in, Goodbye& m) {
        in.text("reason", kMaxGoodbyeReasonSize, m.reason, Need::optional);
        return in.failed() ? FrameError::malformed : FrameError::ok;
    }
};

void packId(Packer& pk, const MessageId& id) {
    pk.pack_bin(static_cast<std::uint32_t>(id.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(id.data()),
                     static_cast<std::uint32_t>(id.size()));
}

void packIds(Packer& pk, const std::vector<MessageId>& ids) {
    pk.pack_array(static_cast<std::uint32_t>(ids.size()));
    for (const auto& id : ids)
        packId(pk, id);
}

template <> struct Codec<ChatMessage> {
    static constexpr std::string_view type = "msg";
    static constexpr std::uint32_t fields = 4;

    static void pack(Packer& pk, const ChatMessage& m) {
        packKey(pk, "id");
        packId(pk, m.id);
        packKey(pk, "seq");
        pk.pack(m.seq);
        packKey(pk, "ts");
        pk.pack(m.sentMs);
        packKey(pk, "text");
        pk.pack_str(static_cast<std::uint32_t>(m.text.size()));
        pk.pack_str_body(m.text.data(), static_cast<std::uint32_t>(m.text.size()));
    }

    static FrameError read(FieldReader& in, ChatMessage& m) {
        in.fixedBin("id", m.id, Need::required);
        in.unsignedNumber("seq", m.seq, Need::required);
        in.unsignedNumber("ts", m.sentMs, Need::required);
        in.bytes("text", kMaxChatTextSize, m.text, Need::required);
        return in.failed() || m.seq == 0 ? FrameError::malformed : FrameError::ok;
    }
};

// Receipts (ack, read) are a list of message ids; only their "t" differs.
template <class Receipt> struct ReceiptCodec {
    static constexpr std::uint32_t fields = 1;
    static void pack(Packer& pk, const Receipt& m) {
        packKey(pk, "ids");
        packIds(pk, m.ids);
    }
    static FrameError read(FieldReader& in, Receipt& m) {
        in.fixedBinList("ids", kMaxIdsPerFrame, m.ids, Need::required);
        return in.failed() ? FrameError::malformed : FrameError::ok;
    }
};

template <> struct Codec<ChatAck> : ReceiptCodec<ChatAck> {
    static constexpr std::string_view type = "ack";
};

template <> struct Codec<ChatRead> : ReceiptCodec<ChatRead> {
    static constexpr std::string_view type = "read";
};

template <std::size_t... I> constexpr bool typeNamesAreUnique(std::index_sequence<I...>) {
    std::array<std::string_view, sizeof...(I)> names{
        Codec<std::variant_alternative_t<I, Message>>::type...};
    for (std::size_t i = 0; i < names.size(); ++i)
        for (std::size_t j = i + 1; j < names.size(); ++j)
            if (names[i] == names[j])
                return false;
    return true;
}
static_assert(typeNamesAreUnique(std::make_index_sequence<std::variant_size_v<Message>>()),
              "two message types share a \"t\"");

// Finds the alternative of Message whose Codec has this "t" and reads it.
template <std::size_t I = 0>
FrameError decodeAs(std::string_view type, FieldReader& in, Message& out) {
    if constexpr (I == std::variant_size_v<Message>) {
        return FrameError::unknownType;
    } else {
        using T = std::variant_alternative_t<I, Message>;
        if (type != Codec<T>::type)
            return decodeAs<I + 1>(type, in, out);
        T message;
        auto error = Codec<T>::read(in, message);
        if (error == FrameError::ok)
            out = std::move(message);
        return error;
    }
}

} // namespace

std::string_view describe(FrameError error) {
    switch (error) {
    case FrameError::ok:
        return "ok";
    case FrameError::tooLarge:
        return "the peer announced a control frame larger than the frame size limit; closing the "
               "connection";
    case FrameError::empty:
        return "the peer sent an empty control frame; closing the connection";
    case FrameError::malformed:
        return "the peer sent a malformed control message (not msgpack, a missing or mistyped "
               "field, or a field over its limit)";
    case FrameError::unknownType:
        return "the peer sent a control message of a type this version does not know; ignored";
    case FrameError::unsupportedVersion:
        return "the peer needs a newer protocol version than this parley speaks; one side should "
               "upgrade parley";
    }
    return "unknown control frame error";
}

FrameReader::FrameReader(std::size_t maxFrame) : maxFrame_(maxFrame) {}

FrameError FrameReader::push(std::span<const std::uint8_t> bytes) {
    if (error_ != FrameError::ok)
        return error_;
    compact();
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    while (checked_ + kFramePrefixSize <= buffer_.size()) {
        std::uint32_t length = readLength(buffer_.data() + checked_);
        if (length == 0)
            return fail(FrameError::empty);
        if (length > maxFrame_)
            return fail(FrameError::tooLarge);
        checked_ += kFramePrefixSize + length;
    }
    return FrameError::ok;
}

std::optional<std::vector<std::uint8_t>> FrameReader::next() {
    if (error_ != FrameError::ok || buffered() < kFramePrefixSize)
        return std::nullopt;
    const std::uint8_t* start = buffer_.data() + offset_;
    std::uint32_t length = readLength(start);
    if (buffered() - kFramePrefixSize < length)
        return std::nullopt;
    std::vector<std::uint8_t> payload(start + kFramePrefixSize, start + kFramePrefixSize + length);
    offset_ += kFramePrefixSize + length;
    if (offset_ == buffer_.size())
        compact();
    return payload;
}

std::size_t FrameReader::buffered() const {
    return buffer_.size() - offset_;
}

FrameError FrameReader::fail(FrameError error) {
    error_ = error;
    buffer_ = {};
    offset_ = checked_ = 0;
    return error;
}

// Drops returned frames from the front of the buffer once that is cheap: when nothing is left,
// or when what is left is no bigger than what goes (so each byte moves O(1) times on average).
void FrameReader::compact() {
    if (offset_ == 0)
        return;
    std::size_t left = buffer_.size() - offset_;
    if (left == 0) {
        if (buffer_.capacity() > kKeptCapacity)
            buffer_ = {};
        else
            buffer_.clear();
    } else if (left <= offset_) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(offset_));
    } else {
        return;
    }
    checked_ -= offset_;
    offset_ = 0;
}

FrameError frame(std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out) {
    if (payload.size() > kMaxFrameSize)
        return FrameError::tooLarge;
    if (payload.empty())
        return FrameError::empty;
    auto length = static_cast<std::uint32_t>(payload.size());
    out.clear();
    out.reserve(kFramePrefixSize + payload.size());
    out.push_back(static_cast<std::uint8_t>(length >> 24));
    out.push_back(static_cast<std::uint8_t>(length >> 16));
    out.push_back(static_cast<std::uint8_t>(length >> 8));
    out.push_back(static_cast<std::uint8_t>(length));
    out.insert(out.end(), payload.begin(), payload.end());
    return FrameError::ok;
}

std::string_view typeName(const Message& message) {
    return std::visit([](const auto& m) { return Codec<std::decay_t<decltype(m)>>::type; },
                      message);
}

std::vector<std::uint8_t> encodeMessage(const Message& message) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    std::visit(
        [&pk](const auto& m) {
            using C = Codec<std::decay_t<decltype(m)>>;
            pk.pack_map(1 + C::fields);
            packKey(pk, "t");
            packKey(pk, C::type);
            C::pack(pk, m);
        },
        message);
    return {buf.data(), buf.data() + buf.size()};
}

FrameError decodeMessage(std::span<const std::uint8_t> payload, Message& out) {
    if (payload.empty())
        return FrameError::empty;
    if (payload.size() > kMaxFrameSize)
        return FrameError::tooLarge;
    try {
        std::size_t used = 0;
        auto handle = dht::unpackMsgpack(payload, messageLimits(), &used);
        if (!handle || used != payload.size())
            return FrameError::malformed;
        // Not a map, or a key present twice, fails here whatever the type.
        FieldReader in(handle->get(), kFieldErrors);
        const auto* type = in.find("t", Need::required);
        if (in.failed() || !type || type->type != msgpack::type::STR)
            return FrameError::malformed;
        return decodeAs({type->via.str.ptr, type->via.str.size}, in, out);
    } catch (const std::exception&) {
        // Running out of memory copying fields (unpackMsgpack catches msgpack's own errors).
        return FrameError::malformed;
    }
}

FrameError checkCaps(const Message& message) {
    auto within = [](const auto& list, std::size_t cap) { return list.size() <= cap; };
    bool ok = std::visit(
        [&](const auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Hello>) {
                return within(m.features, kMaxFeatures) && within(m.agent, kMaxAgentSize) &&
                       std::all_of(m.features.begin(), m.features.end(),
                                   [&](const auto& f) { return within(f, kMaxFeatureSize); });
            } else if constexpr (std::is_same_v<T, Goodbye>) {
                return within(m.reason, kMaxGoodbyeReasonSize);
            } else if constexpr (std::is_same_v<T, ChatMessage>) {
                return within(m.text, kMaxChatTextSize);
            } else if constexpr (std::is_same_v<T, ChatAck> || std::is_same_v<T, ChatRead>) {
                return within(m.ids, kMaxIdsPerFrame);
            } else {
                return true;
            }
        },
        message);
    return ok ? FrameError::ok : FrameError::malformed;
}

FrameError encodeFrame(const Message& message, std::vector<std::uint8_t>& out) {
    if (auto error = checkCaps(message); error != FrameError::ok)
        return error;
    try {
        return frame(encodeMessage(message), out);
    } catch (const std::bad_alloc&) {
        return FrameError::tooLarge;
    }
}

} // namespace parley::node::wire
