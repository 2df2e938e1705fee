// The transfer room's file operations (node/transfer/disk.h) on the real file system: chunks
// verified before they are written, files put in place without replacing anything, and the
// probe that tells whether a folder tells names apart by case.
#include "node/transfer/disk.h"
#include "node/transfer/scan.h"
#include "temp_dir.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

using namespace parley::node::transfer;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> bytesOf(std::size_t size, std::uint8_t seed) {
    std::vector<std::uint8_t> b(size);
    for (std::size_t i = 0; i < size; ++i)
        b[i] = static_cast<std::uint8_t>(seed + i * 7);
    return b;
}

std::string contents(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

// One file of two chunks (the second short), with its hashes.
ManifestEntry entryOf(const std::vector<std::uint8_t>& first,
                      const std::vector<std::uint8_t>& second) {
    ManifestEntry e;
    e.path = "f.bin";
    e.mode = 0640;
    e.mtimeNs = 1'600'000'000'123'456'789;
    e.chunkSize = kMinChunkSize;
    e.size = first.size() + second.size();
    e.hashes = {sha256(first), sha256(second)};
    return e;
}

} // namespace

TEST_CASE(
    "disk: chunks are verified, written in place and the file renamed with its mode and time") {
    TempDir dir;
    auto first = bytesOf(kMinChunkSize, 1), second = bytesOf(1000, 2);
    auto e = entryOf(first, second);
    auto part = partialPath(dir.path() / "f.bin", "abcd1234");
    CHECK(part.filename() == ".f.bin.abcd1234.parley-part");

    auto wrong = second;
    wrong[0] ^= 1;
    CHECK(writeChunk(part, e, 1, wrong).status == WriteResult::Status::badHash);
    CHECK(writeChunk(part, e, 1, first).status == WriteResult::Status::badHash);  // wrong length
    CHECK(writeChunk(part, e, 2, second).status == WriteResult::Status::badHash); // no chunk 2
    CHECK_FALSE(fs::exists(part));
    // The second chunk first: the file has a hole until the first arrives.
    CHECK(writeChunk(part, e, 1, second).status == WriteResult::Status::ok);
    CHECK(writeChunk(part, e, 0, first).status == WriteResult::Status::ok);
    CHECK_FALSE(finalizeFile(part, dir.path() / "f.bin", e).has_value());
    CHECK_FALSE(fs::exists(part));
    auto got = contents(dir.path() / "f.bin");
    std::string want(first.begin(), first.end());
    want.append(second.begin(), second.end());
    CHECK(got == want);
    struct stat st {};
    REQUIRE(::stat((dir.path() / "f.bin").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_mtim.tv_sec == 1'600'000'000);
    CHECK(st.st_mtim.tv_nsec == 123'456'789);

    // The sender's side reads it back, and sees a change.
    auto read = readChunk(dir.path() / "f.bin", e, 1);
    REQUIRE(read.status == ReadResult::Status::ok);
    CHECK(read.bytes == second);
    auto changed = e;
    changed.mtimeNs += 1;
    CHECK(readChunk(dir.path() / "f.bin", changed, 0).status == ReadResult::Status::changed);
    CHECK(readChunk(dir.path() / "gone.bin", e, 0).status == ReadResult::Status::changed);
}

TEST_CASE("disk: a name that appeared meanwhile is never replaced") {
    TempDir dir;
    auto first = bytesOf(100, 3);
    ManifestEntry e;
    e.path = "x";
    e.size = first.size();
    e.hashes = {sha256(first)};
    auto part = partialPath(dir.path() / "x", "tag");
    REQUIRE(writeChunk(part, e, 0, first).status == WriteResult::Status::ok);
    std::ofstream(dir.path() / "x") << "mine";
    auto error = finalizeFile(part, dir.path() / "x", e);
    REQUIRE(error.has_value());
    CHECK(error->find("appeared in the destination meanwhile") != std::string::npos);
    CHECK(contents(dir.path() / "x") == "mine");
    CHECK(fs::exists(part)); // kept, named in the reason
}

TEST_CASE("disk: this machine's temporary folder tells case apart, and the probe leaves nothing") {
    TempDir dir;
    CHECK_FALSE(caseInsensitive(dir.path()));
    CHECK(fs::is_empty(dir.path()));
    // A folder it cannot write to: it cannot tell, and says no.
    CHECK_FALSE(caseInsensitive(dir.path() / "missing"));
}
