// Fuzz target: the public key in a key card. Cards come from any DHT node; the certificate in
// one is parsed (GnuTLS X.509) to pin its owner's ContactId and to get the key that envelopes
// to the owner are encrypted with (publicKeyOfCard, then OpenDHT's PublicKey). The input is
// read as an encoded card, and as a bare certificate: inside a card (DER), and as the text
// inspectCertificate takes (PEM or DER). publicKeyOfCard and verifyKeyCard must agree: a card
// verifies for the ContactId of the key publicKeyOfCard returns and for no other, and not at
// all when there is no key; inspectCertificate must find the same ContactId.
#include "dht/contact_id.h"
#include "dht/identity.h"
#include "dht/records.h"

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <opendht/crypto.h>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

// parley::dht, not OpenDHT's ::dht.
using namespace parley::dht;

namespace {

// The ContactId of the card's key, or nullopt when the card has no usable key.
std::optional<ContactId> checkCard(const KeyCard& card) {
    auto key = publicKeyOfCard(card);
    ContactId::Bytes zero{};
    if (key.empty()) {
        if (verifyKeyCard(card, ContactId(zero)) == RecordError::ok)
            std::abort();
        return std::nullopt;
    }
    auto id = ContactId::ofPublicKeyDer(key);
    auto other = id.bytes();
    other[0] ^= 0x01;
    if (verifyKeyCard(card, id) != RecordError::ok ||
        verifyKeyCard(card, ContactId(other)) != RecordError::wrongOwner)
        std::abort();
    // What Overlay::sendEnvelope does with the key: it may refuse it, but never crash.
    try {
        ::dht::crypto::PublicKey publicKey(key);
        if (publicKey)
            (void)publicKey.getLongId();
    } catch (const std::exception&) {
    }
    return id;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> bytes(data, size);
    KeyCard card;
    if (decodeKeyCard(bytes, card) == RecordError::ok) {
        if (card.certificate.empty() || card.certificate.size() > kMaxCertificateSize)
            std::abort();
        (void)checkCard(card);
    }
    if (size == 0 || size > kMaxCertificateSize)
        return 0;
    KeyCard bare;
    bare.certificate.assign(bytes.begin(), bytes.end());
    auto id = checkCard(bare);
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto info = inspectCertificate(text);
    // For DER both read the first certificate and hash the same SubjectPublicKeyInfo (OpenDHT
    // tries PEM first, which could find a certificate quoted inside the DER one).
    if (id && info && text.find("-----BEGIN") == std::string_view::npos && info->id != *id)
        std::abort();
    return 0;
}
