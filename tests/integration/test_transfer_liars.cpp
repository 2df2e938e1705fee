// Crafted senders that lie to a real receiver (transfer_peer.h): chunks that fail their hashes,
// chunk answers shorter or longer than the manifest says, and late honest answers for a file
// that has already failed. Each must fail that file only, leave no partial file behind, and
// be counted as what it was.
#include "integration/transfer_peer.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace parley;
using namespace parley::test::transfer_peer;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace tr = node::transfer;

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
