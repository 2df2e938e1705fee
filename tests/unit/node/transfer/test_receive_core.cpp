// ReceiveCore on a virtual clock: the window of chunks and bytes in flight, resume from a
// stored bitmap, bad hashes fetched again up to maxTries, lost requests asked again without a
// try, timeouts, busy senders, write failures pausing, and a file that changed failing alone.
#include "node/transfer/receive_core.h"

#include <catch2/catch.hpp>

using namespace parley::node::transfer;
using namespace std::chrono_literals;
using Clock = ReceiveCore::Clock;

namespace {

ManifestEntry file(std::string path, std::uint64_t size, std::uint32_t chunkSize = kMinChunkSize) {
    ManifestEntry e;
    e.path = std::move(path);
    e.size = size;
    e.chunkSize = chunkSize;
    e.hashes.resize((size + chunkSize - 1) / chunkSize);
    return e;
}

ManifestEntry folder(std::string path) {
    ManifestEntry e;
    e.path = std::move(path);
    e.folder = true;
    return e;
}

ReceiveLimits limits(std::size_t chunks, std::uint64_t bytes) {
    ReceiveLimits l;
    l.maxChunks = chunks;
    l.maxBytes = bytes;
    return l;
}

} // namespace

TEST_CASE("requests stay within the chunk and byte windows, in manifest order", "[transfer]") {
    Manifest m;
    m.entries = {folder("d"), file("d/a", 5 * kMinChunkSize), file("d/b", 2 * kMinChunkSize)};
    ReceiveCore core(m, {}, limits(4, 3 * kMinChunkSize));
    auto t = Clock::time_point{};
    auto first = core.next(t);
    REQUIRE(first.size() == 3); // the byte window, not the chunk window
    CHECK(first[0] == ChunkRequest{1, 0});
    CHECK(first[2] == ChunkRequest{1, 2});
    CHECK(core.next(t).empty());
    core.done(first[0], ChunkOutcome::verified, {}, t);
    auto more = core.next(t);
    REQUIRE(more.size() == 1);
    CHECK(more[0] == ChunkRequest{1, 3});
    for (auto r : {first[1], first[2], more[0]})
        core.done(r, ChunkOutcome::verified, {}, t);
    auto rest = core.next(t);
    REQUIRE(rest.size() == 3);
    CHECK(rest[0] == ChunkRequest{1, 4});
    CHECK(rest[1] == ChunkRequest{2, 0});
    auto r = core.done(rest[0], ChunkOutcome::verified, {}, t);
    CHECK(r.fileComplete == 1u);
    CHECK_FALSE(core.finished());
    core.finalized(1, true, {});
    core.done(rest[1], ChunkOutcome::verified, {}, t);
    r = core.done(rest[2], ChunkOutcome::verified, {}, t);
    CHECK(r.fileComplete == 2u);
    core.finalized(2, true, {});
    CHECK(core.finished());
    CHECK(core.doneBytes() == 7 * kMinChunkSize);
}

TEST_CASE("a stored bitmap resumes without fetching a verified chunk again", "[transfer]") {
    Manifest m;
    m.entries = {file("a", 10 * kMinChunkSize), file("empty", 0)};
    FileProgress stored{0, "pending", {}, {0b1010'0101, 0b01}};
    ReceiveCore core(m, {stored}, limits(64, 1ull << 30));
    CHECK(core.doneBytes() == 5 * kMinChunkSize);
    // The empty file has nothing to fetch: it is ready to be put in place at once.
    CHECK(core.readyFiles() == std::vector<std::uint32_t>{1});
    auto asked = core.next(Clock::time_point{});
    std::vector<std::uint32_t> chunks;
    for (auto r : asked)
        chunks.push_back(r.chunk);
    CHECK(chunks == std::vector<std::uint32_t>{1, 3, 4, 6, 9});
}

TEST_CASE("a bad hash is fetched again, then the file fails and the rest goes on", "[transfer]") {
    Manifest m;
    m.entries = {file("bad", kMinChunkSize), file("good", kMinChunkSize)};
    auto l = limits(1, 1ull << 30);
    l.maxTries = 3;
    ReceiveCore core(m, {}, l);
    auto t = Clock::time_point{};
    for (int attempt = 1; attempt <= 3; ++attempt) {
        auto r = core.next(t);
        REQUIRE(r.size() == 1);
        CHECK(r[0] == ChunkRequest{0, 0});
        auto result = core.done(r[0], ChunkOutcome::badHash, {}, t);
        CHECK(result.fileFailed.has_value() == (attempt == 3));
    }
    CHECK(core.file(0).state == "failed");
    CHECK(core.file(0).reason.find("did not match its hash 3 times") != std::string::npos);
    auto r = core.next(t);
    REQUIRE(r.size() == 1);
    CHECK(r[0] == ChunkRequest{1, 0});
    core.done(r[0], ChunkOutcome::verified, {}, t);
    core.finalized(1, true, {});
    CHECK(core.finished());
    CHECK(core.failedFiles() == 1);
}

TEST_CASE("lost requests and timeouts are asked again without counting a try", "[transfer]") {
    Manifest m;
    m.entries = {file("a", 2 * kMinChunkSize)};
    auto l = limits(2, 1ull << 30);
    l.maxTries = 1;
    l.requestTimeout = 30s;
    ReceiveCore core(m, {}, l);
    auto t = Clock::time_point{};
    auto r = core.next(t);
    REQUIRE(r.size() == 2);
    CHECK(core.nextDeadline() == t + 30s);
    core.done(r[0], ChunkOutcome::lost, {}, t);
    CHECK(core.expired(t + 29s).empty());
    auto late = core.expired(t + 30s);
    REQUIRE(late.size() == 1);
    CHECK(late[0] == r[1]);
    // An answer for a request that timed out is ignored.
    CHECK_FALSE(core.done(r[1], ChunkOutcome::verified, {}, t + 31s).fileComplete);
    auto again = core.next(t + 31s);
    REQUIRE(again.size() == 2);
    CHECK(core.file(0).state == "pending");
    // The link goes: everything in flight comes back.
    CHECK(core.dropInFlight().size() == 2);
    CHECK(core.inFlight() == 0);
    CHECK(core.next(t + 32s).size() == 2);
}

TEST_CASE("a busy sender is asked again after the back-off, and a paused core asks nothing",
          "[transfer]") {
    Manifest m;
    m.entries = {file("a", 3 * kMinChunkSize)};
    auto l = limits(1, 1ull << 30);
    l.busyBackoff = 1s;
    ReceiveCore core(m, {}, l);
    auto t = Clock::time_point{};
    auto r = core.next(t);
    core.done(r[0], ChunkOutcome::notServing, "paused", t);
    CHECK(core.next(t + 999ms).empty());
    CHECK(core.nextDeadline() == t + 1s);
    auto again = core.next(t + 1s);
    REQUIRE(again.size() == 1);
    CHECK(again[0] == r[0]);
    core.dropInFlight();
    core.setPaused(true);
    CHECK(core.next(t + 2s).empty());
    core.setPaused(false);
    CHECK(core.next(t + 2s).size() == 1);
}

TEST_CASE("a failed write pauses, and a changed file fails alone", "[transfer]") {
    Manifest m;
    m.entries = {file("a", kMinChunkSize), file("b", kMinChunkSize)};
    ReceiveCore core(m, {}, limits(2, 1ull << 30));
    auto t = Clock::time_point{};
    auto r = core.next(t);
    REQUIRE(r.size() == 2);
    auto full = core.done(r[0], ChunkOutcome::writeFailed, "the disk is full", t);
    CHECK(full.pause);
    CHECK(full.reason == "the disk is full");
    CHECK(core.paused());
    auto changed = core.done(r[1], ChunkOutcome::changed, {}, t);
    CHECK(changed.fileFailed == 1u);
    CHECK(core.file(1).reason.find("changed on the sender's disk") != std::string::npos);
    core.setPaused(false);
    auto again = core.next(t);
    REQUIRE(again.size() == 1);
    CHECK(again[0] == ChunkRequest{0, 0});
}
