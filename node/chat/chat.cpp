// ChatManager: outbox, delivery over the link or the DHT inbox, receipts, retries.
#include "node/chat/chat.h"

#include "dht/clock.h"
#include "dht/hex.h"
#include "dht/records.h"
#include "node/chat/outbox.h"
#include "node/link/contact_directory.h"
#include "node/link/links.h"
#include "node/store/store.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <gnutls/crypto.h>
#include <map>
#include <spdlog/spdlog.h>

namespace parley::node {

using Clock = std::chrono::steady_clock;

namespace {

ChatEvent messageEvent(const ChatRecord& r) {
    ChatEvent e;
    e.kind = ChatEvent::Kind::message;
    e.record = r;
    return e;
}

bool finalState(const std::string& state) {
    return state == "delivered" || state == "read";
}

} // namespace

std::string repairUtf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    static constexpr char kReplacement[] = "\xEF\xBF\xBD";
    std::size_t i = 0;
    while (i < text.size()) {
        if (std::size_t len = dht::utf8SequenceAt(text, i); len > 0) {
            out.append(text.substr(i, len));
            i += len;
        } else {
            out.append(kReplacement);
            ++i;
        }
    }
    return out;
}

struct ChatManager::Impl : std::enable_shared_from_this<ChatManager::Impl> {
    Impl(asio::io_context& ioContext, Store& s, LinkManager& l, ContactDirectory& c,
         const ChatOptions& o)
        : io(ioContext), store(s), links(l), contacts(c), options(o), outbox(outboxOptions(o)),
          timer(io) {}
    asio::io_context& io;
    Store& store;
    LinkManager& links;
    ContactDirectory& contacts;
    dht::ContactId self;
    EventSink events;
    ChatOptions options;
    // The delivery policy; this class performs its actions and reports how they went. The
    // store's outbox is the truth, the core mirrors it (ids, seqs and sizes, no text).
    ChatOutbox outbox;
    // The one wait, at outbox.nextDeadline() (or when the outbox is to be loaded again).
    asio::steady_timer timer;
    std::optional<Clock::time_point> armedFor;
    bool loaded = false; // the store's outbox is in `outbox`
    std::optional<Clock::time_point> reloadAt;
    bool stopped = false;

    std::vector<std::pair<dht::ContactId, MessageId>> storedBatch;
    bool storedFlushScheduled = false;
    void flushStored();

    struct Waiter {
        std::function<void(const WaitResult&)> done;
        std::shared_ptr<asio::steady_timer> timer;
    };
    std::multimap<MessageId, std::shared_ptr<Waiter>> waiters;

    struct Incoming {
        dht::ContactId peer;
        wire::ChatMessage message;
    };
    std::vector<Incoming> incoming;
    bool flushScheduled = false;
    std::map<std::string, std::uint64_t> counts;

    static OutboxOptions outboxOptions(const ChatOptions& o) {
        OutboxOptions out;
        out.retry = o.retry;
        out.window = o.window;
        out.windowBytes = o.windowBytes;
        out.maxDhtBytes = dht::kMaxEnvelopeChatText;
        return out;
    }
    void count(const std::string& name, std::uint64_t n = 1) { counts[name] += n; }
    // Runs what the network, the link or a timer feeds: a store failure is counted and
    // logged, never thrown into the link, QUIC or the node loop.
    template <class F> void guarded(const char* what, F&& f) {
        try {
            f();
        } catch (const StoreError& e) {
            count("store_errors");
            spdlog::error("chat: {}: {}", what, e.what());
        }
    }
    // The store's outbox into the core (at start; again after `retry` if the store failed).
    void loadOutbox();
    PeerView view(const dht::ContactId& peer);
    // The core follows the link manager (a link that came up before we were told, or went).
    void followLink(const dht::ContactId& peer);
    void pump(const dht::ContactId& peer);
    void onTimer();
    void armTimer();
    // Performs the core's actions for one contact and reports back; never throws StoreError.
    void perform(const dht::ContactId& peer, const OutboxActions& actions);
    // The records of these outbox messages, from the first `limit` of the store's outbox (or
    // one by one); ids that are no longer in the store's outbox are forgotten by the core.
    std::map<MessageId, ChatRecord> records(const dht::ContactId& peer,
                                            const std::vector<MessageId>& ids, std::size_t limit);
    void sendMessages(const dht::ContactId& peer, const std::vector<LinkSend>& sends);
    void connect(const dht::ContactId& peer);
    void putToDht(const dht::ContactId& peer, const std::vector<MessageId>& ids);
    void sendReceipts(const dht::ContactId& peer);
    void flushIncoming();
    void onAck(const dht::ContactId& peer, const std::vector<MessageId>& ids, bool read);
    void stateChanged(const dht::ContactId& peer, const MessageId& id, const std::string& state);
};

void ChatManager::Impl::stateChanged(const dht::ContactId& peer, const MessageId& id,
                                     const std::string& state) {
    ChatEvent e;
    e.kind = ChatEvent::Kind::state;
    e.contact = peer;
    e.id = id;
    e.state = state;
    events(e);
    if (!finalState(state))
        return;
    auto [begin, end] = waiters.equal_range(id);
    std::vector<std::shared_ptr<Waiter>> done;
    for (auto it = begin; it != end; ++it)
        done.push_back(it->second);
    waiters.erase(begin, end);
    for (auto& w : done) {
        w->timer->cancel();
        if (auto f = std::move(w->done))
            f({.id = id, .delivered = true, .state = state, .error = {}});
    }
}

void ChatManager::Impl::loadOutbox() {
    auto now = Clock::now();
    try {
        for (const auto& peer : store.outboxContacts()) {
            std::vector<OutboxMessage> messages;
            for (const auto& r :
                 store.outbox(peer, static_cast<std::size_t>(INT64_MAX))) // all of it
                messages.push_back({r.id, r.seq, r.text.size(), r.dhtPutMs.has_value()});
            outbox.load(peer, messages, now); // due at once: the timer pumps it
        }
        loaded = true;
        reloadAt.reset();
    } catch (const StoreError& e) {
        count("store_errors");
        spdlog::error("chat: cannot read the outbox (tried again in {} ms): {}",
                      options.retry.count(), e.what());
        reloadAt = now + options.retry;
    }
}

PeerView ChatManager::Impl::view(const dht::ContactId& peer) {
    PeerView v;
    v.online = contacts.online(peer);
    if (outbox.linked(peer)) {
        v.owesReceipts = true; // sendReceipts() looks
        return v;
    }
    try {
        v.owesReceipts =
            !store.receiptsDue(peer, false, 1).empty() || !store.receiptsDue(peer, true, 1).empty();
    } catch (const StoreError& e) {
        count("store_errors");
        spdlog::error("chat: cannot read the receipts due: {}", e.what());
    }
    return v;
}

void ChatManager::Impl::followLink(const dht::ContactId& peer) {
    bool up = links.connected(peer);
    if (up == outbox.linked(peer))
        return;
    perform(peer,
            up ? outbox.linkUp(peer, Clock::now()) : outbox.linkDown(peer, false, Clock::now()));
}

void ChatManager::Impl::pump(const dht::ContactId& peer) {
    if (stopped)
        return;
    followLink(peer);
    perform(peer, outbox.pump(peer, view(peer), Clock::now()));
}

void ChatManager::Impl::onTimer() {
    if (stopped)
        return;
    auto now = Clock::now();
    if (reloadAt && *reloadAt <= now)
        loadOutbox();
    for (const auto& peer : outbox.due(now))
        pump(peer);
    armTimer();
}

void ChatManager::Impl::armTimer() {
    if (stopped)
        return;
    auto next = outbox.nextDeadline();
    if (reloadAt && (!next || *reloadAt < *next))
        next = reloadAt;
    if (next == armedFor)
        return;
    armedFor = next;
    if (!next) {
        timer.cancel();
        return;
    }
    timer.expires_at(*next);
    timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->stopped)
            return;
        s->armedFor.reset();
        s->onTimer();
    });
}

void ChatManager::Impl::perform(const dht::ContactId& peer, const OutboxActions& a) {
    if (a.sendReceipts && links.connected(peer))
        guarded("sending receipts", [&] { sendReceipts(peer); });
    if (!a.send.empty())
        sendMessages(peer, a.send);
    if (a.connect)
        connect(peer);
    if (a.dhtReason == DhtReason::offline)
        count("dht_while_offline");
    else if (a.dhtReason == DhtReason::away)
        count("dht_while_away");
    if (!a.putToDht.empty())
        putToDht(peer, a.putToDht);
    if (a.tooLongForDht > 0)
        count("too_long_for_dht", a.tooLongForDht); // waits for a direct connection
    armTimer();
}

std::map<MessageId, ChatRecord> ChatManager::Impl::records(const dht::ContactId& peer,
                                                           const std::vector<MessageId>& ids,
                                                           std::size_t limit) {
    std::map<MessageId, ChatRecord> out;
    // A few are read one by one; many in one read of the outbox's head.
    if (ids.size() > 8)
        for (auto& r : store.outbox(peer, limit))
            out.emplace(r.id, std::move(r));
    for (const auto& id : ids) {
        if (out.count(id))
            continue;
        auto r = store.message(id);
        if (r && r->outgoing && r->contact == peer && !finalState(r->state))
            out.emplace(id, std::move(*r));
        else
            outbox.forget(peer, id); // moved on by another path
    }
    return out;
}

void ChatManager::Impl::sendMessages(const dht::ContactId& peer,
                                     const std::vector<LinkSend>& sends) {
    std::vector<MessageId> ids;
    for (const auto& s : sends)
        ids.push_back(s.id);
    std::map<MessageId, ChatRecord> texts;
    try {
        // What the core sends is the head of its outbox: what is in flight.
        texts = records(peer, ids, outbox.inFlight(peer));
    } catch (const StoreError& e) {
        // Nothing went out: the core sends them again with its next look at the contact.
        count("store_errors");
        spdlog::error("chat: cannot read {} messages to send: {}", sends.size(), e.what());
        outbox.sendFailed(peer, sends, Clock::now());
        return;
    }
    for (std::size_t i = 0; i < sends.size(); ++i) {
        auto it = texts.find(sends[i].id);
        if (it == texts.end())
            continue; // forgotten
        const auto& r = it->second;
        if (!links.send(peer, wire::ChatMessage{r.id, r.seq, static_cast<std::uint64_t>(r.sentMs),
                                                r.text})) {
            outbox.sendFailed(peer, std::span(sends).subspan(i), Clock::now());
            return;
        }
        if (sends[i].resend) {
            count("resent");
            continue;
        }
        count("sent");
        if (r.state == "queued") {
            // "stored" is recorded for everything sent in this turn of the loop at once.
            storedBatch.emplace_back(peer, r.id);
            if (!storedFlushScheduled) {
                storedFlushScheduled = true;
                asio::post(io, [weak = weak_from_this()] {
                    if (auto s = weak.lock())
                        s->flushStored();
                });
            }
        }
    }
}

void ChatManager::Impl::connect(const dht::ContactId& peer) {
    links.connect(
        peer, options.connectTimeout, [weak = weak_from_this(), peer](const ConnectResult& r) {
            auto s = weak.lock();
            if (!s || s->stopped)
                return;
            if (!r.ok)
                s->count("connect_failed"); // unreachable now: their inbox keeps it
            s->guarded("after a connect", [&] {
                if (r.ok)
                    s->followLink(peer); // onLink does it too; harmless
                s->perform(peer, s->outbox.connectResult(peer, r.ok, s->view(peer), Clock::now()));
            });
        });
}

void ChatManager::Impl::flushStored() {
    storedFlushScheduled = false;
    auto batch = std::move(storedBatch);
    storedBatch.clear();
    auto ms = dht::unixMs();
    std::vector<std::pair<dht::ContactId, MessageId>> changed;
    try {
        store.transaction([&] {
            for (const auto& [peer, id] : batch)
                if (store.advanceState(id, "stored", ms))
                    changed.emplace_back(peer, id);
        });
    } catch (const StoreError& e) {
        spdlog::error("chat: {}", e.what()); // the state is cosmetic: the outbox is unchanged
        return;
    }
    for (const auto& [peer, id] : changed)
        stateChanged(peer, id, "stored");
}

void ChatManager::Impl::sendReceipts(const dht::ContactId& peer) {
    for (bool read : {false, true}) {
        auto ids = store.receiptsDue(peer, read, wire::kMaxIdsPerFrame);
        if (ids.empty())
            continue;
        bool sent =
            read ? links.send(peer, wire::ChatRead{ids}) : links.send(peer, wire::ChatAck{ids});
        if (!sent)
            return;
        store.transaction([&] {
            for (const auto& id : ids)
                store.clearReceiptDue(id, read);
        });
    }
}

void ChatManager::Impl::putToDht(const dht::ContactId& peer, const std::vector<MessageId>& ids) {
    std::map<MessageId, ChatRecord> texts;
    try {
        texts = records(peer, ids, outboxOptions(options).dhtBatch);
    } catch (const StoreError& e) {
        count("store_errors");
        spdlog::error("chat: cannot read {} messages for the DHT inbox: {}", ids.size(), e.what());
        for (const auto& id : ids)
            outbox.dhtResult(peer, id, false); // put again with a later look
        return;
    }
    for (const auto& id : ids) {
        auto it = texts.find(id);
        if (it == texts.end())
            continue; // forgotten
        const auto& r = it->second;
        dht::Envelope e;
        e.kind = dht::EnvelopeKind::chatMessage;
        e.id = r.id;
        e.createdMs = r.sentMs;
        e.from = self;
        e.to = peer;
        e.seq = r.seq;
        e.text = r.text;
        count("dht_puts");
        contacts.sendNow(e, [weak = weak_from_this(), peer, id](bool ok) {
            auto s = weak.lock();
            if (!s)
                return;
            if (!ok) {
                s->count("dht_puts_failed"); // put again with a later look
                s->outbox.dhtResult(peer, id, false);
                return;
            }
            auto ms = dht::unixMs();
            try {
                s->store.setDhtPut(id, ms);
                if (s->store.advanceState(id, "stored", ms))
                    s->stateChanged(peer, id, "stored");
            } catch (const StoreError& err) {
                // Not recorded: as if it had failed, so that the store and the core agree.
                s->count("store_errors");
                spdlog::error("chat: cannot record a DHT put: {}", err.what());
                s->outbox.dhtResult(peer, id, false);
                return;
            }
            s->outbox.dhtResult(peer, id, true);
        });
    }
}

void ChatManager::Impl::flushIncoming() {
    flushScheduled = false;
    auto batch = std::move(incoming);
    incoming.clear();
    if (batch.empty() || stopped)
        return;
    auto ms = dht::unixMs();
    std::vector<ChatRecord> fresh;
    std::map<dht::ContactId, std::vector<MessageId>> acks;
    try {
        store.transaction([&] {
            for (const auto& in : batch) {
                ChatRecord r;
                r.id = in.message.id;
                r.contact = in.peer;
                r.seq = in.message.seq;
                r.sentMs = static_cast<std::int64_t>(
                    std::min<std::uint64_t>(in.message.sentMs, INT64_MAX));
                r.receivedMs = ms;
                r.text = repairUtf8(in.message.text);
                r.state = "received";
                r.updatedMs = ms;
                if (store.addIncoming(r, false))
                    fresh.push_back(std::move(r));
                acks[in.peer].push_back(in.message.id);
            }
        });
    } catch (const StoreError& e) {
        // Not stored, so not acknowledged: the sender keeps the messages and sends them again.
        count("store_errors");
        spdlog::error("chat: cannot store {} received messages: {}", batch.size(), e.what());
        return;
    }
    count("received", fresh.size());
    count("duplicates", batch.size() - fresh.size());
    for (const auto& r : fresh)
        events(messageEvent(r));
    for (auto& [peer, ids] : acks)
        for (std::size_t i = 0; i < ids.size(); i += wire::kMaxIdsPerFrame) {
            auto end = std::min(ids.size(), i + wire::kMaxIdsPerFrame);
            links.send(peer, wire::ChatAck{{ids.begin() + static_cast<std::ptrdiff_t>(i),
                                            ids.begin() + static_cast<std::ptrdiff_t>(end)}});
        }
}

void ChatManager::Impl::onAck(const dht::ContactId& peer, const std::vector<MessageId>& ids,
                              bool read) {
    auto ms = dht::unixMs();
    std::vector<MessageId> changed;
    try {
        store.transaction([&] {
            for (const auto& id : ids) {
                // Only our own messages to this peer can change (advanceState checks outgoing;
                // the contact is checked here).
                auto r = store.message(id);
                if (!r || !r->outgoing || r->contact != peer)
                    continue;
                if (store.advanceState(id, read ? "read" : "delivered", ms))
                    changed.push_back(id);
            }
        });
    } catch (const StoreError& e) {
        // Not recorded, so still in the outbox and in flight: resent after `retry`, and the
        // receiver acknowledges again.
        count("store_errors");
        spdlog::error("chat: cannot record receipts: {}", e.what());
        return;
    }
    // Ids that are not in this contact's outbox are ignored by the core.
    auto actions = outbox.acked(peer, ids, read, Clock::now());
    for (const auto& id : changed)
        stateChanged(peer, id, read ? "read" : "delivered");
    count(read ? "read_receipts" : "acks", changed.size());
    perform(peer, actions); // the window moved
}

// --- public -----------------------------------------------------------------------------------

ChatManager::ChatManager(asio::io_context& io, Store& store, LinkManager& links,
                         ContactDirectory& contacts, const dht::ContactId& self, EventSink events,
                         ChatOptions options)
    : impl_(std::make_shared<Impl>(io, store, links, contacts, options)) {
    impl_->self = self;
    impl_->events = std::move(events);
}

ChatManager::~ChatManager() {
    stop();
}

void ChatManager::start() {
    impl_->links.setMessageHandler(
        [this](const dht::ContactId& peer, const wire::Message& m) { onFrame(peer, m); });
    // Link changes come through onLink: the composition root hands them to every room.
    // Resume the outbox left by the last run.
    asio::post(impl_->io, [weak = std::weak_ptr<Impl>(impl_)] {
        auto s = weak.lock();
        if (!s || s->stopped)
            return;
        if (!s->loaded)
            s->loadOutbox();
        s->onTimer(); // pumps what was loaded
    });
}

void ChatManager::stop() {
    auto& s = *impl_;
    if (s.stopped)
        return;
    if (!s.loaded)
        s.loadOutbox();
    // What is unacknowledged goes into the DHT inboxes, so it arrives even if we stay away.
    for (const auto& [peer, actions] : s.outbox.flushToDht())
        s.perform(peer, actions);
    s.stopped = true;
    s.timer.cancel();
    s.links.setMessageHandler(nullptr);
    auto waiters = std::move(s.waiters);
    for (auto& [id, w] : waiters) {
        w->timer->cancel();
        if (auto f = std::move(w->done))
            f({.id = id, .delivered = false, .state = {}, .error = "the node is stopping"});
    }
}

SendResult ChatManager::send(const dht::ContactId& to, const std::string& text) {
    auto& s = *impl_;
    auto refused = [](std::string why) {
        SendResult r;
        r.error = std::move(why);
        return r;
    };
    if (to == s.self)
        return refused("that is your own contact id");
    if (!s.contacts.isAccepted(to))
        return refused(to.shortHex() + " is not an accepted contact: add them first "
                                       "('parley contact add')");
    if (text.empty())
        return refused("the message is empty");
    if (text.size() > wire::kMaxChatTextSize)
        return refused("the message is " + std::to_string(text.size()) + " bytes; the limit is " +
                       std::to_string(wire::kMaxChatTextSize));
    if (!dht::isValidUtf8(text))
        return refused("the message is not valid UTF-8 text");
    MessageId id{};
    if (gnutls_rnd(GNUTLS_RND_NONCE, id.data(), id.size()) != 0)
        return refused("the random generator failed");
    auto record = s.store.addOutgoing(to, id, text, dht::unixMs());
    s.events(messageEvent(record));
    SendResult out;
    out.id = id;
    out.seq = record.seq;
    out.state = record.state;
    if (s.stopped)
        return out;
    // The common case, a link and room in the window: straight onto the link (the state
    // becomes "stored" with this turn's batch). Otherwise the outbox waits, connects or puts it
    // into their DHT inbox.
    s.followLink(to);
    s.perform(to,
              s.outbox.queued(to, {id, record.seq, text.size(), false}, s.view(to), Clock::now()));
    if (s.outbox.isInFlight(to, id))
        out.state = "stored";
    else if (!s.outbox.linked(to)) // (linked: the window is full, the next ack moves it)
        if (auto current = s.store.message(id))
            out.state = current->state;
    return out;
}

void ChatManager::wait(const std::array<std::uint8_t, 16>& id, std::chrono::milliseconds timeout,
                       std::function<void(const WaitResult&)> done) {
    auto& s = *impl_;
    auto r = s.store.message(id);
    if (!r || !r->outgoing) {
        done({.id = id,
              .delivered = false,
              .state = {},
              .error = "no message of ours with this id"});
        return;
    }
    if (finalState(r->state)) {
        done({.id = id, .delivered = true, .state = r->state, .error = {}});
        return;
    }
    auto w = std::make_shared<Impl::Waiter>();
    w->done = std::move(done);
    w->timer = std::make_shared<asio::steady_timer>(s.io, timeout);
    s.waiters.emplace(id, w);
    w->timer->async_wait([weak = std::weak_ptr<Impl>(impl_), w, id](const std::error_code& ec) {
        auto st = weak.lock();
        if (ec || !st)
            return;
        for (auto [b, e] = st->waiters.equal_range(id); b != e; ++b)
            if (b->second == w) {
                st->waiters.erase(b);
                break;
            }
        auto current = st->store.message(id);
        if (auto f = std::move(w->done))
            f({.id = id,
               .delivered = false,
               .state = current ? current->state : "unknown",
               .error = {}});
    });
}

std::vector<ChatRecord> ChatManager::history(const dht::ContactId& with, std::size_t limit) const {
    return impl_->store.history(with, limit);
}

std::size_t ChatManager::markRead(const dht::ContactId& with) {
    auto n = impl_->store.markRead(with, dht::unixMs());
    if (n > 0 && impl_->links.connected(with))
        impl_->sendReceipts(with);
    return n;
}

void ChatManager::onFrame(const dht::ContactId& peer, const wire::Message& message) {
    impl_->guarded("a frame", [&] {
        auto& s = *impl_;
        if (s.stopped)
            return;
        if (!s.contacts.isAccepted(peer)) {
            s.count("from_stranger");
            return;
        }
        if (auto* m = std::get_if<wire::ChatMessage>(&message)) {
            s.incoming.push_back({peer, *m});
            // Everything that arrived in this turn of the loop is stored in one transaction.
            if (!s.flushScheduled) {
                s.flushScheduled = true;
                asio::post(s.io, [weak = std::weak_ptr<Impl>(impl_)] {
                    if (auto st = weak.lock())
                        st->flushIncoming();
                });
            }
        } else if (auto* a = std::get_if<wire::ChatAck>(&message)) {
            s.onAck(peer, a->ids, false);
        } else if (auto* r = std::get_if<wire::ChatRead>(&message)) {
            s.onAck(peer, r->ids, true);
        }
    });
}

void ChatManager::onLink(const dht::ContactId& peer, bool up, bool goodbye) {
    impl_->guarded("a link change", [&] {
        auto& s = *impl_;
        if (s.stopped)
            return;
        // A link going down puts what was in flight back into the outbox; a contact that said
        // goodbye is going offline, so its outbox goes into its DHT inbox (see ChatOutbox).
        s.perform(peer, up ? s.outbox.linkUp(peer, Clock::now())
                           : s.outbox.linkDown(peer, goodbye, Clock::now()));
    });
}

void ChatManager::onEnvelope(const dht::Envelope& e) {
    impl_->guarded("an envelope", [&] {
        auto& s = *impl_;
        if (s.stopped || e.kind != dht::EnvelopeKind::chatMessage)
            return;
        ChatRecord r;
        r.id = e.id;
        r.contact = e.from;
        r.seq = e.seq;
        r.sentMs = e.createdMs;
        r.receivedMs = dht::unixMs();
        r.text = e.text; // the envelope decoder checked it is UTF-8
        r.state = "received";
        r.updatedMs = *r.receivedMs;
        try {
            if (!s.store.addIncoming(r, true)) {
                s.count("duplicates");
                return;
            }
        } catch (const StoreError& err) {
            s.count("store_errors");
            spdlog::error("chat: cannot store a message from {}: {}", e.from.shortHex(),
                          err.what());
            return;
        }
        s.count("dht_received");
        s.events(messageEvent(r));
        if (s.links.connected(e.from))
            s.sendReceipts(e.from);
        else
            s.pump(e.from); // connects if they are online, so that the ack reaches them
    });
}

std::map<std::string, std::uint64_t> ChatManager::counters() const {
    return impl_->counts;
}

} // namespace parley::node
