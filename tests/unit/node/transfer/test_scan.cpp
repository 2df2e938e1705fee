// scanPaths on a real temporary folder: the order of entries, empty files and folders, chunk
// hashes, what is skipped (links, FIFOs, sockets, devices, unreadable and changing files, bad
// names), the errors (duplicate names, the entry cap, missing paths, the root, cancel) and
// sourceOf.
#include "node/transfer/scan.h"
#include "temp_dir.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace parley::node::transfer;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes pattern(std::size_t size) {
    Bytes b(size);
    std::uint32_t x = 12345;
    for (auto& byte : b) {
        x = x * 1103515245 + 12345;
        byte = static_cast<std::uint8_t>(x >> 16);
    }
    return b;
}

void writeFile(const fs::path& path, const Bytes& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

std::vector<std::string> names(const ScanResult& r) {
    std::vector<std::string> out;
    for (const auto& e : r.manifest.entries)
        out.push_back(e.path);
    return out;
}

const ManifestEntry* entry(const ScanResult& r, std::string_view path) {
    for (const auto& e : r.manifest.entries)
        if (e.path == path)
            return &e;
    return nullptr;
}

bool skipped(const ScanResult& r, const std::string& path, const std::string& reason) {
    return std::any_of(r.skipped.begin(), r.skipped.end(), [&](const Skipped& s) {
        return s.path == path && s.reason.find(reason) != std::string::npos;
    });
}

std::string hex(const ChunkHash& h) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (auto b : h) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

} // namespace

TEST_CASE("scan: sha256 known answers") {
    CHECK(hex(sha256({})) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const std::uint8_t abc[] = {'a', 'b', 'c'};
    CHECK(hex(sha256(abc)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("scan: a folder tree in order, with its hashes") {
    TempDir tmp;
    auto root = tmp.path() / "root";
    fs::create_directories(root / "a" / "b");
    fs::create_directories(root / "empty");
    writeFile(root / "a" / "b" / "c.txt", {'h', 'i'});
    writeFile(root / "zero.bin", {});
    auto big = pattern(300 * 1024);
    writeFile(root / "big.bin", big);
    ::chmod((root / "zero.bin").c_str(), 0600);
    timespec times[2] = {{0, UTIME_OMIT}, {1'600'000'000, 123'456'789}};
    REQUIRE(::utimensat(AT_FDCWD, (root / "big.bin").c_str(), times, 0) == 0);

    std::vector<std::uint64_t> progress;
    ScanOptions options;
    options.progress = [&](std::uint64_t bytes) { progress.push_back(bytes); };
    // A trailing slash names the same folder.
    auto r = scanPaths({root.string() + "/"}, options);
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"root", "root/a", "root/a/b", "root/a/b/c.txt",
                                               "root/big.bin", "root/empty", "root/zero.bin"});
    CHECK(r.skipped.empty());
    REQUIRE(r.roots.size() == 1);
    CHECK(r.roots[0].first == "root");
    CHECK(r.roots[0].second == root);
    CHECK(r.manifest.files() == 3);
    CHECK(r.manifest.totalBytes() == 2 + 300 * 1024);
    CHECK(progress == std::vector<std::uint64_t>{2 + 300 * 1024});

    CHECK(entry(r, "root")->folder);
    CHECK(entry(r, "root/empty")->folder);
    CHECK(entry(r, "root/empty")->hashes.empty());
    auto* zero = entry(r, "root/zero.bin");
    CHECK((!zero->folder && zero->size == 0 && zero->hashes.empty()));
    CHECK(zero->mode == 0600);
    auto* c = entry(r, "root/a/b/c.txt");
    const Bytes hi = {'h', 'i'};
    CHECK(c->hashes == std::vector<ChunkHash>{sha256(hi)});

    auto* b = entry(r, "root/big.bin");
    CHECK(b->mtimeNs == 1'600'000'000'123'456'789);
    CHECK(b->size == big.size());
    CHECK(b->chunkSize == kMinChunkSize);
    REQUIRE(b->chunks() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        std::size_t start = i * kMinChunkSize;
        std::size_t length = std::min<std::size_t>(kMinChunkSize, big.size() - start);
        CHECK(b->chunkLength(i) == length);
        CHECK(b->hashes[i] == sha256(std::span(big).subspan(start, length)));
    }

    // The manifest encodes and decodes as it is.
    Bytes encoded;
    encodeManifest(r.manifest, encoded);
    Manifest decoded;
    REQUIRE(decodeManifest(encoded, decoded) == ManifestError::ok);
    CHECK(decoded == r.manifest);

    // The same again: deterministic. A relative path names the same thing.
    auto again = scanPaths({fs::relative(root)});
    REQUIRE(again.ok());
    CHECK(again.manifest == r.manifest);
}

TEST_CASE("scan: several paths, sorted by name") {
    TempDir tmp;
    writeFile(tmp.path() / "b.txt", {'b'});
    fs::create_directories(tmp.path() / "a");
    writeFile(tmp.path() / "a" / "in", {'x'});
    auto r = scanPaths({tmp.path() / "b.txt", tmp.path() / "a"});
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"a", "a/in", "b.txt"});
    REQUIRE(r.roots.size() == 2);
    CHECK(r.roots[0] == std::pair<std::string, fs::path>{"a", tmp.path() / "a"});
    CHECK(r.roots[1] == std::pair<std::string, fs::path>{"b.txt", tmp.path() / "b.txt"});
}

TEST_CASE("scan: links, FIFOs, sockets and devices are skipped") {
    TempDir tmp;
    auto dir = tmp.path() / "s";
    fs::create_directories(dir / "real");
    writeFile(dir / "file", {'f'});
    fs::create_symlink(dir / "file", dir / "link");
    fs::create_directory_symlink(dir / "real", dir / "dirlink");
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(sock >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    auto sockPath = (dir / "sock").string();
    REQUIRE(sockPath.size() < sizeof(addr.sun_path));
    std::copy(sockPath.begin(), sockPath.end(), addr.sun_path);
    REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);

    auto r = scanPaths({dir});
    ::close(sock);
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"s", "s/file", "s/real"});
    CHECK(r.skipped.size() == 4);
    CHECK(skipped(r, "s/link", "symbolic link"));
    CHECK(skipped(r, "s/dirlink", "symbolic link"));
    CHECK(skipped(r, "s/fifo", "FIFO"));
    CHECK(skipped(r, "s/sock", "socket"));

    // At the top: listed, and the rest is offered.
    auto top = scanPaths({dir / "link", dir / "file", "/dev/null"});
    REQUIRE(top.ok());
    CHECK(names(top) == std::vector<std::string>{"file"});
    CHECK(skipped(top, "link", "symbolic link"));
    CHECK(skipped(top, "null", "device"));
    CHECK(top.roots.size() == 1);
    // Nothing left: an error.
    auto none = scanPaths({dir / "link", dir / "fifo"});
    CHECK(!none.ok());
    CHECK(none.error.find("nothing") != std::string::npos);
    CHECK(none.manifest.entries.empty());
    CHECK(none.skipped.size() == 2);
}

TEST_CASE("scan: a file that is not what it said is skipped") {
    TempDir tmp;
    writeFile(tmp.path() / "f", {'f'});
    // /proc files say 0 bytes and then read some: the same as a file that grew.
    auto r = scanPaths({tmp.path() / "f", "/proc/self/status"});
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"f"});
    CHECK(skipped(r, "status", "changed while it was read"));
}

TEST_CASE("scan: names the receiver would refuse are skipped") {
    TempDir tmp;
    auto dir = tmp.path() / "d";
    fs::create_directories(dir / "bad\xFF");
    writeFile(dir / "bad\xFF" / "inside", {'x'});
    writeFile(dir / "back\\slash", {'x'});
    writeFile(dir / "ok", {'x'});
    auto r = scanPaths({dir});
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"d", "d/ok"});
    CHECK(skipped(r, "d/bad\xFF", "UTF-8"));
    CHECK(skipped(r, "d/back\\slash", "backslash"));
    CHECK(r.skipped.size() == 2); // not the folder's contents
}

TEST_CASE("scan: unreadable files and folders are skipped") {
    if (::geteuid() == 0) {
        WARN("running as root: permissions do not apply");
        return;
    }
    TempDir tmp;
    auto dir = tmp.path() / "d";
    fs::create_directories(dir / "closed");
    writeFile(dir / "secret", {'s'});
    writeFile(dir / "open", {'o'});
    ::chmod((dir / "secret").c_str(), 0);
    ::chmod((dir / "closed").c_str(), 0);
    auto r = scanPaths({dir});
    REQUIRE(r.ok());
    CHECK(names(r) == std::vector<std::string>{"d", "d/open"});
    CHECK(skipped(r, "d/secret", "cannot read: Permission denied"));
    CHECK(skipped(r, "d/closed", "cannot read: Permission denied"));
}

TEST_CASE("scan: errors") {
    TempDir tmp;
    fs::create_directories(tmp.path() / "one");
    fs::create_directories(tmp.path() / "two");
    writeFile(tmp.path() / "one" / "x.txt", {'1'});
    writeFile(tmp.path() / "two" / "x.txt", {'2'});

    auto dup = scanPaths({tmp.path() / "one" / "x.txt", tmp.path() / "two" / "x.txt"});
    CHECK(!dup.ok());
    CHECK(dup.error.find("\"x.txt\"") != std::string::npos);
    CHECK(dup.manifest.entries.empty());
    CHECK(dup.roots.empty());

    auto missing = scanPaths({tmp.path() / "one", tmp.path() / "nope"});
    CHECK(!missing.ok());
    CHECK(missing.error.find("does not exist") != std::string::npos);

    CHECK(scanPaths({"/"}).error == "cannot offer the root folder");
    CHECK(scanPaths({"/tmp/.."}).error == "cannot offer the root folder");
    CHECK(!scanPaths({}).ok());

    std::atomic<bool> cancel{true};
    ScanOptions options;
    options.cancel = &cancel;
    auto cancelled = scanPaths({tmp.path() / "one"}, options);
    CHECK(!cancelled.ok());
    CHECK(cancelled.error.find("cancel") != std::string::npos);
}

TEST_CASE("scan: at most maxEntries") {
    TempDir tmp;
    auto dir = tmp.path() / "many";
    fs::create_directories(dir / "sub");
    for (int i = 0; i < 10; ++i)
        writeFile(dir / "sub" / ("f" + std::to_string(i)), {'x'});
    ScanOptions options;
    options.maxEntries = 12; // many, sub and ten files
    auto r = scanPaths({dir}, options);
    REQUIRE(r.ok());
    CHECK(r.manifest.entries.size() == 12);

    options.maxEntries = 11;
    r = scanPaths({dir}, options);
    CHECK(!r.ok());
    CHECK(r.error == "more than 11 files and folders: offer fewer at once");
    CHECK(r.manifest.entries.empty());

    options.maxEntries = 1;
    r = scanPaths({dir / "sub" / "f1", dir / "sub" / "f2"}, options);
    CHECK(r.error == "more than 1 files and folders: offer fewer at once");
}

TEST_CASE("scan: sourceOf") {
    std::vector<std::pair<std::string, fs::path>> roots = {{"photos", "/home/a/photos"},
                                                           {"c.txt", "/a/b/c.txt"}};
    CHECK(sourceOf(roots, "photos") == fs::path("/home/a/photos"));
    CHECK(sourceOf(roots, "photos/2024/x.jpg") == fs::path("/home/a/photos/2024/x.jpg"));
    CHECK(sourceOf(roots, "c.txt") == fs::path("/a/b/c.txt"));
    CHECK(sourceOf(roots, "other/x").empty());
    CHECK(sourceOf(roots, "photo").empty());
    CHECK(sourceOf(roots, "photos/../../etc/passwd").empty());
    CHECK(sourceOf(roots, "/photos").empty());
    CHECK(sourceOf(roots, "").empty());

    TempDir tmp;
    fs::create_directories(tmp.path() / "t" / "u");
    writeFile(tmp.path() / "t" / "u" / "v", {'v'});
    auto r = scanPaths({tmp.path() / "t"});
    REQUIRE(r.ok());
    for (const auto& e : r.manifest.entries)
        CHECK(fs::exists(sourceOf(r.roots, e.path)));
    CHECK(sourceOf(r.roots, "t/u/v") == tmp.path() / "t" / "u" / "v");
}
