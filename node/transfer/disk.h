// The transfer room's disk work: a thread of its own for reading, hashing and writing files,
// so that the node's thread never waits on a disk; and the blocking file operations it runs.
// Every operation returns its failure as a sentence instead of throwing.
#pragma once

#include "node/transfer/manifest.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parley::node::transfer {

// One worker thread with a queue of jobs; each job posts its result back to whoever asked.
class DiskThread {
public:
    DiskThread();
    ~DiskThread(); // finishes the queued jobs, then joins
    DiskThread(const DiskThread&) = delete;
    DiskThread& operator=(const DiskThread&) = delete;
    void post(std::function<void()> job);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

struct ReadResult {
    enum class Status { ok, changed, failed };
    Status status = Status::ok;
    std::string reason;
    std::vector<std::uint8_t> bytes;
};
// Chunk `chunk` of `entry` from `source`, after checking that the file still has the size and
// modification time the manifest says (else `changed`). Never follows a symbolic link.
ReadResult readChunk(const std::filesystem::path& source, const ManifestEntry& entry,
                     std::uint32_t chunk);

struct WriteResult {
    enum class Status { ok, badHash, failed };
    Status status = Status::ok;
    std::string reason;
    bool diskFull = false;
};
// Verifies `bytes` against chunk `chunk`'s hash, then writes them at their offset into the
// partial file `part` (created 0600 with its parent folders if need be).
WriteResult writeChunk(const std::filesystem::path& part, const ManifestEntry& entry,
                       std::uint32_t chunk, const std::vector<std::uint8_t>& bytes);

// The hidden partial file beside `target` while it is being received.
std::filesystem::path partialPath(const std::filesystem::path& target, std::string_view tag);

// Puts a verified file in place: the partial file (created empty for an empty file) gets the
// entry's size, mode and modification time, then is renamed to `target` unless something
// exists there already. nullopt on success, else the reason.
std::optional<std::string> finalizeFile(const std::filesystem::path& part,
                                        const std::filesystem::path& target,
                                        const ManifestEntry& entry);

// Creates the folder entries under `dest` (empty ones included) and gives every folder its
// mode and modification time, deepest first, once the files are in place. The reasons of the
// folders that failed, by manifest index.
std::vector<std::pair<std::uint32_t, std::string>>
finishFolders(const std::filesystem::path& dest, const std::vector<std::string>& targets,
              const Manifest& manifest);

// Bytes a person may still write under `dir` (statvfs f_bavail); nullopt when unknown.
std::optional<std::uint64_t> freeSpace(const std::filesystem::path& dir);

// Whether `dir` is on a file system that does not tell names apart by case (vfat, exFAT, a
// casefolded ext4 folder, a macOS or Windows share): a probe file with a mixed-case name is
// created and looked up in upper case. False when it cannot tell (a read-only folder).
bool caseInsensitive(const std::filesystem::path& dir);

} // namespace parley::node::transfer
