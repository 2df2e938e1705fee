// ReceiveCore: which chunks an incoming transfer asks for next, and what each answer means
// (DESIGN.md §8). Sans-IO: the manager gives it the answers and the time, and carries out what
// it says (open a chunk stream, reset one that timed out, rename a finished file). It keeps
// the per-file progress that the manager persists, so a transfer resumes from its verified
// chunks and no verified byte is fetched twice.
//
// Chunks go in manifest order, several at once, bounded in count and in bytes (the receiver
// holds each chunk in memory until it is verified and written). A chunk that fails its hash is
// fetched again, up to maxTries; then its file fails and the rest goes on.
#pragma once

#include "node/transfer/manifest.h"
#include "node/transfer/protocol.h"
#include "node/transfer/transfer_store.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace parley::node::transfer {

struct ReceiveLimits {
    std::size_t maxChunks = 16;                       // requests in flight
    std::uint64_t maxBytes = 32ull * 1024 * 1024;     // their bytes (at least one chunk goes)
    int maxTries = 3;                                 // fetches of one chunk that fail its hash
    std::chrono::milliseconds requestTimeout{30'000}; // no answer by then: asked again
    std::chrono::milliseconds busyBackoff{1'000};     // after notServing
};

enum class ChunkOutcome {
    verified,    // matched its hash and is written
    badHash,     // arrived and did not match (or had the wrong length)
    lost,        // the stream or link went before the answer: ask again, no try counted
    changed,     // the sender says the file changed on its disk
    unknown,     // the sender does not know it
    readError,   // the sender could not read it
    notServing,  // the sender is busy or paused: ask again after a while
    writeFailed, // writing it here failed (the reason says why): the transfer pauses
};

class ReceiveCore {
public:
    using Clock = std::chrono::steady_clock;

    // `files` are the persisted rows (one per manifest file; missing ones start pending).
    ReceiveCore(const Manifest& manifest, std::vector<FileProgress> files, ReceiveLimits limits);

    // The requests to send now (none while paused, or while backing off).
    std::vector<ChunkRequest> next(Clock::time_point now);

    struct Result {
        std::optional<std::uint32_t> fileComplete; // every chunk verified: finalize it
        std::optional<std::uint32_t> fileFailed;   // reason in file(i).reason
        bool pause = false;                        // writeFailed: pause with `reason`
        std::string reason;
    };
    // The answer to a request that next() returned (an unknown one is ignored).
    Result done(const ChunkRequest& request, ChunkOutcome outcome, const std::string& reason,
                Clock::time_point now);
    // The manager put a complete file in place (ok) or could not (reason).
    void finalized(std::uint32_t file, bool ok, const std::string& reason);
    // Files whose chunks are all verified but that are not in place yet (empty files, or a
    // crash between the last chunk and the rename): finalize them.
    std::vector<std::uint32_t> readyFiles() const;

    // Requests whose answer is overdue: forgotten here (to be asked again); the manager resets
    // their streams.
    std::vector<ChunkRequest> expired(Clock::time_point now);
    std::optional<Clock::time_point> nextDeadline() const;
    // Every request in flight is forgotten (the link went, or the transfer pauses).
    std::vector<ChunkRequest> dropInFlight();
    void setPaused(bool paused) { paused_ = paused; }
    bool paused() const { return paused_; }

    // The file's progress as it is to be persisted.
    const FileProgress& file(std::uint32_t index) const { return files_.at(index); }
    std::uint64_t doneBytes() const { return doneBytes_; }
    std::size_t inFlight() const { return inFlight_.size(); }
    bool finished() const; // every file done, skipped or failed, nothing in flight
    std::size_t failedFiles() const;

private:
    struct Flight {
        std::uint32_t length = 0;
        Clock::time_point deadline;
    };
    bool chunkDone(std::uint32_t file, std::uint32_t chunk) const;
    bool fileComplete(std::uint32_t file) const;
    std::optional<ChunkRequest> nextFresh();
    void fail(std::uint32_t file, const std::string& reason);

    const Manifest& manifest_;
    std::map<std::uint32_t, FileProgress> files_;      // manifest index -> progress (files only)
    std::map<std::uint32_t, std::uint32_t> remaining_; // chunks still to verify, per file
    ReceiveLimits limits_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, Flight> inFlight_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, int> tries_;
    std::deque<ChunkRequest> again_; // asked again before fresh ones
    std::uint64_t inFlightBytes_ = 0;
    std::uint64_t doneBytes_ = 0;
    std::map<std::uint32_t, FileProgress>::iterator cursorFile_;
    std::uint32_t cursorChunk_ = 0;
    std::optional<Clock::time_point> backoffUntil_;
    bool paused_ = false;
};

} // namespace parley::node::transfer
