// The manifest of a file offer (DESIGN.md §8): every entry's relative path, kind, mode,
// modification time and, per file, its size, chunk size and the SHA-256 of every chunk. No
// I/O here. The manifest is the first thing a peer sends about a transfer, so decoding it is
// bounded (kMaxManifestEntries, kMaxPathSize, kMaxChunksPerFile checked before anything is
// allocated for them) and never throws.
//
// Why not msgpack: a manifest of a quarter of a million entries as a msgpack-cxx object tree
// costs several times its size in zone memory and throws on bad input; this flat format is
// read in one pass with bounds checks and builds only the entries themselves.
//
// Encoding (all integers big-endian):
//
//   "PLYM"                  4 bytes magic
//   version                 1 byte, kManifestVersion (1)
//   entry count             u32, at most kMaxManifestEntries
//   per entry:
//     kind                  1 byte: 0 file, 1 folder
//     path length           u16, 1..kMaxPathSize
//     path                  UTF-8, '/'-separated, relative (checked by checkRelativePath
//                           when the offer is accepted, not here: one bad name does not
//                           refuse the rest)
//     mode                  u32 (permission bits 07777 only; the rest is ignored)
//     mtime                 i64, nanoseconds since the Unix epoch
//     files only:
//       size                u64
//       chunk size          u32, kMinChunkSize..kMaxChunkSize, a power of two
//       chunk count         u32, exactly ceil(size / chunk size) (0 for an empty file),
//                           at most kMaxChunksPerFile
//       hashes              chunk count x 32 bytes (SHA-256 of each chunk)
//
// Nothing may follow the last entry.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parley::node::transfer {

inline constexpr std::uint8_t kManifestVersion = 1;
inline constexpr std::size_t kMaxManifestEntries = 250'000;
inline constexpr std::size_t kMaxPathSize = 4096; // bytes of one entry's relative path
inline constexpr std::size_t kMaxNameSize = 255;  // bytes of one path component
inline constexpr std::size_t kMaxPathDepth = 64;  // components of one path
inline constexpr std::uint32_t kMinChunkSize = 128 * 1024;
inline constexpr std::uint32_t kMaxChunkSize = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxChunksPerFile = 1u << 20;
// A file offer's manifest bytes, at most (about 250,000 entries with long names, or a
// 16 TiB file's hashes).
inline constexpr std::size_t kMaxManifestSize = 64u * 1024 * 1024;

using ChunkHash = std::array<std::uint8_t, 32>;

struct ManifestEntry {
    std::string path; // relative, '/'-separated
    bool folder = false;
    std::uint32_t mode = 0644; // permission bits (07777)
    std::int64_t mtimeNs = 0;
    // Files only.
    std::uint64_t size = 0;
    std::uint32_t chunkSize = kMinChunkSize;
    std::vector<ChunkHash> hashes;

    std::size_t chunks() const { return hashes.size(); }
    // The size of chunk `index` (the last one may be shorter).
    std::uint32_t chunkLength(std::size_t index) const;
    bool operator==(const ManifestEntry&) const = default;
};

struct Manifest {
    std::vector<ManifestEntry> entries;

    std::uint64_t totalBytes() const; // sum of the files' sizes
    std::size_t files() const;        // entries that are files
    bool operator==(const Manifest&) const = default;
};

enum class ManifestError {
    ok = 0,
    truncated,      // ends inside the header or an entry
    badMagic,       // not "PLYM"
    badVersion,     // another version
    tooManyEntries, // over kMaxManifestEntries
    badEntry,       // a kind, path length, chunk size or chunk count out of range or
                    // inconsistent with the size
    trailingBytes,  // bytes after the last entry
    tooLarge,       // over kMaxManifestSize bytes
};

std::string_view describe(ManifestError error); // a sentence for logs and the person

// The chunk size for a file of `size` bytes: the smallest power of two from kMinChunkSize to
// kMaxChunkSize that gives at most 2,048 chunks (Syncthing's range, DESIGN.md §8).
std::uint32_t chooseChunkSize(std::uint64_t size);

// Appends the encoding; the manifest must be within the caps (kMaxManifestEntries,
// kMaxPathSize, kMaxChunksPerFile, kMaxManifestSize: scanPaths keeps to them), else the peer
// refuses it.
void encodeManifest(const Manifest& manifest, std::vector<std::uint8_t>& out);
// The header alone, from the first bytes of a manifest still arriving: badMagic, badVersion or
// tooManyEntries refuse it before the rest is received; truncated until the header is there.
ManifestError checkManifestHeader(std::span<const std::uint8_t> bytes);
// Never throws; `out` is only written on ok. `badIndex` (optional) gets the index of the entry
// that was bad (badEntry, truncated).
ManifestError decodeManifest(std::span<const std::uint8_t> bytes, Manifest& out,
                             std::size_t* badIndex = nullptr);

// Why a relative path may not be written under a destination folder, or nullopt when it may:
// empty, absolute, a component that is empty, "." or "..", longer than kMaxNameSize, a NUL or
// a backslash in it, not UTF-8, over kMaxPathSize or kMaxPathDepth. A sentence for the person.
std::optional<std::string> checkRelativePath(std::string_view path);

// The path as a folder that does not tell case apart compares it: Unicode case folding of
// its NFC form (utf8proc), so "Straße/A.txt" and "STRASSE/a.txt" give the same key. Only for
// paths checkRelativePath accepted (valid UTF-8); anything else comes back as it is.
std::string foldCase(std::string_view path);

} // namespace parley::node::transfer
