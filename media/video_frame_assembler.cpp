#include "media/video_frame_assembler.h"

#include <algorithm>

namespace parley::media {

VideoFrameAssembler::VideoFrameAssembler(FrameAssemblerConfig config) : config_(config) {}

bool VideoFrameAssembler::insert(VideoPacketInfo p, Micros now) {
    ++stats_.packets;
    std::int64_t seq = seqUnwrap_.unwrap(p.sequence);
    std::int64_t ts = tsUnwrap_.unwrap(p.timestamp);
    // NACK bookkeeping.
    bool recovered = false;
    if (auto m = missing_.find(seq); m != missing_.end()) {
        if (m->second.tries == 0) {
            // Plain reordering: learn how late an original can be, so as not to NACK it.
            reorderDelay_ = std::max(reorderDelay_ * 63 / 64, now - m->second.since);
        }
        if (m->second.tries > 0) {
            ++stats_.recovered;
            recovered = true;
            // Round trip from a packet NACKed once (unambiguous) to its arrival.
            if (m->second.tries == 1) {
                Micros sample = now - m->second.lastNack;
                rtt_ = rtt_ < 0 ? sample : (rtt_ * 7 + sample) / 8;
            }
        }
        missing_.erase(m);
    }
    if (!highestSeq_) {
        highestSeq_ = seq;
    } else if (seq > *highestSeq_) {
        if (seq - *highestSeq_ > 1000) {
            // A jump this large is a restart or garbage: forget what was missing.
            missing_.clear();
        } else {
            for (std::int64_t s = *highestSeq_ + 1; s < seq; ++s)
                missing_[s] = Missing{-1, 0, now};
        }
        highestSeq_ = seq;
    }
    if (haveOutput_ && ts <= lastTimestamp_) {
        ++stats_.old;
        return recovered;
    }
    Frame& f = frames_[ts];
    if (f.packets.empty())
        f.firstArrival = now;
    if (f.packets.count(seq)) {
        ++stats_.duplicates;
        return recovered;
    }
    std::int64_t pic = picUnwrap_.unwrap(p.pictureId);
    f.packets.emplace(seq, Packet{p.marker, p.frameStart, p.keyframe, pic, std::move(p.data)});
    ++packetCount_;
    // Bound memory: drop the oldest frames.
    while (packetCount_ > config_.maxPackets && frames_.size() > 1) {
        packetCount_ -= frames_.begin()->second.packets.size();
        frames_.erase(frames_.begin());
        ++stats_.framesSkipped;
        needKeyframe_ = true;
    }
    return recovered;
}

bool VideoFrameAssembler::complete(const Frame& f) const {
    if (f.packets.empty())
        return false;
    const auto& first = *f.packets.begin();
    const auto& last = *f.packets.rbegin();
    if (!first.second.frameStart || !last.second.marker)
        return false;
    return last.first - first.first + 1 == std::int64_t(f.packets.size());
}

AssembledFrame VideoFrameAssembler::take(std::map<std::int64_t, Frame>::iterator it) {
    AssembledFrame out;
    out.timestamp = it->first;
    // Sequence numbers before this frame need no NACK any more.
    missing_.erase(missing_.begin(), missing_.lower_bound(it->second.packets.begin()->first));
    const Packet& first = it->second.packets.begin()->second;
    out.keyframe = first.keyframe;
    out.pictureId = first.pictureId;
    for (auto& [seq, p] : it->second.packets)
        out.data.insert(out.data.end(), p.data.begin(), p.data.end());
    // Everything up to this frame is done with.
    for (auto i = frames_.begin(), stop = std::next(it); i != stop;) {
        packetCount_ -= i->second.packets.size();
        if (i != it)
            ++stats_.framesSkipped;
        i = frames_.erase(i);
    }
    haveOutput_ = true;
    lastTimestamp_ = out.timestamp;
    lastPictureId_ = out.pictureId;
    if (out.keyframe)
        needKeyframe_ = false;
    stallSince_ = -1;
    requestPending_ = false;
    ++stats_.framesOut;
    return out;
}

std::optional<AssembledFrame> VideoFrameAssembler::nextFrame(Micros now) {
    if (frames_.empty())
        return std::nullopt;
    auto first = frames_.begin();
    if (complete(first->second)) {
        const Packet& p = first->second.packets.begin()->second;
        bool continuous = haveOutput_ && !needKeyframe_ && p.pictureId == lastPictureId_ + 1;
        if (p.keyframe || continuous)
            return take(first);
    }
    // The next frame is not ready: a complete keyframe later on lets us skip ahead.
    for (auto it = std::next(first); it != frames_.end(); ++it) {
        if (complete(it->second) && it->second.packets.begin()->second.keyframe)
            return take(it);
    }
    if (stallSince_ < 0)
        stallSince_ = now;
    // A keyframe on its way (its first packet is here) is better completed by NACKs than
    // replaced by another: asking again would only add to the congestion that may have
    // caused the loss. Wait longer for it.
    Micros wait = config_.maxWait;
    for (auto it = first; it != frames_.end(); ++it)
        if (it->second.packets.begin()->second.keyframe) {
            wait = std::max(wait, config_.keyframeWait);
            break;
        }
    if (!requestPending_ && now - stallSince_ >= wait) {
        requestPending_ = true;
        needKeyframe_ = true;
    }
    return std::nullopt;
}

bool VideoFrameAssembler::keyframeNeeded(Micros now) {
    if (requestPending_ && needKeyframe_) {
        ++stats_.keyframeRequests;
        requestPending_ = false;
        stallSince_ = now; // ask again after another maxWait if nothing comes
        return true;
    }
    return false;
}

void VideoFrameAssembler::onDecodeFailed() {
    needKeyframe_ = true;
    requestPending_ = true;
}

std::vector<std::uint16_t> VideoFrameAssembler::takeNacks(Micros now) {
    std::vector<std::uint16_t> out;
    for (auto it = missing_.begin(); it != missing_.end();) {
        Missing& m = it->second;
        if (m.tries >= config_.maxNackTries || now - m.since > 1000000) {
            it = missing_.erase(it);
            continue;
        }
        // A gap may be reordering: give the packet a moment before the first NACK.
        Micros reorderWait =
            std::clamp(reorderDelay_ + reorderDelay_ / 4, config_.reorderWait, Micros(100000));
        if (m.tries == 0 && now - m.since < reorderWait) {
            ++it;
            continue;
        }
        // Ask again only after a round trip could have answered.
        Micros interval = std::max(config_.nackInterval, rtt_ + rtt_ / 4);
        if (m.lastNack < 0 || now - m.lastNack >= interval) {
            m.lastNack = now;
            ++m.tries;
            ++stats_.nacked;
            out.push_back(std::uint16_t(it->first & 0xffff));
        }
        ++it;
    }
    return out;
}

} // namespace parley::media
