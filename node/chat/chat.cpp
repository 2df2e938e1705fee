// ChatManager: outbox, delivery over the link or the DHT inbox, receipts, retries.
#include "node/chat/chat.h"

#include "dht/clock.h"
#include "dht/hex.h"
#include "dht/records.h"
#include "node/link/contact_directory.h"
#include "node/link/links.h"
#include "node/store/store.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <gnutls/crypto.h>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace parley::node {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

json recordJson(const ChatRecord& r) {
    return {{"id", dht::toHex(r.id)},
            {"contact", r.contact.toHex()},
            {"direction", r.outgoing ? "out" : "in"},
            {"seq", r.seq},
            {"ts", r.sentMs},
            {"text", r.text},
            {"state", r.state}};
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
    Impl(asio::io_context& ioContext, Store& s, LinkManager& l, ContactDirectory& c)
        : io(ioContext), store(s), links(l), contacts(c), retryTimer(io) {}
    asio::io_context& io;
    Store& store;
    LinkManager& links;
    ContactDirectory& contacts;
    dht::ContactId self;
    EventSink events;
    ChatOptions options;
    asio::steady_timer retryTimer;
    bool stopped = false;

    struct Peer {
        std::map<MessageId, Clock::time_point> inFlight; // sent on the current link, unacked
        std::size_t inFlightBytes = 0;
        std::map<MessageId, std::size_t> sizes;
        std::set<MessageId> dhtPending; // puts in progress
        bool connecting = false;
        bool away = false; // said goodbye: do not wait for a connection (for a while)
        Clock::time_point awaySince;
        bool backlog = false; // queued messages wait behind the window (or for a link)
    };
    std::vector<std::pair<dht::ContactId, MessageId>> storedBatch;
    bool storedFlushScheduled = false;
    bool sendOne(const dht::ContactId& peer, Peer& p, const ChatRecord& r);
    void flushStored();
    std::map<dht::ContactId, Peer> peers;

    struct Waiter {
        std::function<void(json)> done;
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

    void count(const std::string& name, std::uint64_t n = 1) { counts[name] += n; }
    // Runs what the network, the link or a timer feeds: a store failure is counted and
    // logged, never thrown into the link, QUIC or the node loop. What was not done is done by
    // the next retry (the outbox in the store is the truth; in-flight marks only follow sends).
    template <class F> void guarded(const char* what, F&& f) {
        try {
            f();
        } catch (const StoreError& e) {
            count("store_errors");
            spdlog::error("chat: {}: {}", what, e.what());
        }
    }
    void pump(const dht::ContactId& peer);
    // pump() for every contact with messages waiting (a store error is logged).
    void pumpOutbox();
    void sendOutbox(const dht::ContactId& peer);
    void sendReceipts(const dht::ContactId& peer);
    void putToDht(const dht::ContactId& peer);
    void flushIncoming();
    void onAck(const dht::ContactId& peer, const std::vector<MessageId>& ids, bool read);
    void stateChanged(const dht::ContactId& peer, const MessageId& id, const std::string& state);
    void scheduleRetry();
};

void ChatManager::Impl::stateChanged(const dht::ContactId& peer, const MessageId& id,
                                     const std::string& state) {
    events({{"type", "chat.state"},
            {"contact", peer.toHex()},
            {"id", dht::toHex(id)},
            {"state", state}});
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
            f({{"id", dht::toHex(id)}, {"state", state}, {"delivered", true}});
    }
}

void ChatManager::Impl::pumpOutbox() {
    try {
        for (const auto& peer : store.outboxContacts())
            pump(peer);
    } catch (const StoreError& e) {
        spdlog::error("chat: {}", e.what());
    }
}

void ChatManager::Impl::pump(const dht::ContactId& peer) {
    if (stopped)
        return;
    if (links.connected(peer)) {
        sendReceipts(peer);
        sendOutbox(peer);
        return;
    }
    auto online = contacts.online(peer);
    if (!online)
        return; // no longer a contact: the messages wait (they could be accepted again)
    // Connect only with something to send: messages, or receipts we owe.
    if (store.outbox(peer, 1).empty() && store.receiptsDue(peer, false, 1).empty() &&
        store.receiptsDue(peer, true, 1).empty())
        return;
    auto& p = peers[peer];
    if (p.away && Clock::now() - p.awaySince > std::chrono::seconds(30))
        p.away = false; // its presence decides again
    if (!*online || p.away) {
        count(p.away ? "dht_while_away" : "dht_while_offline");
        putToDht(peer);
        return;
    }
    if (p.connecting)
        return;
    p.connecting = true;
    links.connect(peer, options.connectTimeout,
                  [weak = weak_from_this(), peer](const ConnectResult& r) {
                      auto s = weak.lock();
                      if (!s || s->stopped)
                          return;
                      s->peers[peer].connecting = false;
                      s->guarded("after a connect", [&] {
                          if (r.ok) {
                              s->pump(peer); // onLink did it too; harmless
                          } else {
                              s->count("connect_failed");
                              s->putToDht(peer); // unreachable now: their inbox keeps it
                          }
                      });
                  });
}

bool ChatManager::Impl::sendOne(const dht::ContactId& peer, Peer& p, const ChatRecord& r) {
    if (p.inFlight.size() >= options.window || p.inFlightBytes >= options.windowBytes)
        return false;
    if (!links.send(peer,
                    wire::ChatMessage{r.id, r.seq, static_cast<std::uint64_t>(r.sentMs), r.text}))
        return false;
    p.inFlight[r.id] = Clock::now();
    p.sizes[r.id] = r.text.size();
    p.inFlightBytes += r.text.size();
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
    return true;
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

void ChatManager::Impl::sendOutbox(const dht::ContactId& peer) {
    auto& p = peers[peer];
    auto now = Clock::now();
    auto limit = options.window + p.inFlight.size();
    auto outbox = store.outbox(peer, limit);
    bool complete = outbox.size() < limit;
    for (const auto& r : outbox) {
        auto it = p.inFlight.find(r.id);
        if (it != p.inFlight.end()) {
            if (now - it->second < options.retry)
                continue;
            if (!links.send(peer, wire::ChatMessage{r.id, r.seq,
                                                    static_cast<std::uint64_t>(r.sentMs), r.text}))
                break;
            it->second = now;
            count("resent");
            continue;
        }
        if (!sendOne(peer, p, r)) {
            complete = false;
            break;
        }
    }
    p.backlog = !complete;
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

void ChatManager::Impl::putToDht(const dht::ContactId& peer) {
    auto& p = peers[peer];
    for (const auto& r : store.outbox(peer, 256)) {
        if (r.dhtPutMs || p.dhtPending.count(r.id))
            continue;
        if (r.text.size() > dht::kMaxEnvelopeChatText) {
            count("too_long_for_dht"); // waits for a direct connection
            continue;
        }
        dht::Envelope e;
        e.kind = dht::EnvelopeKind::chatMessage;
        e.id = r.id;
        e.createdMs = r.sentMs;
        e.from = self;
        e.to = peer;
        e.seq = r.seq;
        e.text = r.text;
        p.dhtPending.insert(r.id);
        count("dht_puts");
        contacts.sendNow(e, [weak = weak_from_this(), peer, id = r.id](bool ok) {
            auto s = weak.lock();
            if (!s)
                return;
            s->peers[peer].dhtPending.erase(id);
            if (!ok) {
                s->count("dht_puts_failed"); // retried with the outbox
                return;
            }
            auto ms = dht::unixMs();
            try {
                s->store.setDhtPut(id, ms);
                if (s->store.advanceState(id, "stored", ms))
                    s->stateChanged(peer, id, "stored");
            } catch (const StoreError& err) {
                spdlog::error("chat: {}", err.what());
            }
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
    for (const auto& r : fresh) {
        auto j = recordJson(r);
        j["type"] = "chat.message";
        events(j);
    }
    for (auto& [peer, ids] : acks)
        for (std::size_t i = 0; i < ids.size(); i += wire::kMaxIdsPerFrame) {
            auto end = std::min(ids.size(), i + wire::kMaxIdsPerFrame);
            links.send(peer, wire::ChatAck{{ids.begin() + static_cast<std::ptrdiff_t>(i),
                                            ids.begin() + static_cast<std::ptrdiff_t>(end)}});
        }
}

void ChatManager::Impl::onAck(const dht::ContactId& peer, const std::vector<MessageId>& ids,
                              bool read) {
    auto& p = peers[peer];
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
        count("store_errors");
        spdlog::error("chat: cannot record receipts: {}", e.what());
        return;
    }
    for (const auto& id : ids)
        if (auto it = p.inFlight.find(id); it != p.inFlight.end()) {
            p.inFlightBytes -= p.sizes[id];
            p.sizes.erase(id);
            p.inFlight.erase(it);
        }
    for (const auto& id : changed)
        stateChanged(peer, id, read ? "read" : "delivered");
    count(read ? "read_receipts" : "acks", changed.size());
    if (!read && p.backlog && links.connected(peer))
        sendOutbox(peer); // the window moved
}

void ChatManager::Impl::scheduleRetry() {
    retryTimer.expires_after(options.retry);
    retryTimer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->stopped)
            return;
        s->pumpOutbox();
        s->scheduleRetry();
    });
}

// --- public -----------------------------------------------------------------------------------

ChatManager::ChatManager(asio::io_context& io, Store& store, LinkManager& links,
                         ContactDirectory& contacts, const dht::ContactId& self, EventSink events,
                         ChatOptions options)
    : impl_(std::make_shared<Impl>(io, store, links, contacts)) {
    impl_->self = self;
    impl_->events = std::move(events);
    impl_->options = options;
}

ChatManager::~ChatManager() {
    stop();
}

void ChatManager::start() {
    impl_->links.setMessageHandler(
        [this](const dht::ContactId& peer, const wire::Message& m) { onFrame(peer, m); });
    impl_->links.setLinkHandler(
        [this](const dht::ContactId& peer, const LinkManager::LinkChange& change) {
            onLink(peer, change.up, change.goodbye);
        });
    impl_->scheduleRetry();
    // Resume the outbox left by the last run.
    asio::post(impl_->io, [weak = std::weak_ptr<Impl>(impl_)] {
        auto s = weak.lock();
        if (s && !s->stopped)
            s->pumpOutbox();
    });
}

void ChatManager::stop() {
    auto& s = *impl_;
    if (s.stopped)
        return;
    try {
        for (const auto& peer : s.store.outboxContacts())
            s.putToDht(peer);
    } catch (const StoreError& e) {
        spdlog::error("chat: {}", e.what());
    }
    s.stopped = true;
    s.retryTimer.cancel();
    s.links.setMessageHandler(nullptr);
    s.links.setLinkHandler(nullptr);
    auto waiters = std::move(s.waiters);
    for (auto& [id, w] : waiters) {
        w->timer->cancel();
        if (auto f = std::move(w->done))
            f({{"id", dht::toHex(id)}, {"delivered", false}, {"error", "the node is stopping"}});
    }
}

json ChatManager::send(const dht::ContactId& to, const std::string& text) {
    auto& s = *impl_;
    if (to == s.self)
        throw ChatError("that is your own contact id");
    if (!s.contacts.isAccepted(to))
        throw ChatError(to.shortHex() + " is not an accepted contact: add them first "
                                        "('parley contact add')");
    if (text.empty())
        throw ChatError("the message is empty");
    if (text.size() > wire::kMaxChatTextSize)
        throw ChatError("the message is " + std::to_string(text.size()) + " bytes; the limit is " +
                        std::to_string(wire::kMaxChatTextSize));
    if (!dht::isValidUtf8(text))
        throw ChatError("the message is not valid UTF-8 text");
    MessageId id{};
    if (gnutls_rnd(GNUTLS_RND_NONCE, id.data(), id.size()) != 0)
        throw ChatError("the random generator failed");
    auto record = s.store.addOutgoing(to, id, text, dht::unixMs());
    auto j = recordJson(record);
    j["type"] = "chat.message";
    s.events(j);
    auto& p = s.peers[to];
    // The common case, a link and nothing waiting: straight onto the link (the state becomes
    // "stored" with this turn's batch). Otherwise the outbox decides.
    if (s.links.connected(to)) {
        if (!p.backlog && s.sendOne(to, p, record))
            return {{"id", dht::toHex(id)}, {"seq", record.seq}, {"state", "stored"}};
        // The window is full: the next acknowledgement moves it and sends this one.
        p.backlog = true;
        return {{"id", dht::toHex(id)}, {"seq", record.seq}, {"state", record.state}};
    }
    p.backlog = true;
    s.pump(to);
    auto current = s.store.message(id);
    return {{"id", dht::toHex(id)},
            {"seq", record.seq},
            {"state", current ? current->state : record.state}};
}

void ChatManager::wait(const std::array<std::uint8_t, 16>& id, std::chrono::milliseconds timeout,
                       std::function<void(json)> done) {
    auto& s = *impl_;
    auto r = s.store.message(id);
    if (!r || !r->outgoing) {
        done({{"id", dht::toHex(id)},
              {"delivered", false},
              {"error", "no message of ours with this id"}});
        return;
    }
    if (finalState(r->state)) {
        done({{"id", dht::toHex(id)}, {"state", r->state}, {"delivered", true}});
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
            f({{"id", dht::toHex(id)},
               {"state", current ? current->state : "unknown"},
               {"delivered", false}});
    });
}

json ChatManager::history(const dht::ContactId& with, std::size_t limit) const {
    json out = json::array();
    for (const auto& r : impl_->store.history(with, limit))
        out.push_back(recordJson(r));
    return out;
}

json ChatManager::markRead(const dht::ContactId& with) {
    auto n = impl_->store.markRead(with, dht::unixMs());
    if (n > 0 && impl_->links.connected(with))
        impl_->sendReceipts(with);
    return {{"contact", with.toHex()}, {"marked_read", n}};
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
        auto& p = s.peers[peer];
        p.inFlight.clear();
        p.sizes.clear();
        p.inFlightBytes = 0;
        if (!up) {
            // A contact that said goodbye is going offline: what it has not acknowledged goes
            // into its DHT inbox now, and so does what we send until it is back.
            p.away = goodbye;
            if (p.away) {
                p.awaySince = Clock::now();
                s.putToDht(peer); // nothing to connect to: no pump()
            }
            return;
        }
        p.away = false;
        p.connecting = false;
        s.sendReceipts(peer);
        s.sendOutbox(peer);
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
        auto j = recordJson(r);
        j["type"] = "chat.message";
        s.events(j);
        if (s.links.connected(e.from))
            s.sendReceipts(e.from);
        else
            s.pump(e.from); // connects if they are online, so that the ack reaches them
    });
}

json ChatManager::counters() const {
    json out = json::object();
    for (const auto& [k, v] : impl_->counts)
        out[k] = v;
    return out;
}

} // namespace parley::node
