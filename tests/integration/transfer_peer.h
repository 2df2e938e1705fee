// The transfer room against a crafted peer (DESIGN.md §8, node/transfer/): one side is a real
// node, the other a test double written here that speaks the offer, control and chunk streams
// (node/transfer/protocol.h, manifest.h) directly over LinkManager, on a node whose own
// transfer room is off (TransferOptions::enabled). Shared by test_transfer_liars.cpp (senders
// that lie) and test_transfer_limits.cpp (a million-entry offer, slow receivers).
//
// The crafted peer's callbacks run on its node's thread and only record what they saw (no
// Catch2 macros there); the test reads it through Node::call.
#pragma once

#include "node/link/links.h"
#include "node/transfer/manifest.h"
#include "node/transfer/protocol.h"
#include "node/transfer/transfers.h"
#include "support/test_support.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace parley::test::transfer_peer {

namespace fs = std::filesystem;
namespace tr = node::transfer;

using Links = node::LinkManager;
using Handle = Links::StreamHandle;
using Key = std::pair<std::uint64_t, std::int64_t>;
constexpr std::uint64_t kMiB = 1024 * 1024;

// --- memory ----------------------------------------------------------------------------

std::uint64_t rssBytes();

// Live heap bytes: ASan's count when it runs (RSS under ASan also holds the quarantine of
// freed blocks, up to 256 MiB, which grows with every byte moved), else glibc's.
std::uint64_t heapBytes();

bool underAsan();

inline double mib(std::uint64_t bytes) {
    return static_cast<double>(bytes) / static_cast<double>(kMiB);
}

inline std::uint64_t growth(std::uint64_t after, std::uint64_t before) {
    return after > before ? after - before : 0;
}

// --- nodes -----------------------------------------------------------------------------

// Like TestNetwork::start, with the transfer room's options (off for a crafted peer).
test::TestNode startNode(test::TestNetwork& net, const dht::Identity& who,
                         node::TransferOptions transferOptions);

node::TransferOptions noTransfers();

std::vector<std::uint8_t> pseudoRandom(std::size_t size, std::uint64_t seed);

// A file entry with the true hashes of `bytes`.
tr::ManifestEntry fileEntry(const std::string& path, const std::vector<std::uint8_t>& bytes);

// Chunk `chunk` of `bytes` as the manifest cuts it.
std::vector<std::uint8_t> chunkOf(const std::vector<std::uint8_t>& bytes,
                                  const tr::ManifestEntry& e, std::uint32_t chunk);

std::string readAll(const fs::path& p);

// The .parley-part files under `dir`.
std::vector<fs::path> partials(const fs::path& dir);

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

    // Registers the offer, control and chunk stream types on its node's LinkManager.
    bool registerTypes();

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
    bool offer();

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
    void fetch();

    // Returns up to `budget` bytes of credit over the chunk streams that hold some.
    void consumeSome(std::uint64_t budget);

    // Tells the sender we accepted (control stream, its answer is not waited for).
    void sayAccepted();

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

    void pumpOffer();
    void onOpened(int type, const Handle& h, std::span<const std::uint8_t> streamId);
    void onWritable(const Handle& h);
    void onData(int type, const Handle& h, std::span<const std::uint8_t> data, bool fin);
    // Answers every held request that `reply` answers now; each answer may release others.
    void serveHeldNow();
    void onOfferAnswer(const Handle& h, std::span<const std::uint8_t> data, bool fin);
    // Receiver role: the real sender's offer.
    void storeOffer(const Handle& h, const std::vector<std::uint8_t>& bytes);
    // Receiver role: a chunk answer. Counted, and its credit held for consumeSome.
    void onChunkData(const Handle& h, std::span<const std::uint8_t> data, bool fin);
    void onClosed(int type, const Handle& h);
};

// --- the real node's side --------------------------------------------------------------

std::optional<node::TransferSummary> get(node::Node& n, const tr::TransferId& id);

std::map<std::string, std::uint64_t> countersOf(node::Node& n);

std::uint64_t counter(node::Node& n, const std::string& name);

// The transfer's state, reason and progress, and the node's counters, for a message.
std::string describe(node::Node& n, const tr::TransferId& id);

bool waitState(node::Node& n, const tr::TransferId& id, const std::string& state,
               std::chrono::milliseconds timeout);

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

    void connect();

    // Offers `m` from the crafted sender; true once the real receiver stored it.
    bool offer(const tr::Manifest& m, tr::TransferId id);

    std::map<std::pair<std::uint32_t, std::uint32_t>, int> served();
};

tr::TransferId transferId(std::uint8_t tag);

// The reason the summary gives for `path`, or "" when it lists no problem with it.
std::string problemOf(const node::TransferSummary& s, const std::string& path);

} // namespace parley::test::transfer_peer
