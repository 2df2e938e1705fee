// Video frame assembly on the receiving side: packets in (any order, duplicated, lost), whole
// frames out in order, decodable only (a keyframe, or the frame right after the last one
// given out). Keeps the NACK list for missing sequence numbers and decides when to ask for a
// keyframe (a frame that cannot be completed in time). Sans-IO.
#pragma once

#include "media/media_types.h"
#include "media/rtp_packet.h"

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace parley::media {

struct VideoPacketInfo {
    std::uint16_t sequence = 0;
    std::uint32_t timestamp = 0;
    bool marker = false;         // last packet of the frame
    bool frameStart = false;     // first packet of the frame
    bool keyframe = false;       // meaningful on the first packet
    std::uint16_t pictureId = 0; // 15 bits
    Bytes data;                  // codec payload without the descriptor
};

struct AssembledFrame {
    Bytes data;
    bool keyframe = false;
    std::int64_t timestamp = 0; // unwrapped RTP timestamp
    std::int64_t pictureId = 0; // unwrapped
};

struct FrameAssemblerConfig {
    Micros maxWait = 200000;      // incomplete next frame: ask for a keyframe after this
    Micros keyframeWait = 600000; // the same while part of a keyframe is already here
    Micros reorderWait = 10000;   // a gap this young may be reordering: no NACK yet
    Micros nackInterval = 40000;  // between NACKs for the same sequence number
    int maxNackTries = 10;
    std::size_t maxPackets = 4000; // memory bound against floods
};

struct FrameAssemblerStats {
    std::uint64_t packets = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t old = 0;       // for frames already given out or skipped
    std::uint64_t nacked = 0;    // sequence numbers asked again (counting retries)
    std::uint64_t recovered = 0; // packets that arrived after a NACK
    std::uint64_t framesOut = 0;
    std::uint64_t framesSkipped = 0; // frames dropped because a later keyframe was used
    std::uint64_t keyframeRequests = 0;
};

class VideoFrameAssembler {
public:
    explicit VideoFrameAssembler(FrameAssemblerConfig config = {});
    // Returns true if the packet answers a NACK (a retransmission, or a late original).
    bool insert(VideoPacketInfo packet, Micros now);
    // The next decodable complete frame, if any.
    std::optional<AssembledFrame> nextFrame(Micros now);
    // Sequence numbers to NACK now.
    std::vector<std::uint16_t> takeNacks(Micros now);
    // True once when a keyframe should be requested (the caller rate-limits sending PLIs).
    bool keyframeNeeded(Micros now);
    // The decoder failed on a frame: only a keyframe can follow.
    void onDecodeFailed();
    const FrameAssemblerStats& stats() const { return stats_; }
    // Round-trip estimate from NACK to retransmission, or -1 before the first one.
    Micros roundTrip() const { return rtt_; }

private:
    struct Packet {
        bool marker, frameStart, keyframe;
        std::int64_t pictureId;
        Bytes data;
    };
    struct Frame {
        std::map<std::int64_t, Packet> packets; // by unwrapped sequence
        Micros firstArrival = 0;
    };
    bool complete(const Frame& f) const;
    AssembledFrame take(std::map<std::int64_t, Frame>::iterator it);

    FrameAssemblerConfig config_;
    SequenceUnwrapper seqUnwrap_;
    TimestampUnwrapper tsUnwrap_;
    Unwrapper<15> picUnwrap_;
    std::map<std::int64_t, Frame> frames_; // by unwrapped timestamp
    std::size_t packetCount_ = 0;
    bool haveOutput_ = false;
    std::int64_t lastTimestamp_ = 0;
    std::int64_t lastPictureId_ = 0;
    bool needKeyframe_ = true; // until the first keyframe
    Micros stallSince_ = -1;
    bool requestPending_ = false;
    std::optional<std::int64_t> highestSeq_;
    struct Missing {
        Micros lastNack = -1;
        int tries = 0;
        Micros since = 0;
    };
    std::map<std::int64_t, Missing> missing_;
    Micros rtt_ = -1;         // estimated from NACKed packets' arrival
    Micros reorderDelay_ = 0; // how late reordered originals have come, decaying
    FrameAssemblerStats stats_;
};

} // namespace parley::media
