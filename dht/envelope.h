// Inbox envelopes (DESIGN.md §4): what one node drops into another's DHT inbox, encrypted to
// the recipient with OpenDHT's putEncrypted. The decoder takes untrusted bytes (after
// decryption) and never throws; checkEnvelope applies the rules every receiver enforces.
#pragma once

#include "contact_id.h"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parley::dht {

inline constexpr std::uint32_t kEnvelopeVersion = 1;
inline constexpr std::size_t kMaxEnvelopeSize = 4096;
inline constexpr std::size_t kMaxRequestMessageSize = 512; // bytes of UTF-8
// Envelopes live in the DHT for 7 days (value type 4); older ones are dropped on arrival,
// and a receiver remembers the ids it has seen for as long.
inline constexpr std::int64_t kEnvelopeWindowMs = 7LL * 24 * 3600 * 1000;
inline constexpr std::uint16_t kInboxValueType = 4;

enum class EnvelopeKind : std::uint8_t {
    contactRequest = 1, // "please add me": name and message
    contactAccept = 2,  // "I accepted you"
    connectRequest = 3, // "let us connect directly": the sender's candidate addresses
    connectAnswer = 4,  // the answer to a connect request, with the answerer's candidates
    chatMessage = 5,    // a chat message for a contact who is offline (id = the message id)
};

inline bool isConnectKind(EnvelopeKind kind) {
    return kind == EnvelopeKind::connectRequest || kind == EnvelopeKind::connectAnswer;
}

// Connect envelopes are only worth anything for a short while; older ones are dropped.
inline constexpr std::int64_t kConnectWindowMs = 120'000;
inline constexpr std::size_t kMaxCandidates = 16;
inline constexpr std::size_t kMaxCandidateSize = 64; // "[ipv6]:port" fits easily
// A chat message's text in an envelope; longer messages wait for a direct connection.
inline constexpr std::size_t kMaxEnvelopeChatText = 3000;

std::string_view toString(EnvelopeKind kind);

struct Envelope {
    EnvelopeKind kind = EnvelopeKind::contactRequest;
    std::array<std::uint8_t, 16> id{};      // random; receivers drop ids they have seen
    std::int64_t createdMs = 0;             // unix milliseconds, the sender's clock
    ContactId from;                         // who claims to send it (must match the signature)
    ContactId to;                           // who it is for
    std::string name;                       // sender's display name
    std::string message;                    // for requests
    std::vector<std::string> candidates;    // connect kinds: "ip:port" where the sender listens
    std::array<std::uint8_t, 16> replyTo{}; // connect answers: the request's id
    std::uint64_t seq = 0;                  // chat messages: the sender's sequence
    std::string text;                       // chat messages: at most kMaxEnvelopeChatText

    bool operator==(const Envelope&) const = default;
};

enum class EnvelopeError {
    ok = 0,
    tooLarge,
    malformed,
    unsupportedVersion,
    invalidField, // unknown kind, bad UTF-8, message or name too long
};

std::string_view describe(EnvelopeError error);

std::vector<std::uint8_t> encodeEnvelope(const Envelope& envelope);
EnvelopeError decodeEnvelope(std::span<const std::uint8_t> bytes, Envelope& out);

enum class EnvelopeVerdict {
    accept = 0,
    forged,         // the signature is not from the ContactId it claims
    wrongRecipient, // meant for someone else
    expired,        // older than the window
    fromTheFuture,  // created more than the clock-skew allowance ahead of us
};

std::string_view toString(EnvelopeVerdict verdict);

// `signer` is the ContactId of the key that signed the envelope (checked by OpenDHT).
// Connect envelopes are also held to kConnectWindowMs.
EnvelopeVerdict checkEnvelope(const Envelope& envelope, const ContactId& signer,
                              const ContactId& self, std::int64_t nowMs);

} // namespace parley::dht
