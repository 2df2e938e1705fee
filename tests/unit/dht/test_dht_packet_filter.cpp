// Unit tests for DhtPacketFilter: datagrams are built the way OpenDHT 2.4.12's network engine
// builds them (checked against captured traffic), values with OpenDHT's own serialisation.
#include "dht/dht_packet_filter.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <msgpack.hpp>
#include <opendht/crypto.h>
#include <opendht/infohash.h>
#include <opendht/value.h>
#include <random>
#include <string>
#include <vector>

namespace {

using parley::dht::DhtPacketFilter;
using Verdict = DhtPacketFilter::Verdict;
using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

constexpr std::uint32_t netId = 0x1234;
constexpr std::size_t maxPacketValueSize = 600; // NetworkEngine::MAX_PACKET_VALUE_SIZE
constexpr std::size_t mtu = 1280;               // NetworkEngine::MTU: part size
constexpr dht::Value::Id targetId = 0x1122334455667788ull;
const std::string attacker = "127.0.0.1:4000";
const std::string honest = "127.0.0.1:4001";

const dht::crypto::Identity& identity() {
    static const auto id = dht::crypto::generateIdentity("parley-filter-test", {}, 2048);
    return id;
}
const dht::crypto::Identity& otherIdentity() {
    static const auto id = dht::crypto::generateIdentity("parley-filter-other", {}, 2048);
    return id;
}

const dht::InfoHash& targetKey() {
    static const auto key = dht::InfoHash::get("parley/test");
    return key;
}

Bytes blob(const std::string& s) {
    return Bytes(s.begin(), s.end());
}

Bytes signedValue(dht::Value::Id id, const std::string& data,
                  const dht::crypto::Identity& signer = identity(), std::uint16_t type = 0) {
    dht::Value v(type, blob(data), id);
    v.sign(*signer.first);
    return dht::packMsg(v);
}

Bytes plainValue(dht::Value::Id id, std::size_t size = 4) {
    dht::Value v(0, Bytes(size, 'e'), id);
    return dht::packMsg(v);
}

Bytes encryptedValue(dht::Value::Id id) {
    dht::Value v(0, blob("secret"), id);
    auto enc = v.encrypt(*otherIdentity().first, identity().first->getPublicKey());
    enc.id = id;
    return dht::packMsg(enc);
}

using Packer = msgpack::packer<msgpack::sbuffer>;

void packBin(Packer& pk, const std::uint8_t* data, std::size_t size) {
    pk.pack_bin(static_cast<std::uint32_t>(size));
    pk.pack_bin_body(reinterpret_cast<const char*>(data), static_cast<std::uint32_t>(size));
}

void packHash(Packer& pk, const dht::InfoHash& h) {
    packBin(pk, h.data(), h.size());
}

Bytes toBytes(const msgpack::sbuffer& sb) {
    return Bytes(sb.data(), sb.data() + sb.size());
}

// A query as NetworkEngine sends it: {"a": {...}, "q": name, "t": tid, "y": "q", "v", "n"}.
template <typename Args>
Bytes query(const std::string& name, std::uint32_t tid, std::size_t argCount, Args&& args) {
    msgpack::sbuffer sb;
    Packer pk(&sb);
    pk.pack_map(6);
    pk.pack(std::string("a"));
    pk.pack_map(static_cast<std::uint32_t>(argCount + 1));
    pk.pack(std::string("id"));
    packHash(pk, dht::InfoHash::get("sender node"));
    args(pk, sb);
    pk.pack(std::string("q"));
    pk.pack(name);
    pk.pack(std::string("t"));
    pk.pack(tid);
    pk.pack(std::string("y"));
    pk.pack(std::string("q"));
    pk.pack(std::string("v"));
    pk.pack(std::string("RNG1"));
    pk.pack(std::string("n"));
    pk.pack(netId);
    return toBytes(sb);
}

// NetworkEngine::sendValueParts: {"n", "y": "p", "t", "p": {index: {"o": offset, "d": bin}}},
// one datagram per MTU-sized slice of each value.
std::vector<Bytes> valueParts(std::uint32_t tid, const std::vector<Bytes>& values) {
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < values.size(); ++i) {
        const auto& v = values[i];
        std::size_t start = 0;
        do {
            const std::size_t end = std::min(start + mtu, v.size());
            msgpack::sbuffer sb;
            Packer pk(&sb);
            pk.pack_map(4);
            pk.pack(std::string("n"));
            pk.pack(netId);
            pk.pack(std::string("y"));
            pk.pack(std::string("p"));
            pk.pack(std::string("t"));
            pk.pack(tid);
            pk.pack(std::string("p"));
            pk.pack_map(1);
            pk.pack(static_cast<unsigned>(i));
            pk.pack_map(2);
            pk.pack(std::string("o"));
            pk.pack(start);
            pk.pack(std::string("d"));
            packBin(pk, v.data() + start, end - start);
            out.push_back(toBytes(sb));
            start = end;
        } while (start != v.size());
    }
    return out;
}

// NetworkEngine::sendAnnounceValue + packValueHeader: values inline when small, else their
// sizes in the header and the bytes in part datagrams. Returns the header first.
std::vector<Bytes> announce(const dht::InfoHash& key, const std::vector<Bytes>& values,
                            std::uint32_t tid, bool forceParts = false) {
    std::size_t total = 0;
    for (const auto& v : values)
        total += v.size();
    const bool inlined = !forceParts && values.size() < 50 && total < maxPacketValueSize;
    std::vector<Bytes> out;
    out.push_back(query("put", tid, 3, [&](Packer& pk, msgpack::sbuffer& sb) {
        pk.pack(std::string("h"));
        packHash(pk, key);
        pk.pack(std::string("values"));
        pk.pack_array(static_cast<std::uint32_t>(values.size()));
        for (const auto& v : values) {
            if (inlined)
                sb.write(reinterpret_cast<const char*>(v.data()), v.size());
            else
                pk.pack(v.size());
        }
        pk.pack(std::string("token"));
        const Bytes token(32, 7);
        packBin(pk, token.data(), token.size());
    }));
    if (!inlined) {
        auto parts = valueParts(tid, values);
        out.insert(out.end(), parts.begin(), parts.end());
    }
    return out;
}

Bytes refresh(const dht::InfoHash& key, dht::Value::Id id, std::uint32_t tid) {
    return query("refresh", tid, 3, [&](Packer& pk, msgpack::sbuffer&) {
        pk.pack(std::string("h"));
        packHash(pk, key);
        pk.pack(std::string("vid"));
        pk.pack(id);
        pk.pack(std::string("token"));
        const Bytes token(32, 7);
        packBin(pk, token.data(), token.size());
    });
}

// Feeds datagrams in order; returns the verdict of each.
std::vector<Verdict> feed(DhtPacketFilter& filter, const std::vector<Bytes>& packets,
                          const std::string& peer, DhtPacketFilter::Clock::time_point now) {
    std::vector<Verdict> verdicts;
    for (const auto& p : packets)
        verdicts.push_back(filter.onInbound(p, peer, now));
    return verdicts;
}

bool allPass(const std::vector<Verdict>& v) {
    return std::all_of(v.begin(), v.end(), [](Verdict x) { return x == Verdict::pass; });
}

// Verdicts of an attack whose last datagram must be the only one dropped.
bool onlyLastDropped(const std::vector<Verdict>& v) {
    return !v.empty() && v.back() == Verdict::drop &&
           std::all_of(v.begin(), v.end() - 1, [](Verdict x) { return x == Verdict::pass; });
}

const auto t0 = DhtPacketFilter::Clock::time_point{} + 1000h;

// A filter that has seen an honest peer store a signed value at (targetKey, targetId).
DhtPacketFilter filterWithSignedValue(DhtPacketFilter::Limits limits = {}) {
    DhtPacketFilter filter(limits);
    const auto packets = announce(targetKey(), {signedValue(targetId, "signed")}, 100);
    REQUIRE(packets.size() == 2); // a signed value never fits inline
    REQUIRE(allPass(feed(filter, packets, honest, t0)));
    REQUIRE(filter.trackedValues() == 1);
    return filter;
}

} // namespace

TEST_CASE("an inline owner-less value colliding with a signed one is dropped", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto packets = announce(targetKey(), {plainValue(targetId)}, 200);
    REQUIRE(packets.size() == 1);
    CHECK(filter.onInbound(packets[0], attacker, t0 + 1s) == Verdict::drop);
    CHECK(filter.stats().collisions == 1);
    CHECK(filter.stats().dropped == 1);
}

TEST_CASE("an owner-less value arriving in parts is stopped at its last part", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    SECTION("one part") {
        const auto packets = announce(targetKey(), {plainValue(targetId, 700)}, 201);
        REQUIRE(packets.size() == 2);
        CHECK(onlyLastDropped(feed(filter, packets, attacker, t0 + 1s)));
    }
    SECTION("several parts") {
        const auto packets = announce(targetKey(), {plainValue(targetId, 3000)}, 202);
        REQUIRE(packets.size() == 4);
        CHECK(onlyLastDropped(feed(filter, packets, attacker, t0 + 1s)));
        // Resending the completing part does not get it through either.
        CHECK(filter.onInbound(packets.back(), attacker, t0 + 2s) == Verdict::drop);
    }
    SECTION("small value forced into parts") {
        const auto packets = announce(targetKey(), {plainValue(targetId)}, 203, true);
        CHECK(onlyLastDropped(feed(filter, packets, attacker, t0 + 1s)));
    }
    CHECK(filter.stats().collisions >= 1);
}

TEST_CASE("an encrypted value (cypher only) colliding with a signed one is dropped",
          "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto packets = announce(targetKey(), {encryptedValue(targetId)}, 300);
    CHECK(onlyLastDropped(feed(filter, packets, attacker, t0 + 1s)));
    // The same cypher inline (a header OpenDHT would also accept) is dropped too.
    const auto inlined = query("put", 301, 2, [&](Packer& pk, msgpack::sbuffer& sb) {
        pk.pack(std::string("h"));
        packHash(pk, targetKey());
        pk.pack(std::string("values"));
        pk.pack_array(1);
        const auto v = encryptedValue(targetId);
        sb.write(reinterpret_cast<const char*>(v.data()), v.size());
    });
    CHECK(filter.onInbound(inlined, attacker, t0 + 1s) == Verdict::drop);
}

TEST_CASE("legitimate puts around a signed value pass", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto later = t0 + 5s;
    SECTION("signed edit of the same id") {
        dht::Value v(0, blob("signed, second edition"), targetId);
        v.seq = 2;
        v.sign(*identity().first);
        CHECK(allPass(feed(filter, announce(targetKey(), {dht::packMsg(v)}, 400), honest, later)));
    }
    SECTION("signed by someone else with the same id (OpenDHT refuses it, without crashing)") {
        CHECK(allPass(
            feed(filter, announce(targetKey(), {signedValue(targetId, "x", otherIdentity())}, 401),
                 attacker, later)));
    }
    SECTION("owner-less value with another id") {
        CHECK(allPass(
            feed(filter, announce(targetKey(), {plainValue(targetId + 1)}, 402), attacker, later)));
        CHECK(allPass(feed(filter, announce(targetKey(), {encryptedValue(targetId + 2)}, 403),
                           attacker, later)));
    }
    SECTION("owner-less value with the same id under another key") {
        const auto other = dht::InfoHash::get("parley/other");
        CHECK(allPass(
            feed(filter, announce(other, {plainValue(targetId, 700)}, 404), attacker, later)));
    }
    CHECK(filter.stats().dropped == 0);
}

TEST_CASE("normal traffic passes unchanged", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto now = t0 + 1s;
    const auto ping = query("ping", 500, 0, [](Packer&, msgpack::sbuffer&) {});
    const auto find = query("find", 501, 1, [](Packer& pk, msgpack::sbuffer&) {
        pk.pack(std::string("target"));
        packHash(pk, dht::InfoHash::get("t"));
    });
    const auto get = query("get", 502, 1, [](Packer& pk, msgpack::sbuffer&) {
        pk.pack(std::string("h"));
        packHash(pk, targetKey());
    });
    const auto listen = query("listen", 503, 2, [](Packer& pk, msgpack::sbuffer&) {
        pk.pack(std::string("h"));
        packHash(pk, targetKey());
        pk.pack(std::string("sid"));
        pk.pack(77u);
    });
    // A listen update may carry any value: it goes to the listener, not to storage (checked
    // against 2.4.12: an owner-less update with a stored signed id does not crash it).
    const auto update = query("update", 504, 3, [](Packer& pk, msgpack::sbuffer& sb) {
        pk.pack(std::string("h"));
        packHash(pk, targetKey());
        pk.pack(std::string("sid"));
        pk.pack(77u);
        pk.pack(std::string("values"));
        pk.pack_array(1);
        const auto v = plainValue(targetId);
        sb.write(reinterpret_cast<const char*>(v.data()), v.size());
    });
    // A get reply announcing its values by size, then their parts with the same tid.
    msgpack::sbuffer sb;
    Packer pk(&sb);
    const auto served = plainValue(targetId, 900);
    pk.pack_map(5);
    pk.pack(std::string("r"));
    pk.pack_map(2);
    pk.pack(std::string("id"));
    packHash(pk, dht::InfoHash::get("replier"));
    pk.pack(std::string("values"));
    pk.pack_array(1);
    pk.pack(served.size());
    pk.pack(std::string("t"));
    pk.pack(505u);
    pk.pack(std::string("y"));
    pk.pack(std::string("r"));
    pk.pack(std::string("v"));
    pk.pack(std::string("RNG1"));
    pk.pack(std::string("n"));
    pk.pack(netId);
    std::vector<Bytes> reply{toBytes(sb)};
    for (auto& part : valueParts(505, {served}))
        reply.push_back(part);

    CHECK(allPass(feed(filter, {ping, find, get, listen, update}, attacker, now)));
    CHECK(allPass(feed(filter, reply, attacker, now)));
    CHECK(filter.onInbound(refresh(targetKey(), targetId, 506), attacker, now) == Verdict::pass);
    CHECK(filter.stats().dropped == 0);
    CHECK(filter.stats().malformed == 0);
}

TEST_CASE("a signed value followed by an owner-less one in the same message is dropped",
          "[dht_filter]") {
    DhtPacketFilter filter;
    const auto packets =
        announce(targetKey(), {signedValue(targetId, "signed"), plainValue(targetId, 700)}, 600);
    CHECK(onlyLastDropped(feed(filter, packets, attacker, t0)));
    // The other order is harmless to OpenDHT: the owner-less value is stored first.
    DhtPacketFilter filter2;
    CHECK(allPass(feed(
        filter2,
        announce(targetKey(), {plainValue(targetId, 700), signedValue(targetId, "signed")}, 601),
        attacker, t0)));
}

TEST_CASE("values this node announces itself are learned from outbound puts", "[dht_filter]") {
    DhtPacketFilter filter;
    for (const auto& p : announce(targetKey(), {signedValue(targetId, "mine")}, 700))
        filter.onOutbound(p, honest, t0);
    CHECK(filter.trackedValues() == 1);
    CHECK(filter.onInbound(announce(targetKey(), {plainValue(targetId)}, 701)[0], attacker,
                           t0 + 1s) == Verdict::drop);
    // Outbound owner-less values teach nothing.
    for (const auto& p : announce(targetKey(), {encryptedValue(targetId + 1)}, 702))
        filter.onOutbound(p, honest, t0);
    CHECK(filter.trackedValues() == 1);
}

TEST_CASE("tracked values expire after the type's lifetime plus the margin", "[dht_filter]") {
    DhtPacketFilter::Limits limits;
    limits.expiryMargin = 60s;
    DhtPacketFilter filter(limits);
    const auto iceKey = dht::InfoHash::get("ice");
    REQUIRE(allPass(feed(filter, announce(targetKey(), {signedValue(targetId, "user data")}, 800),
                         honest, t0)));
    REQUIRE(allPass(feed(
        filter, announce(iceKey, {signedValue(targetId, "ice", identity(), 5)}, 801), honest, t0)));
    CHECK(filter.trackedValues() == 2);
    const auto attack = [&](const dht::InfoHash& key, auto when) {
        return filter.onInbound(announce(key, {plainValue(targetId)}, 802)[0], attacker, when);
    };
    // Type 5 (IceCandidates) lives 60 s, type 0 (user data) 600 s.
    CHECK(attack(iceKey, t0 + 119s) == Verdict::drop);
    CHECK(attack(iceKey, t0 + 121s) == Verdict::pass);
    CHECK(attack(targetKey(), t0 + 659s) == Verdict::drop);
    CHECK(attack(targetKey(), t0 + 661s) == Verdict::pass);
    CHECK(filter.trackedValues() == 0);
}

TEST_CASE("a custom type lifetime can be declared", "[dht_filter]") {
    DhtPacketFilter::Limits limits;
    limits.expiryMargin = 0s;
    DhtPacketFilter filter(limits);
    filter.setTypeLifetime(42, 3600s);
    REQUIRE(allPass(feed(filter,
                         announce(targetKey(), {signedValue(targetId, "card", identity(), 42)}, 1),
                         honest, t0)));
    CHECK(filter.onInbound(announce(targetKey(), {plainValue(targetId)}, 2)[0], attacker,
                           t0 + 3599s) == Verdict::drop);
}

TEST_CASE("a refresh extends a tracked value", "[dht_filter]") {
    DhtPacketFilter::Limits limits;
    limits.expiryMargin = 60s;
    auto filter = filterWithSignedValue(limits);
    SECTION("inbound refresh") {
        CHECK(filter.onInbound(refresh(targetKey(), targetId, 900), honest, t0 + 500s) ==
              Verdict::pass);
    }
    SECTION("our own refresh") {
        filter.onOutbound(refresh(targetKey(), targetId, 901), honest, t0 + 500s);
    }
    const auto attack = announce(targetKey(), {plainValue(targetId)}, 902)[0];
    CHECK(filter.onInbound(attack, attacker, t0 + 1100s) == Verdict::drop);
    CHECK(filter.onInbound(attack, attacker, t0 + 1161s) == Verdict::pass);
    // A refresh of an unknown pair creates nothing.
    filter.onOutbound(refresh(targetKey(), targetId + 5, 903), honest, t0);
    CHECK(filter.trackedValues() == 0);
}

TEST_CASE("state stays within its limits and fails closed", "[dht_filter]") {
    DhtPacketFilter::Limits limits;
    limits.maxTrackedValues = 4;
    limits.maxTrackedPerHost = 2;
    limits.maxOwnValues = 2;
    limits.maxPendingMessages = 3;
    limits.maxPendingPerHost = 2;
    limits.maxPendingBytes = 4000;
    DhtPacketFilter filter(limits);
    const auto signedPut = [&](dht::Value::Id id, std::uint32_t tid) {
        return announce(targetKey(), {signedValue(id, "v")}, tid);
    };

    SECTION("tracked values per host and in total") {
        CHECK(allPass(feed(filter, signedPut(1, 10), "10.0.0.1:1", t0)));
        CHECK(allPass(feed(filter, signedPut(2, 11), "10.0.0.1:2", t0)));
        // A third signed value from that host cannot be tracked, so it must not reach OpenDHT.
        CHECK(onlyLastDropped(feed(filter, signedPut(3, 12), "10.0.0.1:3", t0)));
        CHECK(allPass(feed(filter, signedPut(3, 13), "10.0.0.2:1", t0)));
        CHECK(allPass(feed(filter, signedPut(4, 14), "10.0.0.3:1", t0)));
        CHECK(onlyLastDropped(feed(filter, signedPut(5, 15), "10.0.0.4:1", t0)));
        CHECK(filter.trackedValues() == 4);
        CHECK(filter.stats().overCapacity == 2);
        // Known values are still refreshed, and room comes back when entries expire.
        CHECK(allPass(feed(filter, signedPut(1, 16), "10.0.0.4:1", t0)));
        CHECK(allPass(feed(filter, signedPut(5, 17), "10.0.0.4:1", t0 + 2h)));
        CHECK(filter.trackedValues() == 1);
    }
    SECTION("own values evict the one expiring first") {
        for (dht::Value::Id id = 1; id <= 3; ++id)
            for (const auto& p : signedPut(id, static_cast<std::uint32_t>(20 + id)))
                filter.onOutbound(p, honest, t0 + std::chrono::seconds(id));
        CHECK(filter.trackedValues() == 2);
        CHECK(filter.onInbound(announce(targetKey(), {plainValue(3)}, 30)[0], attacker, t0 + 5s) ==
              Verdict::drop);
        CHECK(filter.onInbound(announce(targetKey(), {plainValue(1)}, 31)[0], attacker, t0 + 5s) ==
              Verdict::pass);
    }
    SECTION("re-announcing values stored for peers does not push our own values out") {
        CHECK(allPass(feed(filter, signedPut(1, 50), "10.0.0.1:1", t0)));
        for (dht::Value::Id id = 2; id <= 3; ++id)
            for (const auto& p : signedPut(id, static_cast<std::uint32_t>(50 + id)))
                filter.onOutbound(p, honest, t0);
        for (const auto& p : signedPut(1, 54)) // OpenDHT's storage maintenance
            filter.onOutbound(p, honest, t0);
        CHECK(filter.trackedValues() == 3);
        for (dht::Value::Id id = 1; id <= 3; ++id)
            CHECK(filter.onInbound(announce(targetKey(), {plainValue(id)}, 55)[0], attacker,
                                   t0 + 1s) == Verdict::drop);
    }
    SECTION("pending messages and bytes") {
        const auto a = signedPut(1, 40), b = signedPut(2, 41), c = signedPut(3, 42),
                   d = signedPut(4, 43);
        CHECK(filter.onInbound(a[0], "10.0.0.1:1", t0) == Verdict::pass);
        CHECK(filter.onInbound(b[0], "10.0.0.1:1", t0) == Verdict::pass);
        CHECK(filter.onInbound(c[0], "10.0.0.1:1", t0) == Verdict::drop); // per host
        CHECK(filter.onInbound(c[0], "10.0.0.2:1", t0) == Verdict::pass);
        CHECK(filter.onInbound(d[0], "10.0.0.3:1", t0) == Verdict::drop); // in total
        CHECK(filter.pendingMessages() == 3);
        // A header announcing more bytes than the budget is refused.
        const auto big = announce(targetKey(), {plainValue(99, 5000)}, 44);
        CHECK(filter.onInbound(big[0], "10.0.0.4:1", t0) == Verdict::drop);
        // Completing a message frees its slot; abandoned ones go after 30 s.
        CHECK(filter.onInbound(a[1], "10.0.0.1:1", t0) == Verdict::pass);
        CHECK(filter.pendingMessages() == 2);
        CHECK(filter.onInbound(d[0], "10.0.0.3:1", t0 + 31s) == Verdict::pass);
        CHECK(filter.pendingMessages() == 1);
    }
}

TEST_CASE("reassembly follows OpenDHT's rules", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto now = t0 + 1s;
    const auto attack = announce(targetKey(), {plainValue(targetId, 3000)}, 1000);
    REQUIRE(attack.size() == 4);
    SECTION("parts from another address are ignored by OpenDHT") {
        CHECK(filter.onInbound(attack[0], attacker, now) == Verdict::pass);
        CHECK(allPass(feed(filter, {attack[1], attack[2], attack[3]}, honest, now)));
        CHECK(onlyLastDropped(feed(filter, {attack[1], attack[2], attack[3]}, attacker, now)));
    }
    SECTION("parts out of order are skipped, as OpenDHT does") {
        CHECK(allPass(feed(filter, {attack[0], attack[2], attack[3], attack[1]}, attacker, now)));
        CHECK(onlyLastDropped(feed(filter, {attack[2], attack[3]}, attacker, now)));
    }
    SECTION("a second header with a pending tid is dropped") {
        CHECK(filter.onInbound(attack[0], attacker, now) == Verdict::pass);
        CHECK(filter.onInbound(attack[0], attacker, now) == Verdict::drop);
        const auto other = announce(targetKey(), {plainValue(targetId, 700)}, 1000);
        CHECK(filter.onInbound(other[0], honest, now) == Verdict::drop);
    }
    SECTION("parts for an unknown tid pass") {
        CHECK(allPass(feed(filter, {attack[1], attack[2], attack[3]}, attacker, now)));
    }
}

TEST_CASE("ambiguous or malformed datagrams are dropped, never a crash", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    const auto now = t0 + 1s;
    const auto put = [&](auto&& writeArgs, std::size_t argCount) {
        return query("put", 1100, argCount, writeArgs);
    };
    SECTION("duplicate keys") {
        // {"q":"ping", ..., "q":"put"}: OpenDHT keeps the last one.
        msgpack::sbuffer sb;
        Packer pk(&sb);
        pk.pack_map(3);
        pk.pack(std::string("q"));
        pk.pack(std::string("ping"));
        pk.pack(std::string("a"));
        pk.pack_map(0);
        pk.pack(std::string("q"));
        pk.pack(std::string("put"));
        CHECK(filter.onInbound(toBytes(sb), attacker, now) == Verdict::drop);
        const auto dupValues = put(
            [&](Packer& p, msgpack::sbuffer& b) {
                p.pack(std::string("h"));
                packHash(p, targetKey());
                p.pack(std::string("values"));
                p.pack_array(0);
                p.pack(std::string("values"));
                p.pack_array(1);
                const auto v = plainValue(targetId);
                b.write(reinterpret_cast<const char*>(v.data()), v.size());
            },
            3);
        CHECK(filter.onInbound(dupValues, attacker, now) == Verdict::drop);
    }
    SECTION("wrong types where OpenDHT converts") {
        const auto badHash = put(
            [](Packer& p, msgpack::sbuffer&) {
                p.pack(std::string("h"));
                p.pack(std::string("not a hash"));
            },
            1);
        CHECK(filter.onInbound(badHash, attacker, now) == Verdict::drop);
        const auto badValues = put(
            [](Packer& p, msgpack::sbuffer&) {
                p.pack(std::string("values"));
                p.pack(5);
            },
            1);
        CHECK(filter.onInbound(badValues, attacker, now) == Verdict::drop);
    }
    SECTION("not msgpack, not a map, truncated") {
        CHECK(filter.onInbound(Bytes{}, attacker, now) == Verdict::drop);
        CHECK(filter.onInbound(Bytes{0xc1}, attacker, now) == Verdict::drop);
        CHECK(filter.onInbound(Bytes{0x91, 0x01}, attacker, now) == Verdict::drop);
        auto truncated = announce(targetKey(), {plainValue(targetId)}, 1101)[0];
        truncated.resize(truncated.size() / 2);
        CHECK(filter.onInbound(truncated, attacker, now) == Verdict::drop);
    }
    SECTION("huge declared lengths") {
        CHECK(filter.onInbound(Bytes{0xdd, 0xff, 0xff, 0xff, 0xff}, attacker, now) ==
              Verdict::drop);
        CHECK(filter.onInbound(Bytes{0xdf, 0xff, 0xff, 0xff, 0xff}, attacker, now) ==
              Verdict::drop);
        CHECK(filter.onInbound(Bytes{0xc6, 0xff, 0xff, 0xff, 0xff}, attacker, now) ==
              Verdict::drop);
        Bytes deep(100000, 0x91);
        deep.push_back(0x01);
        CHECK(filter.onInbound(deep, attacker, now) == Verdict::drop); // an array, not a map
    }
    CHECK(filter.stats().malformed == filter.stats().dropped);
    // The signed value is still protected.
    CHECK(filter.onInbound(announce(targetKey(), {plainValue(targetId)}, 1102)[0], attacker, now) ==
          Verdict::drop);
}

TEST_CASE("two other datagrams that crash OpenDHT 2.4.12 are dropped", "[dht_filter]") {
    DhtPacketFilter filter;
    const auto withRequest = [](const std::string& key, auto&& writeRequest) {
        msgpack::sbuffer sb;
        Packer pk(&sb);
        pk.pack_map(4);
        pk.pack(key);
        writeRequest(pk);
        if (key == "a") {
            pk.pack(std::string("q"));
            pk.pack(std::string("ping"));
        } else {
            pk.pack(std::string("v"));
            pk.pack(std::string("RNG1"));
        }
        pk.pack(std::string("t"));
        pk.pack(7u);
        pk.pack(std::string("y"));
        pk.pack(key == "a" ? std::string("q") : std::string("r"));
        return toBytes(sb);
    };
    // ParsedMessage walks "a" (or "r", "u") as a map: an integer there is a wild pointer.
    CHECK(filter.onInbound(withRequest("a", [](Packer& pk) { pk.pack(0xffffffffu); }), attacker,
                           t0) == Verdict::drop);
    CHECK(filter.onInbound(withRequest("r", [](Packer& pk) { pk.pack_array(0); }), attacker, t0) ==
          Verdict::drop);
    // ... and divides by the size of the "fileds" selection.
    const auto fields = [](unsigned count) {
        return [count](Packer& pk) {
            pk.pack_map(2);
            pk.pack(std::string("id"));
            packHash(pk, dht::InfoHash::get("replier"));
            pk.pack(std::string("fileds"));
            pk.pack_map(2);
            pk.pack(std::string("f"));
            pk.pack_array(count);
            for (unsigned i = 0; i < count; ++i)
                pk.pack(1u); // Value::Field::Id
            pk.pack(std::string("v"));
            pk.pack_array(count);
            for (unsigned i = 0; i < count; ++i)
                pk.pack(42u);
        };
    };
    CHECK(filter.onInbound(withRequest("r", fields(0)), attacker, t0) == Verdict::drop);
    CHECK(filter.onInbound(withRequest("r", fields(1)), attacker, t0) == Verdict::pass);
    CHECK(filter.stats().dropped == 3);
}

TEST_CASE("random and mutated datagrams never trip the filter", "[dht_filter]") {
    auto filter = filterWithSignedValue();
    std::mt19937 rng(1234);
    std::vector<Bytes> seeds = announce(targetKey(), {plainValue(targetId, 3000)}, 1200);
    for (auto& p : announce(targetKey(), {signedValue(7, "s")}, 1201))
        seeds.push_back(p);
    seeds.push_back(refresh(targetKey(), targetId, 1202));
    auto now = t0;
    for (int round = 0; round < 3000; ++round) {
        Bytes packet;
        if (round % 4 == 0) {
            packet.resize(rng() % 200);
            for (auto& b : packet)
                b = static_cast<std::uint8_t>(rng());
        } else {
            packet = seeds[rng() % seeds.size()];
            const int flips = 1 + static_cast<int>(rng() % 4);
            for (int f = 0; f < flips && !packet.empty(); ++f)
                packet[rng() % packet.size()] = static_cast<std::uint8_t>(rng());
            if (rng() % 8 == 0)
                packet.resize(rng() % (packet.size() + 1));
        }
        const std::string peer = "10.0.0." + std::to_string(rng() % 4) + ":1";
        now += std::chrono::milliseconds(rng() % 2000);
        (void)filter.onInbound(packet, peer, now);
        filter.onOutbound(packet, peer, now);
    }
    CHECK(filter.stats().inspected == 3000 + 2);
}
