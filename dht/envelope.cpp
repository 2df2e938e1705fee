// Inbox envelope encoding, decoding and receiver checks.
#include "envelope.h"

#include "msgpack_reader.h"
#include "records.h"

#include <msgpack.hpp>

namespace parley::dht {

namespace {

msgpack::unpack_limit envelopeLimits() {
    return msgpack::unpack_limit(/*array*/ 16, /*map*/ 16, /*str*/ kMaxEnvelopeChatText, /*bin*/ 64,
                                 /*ext*/ 0,
                                 /*depth*/ 3);
}

constexpr FieldErrors<EnvelopeError> kFieldErrors{EnvelopeError::malformed,
                                                  EnvelopeError::invalidField};

// Reads every known field whatever the kind, so that a bad one fails any envelope.
void readEnvelope(MsgpackFields<EnvelopeError>& in, Envelope& e) {
    std::uint64_t version = 0, kind = 0;
    if (in.unsignedNumber("v", version, Need::required) && version != kEnvelopeVersion)
        in.reject("v", EnvelopeError::unsupportedVersion);
    if (in.unsignedNumber("k", kind, Need::required)) {
        if (kind >= 1 && kind <= 5)
            e.kind = static_cast<EnvelopeKind>(kind);
        else
            in.reject("k", EnvelopeError::invalidField);
    }
    in.fixedBin("id", e.id, Need::required);
    in.unsignedNumber("t", e.createdMs, Need::required); // a negative time is malformed
    ContactId::Bytes from{}, to{};
    if (in.fixedBin("from", from, Need::required))
        e.from = ContactId(from);
    if (in.fixedBin("to", to, Need::required))
        e.to = ContactId(to);
    in.text("name", kMaxNameSize, e.name, Need::optional);
    in.text("msg", kMaxRequestMessageSize, e.message, Need::optional);
    in.textList("cand", kMaxCandidates, kMaxCandidateSize, e.candidates, Need::optional);
    in.unsignedNumber("seq", e.seq, Need::optional);
    in.text("text", kMaxEnvelopeChatText, e.text, Need::optional);
    in.fixedBin("re", e.replyTo, Need::optional);
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
    Envelope e;
    try {
        auto handle = unpackMsgpack(bytes, envelopeLimits());
        if (!handle)
            return EnvelopeError::malformed;
        MsgpackFields in(handle->get(), kFieldErrors);
        readEnvelope(in, e);
        if (in.failed())
            return in.error();
    } catch (const std::exception&) {
        // Running out of memory copying a field.
        return EnvelopeError::malformed;
    }
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
