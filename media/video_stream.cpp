#include "media/video_stream.h"

#include "media/vp8_payload.h"
#include "media/vp9_payload.h"

#include <algorithm>

namespace parley::media {

VideoSender::VideoSender(const VideoSenderConfig& config)
    : config_(config), encoder_(config.encoder), sequence_(config.firstSequence),
      pictureId_(config.firstPictureId & 0x7fff),
      maxBitrate_(config.maxBitrate > 0 ? config.maxBitrate : config.encoder.bitrate),
      rate_(config.encoder.bitrate) {}

std::uint32_t VideoSender::timestampFor(Micros captureTime) const {
    Micros base = firstCapture_ < 0 ? captureTime : firstCapture_;
    return config_.firstTimestamp + std::uint32_t((captureTime - base) * kVideoClock / 1000000);
}

std::vector<Bytes> VideoSender::sendFrame(const VideoFrame& frame, Micros captureTime) {
    if (firstCapture_ < 0)
        firstCapture_ = captureTime;
    EncodedFrame enc = encoder_.encode(frame, pts_++, forceKeyframe_);
    std::vector<Bytes> out;
    if (enc.data.empty())
        return out;
    forceKeyframe_ = false;
    ++stats_.frames;
    if (enc.keyframe)
        ++stats_.keyframes;
    auto payloads = config_.encoder.codec == VideoCodec::vp8
                        ? packetizeVp8(enc.data, pictureId_, config_.maxPayload)
                        : packetizeVp9(enc.data, pictureId_, enc.keyframe, config_.encoder.width,
                                       config_.encoder.height, config_.maxPayload);
    pictureId_ = std::uint16_t((pictureId_ + 1) & 0x7fff);
    std::uint32_t ts = timestampFor(captureTime);
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        RtpPacket p;
        p.marker = i + 1 == payloads.size();
        p.payloadType = config_.payloadType;
        p.sequence = sequence_++;
        p.timestamp = ts;
        p.ssrc = config_.ssrc;
        p.payload = std::move(payloads[i]);
        Bytes bytes = serializeRtp(p);
        stats_.bytes += bytes.size();
        ++stats_.packets;
        if (history_.count(p.sequence) == 0)
            historyOrder_.push_back(p.sequence);
        history_[p.sequence] = Sent{bytes, captureTime};
        while (historyOrder_.size() > config_.historyPackets) {
            history_.erase(historyOrder_.front());
            historyOrder_.pop_front();
        }
        out.push_back(std::move(bytes));
    }
    return out;
}

std::vector<Bytes> VideoSender::onFeedback(const Feedback& f, Micros now) {
    std::vector<Bytes> out;
    if (lastBudgetUpdate_ >= 0) {
        double bytesPerSecond = double(encoder_.bitrate()) / 8 / 2;
        retransmitBudget_ =
            std::min(retransmitBudget_ + bytesPerSecond * double(now - lastBudgetUpdate_) / 1e6,
                     bytesPerSecond / 5 + 1500);
    }
    lastBudgetUpdate_ = now;
    for (std::uint16_t seq : f.nacks) {
        auto it = history_.find(seq);
        if (it == history_.end()) {
            ++stats_.nackMisses;
            continue;
        }
        // Ignore repeats of a NACK we answered a moment ago.
        if (now - it->second.lastSent < 10000)
            continue;
        // Retransmissions may use half the media rate on top of it, so that on a congested
        // path they cannot crowd out new frames (a NACK storm).
        if (retransmitBudget_ < double(it->second.packet.size())) {
            ++stats_.nackOverBudget;
            continue;
        }
        retransmitBudget_ -= double(it->second.packet.size());
        it->second.lastSent = now;
        ++stats_.retransmitted;
        out.push_back(it->second.packet);
    }
    if (f.pictureLoss) {
        ++stats_.pictureLossRequests;
        // One keyframe answers all requests made while it travels.
        if (lastKeyframeRequest_ < 0 || now - lastKeyframeRequest_ >= 100000) {
            forceKeyframe_ = true;
            lastKeyframeRequest_ = now;
        }
    }
    if (f.targetBitrate)
        remoteTarget_ = int(std::min<std::uint32_t>(*f.targetBitrate, 50000000));
    if (f.report) {
        // Loss-based control in the spirit of GCC (draft-ietf-rmcat-gcc 6): back off on
        // heavy loss, hold on moderate loss (NACK copes), probe upwards when clean.
        double loss = f.report->fractionLost / 256.0;
        if (loss > 0.10)
            rate_ *= 1.0 - 0.5 * loss;
        else if (loss < 0.02)
            rate_ *= 1.05;
    }
    int cap = remoteTarget_ > 0 ? std::min(maxBitrate_, remoteTarget_) : maxBitrate_;
    rate_ =
        std::clamp(rate_, double(config_.minBitrate), double(std::max(cap, config_.minBitrate)));
    int rounded = int(rate_) / 1000 * 1000;
    if (rounded != encoder_.bitrate()) {
        encoder_.setBitrate(rounded);
        ++stats_.bitrateChanges;
    }
    return out;
}

const char* toString(VideoPacketError e) {
    switch (e) {
    case VideoPacketError::ok:
        return "ok";
    case VideoPacketError::badRtp:
        return "malformed RTP";
    case VideoPacketError::wrongPayloadType:
        return "unexpected payload type";
    case VideoPacketError::wrongSsrc:
        return "unexpected SSRC";
    case VideoPacketError::badDescriptor:
        return "malformed payload descriptor";
    }
    return "unknown";
}

VideoReceiver::VideoReceiver(VideoCodec codec, std::uint8_t payloadType, std::uint32_t ssrc,
                             VideoReceiverConfig config)
    : codec_(codec), payloadType_(payloadType), ssrc_(ssrc), config_(config),
      assembler_(config.assembler), decoder_(codec, config.decoderThreads) {}

VideoPacketError VideoReceiver::onPacket(std::span<const std::uint8_t> bytes, Micros now) {
    RtpPacket p;
    if (parseRtp(bytes, p) != RtpError::ok) {
        ++stats_.malformed;
        return VideoPacketError::badRtp;
    }
    if (p.payloadType != payloadType_) {
        ++stats_.malformed;
        return VideoPacketError::wrongPayloadType;
    }
    if (ssrc_ == 0)
        ssrc_ = p.ssrc;
    if (p.ssrc != ssrc_) {
        ++stats_.malformed;
        return VideoPacketError::wrongSsrc;
    }
    VideoPacketInfo info;
    std::size_t headerSize = 0;
    if (codec_ == VideoCodec::vp8) {
        Vp8Descriptor d;
        if (parseVp8Descriptor(p.payload, d) != Vp8PayloadError::ok) {
            ++stats_.malformed;
            return VideoPacketError::badDescriptor;
        }
        info.frameStart = d.frameStart();
        info.keyframe = d.keyframe;
        info.pictureId = d.pictureId;
        headerSize = d.headerSize;
    } else {
        Vp9Descriptor d;
        if (parseVp9Descriptor(p.payload, d) != Vp9PayloadError::ok) {
            ++stats_.malformed;
            return VideoPacketError::badDescriptor;
        }
        info.frameStart = d.beginOfFrame;
        info.keyframe = d.keyframe();
        info.pictureId = d.pictureId;
        headerSize = d.headerSize;
    }
    ++stats_.packets;
    stats_.bytes += bytes.size();
    std::int64_t seq = seqUnwrap_.unwrap(p.sequence);
    double transit = double(now) / 1000.0 - double(p.timestamp) / 90.0;
    info.sequence = p.sequence;
    info.timestamp = p.timestamp;
    info.marker = p.marker;
    info.data.assign(p.payload.begin() + std::ptrdiff_t(headerSize), p.payload.end());
    // Reports count first transmissions only: the loss they report is the network's, which
    // is what the sender's rate control needs, not what NACK left over.
    if (!assembler_.insert(std::move(info), now)) {
        reception_.onPacket(seq, transit);
        // Transit is made non-negative by a fixed offset: RTP timestamps start anywhere.
        if (!transitBase_)
            transitBase_ = transit - 1e6;
        bandwidth_.onPacket(bytes.size(), transit - *transitBase_, now);
    } else {
        bandwidth_.onPacket(bytes.size(), -1, now);
    }
    return VideoPacketError::ok;
}

std::vector<DecodedVideo> VideoReceiver::poll(Micros now) {
    std::vector<DecodedVideo> out;
    while (auto frame = assembler_.nextFrame(now)) {
        DecodedVideo d;
        if (!decoder_.decode(frame->data, d.frame)) {
            ++stats_.decodeErrors;
            assembler_.onDecodeFailed();
            continue;
        }
        ++stats_.framesDecoded;
        if (frame->keyframe)
            ++stats_.keyframesDecoded;
        if (lastShown_ >= 0) {
            Micros gap = now - lastShown_;
            stats_.longestGap = std::max(stats_.longestGap, gap);
            if (gap > 200000)
                ++stats_.freezes;
        }
        lastShown_ = now;
        d.encoded = std::move(frame->data);
        d.timestamp = frame->timestamp;
        d.keyframe = frame->keyframe;
        out.push_back(std::move(d));
    }
    if (assembler_.keyframeNeeded(now))
        pliWanted_ = true;
    return out;
}

std::optional<Feedback> VideoReceiver::takeFeedback(Micros now) {
    Feedback f;
    f.ssrc = ssrc_;
    bool any = false;
    f.nacks = assembler_.takeNacks(now);
    if (!f.nacks.empty()) {
        ++stats_.nackPackets;
        any = true;
    }
    if (pliWanted_ && (lastPli_ < 0 || now - lastPli_ >= config_.pliInterval)) {
        f.pictureLoss = true;
        pliWanted_ = false;
        lastPli_ = now;
        ++stats_.pliSent;
        any = true;
    }
    if (reception_.received() > 0 &&
        (lastReport_ < 0 || now - lastReport_ >= config_.reportInterval)) {
        f.report = reception_.makeReport(ssrc_, kVideoClock);
        std::uint32_t estimate = bandwidth_.update(f.report->fractionLost / 256.0, now);
        std::uint32_t target = config_.targetBitrate;
        if (estimate > 0)
            target = target > 0 ? std::min(target, estimate) : estimate;
        if (target > 0)
            f.targetBitrate = target;
        lastReport_ = now;
        any = true;
    }
    if (!any)
        return std::nullopt;
    return f;
}

} // namespace parley::media
