// Fuzz target: RTP/Opus depacketizer, jitter buffer and decoder. The input is a run of
// packets, each a length byte and that many bytes, arriving 7 ms apart while the device
// pulls a frame every 20 ms.
#include "media/audio_stream.h"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::media;
    AudioReceiver receiver(size > 0 && (data[0] & 1) ? 2 : 1, 111);
    Micros now = 0, nextPull = 0;
    AudioFrame out;
    std::size_t pos = 0;
    while (pos < size) {
        std::size_t n = data[pos++];
        n = std::min(n, size - pos);
        (void)receiver.onPacket(std::span<const std::uint8_t>(data + pos, n), now);
        pos += n;
        now += 7000;
        while (nextPull <= now) {
            receiver.playout(nextPull, out);
            if (out.samples.size() > std::size_t(5760 * 2))
                __builtin_trap();
            nextPull += 20000;
        }
    }
    (void)encodeFeedback(receiver.makeFeedback());
    return 0;
}
