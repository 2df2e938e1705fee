// The two ends of a video stream. VideoSender: frames -> libvpx -> RTP (VP8 RFC 7741, VP9
// RFC 9628), a history of sent packets to answer NACKs, keyframes on picture-loss requests,
// and a loss-based bitrate controller capped by the receiver's target bitrate. VideoReceiver:
// RTP -> frame assembly -> decode of complete, decodable frames only; makes NACK, PLI and
// receiver reports. Sans-IO.
#pragma once

#include "media/bandwidth_estimator.h"
#include "media/feedback.h"
#include "media/rtp_packet.h"
#include "media/video_frame_assembler.h"
#include "media/vpx_codec.h"

#include <deque>
#include <map>
#include <optional>

namespace parley::media {

struct VideoSenderConfig {
    VideoEncoderSettings encoder;
    std::uint32_t ssrc = 2;
    std::uint8_t payloadType = 96;
    std::uint16_t firstSequence = 0;
    std::uint32_t firstTimestamp = 0;
    std::uint16_t firstPictureId = 0;
    std::size_t maxPayload = 1200;
    std::size_t historyPackets = 1024; // NACKs are answered from the last this many packets
    int minBitrate = 100000;
    int maxBitrate = 0; // 0 = the encoder's initial bitrate
};

struct VideoSenderStats {
    std::uint64_t frames = 0;
    std::uint64_t keyframes = 0;
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;          // RTP bytes of first transmissions
    std::uint64_t retransmitted = 0;  // packets sent again for NACKs
    std::uint64_t nackMisses = 0;     // NACKed packets no longer in the history
    std::uint64_t nackOverBudget = 0; // NACKs left unanswered to stay within the budget
    std::uint64_t pictureLossRequests = 0;
    std::uint64_t bitrateChanges = 0;
};

class VideoSender {
public:
    explicit VideoSender(const VideoSenderConfig& config);
    // Encodes a frame captured at `captureTime` and returns its RTP packets.
    std::vector<Bytes> sendFrame(const VideoFrame& frame, Micros captureTime);
    // Handles feedback; returns the retransmissions to send now.
    std::vector<Bytes> onFeedback(const Feedback& feedback, Micros now);
    int bitrate() const { return encoder_.bitrate(); }
    const VideoSenderStats& stats() const { return stats_; }
    // RTP timestamp for a capture time.
    std::uint32_t timestampFor(Micros captureTime) const;

private:
    VideoSenderConfig config_;
    VideoEncoder encoder_;
    std::uint16_t sequence_;
    std::uint16_t pictureId_;
    std::int64_t pts_ = 0;
    bool forceKeyframe_ = false;
    Micros firstCapture_ = -1;
    Micros lastKeyframeRequest_ = -1;
    int maxBitrate_;
    int remoteTarget_ = 0;
    double rate_;
    struct Sent {
        Bytes packet;
        Micros lastSent;
    };
    std::map<std::uint16_t, Sent> history_;
    double retransmitBudget_ = 20000; // bytes
    Micros lastBudgetUpdate_ = -1;
    std::deque<std::uint16_t> historyOrder_;
    VideoSenderStats stats_;
};

enum class VideoPacketError { ok, badRtp, wrongPayloadType, wrongSsrc, badDescriptor };
const char* toString(VideoPacketError e);

struct DecodedVideo {
    VideoFrame frame;
    Bytes encoded; // the frame as received (for an IVF sink)
    std::int64_t timestamp = 0;
    bool keyframe = false;
};

struct VideoReceiverStats {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t malformed = 0;
    std::uint64_t framesDecoded = 0;
    std::uint64_t keyframesDecoded = 0;
    std::uint64_t decodeErrors = 0;
    std::uint64_t nackPackets = 0; // feedback messages carrying NACKs
    std::uint64_t pliSent = 0;
    std::uint64_t freezes = 0; // gaps between shown frames over 200 ms
    Micros longestGap = 0;     // between two shown frames
};

struct VideoReceiverConfig {
    FrameAssemblerConfig assembler;
    Micros reportInterval = 250000;
    Micros pliInterval = 200000;     // at most one picture-loss request per this
    std::uint32_t targetBitrate = 0; // advertised to the sender when non-zero
    int decoderThreads = 1;
};

class VideoReceiver {
public:
    VideoReceiver(VideoCodec codec, std::uint8_t payloadType, std::uint32_t ssrc = 0,
                  VideoReceiverConfig config = {});
    VideoPacketError onPacket(std::span<const std::uint8_t> bytes, Micros now);
    // Decodes every frame that is ready.
    std::vector<DecodedVideo> poll(Micros now);
    // Feedback due now (NACKs, PLI, periodic report), if any.
    std::optional<Feedback> takeFeedback(Micros now);
    void setTargetBitrate(std::uint32_t bps) { config_.targetBitrate = bps; }
    const VideoFrameAssembler& assembler() const { return assembler_; }
    const ReceptionStats& reception() const { return reception_; }
    const VideoReceiverStats& stats() const { return stats_; }

private:
    VideoCodec codec_;
    std::uint8_t payloadType_;
    std::uint32_t ssrc_;
    VideoReceiverConfig config_;
    VideoFrameAssembler assembler_;
    VideoDecoder decoder_;
    SequenceUnwrapper seqUnwrap_;
    ReceptionStats reception_;
    BandwidthEstimator bandwidth_;
    std::optional<double> transitBase_;
    Micros lastReport_ = -1;
    Micros lastPli_ = -1;
    bool pliWanted_ = false;
    Micros lastShown_ = -1;
    VideoReceiverStats stats_;
};

} // namespace parley::media
