// ContactId parsing, formatting and derivation.
#include "contact_id.h"

#include <algorithm>
#include <gnutls/crypto.h>
#include <stdexcept>

namespace parley::dht {

namespace {
int hexValue(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
} // namespace

std::optional<ContactId> ContactId::parse(std::string_view hex) {
    if (hex.size() != kHexSize)
        return std::nullopt;
    Bytes bytes{};
    for (std::size_t i = 0; i < kSize; ++i) {
        int hi = hexValue(hex[2 * i]);
        int lo = hexValue(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return ContactId(bytes);
}

std::optional<ContactId> ContactId::fromBytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != kSize)
        return std::nullopt;
    Bytes b{};
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return ContactId(b);
}

ContactId ContactId::ofPublicKeyDer(std::span<const std::uint8_t> der) {
    Bytes digest{};
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data(), der.size(), digest.data()) != 0)
        throw std::runtime_error("SHA-256 unavailable in GnuTLS");
    return ContactId(digest);
}

std::string ContactId::toHex() const {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(kHexSize, '0');
    for (std::size_t i = 0; i < kSize; ++i) {
        out[2 * i] = kDigits[bytes_[i] >> 4];
        out[2 * i + 1] = kDigits[bytes_[i] & 0xf];
    }
    return out;
}

std::string ContactId::shortHex() const {
    return toHex().substr(0, 8);
}

bool ContactId::isZero() const {
    return std::all_of(bytes_.begin(), bytes_.end(), [](std::uint8_t b) { return b == 0; });
}

} // namespace parley::dht
