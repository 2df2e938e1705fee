// ReceiveCore: the receiver's chunk schedule (receive_core.h).
#include "node/transfer/receive_core.h"

namespace parley::node::transfer {

namespace {

bool bit(const std::vector<std::uint8_t>& bits, std::uint32_t i) {
    return i / 8 < bits.size() && (bits[i / 8] >> (i % 8)) & 1;
}

void setBit(std::vector<std::uint8_t>& bits, std::uint32_t i) {
    if (bits.size() <= i / 8)
        bits.resize(i / 8 + 1, 0);
    bits[i / 8] = static_cast<std::uint8_t>(bits[i / 8] | (1u << (i % 8)));
}

} // namespace

ReceiveCore::ReceiveCore(const Manifest& manifest, std::vector<FileProgress> files,
                         ReceiveLimits limits)
    : manifest_(manifest), limits_(limits) {
    std::map<std::uint32_t, FileProgress> given;
    for (auto& f : files)
        given[f.index] = std::move(f);
    for (std::uint32_t i = 0; i < manifest_.entries.size(); ++i) {
        const auto& e = manifest_.entries[i];
        if (e.folder)
            continue;
        auto it = given.find(i);
        FileProgress p =
            it != given.end() ? std::move(it->second) : FileProgress{i, "pending", {}, {}};
        p.index = i;
        // Bits past the file's chunks mean nothing; a shorter bitmap is padded when set.
        p.chunks.resize((e.chunks() + 7) / 8, 0);
        std::uint32_t left = 0;
        for (std::uint32_t c = 0; c < e.chunks(); ++c) {
            if (bit(p.chunks, c))
                doneBytes_ += e.chunkLength(c);
            else
                ++left;
        }
        if (p.state == "done")
            left = 0;
        remaining_[i] = left;
        files_[i] = std::move(p);
    }
    cursorFile_ = files_.begin();
}

bool ReceiveCore::chunkDone(std::uint32_t file, std::uint32_t chunk) const {
    return bit(files_.at(file).chunks, chunk);
}

bool ReceiveCore::fileComplete(std::uint32_t file) const {
    return remaining_.at(file) == 0;
}

void ReceiveCore::fail(std::uint32_t file, const std::string& reason) {
    auto& f = files_.at(file);
    f.state = "failed";
    f.reason = reason;
}

std::optional<ChunkRequest> ReceiveCore::nextFresh() {
    while (cursorFile_ != files_.end()) {
        auto index = cursorFile_->first;
        const auto& e = manifest_.entries[index];
        if (cursorFile_->second.state == "pending") {
            while (cursorChunk_ < e.chunks()) {
                auto c = cursorChunk_++;
                if (!chunkDone(index, c) && !inFlight_.contains({index, c}))
                    return ChunkRequest{index, c};
            }
        }
        ++cursorFile_;
        cursorChunk_ = 0;
    }
    return std::nullopt;
}

std::vector<ChunkRequest> ReceiveCore::next(Clock::time_point now) {
    std::vector<ChunkRequest> out;
    if (paused_ || (backoffUntil_ && now < *backoffUntil_))
        return out;
    backoffUntil_.reset();
    while (inFlight_.size() < limits_.maxChunks) {
        std::optional<ChunkRequest> r;
        while (!again_.empty() && !r) {
            auto a = again_.front();
            again_.pop_front();
            if (files_.at(a.file).state == "pending" && !chunkDone(a.file, a.chunk) &&
                !inFlight_.contains({a.file, a.chunk}))
                r = a;
        }
        if (!r)
            r = nextFresh();
        if (!r)
            break;
        auto length = manifest_.entries[r->file].chunkLength(r->chunk);
        // At least one chunk is always allowed, however large.
        if (!inFlight_.empty() && inFlightBytes_ + length > limits_.maxBytes) {
            again_.push_front(*r);
            break;
        }
        inFlight_[{r->file, r->chunk}] = Flight{length, now + limits_.requestTimeout};
        inFlightBytes_ += length;
        out.push_back(*r);
    }
    return out;
}

ReceiveCore::Result ReceiveCore::done(const ChunkRequest& r, ChunkOutcome outcome,
                                      const std::string& reason, Clock::time_point now) {
    Result result;
    auto it = inFlight_.find({r.file, r.chunk});
    if (it == inFlight_.end())
        return result;
    inFlightBytes_ -= it->second.length;
    inFlight_.erase(it);
    auto& f = files_.at(r.file);
    if (f.state != "pending")
        return result;
    switch (outcome) {
    case ChunkOutcome::verified:
        if (!chunkDone(r.file, r.chunk)) {
            setBit(f.chunks, r.chunk);
            doneBytes_ += manifest_.entries[r.file].chunkLength(r.chunk);
            if (--remaining_.at(r.file) == 0)
                result.fileComplete = r.file;
        }
        break;
    case ChunkOutcome::badHash:
        if (++tries_[{r.file, r.chunk}] >= limits_.maxTries) {
            fail(r.file, "chunk " + std::to_string(r.chunk) + " did not match its hash " +
                             std::to_string(limits_.maxTries) + " times");
            result.fileFailed = r.file;
        } else {
            again_.push_back(r);
        }
        break;
    case ChunkOutcome::lost:
        again_.push_back(r);
        break;
    case ChunkOutcome::notServing:
        again_.push_back(r);
        backoffUntil_ = now + limits_.busyBackoff;
        break;
    case ChunkOutcome::changed:
        fail(r.file, reason.empty() ? "the file changed on the sender's disk after it was offered"
                                    : reason);
        result.fileFailed = r.file;
        break;
    case ChunkOutcome::unknown:
    case ChunkOutcome::readError:
        fail(r.file, reason.empty() ? "the sender could not read it" : reason);
        result.fileFailed = r.file;
        break;
    case ChunkOutcome::writeFailed:
        again_.push_back(r);
        paused_ = true;
        result.pause = true;
        result.reason = reason;
        break;
    }
    return result;
}

void ReceiveCore::finalized(std::uint32_t file, bool ok, const std::string& reason) {
    auto& f = files_.at(file);
    if (ok) {
        f.state = "done";
        f.reason.clear();
    } else {
        fail(file, reason);
    }
}

std::vector<std::uint32_t> ReceiveCore::readyFiles() const {
    std::vector<std::uint32_t> out;
    for (const auto& [index, f] : files_)
        if (f.state == "pending" && fileComplete(index))
            out.push_back(index);
    return out;
}

std::vector<ChunkRequest> ReceiveCore::expired(Clock::time_point now) {
    std::vector<ChunkRequest> out;
    for (auto it = inFlight_.begin(); it != inFlight_.end();) {
        if (it->second.deadline <= now) {
            ChunkRequest r{it->first.first, it->first.second};
            inFlightBytes_ -= it->second.length;
            it = inFlight_.erase(it);
            again_.push_back(r);
            out.push_back(r);
        } else {
            ++it;
        }
    }
    return out;
}

std::optional<ReceiveCore::Clock::time_point> ReceiveCore::nextDeadline() const {
    std::optional<Clock::time_point> first = backoffUntil_;
    for (const auto& [key, flight] : inFlight_)
        if (!first || flight.deadline < *first)
            first = flight.deadline;
    return first;
}

std::vector<ChunkRequest> ReceiveCore::dropInFlight() {
    std::vector<ChunkRequest> out;
    for (const auto& [key, flight] : inFlight_) {
        out.push_back(ChunkRequest{key.first, key.second});
        again_.push_back(out.back());
    }
    inFlight_.clear();
    inFlightBytes_ = 0;
    return out;
}

bool ReceiveCore::finished() const {
    if (!inFlight_.empty())
        return false;
    for (const auto& [index, f] : files_)
        if (f.state == "pending")
            return false;
    return true;
}

std::size_t ReceiveCore::failedFiles() const {
    std::size_t n = 0;
    for (const auto& [index, f] : files_)
        n += f.state == "failed" ? 1 : 0;
    return n;
}

} // namespace parley::node::transfer
