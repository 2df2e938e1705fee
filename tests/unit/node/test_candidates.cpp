// Connection candidates without a network: which addresses a contact's connect envelope may
// make us dial (selectCandidates), which of ours we announce (mergeCandidates), who is the QUIC
// client (isClientRole) and which local interface addresses we offer (interfaceAddresses).
#include "dht/envelope.h"
#include "node/transport/candidates.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <netinet/in.h>

using namespace parley;
using node::CandidatePolicy;
using node::interfaceAddresses;
using node::isClientRole;
using node::mergeCandidates;
using node::selectCandidates;

namespace {

dht::ContactId idOf(std::uint8_t first, std::uint8_t last = 0) {
    dht::ContactId::Bytes b{};
    b[0] = first;
    b[b.size() - 1] = last;
    return dht::ContactId(b);
}

dht::SocketAddress addr(const std::string& text) {
    auto a = dht::SocketAddress::parse(text);
    REQUIRE(a);
    return *a;
}

std::vector<std::string> texts(const std::vector<dht::SocketAddress>& addresses) {
    std::vector<std::string> out;
    for (const auto& a : addresses)
        out.push_back(a.toString());
    return out;
}

const CandidatePolicy kLoopbackOk{.allowLoopback = true};

} // namespace

TEST_CASE("candidates: the lower ContactId is the QUIC client, on both sides", "[candidates]") {
    auto low = idOf(0x10), high = idOf(0x20);
    CHECK(isClientRole(low, high));
    CHECK_FALSE(isClientRole(high, low));
    // Only the last byte differs: the whole id counts, not a prefix.
    auto a = idOf(0x55, 1), b = idOf(0x55, 2);
    CHECK(isClientRole(a, b) != isClientRole(b, a));
    CHECK(isClientRole(a, b));
    // Never both, never neither, for any pair of distinct ids; ourselves: not a client.
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) {
            auto x = idOf(static_cast<std::uint8_t>(i * 17), static_cast<std::uint8_t>(j));
            auto y = idOf(static_cast<std::uint8_t>(j * 17), static_cast<std::uint8_t>(i));
            if (x == y)
                CHECK_FALSE(isClientRole(x, y));
            else
                CHECK(isClientRole(x, y) != isClientRole(y, x));
        }
}

TEST_CASE("candidates: a contact's addresses are parsed and unusable ones dropped",
          "[candidates]") {
    std::vector<std::string> in = {
        "192.0.2.10:4000",         // ok
        "[2001:db8::1]:4000",      // ok
        "example.com:4000",        // names are never resolved
        "192.0.2.11",              // no port
        "192.0.2.12:0",            // port 0
        "0.0.0.0:4000",            // unspecified
        "[::]:4000",               // unspecified
        "224.0.0.1:4000",          // multicast
        "239.255.255.250:1900",    // multicast (SSDP)
        "[ff02::1]:4000",          // multicast
        "255.255.255.255:4000",    // broadcast
        "169.254.7.7:4000",        // link-local: needs an interface
        "[fe80::1]:4000",          // link-local
        "192.0.2.13:65536",        // port out of range
        "192.0.2.14:-1",           // negative port
        "",                        // empty
        ":4000",                   // no host
        "192.0.2.10:4000",         // duplicate
        "1.2.3.4:5 ",              // trailing space
        "[2001:db8:0:0::1]:4000",  // the same address as above, written differently
        "198.51.100.7:65535",      // ok, highest port
        std::string(200, '1'),     // far too long
        "[2001:db8::2]:4000%eth0", // junk after the port
    };
    auto out = selectCandidates(in, {});
    CHECK(texts(out) ==
          std::vector<std::string>{"192.0.2.10:4000", "[2001:db8::1]:4000", "198.51.100.7:65535"});
    for (const auto& a : out) {
        CHECK(a.port() != 0);
        CHECK_FALSE(a.isUnspecified());
        CHECK_FALSE(a.isLoopback());
    }
}

TEST_CASE("candidates: loopback only when the policy allows it", "[candidates]") {
    // An IPv4-mapped IPv6 loopback address is loopback too.
    std::vector<std::string> in = {"127.0.0.1:4000", "127.8.9.10:4001", "[::1]:4002",
                                   "[::ffff:127.0.0.1]:4003", "192.0.2.1:4004"};
    CHECK(texts(selectCandidates(in, {})) == std::vector<std::string>{"192.0.2.1:4004"});
    CHECK(selectCandidates(in, kLoopbackOk).size() == in.size());
}

TEST_CASE("candidates: address families can be turned off", "[candidates]") {
    std::vector<std::string> in = {"192.0.2.1:1", "[2001:db8::1]:2", "192.0.2.2:3"};
    CHECK(texts(selectCandidates(in, {.allowIPv6 = false})) ==
          std::vector<std::string>{"192.0.2.1:1", "192.0.2.2:3"});
    CHECK(texts(selectCandidates(in, {.allowIPv4 = false})) ==
          std::vector<std::string>{"[2001:db8::1]:2"});
    CHECK(selectCandidates(in, {.allowIPv4 = false, .allowIPv6 = false}).empty());
}

TEST_CASE("candidates: at most kMaxCandidates, oversized entries skipped", "[candidates]") {
    std::vector<std::string> in;
    // Junk first does not use up the cap...
    for (int i = 0; i < 40; ++i)
        in.push_back("junk" + std::to_string(i));
    // ... an entry over kMaxCandidateSize is skipped even when it would parse ...
    std::string padded = "192.0.2.99:1";
    REQUIRE(padded.size() < dht::kMaxCandidateSize);
    in.push_back(std::string(dht::kMaxCandidateSize, ' ') + padded);
    // ... and of 40 good ones, the first 16 are kept, in order.
    for (int i = 0; i < 40; ++i)
        in.push_back("192.0.2." + std::to_string(i + 1) + ":" + std::to_string(1000 + i));
    auto out = selectCandidates(in, {});
    REQUIRE(out.size() == dht::kMaxCandidates);
    for (std::size_t i = 0; i < out.size(); ++i)
        CHECK(out[i].toString() ==
              "192.0.2." + std::to_string(i + 1) + ":" + std::to_string(1000 + i));
    // Duplicates do not count against the cap.
    std::vector<std::string> dupes(100, "192.0.2.1:1");
    dupes.push_back("192.0.2.2:2");
    CHECK(texts(selectCandidates(dupes, {})) ==
          std::vector<std::string>{"192.0.2.1:1", "192.0.2.2:2"});
    CHECK(selectCandidates({}, {}).empty());
}

TEST_CASE("candidates: ours are mapped, then public, then interfaces, canonical and capped",
          "[candidates]") {
    std::vector<dht::SocketAddress> interfaces = {addr("192.168.1.5:4000"),
                                                  addr("[2001:db8::5]:4000")};
    std::vector<std::string> publicEndpoints = {"203.0.113.9:4000", "[2001:db8:0::5]:4000"};
    std::vector<std::string> mapped = {"203.0.113.9:5000"};
    auto out = mergeCandidates(interfaces, publicEndpoints, mapped);
    // The public IPv6 endpoint is the interface address: listed once, in canonical form.
    CHECK(out == std::vector<std::string>{"203.0.113.9:5000", "203.0.113.9:4000",
                                          "[2001:db8::5]:4000", "192.168.1.5:4000"});
    // What we announce is what a receiver accepts.
    CHECK(texts(selectCandidates(out, {})) == out);

    // Unusable entries are dropped: a public address without a port (OpenDHT reports some
    // that way), unspecified, link-local, garbage.
    out = mergeCandidates({addr("0.0.0.0:4000"), addr("[fe80::1]:4000")},
                          {"203.0.113.9", "not an address", "169.254.1.1:4000"}, {"0.0.0.0:1"});
    CHECK(out.empty());

    // Capped; the public and mapped endpoints a far peer needs come first.
    std::vector<dht::SocketAddress> many;
    for (int i = 0; i < 30; ++i)
        many.push_back(addr("10.0." + std::to_string(i) + ".1:4000"));
    out = mergeCandidates(many, {"203.0.113.9:4000"}, {"198.51.100.1:6000"});
    REQUIRE(out.size() == dht::kMaxCandidates);
    CHECK(out[0] == "198.51.100.1:6000");
    CHECK(out[1] == "203.0.113.9:4000");
    CHECK(out[2] == "10.0.0.1:4000");
    for (const auto& c : out)
        CHECK(c.size() <= dht::kMaxCandidateSize);
}

TEST_CASE("candidates: interface addresses follow the bound address", "[candidates]") {
    // Bound to one address: just that one, whatever the interfaces are.
    auto bound = addr("127.0.0.1:4321");
    CHECK(texts(interfaceAddresses(bound, {}, 4321, true)) ==
          std::vector<std::string>{"127.0.0.1:4321"});
    CHECK(interfaceAddresses({}, {}, 4321, true).empty());

    // Bound to every address: the interfaces' addresses with our port, loopback on request.
    auto any4 = addr("0.0.0.0:4321");
    auto withLoopback = interfaceAddresses(any4, {}, 4321, true);
    auto withoutLoopback = interfaceAddresses(any4, {}, 4321, false);
    for (const auto& a : withLoopback) {
        CHECK(a.family() == AF_INET);
        CHECK(a.port() == 4321);
        CHECK_FALSE(a.isUnspecified());
    }
    for (const auto& a : withoutLoopback)
        CHECK_FALSE(a.isLoopback());
    // Every machine has 127.0.0.1 on an interface that is up.
    auto texts4 = texts(withLoopback);
    CHECK(std::find(texts4.begin(), texts4.end(), "127.0.0.1:4321") != texts4.end());
    CHECK(withLoopback.size() >= withoutLoopback.size() + 1);
    auto unique = texts4;
    std::sort(unique.begin(), unique.end());
    CHECK(std::adjacent_find(unique.begin(), unique.end()) == unique.end());
}

TEST_CASE("candidates: IPv4-mapped IPv6 addresses follow the IPv4 rules", "[candidates]") {
    std::vector<std::string> in = {
        "[::ffff:192.0.2.10]:4000",      // ok: a public IPv4 address in IPv6 form
        "[::ffff:224.0.0.1]:4000",       // multicast
        "[::ffff:239.255.255.250]:1900", // multicast (SSDP)
        "[::ffff:0.0.0.0]:4000",         // unspecified
        "[::ffff:169.254.7.7]:4000",     // link-local
        "[::ffff:255.255.255.255]:4000", // broadcast
    };
    CHECK(texts(selectCandidates(in, {})) == std::vector<std::string>{"[::ffff:192.0.2.10]:4000"});
    // Our own offers obey the same rules.
    CHECK(mergeCandidates({}, in, {}) == std::vector<std::string>{"[::ffff:192.0.2.10]:4000"});
}
