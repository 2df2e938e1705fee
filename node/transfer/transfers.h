// TransferManager: files and folders to and from accepted contacts (DESIGN.md §8, issue 13).
// Lives on the node's io thread; file I/O and hashing run on the room's own disk thread.
//
// The sender scans what the person offers into a manifest (every chunk hashed), stores the
// offer and sends it on an offer stream whenever a link to the contact is up, until the
// receiver has stored it. The receiver accepts into a folder, pulls chunks over chunk streams
// (several at once), verifies each against the manifest before it writes it into a hidden
// partial file beside the target, keeps every verified chunk in its store, and renames a file
// into place once it is whole. Either side may pause, resume or cancel; what it says to the
// other goes over a control stream, and is kept until the other side has it.
//
// States: offered -> accepted -> transferring -> verifying -> completed, or paused (and back),
// failed (with the reason), cancelled, declined.
#pragma once

#include "dht/contact_id.h"
#include "node/transfer/protocol.h"
#include "node/transfer/receive_core.h"
#include "node/transfer/scan.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace parley::node {

class ContactDirectory;
class LinkManager;

// One transfer as `parley transfers` shows it.
struct TransferSummary {
    transfer::TransferId id{};
    dht::ContactId contact;
    bool outgoing = false;
    std::string state;
    std::string reason;  // failed, declined, cancelled, paused: why
    std::string name;    // the first top-level name, "and N more"
    std::string message; // the sender's words
    std::uint64_t files = 0;
    std::uint64_t totalBytes = 0;
    std::uint64_t doneBytes = 0;
    double rateBytesPerS = 0; // over the last few seconds while bytes move
    std::string dest;         // receiver: the folder it goes into
    std::int64_t createdMs = 0;
    std::int64_t updatedMs = 0;
    // Receiver: files that failed or were refused (path, reason), at most 100; `moreProblems`
    // counts the rest.
    std::vector<std::pair<std::string, std::string>> problems;
    std::size_t moreProblems = 0;
};

struct TransferEvent {
    enum class Kind {
        offered,  // a contact offered something (receiver), or our offer is stored (sender)
        progress, // bytes moved (at most every progressInterval per transfer)
        state,    // the state changed
    };
    Kind kind = Kind::state;
    TransferSummary transfer;
};

// How an offer went: `error` a sentence for the person (nothing offered then); else the id,
// and what the sender skipped (symbolic links, devices, ...).
struct OfferResult {
    std::string error;
    TransferSummary transfer;
    std::vector<transfer::Skipped> skipped;
    bool ok() const { return error.empty(); }
};

// How accept, decline, cancel, pause and resume went: `error` a sentence, else the transfer
// as it is now.
struct [[nodiscard]] TransferCommandResult {
    std::string error;
    TransferSummary transfer;
    bool ok() const { return error.empty(); }
};

struct TransferOptions {
    // False: the node has no transfer room (Node::transfers() throws) and leaves the transfer
    // stream types unregistered (tests put a crafted peer of their own on them).
    bool enabled = true;
    // Where accept puts what comes without --to: the profile's downloads setting, else
    // ~/Downloads/parley.
    std::filesystem::path downloads;
    transfer::ReceiveLimits receive;
    std::uint64_t serveBytes = 64ull * 1024 * 1024; // sender: chunk bytes read and unacknowledged
    std::chrono::milliseconds progressInterval{250};
    std::chrono::milliseconds connectTimeout{5'000}; // a link for an offer or a resume
};

class TransferManager {
public:
    using EventSink = std::function<void(const TransferEvent& event)>;

    TransferManager(asio::io_context& io, LinkManager& links, ContactDirectory& contacts,
                    const std::filesystem::path& profileDir, EventSink events,
                    TransferOptions options = {});
    ~TransferManager();
    TransferManager(const TransferManager&) = delete;
    TransferManager& operator=(const TransferManager&) = delete;

    // Opens transfers.db (throws StoreError), registers the stream types, starts the disk
    // thread and resumes what was running.
    void start();
    void stop();

    // Scans `paths` (absolute) on the disk thread, then stores the offer; it goes out when a
    // link to `to` is up. `done` runs once on the io thread.
    void offer(const dht::ContactId& to, std::vector<std::filesystem::path> paths,
               std::string message, std::function<void(const OfferResult&)> done);
    // `dir` (absolute) or the downloads folder; refused when there is too little free space.
    TransferCommandResult accept(const transfer::TransferId& id,
                                 std::optional<std::filesystem::path> dir);
    TransferCommandResult decline(const transfer::TransferId& id);
    TransferCommandResult cancel(const transfer::TransferId& id);
    TransferCommandResult pause(const transfer::TransferId& id);
    TransferCommandResult resume(const transfer::TransferId& id);

    std::vector<TransferSummary> list();
    std::optional<TransferSummary> get(const transfer::TransferId& id);
    std::vector<TransferSummary> withContact(const dht::ContactId& contact);

    // Offers from `contact` are accepted into `dir` at once (nullopt: asked again).
    void setAutoAccept(const dht::ContactId& contact, std::optional<std::filesystem::path> dir);
    std::optional<std::filesystem::path> autoAccept(const dht::ContactId& contact) const;

    // From the link manager (node.cpp wires it).
    void onLink(const dht::ContactId& peer, bool up);

    std::map<std::string, std::uint64_t> counters() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace parley::node
