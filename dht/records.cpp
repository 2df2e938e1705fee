// Key card and presence encoding, decoding and verification.
#include "records.h"

#include "msgpack_reader.h"

#include <gnutls/abstract.h>
#include <gnutls/x509.h>
#include <msgpack.hpp>

namespace parley::dht {

namespace {

// Bounds for msgpack's unpacker: records are small, so anything bigger is hostile.
msgpack::unpack_limit recordLimits() {
    return msgpack::unpack_limit(/*array*/ 64, /*map*/ 32, /*str*/ 4096, /*bin*/ 8192,
                                 /*ext*/ 0, /*depth*/ 4);
}

constexpr FieldErrors<RecordError> kFieldErrors{RecordError::malformed, RecordError::invalidField};

// The major version field common to every record, checked before any other field.
RecordError checkVersion(MsgpackFields<RecordError>& in) {
    std::uint64_t version = 0;
    if (!in.unsignedNumber("v", version, Need::required) || in.failed())
        return in.error();
    return version == kRecordVersion ? RecordError::ok : RecordError::unsupportedVersion;
}

RecordError readKeyCard(MsgpackFields<RecordError>& in, KeyCard& card) {
    if (auto err = checkVersion(in); err != RecordError::ok)
        return err;
    if (in.bin("cert", kMaxCertificateSize, card.certificate, Need::required) &&
        card.certificate.empty())
        in.reject("cert", RecordError::invalidField);
    in.text("name", kMaxNameSize, card.name, Need::optional);
    in.unsignedList("proto", kMaxProtocols, card.protocols, Need::optional);
    in.signedNumber("t", card.createdAt, Need::optional);
    // Unknown keys are ignored: a minor revision may add fields.
    return in.error();
}

RecordError readPresence(MsgpackFields<RecordError>& in, Presence& presence) {
    if (auto err = checkVersion(in); err != RecordError::ok)
        return err;
    std::uint64_t status = 0;
    if (in.unsignedNumber("s", status, Need::required)) {
        if (status >= 1 && status <= 3)
            presence.status = static_cast<PresenceStatus>(status);
        else
            in.reject("s", RecordError::invalidField);
    }
    if (in.signedNumber("t", presence.timestampMs, Need::required) && presence.timestampMs < 0)
        in.reject("t", RecordError::invalidField);
    in.unsignedNumber("q", presence.sequence, Need::optional);
    return in.error();
}

} // namespace

std::size_t utf8SequenceAt(std::string_view s, std::size_t i) {
    if (i >= s.size())
        return 0;
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80           ? 1
                      : (c >> 5) == 0x6  ? 2
                      : (c >> 4) == 0xe  ? 3
                      : (c >> 3) == 0x1e ? 4
                                         : 0;
    if (len == 0 || i + len > s.size())
        return 0;
    for (std::size_t k = 1; k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2)
            return 0;
    // RFC 3629: no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF.
    auto next = len > 1 ? static_cast<unsigned char>(s[i + 1]) : 0;
    if ((len == 2 && c < 0xC2) || (c == 0xE0 && next < 0xA0) || (c == 0xED && next >= 0xA0) ||
        (c == 0xF0 && next < 0x90) || (c == 0xF4 && next >= 0x90) || c > 0xF4)
        return 0;
    return len;
}

std::string truncateUtf8(std::string_view text, std::size_t maxBytes) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        std::size_t len = utf8SequenceAt(text, i);
        if (len == 0) {
            ++i;
            continue;
        }
        if (out.size() + len > maxBytes)
            break;
        out.append(text.substr(i, len));
        i += len;
    }
    return out;
}

bool isValidUtf8(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
        std::size_t len = utf8SequenceAt(text, i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

std::string_view describe(RecordError error) {
    switch (error) {
    case RecordError::ok:
        return "ok";
    case RecordError::tooLarge:
        return "record too large";
    case RecordError::malformed:
        return "malformed record";
    case RecordError::unsupportedVersion:
        return "unsupported record version";
    case RecordError::invalidField:
        return "record field out of range";
    case RecordError::wrongOwner:
        return "record not owned by the contact it claims";
    }
    return "unknown record error";
}

std::string_view toString(PresenceStatus status) {
    switch (status) {
    case PresenceStatus::online:
        return "online";
    case PresenceStatus::away:
        return "away";
    case PresenceStatus::offline:
        return "offline";
    }
    return "offline";
}

std::vector<std::uint8_t> encodeKeyCard(const KeyCard& card) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(5);
    pk.pack("v");
    pk.pack(kRecordVersion);
    pk.pack("cert");
    pk.pack_bin(static_cast<std::uint32_t>(card.certificate.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(card.certificate.data()),
                     static_cast<std::uint32_t>(card.certificate.size()));
    pk.pack("name");
    pk.pack(card.name);
    pk.pack("proto");
    pk.pack(card.protocols);
    pk.pack("t");
    pk.pack(card.createdAt);
    return {buf.data(), buf.data() + buf.size()};
}

RecordError decodeKeyCard(std::span<const std::uint8_t> bytes, KeyCard& out) {
    if (bytes.size() > kMaxCardSize)
        return RecordError::tooLarge;
    try {
        auto handle = unpackMsgpack(bytes, recordLimits());
        if (!handle)
            return RecordError::malformed;
        MsgpackFields in(handle->get(), kFieldErrors);
        KeyCard card;
        if (auto err = readKeyCard(in, card); err != RecordError::ok)
            return err;
        out = std::move(card);
        return RecordError::ok;
    } catch (const std::exception&) {
        // Running out of memory copying a field.
        return RecordError::malformed;
    }
}

RecordError verifyKeyCard(const KeyCard& card, const ContactId& owner) {
    gnutls_x509_crt_t crt = nullptr;
    gnutls_pubkey_t pub = nullptr;
    RecordError result = RecordError::wrongOwner;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
        return RecordError::invalidField;
    gnutls_datum_t datum{const_cast<unsigned char*>(card.certificate.data()),
                         static_cast<unsigned>(card.certificate.size())};
    gnutls_datum_t der{};
    if (gnutls_x509_crt_import(crt, &datum, GNUTLS_X509_FMT_DER) != GNUTLS_E_SUCCESS) {
        result = RecordError::invalidField;
    } else if (gnutls_pubkey_init(&pub) == GNUTLS_E_SUCCESS &&
               gnutls_pubkey_import_x509(pub, crt, 0) == GNUTLS_E_SUCCESS &&
               gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) == GNUTLS_E_SUCCESS) {
        auto id = ContactId::ofPublicKeyDer({der.data, der.size});
        result = id == owner ? RecordError::ok : RecordError::wrongOwner;
        gnutls_free(der.data);
    } else {
        result = RecordError::invalidField;
    }
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_x509_crt_deinit(crt);
    return result;
}

std::vector<std::uint8_t> publicKeyOfCard(const KeyCard& card) {
    std::vector<std::uint8_t> out;
    gnutls_x509_crt_t crt = nullptr;
    gnutls_pubkey_t pub = nullptr;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
        return out;
    gnutls_datum_t datum{const_cast<unsigned char*>(card.certificate.data()),
                         static_cast<unsigned>(card.certificate.size())};
    gnutls_datum_t der{};
    if (gnutls_x509_crt_import(crt, &datum, GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
        gnutls_pubkey_init(&pub) == GNUTLS_E_SUCCESS &&
        gnutls_pubkey_import_x509(pub, crt, 0) == GNUTLS_E_SUCCESS &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) == GNUTLS_E_SUCCESS) {
        out.assign(der.data, der.data + der.size);
        gnutls_free(der.data);
    }
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_x509_crt_deinit(crt);
    return out;
}

std::vector<std::uint8_t> encodePresence(const Presence& presence) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(4);
    pk.pack("v");
    pk.pack(kRecordVersion);
    pk.pack("s");
    pk.pack(static_cast<std::uint8_t>(presence.status));
    pk.pack("t");
    pk.pack(presence.timestampMs);
    pk.pack("q");
    pk.pack(presence.sequence);
    return {buf.data(), buf.data() + buf.size()};
}

RecordError decodePresence(std::span<const std::uint8_t> bytes, Presence& out) {
    if (bytes.size() > kMaxPresenceSize)
        return RecordError::tooLarge;
    // Nothing here allocates but the unpacker, which never throws.
    auto handle = unpackMsgpack(bytes, recordLimits());
    if (!handle)
        return RecordError::malformed;
    MsgpackFields in(handle->get(), kFieldErrors);
    Presence presence;
    if (auto err = readPresence(in, presence); err != RecordError::ok)
        return err;
    out = presence;
    return RecordError::ok;
}

bool isPresenceFresh(const Presence& presence, std::int64_t nowMs) {
    if (presence.timestampMs > nowMs + kClockSkewAllowanceMs)
        return false;
    return nowMs - presence.timestampMs <= kPresenceStaleAfterMs;
}

} // namespace parley::dht
