// ChatOutbox: the sender's delivery policy, driven by events and a time (see outbox.h).
#include "node/chat/outbox.h"

#include <algorithm>

namespace parley::node {

ChatOutbox::Entry* ChatOutbox::find(Peer& p, const MessageId& id) {
    auto s = p.seqOf.find(id);
    if (s == p.seqOf.end())
        return nullptr;
    auto it = p.outbox.find(Key{s->second, id});
    return it == p.outbox.end() ? nullptr : &it->second;
}

void ChatOutbox::add(Peer& p, const OutboxMessage& message) {
    if (p.seqOf.count(message.id))
        return; // known already: kept as it is
    p.seqOf.emplace(message.id, message.seq);
    p.outbox.emplace(Key{message.seq, message.id}, Entry{message, std::nullopt, false});
}

void ChatOutbox::remove(Peer& p, const MessageId& id) {
    auto s = p.seqOf.find(id);
    if (s == p.seqOf.end())
        return;
    auto it = p.outbox.find(Key{s->second, id});
    if (it != p.outbox.end()) {
        land(p, it->second);
        p.outbox.erase(it);
    }
    p.seqOf.erase(s);
}

void ChatOutbox::land(Peer& p, Entry& e) {
    if (!e.sentAt)
        return;
    e.sentAt.reset();
    --p.inFlight;
    p.inFlightBytes -= e.message.bytes;
}

void ChatOutbox::clearInFlight(Peer& p) {
    for (auto& [key, e] : p.outbox)
        e.sentAt.reset();
    p.inFlight = 0;
    p.inFlightBytes = 0;
}

bool ChatOutbox::windowFull(const Peer& p) const {
    return p.inFlight >= options_.window || p.inFlightBytes >= options_.windowBytes;
}

void ChatOutbox::sendOutbox(Peer& p, OutboxActions& out, TimePoint now) {
    // In seq order: resend what has been in flight for `retry`, then fill the window. Once the
    // window is full and every message in flight has been looked at, nothing else can be sent.
    std::size_t seenInFlight = 0;
    bool complete = true;
    for (auto& [key, e] : p.outbox) {
        if (e.sentAt) {
            ++seenInFlight;
            if (now - *e.sentAt >= options_.retry) {
                e.sentAt = now;
                out.send.push_back({e.message.id, true});
            }
            continue;
        }
        if (windowFull(p)) {
            complete = false;
            if (seenInFlight == p.inFlight)
                break;
            continue;
        }
        e.sentAt = now;
        ++p.inFlight;
        p.inFlightBytes += e.message.bytes;
        out.send.push_back({e.message.id, false});
    }
    p.backlog = !complete;
}

void ChatOutbox::putToDht(Peer& p, OutboxActions& out) {
    std::size_t looked = 0;
    for (auto& [key, e] : p.outbox) {
        if (looked++ >= options_.dhtBatch)
            break;
        if (e.message.inDht || e.dhtPending)
            continue;
        if (e.message.bytes > options_.maxDhtBytes) {
            ++out.tooLongForDht; // waits for a link
            continue;
        }
        e.dhtPending = true;
        out.putToDht.push_back(e.message.id);
    }
}

std::optional<ChatOutbox::TimePoint> ChatOutbox::deadline(const Peer& p) const {
    if (p.outbox.empty())
        return std::nullopt; // receipts alone are sent when something else happens
    std::optional<TimePoint> first = p.lookAt;
    if (p.linked && p.inFlight > 0)
        for (const auto& [key, e] : p.outbox)
            if (e.sentAt && (!first || *e.sentAt + options_.retry < *first))
                first = *e.sentAt + options_.retry;
    return first;
}

void ChatOutbox::load(const dht::ContactId& peer, std::span<const OutboxMessage> messages,
                      TimePoint now) {
    auto& p = peers_[peer];
    for (const auto& m : messages)
        add(p, m);
    if (!p.outbox.empty()) {
        p.backlog = true;
        if (!p.lookAt || *p.lookAt > now)
            p.lookAt = now;
    }
}

OutboxActions ChatOutbox::queued(const dht::ContactId& peer, const OutboxMessage& message,
                                 const PeerView& view, TimePoint now) {
    auto& p = peers_[peer];
    add(p, message);
    if (p.linked) {
        OutboxActions out;
        sendOutbox(p, out, now);
        return out;
    }
    return pump(peer, view, now);
}

OutboxActions ChatOutbox::pump(const dht::ContactId& peer, const PeerView& view, TimePoint now) {
    OutboxActions out;
    auto& p = peers_[peer];
    p.lookAt.reset();
    if (p.linked) {
        out.sendReceipts = view.owesReceipts;
        sendOutbox(p, out, now);
        return out;
    }
    if (!p.outbox.empty())
        p.lookAt = now + options_.retry; // unlinked: look again (also if nothing is done now)
    if (!view.online)
        return out; // no longer a contact: the messages wait (they could be accepted again)
    if (p.outbox.empty() && !view.owesReceipts)
        return out; // connect only with something to send
    if (p.away && now - p.awaySince >= options_.awayFor)
        p.away = false; // its presence decides again
    if (!*view.online || p.away) {
        out.dhtReason = p.away ? DhtReason::away : DhtReason::offline;
        putToDht(p, out);
        return out;
    }
    if (p.connecting)
        return out;
    p.connecting = true;
    out.connect = true;
    return out;
}

OutboxActions ChatOutbox::linkUp(const dht::ContactId& peer, TimePoint now) {
    OutboxActions out;
    auto& p = peers_[peer];
    clearInFlight(p);
    p.linked = true;
    p.connecting = false;
    p.away = false;
    p.lookAt.reset();
    out.sendReceipts = true;
    sendOutbox(p, out, now);
    return out;
}

OutboxActions ChatOutbox::linkDown(const dht::ContactId& peer, bool goodbye, TimePoint now) {
    OutboxActions out;
    auto& p = peers_[peer];
    clearInFlight(p);
    p.linked = false;
    p.backlog = !p.outbox.empty();
    p.lookAt = now + options_.retry;
    // A contact that said goodbye is going offline: what it has not acknowledged goes into its
    // DHT inbox now, and so does what is queued until `awayFor` has passed.
    p.away = goodbye;
    if (goodbye) {
        p.awaySince = now;
        out.dhtReason = DhtReason::goodbye;
        putToDht(p, out);
    }
    return out;
}

OutboxActions ChatOutbox::connectResult(const dht::ContactId& peer, bool ok, const PeerView& view,
                                        TimePoint now) {
    auto& p = peers_[peer];
    p.connecting = false;
    if (ok)
        return pump(peer, view, now); // linkUp has usually sent already: this finds nothing new
    OutboxActions out;
    if (p.linked)
        return out; // a link came up the other way meanwhile
    out.dhtReason = DhtReason::connectFailed;
    putToDht(p, out); // unreachable now: their inbox keeps it
    if (!p.outbox.empty())
        p.lookAt = now + options_.retry;
    return out;
}

OutboxActions ChatOutbox::acked(const dht::ContactId& peer, std::span<const MessageId> ids,
                                bool /*read*/, TimePoint now) {
    OutboxActions out;
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return out;
    auto& p = it->second;
    std::size_t removed = 0;
    for (const auto& id : ids)
        if (find(p, id)) {
            remove(p, id);
            ++removed;
        }
    if (removed > 0 && p.linked && p.backlog)
        sendOutbox(p, out, now); // the window moved
    return out;
}

void ChatOutbox::sendFailed(const dht::ContactId& peer, std::span<const LinkSend> sends,
                            TimePoint now) {
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return;
    auto& p = it->second;
    bool any = false;
    for (const auto& s : sends) {
        auto* e = find(p, s.id);
        if (!e || !e->sentAt)
            continue;
        any = true;
        if (s.resend) {
            e->sentAt = now; // stays in flight: sent again after `retry`
        } else {
            land(p, *e);
            p.backlog = true;
        }
    }
    if (any && (!p.lookAt || *p.lookAt > now + options_.retry))
        p.lookAt = now + options_.retry;
}

void ChatOutbox::dhtResult(const dht::ContactId& peer, const MessageId& id, bool ok) {
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return;
    auto* e = find(it->second, id);
    if (!e)
        return;
    e->dhtPending = false;
    if (ok)
        e->message.inDht = true;
}

void ChatOutbox::forget(const dht::ContactId& peer, const MessageId& id) {
    auto it = peers_.find(peer);
    if (it != peers_.end())
        remove(it->second, id);
}

std::vector<std::pair<dht::ContactId, OutboxActions>> ChatOutbox::flushToDht() {
    std::vector<std::pair<dht::ContactId, OutboxActions>> out;
    for (auto& [peer, p] : peers_) {
        OutboxActions a;
        a.dhtReason = DhtReason::stopping;
        putToDht(p, a);
        if (!a.empty())
            out.emplace_back(peer, std::move(a));
    }
    return out;
}

std::vector<dht::ContactId> ChatOutbox::due(TimePoint now) const {
    std::vector<dht::ContactId> out;
    for (const auto& [peer, p] : peers_)
        if (auto d = deadline(p); d && *d <= now)
            out.push_back(peer);
    return out;
}

std::optional<ChatOutbox::TimePoint> ChatOutbox::nextDeadline() const {
    std::optional<TimePoint> first;
    for (const auto& [peer, p] : peers_)
        if (auto d = deadline(p); d && (!first || *d < *first))
            first = d;
    return first;
}

std::size_t ChatOutbox::outboxSize(const dht::ContactId& peer) const {
    auto it = peers_.find(peer);
    return it == peers_.end() ? 0 : it->second.outbox.size();
}

std::size_t ChatOutbox::inFlight(const dht::ContactId& peer) const {
    auto it = peers_.find(peer);
    return it == peers_.end() ? 0 : it->second.inFlight;
}

std::size_t ChatOutbox::inFlightBytes(const dht::ContactId& peer) const {
    auto it = peers_.find(peer);
    return it == peers_.end() ? 0 : it->second.inFlightBytes;
}

bool ChatOutbox::isInFlight(const dht::ContactId& peer, const MessageId& id) const {
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return false;
    auto s = it->second.seqOf.find(id);
    if (s == it->second.seqOf.end())
        return false;
    auto e = it->second.outbox.find(Key{s->second, id});
    return e != it->second.outbox.end() && e->second.sentAt.has_value();
}

bool ChatOutbox::linked(const dht::ContactId& peer) const {
    auto it = peers_.find(peer);
    return it != peers_.end() && it->second.linked;
}

} // namespace parley::node
