// The manifest's flat encoding: round trips, every decode error, truncation at every byte, a
// lying entry count that must not allocate, the relative path rules and the chunk size table.
#include "node/transfer/manifest.h"

#include <catch2/catch.hpp>
#include <cstring>

using namespace parley::node::transfer;

namespace {

using Bytes = std::vector<std::uint8_t>;

ChunkHash hashOf(std::uint8_t n) {
    ChunkHash h{};
    for (std::size_t i = 0; i < h.size(); ++i)
        h[i] = static_cast<std::uint8_t>(n + i);
    return h;
}

ManifestEntry file(std::string path, std::uint64_t size) {
    ManifestEntry e;
    e.path = std::move(path);
    e.mode = 0640;
    e.mtimeNs = 1'700'000'000'123'456'789;
    e.size = size;
    e.chunkSize = chooseChunkSize(size);
    for (std::uint64_t at = 0; at < size; at += e.chunkSize)
        e.hashes.push_back(hashOf(static_cast<std::uint8_t>(e.hashes.size())));
    return e;
}

ManifestEntry folder(std::string path) {
    ManifestEntry e;
    e.path = std::move(path);
    e.folder = true;
    e.mode = 0755;
    e.mtimeNs = -5; // before the epoch
    return e;
}

Manifest sample() {
    Manifest m;
    m.entries.push_back(folder("photos"));
    m.entries.push_back(file("photos/empty.txt", 0));
    m.entries.push_back(file("photos/big.raw", 300 * 1024));
    m.entries.push_back(folder("photos/\xC3\xA9t\xC3\xA9 \xF0\x9F\x8C\x9E"));
    m.entries.push_back(file("notes.txt", 5));
    return m;
}

Bytes encode(const Manifest& m) {
    Bytes out;
    encodeManifest(m, out);
    return out;
}

void putU32(Bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

void putU64(Bytes& b, std::size_t at, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        b[at + i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}

// One file entry "a" of 5 bytes (one chunk) after the 9-byte header: kind at 9, path length
// at 10, path at 12, mode at 13, mtime at 17, size at 25, chunk size at 33, count at 37,
// hash at 41, end at 73.
Bytes oneFile() {
    Manifest m;
    m.entries.push_back(file("a", 5));
    auto bytes = encode(m);
    REQUIRE(bytes.size() == 73);
    return bytes;
}

ManifestError decode(const Bytes& bytes, std::size_t* badIndex = nullptr) {
    Manifest out;
    return decodeManifest(bytes, out, badIndex);
}

} // namespace

TEST_CASE("manifest: round trips") {
    auto m = sample();
    auto bytes = encode(m);
    Manifest out;
    REQUIRE(decodeManifest(bytes, out) == ManifestError::ok);
    CHECK(out == m);
    CHECK(out.files() == 3);
    CHECK(out.totalBytes() == 300 * 1024 + 5);
    CHECK(encode(out) == bytes);

    Manifest none;
    REQUIRE(decodeManifest(encode(none), out) == ManifestError::ok);
    CHECK(out.entries.empty());
    CHECK(encode(none).size() == 9);
}

TEST_CASE("manifest: the exact encoding") {
    auto bytes = oneFile();
    const Bytes header = {'P', 'L', 'Y', 'M', 1, 0, 0, 0, 1};
    CHECK(Bytes(bytes.begin(), bytes.begin() + 9) == header);
    CHECK(bytes[9] == 0);                      // a file
    CHECK((bytes[10] == 0 && bytes[11] == 1)); // path length
    CHECK(bytes[12] == 'a');
    CHECK((bytes[15] == 0x01 && bytes[16] == 0xA0)); // 0640
    CHECK(bytes[32] == 5);                           // size
    CHECK((bytes[34] == 0x02 && bytes[35] == 0));    // 128 KiB
    CHECK(bytes[40] == 1);                           // one chunk
    CHECK(bytes[41] == 0);                           // hashOf(0)
}

TEST_CASE("manifest: chunk lengths") {
    auto e = file("f", 300 * 1024);
    REQUIRE(e.chunks() == 3);
    CHECK(e.chunkLength(0) == kMinChunkSize);
    CHECK(e.chunkLength(1) == kMinChunkSize);
    CHECK(e.chunkLength(2) == 300 * 1024 - 2 * kMinChunkSize);
    CHECK(e.chunkLength(3) == 0);
    CHECK(e.chunkLength(SIZE_MAX) == 0);
    auto exact = file("g", 2 * kMinChunkSize);
    CHECK(exact.chunks() == 2);
    CHECK(exact.chunkLength(1) == kMinChunkSize);
    CHECK(file("h", 0).chunks() == 0);
}

TEST_CASE("manifest: mode bits outside 07777 are ignored") {
    Manifest m;
    m.entries.push_back(file("a", 1));
    m.entries[0].mode = 0100644;
    Manifest out;
    REQUIRE(decodeManifest(encode(m), out) == ManifestError::ok);
    CHECK(out.entries[0].mode == 0644);
    auto bytes = encode(m);
    putU32(bytes, 13, 0xFFFFFFFF);
    REQUIRE(decodeManifest(bytes, out) == ManifestError::ok);
    CHECK(out.entries[0].mode == 07777);
}

TEST_CASE("manifest: every error") {
    auto good = oneFile();
    REQUIRE(decode(good) == ManifestError::ok);
    auto with = [&](auto change) {
        auto b = good;
        change(b);
        return decode(b);
    };
    std::size_t badIndex = 99;
    CHECK(with([](Bytes& b) { b[0] = 'X'; }) == ManifestError::badMagic);
    CHECK(with([](Bytes& b) { b[4] = 2; }) == ManifestError::badVersion);
    CHECK(with([](Bytes& b) { b[4] = 0; }) == ManifestError::badVersion);
    CHECK(with([](Bytes& b) { putU32(b, 5, kMaxManifestEntries + 1); }) ==
          ManifestError::tooManyEntries);
    CHECK(with([](Bytes& b) { putU32(b, 5, 2); }) == ManifestError::truncated);
    CHECK(with([](Bytes& b) { putU32(b, 5, 0); }) == ManifestError::trailingBytes);
    CHECK(with([](Bytes& b) { b.push_back(0); }) == ManifestError::trailingBytes);
    CHECK(with([](Bytes& b) { b[9] = 2; }) == ManifestError::badEntry);  // kind
    CHECK(with([](Bytes& b) { b[11] = 0; }) == ManifestError::badEntry); // path length 0
    CHECK(with([](Bytes& b) {
              b[10] = 0x10;
              b[11] = 1;
          }) == ManifestError::badEntry); // 4097
    CHECK(with([](Bytes& b) { putU32(b, 33, kMinChunkSize / 2); }) == ManifestError::badEntry);
    CHECK(with([](Bytes& b) { putU32(b, 33, kMaxChunkSize * 2); }) == ManifestError::badEntry);
    CHECK(with([](Bytes& b) { putU32(b, 33, kMinChunkSize + 1); }) == ManifestError::badEntry);
    CHECK(with([](Bytes& b) { putU32(b, 37, 0); }) == ManifestError::badEntry); // 5 bytes
    CHECK(with([](Bytes& b) { putU32(b, 37, 2); }) == ManifestError::badEntry); // 2 chunks?
    CHECK(with([](Bytes& b) { putU64(b, 25, 0); }) == ManifestError::badEntry); // 0 bytes
    CHECK(with([](Bytes& b) { putU64(b, 25, kMinChunkSize + 1); }) == ManifestError::badEntry);
    CHECK(with([](Bytes& b) { // past kMaxChunksPerFile, even though consistent with the size
              putU64(b, 25, std::uint64_t{kMaxChunksPerFile + 1} * kMaxChunkSize);
              putU32(b, 33, kMaxChunkSize);
              putU32(b, 37, kMaxChunksPerFile + 1);
          }) == ManifestError::badEntry);
    // A folder has no size fields: the same bytes read as a folder leave 48 over.
    CHECK(with([](Bytes& b) { b[9] = 1; }) == ManifestError::trailingBytes);
    CHECK(with([](Bytes& b) { b.pop_back(); }) == ManifestError::truncated);

    // The bad entry's index.
    Manifest two;
    two.entries.push_back(folder("d"));
    two.entries.push_back(file("d/f", 1));
    auto bytes = encode(two);
    bytes[9 + 16] = 7; // the second entry's kind
    CHECK(decode(bytes, &badIndex) == ManifestError::badEntry);
    CHECK(badIndex == 1);

    Bytes huge(kMaxManifestSize + 1, 0);
    std::memcpy(huge.data(), good.data(), good.size());
    CHECK(decode(huge) == ManifestError::tooLarge);

    // `out` is left alone unless ok.
    Manifest out = sample();
    CHECK(decodeManifest(Bytes{'P', 'L'}, out) == ManifestError::truncated);
    CHECK(out == sample());

    for (auto e : {ManifestError::ok, ManifestError::truncated, ManifestError::badMagic,
                   ManifestError::badVersion, ManifestError::tooManyEntries,
                   ManifestError::badEntry, ManifestError::trailingBytes, ManifestError::tooLarge})
        CHECK(!describe(e).empty());
}

TEST_CASE("manifest: truncated at every byte") {
    auto bytes = encode(sample());
    for (std::size_t size = 0; size < bytes.size(); ++size) {
        Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
        Manifest out;
        std::size_t badIndex = 99;
        auto error = decodeManifest(cut, out, &badIndex);
        INFO("size " << size);
        CHECK((error == ManifestError::truncated || error == ManifestError::badEntry));
        CHECK(out.entries.empty());
        if (size >= 9) // inside an entry
            CHECK(badIndex < sample().entries.size());
    }
}

TEST_CASE("manifest: a huge count allocates nothing") {
    Bytes bytes = {'P', 'L', 'Y', 'M', 1, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK(decode(bytes) == ManifestError::tooManyEntries);
    // Within the cap but backed by nothing: reserves at most what the bytes could hold.
    putU32(bytes, 5, kMaxManifestEntries);
    CHECK(decode(bytes) == ManifestError::truncated);
    bytes.resize(9 + 3 * 16, 0);
    CHECK(decode(bytes) == ManifestError::badEntry); // path length 0
}

TEST_CASE("manifest: relative paths") {
    const std::vector<std::string> good = {
        "a",
        "a/b/c.txt",
        ".hidden",
        "..a",
        "a..",
        "a/.../b",
        "\xC3\xA9t\xC3\xA9",  // été
        "\xE2\x82\xAC",       // €
        "\xF0\x9F\x8C\x9E",   // 🌞
        "\xF4\x8F\xBF\xBF",   // U+10FFFF
        "\xED\x9F\xBF",       // U+D7FF, just below the surrogates
        "with space/and\x7F", // DEL is not below 0x20
        std::string(255, 'x'),
        std::string(255, 'x') + "/" + std::string(255, 'y'),
    };
    for (const auto& path : good) {
        INFO(path);
        CHECK(checkRelativePath(path) == std::nullopt);
    }
    std::string deep;
    for (std::size_t i = 0; i < kMaxPathDepth; ++i)
        deep += i == 0 ? "d" : "/d";
    CHECK(checkRelativePath(deep) == std::nullopt);
    std::string longest;
    while (longest.size() + 201 <= kMaxPathSize)
        longest += std::string(200, 'z') + "/";
    longest += std::string(kMaxPathSize - longest.size(), 'z');
    REQUIRE(longest.size() == kMaxPathSize);
    CHECK(checkRelativePath(longest) == std::nullopt);

    const std::vector<std::pair<std::string, std::string>> bad = {
        {"", "empty"},
        {"/a", "absolute"},
        {"/", "absolute"},
        {"a//b", "empty component"},
        {"a/", "empty component"},
        {".", "\".\""},
        {"..", "\"..\""},
        {"a/../b", "\"..\""},
        {"a/./b", "\".\""},
        {"a/..", "\"..\""},
        {std::string(256, 'x'), "longer than 255"},
        {"a/" + std::string(256, 'x'), "longer than 255"},
        {std::string("a\0b", 3), "NUL"},
        {"a\\b", "backslash"},
        {"..\\x", "backslash"},
        {"a\nb", "control"},
        {"a\tb", "control"},
        {"\x1F", "control"},
        {"\x80", "UTF-8"},             // a lone continuation byte
        {"\xC3", "UTF-8"},             // cut short
        {"\xC3(", "UTF-8"},            // a bad continuation
        {"\xC0\xAF", "UTF-8"},         // overlong '/'
        {"\xC1\xBF", "UTF-8"},         // overlong
        {"\xE0\x80\xAF", "UTF-8"},     // overlong '/'
        {"\xF0\x80\x80\xAF", "UTF-8"}, // overlong '/'
        {"\xED\xA0\x80", "UTF-8"},     // U+D800, a surrogate
        {"\xED\xBF\xBF", "UTF-8"},     // U+DFFF
        {"\xF4\x90\x80\x80", "UTF-8"}, // U+110000
        {"\xF5\x80\x80\x80", "UTF-8"},
        {"\xFF", "UTF-8"},
        {deep + "/d", "more than 64"},
        {longest + "z", "longer than 4096"},
    };
    for (const auto& [path, why] : bad) {
        INFO(path);
        auto reason = checkRelativePath(path);
        REQUIRE(reason.has_value());
        CHECK(reason->find(why) != std::string::npos);
    }
}

TEST_CASE("manifest: chunk sizes") {
    constexpr std::uint64_t MiB = 1024 * 1024, GiB = 1024 * MiB;
    const std::vector<std::pair<std::uint64_t, std::uint32_t>> table = {
        {0, kMinChunkSize},          {1, kMinChunkSize},
        {256 * MiB, kMinChunkSize}, // exactly 2,048 chunks
        {256 * MiB + 1, 256 * 1024}, {2 * GiB, 1 * MiB},
        {2 * GiB + 1, 2 * MiB},      {32 * GiB, 16 * MiB},
        {64 * GiB, 16 * MiB},        {16 * 1024 * GiB, 16 * MiB},
        {UINT64_MAX, 16 * MiB},
    };
    for (const auto& [size, chunk] : table) {
        INFO(size);
        CHECK(chooseChunkSize(size) == chunk);
    }
}

TEST_CASE("manifest: names compared as a folder that does not tell case apart would") {
    CHECK(foldCase("Readme.TXT") == foldCase("README.txt"));
    CHECK(foldCase("Straße/A.txt") == foldCase("STRASSE/a.txt"));
    CHECK(foldCase("ΟΔΥΣΣΕΥΣ") == foldCase("οδυσσευς"));
    // The composed and the decomposed é are one name after NFC.
    CHECK(foldCase("caf\xc3\xa9") == foldCase("CAFE\xcc\x81"));
    CHECK(foldCase("a/b") != foldCase("a/c"));
    CHECK(foldCase("") == "");
    // Not UTF-8: as it is (checkRelativePath refuses it before anyone compares).
    CHECK(foldCase("\xff\xfe") == "\xff\xfe");
}
