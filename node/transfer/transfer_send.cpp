// TransferManager, the sender's side: scanning an offer, sending it until the receiver has
// stored it, and serving the chunks it asks for from the disk thread, within serveBytes.
#include "dht/hex.h"
#include "node/transfer/transfers_internal.h"

#include <asio/post.hpp>
#include <gnutls/crypto.h>
#include <spdlog/spdlog.h>

namespace parley::node {

namespace {

bool servable(const std::string& state) {
    return state == "offered" || state == "accepted" || state == "transferring" ||
           state == "verifying";
}

// "photos", "photos and 2 more".
std::string offerName(const tr::ScanResult& scan) {
    if (scan.roots.empty())
        return {};
    auto name = scan.roots.front().first;
    if (scan.roots.size() > 1)
        name += " and " + std::to_string(scan.roots.size() - 1) + " more";
    return name;
}

} // namespace

void TransferManager::offer(const dht::ContactId& to, std::vector<std::filesystem::path> paths,
                            std::string message, std::function<void(const OfferResult&)> done) {
    auto& s = *impl_;
    auto fail = [&](const std::string& error) {
        OfferResult r;
        r.error = error;
        asio::post(s.io, [done, r] { done(r); });
    };
    if (!s.running)
        return fail("the node is stopping");
    if (!s.contacts.isAccepted(to))
        return fail(to.shortHex() + " is not an accepted contact: files go only to contacts");
    if (paths.empty())
        return fail("nothing to offer: name at least one file or folder");
    if (message.size() > tr::kMaxOfferMessage)
        return fail("the message is too long (at most " + std::to_string(tr::kMaxOfferMessage) +
                    " bytes)");
    for (const auto& p : paths)
        if (!p.is_absolute())
            return fail("not an absolute path: " + p.string());
    s.disk->post([weak = impl_->weak_from_this(), to, paths = std::move(paths),
                  message = std::move(message), done = std::move(done), &io = s.io]() mutable {
        auto scan = std::make_shared<tr::ScanResult>(tr::scanPaths(paths));
        asio::post(io, [weak, to, scan, message = std::move(message), done = std::move(done)] {
            auto self = weak.lock();
            OfferResult r;
            r.skipped = scan->skipped;
            if (!self || !self->running) {
                r.error = "the node is stopping";
                return done(r);
            }
            if (!scan->ok()) {
                r.error = scan->error;
                return done(r);
            }
            Impl::Outgoing out;
            auto& rec = out.record;
            gnutls_rnd(GNUTLS_RND_NONCE, rec.id.data(), rec.id.size());
            rec.contact = to;
            rec.outgoing = true;
            rec.state = "offered";
            rec.name = offerName(*scan);
            rec.message = message;
            rec.files = scan->manifest.files();
            rec.totalBytes = scan->manifest.totalBytes();
            for (const auto& [name, path] : scan->roots)
                rec.roots += name + "\t" + path.string() + "\n";
            rec.createdMs = rec.updatedMs = self->nowMs();
            out.roots = scan->roots;
            std::vector<std::uint8_t> manifest;
            tr::encodeManifest(scan->manifest, manifest);
            try {
                self->store->add(rec, manifest);
            } catch (const StoreError& e) {
                r.error = e.what();
                return done(r);
            }
            out.manifest = std::make_shared<const tr::Manifest>(std::move(scan->manifest));
            auto id = rec.id;
            auto [it, added] = self->outgoing.emplace(id, std::move(out));
            r.transfer = self->summarize(it->second.record);
            self->emit(TransferEvent::Kind::offered, it->second.record);
            if (self->links.connected(to))
                self->sendOffer(it->second);
            else
                self->ensureLink(to);
            done(r);
        });
    });
}

std::shared_ptr<const tr::Manifest> TransferManager::Impl::manifestOf(const tr::TransferId& id) {
    auto bytes = store->manifest(id);
    auto manifest = std::make_shared<tr::Manifest>();
    if (tr::decodeManifest(bytes, *manifest) != tr::ManifestError::ok)
        return nullptr;
    return manifest;
}

void TransferManager::Impl::sendOffer(Outgoing& out) {
    if (offersInFlight.contains(out.record.id))
        return;
    auto opened = links.openStream(out.record.contact, tr::kOfferStream, out.record.id);
    if (opened.error != LinkManager::StreamError::ok)
        return;
    auto bytes = store->manifest(out.record.id);
    std::vector<std::uint8_t> prefix;
    tr::encodeOfferPrefix(out.record.message, prefix);
    links.writeStream(opened.handle, prefix);
    links.writeStream(opened.handle, bytes, true);
    offersOut[keyOf(opened.handle)] = OfferOut{out.record.id, {}};
    offersInFlight.insert(out.record.id);
    count("offers_sent");
}

void TransferManager::Impl::onOfferAnswer(const LinkManager::StreamHandle& h,
                                          std::span<const std::uint8_t> data, bool fin) {
    auto it = offersOut.find(keyOf(h));
    links.consumeStream(h, data.size());
    it->second.answer.insert(it->second.answer.end(), data.begin(), data.end());
    if (it->second.answer.size() > tr::kMaxControlSize) {
        links.resetStream(h, 0x201);
        offersInFlight.erase(it->second.id);
        offersOut.erase(it);
        return;
    }
    if (!fin)
        return;
    auto id = it->second.id;
    auto answer = tr::decodeAnswer(it->second.answer);
    offersInFlight.erase(id);
    offersOut.erase(it);
    auto out = outgoing.find(id);
    if (!answer || out == outgoing.end())
        return;
    auto& rec = out->second.record;
    if (answer->ok) {
        if (!rec.offerDelivered) {
            rec.offerDelivered = true;
            save(rec);
        }
    } else if (rec.state == "offered") {
        setState(rec, "failed", "the receiver refused the offer: " + answer->reason);
    }
}

void TransferManager::Impl::onOfferOutClosed(const LinkManager::StreamHandle& h) {
    auto it = offersOut.find(keyOf(h));
    if (it == offersOut.end())
        return;
    offersInFlight.erase(it->second.id); // unanswered: sent again on the next link
    offersOut.erase(it);
}

// --- chunks ------------------------------------------------------------------------------

void TransferManager::Impl::onServeOpened(const LinkManager::StreamHandle& h,
                                          std::span<const std::uint8_t> id) {
    if (id.size() != 16) {
        count("chunk_requests_refused");
        links.resetStream(h, 0x201);
        return;
    }
    ChunkServe serve;
    std::copy(id.begin(), id.end(), serve.id.begin());
    serve.handle = h;
    serving[keyOf(h)] = std::move(serve);
}

void TransferManager::Impl::onServeData(const LinkManager::StreamHandle& h,
                                        std::span<const std::uint8_t> data, bool fin) {
    auto key = keyOf(h);
    auto it = serving.find(key);
    if (it == serving.end())
        return;
    links.consumeStream(h, data.size());
    auto& req = it->second.request;
    req.insert(req.end(), data.begin(), data.end());
    if (req.size() > tr::kChunkRequestSize) {
        count("chunk_requests_refused");
        links.resetStream(h, 0x201);
        serving.erase(it);
        return;
    }
    if (fin)
        serve(key);
}

void TransferManager::Impl::refuseChunk(const StreamKey& key, tr::ChunkStatus status,
                                        const std::string& reason) {
    auto& sv = serving.at(key);
    std::vector<std::uint8_t> bytes;
    tr::encodeChunkAnswerPrefix(status, reason, bytes);
    links.writeStream(sv.handle, bytes, true);
}

void TransferManager::Impl::serve(const StreamKey& key) {
    auto& sv = serving.at(key);
    if (!sv.queued)
        count("chunk_requests_received");
    auto request = tr::decodeChunkRequest(sv.request);
    auto out = outgoing.find(sv.id);
    if (!request || out == outgoing.end() || out->second.record.contact != sv.handle.peer) {
        count("chunk_requests_refused");
        return refuseChunk(key, tr::ChunkStatus::unknown, "unknown transfer");
    }
    auto& rec = out->second.record;
    // Cancelled too: the receiver waits for our cancel instead of failing the file meanwhile.
    if (rec.state == "paused" || rec.state == "cancelled")
        return refuseChunk(key, tr::ChunkStatus::notServing, rec.state);
    if (!servable(rec.state))
        return refuseChunk(key, tr::ChunkStatus::unknown, "the transfer is " + rec.state);
    if (!out->second.manifest)
        out->second.manifest = manifestOf(sv.id);
    auto manifest = out->second.manifest;
    if (!manifest || request->file >= manifest->entries.size() ||
        manifest->entries[request->file].folder ||
        request->chunk >= manifest->entries[request->file].chunks()) {
        count("chunk_requests_refused");
        return refuseChunk(key, tr::ChunkStatus::unknown, "no such chunk");
    }
    const auto& entry = manifest->entries[request->file];
    auto length = entry.chunkLength(request->chunk);
    // Memory stays bounded however many chunks the receiver asks for at once.
    if (servingBytes > 0 && servingBytes + length > options.serveBytes) {
        if (!sv.queued) {
            sv.queued = true;
            serveQueue.push_back(key);
        }
        return;
    }
    sv.queued = false;
    sv.reserved = length;
    servingBytes += length;
    if (rec.state == "offered" || rec.state == "accepted")
        setState(rec, "transferring");
    auto source = tr::sourceOf(out->second.roots, entry.path);
    disk->post([weak = weak_from_this(), key, manifest, file = request->file,
                chunk = request->chunk, source, &ioContext = io] {
        auto read =
            std::make_shared<tr::ReadResult>(tr::readChunk(source, manifest->entries[file], chunk));
        asio::post(ioContext, [weak, key, read] {
            auto self = weak.lock();
            if (!self || !self->running)
                return;
            auto it = self->serving.find(key);
            if (it == self->serving.end())
                return; // the stream went meanwhile
            if (read->status != tr::ReadResult::Status::ok) {
                self->count("chunks_unreadable");
                return self->refuseChunk(key,
                                         read->status == tr::ReadResult::Status::changed
                                             ? tr::ChunkStatus::changed
                                             : tr::ChunkStatus::readError,
                                         read->reason);
            }
            std::vector<std::uint8_t> prefix;
            tr::encodeChunkAnswerPrefix(tr::ChunkStatus::ok, {}, prefix);
            self->links.writeStream(it->second.handle, prefix);
            self->links.writeStream(it->second.handle, read->bytes, true);
            self->count("chunks_served");
            self->count("bytes_served", read->bytes.size());
            if (auto o = self->outgoing.find(it->second.id); o != self->outgoing.end())
                self->progressed(o->second.record, read->bytes.size());
        });
    });
}

void TransferManager::Impl::onServeClosed(const LinkManager::StreamHandle& h) {
    auto it = serving.find(keyOf(h));
    if (it == serving.end())
        return;
    servingBytes -= it->second.reserved;
    serving.erase(it);
    drainServeQueue();
}

void TransferManager::Impl::drainServeQueue() {
    while (!serveQueue.empty()) {
        auto key = serveQueue.front();
        auto it = serving.find(key);
        if (it == serving.end() || !it->second.queued) {
            serveQueue.pop_front();
            continue;
        }
        serve(key);
        if (serving.contains(key) && serving.at(key).queued)
            return; // still over the budget
        serveQueue.pop_front();
    }
}

} // namespace parley::node
