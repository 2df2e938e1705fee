// TransferManager: the commands, the control messages between the two sides, and the tick
// that drives progress events, timeouts and reconnects. Offers and chunks are in
// transfer_send.cpp (sender) and transfer_receive.cpp (receiver).
#include "dht/hex.h"
#include "node/transfer/transfers_internal.h"

#include <asio/post.hpp>
#include <spdlog/spdlog.h>

namespace parley::node {

namespace {

constexpr auto kTick = std::chrono::milliseconds(250);
constexpr auto kReconnectEvery = std::chrono::seconds(5);
constexpr int kMaxDialDoublings = 4; // 5 s, 10, 20, 40, then 80 s at most
constexpr auto kSpaceCheckEvery = std::chrono::seconds(2);
constexpr std::uint64_t kSpaceMargin = 16ull * 1024 * 1024;
constexpr std::size_t kMaxProblems = 100;

} // namespace

TransferManager::Impl::Impl(asio::io_context& ioContext, LinkManager& linkManager,
                            ContactDirectory& directory, std::filesystem::path profile,
                            EventSink sink, TransferOptions opts)
    : io(ioContext), links(linkManager), contacts(directory), profileDir(std::move(profile)),
      events(std::move(sink)), options(std::move(opts)), tick(ioContext) {}

std::int64_t TransferManager::Impl::nowMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

TransferManager::TransferManager(asio::io_context& io, LinkManager& links,
                                 ContactDirectory& contacts,
                                 const std::filesystem::path& profileDir, EventSink events,
                                 TransferOptions options)
    : impl_(std::make_shared<Impl>(io, links, contacts, profileDir, std::move(events),
                                   std::move(options))) {}

TransferManager::~TransferManager() {
    stop();
}

void TransferManager::start() {
    auto& s = *impl_;
    if (s.running)
        return;
    s.store = std::make_unique<tr::TransferStore>(s.profileDir / "transfers.db");
    s.disk = std::make_unique<tr::DiskThread>();
    s.registerStreams();
    s.running = true;
    s.load();
    s.schedule();
}

void TransferManager::stop() {
    auto& s = *impl_;
    if (!s.running)
        return;
    s.running = false;
    s.tick.cancel();
    // Finishes what the disk thread has queued; their answers find the room stopped.
    s.disk.reset();
}

void TransferManager::Impl::load() {
    for (auto& r : store->list()) {
        if (terminal(r.state))
            continue;
        if (r.outgoing) {
            Outgoing out;
            out.record = r;
            for (std::size_t at = 0; at < r.roots.size();) {
                auto end = r.roots.find('\n', at);
                if (end == std::string::npos)
                    end = r.roots.size();
                auto line = r.roots.substr(at, end - at);
                auto tab = line.find('\t');
                if (tab != std::string::npos)
                    out.roots.emplace_back(line.substr(0, tab), line.substr(tab + 1));
                at = end + 1;
            }
            outgoing.emplace(r.id, std::move(out));
        } else {
            Incoming in;
            in.record = r;
            auto [it, added] = incoming.emplace(r.id, std::move(in));
            if (r.state != "offered" && !startReceiving(it->second))
                continue;
        }
    }
}

void TransferManager::Impl::schedule() {
    tick.expires_after(kTick);
    tick.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || !self->running)
            return;
        self->onTick();
        self->schedule();
    });
}

void TransferManager::Impl::onTick() {
    auto now = Clock::now();
    std::set<dht::ContactId> peers;
    for (auto& [id, in] : incoming) {
        if (in.core) {
            for (const auto& r : in.core->expired(now)) {
                count("chunk_timeouts");
                for (auto it = fetching.begin(); it != fetching.end(); ++it)
                    if (it->second.id == id && it->second.request == r) {
                        it->second.settled = true;
                        links.resetStream({in.record.contact, it->first.first, it->first.second},
                                          0x200);
                        fetching.erase(it);
                        break;
                    }
            }
            pump(in);
        }
    }
    // A transfer paused by a full disk goes on once the space for its window is free again.
    if (now - lastSpaceCheck >= kSpaceCheckEvery) {
        lastSpaceCheck = now;
        for (auto& [id, in] : incoming) {
            if (!in.waitingForSpace || in.record.state != "paused" || !in.core)
                continue;
            auto free = tr::freeSpace(in.record.dest);
            auto left = in.record.totalBytes - std::min(in.record.totalBytes, in.record.doneBytes);
            if (!free || *free < std::min(left, options.receive.maxBytes) + kSpaceMargin)
                continue;
            in.waitingForSpace = false;
            spdlog::info("transfer {}: there is space again, resuming",
                         dht::toHex(id).substr(0, 8));
            in.core->setPaused(false);
            setState(in.record, "transferring");
            owe(in.record, tr::Op::resume);
            pump(in);
        }
    }
    // A progress event that waited for its interval goes now.
    for (auto& [id, rate] : rates) {
        auto* record = find(id);
        if (record && record->doneBytes != rate.lastEventBytes &&
            now - rate.lastEvent >= options.progressInterval) {
            rate.lastEvent = now;
            rate.lastEventBytes = record->doneBytes;
            emit(TransferEvent::Kind::progress, *record);
        }
    }
    for (auto& [id, out] : outgoing)
        if (!terminal(out.record.state))
            peers.insert(out.record.contact);
    for (auto& [id, in] : incoming)
        if (!terminal(in.record.state))
            peers.insert(in.record.contact);
    for (const auto& peer : peers)
        if (wantsLink(peer) && !links.connected(peer))
            ensureLink(peer);
}

void TransferManager::Impl::emit(TransferEvent::Kind kind, const tr::TransferRecord& record) {
    if (events)
        events(TransferEvent{kind, summarize(record)});
}

TransferSummary TransferManager::Impl::summarize(const tr::TransferRecord& r) {
    TransferSummary s{.id = r.id,
                      .contact = r.contact,
                      .outgoing = r.outgoing,
                      .state = r.state,
                      .reason = r.reason,
                      .name = r.name,
                      .message = r.message,
                      .files = r.files,
                      .totalBytes = r.totalBytes,
                      .doneBytes = r.doneBytes,
                      .dest = r.dest,
                      .createdMs = r.createdMs,
                      .updatedMs = r.updatedMs,
                      .problems = {},
                      .moreProblems = 0};
    if (auto it = rates.find(r.id); it != rates.end() && r.state == "transferring") {
        const auto& samples = it->second.samples;
        // Bytes that stopped moving two seconds ago say nothing about the rate now.
        if (samples.size() >= 2 && Clock::now() - samples.back().first < std::chrono::seconds(2)) {
            auto dt = std::chrono::duration<double>(samples.back().first - samples.front().first);
            if (dt.count() > 0.2)
                s.rateBytesPerS =
                    static_cast<double>(samples.back().second - samples.front().second) /
                    dt.count();
        }
    }
    if (auto it = incoming.find(r.id); it != incoming.end()) {
        if (it->second.core && it->second.manifest) {
            const auto& entries = it->second.manifest->entries;
            for (std::uint32_t i = 0; i < entries.size(); ++i) {
                if (entries[i].folder)
                    continue;
                const auto& f = it->second.core->file(i);
                if (f.state != "failed" && f.state != "skipped")
                    continue;
                if (s.problems.size() < kMaxProblems)
                    s.problems.emplace_back(entries[i].path, f.reason);
                else
                    ++s.moreProblems;
            }
        }
    }
    return s;
}

void TransferManager::Impl::progressed(tr::TransferRecord& record, std::uint64_t bytes) {
    record.doneBytes = std::min(record.totalBytes, record.doneBytes + bytes);
    auto now = Clock::now();
    auto& rate = rates[record.id];
    rate.samples.emplace_back(now, record.doneBytes);
    while (rate.samples.size() > 2 && now - rate.samples.front().first > std::chrono::seconds(3))
        rate.samples.pop_front();
    if (now - rate.lastEvent >= options.progressInterval) {
        rate.lastEvent = now;
        rate.lastEventBytes = record.doneBytes;
        emit(TransferEvent::Kind::progress, record);
    }
}

void TransferManager::Impl::save(tr::TransferRecord& record) {
    record.updatedMs = nowMs();
    store->update(record);
}

void TransferManager::Impl::setState(tr::TransferRecord& record, const std::string& state,
                                     const std::string& reason) {
    if (record.state == state && record.reason == reason)
        return;
    spdlog::info("transfer {} {} {}: {}{}", dht::toHex(record.id).substr(0, 8),
                 record.outgoing ? "to" : "from", record.contact.shortHex(), state,
                 reason.empty() ? "" : " (" + reason + ")");
    record.state = state;
    record.reason = reason;
    save(record);
    emit(TransferEvent::Kind::state, record);
    if (terminal(state))
        rates.erase(record.id);
}

tr::TransferRecord* TransferManager::Impl::find(const tr::TransferId& id) {
    if (auto it = outgoing.find(id); it != outgoing.end())
        return &it->second.record;
    if (auto it = incoming.find(id); it != incoming.end())
        return &it->second.record;
    return nullptr;
}

void TransferManager::Impl::owe(const tr::TransferRecord& record, tr::Op op,
                                const std::string& reason) {
    store->owe(record.id, op, reason);
    if (links.connected(record.contact))
        sendOwed(record.contact);
    else
        ensureLink(record.contact);
}

bool TransferManager::Impl::wantsLink(const dht::ContactId& peer) {
    for (auto& [id, out] : outgoing) {
        if (out.record.contact != peer)
            continue;
        if (!out.record.offerDelivered && out.record.state == "offered")
            return true;
        // A sender that restarted dials too: the receiver may still hold a connection to the
        // process that died, and its requests would wait out their timeout on it.
        const auto& st = out.record.state;
        if (st == "accepted" || st == "transferring" || st == "verifying")
            return true;
    }
    for (auto& [id, in] : incoming)
        if (in.record.contact == peer && in.core && in.record.state == "transferring")
            return true;
    return !store->owed(peer).empty();
}

void TransferManager::Impl::ensureLink(const dht::ContactId& peer) {
    if (!contacts.isAccepted(peer))
        return;
    auto now = Clock::now();
    auto& dial = connecting[peer];
    if (dial.last != Clock::time_point{} &&
        now - dial.last < kReconnectEvery * (1 << std::min(dial.failures, kMaxDialDoublings)))
        return;
    dial.last = now;
    links.connect(peer, options.connectTimeout,
                  [weak = weak_from_this(), peer](const ConnectResult& r) {
                      auto self = weak.lock();
                      if (!self || !self->running)
                          return;
                      if (r.ok)
                          return self->flushPeer(peer);
                      if (auto it = self->connecting.find(peer); it != self->connecting.end())
                          ++it->second.failures;
                  });
}

// A link to `peer` is up: whatever waited for it goes.
void TransferManager::Impl::flushPeer(const dht::ContactId& peer) {
    sendOwed(peer);
    for (auto& [id, out] : outgoing)
        if (out.record.contact == peer && out.record.state == "offered" &&
            !out.record.offerDelivered)
            sendOffer(out);
    for (auto& [id, in] : incoming)
        if (in.record.contact == peer && in.core)
            pump(in);
}

void TransferManager::onLink(const dht::ContactId& peer, bool up) {
    auto& s = *impl_;
    if (!s.running)
        return;
    if (up) {
        s.connecting.erase(peer);
        s.flushPeer(peer);
    }
    // Down: every stream on that link hears `closed`, which puts its chunk back.
}

void TransferManager::Impl::registerStreams() {
    auto weak = weak_from_this();
    auto guard = [weak](auto f) {
        return [weak, f](auto&&... args) {
            if (auto self = weak.lock(); self && self->running)
                (self.get()->*f)(std::forward<decltype(args)>(args)...);
        };
    };
    // The offer and chunk types carry both directions: what the peer opened, and the answers
    // on the streams we opened.
    LinkManager::StreamHandler offers;
    offers.opened = guard(&Impl::onOfferOpened);
    offers.data = guard(&Impl::onOfferStreamData);
    offers.closed = guard(&Impl::onOfferStreamClosed);
    links.registerStreamType(tr::kOfferStream, offers);

    LinkManager::StreamHandler control;
    control.opened = guard(&Impl::onControlOpened);
    control.data = guard(&Impl::onControlData);
    control.closed = guard(&Impl::onControlClosed);
    links.registerStreamType(tr::kControlStream, control);

    LinkManager::StreamHandler chunks;
    chunks.opened = guard(&Impl::onServeOpened);
    chunks.data = guard(&Impl::onChunkStreamData);
    chunks.closed = guard(&Impl::onChunkStreamClosed);
    links.registerStreamType(tr::kChunkStream, chunks);
}

void TransferManager::Impl::onOfferStreamData(const LinkManager::StreamHandle& h,
                                              std::span<const std::uint8_t> data, bool fin) {
    if (offersOut.contains(keyOf(h)))
        onOfferAnswer(h, data, fin);
    else
        onOfferData(h, data, fin);
}

void TransferManager::Impl::onOfferStreamClosed(const LinkManager::StreamHandle& h) {
    if (offersOut.contains(keyOf(h)))
        onOfferOutClosed(h);
    else
        onOfferInClosed(h);
}

void TransferManager::Impl::onChunkStreamData(const LinkManager::StreamHandle& h,
                                              std::span<const std::uint8_t> data, bool fin) {
    if (fetching.contains(keyOf(h)))
        onFetchData(h, data, fin);
    else
        onServeData(h, data, fin);
}

void TransferManager::Impl::onChunkStreamClosed(const LinkManager::StreamHandle& h) {
    if (fetching.contains(keyOf(h)))
        onFetchClosed(h);
    else
        onServeClosed(h);
}

// --- commands ----------------------------------------------------------------------------

TransferCommandResult TransferManager::cancel(const tr::TransferId& id) {
    auto& s = *impl_;
    auto* record = s.find(id);
    if (!record) {
        auto known = s.store->get(id);
        if (!known)
            return {"no transfer with that id", {}};
        return {"the transfer is " + known->state + " already", s.summarize(*known)};
    }
    if (terminal(record->state))
        return {"the transfer is " + record->state + " already", s.summarize(*record)};
    if (!record->outgoing) {
        auto& in = s.incoming.at(id);
        s.stopFetching(in);
        s.removePartials(in);
    }
    s.setState(*record, "cancelled", "you cancelled it");
    s.owe(*record, tr::Op::cancel);
    return {{}, s.summarize(*record)};
}

TransferCommandResult TransferManager::pause(const tr::TransferId& id) {
    auto& s = *impl_;
    auto* record = s.find(id);
    if (!record)
        return {"no transfer with that id (or it has ended)", {}};
    if (record->state == "paused")
        return {{}, s.summarize(*record)};
    if (terminal(record->state) || record->state == "offered")
        return {"only a transfer that was accepted and has not ended can be paused",
                s.summarize(*record)};
    if (!record->outgoing)
        s.stopFetching(s.incoming.at(id));
    record->pausedByPeer = false;
    s.setState(*record, "paused", "you paused it");
    s.owe(*record, tr::Op::pause);
    return {{}, s.summarize(*record)};
}

TransferCommandResult TransferManager::resume(const tr::TransferId& id) {
    auto& s = *impl_;
    auto* record = s.find(id);
    if (!record)
        return {"no transfer with that id (or it has ended)", {}};
    if (record->state != "paused")
        return {"the transfer is " + record->state + ", not paused", s.summarize(*record)};
    if (record->pausedByPeer)
        return {std::string("the ") + (record->outgoing ? "receiver" : "sender") +
                    " paused it; only they can resume it",
                s.summarize(*record)};
    if (record->outgoing) {
        s.setState(*record, record->doneBytes > 0 ? "transferring" : "accepted");
    } else {
        auto& in = s.incoming.at(id);
        in.waitingForSpace = false;
        s.setState(*record, "transferring");
        if (!in.core)
            s.startReceiving(in);
        else
            in.core->setPaused(false);
        s.pump(in);
    }
    s.owe(*record, tr::Op::resume);
    return {{}, s.summarize(*record)};
}

std::vector<TransferSummary> TransferManager::list() {
    std::vector<TransferSummary> out;
    for (const auto& r : impl_->store->list()) {
        auto* live = impl_->find(r.id);
        out.push_back(impl_->summarize(live ? *live : r));
    }
    return out;
}

std::optional<TransferSummary> TransferManager::get(const tr::TransferId& id) {
    if (auto* live = impl_->find(id))
        return impl_->summarize(*live);
    if (auto r = impl_->store->get(id))
        return impl_->summarize(*r);
    return std::nullopt;
}

std::vector<TransferSummary> TransferManager::withContact(const dht::ContactId& contact) {
    std::vector<TransferSummary> out;
    for (const auto& r : impl_->store->withContact(contact)) {
        auto* live = impl_->find(r.id);
        out.push_back(impl_->summarize(live ? *live : r));
    }
    return out;
}

void TransferManager::setAutoAccept(const dht::ContactId& contact,
                                    std::optional<std::filesystem::path> dir) {
    impl_->store->setAutoAccept(contact,
                                dir ? std::optional<std::string>(dir->string()) : std::nullopt);
}

std::optional<std::filesystem::path>
TransferManager::autoAccept(const dht::ContactId& contact) const {
    auto dir = impl_->store->autoAccept(contact);
    if (!dir)
        return std::nullopt;
    return std::filesystem::path(*dir);
}

std::map<std::string, std::uint64_t> TransferManager::counters() const {
    auto out = impl_->counters;
    // Accepted and not ended: what is being received (paused ones too) and sent.
    std::uint64_t receiving = 0, sending = 0;
    for (const auto& [id, in] : impl_->incoming)
        receiving += in.core && !terminal(in.record.state) ? 1 : 0;
    for (const auto& [id, o] : impl_->outgoing)
        sending += o.record.state != "offered" && !terminal(o.record.state) ? 1 : 0;
    out["transfers_receiving"] = receiving;
    out["transfers_sending"] = sending;
    out["chunks_serving"] = impl_->serving.size();
    out["serving_bytes"] = impl_->servingBytes;
    return out;
}

} // namespace parley::node
