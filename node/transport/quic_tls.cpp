// TLS for the QUIC transport: the GnuTLS session of each connection, the leaf certificate we
// present, the check of the peer's key against the pin or the authorizer, and the key log.
#include "dht/hex.h"
#include "node/transport/quic_internal.h"

#include <cstring>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <optional>
#include <sys/stat.h>

namespace parley::node::quic::detail {

namespace {

// TLS 1.3 only, AES-GCM first (ChaCha20 is slow here), no middlebox compatibility mode
// (RFC 9001 §8.4).
constexpr const char* kPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE";

// The ContactId of the first certificate the peer presented: SHA-256 of its DER
// SubjectPublicKeyInfo, the same bytes Identity::publicKeyDer() hashes.
std::optional<dht::ContactId> peerContactId(gnutls_session_t session) {
    if (gnutls_certificate_type_get2(session, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_X509)
        return std::nullopt;
    unsigned count = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &count);
    if (!certs || count == 0)
        return std::nullopt;
    gnutls_pubkey_t key = nullptr;
    if (gnutls_pubkey_init(&key) != 0)
        return std::nullopt;
    std::optional<dht::ContactId> id;
    gnutls_datum_t der{nullptr, 0};
    if (gnutls_pubkey_import_x509_raw(key, &certs[0], GNUTLS_X509_FMT_DER, 0) == 0 &&
        gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &der) == 0) {
        id = dht::ContactId::hashPublicKeyDer(std::span<const std::uint8_t>(der.data, der.size));
        gnutls_free(der.data);
    }
    gnutls_pubkey_deinit(key);
    return id;
}

int onVerify(gnutls_session_t session) noexcept {
    return guarded("onVerify", -1, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto& c = *static_cast<Connection*>(ref->user_data);
        auto& ci = ConnectionAccess::impl(c);
        auto id = peerContactId(session);
        if (!id) {
            spdlog::info("QUIC handshake refused: the peer presented no usable certificate");
            return -1;
        }
        if (ConnectionAccess::isClient(c)) {
            if (*id != ci.expectedPeer) {
                spdlog::warn("QUIC handshake refused: {} presented the key of {}, not of {}",
                             c.remote().toString(), id->shortHex(), ci.expectedPeer.shortHex());
                return -1;
            }
        } else {
            auto* t = ci.t;
            if (!t || !t->authorizer || !t->authorizer(*id)) {
                spdlog::info("QUIC handshake refused: {} at {} is not an accepted contact",
                             id->shortHex(), c.remote().toString());
                if (t)
                    ++t->counters.handshakesRefused;
                return -1;
            }
        }
        ConnectionAccess::setPeer(c, *id);
        ci.peerVerified = true;
        return 0;
    });
}

// A server checks, once the ClientHello is read, that it carried QUIC transport parameters.
// Without them ngtcp2 0.12 never sets the negotiated version and later aborts the whole
// process on an assertion when it writes a packet (found by fuzz_quic_transport): one
// datagram from anyone would bring the node down. Refusing the ClientHello fails only that
// handshake.
int onClientHello(gnutls_session_t session, unsigned, unsigned, unsigned,
                  const gnutls_datum_t*) noexcept {
    return guarded("onClientHello", GNUTLS_E_MISSING_EXTENSION, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto* conn = ref ? getConn(ref) : nullptr;
        if (!conn || ngtcp2_conn_get_negotiated_version(conn) == 0) {
            spdlog::debug("QUIC handshake refused: a ClientHello without transport parameters");
            return GNUTLS_E_MISSING_EXTENSION;
        }
        return 0;
    });
}

int onKeyLog(gnutls_session_t session, const char* label, const gnutls_datum_t* secret) noexcept {
    return guarded("onKeyLog", -1, [&]() -> int {
        auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
        auto& ci = ConnectionAccess::impl(*static_cast<Connection*>(ref->user_data));
        if (!ci.t || !ci.t->keyLog)
            return 0;
        gnutls_datum_t clientRandom{nullptr, 0};
        gnutls_session_get_random(session, &clientRandom, nullptr);
        std::fprintf(ci.t->keyLog, "%s %s %s\n", label,
                     dht::toHex({clientRandom.data, clientRandom.size}).c_str(),
                     dht::toHex({secret->data, secret->size}).c_str());
        std::fflush(ci.t->keyLog);
        return 0;
    });
}
} // namespace

void setupTlsSession(Connection& c, Connection::Impl& ci, Transport::Impl& t) {
    bool client = ConnectionAccess::isClient(c);
    unsigned flags = client ? GNUTLS_CLIENT : GNUTLS_SERVER;
    if (gnutls_init(&ci.session, flags | GNUTLS_NO_END_OF_EARLY_DATA) != 0)
        throw std::runtime_error("gnutls_init failed");
    int rv = client ? ngtcp2_crypto_gnutls_configure_client_session(ci.session)
                    : ngtcp2_crypto_gnutls_configure_server_session(ci.session);
    if (rv != 0)
        throw std::runtime_error("cannot configure the QUIC TLS session");
    if (gnutls_priority_set_direct(ci.session, kPriority, nullptr) != 0 ||
        gnutls_credentials_set(ci.session, GNUTLS_CRD_CERTIFICATE, t.credentials) != 0)
        throw std::runtime_error("cannot configure the TLS session");
    gnutls_session_set_ptr(ci.session, &ci.ref);
    gnutls_session_set_verify_function(ci.session, onVerify);
    if (!client) {
        gnutls_certificate_server_set_request(ci.session, GNUTLS_CERT_REQUIRE);
        gnutls_handshake_set_hook_function(ci.session, GNUTLS_HANDSHAKE_CLIENT_HELLO,
                                           GNUTLS_HOOK_POST, onClientHello);
    }
    gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kAlpn)),
                        static_cast<unsigned>(std::strlen(kAlpn))};
    gnutls_alpn_set_protocols(ci.session, &alpn, 1, GNUTLS_ALPN_MANDATORY);
    if (client)
        gnutls_server_name_set(ci.session, GNUTLS_NAME_DNS, "parley", 6);
    if (t.keyLog)
        gnutls_session_set_keylog_function(ci.session, onKeyLog);
}

namespace {

// Holds the GnuTLS objects of loadIdentity and frees them on every way out.
struct LeafParts {
    gnutls_x509_privkey_t key = nullptr;
    gnutls_x509_crt_t crt = nullptr;
    ~LeafParts() {
        if (crt)
            gnutls_x509_crt_deinit(crt);
        if (key)
            gnutls_x509_privkey_deinit(key);
    }
    [[noreturn]] static void fail(const char* what, int rv) {
        throw std::runtime_error(std::string("cannot set up the QUIC identity (") + what +
                                 "): " + gnutls_strerror(rv));
    }
};

// A self-signed leaf certificate for our key, valid from a day ago for a year on the
// transport's wall clock. The serial number is not secret (peers pin the key, and nobody
// signs this certificate but us): it comes from the injected Random.
void makeLeaf(Transport::Impl& t, LeafParts& p) {
    int rv = gnutls_x509_crt_init(&p.crt);
    if (rv != 0)
        LeafParts::fail("certificate", rv);
    std::array<std::uint8_t, 16> serial{};
    t.random->fill(serial);
    serial[0] &= 0x7f; // a positive serial number
    auto now = static_cast<std::time_t>(t.clock->unixMs() / 1000);
    static constexpr char kCommonName[] = "parley";
    if ((rv = gnutls_x509_crt_set_version(p.crt, 3)) != 0 ||
        (rv = gnutls_x509_crt_set_serial(p.crt, serial.data(), serial.size())) != 0 ||
        (rv = gnutls_x509_crt_set_activation_time(p.crt, now - 24 * 3600)) != 0 ||
        (rv = gnutls_x509_crt_set_expiration_time(p.crt, now + 365 * 24 * 3600)) != 0 ||
        (rv = gnutls_x509_crt_set_dn_by_oid(p.crt, GNUTLS_OID_X520_COMMON_NAME, 0, kCommonName,
                                            sizeof(kCommonName) - 1)) != 0 ||
        (rv = gnutls_x509_crt_set_key(p.crt, p.key)) != 0 ||
        (rv = gnutls_x509_crt_set_basic_constraints(p.crt, 0, -1)) != 0 ||
        (rv = gnutls_x509_crt_set_key_usage(p.crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) != 0 ||
        (rv = gnutls_x509_crt_sign2(p.crt, p.crt, p.key, GNUTLS_DIG_SHA256, 0)) != 0)
        LeafParts::fail("leaf certificate", rv);
}

} // namespace

void loadIdentity(Transport::Impl& t) {
    if (gnutls_certificate_allocate_credentials(&t.credentials) != 0)
        throw std::runtime_error("cannot allocate TLS credentials");
    // The identity certificate is OpenDHT's CA certificate (key usage: certificate signing
    // only), which GnuTLS refuses for TLS signatures. We present a leaf certificate for the
    // same key instead, made at start: the peer pins the key, not the certificate.
    LeafParts p;
    gnutls_datum_t keyPem{reinterpret_cast<unsigned char*>(t.config.privateKeyPem.data()),
                          static_cast<unsigned>(t.config.privateKeyPem.size())};
    int rv = gnutls_x509_privkey_init(&p.key);
    if (rv == 0)
        rv = gnutls_x509_privkey_import2(p.key, &keyPem, GNUTLS_X509_FMT_PEM, nullptr, 0);
    if (rv != 0)
        LeafParts::fail("private key", rv);
    makeLeaf(t, p);
    if ((rv = gnutls_certificate_set_x509_key(t.credentials, &p.crt, 1, p.key)) != 0)
        LeafParts::fail("credentials", rv);
    // Our own ContactId, from the key we present.
    gnutls_pubkey_t pub = nullptr;
    gnutls_datum_t der{nullptr, 0};
    if (gnutls_pubkey_init(&pub) == 0 && gnutls_pubkey_import_x509(pub, p.crt, 0) == 0 &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) == 0) {
        t.self = dht::ContactId::ofPublicKeyDer(std::span<const std::uint8_t>(der.data, der.size));
        gnutls_free(der.data);
    }
    if (pub)
        gnutls_pubkey_deinit(pub);
    // The private key is not needed any more in our copy.
    std::fill(t.config.privateKeyPem.begin(), t.config.privateKeyPem.end(), '\0');
    t.config.privateKeyPem.clear();
}

void openKeyLog(Transport::Impl& t) {
    if (t.config.keyLogFile.empty())
        return;
    auto old = ::umask(077);
    t.keyLog = std::fopen(t.config.keyLogFile.c_str(), "a");
    ::umask(old);
    if (t.keyLog)
        spdlog::warn("writing TLS secrets to {} (SSLKEYLOGFILE): anyone with this file can "
                     "decrypt captured traffic",
                     t.config.keyLogFile);
    else
        spdlog::error("cannot open SSLKEYLOGFILE {}", t.config.keyLogFile);
}

} // namespace parley::node::quic::detail
