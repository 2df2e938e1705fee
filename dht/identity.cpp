// Identity generation, PEM import/export and the encrypted-key workaround for OpenDHT 2.4.12.
#include "identity.h"

#include "detail/identity_handle.h"

#include <gnutls/x509.h>
#include <stdexcept>

namespace parley::dht {

namespace {

constexpr std::string_view kEncryptedKeyHeader = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

// OpenDHT's PrivateKey(blob, password) cannot open encrypted keys (FACTS.md): import through
// GnuTLS and hand the key over to OpenDHT, which takes ownership.
IdentityError importKey(std::string_view pem, const std::string& passphrase,
                        std::shared_ptr<::dht::crypto::PrivateKey>& out) {
    bool encrypted = Identity::isEncryptedKeyPem(pem);
    if (encrypted && passphrase.empty())
        return IdentityError::passphraseRequired;
    gnutls_x509_privkey_t key = nullptr;
    if (gnutls_x509_privkey_init(&key) != GNUTLS_E_SUCCESS)
        return IdentityError::malformedKey;
    gnutls_datum_t datum{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                         static_cast<unsigned>(pem.size())};
    int rc = gnutls_x509_privkey_import2(key, &datum, GNUTLS_X509_FMT_PEM,
                                         encrypted ? passphrase.c_str() : nullptr,
                                         encrypted ? 0 : GNUTLS_PKCS_PLAIN);
    if (rc != GNUTLS_E_SUCCESS) {
        gnutls_x509_privkey_deinit(key);
        if (encrypted && (rc == GNUTLS_E_DECRYPTION_FAILED || rc == GNUTLS_E_PK_DECRYPTION_FAILED ||
                          rc == GNUTLS_E_ASN1_DER_ERROR || rc == GNUTLS_E_ASN1_TAG_ERROR))
            return IdentityError::wrongPassphrase;
        return IdentityError::malformedKey;
    }
    // A damaged key can still parse; check that its numbers are consistent.
    if (gnutls_x509_privkey_verify_params(key) != GNUTLS_E_SUCCESS) {
        gnutls_x509_privkey_deinit(key);
        return IdentityError::malformedKey;
    }
    try {
        out = std::make_shared<::dht::crypto::PrivateKey>(key); // takes ownership of `key`
    } catch (const std::exception&) {
        gnutls_x509_privkey_deinit(key);
        return IdentityError::malformedKey;
    }
    return IdentityError::ok;
}

} // namespace

std::string_view describe(IdentityError error) {
    switch (error) {
    case IdentityError::ok:
        return "ok";
    case IdentityError::passphraseRequired:
        return "the private key is encrypted: give its passphrase (PARLEY_PASSPHRASE, "
               "--passphrase-file, or type it when asked)";
    case IdentityError::wrongPassphrase:
        return "wrong passphrase: the private key could not be decrypted";
    case IdentityError::malformedKey:
        return "the private key file is damaged or not a PEM private key";
    case IdentityError::malformedCertificate:
        return "the certificate file is damaged or not a certificate";
    case IdentityError::keyMismatch:
        return "the certificate does not belong to the private key";
    }
    return "unknown identity error";
}

std::optional<CertificateInfo> inspectCertificate(std::string_view certificate) {
    try {
        ::dht::crypto::Certificate cert(::dht::Blob(certificate.begin(), certificate.end()));
        if (!cert)
            return std::nullopt;
        ::dht::Blob der;
        cert.getPublicKey().pack(der);
        return CertificateInfo{ContactId::ofPublicKeyDer(der), cert.getName()};
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

Identity::Identity(std::shared_ptr<detail::IdentityHandle> handle) : handle_(std::move(handle)) {
    auto der = publicKeyDer();
    id_ = ContactId::ofPublicKeyDer(der);
}

Identity Identity::generate(const std::string& name, unsigned keyBits) {
    if (keyBits < kMinKeyBits || keyBits > kMaxKeyBits)
        throw std::invalid_argument("key size must be between 2048 and 8192 bits");
    auto handle = std::make_shared<detail::IdentityHandle>();
    handle->id = ::dht::crypto::generateIdentity(name, {}, keyBits);
    return Identity(std::move(handle));
}

bool Identity::isEncryptedKeyPem(std::string_view keyPem) {
    return keyPem.find(kEncryptedKeyHeader) != std::string_view::npos;
}

IdentityError Identity::load(std::string_view keyPem, std::string_view certPem,
                             const std::string& passphrase, Identity& out) {
    std::shared_ptr<::dht::crypto::PrivateKey> key;
    if (auto err = importKey(keyPem, passphrase, key); err != IdentityError::ok)
        return err;
    std::shared_ptr<::dht::crypto::Certificate> cert;
    try {
        ::dht::Blob blob(certPem.begin(), certPem.end());
        cert = std::make_shared<::dht::crypto::Certificate>(blob);
        if (!*cert)
            return IdentityError::malformedCertificate;
    } catch (const std::exception&) {
        return IdentityError::malformedCertificate;
    }
    try {
        if (cert->getPublicKey().getLongId() != key->getPublicKey().getLongId())
            return IdentityError::keyMismatch;
    } catch (const std::exception&) {
        return IdentityError::malformedCertificate;
    }
    auto handle = std::make_shared<detail::IdentityHandle>();
    handle->id = {std::move(key), std::move(cert)};
    out = Identity(std::move(handle));
    return IdentityError::ok;
}

std::string Identity::privateKeyPem(const std::string& passphrase) const {
    gnutls_x509_privkey_t key = handle_->id.first->x509_key;
    unsigned flags = passphrase.empty() ? GNUTLS_PKCS_PLAIN : GNUTLS_PKCS_PBES2_AES_256;
    gnutls_datum_t out{};
    int rc = gnutls_x509_privkey_export2_pkcs8(
        key, GNUTLS_X509_FMT_PEM, passphrase.empty() ? nullptr : passphrase.c_str(), flags, &out);
    if (rc != GNUTLS_E_SUCCESS)
        throw std::runtime_error(std::string("cannot export private key: ") + gnutls_strerror(rc));
    std::string pem(reinterpret_cast<const char*>(out.data), out.size);
    gnutls_free(out.data);
    return pem;
}

std::string Identity::certificatePem() const {
    return handle_->id.second->toString();
}

std::vector<std::uint8_t> Identity::certificateDer() const {
    // Certificate::getPacked() gives PEM; the card carries DER, half the size.
    gnutls_datum_t der{};
    int rc = gnutls_x509_crt_export2(handle_->id.second->cert, GNUTLS_X509_FMT_DER, &der);
    if (rc != GNUTLS_E_SUCCESS)
        throw std::runtime_error(std::string("cannot export certificate: ") + gnutls_strerror(rc));
    std::vector<std::uint8_t> out(der.data, der.data + der.size);
    gnutls_free(der.data);
    return out;
}

std::vector<std::uint8_t> Identity::publicKeyDer() const {
    ::dht::Blob der;
    handle_->id.first->getPublicKey().pack(der);
    return {der.begin(), der.end()};
}

std::string Identity::name() const {
    return handle_->id.second->getName();
}

unsigned Identity::keyBits() const {
    unsigned bits = 0;
    gnutls_x509_privkey_get_pk_algorithm2(handle_->id.first->x509_key, &bits);
    return bits;
}

} // namespace parley::dht
