// ContactManager: the contact state machine over inbox envelopes and presence listens.
#include "node/contacts/contacts.h"

#include "dht/clock.h"
#include "dht/timer_set.h"
#include "node/contacts/request_policy.h"

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <gnutls/crypto.h>
#include <spdlog/spdlog.h>

namespace parley::node {

namespace {

Relation relationOf(ContactState state) {
    switch (state) {
    case ContactState::outgoing:
        return Relation::outgoing;
    case ContactState::incoming:
        return Relation::incoming;
    case ContactState::accepted:
        return Relation::accepted;
    case ContactState::blocked:
        return Relation::blocked;
    }
    return Relation::stranger;
}

ContactEvent accepted(const dht::ContactId& id, std::string by) {
    ContactEvent e;
    e.kind = ContactEvent::Kind::accepted;
    e.id = id;
    e.by = std::move(by);
    return e;
}

ContactEvent presence(const dht::ContactId& id, bool online, std::int64_t lastSeenMs) {
    ContactEvent e;
    e.kind = ContactEvent::Kind::presence;
    e.id = id;
    e.online = online;
    e.lastSeenMs = lastSeenMs;
    return e;
}

} // namespace

struct ContactManager::Impl {
    Impl(asio::io_context& ioContext, dht::Overlay& o, Store& s)
        : io(ioContext), overlay(o), store(s), retryTimer(io), sweepTimer(io), maintenanceTimer(io),
          timers(io) {}
    asio::io_context& io;
    dht::Overlay& overlay;
    Store& store;
    dht::ContactId self;
    std::string selfName;
    EventSink events;
    ContactLimits limits;
    asio::steady_timer retryTimer, sweepTimer, maintenanceTimer;
    dht::TimerSet timers; // the quick retries while a recipient's card is missing
    std::set<EnvelopeId> inFlight;
    // Recipients' DER public keys: from their verified key card, or from an envelope they
    // signed (so an answer needs no lookup).
    // Bound: kMaxKeys; when full, a stranger's key goes first (rememberKey).
    std::map<dht::ContactId, std::vector<std::uint8_t>> keys;
    std::map<EnvelopeId, int> noCardRetries; // backoff while a recipient's card is missing
    RequestPolicy policy;                    // admission, per-sender windows, card retries
    // Counters not yet written: a dropped envelope costs no SQLite write of its own; they
    // are saved at maintenance and at stop.
    std::map<std::string, std::uint64_t> unsavedCounters;
    std::int64_t lastSeenPurgeMs = 0;
    std::set<dht::ContactId> followed;
    // Accepted contacts, mirrored from the store at every change, so that the QUIC verify
    // callback asks memory, not SQLite (a store error must never unwind through GnuTLS).
    std::set<dht::ContactId> accepted;
    ConnectHandler connectHandler, chatHandler;

    void rememberKey(const dht::ContactId& id, std::vector<std::uint8_t> key) {
        if (keys.size() >= kMaxKeys && !keys.count(id)) {
            auto victim = std::find_if(keys.begin(), keys.end(),
                                       [&](const auto& k) { return !accepted.count(k.first); });
            keys.erase(victim != keys.end() ? victim : keys.begin());
        }
        keys[id] = std::move(key);
    }
    void saveCounters() {
        for (const auto& [name, n] : unsavedCounters)
            store.addCounter(name, n);
        unsavedCounters.clear();
    }
    void saveContact(const ContactRecord& record) {
        store.upsertContact(record);
        if (record.state == ContactState::accepted)
            accepted.insert(record.id);
        else
            accepted.erase(record.id);
    }
    bool eraseContact(const dht::ContactId& id) {
        accepted.erase(id);
        return store.removeContact(id);
    }
    bool stopped = false;

    // Runs a callback that the network or a timer feeds: a store failure is counted and
    // logged, never thrown into OpenDHT's callbacks, asio or the node loop.
    template <class F> void guarded(const char* what, F&& f) {
        try {
            f();
        } catch (const StoreError& e) {
            ++unsavedCounters["store_errors"];
            spdlog::error("contacts: {}: {}", what, e.what());
        }
    }
};

ContactManager::ContactManager(asio::io_context& io, dht::Overlay& overlay, Store& store,
                               const dht::ContactId& self, std::string selfName, EventSink events,
                               ContactLimits limits)
    : impl_(std::make_shared<Impl>(io, overlay, store)) {
    impl_->self = self;
    impl_->selfName = std::move(selfName);
    impl_->events = std::move(events);
    impl_->limits = limits;
    impl_->policy = RequestPolicy(RequestLimits{
        .maxPendingIncoming = limits.maxPendingIncoming,
        .maxRequestsPerSenderPerHour = limits.maxRequestsPerSenderPerHour,
    });
    for (const auto& c : impl_->store.contacts())
        if (c.state == ContactState::accepted)
            impl_->accepted.insert(c.id);
}

ContactManager::~ContactManager() {
    stop();
}

void ContactManager::start() {
    auto weak = std::weak_ptr<Impl>(impl_);
    impl_->overlay.listenInbox([this, weak](const dht::Envelope& e, const dht::ContactId& signer,
                                            const std::vector<std::uint8_t>& signerKey) {
        auto s = weak.lock();
        if (!s || s->stopped)
            return;
        if (e.from == signer && !signerKey.empty())
            s->rememberKey(signer, signerKey);
        s->guarded("an envelope", [&] { onEnvelope(e, signer); });
    });
    impl_->guarded("start", [&] {
        for (const auto& c : impl_->store.contacts())
            if (c.state == ContactState::accepted)
                follow(c.id);
    });
    scheduleRetry();
    impl_->guarded("resuming sends", [&] {
        for (const auto& p : impl_->store.pending())
            trySend(p);
    });
    sweepPresence();
    maintain();
}

void ContactManager::maintain() {
    auto& s = *impl_;
    auto now = dht::unixMs();
    try {
        s.saveCounters();
        if (now - s.lastSeenPurgeMs >= s.limits.seenPurgeInterval.count() * 1000) {
            s.store.purgeSeen(now);
            s.lastSeenPurgeMs = now;
        }
    } catch (const StoreError& e) {
        spdlog::warn("contacts: maintenance postponed: {}", e.what()); // retried next time
    }
    s.policy.prune(now);
    s.maintenanceTimer.expires_after(s.limits.maintenance);
    s.maintenanceTimer.async_wait(
        [this, weak = std::weak_ptr<Impl>(impl_)](const std::error_code& ec) {
            auto st = weak.lock();
            if (!ec && st && !st->stopped)
                maintain();
        });
}

void ContactManager::stop() {
    if (!impl_ || impl_->stopped)
        return;
    impl_->stopped = true;
    impl_->retryTimer.cancel();
    impl_->sweepTimer.cancel();
    impl_->maintenanceTimer.cancel();
    impl_->timers.cancelAll();
    try {
        impl_->saveCounters();
    } catch (const StoreError& e) {
        spdlog::warn("contacts: counters not saved: {}", e.what());
    }
}

void ContactManager::count(const std::string& name) {
    ++impl_->unsavedCounters[name];
}

std::map<std::string, std::uint64_t> ContactManager::counters() const {
    std::map<std::string, std::uint64_t> out;
    for (const char* name :
         {"envelopes_forged", "envelopes_wrong-recipient", "envelopes_expired",
          "envelopes_from-the-future", "envelopes_replayed", "envelopes_from_blocked",
          "requests_over_cap", "requests_over_rate", "accepts_unsolicited", "connect_from_stranger",
          "chat_from_stranger", "store_errors"}) {
        auto it = impl_->unsavedCounters.find(name);
        out[name] = static_cast<std::uint64_t>(impl_->store.counter(name)) +
                    (it == impl_->unsavedCounters.end() ? 0 : it->second);
    }
    out["sender_windows"] = impl_->policy.senderWindows();
    out["cached_keys"] = impl_->keys.size();
    return out;
}

std::vector<ContactSummary> ContactManager::contacts() const {
    std::vector<ContactSummary> out;
    auto unread = impl_->store.unreadCounts();
    for (auto& c : impl_->store.contacts()) {
        auto it = unread.find(c.id);
        auto n = it == unread.end() ? 0 : it->second;
        out.push_back({std::move(c), static_cast<std::uint64_t>(n)});
    }
    return out;
}

std::vector<ContactRecord> ContactManager::requests() const {
    auto all = impl_->store.contacts();
    std::erase_if(all, [](const ContactRecord& c) { return c.state != ContactState::incoming; });
    return all;
}

CommandStatus ContactManager::add(const dht::ContactId& id, const std::string& message,
                                  const std::string& alias,
                                  std::function<void(const AddResult&)> done) {
    auto& s = *impl_;
    if (id == s.self)
        return CommandStatus::refused("that is your own contact id");
    if (message.size() > dht::kMaxRequestMessageSize || !dht::isValidUtf8(message))
        return CommandStatus::refused("the message must be at most " +
                                      std::to_string(dht::kMaxRequestMessageSize) +
                                      " bytes of UTF-8");
    auto now = dht::unixMs();
    auto existing = s.store.contact(id);
    if (existing && existing->state == ContactState::blocked)
        return CommandStatus::refused("this contact is blocked: 'parley contact unblock' first");
    if (existing && existing->state == ContactState::accepted) {
        done({id, ContactState::accepted, "none"});
        return {};
    }
    if (existing && existing->state == ContactState::incoming) {
        auto status = accept(id); // they asked first: adding them is accepting
        if (status.ok())
            done({id, ContactState::accepted, "queued"});
        return status;
    }
    ContactRecord record = existing.value_or(ContactRecord{});
    record.id = id;
    if (!alias.empty())
        record.alias = dht::truncateUtf8(alias, 64);
    record.state = ContactState::outgoing;
    record.message = message;
    if (!existing)
        record.createdMs = now;
    record.updatedMs = now;
    s.saveContact(record);
    auto queued = queue(dht::EnvelopeKind::contactRequest, id, message,
                        [done, id](const std::string& status) {
                            done({id, ContactState::outgoing, status});
                        });
    if (!queued)
        return CommandStatus::refused("no randomness available for the request's id");
    return {};
}

CommandStatus ContactManager::accept(const dht::ContactId& id) {
    auto& s = *impl_;
    auto existing = s.store.contact(id);
    if (!existing || existing->state != ContactState::incoming)
        return CommandStatus::refused("no contact request from " + id.toHex());
    existing->state = ContactState::accepted;
    existing->updatedMs = dht::unixMs();
    s.saveContact(*existing);
    // Accepted even if the answer cannot be queued: their next request is answered.
    if (!queue(dht::EnvelopeKind::contactAccept, id, ""))
        spdlog::error("contacts: no randomness; the answer to {} is not sent", id.shortHex());
    follow(id);
    s.events(accepted(id, "us"));
    return {};
}

CommandStatus ContactManager::decline(const dht::ContactId& id) {
    auto existing = impl_->store.contact(id);
    if (!existing || existing->state != ContactState::incoming)
        return CommandStatus::refused("no contact request from " + id.toHex());
    // No answer goes back: a declined sender learns nothing, not even that we are online.
    impl_->eraseContact(id);
    return {};
}

CommandStatus ContactManager::block(const dht::ContactId& id) {
    auto& s = *impl_;
    if (id == s.self)
        return CommandStatus::refused("that is your own contact id");
    auto record = s.store.contact(id).value_or(ContactRecord{});
    auto now = dht::unixMs();
    if (record.createdMs == 0)
        record.createdMs = now;
    record.id = id;
    record.state = ContactState::blocked;
    record.online = false;
    record.updatedMs = now;
    s.saveContact(record);
    dropPending(id);
    unfollow(id);
    return {};
}

CommandStatus ContactManager::unblock(const dht::ContactId& id) {
    auto existing = impl_->store.contact(id);
    if (!existing || existing->state != ContactState::blocked)
        return CommandStatus::refused(id.toHex() + " is not blocked");
    impl_->eraseContact(id);
    return {};
}

CommandStatus ContactManager::remove(const dht::ContactId& id) {
    if (!impl_->eraseContact(id))
        return CommandStatus::refused("unknown contact " + id.toHex());
    dropPending(id);
    unfollow(id);
    return {};
}

void ContactManager::dropPending(const dht::ContactId& id) {
    for (const auto& p : impl_->store.pending())
        if (p.recipient == id)
            impl_->store.removePending(p.id);
}

bool ContactManager::queue(dht::EnvelopeKind kind, const dht::ContactId& to,
                           const std::string& message, SendStatus status) {
    auto& s = *impl_;
    dht::Envelope e;
    e.kind = kind;
    if (gnutls_rnd(GNUTLS_RND_NONCE, e.id.data(), e.id.size()) != 0)
        return false;
    e.createdMs = dht::unixMs();
    e.from = s.self;
    e.to = to;
    e.name = dht::truncateUtf8(s.selfName, dht::kMaxNameSize);
    e.message = message;
    PendingEnvelope p;
    p.id = e.id;
    p.recipient = to;
    p.kind = static_cast<std::uint8_t>(kind);
    p.payload = dht::encodeEnvelope(e);
    p.createdMs = e.createdMs;
    s.store.addPending(p);
    trySend(p, std::move(status));
    return true;
}

// Sends one pending envelope: the recipient's key comes from their verified key card.
void ContactManager::trySend(const PendingEnvelope& pending, SendStatus status) {
    auto& s = *impl_;
    if (!status)
        status = [](const std::string&) {};
    if (s.stopped || s.inFlight.count(pending.id)) {
        status("not-stored");
        return;
    }
    if (dht::unixMs() - pending.createdMs > dht::kEnvelopeWindowMs) {
        s.store.removePending(pending.id); // the recipient would drop it anyway
        status("expired");
        return;
    }
    dht::Envelope envelope;
    if (dht::decodeEnvelope(pending.payload, envelope) != dht::EnvelopeError::ok) {
        s.store.removePending(pending.id);
        status("expired");
        return;
    }
    // The store first: if it fails (disk full, locked), nothing is in flight and the next
    // retry tries again; the other order left the id in flight for ever.
    s.store.bumpPendingAttempts(pending.id);
    s.inFlight.insert(pending.id);
    auto weak = std::weak_ptr<Impl>(impl_);
    auto send = [weak, envelope, status](const std::vector<std::uint8_t>& key) {
        auto st = weak.lock();
        if (!st || st->stopped)
            return;
        st->overlay.sendEnvelope(key, envelope, [weak, envelope, status](bool ok) {
            auto st2 = weak.lock();
            if (!st2)
                return;
            st2->inFlight.erase(envelope.id);
            if (!ok) {
                spdlog::debug("{} to {} not stored yet; will retry", dht::toString(envelope.kind),
                              envelope.to.shortHex());
                status("not-stored");
                return;
            }
            status("stored");
            st2->guarded("a sent envelope", [&] { st2->store.removePending(envelope.id); });
            ContactEvent sent;
            sent.kind = ContactEvent::Kind::sent;
            sent.id = envelope.to;
            sent.envelopeKind = dht::toString(envelope.kind);
            st2->events(sent);
        });
    };
    if (auto it = s.keys.find(pending.recipient); it != s.keys.end()) {
        send(it->second);
        return;
    }
    s.overlay.lookup(
        pending.recipient, std::chrono::seconds(10),
        [this, weak, send, status, id = pending.id,
         to = pending.recipient](const dht::LookupResult& r) {
            auto st = weak.lock();
            if (!st)
                return;
            auto key = r.card ? dht::publicKeyOfCard(*r.card) : std::vector<std::uint8_t>{};
            if (key.empty()) {
                st->inFlight.erase(id);
                status("no-card");
                spdlog::info("no key card for {} yet; the request stays pending", to.shortHex());
                // Retry soon (1, 2, 4, 8 s), then with the regular retries: the card of
                // someone who has just come online appears within seconds.
                if (auto delay = st->policy.cardRetryDelay(st->noCardRetries[id]++))
                    st->timers.after(*delay, [this, weak, id] {
                        auto st2 = weak.lock();
                        if (!st2 || st2->stopped)
                            return;
                        st2->guarded("a card retry", [&] {
                            for (const auto& p : st2->store.pending())
                                if (p.id == id)
                                    trySend(p);
                        });
                    });
                return;
            }
            st->noCardRetries.erase(id);
            st->rememberKey(to, key);
            send(key);
        });
}

void ContactManager::setConnectHandler(ConnectHandler handler) {
    impl_->connectHandler = std::move(handler);
}

void ContactManager::setChatHandler(ConnectHandler handler) {
    impl_->chatHandler = std::move(handler);
}

std::optional<bool> ContactManager::online(const dht::ContactId& id) const {
    auto c = impl_->store.contact(id);
    if (!c || c->state != ContactState::accepted)
        return std::nullopt;
    return c->online;
}

bool ContactManager::isAccepted(const dht::ContactId& id) const noexcept {
    return impl_->accepted.count(id) != 0;
}

void ContactManager::withKey(const dht::ContactId& id,
                             std::function<void(const std::vector<std::uint8_t>&)> done) {
    auto& s = *impl_;
    if (auto it = s.keys.find(id); it != s.keys.end()) {
        done(it->second);
        return;
    }
    auto weak = std::weak_ptr<Impl>(impl_);
    s.overlay.lookup(id, std::chrono::seconds(10), [weak, id, done](const dht::LookupResult& r) {
        auto st = weak.lock();
        if (!st || st->stopped)
            return;
        auto key = r.card ? dht::publicKeyOfCard(*r.card) : std::vector<std::uint8_t>{};
        if (!key.empty())
            st->rememberKey(id, key);
        done(key);
    });
}

void ContactManager::sendNow(const dht::Envelope& envelope, std::function<void(bool ok)> done) {
    auto weak = std::weak_ptr<Impl>(impl_);
    withKey(envelope.to, [weak, envelope, done](const std::vector<std::uint8_t>& key) {
        auto st = weak.lock();
        if (!st || st->stopped)
            return;
        if (key.empty()) {
            done(false);
            return;
        }
        st->overlay.sendEnvelope(key, envelope, done);
    });
}

void ContactManager::scheduleRetry() {
    auto& s = *impl_;
    s.retryTimer.expires_after(s.limits.retryInterval);
    s.retryTimer.async_wait([this, weak = std::weak_ptr<Impl>(impl_)](const std::error_code& ec) {
        auto st = weak.lock();
        if (ec || !st || st->stopped)
            return;
        scheduleRetry(); // first: a failing store must not end the retries
        st->guarded("retrying sends", [&] {
            for (const auto& p : st->store.pending())
                trySend(p);
        });
    });
}

void ContactManager::onEnvelope(const dht::Envelope& e, const dht::ContactId& signer) {
    auto& s = *impl_;
    auto now = dht::unixMs();
    auto verdict = dht::checkEnvelope(e, signer, s.self, now);
    if (verdict != dht::EnvelopeVerdict::accept) {
        count("envelopes_" + std::string(dht::toString(verdict)));
        return;
    }
    // Whatever is dropped is dropped before the seen table (a SQLite write): a flood of
    // strangers' envelopes costs memory-only counters. What is acted on is marked seen first,
    // so a replay does nothing.
    std::optional<ContactRecord> existing;
    auto relation = Relation::accepted;
    if (!s.accepted.count(e.from)) {
        existing = s.store.contact(e.from);
        relation = !existing ? Relation::stranger : relationOf(existing->state);
    } else if (!dht::isConnectKind(e.kind) && e.kind != dht::EnvelopeKind::chatMessage) {
        existing = s.store.contact(e.from);
    }
    auto admission = s.policy.admit(e.kind, e.from, relation, now,
                                    [&] { return s.store.countContacts(ContactState::incoming); });
    if (admission != Admission::act) {
        if (auto name = RequestPolicy::counterName(admission, e.kind); !name.empty())
            count(std::string(name));
        return;
    }
    auto window = dht::isConnectKind(e.kind) ? dht::kConnectWindowMs : dht::kEnvelopeWindowMs;
    if (!s.store.markEnvelopeSeen(e.id, e.createdMs + window)) {
        count("envelopes_replayed");
        return;
    }
    if (dht::isConnectKind(e.kind) || e.kind == dht::EnvelopeKind::chatMessage) {
        auto& handler = dht::isConnectKind(e.kind) ? s.connectHandler : s.chatHandler;
        if (handler)
            handler(e);
        return;
    }
    if (e.kind == dht::EnvelopeKind::contactAccept) {
        existing->state = ContactState::accepted;
        if (!e.name.empty())
            existing->name = e.name;
        existing->updatedMs = now;
        s.saveContact(*existing);
        follow(e.from);
        s.events(accepted(e.from, "them"));
        return;
    }
    // A contact request.
    if (existing && existing->state == ContactState::accepted) {
        // They lost their state (reinstall, removal): confirm again.
        queue(dht::EnvelopeKind::contactAccept, e.from, "");
        return;
    }
    if (existing && existing->state == ContactState::outgoing) {
        // Both asked: that is agreement.
        existing->state = ContactState::accepted;
        existing->name = e.name;
        existing->updatedMs = now;
        s.saveContact(*existing);
        queue(dht::EnvelopeKind::contactAccept, e.from, "");
        follow(e.from);
        s.events(accepted(e.from, "both"));
        return;
    }
    ContactRecord record = existing.value_or(ContactRecord{});
    record.id = e.from;
    record.name = e.name;
    record.message = e.message;
    record.state = ContactState::incoming;
    if (!existing)
        record.createdMs = now;
    record.updatedMs = now;
    s.saveContact(record);
    ContactEvent request;
    request.kind = ContactEvent::Kind::request;
    request.id = e.from;
    request.name = e.name;
    request.message = e.message;
    s.events(request);
}

void ContactManager::follow(const dht::ContactId& id) {
    auto& s = *impl_;
    if (!s.followed.insert(id).second)
        return;
    auto weak = std::weak_ptr<Impl>(impl_);
    s.overlay.followPresence(id, [this, weak](const dht::ContactId& who, const dht::Presence& p) {
        if (auto st = weak.lock(); st && !st->stopped)
            st->guarded("a presence", [&] { onPresence(who, p); });
    });
}

void ContactManager::unfollow(const dht::ContactId& id) {
    if (impl_->followed.erase(id))
        impl_->overlay.unfollowPresence(id);
}

void ContactManager::onPresence(const dht::ContactId& id, const dht::Presence& p) {
    auto& s = *impl_;
    auto record = s.store.contact(id);
    if (!record || record->state != ContactState::accepted)
        return;
    if (record->lastSeenMs && p.timestampMs < *record->lastSeenMs)
        return; // an older copy from another replica
    bool online =
        p.status != dht::PresenceStatus::offline && dht::isPresenceFresh(p, dht::unixMs());
    bool changed = online != record->online;
    s.store.setPresence(id, online, p.timestampMs);
    if (changed)
        s.events(presence(id, online, p.timestampMs));
}

// A contact that vanished without saying goodbye (crash, network loss) goes stale.
void ContactManager::sweepPresence() {
    auto& s = *impl_;
    // Re-armed whatever the store says: a failing sweep must not end the sweeps.
    s.sweepTimer.expires_after(s.limits.presenceSweep);
    s.sweepTimer.async_wait([this, weak = std::weak_ptr<Impl>(impl_)](const std::error_code& ec) {
        auto st = weak.lock();
        if (!ec && st && !st->stopped)
            sweepPresence();
    });
    s.guarded("the presence sweep", [&] { sweepStale(); });
}

void ContactManager::sweepStale() {
    auto& s = *impl_;
    auto now = dht::unixMs();
    for (const auto& c : s.store.contacts()) {
        if (c.state != ContactState::accepted || !c.online || !c.lastSeenMs)
            continue;
        if (now - *c.lastSeenMs > dht::kPresenceStaleAfterMs) {
            s.store.setPresence(c.id, false, c.lastSeenMs);
            s.events(presence(c.id, false, *c.lastSeenMs));
        }
    }
    // DHT listens deliver new presence values quickly, but an edited value (the same record
    // with a higher seq, e.g. the offline presence a contact publishes when it stops) does not
    // always reach listeners: poll as well.
    for (const auto& c : s.store.contacts()) {
        if (c.state != ContactState::accepted)
            continue;
        s.overlay.lookup(c.id, std::chrono::seconds(5),
                         [this, weak = std::weak_ptr<Impl>(impl_)](const dht::LookupResult& r) {
                             auto st = weak.lock();
                             if (!st || st->stopped || !r.lastSeenMs || !r.status)
                                 return;
                             st->guarded("a presence", [&] {
                                 onPresence(r.id, dht::Presence{*r.status, *r.lastSeenMs, 0});
                             });
                         });
    }
}

} // namespace parley::node
