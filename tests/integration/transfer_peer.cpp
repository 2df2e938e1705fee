// The shared support of the crafted-peer transfer tests: see transfer_peer.h.
#include "integration/transfer_peer.h"

#include "node/transfer/scan.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <malloc.h>
#include <random>
#include <system_error>
#include <unistd.h>

// ASan's live heap (without its quarantine of freed blocks); absent without ASan.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes() __attribute__((weak));

namespace parley::test::transfer_peer {

using namespace std::chrono_literals;

namespace {

Key keyOf(const Handle& h) {
    return {h.link, h.stream};
}

} // namespace

// --- memory ----------------------------------------------------------------------------

std::uint64_t rssBytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t heapBytes() {
    if (&__sanitizer_get_current_allocated_bytes != nullptr) // under ASan
        return __sanitizer_get_current_allocated_bytes();
    auto m = ::mallinfo2();
    return m.uordblks + m.hblkhd;
}

bool underAsan() {
    return &__sanitizer_get_current_allocated_bytes != nullptr;
}

// --- nodes -----------------------------------------------------------------------------

test::TestNode startNode(test::TestNetwork& net, const dht::Identity& who,
                         node::TransferOptions transferOptions) {
    test::TestNode t;
    t.dir = std::make_unique<test::TempDir>();
    node::NodeOptions options;
    options.profileDir = t.dir->path;
    options.controlSocket = false;
    options.overlay.bindAddress = "127.0.0.1";
    options.overlay.port = 0;
    options.overlay.network = net.id;
    options.overlay.bootstrap = {net.seed.address()};
    options.overlay.lanDiscovery = false;
    options.overlay.publicBootstrap = false;
    options.overlay.nodesFile = (t.dir->path / "nodes.txt").string();
    options.overlay.name = who.name();
    options.presencePoll = std::chrono::seconds(2);
    options.transfers = std::move(transferOptions);
    t.node = std::make_unique<node::Node>(options, who);
    t.node->start();
    REQUIRE(test::waitDhtConnected(*t.node));
    return t;
}

node::TransferOptions noTransfers() {
    node::TransferOptions o;
    o.enabled = false;
    return o;
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

tr::ManifestEntry fileEntry(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    tr::ManifestEntry e;
    e.path = path;
    e.mode = 0640;
    e.mtimeNs = 1'600'000'000'123'456'789LL;
    e.size = bytes.size();
    e.chunkSize = tr::chooseChunkSize(bytes.size());
    for (std::uint64_t at = 0; at < bytes.size(); at += e.chunkSize) {
        auto n = std::min<std::uint64_t>(e.chunkSize, bytes.size() - at);
        e.hashes.push_back(tr::sha256(std::span<const std::uint8_t>(bytes).subspan(at, n)));
    }
    return e;
}

std::vector<std::uint8_t> chunkOf(const std::vector<std::uint8_t>& bytes,
                                  const tr::ManifestEntry& e, std::uint32_t chunk) {
    auto at = std::uint64_t{chunk} * e.chunkSize;
    auto n = e.chunkLength(chunk);
    return {bytes.begin() + static_cast<std::ptrdiff_t>(at),
            bytes.begin() + static_cast<std::ptrdiff_t>(at + n)};
}

std::string readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> partials(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::exists(dir, ec))
        return out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.path().filename().string().find(".parley-part") != std::string::npos)
            out.push_back(e.path());
    return out;
}

// --- the crafted peer ------------------------------------------------------------------

bool Crafted::registerTypes() {
    auto self = shared_from_this();
    auto handler = [self](int type) {
        Links::StreamHandler h;
        h.opened = [self, type](const Handle& handle, std::span<const std::uint8_t> streamId) {
            self->onOpened(type, handle, streamId);
        };
        h.data = [self, type](const Handle& handle, std::span<const std::uint8_t> data, bool fin) {
            self->onData(type, handle, data, fin);
        };
        h.writable = [self](const Handle& handle) { self->onWritable(handle); };
        h.closed = [self, type](const Handle& handle) { self->onClosed(type, handle); };
        return h;
    };
    return links().registerStreamType(tr::kOfferStream, handler(tr::kOfferStream)) &&
           links().registerStreamType(tr::kControlStream, handler(tr::kControlStream)) &&
           links().registerStreamType(tr::kChunkStream, handler(tr::kChunkStream));
}

bool Crafted::offer() {
    auto opened = links().openStream(peer_, tr::kOfferStream, id);
    if (opened.error != Links::StreamError::ok)
        return false;
    offer_ = opened.handle;
    ours_.insert(keyOf(offer_));
    pumpOffer();
    return true;
}

void Crafted::fetch() {
    if (!manifest)
        return;
    while (fetching_.size() < maxStreams && nextFile_ < manifest->entries.size()) {
        const auto& e = manifest->entries[nextFile_];
        if (e.folder || nextChunk_ >= e.chunks()) {
            ++nextFile_;
            nextChunk_ = 0;
            continue;
        }
        auto opened = links().openStream(peer_, tr::kChunkStream, incomingId);
        if (opened.error != Links::StreamError::ok) {
            ++openFailures;
            return;
        }
        std::vector<std::uint8_t> request;
        tr::encodeChunkRequest({nextFile_, nextChunk_}, request);
        links().writeStream(opened.handle, request, true);
        ours_.insert(keyOf(opened.handle));
        fetching_[keyOf(opened.handle)] = Fetch{opened.handle, 0};
        mostOpen = std::max(mostOpen, fetching_.size());
        ++nextChunk_;
    }
}

void Crafted::consumeSome(std::uint64_t budget) {
    for (auto& [key, f] : fetching_) {
        if (budget == 0)
            break;
        auto n = std::min(budget, f.owed);
        if (n == 0)
            continue;
        links().consumeStream(f.handle, n);
        f.owed -= n;
        consumed += n;
        budget -= n;
    }
}

void Crafted::sayAccepted() {
    auto opened = links().openStream(peer_, tr::kControlStream, incomingId);
    if (opened.error != Links::StreamError::ok)
        return;
    ours_.insert(keyOf(opened.handle));
    std::vector<std::uint8_t> bytes;
    tr::encodeControl({tr::Op::accepted, {}}, bytes);
    links().writeStream(opened.handle, bytes, true);
}

void Crafted::pumpOffer() {
    auto queued = links().writeStream(offer_, {});
    while (offerSent < offerBytes.size() && queued < kMiB) {
        auto n = std::min<std::size_t>(256 * 1024, offerBytes.size() - offerSent);
        bool last = offerSent + n == offerBytes.size();
        queued = links().writeStream(
            offer_, std::span<const std::uint8_t>(offerBytes).subspan(offerSent, n), last);
        offerSent += n;
        if (queued == 0 && !last) {
            violations.push_back("the offer stream went before it was written");
            return;
        }
    }
}

void Crafted::onOpened(int type, const Handle& h, std::span<const std::uint8_t> streamId) {
    if (streamId.size() != 16) {
        violations.push_back("a stream of type " + std::to_string(type) + " with an id of " +
                             std::to_string(streamId.size()) + " bytes");
        links().resetStream(h, 0x201);
        return;
    }
    in_[keyOf(h)];
    handles_[keyOf(h)] = h;
    if (type == tr::kOfferStream)
        std::copy(streamId.begin(), streamId.end(), incomingId.begin());
}

void Crafted::onWritable(const Handle& h) {
    if (ours_.contains(keyOf(h)) && keyOf(h) == keyOf(offer_))
        pumpOffer();
}

void Crafted::onData(int type, const Handle& h, std::span<const std::uint8_t> data, bool fin) {
    auto key = keyOf(h);
    if (ours_.contains(key)) {
        if (type == tr::kOfferStream)
            return onOfferAnswer(h, data, fin);
        if (type == tr::kChunkStream)
            return onChunkData(h, data, fin);
        links().consumeStream(h, data.size()); // a control answer
        return;
    }
    links().consumeStream(h, data.size());
    auto& bytes = in_[key];
    bytes.insert(bytes.end(), data.begin(), data.end());
    if (type == tr::kControlStream && bytes.size() > tr::kMaxControlSize)
        violations.push_back("a control stream over its size");
    if (type == tr::kChunkStream && bytes.size() > tr::kChunkRequestSize)
        violations.push_back("a chunk request over its size");
    if (!fin)
        return;
    if (type == tr::kControlStream) {
        auto message = tr::decodeControl(bytes);
        if (message)
            ops.push_back(*message);
        else
            violations.push_back("a malformed control message");
        std::vector<std::uint8_t> out;
        tr::encodeAnswer({true, {}}, out);
        links().writeStream(h, out, true);
    } else if (type == tr::kChunkStream) {
        auto request = tr::decodeChunkRequest(bytes);
        if (!request) {
            violations.push_back("a malformed chunk request");
            links().resetStream(h, 0x201);
            return;
        }
        requestsSeen.push_back(*request);
        held_.push_back({h, *request});
        serveHeldNow();
    } else if (type == tr::kOfferStream) {
        storeOffer(h, bytes);
    }
    in_.erase(key);
}

void Crafted::serveHeldNow() {
    for (bool progress = true; progress;) {
        progress = false;
        for (std::size_t i = 0; i < held_.size(); ++i) {
            auto request = held_[i].request;
            auto attempt = served[{request.file, request.chunk}] + 1;
            std::optional<std::vector<std::uint8_t>> body;
            if (!reply)
                body = std::vector<std::uint8_t>{};
            else
                body = reply(request.file, request.chunk, attempt);
            if (!body)
                continue;
            auto h = held_[i].handle;
            held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
            served[{request.file, request.chunk}] = attempt;
            std::vector<std::uint8_t> out;
            tr::encodeChunkAnswerPrefix(tr::ChunkStatus::ok, {}, out);
            out.insert(out.end(), body->begin(), body->end());
            links().writeStream(h, out, true);
            progress = true;
            break;
        }
    }
}

void Crafted::onOfferAnswer(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
    links().consumeStream(h, data.size());
    answerBytes_.insert(answerBytes_.end(), data.begin(), data.end());
    if (!fin)
        return;
    sentAtAnswer = offerSent;
    answer = tr::decodeAnswer(answerBytes_);
    answerMalformed = !answer;
}

void Crafted::storeOffer(const Handle& h, const std::vector<std::uint8_t>& bytes) {
    std::string error;
    auto prefix = tr::decodeOfferPrefix(bytes, &error);
    tr::Manifest m;
    auto status = prefix
                      ? tr::decodeManifest(
                            std::span<const std::uint8_t>(bytes).subspan(prefix->manifestOffset), m)
                      : tr::ManifestError::truncated;
    std::vector<std::uint8_t> out;
    if (status == tr::ManifestError::ok) {
        manifest = std::move(m);
        tr::encodeAnswer({true, {}}, out);
    } else {
        offerError = prefix ? std::string(tr::describe(status)) : error;
        tr::encodeAnswer({false, offerError}, out);
    }
    links().writeStream(h, out, true);
}

void Crafted::onChunkData(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
    auto it = fetching_.find(keyOf(h));
    if (it == fetching_.end()) {
        links().consumeStream(h, data.size());
        return;
    }
    received += data.size();
    it->second.owed += data.size();
    if (fin && !it->second.fin) {
        it->second.fin = true;
        ++chunksDone;
    }
}

void Crafted::onClosed(int type, const Handle& h) {
    auto key = keyOf(h);
    in_.erase(key);
    handles_.erase(key);
    ours_.erase(key);
    std::erase_if(held_, [&](const Held& held) { return keyOf(held.handle) == key; });
    if (type == tr::kChunkStream && fetching_.erase(key) && keepFetching)
        fetch();
}

// --- the real node's side --------------------------------------------------------------

std::optional<node::TransferSummary> get(node::Node& n, const tr::TransferId& id) {
    return n.call([&] { return n.transfers().get(id); });
}

std::map<std::string, std::uint64_t> countersOf(node::Node& n) {
    return n.call([&] { return n.transfers().counters(); });
}

std::uint64_t counter(node::Node& n, const std::string& name) {
    auto c = countersOf(n);
    return c.count(name) ? c[name] : 0;
}

std::string describe(node::Node& n, const tr::TransferId& id) {
    std::string out;
    if (auto s = get(n, id))
        out = s->state + " (" + s->reason + ") " + std::to_string(s->doneBytes) + "/" +
              std::to_string(s->totalBytes);
    for (const auto& [k, v] : countersOf(n))
        out += " " + k + "=" + std::to_string(v);
    return out;
}

bool waitState(node::Node& n, const tr::TransferId& id, const std::string& state,
               std::chrono::milliseconds timeout) {
    bool ok = test::eventually(
        [&] {
            auto s = get(n, id);
            return s && s->state == state;
        },
        timeout, 20ms);
    if (!ok)
        UNSCOPED_INFO("waiting for " << state << ": " << describe(n, id));
    return ok;
}

void SenderPair::connect() {
    REQUIRE(test::makeContacts(nc(), craftedId, nr(), realId));
    REQUIRE(nc().ping(realId.contactId(), 1, 0ms, 30s).connected);
    peer = std::make_shared<Crafted>(nc(), realId.contactId());
    REQUIRE(nc().call([&] { return peer->registerTypes(); }));
}

bool SenderPair::offer(const tr::Manifest& m, tr::TransferId id) {
    std::vector<std::uint8_t> bytes;
    tr::encodeOfferPrefix("crafted", bytes);
    tr::encodeManifest(m, bytes);
    bool opened = nc().call([&] {
        peer->id = id;
        peer->offerBytes = std::move(bytes);
        return peer->offer();
    });
    return opened &&
           test::eventually([&] { return nc().call([&] { return peer->answer.has_value(); }); },
                            20s) &&
           nc().call([&] { return peer->answer->ok; });
}

std::map<std::pair<std::uint32_t, std::uint32_t>, int> SenderPair::served() {
    return nc().call([&] { return peer->served; });
}

tr::TransferId transferId(std::uint8_t tag) {
    tr::TransferId id{};
    for (std::size_t i = 0; i < id.size(); ++i)
        id[i] = static_cast<std::uint8_t>(tag * 31 + i * 7 + 1);
    return id;
}

std::string problemOf(const node::TransferSummary& s, const std::string& path) {
    for (const auto& [p, why] : s.problems)
        if (p == path)
            return why;
    return {};
}

} // namespace parley::test::transfer_peer
