// Policy: start when the target delay is buffered; play packets in timestamp order; a missing
// frame with a later packet present is lost (FEC from the next packet if it directly follows,
// else PLC) unless the sequence numbers show the sender was in DTX; a missing frame with
// nothing later is an underrun: conceal without advancing, which adds delay, and skip that
// much once packets flow again unless the delay is below its target (then the hold stays
// as added delay). When the smallest buffered amount over the last second
// exceeds the target by more than a frame, drop one frame to shrink the delay.
#include "media/audio_jitter_buffer.h"

#include <algorithm>
#include <cmath>

namespace parley::media {

namespace {
constexpr std::int64_t kSamplesPerMs = kAudioRate / 1000;
constexpr std::size_t kShrinkWindow = 50;
} // namespace

AudioJitterBuffer::AudioJitterBuffer(AudioJitterConfig config) : config_(config) {}

int AudioJitterBuffer::targetDelayMs() const {
    int frameMs = lastSamples_ / int(kSamplesPerMs);
    int target = frameMs + int(std::ceil(4 * jitterMs_));
    if (lossSeenAt_ >= 0 && now_ - lossSeenAt_ < config_.lossMemory)
        target += frameMs;
    return std::clamp(target, config_.minDelayMs, config_.maxDelayMs);
}

int AudioJitterBuffer::bufferedMs() const {
    if (packets_.empty())
        return 0;
    auto last = std::prev(packets_.end());
    std::int64_t from = started_ ? cursor_ : packets_.begin()->first;
    std::int64_t end = last->first + last->second.samples;
    return end > from ? int((end - from) / kSamplesPerMs) : 0;
}

AudioJitterBuffer::InsertResult AudioJitterBuffer::insert(std::uint16_t sequence,
                                                          std::uint32_t timestamp, Bytes payload,
                                                          int samples, Micros now) {
    if (samples <= 0 || samples > 5760)
        return InsertResult::badSamples;
    std::int64_t seq = seqUnwrap_.unwrap(sequence);
    std::int64_t ts = tsUnwrap_.unwrap(timestamp);
    now_ = now;
    if (highestSequence_ >= 0 && seq > highestSequence_ + 1)
        lossSeenAt_ = now;
    highestSequence_ = std::max(highestSequence_, seq);

    // RFC 3550 A.8 interarrival jitter, in ms.
    double transit = double(now) / 1000.0 - double(ts) / double(kSamplesPerMs);
    if (haveTransit_) {
        double d = std::abs(transit - lastTransitMs_);
        jitterMs_ += (d - jitterMs_) / 16.0;
    }
    haveTransit_ = true;
    lastTransitMs_ = transit;

    if (started_ && ts < cursor_) {
        ++stats_.late;
        return InsertResult::late;
    }
    if (packets_.count(ts)) {
        ++stats_.duplicates;
        return InsertResult::duplicate;
    }
    if (packets_.size() >= std::size_t(config_.maxPackets))
        return InsertResult::full;
    packets_.emplace(ts, Entry{seq, std::move(payload), samples});
    ++stats_.inserted;
    return InsertResult::ok;
}

AudioPlayout AudioJitterBuffer::pull(Micros now) {
    AudioPlayout out;
    now_ = now;
    if (!started_) {
        if (packets_.empty() || bufferedMs() < targetDelayMs())
            return out;
        started_ = true;
        cursor_ = packets_.begin()->first;
    }
    int buffered = bufferedMs();
    ++stats_.pulls;
    stats_.delaySumMs += buffered;
    recentBuffered_.push_back(buffered);
    if (recentBuffered_.size() > kShrinkWindow)
        recentBuffered_.pop_front();

    for (;;) {
        auto it = packets_.find(cursor_);
        if (it != packets_.end()) {
            // Shrink an excess delay: drop this frame if the next one is here to play instead.
            if (recentBuffered_.size() == kShrinkWindow &&
                *std::min_element(recentBuffered_.begin(), recentBuffered_.end()) >
                    targetDelayMs() + lastSamples_ / kSamplesPerMs) {
                auto next = std::next(it);
                if (next != packets_.end() && next->first == cursor_ + it->second.samples) {
                    ++stats_.dropped;
                    cursor_ += it->second.samples;
                    lastSequence_ = it->second.sequence;
                    packets_.erase(it);
                    recentBuffered_.clear();
                    continue;
                }
            }
            out.kind = AudioPlayout::Kind::normal;
            out.samples = it->second.samples;
            out.timestamp = cursor_;
            out.payload = std::move(it->second.payload);
            lastSequence_ = it->second.sequence;
            lastSamples_ = it->second.samples;
            cursor_ += it->second.samples;
            debt_ = 0;
            packets_.erase(it);
            ++stats_.normal;
            return out;
        }
        auto next = packets_.upper_bound(cursor_);
        if (next == packets_.end()) {
            // Underrun: nothing newer has arrived. Conceal and hold the cursor.
            out.kind = AudioPlayout::Kind::conceal;
            out.samples = lastSamples_;
            out.timestamp = cursor_;
            debt_ += lastSamples_;
            ++stats_.underruns;
            return out;
        }
        std::int64_t gap = next->first - cursor_;
        if (debt_ > 0 && bufferedMs() - debt_ / kSamplesPerMs < targetDelayMs()) {
            // The hold was needed anyway to reach the target delay: keep it.
            debt_ = 0;
        }
        if (debt_ > 0) {
            // Already concealed while holding: skip that much of the gap silently.
            std::int64_t skip = std::min(debt_, gap);
            // What the hold covered was a loss (a sequence gap) or DTX (none), not lateness.
            if (lastSequence_ >= 0) {
                auto frames = std::uint64_t(skip / std::max(1, lastSamples_));
                frames = std::min(frames, stats_.underruns);
                stats_.underruns -= frames;
                if (next->second.sequence != lastSequence_ + 1)
                    stats_.concealed += frames;
                else
                    stats_.dtx += frames;
            }
            cursor_ += skip;
            debt_ -= skip;
            continue;
        }
        out.timestamp = cursor_;
        if (lastSequence_ >= 0 && next->second.sequence == lastSequence_ + 1) {
            out.kind = AudioPlayout::Kind::dtx;
            out.samples = int(std::min<std::int64_t>(gap, lastSamples_));
            ++stats_.dtx;
        } else if (gap <= next->second.samples && gap % 120 == 0) {
            out.kind = AudioPlayout::Kind::fec;
            out.samples = int(gap);
            out.payload = next->second.payload;
            ++stats_.fec;
        } else {
            out.kind = AudioPlayout::Kind::conceal;
            out.samples = int(std::min<std::int64_t>(gap, lastSamples_));
            ++stats_.concealed;
        }
        cursor_ += out.samples;
        return out;
    }
}

} // namespace parley::media
