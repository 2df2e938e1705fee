// Fuzz target: the QUIC transport's server side as an attacker on the internet reaches it,
// with datagrams from addresses of its choice to a node that accepts nobody. One Transport
// lives for the whole run, like a node's. An input is up to 8 records, each
//   a control byte: bits 0-2 pick the sender's address, bit 6 ends the burst after this
//   datagram, bit 7 seals the payload as a client Initial;
//   a 2-byte big-endian length (cut short at the end of the input), then the payload.
// A sealed payload is [dcid length][dcid][scid length][scid][token length][token][packet
// number][frames]: the target puts a QUIC v1 Initial header on the frames, pads them to 1200
// bytes and protects them with the Initial keys of that dcid (RFC 9001 §5), as anyone can, so
// that ClientHellos, transport parameters and Initial frames get past the AEAD. A raw payload
// is the datagram itself. Datagrams the UDP endpoint would not hand to QUIC are skipped,
// except the empty one, which receive() must survive.
// Checked: the handshake caps hold, nobody is accepted, and every send is one that
// UdpEndpoint::sendOther takes and within 3 times what its address sent us (no amplification).
//
// PARLEY_FUZZ_QUIC_SEEDS=<dir> first writes seeds made from a real client's first flight (a
// second Transport dialling this one) into <dir>.
#include "dht/identity.h"
#include "dht/socket_address.h"
#include "dht/udp_endpoint.h"
#include "node/transport/quic.h"

#include <algorithm>
#include <array>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dht = parley::dht;
namespace quic = parley::node::quic;

namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kMaxDatagrams = 8;
constexpr std::size_t kMinInitialDatagram = 1200; // RFC 9000 §14.1
constexpr std::size_t kMaxSealedFrames = 4000;
constexpr std::size_t kMaxCidLength = 20;
constexpr std::size_t kTagSize = 16;
// Room the transport keeps beyond maxHandshakes for hosts we expect (Transport::expect).
constexpr std::size_t kExpectedRoom = quic::kExpectedHandshakeRoom;

// --- Initial packet protection (RFC 9001 §5), for QUIC v1 ------------------------------------

struct InitialKeys {
    std::array<std::uint8_t, 16> key{};
    std::array<std::uint8_t, 12> iv{};
    std::array<std::uint8_t, 16> hp{};
};

gnutls_datum_t datum(std::span<const std::uint8_t> bytes) {
    static std::uint8_t empty = 0; // GnuTLS wants a pointer even for no bytes
    return {const_cast<std::uint8_t*>(bytes.empty() ? &empty : bytes.data()),
            static_cast<unsigned>(bytes.size())};
}

// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
void expandLabel(std::span<const std::uint8_t> secret, std::string_view label,
                 std::span<std::uint8_t> out) {
    Bytes info{static_cast<std::uint8_t>(out.size() >> 8), static_cast<std::uint8_t>(out.size()),
               static_cast<std::uint8_t>(6 + label.size())};
    for (char c : std::string_view("tls13 "))
        info.push_back(static_cast<std::uint8_t>(c));
    info.insert(info.end(), label.begin(), label.end());
    info.push_back(0);
    auto key = datum(secret);
    auto infoDatum = datum(info);
    if (gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &key, &infoDatum, out.data(), out.size()) != 0)
        std::abort();
}

InitialKeys clientInitialKeys(std::span<const std::uint8_t> dcid) {
    static constexpr std::array<std::uint8_t, 20> kSalt{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34,
                                                        0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                                                        0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
    std::array<std::uint8_t, 32> initialSecret{}, clientSecret{};
    auto ikm = datum(dcid);
    auto salt = datum(kSalt);
    if (gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &salt, initialSecret.data()) != 0)
        std::abort();
    expandLabel(initialSecret, "client in", clientSecret);
    InitialKeys keys;
    expandLabel(clientSecret, "quic key", keys.key);
    expandLabel(clientSecret, "quic iv", keys.iv);
    expandLabel(clientSecret, "quic hp", keys.hp);
    return keys;
}

// AES-ECB of one block (the header protection mask), as CBC with a zero IV.
std::array<std::uint8_t, 16> headerMask(const InitialKeys& keys,
                                        std::span<const std::uint8_t, 16> sample) {
    std::array<std::uint8_t, 16> zero{}, mask{};
    auto key = datum(keys.hp);
    auto iv = datum(zero);
    gnutls_cipher_hd_t cipher = nullptr;
    if (gnutls_cipher_init(&cipher, GNUTLS_CIPHER_AES_128_CBC, &key, &iv) != 0 ||
        gnutls_cipher_encrypt2(cipher, sample.data(), sample.size(), mask.data(), mask.size()) != 0)
        std::abort();
    gnutls_cipher_deinit(cipher);
    return mask;
}

std::array<std::uint8_t, 12> nonceFor(const InitialKeys& keys, std::uint64_t packetNumber) {
    auto nonce = keys.iv;
    for (std::size_t i = 0; i < 8; ++i)
        nonce[nonce.size() - 1 - i] ^= static_cast<std::uint8_t>(packetNumber >> (8 * i));
    return nonce;
}

// Seals `plain` (which must be padded already) behind `header`, whose last byte is a one-byte
// packet number, and applies header protection.
Bytes protect(const InitialKeys& keys, Bytes header, std::uint8_t packetNumber,
              std::span<const std::uint8_t> plain) {
    gnutls_aead_cipher_hd_t aead = nullptr;
    auto key = datum(keys.key);
    if (gnutls_aead_cipher_init(&aead, GNUTLS_CIPHER_AES_128_GCM, &key) != 0)
        std::abort();
    auto nonce = nonceFor(keys, packetNumber);
    std::size_t pnOffset = header.size() - 1;
    Bytes packet = header;
    packet.resize(header.size() + plain.size() + kTagSize);
    std::size_t sealed = plain.size() + kTagSize;
    if (gnutls_aead_cipher_encrypt(aead, nonce.data(), nonce.size(), header.data(), header.size(),
                                   kTagSize, plain.data(), plain.size(),
                                   packet.data() + header.size(), &sealed) != 0 ||
        sealed != plain.size() + kTagSize)
        std::abort();
    gnutls_aead_cipher_deinit(aead);
    auto mask =
        headerMask(keys, std::span<const std::uint8_t, 16>(packet.data() + pnOffset + 4, 16));
    packet[0] ^= mask[0] & 0x0f;
    packet[pnOffset] ^= mask[1];
    return packet;
}

struct Reader {
    std::span<const std::uint8_t> rest;
    std::uint8_t byte() {
        if (rest.empty())
            return 0;
        auto b = rest[0];
        rest = rest.subspan(1);
        return b;
    }
    std::span<const std::uint8_t> take(std::size_t n) {
        auto out = rest.first(std::min(n, rest.size()));
        rest = rest.subspan(out.size());
        return out;
    }
};

// The client Initial a sealed payload describes (see the top of the file).
Bytes sealInitial(std::span<const std::uint8_t> payload) {
    Reader in{payload};
    auto dcid = in.take(in.byte() % (kMaxCidLength + 1));
    auto scid = in.take(in.byte() % (kMaxCidLength + 1));
    auto token = in.take(in.byte() % 64); // a one-byte varint length
    std::uint8_t packetNumber = in.byte();
    auto frames = in.take(kMaxSealedFrames);

    Bytes header{0xc0, 0x00, 0x00, 0x00, 0x01}; // Initial, 1-byte packet number; version 1
    header.push_back(static_cast<std::uint8_t>(dcid.size()));
    header.insert(header.end(), dcid.begin(), dcid.end());
    header.push_back(static_cast<std::uint8_t>(scid.size()));
    header.insert(header.end(), scid.begin(), scid.end());
    header.push_back(static_cast<std::uint8_t>(token.size()));
    header.insert(header.end(), token.begin(), token.end());
    // Padding frames (zeros) bring the datagram to the minimum a server accepts.
    std::size_t fixed = header.size() + 2 + 1 + kTagSize;
    Bytes plain(frames.begin(), frames.end());
    if (fixed + plain.size() < kMinInitialDatagram)
        plain.resize(kMinInitialDatagram - fixed, 0);
    std::size_t length = 1 + plain.size() + kTagSize; // fits a 2-byte varint
    header.push_back(static_cast<std::uint8_t>(0x40 | (length >> 8)));
    header.push_back(static_cast<std::uint8_t>(length));
    header.push_back(packetNumber);
    return protect(clientInitialKeys(dcid), std::move(header), packetNumber, plain);
}

// --- The transport under attack ---------------------------------------------------------------

// Test addresses (RFC 5737, RFC 3849): two ports on one host, three more hosts, and two IPv6
// ports on one host; the last address is a contact's candidate we expect a handshake from.
constexpr std::array<const char*, 8> kPeers{
    "198.51.100.1:443",  "198.51.100.1:50000", "198.51.100.2:4433", "203.0.113.7:1",
    "[2001:db8::1]:443", "[2001:db8::1]:9",    "[2001:db8::2]:443", "192.0.2.99:7777"};

quic::TransportConfig configFor(const dht::Identity& identity, std::uint8_t resetSeed) {
    quic::TransportConfig config;
    config.certificatePem = identity.certificatePem();
    config.privateKeyPem = identity.privateKeyPem("");
    config.resetSecret.fill(resetSeed);
    config.local4 = *dht::SocketAddress::parse("192.0.2.1:4222");
    config.local6 = *dht::SocketAddress::parse("[2001:db8::100]:4222");
    // Small caps and a short handshake timeout: the fuzzer reaches the caps, and the slots of
    // handshakes that never finish come free again within the run.
    config.maxHandshakes = 16;
    config.maxHandshakesPerHost = 4;
    config.handshakeTimeout = std::chrono::milliseconds(250);
    return config;
}

void writeSeeds(const dht::Identity& server, const std::string& dir);

struct Harness {
    asio::io_context io;
    dht::Identity identity = dht::Identity::generate("fuzz", 2048);
    quic::TransportConfig config = configFor(identity, 7);
    std::vector<dht::SocketAddress> peers;
    // Bytes by address (bounded: only kPeers send to us, and sends elsewhere abort).
    std::map<std::string, std::uint64_t> received, sent;
    std::unique_ptr<quic::Transport> transport;

    Harness() {
        for (const char* p : kPeers)
            peers.push_back(*dht::SocketAddress::parse(p));
        if (const char* dir = std::getenv("PARLEY_FUZZ_QUIC_SEEDS"); dir && *dir)
            writeSeeds(identity, dir);
        transport = std::make_unique<quic::Transport>(
            io, config,
            [this](const dht::SocketAddress& to, std::span<const std::uint8_t> run,
                   std::size_t segmentSize) { onSend(to, run, segmentSize); });
        transport->setAuthorizer([](const dht::ContactId&) { return false; });
        transport->setAcceptHandler([](quic::ConnectionPtr) { std::abort(); });
        transport->setSuspectHandler([](quic::ConnectionPtr) { std::abort(); });
        transport->expect(peers.back(), std::chrono::steady_clock::now() + std::chrono::hours(24));
    }

    void onSend(const dht::SocketAddress& to, std::span<const std::uint8_t> run,
                std::size_t segmentSize) {
        std::size_t segment = segmentSize == 0 ? run.size() : segmentSize;
        if (run.empty() || run.size() > dht::UdpEndpoint::kMaxSegmentedBytes ||
            (run.size() + segment - 1) / segment > dht::UdpEndpoint::kMaxSegments)
            std::abort();
        auto key = to.toString();
        sent[key] += run.size();
        // Before it has validated an address a server sends at most 3 times what it received
        // from there (RFC 9000 §8.1); nobody here can validate one, as nobody gets the keys.
        if (sent[key] > 3 * received[key])
            std::abort();
    }

    void checkCaps() const {
        auto s = transport->stats();
        if (s.handshakesInProgress > config.maxHandshakes + kExpectedRoom ||
            s.handshakesInProgress > s.connections ||
            s.connections > config.maxConnections + config.maxHandshakes ||
            s.connectionsOpened != 0)
            std::abort();
    }

    void runHandlers() {
        transport->endOfBurst();
        io.restart();
        io.poll();
    }
};

Harness& harness() {
    static auto* h = new Harness; // never destroyed: no shutdown flight at exit
    return *h;
}

// --- Seeds from a real client ----------------------------------------------------------------

void writeRecord(Bytes& out, std::uint8_t control, std::span<const std::uint8_t> payload) {
    out.push_back(control);
    out.push_back(static_cast<std::uint8_t>(payload.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
}

void writeFile(const std::filesystem::path& path, const Bytes& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
}

std::uint64_t readVarint(std::span<const std::uint8_t> d, std::size_t& at) {
    if (at >= d.size())
        return 0;
    std::size_t n = std::size_t{1} << (d[at] >> 6);
    if (at + n > d.size())
        return 0;
    std::uint64_t v = d[at] & 0x3f;
    for (std::size_t i = 1; i < n; ++i)
        v = v << 8 | d[at + i];
    at += n;
    return v;
}

// The sealed-payload form of a client's Initial datagram (its first packet), or nullopt.
std::optional<Bytes> unsealInitial(std::span<const std::uint8_t> d) {
    if (d.size() < 7 || (d[0] & 0xf0) != 0xc0)
        return std::nullopt;
    std::size_t at = 5;
    auto field = [&](std::size_t n) {
        auto out =
            d.subspan(std::min(at, d.size())).first(std::min(n, d.size() - std::min(at, d.size())));
        at += n;
        return out;
    };
    auto dcid = field(d[at++]);
    auto scid = at < d.size() ? field(d[at++]) : field(0);
    auto token = field(readVarint(d, at));
    std::size_t length = readVarint(d, at);
    std::size_t pnOffset = at;
    if (pnOffset + length > d.size() || length < 20)
        return std::nullopt;
    auto keys = clientInitialKeys(dcid);
    auto mask = headerMask(keys, std::span<const std::uint8_t, 16>(d.data() + pnOffset + 4, 16));
    Bytes header(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(pnOffset));
    header[0] ^= mask[0] & 0x0f;
    std::size_t pnLength = (header[0] & 0x03) + 1;
    std::uint64_t packetNumber = 0;
    for (std::size_t i = 0; i < pnLength; ++i) {
        header.push_back(d[pnOffset + i] ^ mask[1 + i]);
        packetNumber = packetNumber << 8 | header.back();
    }
    if (packetNumber > 0xff)
        return std::nullopt;
    auto sealed = d.subspan(pnOffset + pnLength, length - pnLength);
    Bytes plain(sealed.size());
    std::size_t plainLength = plain.size();
    gnutls_aead_cipher_hd_t aead = nullptr;
    auto key = datum(keys.key);
    auto nonce = nonceFor(keys, packetNumber);
    if (gnutls_aead_cipher_init(&aead, GNUTLS_CIPHER_AES_128_GCM, &key) != 0)
        return std::nullopt;
    int rv = gnutls_aead_cipher_decrypt(aead, nonce.data(), nonce.size(), header.data(),
                                        header.size(), kTagSize, sealed.data(), sealed.size(),
                                        plain.data(), &plainLength);
    gnutls_aead_cipher_deinit(aead);
    if (rv != 0)
        return std::nullopt;
    plain.resize(plainLength);
    while (!plain.empty() && plain.back() == 0) // padding, which sealInitial puts back
        plain.pop_back();
    Bytes out{static_cast<std::uint8_t>(dcid.size())};
    out.insert(out.end(), dcid.begin(), dcid.end());
    out.push_back(static_cast<std::uint8_t>(scid.size()));
    out.insert(out.end(), scid.begin(), scid.end());
    out.push_back(static_cast<std::uint8_t>(token.size()));
    out.insert(out.end(), token.begin(), token.end());
    out.push_back(static_cast<std::uint8_t>(packetNumber));
    out.insert(out.end(), plain.begin(), plain.end());
    return out;
}

void writeSeeds(const dht::Identity& server, const std::string& dir) {
    asio::io_context io;
    std::vector<Bytes> flight;
    auto clientIdentity = dht::Identity::generate("fuzz client", 2048);
    auto config = configFor(clientIdentity, 9);
    config.local4 = *dht::SocketAddress::parse(kPeers[0]);
    auto client = std::make_unique<quic::Transport>(
        io, config,
        [&](const dht::SocketAddress&, std::span<const std::uint8_t> run, std::size_t segment) {
            if (segment == 0)
                segment = run.size();
            for (std::size_t at = 0; at < run.size(); at += segment)
                flight.emplace_back(
                    run.begin() + static_cast<std::ptrdiff_t>(at),
                    run.begin() + static_cast<std::ptrdiff_t>(std::min(run.size(), at + segment)));
        });
    client->dial(server.contactId(), *dht::SocketAddress::parse("192.0.2.1:4222"),
                 [](quic::ConnectionPtr, const std::string&) {});
    auto initial = flight.empty() ? Bytes{} : flight.front();
    client.reset();
    io.poll();
    auto sealed = unsealInitial(initial);
    if (!sealed)
        std::abort(); // the seeds could not be made: say so loudly
    std::filesystem::create_directories(dir);
    std::filesystem::path path(dir);
    Bytes raw, sealedRecord, fromV6;
    writeRecord(raw, 0x00, initial);
    writeRecord(raw, 0x40, initial); // the same again, as a retransmission would be
    writeFile(path / "client_initial", raw);
    writeRecord(sealedRecord, 0x80, *sealed);
    writeFile(path / "client_initial_sealed", sealedRecord);
    writeRecord(fromV6, 0x84, *sealed);
    writeRecord(fromV6, 0x87, *sealed); // from the expected address
    writeFile(path / "client_initial_sealed_v6_expected", fromV6);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& h = harness();
    Reader in{{data, size}};
    for (std::size_t i = 0; i < kMaxDatagrams && !in.rest.empty(); ++i) {
        std::uint8_t control = in.byte();
        std::size_t length = static_cast<std::size_t>(in.byte()) << 8;
        length |= in.byte();
        auto payload = in.take(length);
        Bytes datagram =
            (control & 0x80) ? sealInitial(payload) : Bytes(payload.begin(), payload.end());
        const auto& from = h.peers[control & 0x07];
        // An empty datagram too: Transport::receive must drop it (ngtcp2 asserts on one).
        if (datagram.empty() || dht::classifyDatagram(datagram) == dht::DatagramKind::quic) {
            h.received[from.toString()] += datagram.size();
            h.transport->receive(datagram, from);
            h.checkCaps();
        }
        if (control & 0x40)
            h.runHandlers();
    }
    h.runHandlers();
    h.checkCaps();
    return 0;
}
