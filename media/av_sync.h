// Lip sync by timestamps: a video frame is rendered when the audio captured at the same
// moment plays. Both streams' RTP timestamps are mapped to the sender's capture clock (by the
// caller: in a call, from the sender's clock mapping; in the loopback, directly); the audio
// playout delay then tells when each video frame is due. Sans-IO.
#pragma once

#include "media/media_types.h"

namespace parley::media {

class AvSync {
public:
    // The audio frame captured at `captureTime` starts playing at `now`.
    void onAudioPlayout(Micros captureTime, Micros now);
    // When to render a video frame captured at `captureTime` and decoded at `decodedAt`:
    // never before it is decoded, never more than `maxHold` after.
    Micros renderTime(Micros captureTime, Micros decodedAt) const;
    // Audio capture-to-playout delay, -1 before any audio has played.
    Micros audioDelay() const { return audioDelay_; }
    static constexpr Micros maxHold = 300000;

private:
    Micros audioDelay_ = -1;
};

} // namespace parley::media
