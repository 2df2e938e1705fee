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

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace asio {
class io_context;
}

namespace parley::node {

class ContactDirectory;
class LinkManager;
class Store;

// A command that cannot be carried out, with a sentence for the person who asked.
struct ChatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ChatOptions {
    std::chrono::milliseconds retry{5'000};          // unacknowledged messages are sent again
    std::chrono::milliseconds connectTimeout{3'000}; // then their DHT inbox
    std::size_t window = 512;                        // messages in flight on a link
    std::size_t windowBytes = 4 << 20;               // ... and their bytes
};

class ChatManager {
public:
    using EventSink = std::function<void(const nlohmann::json& event)>;

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

    // Queues a message; throws ChatError (not a contact, empty, too long, not UTF-8) or
    // StoreError. Returns {id, seq, state}.
    nlohmann::json send(const dht::ContactId& to, const std::string& text);
    // Answers once the message is delivered (or read), or with its state after `timeout`.
    void wait(const std::array<std::uint8_t, 16>& id, std::chrono::milliseconds timeout,
              std::function<void(nlohmann::json)> done);
    nlohmann::json history(const dht::ContactId& with, std::size_t limit) const;
    // Marks the conversation's incoming messages read and sends read receipts.
    nlohmann::json markRead(const dht::ContactId& with);

    // From the link manager and the contact manager.
    void onFrame(const dht::ContactId& peer, const wire::Message& message);
    void onLink(const dht::ContactId& peer, bool up, bool goodbye);
    void onEnvelope(const dht::Envelope& envelope);

    nlohmann::json counters() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// Text from the network, made safe to store and show: invalid UTF-8 sequences become U+FFFD.
std::string repairUtf8(std::string_view text);

} // namespace parley::node
