// TransferManager's state, shared by transfers.cpp (commands, control messages, the tick),
// transfer_send.cpp (offers out, chunks served) and transfer_receive.cpp (offers in, chunks
// fetched, files put in place).
#pragma once

#include "node/link/contact_directory.h"
#include "node/link/links.h"
#include "node/transfer/disk.h"
#include "node/transfer/transfer_store.h"
#include "node/transfer/transfers.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <deque>
#include <map>
#include <memory>
#include <set>

namespace parley::node {

namespace tr = transfer;
using Clock = std::chrono::steady_clock;
using StreamKey = std::pair<std::uint64_t, std::int64_t>; // link, stream

// completed, failed, cancelled, declined: nothing moves any more.
inline bool terminal(const std::string& state) {
    return state == "completed" || state == "failed" || state == "cancelled" || state == "declined";
}

inline StreamKey keyOf(const LinkManager::StreamHandle& h) {
    return {h.link, h.stream};
}

struct TransferManager::Impl : std::enable_shared_from_this<TransferManager::Impl> {
    // The sender's side of one transfer, while it may still be asked for chunks.
    struct Outgoing {
        tr::TransferRecord record;
        std::shared_ptr<const tr::Manifest> manifest; // loaded when first needed
        std::vector<std::pair<std::string, std::filesystem::path>> roots;
        std::uint64_t servedBytes = 0;
    };
    // The receiver's side of one transfer.
    struct Incoming {
        tr::TransferRecord record;
        std::shared_ptr<const tr::Manifest> manifest;
        std::unique_ptr<tr::ReceiveCore> core; // while accepted and not finished
        std::vector<std::string> targets;      // per manifest entry, relative to dest; "" skipped
        std::size_t writing = 0;               // chunks on the disk thread
        std::size_t finalizing = 0;            // files being put in place
        bool finishing = false;                // the folders' pass runs
        bool waitingForSpace = false;          // paused by a full disk: resumes by itself
    };
    // Recent (time, bytes done) of a transfer whose bytes move: its rate, and when its last
    // progress event went.
    struct Rate {
        std::deque<std::pair<Clock::time_point, std::uint64_t>> samples;
        Clock::time_point lastEvent{};
        std::uint64_t lastEventBytes = 0;
    };

    // Streams in flight, by the room's own format.
    struct OfferOut {
        tr::TransferId id{};
        std::vector<std::uint8_t> answer;
    };
    struct OfferIn {
        tr::TransferId id{};
        dht::ContactId peer;
        std::vector<std::uint8_t> bytes;
        bool headerChecked = false; // the manifest's header passed checkManifestHeader
        bool refused = false;       // answered already: the rest is read and dropped
    };
    struct ControlOut {
        std::int64_t seq = 0;
        std::vector<std::uint8_t> answer;
    };
    struct ControlIn {
        tr::TransferId id{};
        std::vector<std::uint8_t> bytes;
    };
    struct ChunkServe { // sender
        tr::TransferId id{};
        LinkManager::StreamHandle handle;
        std::vector<std::uint8_t> request;
        std::uint64_t reserved = 0; // of serveBytes, until the stream closes
        bool queued = false;
    };
    struct ChunkFetch { // receiver
        tr::TransferId id{};
        tr::ChunkRequest request;
        std::vector<std::uint8_t> prefix; // until the status (and reason) is complete
        std::optional<tr::ChunkAnswerPrefix> answer;
        std::vector<std::uint8_t> bytes;
        std::size_t expected = 0;
        bool settled = false; // the core heard of it
    };

    Impl(asio::io_context& io, LinkManager& links, ContactDirectory& contacts,
         std::filesystem::path profileDir, EventSink events, TransferOptions options);

    asio::io_context& io;
    LinkManager& links;
    ContactDirectory& contacts;
    std::filesystem::path profileDir;
    EventSink events;
    TransferOptions options;
    std::unique_ptr<tr::TransferStore> store;
    std::unique_ptr<tr::DiskThread> disk;
    asio::steady_timer tick;
    bool running = false;

    std::map<tr::TransferId, Outgoing> outgoing;
    std::map<tr::TransferId, Incoming> incoming;
    std::map<StreamKey, OfferOut> offersOut;
    std::map<StreamKey, OfferIn> offersIn;
    std::map<StreamKey, ControlOut> controlsOut;
    std::map<StreamKey, ControlIn> controlsIn;
    std::map<StreamKey, ChunkServe> serving;
    std::deque<StreamKey> serveQueue; // requests waiting for serveBytes
    std::uint64_t servingBytes = 0;
    std::map<StreamKey, ChunkFetch> fetching;
    std::set<std::int64_t> opsInFlight; // owed op seqs on a control stream now
    std::set<tr::TransferId> offersInFlight;
    // Dials for pending work: when the last went out, and how many failed in a row (each
    // doubles the wait, 5 s up to 80 s: a contact gone for good costs a lookup a minute or so).
    struct Dialing {
        Clock::time_point last;
        int failures = 0;
    };
    std::map<dht::ContactId, Dialing> connecting;
    std::map<tr::TransferId, Rate> rates;
    Clock::time_point lastSpaceCheck{};
    std::map<std::string, std::uint64_t> counters;

    void count(const char* name, std::uint64_t n = 1) { counters[name] += n; }

    // Runs `job` on the disk thread, then `done(self, incoming, result)` on the io thread if the
    // room still runs and transfer `id` is still being received.
    template <class Job, class Done>
    void diskThenIncoming(const tr::TransferId& id, Job job, Done done) {
        disk->post([weak = weak_from_this(), id, job = std::move(job), done = std::move(done),
                    &ioContext = io]() mutable {
            auto result = job();
            asio::post(ioContext, [weak, id, result = std::move(result), done = std::move(done)] {
                auto self = weak.lock();
                if (!self || !self->running)
                    return;
                auto it = self->incoming.find(id);
                if (it == self->incoming.end() || !it->second.core)
                    return;
                done(*self, it->second, result);
            });
        });
    }
    std::int64_t nowMs() const;

    // transfers.cpp
    void load();
    void schedule();
    void onTick();
    void emit(TransferEvent::Kind kind, const tr::TransferRecord& record);
    // Bytes moved: the rate's sample and, at most every progressInterval, a progress event.
    void progressed(tr::TransferRecord& record, std::uint64_t bytes);
    TransferSummary summarize(const tr::TransferRecord& record);
    void setState(tr::TransferRecord& record, const std::string& state,
                  const std::string& reason = {});
    void save(tr::TransferRecord& record);
    tr::TransferRecord* find(const tr::TransferId& id);
    void owe(const tr::TransferRecord& record, tr::Op op, const std::string& reason = {});
    bool wantsLink(const dht::ContactId& peer);
    void ensureLink(const dht::ContactId& peer);
    void flushPeer(const dht::ContactId& peer);
    void sendOwed(const dht::ContactId& peer);
    void registerStreams();
    // Offer and chunk streams of either direction, to the side's handler.
    void onOfferStreamData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                           bool fin);
    void onOfferStreamClosed(const LinkManager::StreamHandle& h);
    void onChunkStreamData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                           bool fin);
    void onChunkStreamClosed(const LinkManager::StreamHandle& h);
    void onControlOpened(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> id);
    void onControlData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                       bool fin);
    void onControlClosed(const LinkManager::StreamHandle& h);
    tr::Answer applyControl(const dht::ContactId& peer, const tr::TransferId& id,
                            const tr::ControlMessage& message);

    // transfer_send.cpp
    void sendOffer(Outgoing& out);
    void onOfferAnswer(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                       bool fin);
    void onOfferOutClosed(const LinkManager::StreamHandle& h);
    void onServeOpened(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> id);
    void onServeData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                     bool fin);
    void onServeClosed(const LinkManager::StreamHandle& h);
    void serve(const StreamKey& key);
    void refuseChunk(const StreamKey& key, tr::ChunkStatus status, const std::string& reason);
    void drainServeQueue();
    std::shared_ptr<const tr::Manifest> manifestOf(const tr::TransferId& id);

    // transfer_receive.cpp
    void onOfferOpened(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> id);
    void onOfferData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                     bool fin);
    void onOfferInClosed(const LinkManager::StreamHandle& h);
    tr::Answer storeOffer(const dht::ContactId& peer, const tr::TransferId& id,
                          std::span<const std::uint8_t> bytes);
    std::string prepareAccept(Incoming& in, const std::filesystem::path& dir);
    bool startReceiving(Incoming& in);
    void pump(Incoming& in);
    void onFetchData(const LinkManager::StreamHandle& h, std::span<const std::uint8_t> data,
                     bool fin);
    void onFetchClosed(const LinkManager::StreamHandle& h);
    void settle(Incoming& in, const tr::ChunkRequest& request, tr::ChunkOutcome outcome,
                const std::string& reason);
    void finalize(Incoming& in, std::uint32_t file);
    void maybeFinish(Incoming& in);
    void stopFetching(Incoming& in);
    void removePartials(Incoming& in);
    std::filesystem::path partOf(const Incoming& in, std::uint32_t file) const;
};

} // namespace parley::node
