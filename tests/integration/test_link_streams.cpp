// The link room's typed bulk streams between two real nodes on loopback (DESIGN.md §6,
// node/link/links.h): 8 MiB echoed on one stream under writeStream's backpressure, a receiver
// that returns no flow-control credit stalling the sender at the stream window, the peer's
// reset of a type it has no room for, resets from either side on a link that stays up, and
// every open stream hearing `closed` when the link goes.
//
// The rooms here are test doubles: their callbacks run on their node's thread and only
// record what they saw (no Catch2 macros there); the test reads that through Node::call.
#include "node/link/links.h"
#include "node/link/stream_router.h"
#include "node/transport/quic.h"
#include "support/test_support.h"

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <gnutls/crypto.h>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace parley;
using namespace std::chrono_literals;

namespace {

using Links = node::LinkManager;
using Handle = Links::StreamHandle;
using StreamError = Links::StreamError;
using node::link::StreamType;

constexpr StreamType kEcho = 0x51;          // registered on both nodes
constexpr StreamType kNobody = 0x52;        // registered on A only
constexpr StreamType kNowhere = 0x53;       // registered on neither
constexpr std::size_t kChunk = 64 << 10;    // one writeStream call
constexpr std::size_t kHighWater = 1 << 20; // a writer waits for `writable` above this

std::vector<std::uint8_t> bytesOf(std::string_view s) {
    return {s.begin(), s.end()};
}

std::vector<std::uint8_t> pseudoRandom(std::size_t size, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::uint8_t> out(size);
    for (std::size_t i = 0; i < size; i += 8) {
        auto v = rng();
        for (std::size_t j = 0; j < 8 && i + j < size; ++j)
            out[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
    }
    return out;
}

// Hex SHA-256; empty when GnuTLS fails (no Catch2 macro: this also runs on node threads).
std::string sha256(std::span<const std::uint8_t> data) {
    std::array<std::uint8_t, 32> digest{};
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data.data(), data.size(), digest.data()) != 0)
        return {};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (auto b : digest) {
        out += kHex[b >> 4];
        out += kHex[b & 0xf];
    }
    return out;
}

const char* errorName(StreamError e) {
    switch (e) {
    case StreamError::ok:
        return "ok";
    case StreamError::noLink:
        return "noLink";
    case StreamError::unregistered:
        return "unregistered";
    case StreamError::badHeader:
        return "badHeader";
    case StreamError::tooManyStreams:
        return "tooManyStreams";
    }
    return "?";
}

// One stream as a room saw it.
struct Stream {
    Handle handle;
    bool peerOpened = false; // through `opened`, not our openStream
    std::vector<std::uint8_t> id;
    std::vector<std::uint8_t> received;
    bool fin = false;
    int closed = 0; // `closed` calls
    std::size_t consumed = 0;
    std::size_t writable = 0; // `writable` calls
    // What we send: `out` from `sent` on, then FIN once `outFin`.
    std::vector<std::uint8_t> out;
    std::size_t sent = 0;
    bool outFin = false;
    bool finWritten = false;
    std::size_t maxQueued = 0; // the most writeStream ever reported
    bool refused = false;      // writeStream took bytes and reported nothing queued
    bool resetByUs = false;    // the room reset it from `opened` (resetOnOpen)
};

// What the test reads of a stream (no 8 MiB copies through Node::call).
struct Seen {
    bool exists = false;
    Handle handle;
    bool peerOpened = false;
    std::string id;
    std::size_t received = 0;
    std::string receivedSha; // when asked for
    bool fin = false;
    int closed = 0;
    std::size_t consumed = 0, writable = 0, sent = 0, maxQueued = 0;
    bool finWritten = false, refused = false;
};

// A room for the test's stream types on one node. Only touched on that node's thread.
class Room : public std::enable_shared_from_this<Room> {
public:
    explicit Room(node::Node& n) : node_(&n) {}

    bool consume = true;      // return credit for `data` at once
    bool echo = false;        // send back what arrives
    bool answerFin = true;    // end our direction (after any echo) once the peer ended theirs
    bool resetOnOpen = false; // reset every stream the peer opens, from inside `opened`
    bool throwOnData = false; // `data` throws (a room with a bug)
    int dataCalls = 0;
    int opened = 0;                      // `opened` calls
    int closedCalls = 0;                 // `closed` calls
    std::vector<std::string> violations; // callbacks that break links.h's contract
    std::map<std::pair<std::uint64_t, std::int64_t>, Stream> streams;

    Links& links() { return node_->links(); }

    Links::StreamHandler handler() {
        auto self = shared_from_this();
        Links::StreamHandler h;
        h.opened = [self](const Handle& handle, std::span<const std::uint8_t> id) {
            self->onOpened(handle, id);
        };
        h.data = [self](const Handle& handle, std::span<const std::uint8_t> data, bool fin) {
            self->onData(handle, data, fin);
        };
        h.writable = [self](const Handle& handle) { self->onWritable(handle); };
        h.closed = [self](const Handle& handle) { self->onClosed(handle); };
        return h;
    }

    Stream* find(const Handle& h) {
        auto it = streams.find(key(h));
        return it == streams.end() ? nullptr : &it->second;
    }
    Stream* byId(std::string_view id) {
        for (auto& [k, s] : streams)
            if (std::string(s.id.begin(), s.id.end()) == id)
                return &s;
        return nullptr;
    }

    Links::OpenedStream open(const dht::ContactId& peer, StreamType type,
                             const std::vector<std::uint8_t>& id) {
        auto o = links().openStream(peer, type, id);
        if (o.error == StreamError::ok) {
            auto& s = streams[key(o.handle)];
            s.handle = o.handle;
            s.id = id;
        }
        return o;
    }

    // Queues `data` (FIN after it when `fin`) behind what waits already, and writes.
    void send(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
        auto* s = find(h);
        if (!s)
            return;
        s->out.insert(s->out.end(), data.begin(), data.end());
        s->outFin = s->outFin || fin;
        pump(*s);
    }

    // Writes what waits in chunks while writeStream reports less than kHighWater bytes
    // queued; the rest goes from `writable` (or the next `data`). LinkManager has no call that
    // just reports the queue: writeStream with nothing to add does.
    void pump(Stream& s) {
        if (s.finWritten)
            return;
        auto queued = links().writeStream(s.handle, {});
        while (!s.finWritten && queued < kHighWater) {
            auto n = std::min(kChunk, s.out.size() - s.sent);
            bool last = s.outFin && s.sent + n == s.out.size();
            if (n == 0 && !last)
                return;
            queued = links().writeStream(s.handle, std::span(s.out).subspan(s.sent, n), last);
            s.sent += n;
            s.finWritten = last;
            s.maxQueued = std::max(s.maxQueued, queued);
            if (n > 0 && queued == 0) {
                s.refused = true;
                return;
            }
        }
    }

    Seen seen(const Stream* s, bool hash) const {
        Seen v;
        if (!s)
            return v;
        v.exists = true;
        v.handle = s->handle;
        v.peerOpened = s->peerOpened;
        v.id.assign(s->id.begin(), s->id.end());
        v.received = s->received.size();
        if (hash)
            v.receivedSha = sha256(s->received);
        v.fin = s->fin;
        v.closed = s->closed;
        v.consumed = s->consumed;
        v.writable = s->writable;
        v.sent = s->sent;
        v.maxQueued = s->maxQueued;
        v.finWritten = s->finWritten;
        v.refused = s->refused;
        return v;
    }

private:
    static std::pair<std::uint64_t, std::int64_t> key(const Handle& h) {
        return {h.link, h.stream};
    }

    void onOpened(const Handle& h, std::span<const std::uint8_t> id) {
        ++opened;
        if (streams.count(key(h)))
            violations.push_back("opened for a stream already known");
        auto& s = streams[key(h)];
        s.handle = h;
        s.peerOpened = true;
        s.id.assign(id.begin(), id.end());
        if (resetOnOpen) {
            links().resetStream(h, 0x99);
            s.resetByUs = true;
        }
    }

    void onData(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
        auto* s = find(h);
        if (!s) {
            violations.push_back("data before opened");
            return;
        }
        if (s->closed)
            violations.push_back("data after closed");
        if (s->fin)
            violations.push_back("data after FIN");
        if (s->resetByUs)
            violations.push_back("data after the room reset the stream");
        ++dataCalls;
        if (throwOnData)
            throw std::runtime_error("this room has a bug");
        s->received.insert(s->received.end(), data.begin(), data.end());
        s->fin = s->fin || fin;
        if (consume && !data.empty()) {
            links().consumeStream(h, data.size());
            s->consumed += data.size();
        }
        if (echo)
            s->out.insert(s->out.end(), data.begin(), data.end());
        if (fin && answerFin)
            s->outFin = true;
        pump(*s);
    }

    void onWritable(const Handle& h) {
        auto* s = find(h);
        if (!s) {
            violations.push_back("writable for an unknown stream");
            return;
        }
        if (s->closed)
            violations.push_back("writable after closed");
        ++s->writable;
        pump(*s);
    }

    void onClosed(const Handle& h) {
        ++closedCalls;
        auto* s = find(h);
        if (!s) {
            violations.push_back("closed for an unknown stream");
            return;
        }
        if (s->closed)
            violations.push_back("closed twice");
        ++s->closed;
    }

    node::Node* node_;
};

// Two contacts on one loopback network, each with a room; link() sets up the direct link.
struct Pair {
    test::TestNetwork net;
    dht::Identity aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    test::TestNode a = net.start(aId), b = net.start(bId);
    std::shared_ptr<Room> roomA = std::make_shared<Room>(*a.node);
    std::shared_ptr<Room> roomB = std::make_shared<Room>(*b.node);

    node::Node& na() { return *a.node; }
    node::Node& nb() { return *b.node; }
    dht::ContactId idA() const { return aId.contactId(); }
    dht::ContactId idB() const { return bId.contactId(); }

    void link() {
        REQUIRE(test::makeContacts(na(), aId, nb(), bId));
        auto ping = na().ping(idB(), 1, 0ms, 30s);
        INFO(ping.error);
        REQUIRE(ping.connected);
    }
    bool registerOn(node::Node& n, Room& room, StreamType type) {
        return n.call([&] { return n.links().registerStreamType(type, room.handler()); });
    }
};

Seen look(node::Node& n, Room& room, const Handle& h, bool hash = false) {
    return n.call([&] { return room.seen(room.find(h), hash); });
}

Seen lookId(node::Node& n, Room& room, std::string_view id, bool hash = false) {
    return n.call([&] { return room.seen(room.byId(id), hash); });
}

std::vector<std::string> violations(node::Node& n, Room& room) {
    return n.call([&] { return room.violations; });
}

std::uint64_t linkCount(node::Node& n, const std::string& name) {
    auto c = n.call([&] { return n.links().counters(); });
    return c.count(name) ? c[name] : 0;
}

bool linked(node::Node& n, const dht::ContactId& peer) {
    return n.call([&] { return n.links().connected(peer); });
}

StreamError tryOpen(node::Node& n, const dht::ContactId& peer, StreamType type,
                    const std::vector<std::uint8_t>& id) {
    return n.call([&] { return n.links().openStream(peer, type, id).error; });
}

// Opens a stream of `type` from `n`'s room to `to` and queues `data` (then FIN when `fin`).
Links::OpenedStream openAndSend(node::Node& n, Room& room, const dht::ContactId& to,
                                std::string_view id, const std::vector<std::uint8_t>& data,
                                bool fin, StreamType type = kEcho) {
    return n.call([&] {
        auto o = room.open(to, type, bytesOf(id));
        if (o.error == StreamError::ok)
            room.send(o.handle, data, fin);
        return o;
    });
}

// writeStream, consumeStream and resetStream on a handle that should be spent: returns what
// writeStream reported (0 expected); the other two must do nothing.
std::size_t poke(node::Node& n, const Handle& h) {
    return n.call([&] {
        auto& links = n.links();
        std::vector<std::uint8_t> junk(100, 0xee);
        auto queued = links.writeStream(h, junk, true);
        links.consumeStream(h, 1000);
        links.resetStream(h, 0x77);
        return queued;
    });
}

double secondsSince(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

TEST_CASE("link streams: a typed stream carries 8 MiB from A to B intact, in both directions",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    // A type has one room; type 0 is reserved.
    CHECK_FALSE(a.call([&] { return a.links().registerStreamType(kEcho, {}); }));
    CHECK_FALSE(a.call([&] { return a.links().registerStreamType(0, {}); }));
    b.call([&] {
        p.roomB->echo = true;
        return 0;
    });

    constexpr std::size_t kSize = 8 << 20;
    auto seed = std::random_device{}();
    INFO("payload seed " << seed);
    auto payload = pseudoRandom(kSize, seed);
    auto payloadSha = sha256(payload);
    REQUIRE(!payloadSha.empty());

    auto started = std::chrono::steady_clock::now();
    auto opened = openAndSend(a, *p.roomA, p.idB(), "transfer-1", payload, true);
    INFO("openStream: " << errorName(opened.error));
    REQUIRE(opened.error == StreamError::ok);
    auto h = opened.handle;
    CHECK(h.peer == p.idB());

    // A hears the echo end and the stream close; B's copy closes too.
    REQUIRE(test::eventually(
        [&] {
            auto mine = look(a, *p.roomA, h);
            auto theirs = lookId(b, *p.roomB, "transfer-1");
            return mine.fin && mine.closed > 0 && theirs.closed > 0;
        },
        60s));
    auto elapsed = secondsSince(started);

    auto mine = look(a, *p.roomA, h, true);
    auto theirs = lookId(b, *p.roomB, "transfer-1", true);
    INFO("8 MiB each way in " << elapsed << " s ("
                              << 2.0 * static_cast<double>(kSize) / (1 << 20) / elapsed
                              << " MiB/s both directions together); A wrote with up to "
                              << mine.maxQueued << " bytes queued and " << mine.writable
                              << " writable calls; B echoed with up to " << theirs.maxQueued
                              << " queued and " << theirs.writable << " writable calls");
    // B: one stream, the right id, every byte in order, credit returned for all of it.
    CHECK(b.call([&] { return p.roomB->opened; }) == 1);
    REQUIRE(theirs.exists);
    CHECK(theirs.peerOpened);
    CHECK(theirs.id == "transfer-1");
    CHECK(theirs.handle.peer == p.idA());
    CHECK(theirs.received == kSize);
    CHECK(theirs.receivedSha == payloadSha);
    CHECK(theirs.fin);
    CHECK(theirs.consumed == kSize);
    CHECK(theirs.sent == kSize);
    CHECK(theirs.finWritten);
    CHECK_FALSE(theirs.refused);
    CHECK(theirs.closed == 1);
    // A: the echo, intact; its writer kept below the high-water mark (plus the chunk that
    // crossed it and the header) and needed `writable` to go on.
    CHECK_FALSE(mine.peerOpened);
    CHECK(mine.received == kSize);
    CHECK(mine.receivedSha == payloadSha);
    CHECK(mine.consumed == kSize);
    CHECK(mine.sent == kSize);
    CHECK(mine.finWritten);
    CHECK_FALSE(mine.refused);
    CHECK(mine.closed == 1);
    CHECK(mine.writable > 0);
    CHECK(mine.maxQueued <= kHighWater + kChunk + node::link::kMaxStreamHeaderSize);
    CHECK(theirs.maxQueued <= kHighWater + kChunk);
    CHECK(a.call([&] { return p.roomA->opened; }) == 0);
    CHECK(linkCount(a, "streams_opened") == 1);
    CHECK(linkCount(b, "streams_accepted") == 1);
    CHECK(linkCount(b, "unknown_streams") == 0);

    // Closed: the handles are spent on both sides, the link is still there.
    CHECK(poke(a, h) == 0);
    CHECK(poke(b, theirs.handle) == 0);
    CHECK(linked(a, p.idB()));
    CHECK(look(a, *p.roomA, h).closed == 1);
    CHECK(violations(a, *p.roomA).empty());
    CHECK(violations(b, *p.roomB).empty());
}

TEST_CASE("link streams: a receiver that does not consume stops the sender at the window",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    b.call([&] {
        p.roomB->consume = false;
        return 0;
    });
    // The node's transport config is the default one (Node::Impl::startTransport); a stream
    // whose reader returns no credit keeps its initial window (ngtcp2 auto-tunes it only as
    // credit comes back). The connection's window (4x) is not the limit here.
    const std::size_t window = node::quic::TransportConfig{}.streamWindow;

    constexpr std::size_t kSize = 4 << 20;
    auto seed = std::random_device{}();
    INFO("payload seed " << seed);
    auto payload = pseudoRandom(kSize, seed);
    auto id = bytesOf("stall-1");
    const std::size_t header = node::link::kStreamHeaderFixedSize + id.size();

    auto opened = a.call([&] {
        auto o = p.roomA->open(p.idB(), kEcho, id);
        if (o.error == StreamError::ok)
            p.roomA->send(o.handle, payload, true);
        return o;
    });
    INFO("openStream: " << errorName(opened.error));
    REQUIRE(opened.error == StreamError::ok);
    auto h = opened.handle;

    // B's window fills: the header's bytes (the link's credit, returned at once but too few
    // for a MAX_STREAM_DATA) plus the data B holds.
    REQUIRE(test::eventually(
        [&] { return lookId(b, *p.roomB, "stall-1").received + header >= window; }, 20s));
    // Three round trips on the control stream of the same link while B holds on: the
    // control stream is not blocked (the connection's window is larger), and nothing more
    // arrives on the stalled stream.
    auto probe = a.ping(p.idB(), 3, 30ms, 10s);
    CHECK(probe.connected);
    CHECK(probe.lost() == 0);
    auto stalled = lookId(b, *p.roomB, "stall-1");
    auto sender = look(a, *p.roomA, h);
    auto queued = a.call([&] { return a.links().writeStream(h, {}); });
    WARN("stalled: B holds " << stalled.received << " data bytes (+" << header
                             << " header bytes) of a " << window << "-byte stream window; A wrote "
                             << sender.sent << " of " << kSize << " bytes, writeStream reports "
                             << queued << " still queued");
    CHECK(stalled.received + header <= window);
    CHECK(stalled.consumed == 0);
    CHECK_FALSE(stalled.fin);
    CHECK(sender.sent < kSize);
    CHECK_FALSE(sender.finWritten);
    CHECK(queued >= kHighWater);
    CHECK(queued <= sender.sent + header);

    // B catches up and consumes from now on: the rest arrives, then both ends close.
    b.call([&] {
        auto* s = p.roomB->byId("stall-1");
        if (s) {
            p.roomB->links().consumeStream(s->handle, s->received.size() - s->consumed);
            s->consumed = s->received.size();
        }
        p.roomB->consume = true;
        return 0;
    });
    REQUIRE(test::eventually(
        [&] {
            auto theirs = lookId(b, *p.roomB, "stall-1");
            return theirs.fin && theirs.closed > 0 && look(a, *p.roomA, h).closed > 0;
        },
        20s));
    auto theirs = lookId(b, *p.roomB, "stall-1", true);
    CHECK(theirs.received == kSize);
    CHECK(theirs.receivedSha == sha256(payload));
    CHECK(theirs.consumed == kSize);
    CHECK(theirs.closed == 1);
    auto mine = look(a, *p.roomA, h);
    CHECK(mine.sent == kSize);
    CHECK(mine.finWritten);
    CHECK(mine.received == 0);
    CHECK(mine.fin);
    CHECK(mine.closed == 1);
    CHECK(violations(a, *p.roomA).empty());
    CHECK(violations(b, *p.roomB).empty());
}

TEST_CASE("link streams: an unregistered type is reset and the opener hears closed",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kNobody)); // B has no room for kNobody
    auto stranger = dht::ContactId::fromBytes(std::vector<std::uint8_t>(32, 0x5a));
    REQUIRE(stranger);

    // Refused locally, before anything goes out.
    auto x = bytesOf("x");
    CHECK(errorName(tryOpen(a, p.idB(), kNowhere, x)) == std::string("unregistered"));
    CHECK(errorName(tryOpen(a, p.idB(), 0, x)) == std::string("badHeader"));
    std::vector<std::uint8_t> tooLong(node::link::kMaxStreamIdSize + 1, 0xab);
    CHECK(errorName(tryOpen(a, p.idB(), kNobody, tooLong)) == std::string("badHeader"));
    CHECK(errorName(tryOpen(a, *stranger, kNobody, x)) == std::string("noLink"));
    CHECK(linkCount(a, "streams_opened") == 0);

    // Two streams of a type B has no room for, one with the longest id allowed: B resets
    // both (unknownType, not malformedHeader) and A hears `closed` for each; the streams
    // carry data but no FIN, so only the reset can end them.
    std::vector<std::uint8_t> longest(node::link::kMaxStreamIdSize, 0xcd);
    auto some = pseudoRandom(1000, 1);
    auto opened = a.call([&] {
        std::vector<Links::OpenedStream> out;
        for (const auto& id : {bytesOf("nobody-home"), longest}) {
            auto o = p.roomA->open(p.idB(), kNobody, id);
            if (o.error == StreamError::ok)
                p.roomA->send(o.handle, some, false);
            out.push_back(o);
        }
        return out;
    });
    REQUIRE(opened.size() == 2);
    for (const auto& o : opened) {
        INFO("openStream: " << errorName(o.error));
        REQUIRE(o.error == StreamError::ok);
    }
    REQUIRE(
        test::eventually([&] { return a.call([&] { return p.roomA->closedCalls; }) == 2; }, 15s));
    for (const auto& o : opened) {
        auto s = look(a, *p.roomA, o.handle);
        CHECK(s.closed == 1);
        CHECK(s.received == 0);
        CHECK_FALSE(s.fin);
        CHECK_FALSE(s.refused);
        CHECK(poke(a, o.handle) == 0);
    }
    CHECK(linkCount(b, "unknown_streams") == 2);
    CHECK(linkCount(b, "malformed_stream_headers") == 0);
    CHECK(linkCount(b, "streams_accepted") == 0);
    CHECK(linkCount(a, "streams_opened") == 2);
    CHECK(a.call([&] { return p.roomA->opened; }) == 0);
    CHECK(violations(a, *p.roomA).empty());
    // Refusing a stream is not a reason to drop the link.
    CHECK(linked(a, p.idB()));
    CHECK(linked(b, p.idA()));
}

TEST_CASE("link streams: resetStream on one side closes the stream on the other, and the link "
          "stays up",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    auto some = pseudoRandom(256 << 10, 2);

    // B resets a stream A opened, once data arrived: A hears `closed`.
    auto first = openAndSend(a, *p.roomA, p.idB(), "reset-by-b", some, false);
    REQUIRE(first.error == StreamError::ok);
    REQUIRE(test::eventually([&] { return lookId(b, *p.roomB, "reset-by-b").received > 0; }, 15s));
    auto bFirst = lookId(b, *p.roomB, "reset-by-b").handle;
    b.call([&] {
        b.links().resetStream(bFirst, 0x4242);
        return 0;
    });
    REQUIRE(test::eventually([&] { return look(a, *p.roomA, first.handle).closed > 0; }, 15s));

    // A resets a stream it opened: B hears `closed`.
    auto second = openAndSend(a, *p.roomA, p.idB(), "reset-by-a", some, false);
    REQUIRE(second.error == StreamError::ok);
    REQUIRE(test::eventually([&] { return lookId(b, *p.roomB, "reset-by-a").received > 0; }, 15s));
    a.call([&] {
        a.links().resetStream(second.handle, 0x4343);
        return 0;
    });
    REQUIRE(test::eventually([&] { return lookId(b, *p.roomB, "reset-by-a").closed > 0; }, 15s));

    // The link is still the same one, pings go both ways over it.
    auto there = a.ping(p.idB(), 2, 10ms, 10s);
    CHECK(there.connected);
    CHECK(there.reused);
    CHECK(there.lost() == 0);
    auto back = b.ping(p.idA(), 2, 10ms, 10s);
    CHECK(back.connected);
    CHECK(back.reused);
    CHECK(back.lost() == 0);
    CHECK(linkCount(a, "links_up") == 1);
    CHECK(linkCount(b, "links_up") == 1);
    CHECK(linkCount(a, "links_down") == 0);

    // Those round trips later, the side that reset heard no `closed` (its handle was spent at
    // once), and the spent handles do nothing.
    CHECK(lookId(b, *p.roomB, "reset-by-b").closed == 0);
    CHECK(look(a, *p.roomA, second.handle).closed == 0);
    CHECK(look(a, *p.roomA, first.handle).closed == 1);
    CHECK(lookId(b, *p.roomB, "reset-by-a").closed == 1);
    CHECK(poke(b, bFirst) == 0);
    CHECK(poke(a, second.handle) == 0);
    CHECK(poke(a, first.handle) == 0);

    // A fresh stream, opened by B this time and echoed by A.
    a.call([&] {
        p.roomA->echo = true;
        return 0;
    });
    auto fresh = pseudoRandom(300 << 10, 3);
    auto third = openAndSend(b, *p.roomB, p.idA(), "fresh", fresh, true);
    INFO("openStream: " << errorName(third.error));
    REQUIRE(third.error == StreamError::ok);
    REQUIRE(test::eventually(
        [&] {
            auto mine = look(b, *p.roomB, third.handle);
            return mine.fin && mine.closed > 0 && lookId(a, *p.roomA, "fresh").closed > 0;
        },
        15s));
    auto echoed = look(b, *p.roomB, third.handle, true);
    CHECK(echoed.received == fresh.size());
    CHECK(echoed.receivedSha == sha256(fresh));
    CHECK(echoed.closed == 1);
    CHECK(lookId(a, *p.roomA, "fresh", true).receivedSha == sha256(fresh));
    CHECK(violations(a, *p.roomA).empty());
    CHECK(violations(b, *p.roomB).empty());
}

TEST_CASE("link streams: when the link closes, every open stream hears closed",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    auto some = pseudoRandom(128 << 10, 4);

    // One stream each way, both mid-transfer (no FIN).
    auto fromA = openAndSend(a, *p.roomA, p.idB(), "doomed-a", some, false);
    auto fromB = openAndSend(b, *p.roomB, p.idA(), "doomed-b", some, false);
    REQUIRE(fromA.error == StreamError::ok);
    REQUIRE(fromB.error == StreamError::ok);
    REQUIRE(test::eventually(
        [&] {
            return lookId(b, *p.roomB, "doomed-a").received == some.size() &&
                   lookId(a, *p.roomA, "doomed-b").received == some.size();
        },
        15s));
    auto bSideOfA = lookId(b, *p.roomB, "doomed-a").handle;
    auto aSideOfB = lookId(a, *p.roomA, "doomed-b").handle;

    // A closes the link. The connection goes on a later turn of A's thread, so a stream
    // opened right after disconnect may still be granted: then it must hear `closed` too.
    auto late = a.call([&] {
        a.links().disconnect(p.idB(), "test: closing the link");
        return p.roomA->open(p.idB(), kEcho, bytesOf("late"));
    });
    INFO("openStream right after disconnect: " << errorName(late.error));
    CHECK((late.error == StreamError::ok || late.error == StreamError::noLink));

    auto allClosed = [](node::Node& n, Room& room) {
        return n.call([&] {
            for (const auto& [k, s] : room.streams)
                if (s.closed == 0)
                    return false;
            return true;
        });
    };
    REQUIRE(
        test::eventually([&] { return allClosed(a, *p.roomA) && allClosed(b, *p.roomB); }, 15s));
    CHECK(look(a, *p.roomA, fromA.handle).closed == 1);
    CHECK(look(a, *p.roomA, aSideOfB).closed == 1);
    CHECK(look(b, *p.roomB, fromB.handle).closed == 1);
    CHECK(look(b, *p.roomB, bSideOfA).closed == 1);
    if (late.error == StreamError::ok)
        CHECK(look(a, *p.roomA, late.handle).closed == 1);
    CHECK(a.call([&] { return p.roomA->closedCalls; }) == (late.error == StreamError::ok ? 3 : 2));
    REQUIRE(test::eventually([&] { return !linked(a, p.idB()) && !linked(b, p.idA()); }, 10s));

    // Stale handles do nothing, on either side, and `closed` does not come again.
    for (const auto& h : {fromA.handle, aSideOfB, late.handle})
        CHECK(poke(a, h) == 0);
    for (const auto& h : {fromB.handle, bSideOfA})
        CHECK(poke(b, h) == 0);
    CHECK(errorName(tryOpen(a, p.idB(), kEcho, bytesOf("x"))) == std::string("noLink"));
    CHECK(errorName(tryOpen(b, p.idA(), kEcho, bytesOf("x"))) == std::string("noLink"));

    // A new link: a fresh stream works on it, and the old handles still do nothing there.
    auto again = a.ping(p.idB(), 1, 0ms, 30s);
    INFO(again.error);
    REQUIRE(again.connected);
    CHECK_FALSE(again.reused);
    b.call([&] {
        p.roomB->echo = true;
        return 0;
    });
    auto after = openAndSend(a, *p.roomA, p.idB(), "after", some, true);
    INFO("openStream on the new link: " << errorName(after.error));
    REQUIRE(after.error == StreamError::ok);
    CHECK(after.handle.link != fromA.handle.link);
    REQUIRE(test::eventually(
        [&] {
            auto mine = look(a, *p.roomA, after.handle);
            return mine.fin && mine.closed > 0 && lookId(b, *p.roomB, "after").closed > 0;
        },
        15s));
    CHECK(look(a, *p.roomA, after.handle, true).receivedSha == sha256(some));
    CHECK(poke(a, fromA.handle) == 0);
    CHECK(poke(b, bSideOfA) == 0);
    CHECK(look(a, *p.roomA, fromA.handle).closed == 1);
    CHECK(look(b, *p.roomB, bSideOfA).closed == 1);
    CHECK(violations(a, *p.roomA).empty());
    CHECK(violations(b, *p.roomB).empty());
}

TEST_CASE("link streams: a room that resets a stream from `opened` hears none of its data",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    b.call([&] {
        p.roomB->resetOnOpen = true;
        return 0;
    });
    // The header and the data travel in one packet, so they reach the link in one piece.
    auto some = pseudoRandom(1000, 5);
    auto o = openAndSend(a, *p.roomA, p.idB(), "unwanted", some, true);
    REQUIRE(o.error == StreamError::ok);
    REQUIRE(test::eventually([&] { return look(a, *p.roomA, o.handle).closed == 1; }, 15s));
    CHECK(b.call([&] { return p.roomB->opened; }) == 1);
    CHECK(b.call([&] { return p.roomB->dataCalls; }) == 0);
    CHECK(lookId(b, *p.roomB, "unwanted").received == 0);
    CHECK(lookId(b, *p.roomB, "unwanted").closed == 0); // its reset spent the handle
    CHECK(violations(b, *p.roomB).empty());
    CHECK(linked(a, p.idB()));
}

TEST_CASE("link streams: credit a room never returned comes back when its stream is reset",
          "[links][streams]") {
    // Six streams of one stream window each (6 MiB in all, more than the connection's 4 MiB
    // window) that B never consumes and then resets: if a reset lost the credit the room
    // held, the fifth stream would stall for good.
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    b.call([&] {
        p.roomB->consume = false;
        p.roomB->answerFin = false;
        return 0;
    });
    for (int i = 0; i < 6; ++i) {
        auto id = "held-" + std::to_string(i);
        // 1 MiB with the header: exactly the stream's window.
        auto data = pseudoRandom((1 << 20) - node::link::kStreamHeaderFixedSize - id.size(),
                                 10 + static_cast<unsigned>(i));
        auto o = openAndSend(a, *p.roomA, p.idB(), id, data, true);
        INFO("stream " << id << ": " << errorName(o.error));
        REQUIRE(o.error == StreamError::ok);
        REQUIRE(test::eventually(
            [&] {
                auto seen = lookId(b, *p.roomB, id);
                return seen.fin && seen.received == data.size();
            },
            15s));
        auto held = lookId(b, *p.roomB, id);
        CHECK(held.consumed == 0);
        b.call([&] {
            b.links().resetStream(held.handle, 0x4444);
            return 0;
        });
        REQUIRE(test::eventually([&] { return look(a, *p.roomA, o.handle).closed == 1; }, 15s));
    }
    CHECK(violations(b, *p.roomB).empty());
    CHECK(linkCount(a, "links_down") == 0);
}

TEST_CASE("link streams: a room whose callback throws hears closed, the link stays up",
          "[links][streams]") {
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    b.call([&] {
        p.roomB->throwOnData = true;
        return 0;
    });
    auto some = pseudoRandom(4000, 6);
    auto o = openAndSend(a, *p.roomA, p.idB(), "buggy", some, false);
    REQUIRE(o.error == StreamError::ok);
    REQUIRE(test::eventually([&] { return lookId(b, *p.roomB, "buggy").closed == 1; }, 15s));
    REQUIRE(test::eventually([&] { return look(a, *p.roomA, o.handle).closed == 1; }, 15s));
    CHECK(linkCount(b, "stream_handler_errors") == 1);
    CHECK(violations(b, *p.roomB).empty());
    auto ping = a.ping(p.idB(), 1, 0ms, 10s);
    CHECK(ping.connected);
    CHECK(ping.reused);
}

TEST_CASE("link streams: a connection carries many more streams over its life than the peer's "
          "limit at once",
          "[links][streams]") {
    // The transport allows 64 bidirectional streams from the peer at a time; each that ends
    // must let the peer open another (ngtcp2 does not raise the limit by itself). 200 streams,
    // each echoed and closed before the next, from both sides.
    Pair p;
    p.link();
    auto &a = p.na(), &b = p.nb();
    REQUIRE(p.registerOn(a, *p.roomA, kEcho));
    REQUIRE(p.registerOn(b, *p.roomB, kEcho));
    a.call([&] {
        p.roomA->echo = true;
        return 0;
    });
    b.call([&] {
        p.roomB->echo = true;
        return 0;
    });
    auto some = pseudoRandom(1000, 5);
    for (int i = 0; i < 200; ++i) {
        bool fromA = i % 2 == 0;
        auto& n = fromA ? a : b;
        auto& room = fromA ? *p.roomA : *p.roomB;
        auto o =
            openAndSend(n, room, fromA ? p.idB() : p.idA(), "s" + std::to_string(i), some, true);
        INFO("stream " << i << ": " << errorName(o.error));
        REQUIRE(o.error == StreamError::ok);
        REQUIRE(test::eventually([&] { return look(n, room, o.handle).closed == 1; }, 15s));
    }
    CHECK(linkCount(a, "links_down") == 0);
}
