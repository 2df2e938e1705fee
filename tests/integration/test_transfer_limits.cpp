// The transfer room's limits against a crafted peer (transfer_peer.h): an offer of a million
// entries, refused from its header with bounded memory, and receivers that return their
// flow-control credit slowly (chunks within the stream window, and larger than it), against
// which the sender's serving budget must hold.
#include "integration/transfer_peer.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace parley;
using namespace parley::test::transfer_peer;
using namespace std::chrono_literals;
namespace tr = node::transfer;

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
