#include "media/av_sync.h"

#include <algorithm>

namespace parley::media {

void AvSync::onAudioPlayout(Micros captureTime, Micros now) {
    Micros delay = now - captureTime;
    // Follow increases at once (audio got later), decreases smoothly (no video jumps).
    audioDelay_ = audioDelay_ < 0 || delay > audioDelay_ ? delay : (audioDelay_ * 7 + delay) / 8;
}

Micros AvSync::renderTime(Micros captureTime, Micros decodedAt) const {
    if (audioDelay_ < 0)
        return decodedAt;
    return std::clamp(captureTime + audioDelay_, decodedAt, decodedAt + maxHold);
}

} // namespace parley::media
