// ContactId: the SHA-256 of a DER-encoded public key, the "key hash" a person shares.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace parley::dht {

class ContactId {
public:
    static constexpr std::size_t kSize = 32;
    static constexpr std::size_t kHexSize = 2 * kSize;
    using Bytes = std::array<std::uint8_t, kSize>;

    ContactId() = default;
    explicit ContactId(const Bytes& bytes) : bytes_(bytes) {}

    // Accepts exactly 64 hex digits (either case); anything else yields nullopt.
    static std::optional<ContactId> parse(std::string_view hex);
    static std::optional<ContactId> fromBytes(std::span<const std::uint8_t> bytes);
    // SHA-256 of the DER SubjectPublicKeyInfo (what OpenDHT's PublicKey::getLongId() hashes).
    // Throws std::runtime_error when GnuTLS cannot hash.
    static ContactId ofPublicKeyDer(std::span<const std::uint8_t> der);
    // The same, for callbacks that must not throw: nullopt when GnuTLS cannot hash.
    static std::optional<ContactId> hashPublicKeyDer(std::span<const std::uint8_t> der) noexcept;

    std::string toHex() const;    // 64 lowercase hex characters
    std::string shortHex() const; // first 8 hex characters, for logs
    const Bytes& bytes() const { return bytes_; }
    bool isZero() const;

    auto operator<=>(const ContactId&) const = default;

private:
    Bytes bytes_{};
};

} // namespace parley::dht

template <> struct std::hash<parley::dht::ContactId> {
    std::size_t operator()(const parley::dht::ContactId& id) const noexcept {
        std::size_t h;
        static_assert(sizeof(h) <= parley::dht::ContactId::kSize);
        __builtin_memcpy(&h, id.bytes().data(), sizeof(h));
        return h;
    }
};
