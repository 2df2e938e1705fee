// ContactId parsing, formatting and derivation.
#include "contact_id.h"

#include "hex.h"

#include <algorithm>
#include <gnutls/crypto.h>
#include <stdexcept>

namespace parley::dht {

std::optional<ContactId> ContactId::parse(std::string_view hex) {
    Bytes bytes{};
    if (!parseHex(hex, bytes))
        return std::nullopt;
    return ContactId(bytes);
}

std::optional<ContactId> ContactId::fromBytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != kSize)
        return std::nullopt;
    Bytes b{};
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return ContactId(b);
}

std::optional<ContactId> ContactId::hashPublicKeyDer(std::span<const std::uint8_t> der) noexcept {
    Bytes digest{};
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data(), der.size(), digest.data()) != 0)
        return std::nullopt;
    return ContactId(digest);
}

ContactId ContactId::ofPublicKeyDer(std::span<const std::uint8_t> der) {
    auto id = hashPublicKeyDer(der);
    if (!id)
        throw std::runtime_error("SHA-256 unavailable in GnuTLS");
    return *id;
}

std::string ContactId::toHex() const {
    return dht::toHex(bytes_);
}

std::string ContactId::shortHex() const {
    return toHex().substr(0, 8);
}

bool ContactId::isZero() const {
    return std::all_of(bytes_.begin(), bytes_.end(), [](std::uint8_t b) { return b == 0; });
}

} // namespace parley::dht
