// Media feedback from a receiver to a sender: NACK, picture loss, receiver report and a target
// bitrate, in one compact binary message the node carries on its control stream (or as a
// datagram). Also the reception statistics that produce the receiver report.
#pragma once

#include "media/media_types.h"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace parley::media {

enum class FeedbackError { ok, empty, badVersion, truncated, badItem, tooManyItems };
const char* toString(FeedbackError e);

struct ReceiverReport {
    std::uint32_t ssrc = 0;
    std::uint8_t fractionLost = 0;     // since the last report, in 1/256 (RFC 3550)
    std::uint32_t cumulativeLost = 0;  // 24 bits
    std::uint32_t highestSequence = 0; // extended
    std::uint32_t jitter = 0;          // in RTP timestamp units
    bool operator==(const ReceiverReport&) const = default;
};

struct Feedback {
    std::uint32_t ssrc = 0;           // the media stream this is about
    std::vector<std::uint16_t> nacks; // sequence numbers to send again
    bool pictureLoss = false;         // send a keyframe
    std::optional<ReceiverReport> report;
    std::optional<std::uint32_t> targetBitrate; // bits per second the receiver can take
    bool operator==(const Feedback&) const = default;
};

// Wire format (version 1), big-endian:
//   u8 version=1, u32 ssrc, then items: u8 type, u8 length, `length` bytes.
//   type 1 NACK: pairs of (u16 first, u16 bitmask of the 16 following) as in RFC 4585 6.2.1
//   type 2 PLI: empty
//   type 3 RR: u32 ssrc, u8 fraction lost, u24 cumulative lost, u32 highest seq, u32 jitter
//   type 4 target bitrate: u32 bits per second
// Unknown item types are skipped, so later versions can add items.
Bytes encodeFeedback(const Feedback& feedback);
FeedbackError decodeFeedback(std::span<const std::uint8_t> bytes, Feedback& out);

// Counts what arrives on one RTP stream and makes RFC 3550 receiver reports.
class ReceptionStats {
public:
    void onPacket(std::int64_t unwrappedSequence, double transitMs);
    ReceiverReport makeReport(std::uint32_t ssrc, int clockRate);
    std::uint64_t received() const { return received_; }
    std::int64_t expected() const { return received_ ? highest_ - base_ + 1 : 0; }
    std::int64_t lost() const {
        return std::max<std::int64_t>(0, expected() - std::int64_t(received_));
    }
    double jitterMs() const { return jitterMs_; }

private:
    std::uint64_t received_ = 0;
    std::int64_t base_ = 0;
    std::int64_t highest_ = 0;
    std::int64_t expectedPrior_ = 0;
    std::uint64_t receivedPrior_ = 0;
    bool haveTransit_ = false;
    double lastTransit_ = 0;
    double jitterMs_ = 0;
};

} // namespace parley::media
