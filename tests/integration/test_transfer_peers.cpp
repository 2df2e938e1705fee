// The transfer room against a crafted peer (DESIGN.md §8, node/transfer/): one side is a real
// node, the other a test double written here that speaks the offer, control and chunk streams
// (node/transfer/protocol.h, manifest.h) directly over LinkManager, on a node whose own
// transfer room is off (TransferOptions::enabled). A sender whose chunks fail their hashes,
// one whose chunk answers are too short or too long, one whose late honest answers arrive for
// a file that has already failed, an offer of a million entries, and receivers that return
// their flow-control credit slowly (chunks within the stream window, and larger than it).
//
// The crafted peer's callbacks run on its node's thread and only record what they saw (no
// Catch2 macros there); the test reads it through Node::call.
#include "node/link/links.h"
#include "node/transfer/manifest.h"
#include "node/transfer/protocol.h"
#include "node/transfer/scan.h"
#include "node/transfer/transfers.h"
#include "support/test_support.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <future>
#include <malloc.h>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

// ASan's live heap (without its quarantine of freed blocks); absent without ASan.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes() __attribute__((weak));

using namespace parley;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace tr = node::transfer;

namespace {

using Links = node::LinkManager;
using Handle = Links::StreamHandle;
using Key = std::pair<std::uint64_t, std::int64_t>;
constexpr std::uint64_t kMiB = 1024 * 1024;

Key keyOf(const Handle& h) {
    return {h.link, h.stream};
}

// --- memory ----------------------------------------------------------------------------

std::uint64_t rssBytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Live heap bytes: ASan's count when it runs (RSS under ASan also holds the quarantine of
// freed blocks, up to 256 MiB, which grows with every byte moved), else glibc's.
std::uint64_t heapBytes() {
    if (&__sanitizer_get_current_allocated_bytes != nullptr) // under ASan
        return __sanitizer_get_current_allocated_bytes();
    auto m = ::mallinfo2();
    return m.uordblks + m.hblkhd;
}

bool underAsan() {
    return &__sanitizer_get_current_allocated_bytes != nullptr;
}

double mib(std::uint64_t bytes) {
    return static_cast<double>(bytes) / static_cast<double>(kMiB);
}

std::uint64_t growth(std::uint64_t after, std::uint64_t before) {
    return after > before ? after - before : 0;
}

// --- nodes -----------------------------------------------------------------------------

// Like TestNetwork::start, with the transfer room's options (off for a crafted peer).
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

// A file entry with the true hashes of `bytes`.
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

// Chunk `chunk` of `bytes` as the manifest cuts it.
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

// What the crafted sender answers to a chunk request: the bytes after the ok status (which
// may lie), or nothing yet (held: asked again after every answer it sends).
using Reply = std::function<std::optional<std::vector<std::uint8_t>>(
    std::uint32_t file, std::uint32_t chunk, int attempt)>;

// A transfer peer on a node without a transfer room. As a sender it offers a manifest of its
// own and answers chunk requests with `reply`; as a receiver it stores the offer it gets,
// requests chunks on many streams at once and returns their credit only when told to.
// Touched only on its node's thread.
class Crafted : public std::enable_shared_from_this<Crafted> {
public:
    Crafted(node::Node& n, const dht::ContactId& peer) : node_(&n), peer_(peer) {}

    Links& links() { return node_->links(); }

    bool registerTypes() {
        auto self = shared_from_this();
        auto handler = [self](int type) {
            Links::StreamHandler h;
            h.opened = [self, type](const Handle& handle, std::span<const std::uint8_t> streamId) {
                self->onOpened(type, handle, streamId);
            };
            h.data = [self, type](const Handle& handle, std::span<const std::uint8_t> data,
                                  bool fin) { self->onData(type, handle, data, fin); };
            h.writable = [self](const Handle& handle) { self->onWritable(handle); };
            h.closed = [self, type](const Handle& handle) { self->onClosed(type, handle); };
            return h;
        };
        return links().registerStreamType(tr::kOfferStream, handler(tr::kOfferStream)) &&
               links().registerStreamType(tr::kControlStream, handler(tr::kControlStream)) &&
               links().registerStreamType(tr::kChunkStream, handler(tr::kChunkStream));
    }

    // --- sender role

    tr::TransferId id{};
    Reply reply;
    std::vector<std::uint8_t> offerBytes; // prefix and manifest
    std::size_t offerSent = 0;
    std::size_t sentAtAnswer = 0; // how much of the offer had gone when the answer came
    std::optional<tr::Answer> answer;
    bool answerMalformed = false;
    std::map<std::pair<std::uint32_t, std::uint32_t>, int> served; // answers sent per chunk
    std::vector<tr::ChunkRequest> requestsSeen;
    bool releaseHeld = false; // for a `reply` that holds answers until the test says

    // Opens the offer stream and writes `offerBytes` under writeStream's backpressure.
    bool offer() {
        auto opened = links().openStream(peer_, tr::kOfferStream, id);
        if (opened.error != Links::StreamError::ok)
            return false;
        offer_ = opened.handle;
        ours_.insert(keyOf(offer_));
        pumpOffer();
        return true;
    }

    // --- receiver role

    std::optional<tr::Manifest> manifest;
    tr::TransferId incomingId{};
    std::string offerError;
    std::size_t maxStreams = 64;  // chunk streams open at once, at most
    bool keepFetching = false;    // a new request whenever a chunk stream ends
    std::uint64_t received = 0;   // bytes that arrived on our chunk streams
    std::uint64_t consumed = 0;   // credit returned for them
    std::uint64_t chunksDone = 0; // chunk streams that ended with their fin
    std::size_t openFailures = 0;
    std::size_t mostOpen = 0;

    // Opens chunk streams for the next chunks until maxStreams are open (or the link says no).
    void fetch() {
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

    // Returns up to `budget` bytes of credit over the chunk streams that hold some.
    void consumeSome(std::uint64_t budget) {
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

    // Tells the sender we accepted (control stream, its answer is not waited for).
    void sayAccepted() {
        auto opened = links().openStream(peer_, tr::kControlStream, incomingId);
        if (opened.error != Links::StreamError::ok)
            return;
        ours_.insert(keyOf(opened.handle));
        std::vector<std::uint8_t> bytes;
        tr::encodeControl({tr::Op::accepted, {}}, bytes);
        links().writeStream(opened.handle, bytes, true);
    }

    // --- either role

    void serveHeld() { serveHeldNow(); }

    std::vector<tr::ControlMessage> ops; // control messages the real node sent us
    std::vector<std::string> violations; // what broke the protocol as we read it

private:
    struct Fetch {
        Handle handle;
        std::uint64_t owed = 0; // credit not returned yet
        bool fin = false;
    };
    struct Held {
        Handle handle;
        tr::ChunkRequest request;
    };

    node::Node* node_;
    dht::ContactId peer_;
    std::set<Key> ours_; // streams we opened
    Handle offer_;
    std::vector<std::uint8_t> answerBytes_;
    std::map<Key, std::vector<std::uint8_t>> in_; // what the peer's streams carried so far
    std::map<Key, Handle> handles_;
    std::vector<Held> held_;
    std::map<Key, Fetch> fetching_;
    std::uint32_t nextFile_ = 0, nextChunk_ = 0;

    void pumpOffer() {
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

    void onOpened(int type, const Handle& h, std::span<const std::uint8_t> streamId) {
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

    void onWritable(const Handle& h) {
        if (ours_.contains(keyOf(h)) && keyOf(h) == keyOf(offer_))
            pumpOffer();
    }

    void onData(int type, const Handle& h, std::span<const std::uint8_t> data, bool fin) {
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

    // Answers every held request that `reply` answers now; each answer may release others.
    void serveHeldNow() {
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

    void onOfferAnswer(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
        links().consumeStream(h, data.size());
        answerBytes_.insert(answerBytes_.end(), data.begin(), data.end());
        if (!fin)
            return;
        sentAtAnswer = offerSent;
        answer = tr::decodeAnswer(answerBytes_);
        answerMalformed = !answer;
    }

    // Receiver role: the real sender's offer.
    void storeOffer(const Handle& h, const std::vector<std::uint8_t>& bytes) {
        std::string error;
        auto prefix = tr::decodeOfferPrefix(bytes, &error);
        tr::Manifest m;
        auto status =
            prefix ? tr::decodeManifest(
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

    // Receiver role: a chunk answer. Counted, and its credit held for consumeSome.
    void onChunkData(const Handle& h, std::span<const std::uint8_t> data, bool fin) {
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

    void onClosed(int type, const Handle& h) {
        auto key = keyOf(h);
        in_.erase(key);
        handles_.erase(key);
        ours_.erase(key);
        std::erase_if(held_, [&](const Held& held) { return keyOf(held.handle) == key; });
        if (type == tr::kChunkStream && fetching_.erase(key) && keepFetching)
            fetch();
    }
};

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

// A real receiver and a crafted sender, contacts, with a link up.
struct SenderPair {
    test::TestNetwork net;
    dht::Identity craftedId = test::makeIdentity("mallory"), realId = test::makeIdentity("bob");
    test::TestNode crafted = startNode(net, craftedId, noTransfers());
    test::TestNode real = startNode(net, realId, {});
    test::TempDir files;
    std::shared_ptr<Crafted> peer;

    node::Node& nc() { return *crafted.node; }
    node::Node& nr() { return *real.node; }

    void connect() {
        REQUIRE(test::makeContacts(nc(), craftedId, nr(), realId));
        REQUIRE(nc().ping(realId.contactId(), 1, 0ms, 30s).connected);
        peer = std::make_shared<Crafted>(nc(), realId.contactId());
        REQUIRE(nc().call([&] { return peer->registerTypes(); }));
    }

    // Offers `m` from the crafted sender; true once the real receiver stored it.
    bool offer(const tr::Manifest& m, tr::TransferId id) {
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

    std::map<std::pair<std::uint32_t, std::uint32_t>, int> served() {
        return nc().call([&] { return peer->served; });
    }
};

tr::TransferId transferId(std::uint8_t tag) {
    tr::TransferId id{};
    for (std::size_t i = 0; i < id.size(); ++i)
        id[i] = static_cast<std::uint8_t>(tag * 31 + i * 7 + 1);
    return id;
}

// The reason the summary gives for `path`, or "" when it lists no problem with it.
std::string problemOf(const node::TransferSummary& s, const std::string& path) {
    for (const auto& [p, why] : s.problems)
        if (p == path)
            return why;
    return {};
}

} // namespace

TEST_CASE("a sender whose chunks fail their hashes fails that file only", "[transfers]") {
    SenderPair p;
    p.connect();
    // liar.bin: 5 chunks (the last one short), every answer flipped in one byte; honest.bin: 3.
    auto liar = pseudoRandom(4 * tr::kMinChunkSize + 1000, 1);
    auto honest = pseudoRandom(2 * tr::kMinChunkSize + 77, 2);
    tr::Manifest m;
    m.entries.push_back(fileEntry("liar.bin", liar));
    m.entries.push_back(fileEntry("honest.bin", honest));
    auto liarEntry = m.entries[0], honestEntry = m.entries[1];
    p.nc().call([&] {
        p.peer->reply = [liar, honest, liarEntry,
                         honestEntry](std::uint32_t file, std::uint32_t chunk,
                                      int attempt) -> std::optional<std::vector<std::uint8_t>> {
            if (file == 1)
                return chunkOf(honest, honestEntry, chunk);
            auto bytes = chunkOf(liar, liarEntry, chunk);
            bytes[static_cast<std::size_t>(attempt * 977) % bytes.size()] ^= 0x40;
            return bytes;
        };
        return 0;
    });
    auto id = transferId(1);
    REQUIRE(p.offer(m, id));
    auto dest = p.files.path / "dest";
    auto accepted = p.nr().call([&] { return p.nr().transfers().accept(id, dest); });
    INFO(accepted.error);
    REQUIRE(accepted.ok());
    REQUIRE(waitState(p.nr(), id, "failed", 30s));

    auto s = *get(p.nr(), id);
    INFO(describe(p.nr(), id));
    CHECK(s.reason == "1 file or folder could not be received");
    auto why = problemOf(s, "liar.bin");
    INFO("liar.bin: " << why);
    CHECK(why.find("did not match its hash 3 times") != std::string::npos);
    CHECK(problemOf(s, "honest.bin").empty());
    // The honest file is in place, byte for byte; the other one is not, nor any partial.
    auto honestBytes = readAll(dest / "honest.bin");
    CHECK(honestBytes == std::string(honest.begin(), honest.end()));
    CHECK_FALSE(fs::exists(dest / "liar.bin"));
    CHECK(partials(dest).empty());

    // Each lying chunk was asked for at most 3 times (ReceiveLimits::maxTries), one of them
    // exactly 3 times (the one that failed the file); every honest chunk once.
    auto served = p.served();
    int liarAnswers = 0, most = 0;
    for (std::uint32_t c = 0; c < liarEntry.chunks(); ++c) {
        auto n = served.count({0, c}) ? served[{0, c}] : 0;
        INFO("liar.bin chunk " << c << " answered " << n << " times");
        CHECK(n <= 3);
        liarAnswers += n;
        most = std::max(most, n);
    }
    CHECK(most == 3);
    for (std::uint32_t c = 0; c < honestEntry.chunks(); ++c)
        CHECK(served[{1, c}] == 1);

    auto c = countersOf(p.nr());
    // Verified and found bad: the answers that came while the file was still being received
    // (at least the 3 tries of the chunk that failed it); those after are dropped unverified.
    CHECK(c["chunks_bad"] >= 3);
    CHECK(c["chunks_bad"] <= static_cast<std::uint64_t>(liarAnswers));
    CHECK(c["chunks_fetched"] == honestEntry.chunks());
    CHECK(c["chunk_requests_sent"] ==
          static_cast<std::uint64_t>(liarAnswers) + honestEntry.chunks());
    CHECK(c["chunks_short"] == 0);
    CHECK(c["chunks_oversized"] == 0);

    // The crafted sender heard that it failed, and why.
    REQUIRE(test::eventually(
        [&] {
            return p.nc().call([&] {
                for (const auto& op : p.peer->ops)
                    if (op.op == tr::Op::failed)
                        return true;
                return false;
            });
        },
        10s));
    auto ops = p.nc().call([&] { return p.peer->ops; });
    CHECK(ops.front().op == tr::Op::accepted);
    CHECK(ops.back().op == tr::Op::failed);
    CHECK(ops.back().reason == "1 file or folder could not be received");
    CHECK(p.nc().call([&] { return p.peer->violations; }).empty());
}

TEST_CASE("chunk answers shorter or longer than the manifest says are bad chunks", "[transfers]") {
    SenderPair p;
    p.connect();
    // liar.bin: two full chunks and a last one of 5000 bytes. Its answers start with the right
    // bytes, but stop early or go on past the chunk's length (the last chunk answered as a
    // full-size one), so only the length gives them away.
    auto liar = pseudoRandom(2 * tr::kMinChunkSize + 5000, 3);
    auto honest = pseudoRandom(tr::kMinChunkSize + 1, 4);
    tr::Manifest m;
    m.entries.push_back(fileEntry("liar.bin", liar));
    m.entries.push_back(fileEntry("honest.bin", honest));
    auto liarEntry = m.entries[0], honestEntry = m.entries[1];
    REQUIRE(liarEntry.chunks() == 3);
    REQUIRE(liarEntry.chunkLength(2) == 5000);
    p.nc().call([&] {
        p.peer->reply = [liar, honest, liarEntry,
                         honestEntry](std::uint32_t file, std::uint32_t chunk,
                                      int attempt) -> std::optional<std::vector<std::uint8_t>> {
            if (file == 1)
                return chunkOf(honest, honestEntry, chunk);
            auto bytes = chunkOf(liar, liarEntry, chunk);
            if (chunk == 0) { // short: half, nothing, all but the last byte
                bytes.resize(attempt == 1 ? bytes.size() / 2 : attempt == 2 ? 0 : bytes.size() - 1);
            } else if (chunk == 1) { // long: one byte more, 64 KiB more, 1 MiB more
                bytes.resize(bytes.size() + (attempt == 1 ? 1 : attempt == 2 ? 65536 : kMiB), 0x5a);
            } else { // the last chunk as long as a full one: the next 5000 bytes would be wrong
                bytes.resize(liarEntry.chunkSize, 0);
            }
            return bytes;
        };
        return 0;
    });
    auto id = transferId(2);
    REQUIRE(p.offer(m, id));
    auto dest = p.files.path / "dest";
    REQUIRE(p.nr().call([&] { return p.nr().transfers().accept(id, dest); }).ok());
    REQUIRE(waitState(p.nr(), id, "failed", 30s));

    auto s = *get(p.nr(), id);
    INFO(describe(p.nr(), id));
    CHECK(s.reason == "1 file or folder could not be received");
    auto why = problemOf(s, "liar.bin");
    INFO("liar.bin: " << why);
    CHECK(why.find("did not match its hash 3 times") != std::string::npos);
    CHECK(readAll(dest / "honest.bin") == std::string(honest.begin(), honest.end()));
    CHECK_FALSE(fs::exists(dest / "liar.bin"));
    CHECK(partials(dest).empty());
    // Nothing under the destination is larger than the manifest allows.
    for (const auto& e : fs::recursive_directory_iterator(dest))
        if (e.is_regular_file())
            CHECK(e.file_size() <= honest.size());

    auto served = p.served();
    int shortAnswers = 0, longAnswers = 0, most = 0;
    for (std::uint32_t c = 0; c < liarEntry.chunks(); ++c) {
        auto n = served.count({0, c}) ? served[{0, c}] : 0;
        INFO("liar.bin chunk " << c << " answered " << n << " times");
        CHECK(n <= 3);
        (c == 0 ? shortAnswers : longAnswers) += n;
        most = std::max(most, n);
    }
    CHECK(most == 3);
    auto c = countersOf(p.nr());
    // Refused by their length before any hash or write: none counted as a bad hash.
    CHECK(c["chunks_short"] == static_cast<std::uint64_t>(shortAnswers));
    CHECK(c["chunks_oversized"] == static_cast<std::uint64_t>(longAnswers));
    CHECK(c["chunks_bad"] == 0);
    CHECK(c["chunks_fetched"] == honestEntry.chunks());
    CHECK(p.nc().call([&] { return p.peer->violations; }).empty());
}

// When a file fails (a chunk failed its hash 3 times), the answers of its other requests still
// in flight are dropped: writing them would create the partial file again after the disk
// thread removed it (a hidden .NAME.<id8>.parley-part of the file's full size left behind),
// and they are not counted as fetched.
TEST_CASE("late honest chunks of a file that failed leave no partial file behind", "[transfers]") {
    SenderPair p;
    p.connect();
    // half.bin: chunk 0 always lies; chunks 1 to 3 are honest, but held until the receiver has
    // failed the file (the test releases them then).
    auto half = pseudoRandom(4 * tr::kMinChunkSize, 5);
    auto honest = pseudoRandom(3000, 6);
    tr::Manifest m;
    m.entries.push_back(fileEntry("half.bin", half));
    m.entries.push_back(fileEntry("honest.bin", honest));
    auto halfEntry = m.entries[0], honestEntry = m.entries[1];
    p.nc().call([&] {
        auto* release = &p.peer->releaseHeld;
        p.peer->reply = [half, honest, halfEntry, honestEntry,
                         release](std::uint32_t file, std::uint32_t chunk,
                                  int) -> std::optional<std::vector<std::uint8_t>> {
            if (file == 1)
                return chunkOf(honest, honestEntry, chunk);
            auto bytes = chunkOf(half, halfEntry, chunk);
            if (chunk == 0) {
                bytes[0] ^= 1;
                return bytes;
            }
            if (!*release)
                return std::nullopt; // held
            return bytes;
        };
        return 0;
    });
    auto id = transferId(3);
    REQUIRE(p.offer(m, id));
    auto dest = p.files.path / "dest";
    REQUIRE(p.nr().call([&] { return p.nr().transfers().accept(id, dest); }).ok());
    // Chunk 0 answered 3 times and the file failed on the receiver: now the held ones go.
    REQUIRE(test::eventually(
        [&] {
            auto s = get(p.nr(), id);
            return s && !problemOf(*s, "half.bin").empty();
        },
        20s));
    auto failedAt = get(p.nr(), id)->doneBytes;
    std::this_thread::sleep_for(300ms); // the removal of the partial file, on the disk thread
    p.nc().call([&] {
        p.peer->releaseHeld = true;
        p.peer->serveHeld();
        return 0;
    });
    REQUIRE(waitState(p.nr(), id, "failed", 30s));
    auto s = *get(p.nr(), id);
    INFO(describe(p.nr(), id));
    CHECK(problemOf(s, "half.bin").find("did not match its hash 3 times") != std::string::npos);
    CHECK(readAll(dest / "honest.bin") == std::string(honest.begin(), honest.end()));
    CHECK_FALSE(fs::exists(dest / "half.bin"));
    auto served = p.served();
    CHECK(served[{0, 0}] == 3);
    CHECK(served[{0, 1}] == 1); // the held ones did go, after the failure
    // The late chunks 1 to 3 do not create .half.bin.<id8>.parley-part again.
    std::this_thread::sleep_for(300ms); // the disk thread's last jobs
    auto left = partials(dest);
    for (const auto& part : left)
        UNSCOPED_INFO("left behind: " << part.filename().string() << ", " << fs::file_size(part)
                                      << " bytes");
    CHECK(left.empty());
    // The late chunks are not counted as fetched: their file had failed.
    CHECK(counter(p.nr(), "chunks_fetched") == honestEntry.chunks());
    CHECK(s.doneBytes == failedAt);
}

TEST_CASE("an offer of a million entries is refused with bounded memory", "[transfers]") {
    SenderPair p;
    p.connect();
    // By hand (a million ManifestEntry objects would cost more than the bytes): empty files
    // named 0 to 999999.
    constexpr std::uint32_t kEntries = 1'000'000;
    std::vector<std::uint8_t> bytes;
    tr::encodeOfferPrefix("a million", bytes);
    bytes.reserve(bytes.size() + 9 + std::size_t{kEntries} * 37);
    auto put = [&](std::uint64_t v, int size) {
        for (int i = size - 1; i >= 0; --i)
            bytes.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    for (char ch : std::string("PLYM"))
        bytes.push_back(static_cast<std::uint8_t>(ch));
    bytes.push_back(tr::kManifestVersion);
    put(kEntries, 4);
    for (std::uint32_t i = 0; i < kEntries; ++i) {
        auto name = std::to_string(i);
        bytes.push_back(0); // a file
        put(name.size(), 2);
        bytes.insert(bytes.end(), name.begin(), name.end());
        put(0644, 4);
        put(1'600'000'000'000'000'000ULL, 8);
        put(0, 8);                 // size
        put(tr::kMinChunkSize, 4); // chunk size
        put(0, 4);                 // chunks
    }
    auto offerSize = bytes.size();
    // The same bytes decode as "too many entries", and only that is wrong with them.
    {
        tr::Manifest probe;
        std::string error;
        auto prefix = tr::decodeOfferPrefix(bytes, &error);
        REQUIRE(prefix);
        REQUIRE(
            tr::decodeManifest(std::span<const std::uint8_t>(bytes).subspan(prefix->manifestOffset),
                               probe) == tr::ManifestError::tooManyEntries);
    }
    auto id = transferId(4);
    auto rssBefore = rssBytes(), heapBefore = heapBytes();
    auto started = std::chrono::steady_clock::now();
    REQUIRE(p.nc().call([&] {
        p.peer->id = id;
        p.peer->offerBytes = std::move(bytes);
        return p.peer->offer();
    }));
    std::uint64_t heapPeak = heapBefore, rssPeak = rssBefore;
    bool answered = test::eventually(
        [&] {
            heapPeak = std::max(heapPeak, heapBytes());
            rssPeak = std::max(rssPeak, rssBytes());
            return p.nc().call([&] { return p.peer->answer.has_value(); });
        },
        60s, 10ms);
    auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    REQUIRE(answered);
    auto answer = p.nc().call([&] { return *p.peer->answer; });
    auto sentAtAnswer = p.nc().call([&] { return p.peer->sentAtAnswer; });
    CHECK_FALSE(answer.ok);
    CHECK(answer.reason == tr::describe(tr::ManifestError::tooManyEntries));
    REQUIRE(test::eventually([&] { return counter(p.nr(), "offers_refused") == 1; }, 5s));
    CHECK(counter(p.nr(), "offers_received") == 0);
    // Nothing stored; the receiver still answers, on its own thread and over the link.
    CHECK(p.nr().call([&] { return p.nr().transfers().list().size(); }) == 0);
    CHECK(p.nr().ping(p.craftedId.contactId(), 2, 50ms, 5s).connected);
    CHECK(p.nc().ping(p.realId.contactId(), 2, 50ms, 5s).connected);
    std::this_thread::sleep_for(200ms);
    auto rssAfter = rssBytes(), heapAfter = heapBytes();
    std::printf("million-entry offer: %.1f MiB sent in %.1f s, refused after %.1f MiB; "
                "RSS %.1f -> peak %.1f -> %.1f MiB (+%.1f); live heap %.1f -> peak %.1f -> "
                "%.1f MiB (peak +%.1f, after +%.1f)\n",
                mib(offerSize), took, mib(sentAtAnswer), mib(rssBefore), mib(rssPeak),
                mib(rssAfter), mib(growth(rssAfter, rssBefore)), mib(heapBefore), mib(heapPeak),
                mib(heapAfter), mib(growth(heapPeak, heapBefore)),
                mib(growth(heapAfter, heapBefore)));
    // The receiver refuses the offer from its header (the entry count), so it holds a few
    // of its first bytes, never the 35 MiB nor a decoded million entries, and nothing once it
    // refused them. RSS under ASan also holds its quarantine of freed blocks (up to 256 MiB
    // more) and the sender's own copy.
    CHECK(growth(rssAfter, rssBefore) < (underAsan() ? 512 : 256) * kMiB);
    CHECK(growth(heapPeak, heapBefore) < 16 * kMiB);
    CHECK(growth(heapAfter, heapBefore) < 16 * kMiB);
    CHECK(p.nc().call([&] { return p.peer->violations; }).empty());
}

namespace {

// What a slow crafted receiver saw, and the real sender's figures meanwhile.
struct SlowFigures {
    std::uint64_t chunkSize = 0, chunks = 0;
    double seconds = 0;
    std::uint64_t received = 0, consumed = 0, chunksDone = 0;
    std::size_t mostOpen = 0;
    std::uint64_t served = 0, maxServing = 0, maxStreams = 0, maxAhead = 0;
    std::uint64_t rssBefore = 0, rssPeak = 0, heapBefore = 0, heapPeak = 0;
    std::string sender; // its transfer and counters at the end
};

// A real sender offers a sparse file of `size` bytes to a crafted receiver, which requests
// chunks on as many streams as the link allows (a new one whenever one ends) and returns
// 256 KiB of credit every 50 ms, for `ticks` ticks.
SlowFigures slowReceiver(std::uint64_t size, const node::TransferOptions& senderOptions,
                         int ticks) {
    test::TestNetwork net;
    auto senderId = test::makeIdentity("alice"), craftedId = test::makeIdentity("mallory");
    auto sender = startNode(net, senderId, senderOptions);
    auto crafted = startNode(net, craftedId, noTransfers());
    auto& ns = *sender.node;
    auto& nc = *crafted.node;
    REQUIRE(test::makeContacts(ns, senderId, nc, craftedId));
    REQUIRE(nc.ping(senderId.contactId(), 1, 0ms, 30s).connected);
    auto peer = std::make_shared<Crafted>(nc, senderId.contactId());
    REQUIRE(nc.call([&] { return peer->registerTypes(); }));

    test::TempDir files;
    auto big = files.path / "big.bin";
    {
        int fd = ::open(big.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
        REQUIRE(fd >= 0);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
        ::close(fd);
    }
    auto promise = std::make_shared<std::promise<node::OfferResult>>();
    auto future = promise->get_future();
    ns.call([&] {
        ns.transfers().offer(craftedId.contactId(), {big}, "slowly",
                             [promise](const node::OfferResult& r) { promise->set_value(r); });
        return 0;
    });
    REQUIRE(future.wait_for(60s) == std::future_status::ready);
    auto offered = future.get();
    INFO(offered.error);
    REQUIRE(offered.ok());
    REQUIRE(
        test::eventually([&] { return nc.call([&] { return peer->manifest.has_value(); }); }, 20s));
    SlowFigures f;
    f.chunkSize = nc.call([&] { return peer->manifest->entries.at(0).chunkSize; });
    f.chunks = nc.call([&] { return peer->manifest->entries.at(0).chunks(); });
    nc.call([&] {
        peer->sayAccepted();
        return 0;
    });

    f.rssBefore = f.rssPeak = rssBytes();
    f.heapBefore = f.heapPeak = heapBytes();
    auto started = std::chrono::steady_clock::now();
    nc.call([&] {
        peer->keepFetching = true;
        peer->fetch();
        return 0;
    });
    for (int tick = 0; tick < ticks; ++tick) {
        std::this_thread::sleep_for(50ms);
        nc.call([&] {
            peer->consumeSome(256 * 1024);
            return 0;
        });
        auto c = countersOf(ns); // before `received`: what the sender read is never less
        auto received = nc.call([&] { return peer->received; });
        f.maxServing = std::max(f.maxServing, c["serving_bytes"]);
        f.maxStreams = std::max(f.maxStreams, c["chunks_serving"]);
        f.maxAhead = std::max(f.maxAhead, growth(c["bytes_served"], received));
        if (tick % 5 == 4) {
            f.rssPeak = std::max(f.rssPeak, rssBytes());
            f.heapPeak = std::max(f.heapPeak, heapBytes());
        }
    }
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    f.served = counter(ns, "bytes_served");
    f.received = nc.call([&] { return peer->received; });
    f.consumed = nc.call([&] { return peer->consumed; });
    f.chunksDone = nc.call([&] { return peer->chunksDone; });
    f.mostOpen = nc.call([&] { return peer->mostOpen; });
    f.sender = describe(ns, offered.transfer.id);
    CHECK(nc.call([&] { return peer->violations; }).empty());
    std::printf("slow receiver, %.0f MiB in chunks of %.2f MiB: %.1f s, %.1f MiB received (%.1f "
                "MiB credit returned), %llu chunks done, %zu streams open at most; sender: "
                "%.1f MiB served, serving at most %.2f MiB on %llu streams (budget %.0f MiB), "
                "at most %.2f MiB ahead of the receiver; RSS %.1f -> peak %.1f MiB (+%.1f); "
                "live heap %.1f -> peak %.1f MiB (+%.1f)\n",
                mib(size), mib(f.chunkSize), f.seconds, mib(f.received), mib(f.consumed),
                static_cast<unsigned long long>(f.chunksDone), f.mostOpen, mib(f.served),
                mib(f.maxServing), static_cast<unsigned long long>(f.maxStreams),
                mib(senderOptions.serveBytes), mib(f.maxAhead), mib(f.rssBefore), mib(f.rssPeak),
                mib(growth(f.rssPeak, f.rssBefore)), mib(f.heapBefore), mib(f.heapPeak),
                mib(growth(f.heapPeak, f.heapBefore)));
    return f;
}

} // namespace

// 200 MiB go in chunks of 128 KiB, each within the 1 MiB stream window: a chunk's stream ends
// once its bytes have arrived, and the credit it still held goes back with it, so the
// receiver's slow credit hardly slows anything (the whole file moves in a few seconds). What
// bounds the sender is its serving budget, lowered here below what 64 open streams ask for
// (64 x 128 KiB), so that it, not the stream limit, is what holds.
TEST_CASE("a receiver that returns its credit slowly keeps the memory of the sender flat",
          "[transfers]") {
    node::TransferOptions options;
    options.serveBytes = 4 * kMiB;
    auto f = slowReceiver(200 * kMiB, options, 100);
    INFO(f.sender);
    CHECK(f.chunkSize == tr::kMinChunkSize);
    CHECK(f.chunks == 1600);
    CHECK(f.received > 8 * kMiB); // it moved
    CHECK(f.mostOpen >= 32);      // enough requests at once to go over the budget
    // The budget held and was what bounded the sender: requests waited for it.
    CHECK(f.maxServing <= options.serveBytes);
    CHECK(f.maxServing >= options.serveBytes - tr::kMinChunkSize);
    CHECK(f.maxAhead <= options.serveBytes + 64 * 1024);
    // Memory stays flat: a sender that read ahead of the receiver would hold up to 200 MiB.
    CHECK(growth(f.heapPeak, f.heapBefore) < 32 * kMiB);
    // Under ASan RSS also holds the quarantine of freed blocks (256 MiB by default), which
    // fills as bytes move: only the live heap says something then.
    if (!underAsan())
        CHECK(growth(f.rssPeak, f.rssBefore) < 64 * kMiB);
}

// Chunks of 2 MiB (a sparse file just over 2 GiB), larger than the 1 MiB stream window: no
// chunk's stream can end before the receiver returns its credit, so here the slow credit is
// what paces the transfer, and the sender's default budget of 64 MiB (32 chunks read and
// waiting in their streams) what bounds its memory.
TEST_CASE("a receiver that holds its credit stalls the sender within its serving budget",
          "[transfers]") {
    node::TransferOptions options; // serveBytes 64 MiB
    REQUIRE(options.serveBytes == 64 * kMiB);
    auto f = slowReceiver(2048 * kMiB + 1, options, 80);
    INFO(f.sender);
    CHECK(f.chunkSize == 2 * kMiB);
    CHECK(f.mostOpen >= 33); // more requests than the budget serves at once
    // Paced by the credit: what arrived is what was returned plus the windows (the
    // connection's 4 MiB, auto-tuned up to 64 MiB), far from the 2 GiB.
    CHECK(f.received > 2 * kMiB);
    CHECK(f.received <= f.consumed + 64 * kMiB + f.chunksDone * f.chunkSize);
    CHECK(f.served < 256 * kMiB);
    CHECK(f.maxServing <= options.serveBytes);
    CHECK(f.maxServing >= options.serveBytes - f.chunkSize);
    CHECK(f.maxAhead <= options.serveBytes + 64 * 1024);
    // The 64 MiB waiting in the streams, and not much more.
    CHECK(growth(f.heapPeak, f.heapBefore) < 112 * kMiB);
    if (!underAsan())
        CHECK(growth(f.rssPeak, f.rssBefore) < 160 * kMiB);
}
