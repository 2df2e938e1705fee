// DhtPacketFilter implementation. It mirrors the parts of OpenDHT 2.4.12's wire handling that
// decide whether Dht::onAnnounce runs (src/parsed_message.h: ParsedMessage::msgpack_unpack,
// append, complete; src/network_engine.cpp: processMessage, packValueHeader, sendValueParts;
// src/value.cpp: Value::msgpack_unpack), checked against datagrams captured from the Debian 12
// library. Where our model of OpenDHT could be wrong, the rule is: an inbound datagram we cannot
// follow exactly is dropped, and our state may only ever know more than OpenDHT, never less.
#include "dht_packet_filter.h"

#include <algorithm>
#include <array>
#include <compare>
#include <limits>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace parley::dht {
namespace {

using TimePoint = DhtPacketFilter::Clock::time_point;
using InfoHash = std::array<std::uint8_t, 20>;
using Bytes = std::span<const std::uint8_t>;

// ParsedMessage ignores a value announced by size above MAX_VALUE_SIZE + 32.
constexpr std::uint64_t maxPartTotal = 64 * 1024 + 32;
// OpenDHT forgets a partial message 10 s after its header (RX_MAX_PACKET_TIME). Ours live longer
// so that OpenDHT never holds a partial put we have forgotten, even when its loop runs late.
constexpr std::chrono::seconds pendingLifetime{30};
// ValueType::USER_DATA: TypeStore::getType falls back to it for unknown types.
constexpr std::chrono::seconds defaultLifetime{600};

struct PairKey {
    InfoHash key;
    std::uint64_t id;
    auto operator<=>(const PairKey&) const = default;
};

// A value of a put message as far as the crash is concerned.
struct ValueInfo {
    std::uint64_t id = 0;
    std::uint16_t type = 0;
    bool hasOwner = false;
};

struct HostUse {
    std::size_t tracked = 0;
    std::size_t pending = 0;
};
using HostTable = std::map<std::string, HostUse, std::less<>>;

struct Tracked {
    TimePoint expiry;
    std::uint16_t type = 0;
    bool own = false;
    HostTable::iterator host; // meaningful only when !own
};

struct PartBuffer {
    std::uint32_t total = 0;
    std::vector<std::uint8_t> data;
};

struct Pending {
    std::string peer;
    HostTable::iterator host; // inbound only
    InfoHash key{};
    std::vector<ValueInfo> inlineValues;
    // std::map: ParsedMessage::complete() appends part values in index order.
    std::map<unsigned, PartBuffer> parts;
    TimePoint expiry;
    std::size_t charge = 0; // bytes counted against maxPendingBytes
};

struct Chunk {
    std::uint32_t offset = 0;
    Bytes data;
};

enum class Kind { other, put, refresh, valueData, rejected };

struct Envelope {
    Kind kind = Kind::rejected;
    bool tidExact = true;
    std::uint32_t tid = 0; // ParsedMessage's default when "t" is absent
    const msgpack::object* args = nullptr;
    const msgpack::object* parts = nullptr;
};

struct PutHeader {
    InfoHash key{};
    std::vector<ValueInfo> inlineValues;
    std::map<unsigned, std::uint32_t> partTotals;
};

std::string_view keyName(const msgpack::object& key) {
    return {key.via.str.ptr, key.via.str.size};
}

// msgpack-cxx converts both STR and BIN to std::string.
std::optional<std::string_view> textOf(const msgpack::object& o) {
    if (o.type == msgpack::type::STR)
        return std::string_view{o.via.str.ptr, o.via.str.size};
    if (o.type == msgpack::type::BIN)
        return std::string_view{o.via.bin.ptr, o.via.bin.size};
    return std::nullopt;
}

// dht::findMapValue: the first entry whose key is a STR equal to `name`. Caller checks MAP.
const msgpack::object* findFirst(const msgpack::object& map, std::string_view name) {
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR && keyName(kv.key) == name)
            return &kv.val;
    }
    return nullptr;
}

// Unpacks the first object of `bytes` like OpenDHT does (trailing bytes ignored). The limits
// only refuse sizes that cannot fit in `bytes` anyway, so that a tiny datagram declaring a huge
// array cannot make us allocate for it; OpenDHT would fail on such input as well.
std::optional<msgpack::object_handle> unpackFirst(Bytes bytes) {
    const std::size_t n = bytes.size();
    if (n == 0)
        return std::nullopt;
    const msgpack::unpack_limit limit(n, n, n, n, n, n);
    try {
        return msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), n, nullptr, nullptr,
                               limit);
    } catch (const std::bad_alloc&) {
        throw; // not a verdict on the bytes: the caller fails closed
    } catch (...) {
        return std::nullopt;
    }
}

// Value::msgpack_unpack, reduced to what the crash needs. Returns nothing only where OpenDHT
// throws (the value is then skipped, or the whole message aborted for parts); elsewhere it is
// more lenient than OpenDHT, which can only make us drop or learn more.
std::optional<ValueInfo> classifyValue(const msgpack::object& o) {
    if (o.type != msgpack::type::MAP)
        return std::nullopt;
    const auto* id = findFirst(o, "id");
    if (!id || id->type != msgpack::type::POSITIVE_INTEGER)
        return std::nullopt;
    const auto* dat = findFirst(o, "dat");
    if (!dat)
        return std::nullopt;
    ValueInfo info;
    info.id = id->via.u64;
    if (dat->type == msgpack::type::BIN)
        return info; // encrypted: only a cypher, no owner
    if (dat->type != msgpack::type::MAP)
        return std::nullopt;
    const auto* body = findFirst(*dat, "body");
    if (!body || body->type != msgpack::type::MAP)
        return std::nullopt;
    if (const auto* type = findFirst(*body, "type");
        type && type->type == msgpack::type::POSITIVE_INTEGER && type->via.u64 <= 0xffff)
        info.type = static_cast<std::uint16_t>(type->via.u64);
    // OpenDHT sets `owner` exactly when the body has a STR key "owner" (or rejects the value).
    info.hasOwner = findFirst(*body, "owner") != nullptr;
    return info;
}

// Other remote crashes of OpenDHT 2.4.12 found while studying the parser (checked against the
// library): a request object that is not a map (see readEnvelope), and a "fileds" entry whose
// "f" list is empty, which ParsedMessage divides by (SIGFPE). No legitimate message has either.
bool requestIsSafe(const msgpack::object& request) {
    if (request.type != msgpack::type::MAP)
        return false;
    for (std::uint32_t i = 0; i < request.via.map.size; ++i) {
        const auto& kv = request.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR || keyName(kv.key) != "fileds" ||
            kv.val.type != msgpack::type::MAP)
            continue;
        const auto* f = findFirst(kv.val, "f");
        if (f && f->type == msgpack::type::ARRAY && f->via.array.size == 0)
            return false;
    }
    return true;
}

// ParsedMessage::msgpack_unpack's top level: message kind, tid, and the conversions that make
// OpenDHT reject the whole datagram.
Envelope readEnvelope(const msgpack::object& root) {
    Envelope env;
    if (root.type != msgpack::type::MAP)
        return env;
    const msgpack::object *y = nullptr, *r = nullptr, *u = nullptr, *e = nullptr, *p = nullptr,
                          *t = nullptr, *q = nullptr, *a = nullptr, *v = nullptr, *n = nullptr,
                          *s = nullptr;
    const std::pair<std::string_view, const msgpack::object**> slots[] = {
        {"y", &y}, {"r", &r}, {"u", &u}, {"e", &e}, {"p", &p}, {"t", &t},
        {"q", &q}, {"a", &a}, {"v", &v}, {"n", &n}, {"s", &s}};
    bool unknownKey = false;
    for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
        const auto& kv = root.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) {
            unknownKey = true; // OpenDHT skips it
            continue;
        }
        const auto name = keyName(kv.key);
        const auto slot = std::find_if(std::begin(slots), std::end(slots),
                                       [&](const auto& sl) { return sl.first == name; });
        if (slot == std::end(slots)) {
            unknownKey = true;
            continue;
        }
        // OpenDHT keeps the last duplicate, findMapValue-based releases the first: never guess.
        if (*slot->second)
            return env;
        *slot->second = &kv.val;
    }

    // ParsedMessage walks its request object (a, else r, else u, else e) as a map without
    // checking its type: {"a": 4294967295} makes 2.4.12 read through a wild pointer and crash.
    const bool valueData = p && !e && !r;
    if (!valueData) {
        const msgpack::object* request = a ? a : r ? r : u ? u : e;
        if (request && request != e && !requestIsSafe(*request))
            return env;
    }

    const bool relevant =
        !e && !r &&
        (p || (!u && q && textOf(*q) && (*textOf(*q) == "put" || *textOf(*q) == "refresh")));
    if (!relevant) {
        env.kind = Kind::other; // cannot reach onAnnounce nor feed a partial put
        return env;
    }
    if (t) {
        if (t->type == msgpack::type::POSITIVE_INTEGER) {
            if (t->via.u64 > std::numeric_limits<std::uint32_t>::max())
                return env;
            env.tid = static_cast<std::uint32_t>(t->via.u64);
        } else if (const auto raw = textOf(*t)) {
            if (raw->size() > 4)
                return env;
            if (raw->size() == 4) {
                // unpackTid: ntohl of the 4 bytes
                env.tid = 0;
                for (unsigned char c : *raw)
                    env.tid = (env.tid << 8) | c;
            } else {
                env.tidExact = false; // OpenDHT reads bytes past the string
            }
        } else {
            return env;
        }
    }
    if (v && !textOf(*v))
        return env;
    if (n && (n->type != msgpack::type::POSITIVE_INTEGER ||
              n->via.u64 > std::numeric_limits<std::uint32_t>::max()))
        return env;
    if (s && s->type != msgpack::type::BOOLEAN)
        return env;
    if (q && !textOf(*q))
        return env;
    if (p) {
        // A part we accept but OpenDHT rejects would put our reassembly ahead of OpenDHT's, so
        // keys we do not know make us drop the part. 2.4.12 sends {"n","y","t","p"}.
        if (unknownKey)
            return env;
        env.kind = Kind::valueData;
        env.parts = p;
        return env;
    }
    if (y && textOf(*y) != std::optional<std::string_view>{"q"})
        return env;
    env.kind = *textOf(*q) == "put" ? Kind::put : Kind::refresh;
    env.args = a;
    return env;
}

// The args of a put ("a"): target key "h" and "values", where an element is either a value
// (sent inline) or the size of a value that follows in parts.
std::optional<PutHeader> readPut(const msgpack::object* args) {
    if (!args || args->type != msgpack::type::MAP)
        return std::nullopt;
    const msgpack::object* h = nullptr;
    const msgpack::object* values = nullptr;
    for (std::uint32_t i = 0; i < args->via.map.size; ++i) {
        const auto& kv = args->via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR)
            continue;
        const auto name = keyName(kv.key);
        const msgpack::object** slot = name == "h" ? &h : name == "values" ? &values : nullptr;
        if (!slot)
            continue;
        if (*slot)
            return std::nullopt; // duplicate: see readEnvelope
        *slot = &kv.val;
    }
    PutHeader put;
    if (h) {
        if (h->type != msgpack::type::BIN || h->via.bin.size != put.key.size())
            return std::nullopt; // InfoHash::msgpack_unpack throws
        std::copy_n(reinterpret_cast<const std::uint8_t*>(h->via.bin.ptr), put.key.size(),
                    put.key.begin());
    }
    if (!values)
        return put;
    if (values->type != msgpack::type::ARRAY)
        return std::nullopt;
    for (std::uint32_t i = 0; i < values->via.array.size; ++i) {
        const auto& elem = values->via.array.ptr[i];
        if (elem.type == msgpack::type::POSITIVE_INTEGER) {
            if (elem.via.u64 <= maxPartTotal)
                put.partTotals.emplace(i, static_cast<std::uint32_t>(elem.via.u64));
            continue;
        }
        if (auto info = classifyValue(elem))
            put.inlineValues.push_back(*info);
    }
    return put;
}

// The "p" map of a value-part datagram: {index: {"o": offset, "d": bytes}}. Stricter than
// OpenDHT where OpenDHT is lenient (it also takes STR or ARRAY data): such parts are dropped.
std::optional<std::map<unsigned, Chunk>> readChunks(const msgpack::object& p) {
    if (p.type != msgpack::type::MAP)
        return std::nullopt;
    std::map<unsigned, Chunk> chunks;
    for (std::uint32_t i = 0; i < p.via.map.size; ++i) {
        const auto& kv = p.via.map.ptr[i];
        if (kv.key.type != msgpack::type::POSITIVE_INTEGER ||
            kv.key.via.u64 > std::numeric_limits<unsigned>::max() ||
            kv.val.type != msgpack::type::MAP)
            return std::nullopt;
        const auto* o = findFirst(kv.val, "o");
        const auto* d = findFirst(kv.val, "d");
        if (!o || !d)
            continue;
        if (o->type != msgpack::type::POSITIVE_INTEGER || d->type != msgpack::type::BIN)
            return std::nullopt;
        // value_parts holds the offset as `unsigned`: OpenDHT truncates it, so do we.
        chunks.emplace(
            static_cast<unsigned>(kv.key.via.u64),
            Chunk{static_cast<std::uint32_t>(o->via.u64),
                  Bytes{reinterpret_cast<const std::uint8_t*>(d->via.bin.ptr), d->via.bin.size}});
    }
    return chunks;
}

std::optional<std::pair<InfoHash, std::uint64_t>> readRefresh(const msgpack::object* args) {
    if (!args || args->type != msgpack::type::MAP)
        return std::nullopt;
    const auto* h = findFirst(*args, "h");
    const auto* vid = findFirst(*args, "vid");
    if (!h || !vid || h->type != msgpack::type::BIN || h->via.bin.size != 20 ||
        vid->type != msgpack::type::POSITIVE_INTEGER)
        return std::nullopt;
    InfoHash key;
    std::copy_n(reinterpret_cast<const std::uint8_t*>(h->via.bin.ptr), key.size(), key.begin());
    return std::pair{key, vid->via.u64};
}

// "127.0.0.1:4222" -> "127.0.0.1", "[::1]:4222" -> "::1": quotas are per host, not per port.
std::string_view hostOf(std::string_view peer) {
    if (!peer.empty() && peer.front() == '[') {
        const auto close = peer.find(']');
        return close == std::string_view::npos ? peer : peer.substr(1, close - 1);
    }
    const auto colon = peer.rfind(':');
    if (colon == std::string_view::npos || peer.find(':') != colon)
        return peer; // no port, or a bare IPv6 address
    return peer.substr(0, colon);
}

// Result of appending one part datagram to a pending message, before it is committed.
struct AppendPlan {
    std::map<unsigned, Bytes> appended; // index -> data to append
    bool complete = false;
    std::size_t newCharge = 0;
};

// ParsedMessage::append + complete(): a chunk is taken only at the current end of a part that
// is not yet full; the message is complete when every part holds at least its announced size.
AppendPlan planAppend(const Pending& pending, const std::map<unsigned, Chunk>& chunks) {
    AppendPlan plan;
    for (const auto& [index, chunk] : chunks) {
        const auto part = pending.parts.find(index);
        if (part == pending.parts.end() || part->second.data.size() >= part->second.total ||
            chunk.offset != part->second.data.size())
            continue;
        plan.appended.emplace(index, chunk.data);
    }
    if (plan.appended.empty())
        return plan;
    std::size_t buffered = 0;
    plan.complete = true;
    for (const auto& [index, part] : pending.parts) {
        const auto add = plan.appended.find(index);
        const std::size_t size =
            part.data.size() + (add == plan.appended.end() ? 0 : add->second.size());
        buffered += size;
        if (size < part.total)
            plan.complete = false;
    }
    plan.newCharge = std::max(pending.charge, buffered);
    return plan;
}

// The values OpenDHT hands to onAnnounce once the message completes: inline ones first, then
// one per part in index order. Nothing when OpenDHT's complete() would throw (it then processes
// no value at all).
std::optional<std::vector<ValueInfo>> completedValues(const Pending& pending,
                                                      const AppendPlan& plan) {
    std::vector<ValueInfo> values = pending.inlineValues;
    std::vector<std::uint8_t> joined;
    for (const auto& [index, part] : pending.parts) {
        Bytes bytes{part.data};
        if (const auto add = plan.appended.find(index); add != plan.appended.end()) {
            joined.assign(part.data.begin(), part.data.end());
            joined.insert(joined.end(), add->second.begin(), add->second.end());
            bytes = Bytes{joined};
        }
        const auto handle = unpackFirst(bytes);
        if (!handle)
            return std::nullopt;
        const auto info = classifyValue(handle->get());
        if (!info)
            return std::nullopt;
        values.push_back(*info);
    }
    return values;
}

void commitAppend(Pending& pending, const AppendPlan& plan) {
    for (const auto& [index, data] : plan.appended) {
        auto& buffer = pending.parts.at(index).data;
        buffer.insert(buffer.end(), data.begin(), data.end());
    }
}

// Pending messages with expiry order; Key is the tid inbound (OpenDHT keys partial messages by
// tid alone) and (tid, peer) outbound.
template <typename Key> struct PendingTable {
    std::map<Key, Pending> byKey;
    std::set<std::pair<TimePoint, Key>> byExpiry;
    std::size_t bytes = 0;

    typename std::map<Key, Pending>::iterator insert(const Key& key, Pending pending) {
        bytes += pending.charge;
        byExpiry.emplace(pending.expiry, key);
        return byKey.emplace(key, std::move(pending)).first;
    }
    template <typename OnErase>
    void erase(typename std::map<Key, Pending>::iterator it, OnErase&& onErase) {
        bytes -= it->second.charge;
        byExpiry.erase({it->second.expiry, it->first});
        onErase(it->second);
        byKey.erase(it);
    }
    template <typename OnErase> void eraseOldest(OnErase&& onErase) {
        erase(byKey.find(byExpiry.begin()->second), onErase);
    }
    template <typename OnErase> void purge(TimePoint now, OnErase&& onErase) {
        while (!byExpiry.empty() && byExpiry.begin()->first <= now)
            eraseOldest(onErase);
    }
};

} // namespace

struct DhtPacketFilter::State {
    Limits limits;
    Stats stats;
    std::map<std::uint16_t, std::chrono::seconds> lifetimes{
        {0, std::chrono::seconds(600)},  {1, std::chrono::seconds(300)},
        {2, std::chrono::seconds(900)},  {3, std::chrono::seconds(300)},
        {4, std::chrono::hours(24 * 7)}, {5, std::chrono::seconds(60)},
        {8, std::chrono::hours(24 * 7)}}; // 8: SecureDht's CERTIFICATE_TYPE

    // std::map rather than a hash table: keys and ids are chosen by peers.
    std::map<PairKey, Tracked> tracked;
    std::set<std::pair<TimePoint, PairKey>> peerExpiry;
    std::set<std::pair<TimePoint, PairKey>> ownExpiry;
    std::size_t peerCount = 0;
    HostTable hosts;

    PendingTable<std::uint32_t> inbound;
    PendingTable<std::pair<std::uint32_t, std::string>> outbound;

    explicit State(Limits l) : limits(l) {}

    TimePoint expiryFor(std::uint16_t type, TimePoint now) const {
        const auto it = lifetimes.find(type);
        return now + (it == lifetimes.end() ? defaultLifetime : it->second) + limits.expiryMargin;
    }

    void releaseHost(HostTable::iterator host) {
        if (host->second.tracked == 0 && host->second.pending == 0)
            hosts.erase(host);
    }

    void eraseTracked(std::map<PairKey, Tracked>::iterator it) {
        auto& entry = it->second;
        if (entry.own) {
            ownExpiry.erase({entry.expiry, it->first});
        } else {
            peerExpiry.erase({entry.expiry, it->first});
            --peerCount;
            --entry.host->second.tracked;
            releaseHost(entry.host);
        }
        tracked.erase(it);
    }

    void setExpiry(std::map<PairKey, Tracked>::iterator it, TimePoint expiry) {
        auto& set = it->second.own ? ownExpiry : peerExpiry;
        set.erase({it->second.expiry, it->first});
        it->second.expiry = expiry;
        set.emplace(expiry, it->first);
    }

    void extend(std::map<PairKey, Tracked>::iterator it, std::uint16_t type, TimePoint now) {
        it->second.type = type;
        setExpiry(it, std::max(it->second.expiry, expiryFor(type, now)));
    }

    void purge(TimePoint now) {
        while (!peerExpiry.empty() && peerExpiry.begin()->first <= now)
            eraseTracked(tracked.find(peerExpiry.begin()->second));
        while (!ownExpiry.empty() && ownExpiry.begin()->first <= now)
            eraseTracked(tracked.find(ownExpiry.begin()->second));
        inbound.purge(now, [this](Pending& p) { releasePending(p); });
        outbound.purge(now, [](Pending&) {});
    }

    void releasePending(Pending& pending) {
        --pending.host->second.pending;
        releaseHost(pending.host);
    }

    // Dht::onAnnounce handles values in order: a signed value earlier in the same message is
    // already stored when an owner-less one with its id follows.
    bool collides(const InfoHash& key, const std::vector<ValueInfo>& values) const {
        std::vector<std::uint64_t> signedHere;
        for (const auto& value : values) {
            if (value.hasOwner) {
                signedHere.push_back(value.id);
                continue;
            }
            if (tracked.count(PairKey{key, value.id}) ||
                std::find(signedHere.begin(), signedHere.end(), value.id) != signedHere.end())
                return true;
        }
        return false;
    }

    // Learns the signed values of an inbound message that is about to pass. False when there is
    // no room: the caller then drops the datagram, so OpenDHT cannot store what we would forget.
    bool learnFromPeer(const InfoHash& key, const std::vector<ValueInfo>& values,
                       std::string_view peer, TimePoint now) {
        std::vector<const ValueInfo*> fresh;
        for (const auto& value : values) {
            if (!value.hasOwner || tracked.count(PairKey{key, value.id}))
                continue;
            if (std::none_of(fresh.begin(), fresh.end(),
                             [&](const ValueInfo* f) { return f->id == value.id; }))
                fresh.push_back(&value);
        }
        const auto hostName = hostOf(peer);
        auto host = hosts.find(hostName);
        const std::size_t hostTracked = host == hosts.end() ? 0 : host->second.tracked;
        if (peerCount + fresh.size() > limits.maxTrackedValues ||
            hostTracked + fresh.size() > limits.maxTrackedPerHost)
            return false;
        if (!fresh.empty() && host == hosts.end())
            host = hosts.emplace(std::string(hostName), HostUse{}).first;
        for (const auto& value : values) {
            if (!value.hasOwner)
                continue;
            const PairKey pair{key, value.id};
            if (auto it = tracked.find(pair); it != tracked.end()) {
                extend(it, value.type, now);
                continue;
            }
            const auto expiry = expiryFor(value.type, now);
            tracked.emplace(pair, Tracked{expiry, value.type, false, host});
            peerExpiry.emplace(expiry, pair);
            ++peerCount;
            ++host->second.tracked;
            ++stats.tracked;
        }
        return true;
    }

    // Our own announces: we store these values locally as well. Outbound traffic cannot be
    // dropped, so room is made by evicting our own entry that expires first. A pair already
    // learned from a peer stays a peer entry: OpenDHT re-announces what it stores for others,
    // and those must not push our own values out.
    void learnOwn(const InfoHash& key, const std::vector<ValueInfo>& values, TimePoint now) {
        for (const auto& value : values) {
            if (!value.hasOwner)
                continue;
            const PairKey pair{key, value.id};
            if (auto it = tracked.find(pair); it != tracked.end()) {
                extend(it, value.type, now);
                continue;
            }
            if (limits.maxOwnValues == 0)
                continue;
            while (ownExpiry.size() >= limits.maxOwnValues)
                eraseTracked(tracked.find(ownExpiry.begin()->second));
            const auto expiry = expiryFor(value.type, now);
            tracked.emplace(pair, Tracked{expiry, value.type, true, {}});
            ownExpiry.emplace(expiry, pair);
            ++stats.tracked;
        }
    }

    void refresh(const msgpack::object* args, TimePoint now) {
        if (const auto target = readRefresh(args)) {
            if (auto it = tracked.find(PairKey{target->first, target->second}); it != tracked.end())
                extend(it, it->second.type, now);
        }
    }

    Verdict drop() {
        ++stats.dropped;
        return Verdict::drop;
    }
    Verdict malformed() {
        ++stats.malformed;
        return drop();
    }
    Verdict full() {
        ++stats.overCapacity;
        return drop();
    }

    Verdict inboundPut(const Envelope& env, std::string_view peer, TimePoint now) {
        auto put = readPut(env.args);
        if (!put)
            return malformed();
        if (put->partTotals.empty()) {
            if (collides(put->key, put->inlineValues)) {
                ++stats.collisions;
                return drop();
            }
            return learnFromPeer(put->key, put->inlineValues, peer, now) ? Verdict::pass : full();
        }
        // Values follow in parts: nothing reaches onAnnounce before the message completes.
        if (!env.tidExact)
            return malformed();
        if (inbound.byKey.count(env.tid))
            return drop(); // OpenDHT ignores a second header with a pending tid
        std::size_t declared = 0;
        for (const auto& [index, total] : put->partTotals)
            declared += total;
        const auto hostName = hostOf(peer);
        auto host = hosts.find(hostName);
        if (inbound.byKey.size() >= limits.maxPendingMessages ||
            (host != hosts.end() && host->second.pending >= limits.maxPendingPerHost) ||
            inbound.bytes + declared > limits.maxPendingBytes)
            return full();
        if (host == hosts.end())
            host = hosts.emplace(std::string(hostName), HostUse{}).first;
        ++host->second.pending;
        Pending pending;
        pending.peer = std::string(peer);
        pending.host = host;
        pending.key = put->key;
        pending.inlineValues = std::move(put->inlineValues);
        for (const auto& [index, total] : put->partTotals)
            pending.parts.emplace(index, PartBuffer{total, {}});
        pending.expiry = now + pendingLifetime;
        pending.charge = declared;
        inbound.insert(env.tid, std::move(pending));
        return Verdict::pass;
    }

    Verdict inboundValueData(const Envelope& env, std::string_view peer, TimePoint now) {
        if (!env.tidExact)
            return malformed();
        const auto chunks = readChunks(*env.parts);
        if (!chunks)
            return malformed();
        const auto it = inbound.byKey.find(env.tid);
        // No partial put with this tid, or parts from another address: OpenDHT ignores those
        // for puts (a reply's or listen update's parts may be waiting, which we let through).
        if (it == inbound.byKey.end() || it->second.peer != peer)
            return Verdict::pass;
        auto& pending = it->second;
        const auto plan = planAppend(pending, *chunks);
        if (plan.appended.empty())
            return Verdict::pass;
        if (inbound.bytes - pending.charge + plan.newCharge > limits.maxPendingBytes)
            return full();
        if (!plan.complete) {
            commitAppend(pending, plan);
            inbound.bytes += plan.newCharge - pending.charge;
            pending.charge = plan.newCharge;
            return Verdict::pass;
        }
        const auto values = completedValues(pending, plan);
        if (values) {
            if (collides(pending.key, *values)) {
                ++stats.collisions;
                return drop(); // OpenDHT keeps the incomplete message until it expires
            }
            if (!learnFromPeer(pending.key, *values, peer, now))
                return full();
        }
        // Complete: OpenDHT processes the message (or throws on a bad part) and is done with it.
        inbound.erase(it, [this](Pending& p) { releasePending(p); });
        return Verdict::pass;
    }

    void outboundPut(const Envelope& env, std::string_view peer, TimePoint now) {
        auto put = readPut(env.args);
        if (!put)
            return;
        if (put->partTotals.empty()) {
            learnOwn(put->key, put->inlineValues, now);
            return;
        }
        std::pair<std::uint32_t, std::string> key{env.tid, std::string(peer)};
        if (const auto old = outbound.byKey.find(key); old != outbound.byKey.end())
            outbound.erase(old, [](Pending&) {});
        std::size_t declared = 0;
        for (const auto& [index, total] : put->partTotals)
            declared += total;
        if (declared > limits.maxPendingBytes || limits.maxPendingMessages == 0)
            return;
        // Our parts follow their header at once, so the oldest entry is the one to give up.
        while (outbound.byKey.size() >= limits.maxPendingMessages ||
               outbound.bytes + declared > limits.maxPendingBytes)
            outbound.eraseOldest([](Pending&) {});
        Pending pending;
        pending.peer = key.second;
        pending.key = put->key;
        pending.inlineValues = std::move(put->inlineValues);
        for (const auto& [index, total] : put->partTotals)
            pending.parts.emplace(index, PartBuffer{total, {}});
        pending.expiry = now + pendingLifetime;
        pending.charge = declared;
        outbound.insert(key, std::move(pending));
    }

    void outboundValueData(const Envelope& env, std::string_view peer, TimePoint now) {
        const auto chunks = readChunks(*env.parts);
        if (!env.tidExact || !chunks)
            return;
        const auto it = outbound.byKey.find({env.tid, std::string(peer)});
        if (it == outbound.byKey.end())
            return;
        const auto plan = planAppend(it->second, *chunks);
        if (plan.appended.empty())
            return;
        if (!plan.complete) {
            if (outbound.bytes - it->second.charge + plan.newCharge > limits.maxPendingBytes) {
                outbound.erase(it, [](Pending&) {});
                return;
            }
            commitAppend(it->second, plan);
            outbound.bytes += plan.newCharge - it->second.charge;
            it->second.charge = plan.newCharge;
            return;
        }
        if (const auto values = completedValues(it->second, plan))
            learnOwn(it->second.key, *values, now);
        outbound.erase(it, [](Pending&) {});
    }
};

DhtPacketFilter::DhtPacketFilter() : DhtPacketFilter(Limits{}) {}
DhtPacketFilter::DhtPacketFilter(Limits limits) : state_(std::make_unique<State>(limits)) {}
DhtPacketFilter::~DhtPacketFilter() = default;
DhtPacketFilter::DhtPacketFilter(DhtPacketFilter&&) noexcept = default;
DhtPacketFilter& DhtPacketFilter::operator=(DhtPacketFilter&&) noexcept = default;

void DhtPacketFilter::setTypeLifetime(std::uint16_t type, std::chrono::seconds lifetime) {
    state_->lifetimes[type] = lifetime;
}

void DhtPacketFilter::onOutbound(std::span<const std::uint8_t> packet, std::string_view peer,
                                 Clock::time_point now) noexcept {
    auto& st = *state_;
    try {
        st.purge(now);
        const auto handle = unpackFirst(packet);
        if (!handle)
            return;
        const auto env = readEnvelope(handle->get());
        switch (env.kind) {
        case Kind::put:
            st.outboundPut(env, peer, now);
            break;
        case Kind::refresh:
            st.refresh(env.args, now);
            break;
        case Kind::valueData:
            st.outboundValueData(env, peer, now);
            break;
        case Kind::other:
        case Kind::rejected:
            break;
        }
    } catch (...) {
        // Out of memory while learning: nothing sensible to do for a datagram already sent.
        ++st.stats.malformed;
    }
}

DhtPacketFilter::Verdict DhtPacketFilter::onInbound(std::span<const std::uint8_t> packet,
                                                    std::string_view peer,
                                                    Clock::time_point now) noexcept {
    auto& st = *state_;
    ++st.stats.inspected;
    try {
        st.purge(now);
        // OpenDHT rejects whatever msgpack cannot unpack into a map, so dropping it loses
        // nothing and leaves no room for our parser and OpenDHT's to disagree.
        const auto handle = unpackFirst(packet);
        if (!handle)
            return st.malformed();
        const auto env = readEnvelope(handle->get());
        switch (env.kind) {
        case Kind::other:
            return Verdict::pass;
        case Kind::refresh:
            st.refresh(env.args, now);
            return Verdict::pass;
        case Kind::put:
            return st.inboundPut(env, peer, now);
        case Kind::valueData:
            return st.inboundValueData(env, peer, now);
        case Kind::rejected:
            return st.malformed(); // OpenDHT rejects it too
        }
        return st.malformed();
    } catch (...) {
        return st.full(); // out of memory: fail closed
    }
}

const DhtPacketFilter::Stats& DhtPacketFilter::stats() const {
    return state_->stats;
}

void DhtPacketFilter::trackOwnSignedValue(std::span<const std::uint8_t, 20> key,
                                          std::uint64_t valueId, std::uint16_t type,
                                          Clock::time_point now) noexcept {
    try {
        InfoHash hash{};
        std::copy(key.begin(), key.end(), hash.begin());
        state_->learnOwn(hash, {ValueInfo{valueId, type, true}}, now);
    } catch (const std::exception&) {
        // Out of memory: nothing sensible to do.
    }
}

std::size_t DhtPacketFilter::trackedValues() const {
    return state_->tracked.size();
}

std::size_t DhtPacketFilter::pendingMessages() const {
    return state_->inbound.byKey.size();
}

} // namespace parley::dht
