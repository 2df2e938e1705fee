// Identity: the RSA key pair and self-signed certificate behind a ContactId.
// OpenDHT's crypto types stay behind a handle so that this header is cheap to include.
#pragma once

#include "contact_id.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace parley::dht {

namespace detail {
struct IdentityHandle;
}

enum class IdentityError {
    ok = 0,
    passphraseRequired,   // the key is encrypted and no passphrase was given
    wrongPassphrase,      // the key is encrypted and the passphrase does not open it
    malformedKey,         // not a PEM private key we can read
    malformedCertificate, // not a PEM/DER certificate we can read
    keyMismatch,          // the certificate is not for this private key
};

// A sentence a person can act on.
std::string_view describe(IdentityError error);

struct CertificateInfo {
    ContactId id;
    std::string name;
};

// Reads a PEM or DER certificate without the private key (no passphrase needed).
std::optional<CertificateInfo> inspectCertificate(std::string_view certificate);

class Identity {
public:
    static constexpr unsigned kDefaultKeyBits = 3072;
    static constexpr unsigned kMinKeyBits = 2048;
    static constexpr unsigned kMaxKeyBits = 8192;

    Identity() = default;

    // Throws std::invalid_argument for a key size outside [kMinKeyBits, kMaxKeyBits].
    static Identity generate(const std::string& name, unsigned keyBits = kDefaultKeyBits);
    static IdentityError load(std::string_view keyPem, std::string_view certPem,
                              const std::string& passphrase, Identity& out);
    static bool isEncryptedKeyPem(std::string_view keyPem);

    // PKCS#8 PEM; encrypted (PBES2, AES-256) when the passphrase is not empty.
    std::string privateKeyPem(const std::string& passphrase) const;
    std::string certificatePem() const;
    std::vector<std::uint8_t> certificateDer() const;
    std::vector<std::uint8_t> publicKeyDer() const;

    ContactId contactId() const { return id_; }
    std::string name() const;
    unsigned keyBits() const;
    bool valid() const { return handle_ != nullptr; }

    const detail::IdentityHandle& handle() const { return *handle_; }

private:
    explicit Identity(std::shared_ptr<detail::IdentityHandle> handle);

    std::shared_ptr<detail::IdentityHandle> handle_;
    ContactId id_;
};

} // namespace parley::dht
