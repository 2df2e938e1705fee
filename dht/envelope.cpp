// Inbox envelope encoding, decoding and receiver checks.
#include "envelope.h"

#include "records.h"

#include <msgpack.hpp>

namespace parley::dht {

namespace {

msgpack::unpack_limit envelopeLimits() {
    return msgpack::unpack_limit(/*array*/ 16, /*map*/ 16, /*str*/ kMaxEnvelopeChatText, /*bin*/ 64,
                                 /*ext*/ 0,
                                 /*depth*/ 3);
}

bool keyIs(const msgpack::object& key, std::string_view name) {
    return key.type == msgpack::type::STR &&
           std::string_view(key.via.str.ptr, key.via.str.size) == name;
}

bool readBin(const msgpack::object& o, std::span<std::uint8_t> out) {
    if (o.type != msgpack::type::BIN || o.via.bin.size != out.size())
        return false;
    std::copy(o.via.bin.ptr, o.via.bin.ptr + o.via.bin.size, out.begin());
    return true;
}

bool readString(const msgpack::object& o, std::size_t max, std::string& out, bool& tooLong) {
    if (o.type != msgpack::type::STR)
        return false;
    std::string_view text(o.via.str.ptr, o.via.str.size);
    if (text.size() > max || !isValidUtf8(text)) {
        tooLong = true;
        return false;
    }
    out = text;
    return true;
}

void packBin(msgpack::packer<msgpack::sbuffer>& pk, std::span<const std::uint8_t> bytes) {
    pk.pack_bin(static_cast<std::uint32_t>(bytes.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(bytes.data()),
                     static_cast<std::uint32_t>(bytes.size()));
}

} // namespace

std::string_view toString(EnvelopeKind kind) {
    switch (kind) {
    case EnvelopeKind::contactRequest:
        return "contact-request";
    case EnvelopeKind::contactAccept:
        return "contact-accept";
    case EnvelopeKind::connectRequest:
        return "connect-request";
    case EnvelopeKind::connectAnswer:
        return "connect-answer";
    case EnvelopeKind::chatMessage:
        return "chat-message";
    }
    return "unknown";
}

std::string_view describe(EnvelopeError error) {
    switch (error) {
    case EnvelopeError::ok:
        return "ok";
    case EnvelopeError::tooLarge:
        return "envelope too large";
    case EnvelopeError::malformed:
        return "malformed envelope";
    case EnvelopeError::unsupportedVersion:
        return "unsupported envelope version";
    case EnvelopeError::invalidField:
        return "envelope field out of range";
    }
    return "unknown envelope error";
}

std::string_view toString(EnvelopeVerdict verdict) {
    switch (verdict) {
    case EnvelopeVerdict::accept:
        return "accept";
    case EnvelopeVerdict::forged:
        return "forged";
    case EnvelopeVerdict::wrongRecipient:
        return "wrong-recipient";
    case EnvelopeVerdict::expired:
        return "expired";
    case EnvelopeVerdict::fromTheFuture:
        return "from-the-future";
    }
    return "unknown";
}

std::vector<std::uint8_t> encodeEnvelope(const Envelope& e) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    bool connect = isConnectKind(e.kind);
    bool chat = e.kind == EnvelopeKind::chatMessage;
    pk.pack_map(connect || chat ? 10 : 8);
    pk.pack("v");
    pk.pack(kEnvelopeVersion);
    pk.pack("k");
    pk.pack(static_cast<std::uint8_t>(e.kind));
    pk.pack("id");
    packBin(pk, e.id);
    pk.pack("t");
    pk.pack(e.createdMs);
    pk.pack("from");
    packBin(pk, e.from.bytes());
    pk.pack("to");
    packBin(pk, e.to.bytes());
    pk.pack("name");
    pk.pack(e.name);
    pk.pack("msg");
    pk.pack(e.message);
    if (connect) {
        pk.pack("cand");
        pk.pack_array(static_cast<std::uint32_t>(e.candidates.size()));
        for (const auto& c : e.candidates)
            pk.pack(c);
        pk.pack("re");
        packBin(pk, e.replyTo);
    }
    if (chat) {
        pk.pack("seq");
        pk.pack(e.seq);
        pk.pack("text");
        pk.pack(e.text);
    }
    return {buf.data(), buf.data() + buf.size()};
}

EnvelopeError decodeEnvelope(std::span<const std::uint8_t> bytes, Envelope& out) {
    if (bytes.size() > kMaxEnvelopeSize)
        return EnvelopeError::tooLarge;
    msgpack::object_handle handle;
    try {
        handle = msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size(), nullptr,
                                 nullptr, envelopeLimits());
    } catch (const std::exception&) {
        return EnvelopeError::malformed;
    }
    const auto& map = handle.get();
    if (map.type != msgpack::type::MAP)
        return EnvelopeError::malformed;
    Envelope e;
    bool haveVersion = false, haveKind = false, haveId = false, haveTime = false, haveFrom = false,
         haveTo = false;
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& [key, val] = map.via.map.ptr[i];
        bool bad = false;
        if (keyIs(key, "v")) {
            if (val.type != msgpack::type::POSITIVE_INTEGER)
                return EnvelopeError::malformed;
            if (val.via.u64 != kEnvelopeVersion)
                return EnvelopeError::unsupportedVersion;
            haveVersion = true;
        } else if (keyIs(key, "k")) {
            if (val.type != msgpack::type::POSITIVE_INTEGER)
                return EnvelopeError::malformed;
            if (val.via.u64 < 1 || val.via.u64 > 5)
                return EnvelopeError::invalidField;
            e.kind = static_cast<EnvelopeKind>(val.via.u64);
            haveKind = true;
        } else if (keyIs(key, "id")) {
            if (!readBin(val, e.id))
                return EnvelopeError::malformed;
            haveId = true;
        } else if (keyIs(key, "t")) {
            if (val.type != msgpack::type::POSITIVE_INTEGER || val.via.u64 > INT64_MAX)
                return EnvelopeError::malformed;
            e.createdMs = static_cast<std::int64_t>(val.via.u64);
            haveTime = true;
        } else if (keyIs(key, "from") || keyIs(key, "to")) {
            ContactId::Bytes id{};
            if (!readBin(val, id))
                return EnvelopeError::malformed;
            (keyIs(key, "from") ? e.from : e.to) = ContactId(id);
            (keyIs(key, "from") ? haveFrom : haveTo) = true;
        } else if (keyIs(key, "name")) {
            if (!readString(val, kMaxNameSize, e.name, bad))
                return bad ? EnvelopeError::invalidField : EnvelopeError::malformed;
        } else if (keyIs(key, "msg")) {
            if (!readString(val, kMaxRequestMessageSize, e.message, bad))
                return bad ? EnvelopeError::invalidField : EnvelopeError::malformed;
        } else if (keyIs(key, "cand")) {
            if (val.type != msgpack::type::ARRAY)
                return EnvelopeError::malformed;
            if (val.via.array.size > kMaxCandidates)
                return EnvelopeError::invalidField;
            e.candidates.clear();
            for (std::uint32_t j = 0; j < val.via.array.size; ++j) {
                std::string candidate;
                if (!readString(val.via.array.ptr[j], kMaxCandidateSize, candidate, bad))
                    return bad ? EnvelopeError::invalidField : EnvelopeError::malformed;
                e.candidates.push_back(std::move(candidate));
            }
        } else if (keyIs(key, "seq")) {
            if (val.type != msgpack::type::POSITIVE_INTEGER)
                return EnvelopeError::malformed;
            e.seq = val.via.u64;
        } else if (keyIs(key, "text")) {
            if (!readString(val, kMaxEnvelopeChatText, e.text, bad))
                return bad ? EnvelopeError::invalidField : EnvelopeError::malformed;
        } else if (keyIs(key, "re")) {
            if (!readBin(val, e.replyTo))
                return EnvelopeError::malformed;
        }
    }
    if (!haveVersion || !haveKind || !haveId || !haveTime || !haveFrom || !haveTo)
        return EnvelopeError::malformed;
    if (e.kind == EnvelopeKind::chatMessage && e.seq == 0)
        return EnvelopeError::malformed;
    // Fields of other kinds are ignored, like unknown keys: what decodes, re-encodes the same.
    if (!isConnectKind(e.kind)) {
        e.candidates.clear();
        e.replyTo = {};
    }
    if (e.kind != EnvelopeKind::chatMessage) {
        e.seq = 0;
        e.text.clear();
    }
    out = std::move(e);
    return EnvelopeError::ok;
}

EnvelopeVerdict checkEnvelope(const Envelope& e, const ContactId& signer, const ContactId& self,
                              std::int64_t nowMs) {
    if (e.from != signer)
        return EnvelopeVerdict::forged;
    if (e.to != self)
        return EnvelopeVerdict::wrongRecipient;
    if (e.createdMs > nowMs + kClockSkewAllowanceMs)
        return EnvelopeVerdict::fromTheFuture;
    if (nowMs - e.createdMs > (isConnectKind(e.kind) ? kConnectWindowMs : kEnvelopeWindowMs))
        return EnvelopeVerdict::expired;
    return EnvelopeVerdict::accept;
}

} // namespace parley::dht
