// TransferManager, the receiver's side: storing offers, accepting them into a folder, pulling
// chunks as ReceiveCore says, verifying and writing them on the disk thread, and putting each
// file in place once it is whole.
#include "dht/hex.h"
#include "node/transfer/transfers_internal.h"

#include <asio/post.hpp>
#include <set>
#include <spdlog/spdlog.h>

namespace parley::node {

namespace {

constexpr std::uint64_t kChunkResetCode = 0x202;

// "photos" -> "photos (2)", keeping an extension of a file name: "a.txt" -> "a (2).txt".
std::string numbered(const std::string& name, int n, bool folder) {
    auto dot = folder ? std::string::npos : name.rfind('.');
    if (dot == std::string::npos || dot == 0)
        return name + " (" + std::to_string(n) + ")";
    return name.substr(0, dot) + " (" + std::to_string(n) + ")" + name.substr(dot);
}

std::string topOf(const std::string& path) {
    return path.substr(0, path.find('/'));
}

} // namespace

// --- offers ------------------------------------------------------------------------------

void TransferManager::Impl::onOfferOpened(const LinkManager::StreamHandle& h,
                                          std::span<const std::uint8_t> id) {
    if (id.size() != 16) {
        count("offers_refused");
        links.resetStream(h, 0x201);
        return;
    }
    OfferIn in;
    std::copy(id.begin(), id.end(), in.id.begin());
    in.peer = h.peer;
    offersIn[keyOf(h)] = std::move(in);
}

void TransferManager::Impl::onOfferData(const LinkManager::StreamHandle& h,
                                        std::span<const std::uint8_t> data, bool fin) {
    auto it = offersIn.find(keyOf(h));
    if (it == offersIn.end())
        return;
    links.consumeStream(h, data.size());
    if (it->second.refused)
        return;
    auto& bytes = it->second.bytes;
    if (bytes.size() + data.size() > tr::kMaxManifestSize + 3 + tr::kMaxOfferMessage) {
        count("offers_refused");
        std::vector<std::uint8_t> out;
        tr::encodeAnswer({false, std::string(tr::describe(tr::ManifestError::tooLarge))}, out);
        links.writeStream(h, out, true);
        it->second.refused = true;
        std::vector<std::uint8_t>().swap(bytes);
        return;
    }
    bytes.insert(bytes.end(), data.begin(), data.end());
    if (!fin && !it->second.headerChecked) {
        // A manifest of too many entries (or not one at all) is refused from its first bytes,
        // not after up to 64 MiB of it have come: the answer goes at once, and what follows
        // is read (the stream must end for its credit to come back) and dropped.
        std::string error;
        auto prefix = tr::decodeOfferPrefix(bytes, &error);
        auto header = tr::ManifestError::truncated;
        if (prefix)
            header = tr::checkManifestHeader(
                std::span<const std::uint8_t>(bytes).subspan(prefix->manifestOffset));
        if (!error.empty() ||
            (header != tr::ManifestError::ok && header != tr::ManifestError::truncated)) {
            count("offers_refused");
            spdlog::warn("refused an offer from {}: {}", h.peer.shortHex(),
                         error.empty() ? tr::describe(header) : error);
            std::vector<std::uint8_t> out;
            tr::encodeAnswer({false, error.empty() ? std::string(tr::describe(header)) : error},
                             out);
            links.writeStream(h, out, true);
            it->second.refused = true;
            std::vector<std::uint8_t>().swap(bytes);
            return;
        }
        it->second.headerChecked = header == tr::ManifestError::ok;
    }
    if (!fin)
        return;
    auto answer = storeOffer(h.peer, it->second.id, bytes);
    offersIn.erase(it);
    std::vector<std::uint8_t> out;
    tr::encodeAnswer(answer, out);
    links.writeStream(h, out, true);
}

void TransferManager::Impl::onOfferInClosed(const LinkManager::StreamHandle& h) {
    offersIn.erase(keyOf(h));
}

tr::Answer TransferManager::Impl::storeOffer(const dht::ContactId& peer, const tr::TransferId& id,
                                             std::span<const std::uint8_t> bytes) {
    if (auto known = store->get(id)) {
        // The sender did not hear our answer and sent it again; a clash of ids with another
        // contact's is refused.
        if (known->contact == peer && !known->outgoing)
            return {true, {}};
        count("offers_refused");
        return {false, "transfer id in use"};
    }
    std::string error;
    auto prefix = tr::decodeOfferPrefix(bytes, &error);
    if (!prefix) {
        count("offers_refused");
        return {false, error.empty() ? "truncated offer" : error};
    }
    auto manifestBytes = bytes.subspan(prefix->manifestOffset);
    tr::Manifest manifest;
    std::size_t bad = 0;
    auto status = tr::decodeManifest(manifestBytes, manifest, &bad);
    if (status != tr::ManifestError::ok) {
        count("offers_refused");
        spdlog::warn("refused an offer from {}: {} (entry {})", peer.shortHex(),
                     tr::describe(status), bad);
        return {false, std::string(tr::describe(status))};
    }
    tr::TransferRecord rec;
    rec.id = id;
    rec.contact = peer;
    rec.outgoing = false;
    rec.state = "offered";
    rec.message = prefix->message;
    rec.files = manifest.files();
    rec.totalBytes = manifest.totalBytes();
    std::set<std::string> tops;
    for (const auto& e : manifest.entries)
        tops.insert(topOf(e.path));
    rec.name = tops.empty() ? std::string("(empty)") : *tops.begin();
    if (tops.size() > 1)
        rec.name += " and " + std::to_string(tops.size() - 1) + " more";
    rec.createdMs = rec.updatedMs = nowMs();
    store->add(rec, manifestBytes);
    count("offers_received");
    Incoming in;
    in.record = rec;
    auto [it, added] = incoming.emplace(id, std::move(in));
    emit(TransferEvent::Kind::offered, it->second.record);
    if (auto dir = store->autoAccept(peer)) {
        auto error2 = prepareAccept(it->second, *dir);
        if (!error2.empty())
            spdlog::warn("could not accept {} from {} into {}: {}", rec.name, peer.shortHex(), *dir,
                         error2);
    }
    return {true, {}};
}

// --- accept ------------------------------------------------------------------------------

TransferCommandResult TransferManager::accept(const tr::TransferId& id,
                                              std::optional<std::filesystem::path> dir) {
    auto& s = *impl_;
    auto it = s.incoming.find(id);
    if (it == s.incoming.end()) {
        auto known = s.store->get(id);
        if (!known)
            return {"no transfer with that id", {}};
        return {known->outgoing ? "that is a transfer you offered; the receiver accepts it"
                                : "the transfer is " + known->state + " already",
                s.summarize(*known)};
    }
    auto& in = it->second;
    if (in.record.state != "offered")
        return {"the transfer is " + in.record.state + " already", s.summarize(in.record)};
    auto target = dir.value_or(s.options.downloads);
    if (target.empty())
        return {"no folder to accept into: give one", s.summarize(in.record)};
    auto error = s.prepareAccept(in, target);
    return {error, s.summarize(in.record)};
}

TransferCommandResult TransferManager::decline(const tr::TransferId& id) {
    auto& s = *impl_;
    auto it = s.incoming.find(id);
    if (it == s.incoming.end() || it->second.record.state != "offered") {
        auto known = s.store->get(id);
        if (!known)
            return {"no transfer with that id", {}};
        return {"only an offer you received and did not accept can be declined",
                s.summarize(*known)};
    }
    s.setState(it->second.record, "declined", "you declined it");
    s.owe(it->second.record, tr::Op::decline);
    return {{}, s.summarize(it->second.record)};
}

// Checks the entries against the destination, gives each its target path, creates the file
// rows and starts pulling. An empty string on success, else why nothing was accepted.
std::string TransferManager::Impl::prepareAccept(Incoming& in, const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_directory(dir, ec))
        return "cannot use " + dir.string() +
               " as the destination: " + (ec ? ec.message() : "not a folder");
    auto manifest = manifestOf(in.record.id);
    if (!manifest)
        return "the stored offer is damaged";
    auto free = tr::freeSpace(dir);
    if (free && *free < in.record.totalBytes)
        return "not enough free space in " + dir.string() + ": the transfer needs " +
               std::to_string(in.record.totalBytes) + " bytes, " + std::to_string(*free) +
               " are free";
    // Top-level names that exist in the destination get a number: nothing is overwritten.
    std::map<std::string, std::string> renamed;
    std::vector<tr::FileProgress> files;
    std::vector<std::string> targets(manifest->entries.size());
    // Names are compared as the destination compares them: on a folder that does not tell
    // case apart, "Photo.jpg" after "photo.jpg" would overwrite it.
    bool folded = tr::caseInsensitive(dir);
    auto nameKey = [folded](const std::string& path) { return folded ? tr::foldCase(path) : path; };
    std::set<std::string> seen, fileTargets;
    for (std::uint32_t i = 0; i < manifest->entries.size(); ++i) {
        const auto& e = manifest->entries[i];
        auto problem = tr::checkRelativePath(e.path);
        if (!problem && !seen.insert(nameKey(e.path)).second)
            problem = folded ? "another entry has the same name but for case, and the "
                               "destination folder does not tell case apart"
                             : "a second entry with the same name";
        if (!problem) {
            auto top = topOf(e.path);
            auto r = renamed.find(top);
            if (r == renamed.end()) {
                auto name = top;
                bool folder = e.folder || e.path.size() > top.size();
                for (int n = 2; std::filesystem::symlink_status(dir / name, ec).type() !=
                                std::filesystem::file_type::not_found;
                     ++n)
                    name = numbered(top, n, folder);
                r = renamed.emplace(top, name).first;
            }
            targets[i] = r->second + e.path.substr(top.size());
            // A file cannot also be the folder of another entry.
            for (auto parent = targets[i].rfind('/'); parent != std::string::npos && !problem;
                 parent = targets[i].rfind('/', parent - 1)) {
                if (fileTargets.contains(nameKey(targets[i].substr(0, parent))))
                    problem = "its folder is also a file in this offer";
                if (parent == 0)
                    break;
            }
            if (!problem && !e.folder)
                fileTargets.insert(nameKey(targets[i]));
        }
        if (problem)
            targets[i].clear();
        if (!e.folder)
            files.push_back(
                tr::FileProgress{i, problem ? "skipped" : "pending", problem.value_or(""), {}});
    }
    in.record.dest = dir.string();
    in.record.roots.clear();
    for (const auto& [from, to] : renamed)
        if (from != to)
            in.record.roots += from + "\t" + to + "\n";
    // The rows first: a crash before the state is saved leaves an offer that can be accepted
    // again (which writes the rows anew).
    store->setFiles(in.record.id, files);
    in.record.state = "accepted";
    save(in.record);
    emit(TransferEvent::Kind::state, in.record);
    owe(in.record, tr::Op::accepted);
    in.manifest = manifest;
    in.targets = std::move(targets);
    startReceiving(in);
    return {};
}

// Builds the core from the stored progress (after accept, or after a restart) and pulls.
bool TransferManager::Impl::startReceiving(Incoming& in) {
    if (!in.manifest) {
        in.manifest = manifestOf(in.record.id);
        if (!in.manifest) {
            setState(in.record, "failed", "the stored offer is damaged");
            return false;
        }
    }
    if (in.targets.empty()) {
        // After a restart: the targets again, from the renames kept in `roots`.
        std::map<std::string, std::string> renamed;
        for (std::size_t at = 0; at < in.record.roots.size();) {
            auto end = in.record.roots.find('\n', at);
            auto line = in.record.roots.substr(at, end - at);
            auto tab = line.find('\t');
            if (tab != std::string::npos)
                renamed[line.substr(0, tab)] = line.substr(tab + 1);
            at = end == std::string::npos ? in.record.roots.size() : end + 1;
        }
        in.targets.resize(in.manifest->entries.size());
        for (std::uint32_t i = 0; i < in.manifest->entries.size(); ++i) {
            const auto& path = in.manifest->entries[i].path;
            if (tr::checkRelativePath(path))
                continue;
            auto top = topOf(path);
            auto r = renamed.find(top);
            in.targets[i] = (r == renamed.end() ? top : r->second) + path.substr(top.size());
        }
    }
    in.core = std::make_unique<tr::ReceiveCore>(*in.manifest, store->files(in.record.id),
                                                options.receive);
    in.record.doneBytes = in.core->doneBytes();
    if (in.record.state == "paused")
        in.core->setPaused(true);
    else if (in.record.state == "accepted" || in.record.state == "verifying")
        setState(in.record, "transferring");
    for (auto file : in.core->readyFiles())
        finalize(in, file);
    pump(in);
    maybeFinish(in);
    return true;
}

std::filesystem::path TransferManager::Impl::partOf(const Incoming& in, std::uint32_t file) const {
    return tr::partialPath(std::filesystem::path(in.record.dest) / in.targets[file],
                           dht::toHex(in.record.id).substr(0, 8));
}

// --- chunks ------------------------------------------------------------------------------

void TransferManager::Impl::pump(Incoming& in) {
    if (!in.core || in.record.state != "transferring" || !links.connected(in.record.contact))
        return;
    auto requests = in.core->next(Clock::now());
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const auto& request = requests[i];
        auto opened = links.openStream(in.record.contact, tr::kChunkStream, in.record.id);
        if (opened.error != LinkManager::StreamError::ok) {
            // The peer's stream limit for now: these go again when a stream ends.
            count("chunk_streams_unavailable");
            for (std::size_t j = i; j < requests.size(); ++j)
                in.core->done(requests[j], tr::ChunkOutcome::lost, {}, Clock::now());
            break;
        }
        ChunkFetch fetch;
        fetch.id = in.record.id;
        fetch.request = request;
        fetch.expected = in.manifest->entries[request.file].chunkLength(request.chunk);
        fetching[keyOf(opened.handle)] = std::move(fetch);
        std::vector<std::uint8_t> bytes;
        tr::encodeChunkRequest(request, bytes);
        links.writeStream(opened.handle, bytes, true);
        count("chunk_requests_sent");
    }
}

void TransferManager::Impl::onFetchData(const LinkManager::StreamHandle& h,
                                        std::span<const std::uint8_t> data, bool fin) {
    auto key = keyOf(h);
    auto& f = fetching.at(key);
    links.consumeStream(h, data.size());
    auto in = incoming.find(f.id);
    if (in == incoming.end() || !in->second.core || f.settled)
        return;
    if (!f.answer) {
        f.prefix.insert(f.prefix.end(), data.begin(), data.end());
        bool malformed = false;
        f.answer = tr::decodeChunkAnswerPrefix(f.prefix, &malformed);
        if (malformed || (!f.answer && (fin || f.prefix.size() > 3 + tr::kMaxReasonSize))) {
            count("chunks_malformed");
            f.settled = true;
            settle(in->second, f.request, tr::ChunkOutcome::badHash, {});
            links.resetStream(h, kChunkResetCode);
            fetching.erase(key);
            return;
        }
        if (!f.answer)
            return;
        data = std::span<const std::uint8_t>(f.prefix).subspan(f.answer->size);
        if (f.answer->status != tr::ChunkStatus::ok) {
            static constexpr tr::ChunkOutcome kOutcomes[] = {
                tr::ChunkOutcome::verified, tr::ChunkOutcome::unknown, tr::ChunkOutcome::changed,
                tr::ChunkOutcome::readError, tr::ChunkOutcome::notServing};
            f.settled = true;
            settle(in->second, f.request, kOutcomes[static_cast<int>(f.answer->status)],
                   f.answer->reason);
            return;
        }
        f.bytes.reserve(f.expected);
    }
    if (f.bytes.size() + data.size() > f.expected) {
        count("chunks_oversized");
        f.settled = true;
        settle(in->second, f.request, tr::ChunkOutcome::badHash, {});
        links.resetStream(h, kChunkResetCode);
        fetching.erase(key);
        return;
    }
    f.bytes.insert(f.bytes.end(), data.begin(), data.end());
    if (!fin)
        return;
    f.settled = true;
    if (f.bytes.size() != f.expected) {
        count("chunks_short");
        settle(in->second, f.request, tr::ChunkOutcome::badHash, {});
        return;
    }
    auto file = f.request.file;
    // The file failed while this chunk was on its way (its partial file is being removed):
    // writing it would create the partial again, and nothing would ever remove it.
    if (in->second.core->file(file).state != "pending") {
        settle(in->second, f.request, tr::ChunkOutcome::lost, {});
        return;
    }
    auto part = partOf(in->second, file);
    ++in->second.writing;
    diskThenIncoming(
        f.id,
        [manifest = in->second.manifest, request = f.request, part, bytes = std::move(f.bytes)] {
            return tr::writeChunk(part, manifest->entries[request.file], request.chunk, bytes);
        },
        [request = f.request](Impl& self, Incoming& inc, const tr::WriteResult& written) {
            --inc.writing;
            using S = tr::WriteResult::Status;
            auto outcome = written.status == S::ok        ? tr::ChunkOutcome::verified
                           : written.status == S::badHash ? tr::ChunkOutcome::badHash
                                                          : tr::ChunkOutcome::writeFailed;
            if (outcome == tr::ChunkOutcome::badHash)
                self.count("chunks_bad");
            if (written.diskFull)
                inc.waitingForSpace = true;
            self.settle(inc, request, outcome, written.reason);
        });
}

void TransferManager::Impl::onFetchClosed(const LinkManager::StreamHandle& h) {
    auto it = fetching.find(keyOf(h));
    if (it == fetching.end())
        return;
    auto f = std::move(it->second);
    fetching.erase(it);
    if (f.settled)
        return;
    if (auto in = incoming.find(f.id); in != incoming.end() && in->second.core)
        settle(in->second, f.request, tr::ChunkOutcome::lost, {});
}

void TransferManager::Impl::settle(Incoming& in, const tr::ChunkRequest& request,
                                   tr::ChunkOutcome outcome, const std::string& reason) {
    auto before = in.core->doneBytes();
    bool pending = in.core->file(request.file).state == "pending";
    auto result = in.core->done(request, outcome, reason, Clock::now());
    if (outcome == tr::ChunkOutcome::verified && pending) {
        count("chunks_fetched");
        store->saveFile(in.record.id, in.core->file(request.file));
        progressed(in.record, in.core->doneBytes() - before);
    }
    if (result.fileFailed) {
        store->saveFile(in.record.id, in.core->file(*result.fileFailed));
        disk->post([part = partOf(in, *result.fileFailed)] {
            std::error_code ec;
            std::filesystem::remove(part, ec);
        });
    }
    if (result.fileComplete)
        finalize(in, *result.fileComplete);
    if (result.pause) {
        // Ours to resume: by hand, or by itself once there is space again (onTick).
        stopFetching(in);
        in.record.pausedByPeer = false;
        setState(in.record, "paused", result.reason);
        owe(in.record, tr::Op::pause, result.reason);
        return;
    }
    pump(in);
    maybeFinish(in);
}

void TransferManager::Impl::finalize(Incoming& in, std::uint32_t file) {
    ++in.finalizing;
    auto part = partOf(in, file);
    auto target = std::filesystem::path(in.record.dest) / in.targets[file];
    diskThenIncoming(
        in.record.id,
        [part, target, file, manifest = in.manifest] {
            return tr::finalizeFile(part, target, manifest->entries[file]);
        },
        [file](Impl& self, Incoming& inc, const std::optional<std::string>& error) {
            --inc.finalizing;
            inc.core->finalized(file, !error, error.value_or(""));
            self.store->saveFile(inc.record.id, inc.core->file(file));
            self.maybeFinish(inc);
        });
}

// Every file is in place or failed: the folders get their times, and the transfer ends.
void TransferManager::Impl::maybeFinish(Incoming& in) {
    if (!in.core || in.finishing || !in.core->finished() || in.writing || in.finalizing)
        return;
    in.finishing = true;
    if (in.record.state == "transferring")
        setState(in.record, "verifying");
    diskThenIncoming(
        in.record.id,
        [dest = in.record.dest, targets = in.targets, manifest = in.manifest] {
            return tr::finishFolders(dest, targets, *manifest);
        },
        [](Impl& self, Incoming& inc, const auto& failed) {
            auto problems = inc.core->failedFiles() + failed.size();
            std::string reason;
            if (problems) {
                reason = std::to_string(problems) +
                         (problems == 1 ? " file or folder" : " files or folders") +
                         " could not be received";
                for (const auto& [index, why] : failed)
                    spdlog::warn("transfer {}: {}: {}", dht::toHex(inc.record.id).substr(0, 8),
                                 inc.manifest->entries[index].path, why);
            }
            inc.record.doneBytes = inc.core->doneBytes();
            self.setState(inc.record, problems ? "failed" : "completed", reason);
            self.owe(inc.record, problems ? tr::Op::failed : tr::Op::completed, reason);
            inc.finishing = false;
            // The summary keeps showing which files failed: the core stays while the node runs.
        });
}

// Forgets the chunks in flight (pause, cancel): their streams are reset, the core asks for
// them again later.
void TransferManager::Impl::stopFetching(Incoming& in) {
    if (in.core) {
        in.core->setPaused(true);
        in.core->dropInFlight();
    }
    for (auto it = fetching.begin(); it != fetching.end();) {
        if (it->second.id == in.record.id) {
            links.resetStream({in.record.contact, it->first.first, it->first.second},
                              kChunkResetCode);
            it = fetching.erase(it);
        } else {
            ++it;
        }
    }
}

void TransferManager::Impl::removePartials(Incoming& in) {
    if (!in.manifest || in.targets.empty())
        return;
    std::vector<std::filesystem::path> parts;
    for (std::uint32_t i = 0; i < in.manifest->entries.size(); ++i)
        if (!in.manifest->entries[i].folder && !in.targets[i].empty())
            parts.push_back(partOf(in, i));
    disk->post([parts = std::move(parts)] {
        std::error_code ec;
        for (const auto& p : parts)
            std::filesystem::remove(p, ec);
    });
}

} // namespace parley::node
