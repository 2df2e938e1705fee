// TransferManager, what the two sides tell each other about a transfer: control messages
// (accepted, decline, cancel, pause, resume, completed, failed) on short control streams,
// kept in the store until the peer has answered them.
#include "node/transfer/transfers_internal.h"

#include <spdlog/spdlog.h>

namespace parley::node {

void TransferManager::Impl::sendOwed(const dht::ContactId& peer) {
    for (const auto& op : store->owed(peer)) {
        if (opsInFlight.contains(op.seq))
            continue;
        auto opened = links.openStream(peer, tr::kControlStream, op.transfer);
        if (opened.error != LinkManager::StreamError::ok)
            return;
        std::vector<std::uint8_t> bytes;
        tr::encodeControl({op.op, op.reason}, bytes);
        links.writeStream(opened.handle, bytes, true);
        controlsOut[keyOf(opened.handle)] = ControlOut{op.seq, {}};
        opsInFlight.insert(op.seq);
    }
}

void TransferManager::Impl::onControlOpened(const LinkManager::StreamHandle& h,
                                            std::span<const std::uint8_t> id) {
    if (id.size() != 16) {
        count("control_refused");
        links.resetStream(h, 0x201);
        return;
    }
    ControlIn in;
    std::copy(id.begin(), id.end(), in.id.begin());
    controlsIn[keyOf(h)] = std::move(in);
}

void TransferManager::Impl::onControlData(const LinkManager::StreamHandle& h,
                                          std::span<const std::uint8_t> data, bool fin) {
    auto key = keyOf(h);
    if (auto out = controlsOut.find(key); out != controlsOut.end()) {
        links.consumeStream(h, data.size());
        out->second.answer.insert(out->second.answer.end(), data.begin(), data.end());
        if (out->second.answer.size() > tr::kMaxControlSize) {
            links.resetStream(h, 0x201);
            opsInFlight.erase(out->second.seq);
            controlsOut.erase(out);
            return;
        }
        if (fin) {
            auto answer = tr::decodeAnswer(out->second.answer);
            // Refused or not, the peer has heard it: a refusal says the transfer is unknown
            // or over there, and sending it again would change nothing.
            if (answer) {
                if (!answer->ok)
                    spdlog::info("a transfer message was refused by {}: {}", h.peer.shortHex(),
                                 answer->reason);
                store->paid(out->second.seq);
            }
            opsInFlight.erase(out->second.seq);
            controlsOut.erase(out);
        }
        return;
    }
    auto it = controlsIn.find(key);
    if (it == controlsIn.end())
        return;
    links.consumeStream(h, data.size());
    it->second.bytes.insert(it->second.bytes.end(), data.begin(), data.end());
    if (it->second.bytes.size() > tr::kMaxControlSize) {
        count("control_refused");
        links.resetStream(h, 0x201);
        controlsIn.erase(it);
        return;
    }
    if (!fin)
        return;
    auto message = tr::decodeControl(it->second.bytes);
    tr::Answer answer{false, "malformed"};
    if (message)
        answer = applyControl(h.peer, it->second.id, *message);
    else
        count("control_refused");
    std::vector<std::uint8_t> bytes;
    tr::encodeAnswer(answer, bytes);
    links.writeStream(h, bytes, true);
    controlsIn.erase(it);
}

void TransferManager::Impl::onControlClosed(const LinkManager::StreamHandle& h) {
    auto key = keyOf(h);
    if (auto out = controlsOut.find(key); out != controlsOut.end()) {
        opsInFlight.erase(out->second.seq); // unanswered: sent again on the next link
        controlsOut.erase(out);
    }
    controlsIn.erase(key);
}

// What the peer tells us about a transfer between us; anything about a transfer it is not
// part of is refused as unknown.
tr::Answer TransferManager::Impl::applyControl(const dht::ContactId& peer, const tr::TransferId& id,
                                               const tr::ControlMessage& m) {
    auto* record = find(id);
    if (!record || record->contact != peer) {
        count("control_unknown");
        return {false, "unknown transfer"};
    }
    if (terminal(record->state))
        return {true, {}}; // over here already: nothing changes
    auto reason = m.reason;
    switch (m.op) {
    case tr::Op::accepted:
        if (record->outgoing && record->state == "offered")
            setState(*record, "accepted");
        break;
    case tr::Op::decline:
        if (record->outgoing)
            setState(*record, "declined", reason.empty() ? "declined by the receiver" : reason);
        break;
    case tr::Op::cancel:
        if (!record->outgoing) {
            auto& in = incoming.at(id);
            stopFetching(in);
            removePartials(in);
        }
        setState(*record, "cancelled",
                 reason.empty()
                     ? (record->outgoing ? "cancelled by the receiver" : "cancelled by the sender")
                     : reason);
        break;
    case tr::Op::pause:
        record->pausedByPeer = true;
        if (!record->outgoing)
            stopFetching(incoming.at(id));
        setState(*record, "paused",
                 record->outgoing ? "paused by the receiver" : "paused by the sender");
        break;
    case tr::Op::resume:
        if (record->state == "paused" && record->pausedByPeer) {
            record->pausedByPeer = false;
            if (record->outgoing) {
                setState(*record, record->doneBytes > 0 ? "transferring" : "accepted");
            } else {
                auto& in = incoming.at(id);
                if (in.core)
                    in.core->setPaused(false);
                setState(*record, in.core ? "transferring" : "offered");
                if (in.core)
                    pump(in);
            }
        }
        break;
    case tr::Op::completed:
        if (record->outgoing) {
            record->doneBytes = record->totalBytes;
            setState(*record, "completed");
        }
        break;
    case tr::Op::failed:
        if (record->outgoing)
            setState(*record, "failed", reason.empty() ? "failed at the receiver" : reason);
        break;
    }
    if (record->outgoing && terminal(record->state))
        outgoing.at(id).manifest.reset();
    return {true, {}};
}

} // namespace parley::node
