// DHT records that parley publishes: the key card and presence (DESIGN.md §4).
// Encoding is msgpack with short keys and a major version "v"; decoders take untrusted bytes,
// never throw, and return a RecordError.
#pragma once

#include "contact_id.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parley::dht {

inline constexpr std::uint32_t kRecordVersion = 1;
inline constexpr std::size_t kMaxCardSize = 8 * 1024;
inline constexpr std::size_t kMaxPresenceSize = 256;
inline constexpr std::size_t kMaxNameSize = 64; // bytes of UTF-8
inline constexpr std::size_t kMaxCertificateSize = 4096;
inline constexpr std::size_t kMaxProtocols = 16;

enum class RecordError {
    ok = 0,
    tooLarge,           // over the record's size cap
    malformed,          // not msgpack, or not the expected shape
    unsupportedVersion, // a major version we do not speak
    invalidField,       // a field out of range (name too long, unknown status, ...)
    wrongOwner,         // signed by, or certifying, someone other than the ContactId
};

std::string_view describe(RecordError error);

struct KeyCard {
    std::vector<std::uint8_t> certificate; // DER X.509, the owner's self-signed certificate
    std::string name;                      // display name chosen by the owner
    std::vector<std::uint32_t> protocols;  // parley protocol versions the owner speaks
    std::int64_t createdAt = 0;            // unix seconds

    bool operator==(const KeyCard&) const = default;
};

enum class PresenceStatus : std::uint8_t { online = 1, away = 2, offline = 3 };

std::string_view toString(PresenceStatus status);

struct Presence {
    PresenceStatus status = PresenceStatus::online;
    std::int64_t timestampMs = 0; // unix milliseconds, the publisher's clock
    std::uint64_t sequence = 0;   // increases with every publication

    bool operator==(const Presence&) const = default;
};

// Presence is refreshed this often while online and counts as stale (offline) after
// kPresenceStaleAfterMs. A timestamp further in the future than the skew allowance is invalid.
inline constexpr std::int64_t kPresenceRefreshMs = 60'000;
inline constexpr std::int64_t kPresenceStaleAfterMs = 3 * kPresenceRefreshMs;
inline constexpr std::int64_t kClockSkewAllowanceMs = 5 * 60'000;

// How the records sit in OpenDHT. Value types come from OpenDHT's stock table so that stock
// nodes store them: 4 ("trust request") lives 7 days, which keeps an offline person's card
// findable; 0 (user data) lives 10 minutes, longer than presence counts as fresh. Fixed
// value ids make a new publication replace the previous one (signed, higher seq).
inline constexpr std::uint16_t kCardValueType = 4;
inline constexpr std::uint16_t kPresenceValueType = 0;
inline constexpr std::uint64_t kCardValueId = 0x7061726c65790001ULL;
inline constexpr std::uint64_t kPresenceValueId = 0x7061726c65790002ULL;

// The longest prefix of `text` of at most `maxBytes` bytes that does not split a UTF-8
// sequence (invalid bytes are dropped), so that what we publish always decodes.
std::string truncateUtf8(std::string_view text, std::size_t maxBytes);
// Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points over U+10FFFF).
bool isValidUtf8(std::string_view text);
// The length of the well-formed UTF-8 sequence that starts at byte `i` of `s`, 0 if none does.
std::size_t utf8SequenceAt(std::string_view s, std::size_t i);

std::vector<std::uint8_t> encodeKeyCard(const KeyCard& card);
RecordError decodeKeyCard(std::span<const std::uint8_t> bytes, KeyCard& out);
// The card's certificate must carry the public key whose SHA-256 is `owner`.
RecordError verifyKeyCard(const KeyCard& card, const ContactId& owner);
// The DER public key inside the card's certificate; empty when the certificate is unusable.
std::vector<std::uint8_t> publicKeyOfCard(const KeyCard& card);

std::vector<std::uint8_t> encodePresence(const Presence& presence);
RecordError decodePresence(std::span<const std::uint8_t> bytes, Presence& out);
bool isPresenceFresh(const Presence& presence, std::int64_t nowMs);

} // namespace parley::dht
