// ChatManager: text messages between contacts that are never lost, never duplicated, and
// arrive even when the sender has gone offline (DESIGN.md §7, issue 5). Lives on the node's
// io thread.
//
// Every message has a random 128-bit id, the sender's timestamp and a per-conversation
// sequence. The sender's outbox is in SQLite until the peer acknowledges. Over the direct link
// the receiver stores a message (once per id) before it acknowledges, so an acknowledged
// message is on the receiver's disk; when the contact is offline, the message also goes,
// encrypted, into their DHT inbox (at most kMaxEnvelopeChatText bytes), and the receiver
// acknowledges it over the next link. States: queued -> stored (in their DHT inbox, or sent
// over the link) -> delivered (acknowledged) -> read (read receipt).
#pragma once

#include "dht/contact_id.h"
#include "dht/envelope.h"
#include "node/link/frame.h"
#include "node/store/store.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::node {

class ContactDirectory;
class LinkManager;
class Store;

// What the chat room reports; api/chat_methods.cpp turns these into the control API's JSON.
struct ChatEvent {
    enum class Kind {
        message, // stored, in either direction: `record`
        state,   // an outgoing message moved on (stored, delivered, read): contact, id, state
    };
    Kind kind = Kind::message;
    ChatRecord record;
    dht::ContactId contact;
    std::array<std::uint8_t, 16> id{};
    std::string state;
};

// How `send` went: `error` is a sentence for the person who asked (not a contact, empty, too
// long, not UTF-8), empty when the message was queued as `id` with `seq`, now in `state`.
struct [[nodiscard]] SendResult {
    std::string error;
    std::array<std::uint8_t, 16> id{};
    std::uint64_t seq = 0;
    std::string state;
    bool ok() const { return error.empty(); }
};

// How `wait` ended: delivered (or read), or still in `state` when the time ran out; `error`
// when there was nothing to wait for.
struct WaitResult {
    std::array<std::uint8_t, 16> id{};
    bool delivered = false;
    std::string state; // empty with `error`
    std::string error;
};

struct ChatOptions {
    std::chrono::milliseconds retry{5'000};          // unacknowledged messages are sent again
    std::chrono::milliseconds connectTimeout{3'000}; // then their DHT inbox
    std::size_t window = 512;                        // messages in flight on a link
    std::size_t windowBytes = 4 << 20;               // ... and their bytes
};

class ChatManager {
public:
    using EventSink = std::function<void(const ChatEvent& event)>;

    ChatManager(asio::io_context& io, Store& store, LinkManager& links, ContactDirectory& contacts,
                const dht::ContactId& self, EventSink events, ChatOptions options = {});
    ~ChatManager();
    ChatManager(const ChatManager&) = delete;
    ChatManager& operator=(const ChatManager&) = delete;

    // Hooks into the link and contact managers and resumes the outbox.
    void start();
    // Puts what is still unacknowledged (and not there yet) into the contacts' DHT inboxes,
    // so that it arrives even if this node stays offline; then stops.
    void stop();

    // Queues a message (a refusal comes back as SendResult::error); throws StoreError.
    SendResult send(const dht::ContactId& to, const std::string& text);
    // Answers once the message is delivered (or read), or with its state after `timeout`;
    // throws StoreError.
    void wait(const std::array<std::uint8_t, 16>& id, std::chrono::milliseconds timeout,
              std::function<void(const WaitResult&)> done);
    // The newest `limit` messages with `with`, oldest first; throws StoreError.
    std::vector<ChatRecord> history(const dht::ContactId& with, std::size_t limit) const;
    // Marks the conversation's incoming messages read and sends read receipts; returns how
    // many it marked. Throws StoreError.
    std::size_t markRead(const dht::ContactId& with);

    // From the link manager and the contact manager.
    void onFrame(const dht::ContactId& peer, const wire::Message& message);
    void onLink(const dht::ContactId& peer, bool up, bool goodbye);
    void onEnvelope(const dht::Envelope& envelope);

    std::map<std::string, std::uint64_t> counters() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// Text from the network, made safe to store and show: invalid UTF-8 sequences become U+FFFD.
std::string repairUtf8(std::string_view text);

} // namespace parley::node
