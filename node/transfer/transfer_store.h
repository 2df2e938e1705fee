// TransferStore: the transfer room's own SQLite file (transfers.db in the profile): every
// transfer in both directions with its state, the offer's manifest, the receiver's per-file
// and per-chunk progress (so a transfer resumes from its verified chunks after anything), and
// the control messages still owed to the peer. Used from the node's thread only; throws
// StoreError.
#pragma once

#include "dht/contact_id.h"
#include "node/store/database.h"
#include "node/transfer/protocol.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace parley::node::transfer {

struct TransferRecord {
    TransferId id{};
    dht::ContactId contact;
    bool outgoing = false;
    // offered, accepted, transferring, paused, verifying, completed, failed, cancelled,
    // declined (see transfers.h)
    std::string state;
    std::string reason;
    std::string name;    // what the person sees: the first top-level name, "+ N more"
    std::string message; // the sender's words with the offer
    std::uint64_t files = 0;
    std::uint64_t totalBytes = 0;
    std::uint64_t doneBytes = 0; // receiver: verified; sender: what the receiver reported
    std::string dest;            // receiver: the folder it goes into
    std::string roots;           // sender: "name\tabsolute path\n" per top-level entry;
                                 // receiver: "name\tname it got\n" for renamed ones
    bool offerDelivered = false; // sender: the receiver stored the offer
    bool pausedByPeer = false;   // paused by the other side (only it resumes)
    std::int64_t createdMs = 0;
    std::int64_t updatedMs = 0;
    bool operator==(const TransferRecord&) const = default;
};

// The receiver's progress on one file of the manifest.
struct FileProgress {
    std::uint32_t index = 0;
    std::string state; // pending, done, skipped, failed
    std::string reason;
    std::vector<std::uint8_t> chunks; // bitmap of verified chunks, bit i of byte i/8 (LSB)
    bool operator==(const FileProgress&) const = default;
};

// A control message still owed to the peer (sent when a link comes up, until answered).
struct OwedOp {
    std::int64_t seq = 0;
    TransferId transfer{};
    Op op = Op::cancel;
    std::string reason;
};

class TransferStore {
public:
    static constexpr int kSchemaVersion = 1;
    explicit TransferStore(const std::filesystem::path& file);

    void add(const TransferRecord& record, std::span<const std::uint8_t> manifest);
    std::optional<TransferRecord> get(const TransferId& id);
    std::vector<TransferRecord> list(); // newest first
    std::vector<TransferRecord> withContact(const dht::ContactId& contact);
    std::vector<std::uint8_t> manifest(const TransferId& id);
    void update(const TransferRecord& record); // every column but id, contact, outgoing

    // Receiver: the per-file rows, created when it accepts; then chunk by chunk.
    void setFiles(const TransferId& id, const std::vector<FileProgress>& files);
    std::vector<FileProgress> files(const TransferId& id);
    void saveFile(const TransferId& id, const FileProgress& file);

    void owe(const TransferId& id, Op op, const std::string& reason);
    std::vector<OwedOp> owed(const dht::ContactId& contact);
    void paid(std::int64_t seq);

    // Offers from `contact` go into `dir` without asking (nullopt: forget it).
    void setAutoAccept(const dht::ContactId& contact, const std::optional<std::string>& dir);
    std::optional<std::string> autoAccept(const dht::ContactId& contact);

    void transaction(const std::function<void()>& body) { db_.transaction(body); }

private:
    Database db_;
};

} // namespace parley::node::transfer
