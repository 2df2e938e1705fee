// The baseline a QUIC throughput figure is read against: one TLS 1.3 stream over TCP on
// 127.0.0.1 with GnuTLS and the same cipher suites (AES-GCM first), a server thread receiving
// and the calling thread sending. The client does not verify the server: only the bulk
// transfer matters, timed from the first byte sent to the last byte received (the handshake
// is not counted). Header-only, for benchmarks; errors throw std::runtime_error.
#pragma once

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <gnutls/gnutls.h>
#include <mutex>
#include <netinet/in.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace parley::bench {

struct TlsTcpResult {
    double mibPerSecond = 0;
    double seconds = 0;
    std::uint64_t bytes = 0;
};

namespace detail {

using Clock = std::chrono::steady_clock;

// TLS 1.3 only, AES-GCM first, as the QUIC transport. A parley identity certificate is an
// OpenDHT CA certificate whose key usage is certificate and CRL signing only, which GnuTLS
// will not sign a handshake with unless the server says %DEBUG_ALLOW_KEY_USAGE_VIOLATIONS,
// nor accept from a peer unless the client says %COMPAT. Neither changes the record layer.
inline constexpr const char* kTlsServerPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "%DEBUG_ALLOW_KEY_USAGE_VIOLATIONS";
inline constexpr const char* kTlsClientPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "%COMPAT";
inline constexpr std::size_t kTlsRecordSize = 16 * 1024; // the largest TLS record

[[noreturn]] inline void throwTls(const std::string& what, int code) {
    throw std::runtime_error("TLS/TCP baseline: " + what + ": " + gnutls_strerror(code));
}

[[noreturn]] inline void throwErrno(const std::string& what) {
    throw std::runtime_error("TLS/TCP baseline: " + what + ": " + std::strerror(errno));
}

class Socket {
public:
    Socket(int fd, const char* what) : fd_(fd) {
        if (fd_ < 0)
            throwErrno(what);
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() { ::close(fd_); }
    int fd() const { return fd_; }

private:
    int fd_;
};

class Credentials {
public:
    Credentials() {
        if (int rc = gnutls_certificate_allocate_credentials(&cred_); rc < 0)
            throwTls("allocating credentials", rc);
    }
    Credentials(const std::string& certPem, const std::string& keyPem) : Credentials() {
        gnutls_datum_t cert{reinterpret_cast<unsigned char*>(const_cast<char*>(certPem.data())),
                            static_cast<unsigned>(certPem.size())};
        gnutls_datum_t key{reinterpret_cast<unsigned char*>(const_cast<char*>(keyPem.data())),
                           static_cast<unsigned>(keyPem.size())};
        int rc = gnutls_certificate_set_x509_key_mem2(cred_, &cert, &key, GNUTLS_X509_FMT_PEM,
                                                      nullptr, 0);
        if (rc < 0) // the delegated constructor has run, so the destructor frees cred_
            throwTls("loading the server certificate and key", rc);
    }
    Credentials(const Credentials&) = delete;
    Credentials& operator=(const Credentials&) = delete;
    ~Credentials() { gnutls_certificate_free_credentials(cred_); }
    gnutls_certificate_credentials_t get() const { return cred_; }

private:
    gnutls_certificate_credentials_t cred_ = nullptr;
};

// A blocking TLS 1.3 session over a connected TCP socket, handshaken on construction.
class Session {
public:
    Session(unsigned flags, const Credentials& cred, int fd, const char* side) : side_(side) {
        // GNUTLS_NO_SIGNAL: a peer that went away is an error, not a SIGPIPE.
        if (int rc = gnutls_init(&session_, flags | GNUTLS_NO_SIGNAL); rc < 0)
            throwTls(side_ + ": gnutls_init", rc);
        try {
            check("setting the priority",
                  gnutls_priority_set_direct(
                      session_, (flags & GNUTLS_SERVER) ? kTlsServerPriority : kTlsClientPriority,
                      nullptr));
            check("setting the credentials",
                  gnutls_credentials_set(session_, GNUTLS_CRD_CERTIFICATE, cred.get()));
            gnutls_transport_set_int(session_, fd);
            int rc;
            do {
                rc = gnutls_handshake(session_);
            } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
            check("handshake", rc);
        } catch (...) {
            gnutls_deinit(session_);
            throw;
        }
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() { gnutls_deinit(session_); }

    void send(const std::uint8_t* data, std::size_t size) {
        while (size > 0) {
            auto sent = gnutls_record_send(session_, data, size);
            if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED)
                continue;
            if (sent < 0)
                check("sending", static_cast<int>(sent));
            data += sent;
            size -= static_cast<std::size_t>(sent);
        }
    }

    // Some bytes, at least one; throws on end of stream or error.
    std::size_t receive(std::uint8_t* data, std::size_t size) {
        for (;;) {
            auto got = gnutls_record_recv(session_, data, size);
            if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED)
                continue;
            if (got == 0)
                throw std::runtime_error("TLS/TCP baseline: " + side_ +
                                         ": the peer closed the connection early");
            if (got < 0)
                check("receiving", static_cast<int>(got));
            return static_cast<std::size_t>(got);
        }
    }

    void closeWrite() { gnutls_bye(session_, GNUTLS_SHUT_WR); }

private:
    void check(const std::string& what, int rc) {
        if (rc < 0)
            throwTls(side_ + ": " + what, rc);
    }

    gnutls_session_t session_ = nullptr;
    std::string side_;
};

// Accepts one connection, reads `bytes` bytes, answers with one byte (so the client does not
// close with unread data, which would reset the connection) and returns when the last arrived.
inline Clock::time_point serveOnce(int listener, const Credentials& cred, std::uint64_t bytes) {
    Socket conn(::accept(listener, nullptr, nullptr), "accepting the connection");
    Session tls(GNUTLS_SERVER, cred, conn.fd(), "server");
    std::vector<std::uint8_t> buffer(64 * 1024);
    std::uint64_t received = 0;
    while (received < bytes)
        received += tls.receive(buffer.data(), buffer.size());
    auto lastByte = Clock::now();
    std::uint8_t done = 1;
    tls.send(&done, 1);
    tls.closeWrite();
    return lastByte;
}

inline Clock::time_point sendAll(std::uint16_t port, std::uint64_t bytes) {
    Socket conn(::socket(AF_INET, SOCK_STREAM, 0), "creating the client socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(conn.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throwErrno("connecting to the server");
    Credentials cred; // no trust anchors and no verification: a throughput baseline
    Session tls(GNUTLS_CLIENT, cred, conn.fd(), "client");
    std::vector<std::uint8_t> chunk(64 * 1024, 0x5a);
    auto firstByte = Clock::now();
    for (std::uint64_t left = bytes; left > 0;) {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
        // One call per record: gnutls_record_send sends at most one record at a time anyway.
        for (std::size_t at = 0; at < n; at += kTlsRecordSize)
            tls.send(chunk.data() + at, std::min(kTlsRecordSize, n - at));
        left -= n;
    }
    std::uint8_t done = 0;
    tls.receive(&done, 1);
    tls.closeWrite();
    return firstByte;
}

} // namespace detail

inline TlsTcpResult measureTlsTcpThroughput(const std::string& certPem, const std::string& keyPem,
                                            std::uint64_t bytes) {
    using namespace detail;
    if (bytes == 0)
        throw std::runtime_error("TLS/TCP baseline: nothing to send");
    Credentials serverCred(certPem, keyPem);

    Socket listener(::socket(AF_INET, SOCK_STREAM, 0), "creating the server socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    if (::bind(listener.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener.fd(), 1) != 0 ||
        ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&addr), &length) != 0)
        throwErrno("listening on 127.0.0.1");

    // The first failure is the one reported: the other side's is usually its consequence.
    std::mutex errorMutex;
    std::exception_ptr firstError;
    auto keepError = [&] {
        std::lock_guard lock(errorMutex);
        if (!firstError)
            firstError = std::current_exception();
    };

    Clock::time_point lastByte;
    std::thread server([&] {
        try {
            lastByte = serveOnce(listener.fd(), serverCred, bytes);
        } catch (...) {
            keepError();
        }
    });
    Clock::time_point firstByte;
    try {
        firstByte = sendAll(ntohs(addr.sin_port), bytes);
    } catch (...) {
        keepError();
        ::shutdown(listener.fd(), SHUT_RDWR); // wakes a server still waiting in accept()
    }
    server.join();
    if (firstError)
        std::rethrow_exception(firstError);

    TlsTcpResult result;
    result.bytes = bytes;
    result.seconds = std::chrono::duration<double>(lastByte - firstByte).count();
    result.mibPerSecond = static_cast<double>(bytes) / (1024.0 * 1024.0) / result.seconds;
    return result;
}

} // namespace parley::bench
