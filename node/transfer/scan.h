// The sender's side of a manifest: walks the files and folders a person offers and hashes
// every chunk. Blocking file I/O: runs on the transfer room's disk thread, never on the
// node's.
#pragma once

#include "node/transfer/manifest.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace parley::node::transfer {

// What the sender did not offer, and why ("symbolic link", "FIFO", "socket", "device",
// "cannot read: Permission denied", ...).
struct Skipped {
    std::string path; // as the manifest would have named it
    std::string reason;
    bool operator==(const Skipped&) const = default;
};

struct ScanResult {
    std::string error; // empty on success: then `manifest` and `roots` are set
    Manifest manifest;
    // The top-level entries' names in the manifest and the absolute paths they came from
    // (a file offered as /a/b/c.txt is "c.txt"; a folder /a/photos is "photos", its files
    // "photos/...").
    std::vector<std::pair<std::string, std::filesystem::path>> roots;
    std::vector<Skipped> skipped;
    bool ok() const { return error.empty(); }
};

struct ScanOptions {
    std::size_t maxEntries = kMaxManifestEntries;
    // Called now and then with the bytes hashed so far; a long scan shows progress.
    std::function<void(std::uint64_t hashedBytes)> progress;
    // Set from another thread to stop early (the result's error says so).
    const std::atomic<bool>* cancel = nullptr;
};

// Builds the manifest of `paths` (files or folders, absolute or relative to the current
// directory), recursively, in a stable order (a folder before its contents, names sorted
// bytewise). Symbolic links, devices, FIFOs and sockets are skipped and listed, never
// followed; unreadable files are skipped and listed. Fails (error set) when a path does not
// exist, when two paths have the same name at the top, when nothing is left to offer, or
// when there are more than maxEntries entries ("more than N files and folders: offer fewer
// at once").
ScanResult scanPaths(const std::vector<std::filesystem::path>& paths,
                     const ScanOptions& options = {});

// SHA-256 of `data`.
ChunkHash sha256(std::span<const std::uint8_t> data);

// The absolute source file of a manifest path, from the scan's roots; empty when the path's
// first component is not one of them.
std::filesystem::path
sourceOf(const std::vector<std::pair<std::string, std::filesystem::path>>& roots,
         std::string_view manifestPath);

} // namespace parley::node::transfer
