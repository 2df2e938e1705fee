// ChatOutbox: the sender's side of chat delivery as a sans-IO core (DESIGN.md §1, §7). It
// mirrors each contact's outbox (the unacknowledged outgoing messages, by seq) and decides,
// from events and a time, what goes over the link, what goes into the contact's DHT inbox,
// when to connect and when to look again. It holds no text, touches no socket, clock or
// database: ChatManager performs its actions and tells it how they went.
//
// Policy, per contact:
// - Linked: messages go over the link in seq order, at most `window` messages (and
//   `windowBytes` bytes) in flight (a message goes out while less than that is in flight, so
//   one longer than the window still goes alone); an acknowledgement moves the window. A message in
//   flight for `retry` is sent again (the receiver applies it once, by id).
// - A link going down puts what was in flight back into the outbox. If the contact said
//   goodbye (it is going offline), the outbox goes into its DHT inbox at once, and so does
//   what is queued for `awayFor`; after that its presence decides again.
// - Not linked: online contacts are connected to (a failed connect sends to the DHT inbox),
//   offline ones get the outbox in their DHT inbox; every `retry` this is looked at again.
//   A message goes into the DHT inbox once (unless the put failed), if it fits an envelope.
#pragma once

#include "dht/contact_id.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace parley::node {

using MessageId = std::array<std::uint8_t, 16>;

struct OutboxOptions {
    std::chrono::milliseconds retry{5'000};    // resend, and look at unlinked contacts again
    std::chrono::milliseconds awayFor{30'000}; // after a goodbye, straight to the DHT inbox
    std::size_t window = 512;                  // messages in flight on a link
    std::size_t windowBytes = 4 << 20;         // ... and their bytes
    std::size_t dhtBatch = 256;                // the outbox head looked at for the DHT inbox
    std::size_t maxDhtBytes = 3000;            // longer texts wait for a link
};

// One unacknowledged outgoing message, as the store has it.
struct OutboxMessage {
    MessageId id{};
    std::uint64_t seq = 0;
    std::size_t bytes = 0; // of the text
    bool inDht = false;    // put into the contact's DHT inbox already
};

// What the contact looks like to the caller right now (the contacts room knows it).
struct PeerView {
    std::optional<bool> online; // nullopt: no longer an accepted contact
    bool owesReceipts = false;  // we owe them acks or read receipts
};

struct LinkSend {
    MessageId id{};
    bool resend = false;
    bool operator==(const LinkSend&) const = default;
};

// Why putToDht was chosen (for the counters): the contact is offline, said goodbye (and is
// away for `awayFor`), could not be connected to, or this node is stopping.
enum class DhtReason : std::uint8_t { none, offline, goodbye, away, connectFailed, stopping };

// What to do for one contact, in this order.
struct OutboxActions {
    bool sendReceipts = false;       // the receipts we owe, over the link
    std::vector<LinkSend> send;      // over the link, in this order (stop at the first failure)
    bool connect = false;            // set up a link (then connectResult)
    std::vector<MessageId> putToDht; // into their DHT inbox (then dhtResult for each)
    std::size_t tooLongForDht = 0;   // messages that wait for a link
    DhtReason dhtReason = DhtReason::none; // set whenever the DHT inbox was looked at
    bool empty() const {
        return !sendReceipts && send.empty() && !connect && putToDht.empty() && !tooLongForDht;
    }
};

class ChatOutbox {
public:
    using TimePoint = std::chrono::steady_clock::time_point;

    explicit ChatOutbox(OutboxOptions options = {}) : options_(options) {}

    // Adds the store's outbox of a contact (at start); ids known already are kept as they are.
    void load(const dht::ContactId& peer, std::span<const OutboxMessage> messages, TimePoint now);
    // A new message was stored in the outbox (its seq follows the others).
    OutboxActions queued(const dht::ContactId& peer, const OutboxMessage& message,
                         const PeerView& view, TimePoint now);
    // Look at the contact now: the link, the window, retries, connect or the DHT inbox.
    OutboxActions pump(const dht::ContactId& peer, const PeerView& view, TimePoint now);
    OutboxActions linkUp(const dht::ContactId& peer, TimePoint now);
    OutboxActions linkDown(const dht::ContactId& peer, bool goodbye, TimePoint now);
    OutboxActions connectResult(const dht::ContactId& peer, bool ok, const PeerView& view,
                                TimePoint now);
    // The store recorded these as delivered (or read): they leave the outbox. Ids that are not
    // in this contact's outbox are ignored.
    OutboxActions acked(const dht::ContactId& peer, std::span<const MessageId> ids, bool read,
                        TimePoint now);
    // These sends did not happen (no link, or their text could not be read): first sends go
    // back to waiting, resends stay in flight; the contact is looked at again after `retry`.
    void sendFailed(const dht::ContactId& peer, std::span<const LinkSend> sends, TimePoint now);
    // A DHT put finished. `ok` false (also when the store could not record it): it is put again
    // with a later pump.
    void dhtResult(const dht::ContactId& peer, const MessageId& id, bool ok);
    // The message is no longer in the store's outbox (another path moved it on).
    void forget(const dht::ContactId& peer, const MessageId& id);
    // At stop: everything not yet in a DHT inbox goes there.
    std::vector<std::pair<dht::ContactId, OutboxActions>> flushToDht();

    // The contacts due at `now` (retries, looks at unlinked contacts): pump() each.
    std::vector<dht::ContactId> due(TimePoint now) const;
    std::optional<TimePoint> nextDeadline() const;

    // For tests and counters.
    std::size_t outboxSize(const dht::ContactId& peer) const;
    std::size_t inFlight(const dht::ContactId& peer) const;
    std::size_t inFlightBytes(const dht::ContactId& peer) const;
    bool isInFlight(const dht::ContactId& peer, const MessageId& id) const;
    bool linked(const dht::ContactId& peer) const;

private:
    struct Entry {
        OutboxMessage message;
        std::optional<TimePoint> sentAt; // in flight on the current link since
        bool dhtPending = false;         // a put is under way
    };
    struct Key {
        std::uint64_t seq;
        MessageId id;
        auto operator<=>(const Key&) const = default;
    };
    struct Peer {
        std::map<Key, Entry> outbox; // by seq: bounded by what the user queued, not the network
        std::map<MessageId, std::uint64_t> seqOf;
        std::size_t inFlight = 0, inFlightBytes = 0;
        bool linked = false, connecting = false;
        bool away = false; // said goodbye: do not wait for a connection (for a while)
        TimePoint awaySince{};
        bool backlog = false;            // messages wait behind the window (or for a link)
        std::optional<TimePoint> lookAt; // pump again (unlinked, or after a failed send)
    };

    Entry* find(Peer& p, const MessageId& id);
    void add(Peer& p, const OutboxMessage& message);
    void remove(Peer& p, const MessageId& id);
    void land(Peer& p, Entry& e); // no longer in flight
    void clearInFlight(Peer& p);
    bool windowFull(const Peer& p) const;
    void sendOutbox(Peer& p, OutboxActions& out, TimePoint now);
    void putToDht(Peer& p, OutboxActions& out);
    std::optional<TimePoint> deadline(const Peer& p) const;

    OutboxOptions options_;
    std::map<dht::ContactId, Peer> peers_;
};

} // namespace parley::node
