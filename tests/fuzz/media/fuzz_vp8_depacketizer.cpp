// Fuzz target: RTP/VP8 depacketizer, frame assembly, NACK/PLI decisions and the decoder.
// The input is a run of packets, each a length byte and that many bytes, 5 ms apart.
#include "media/video_stream.h"
#include "media/vp8_payload.h"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::media;
    {
        Vp8Descriptor d;
        if (parseVp8Descriptor(std::span<const std::uint8_t>(data, size), d) ==
                Vp8PayloadError::ok &&
            d.headerSize >= size)
            __builtin_trap();
    }
    VideoReceiver receiver(VideoCodec::vp8, 96);
    Micros now = 0;
    std::size_t pos = 0;
    while (pos < size) {
        std::size_t n = data[pos++];
        n = std::min(n, size - pos);
        (void)receiver.onPacket(std::span<const std::uint8_t>(data + pos, n), now);
        pos += n;
        now += 5000;
        for (auto& frame : receiver.poll(now))
            if (frame.frame.data.size() !=
                VideoFrame::sizeFor(frame.frame.width, frame.frame.height))
                __builtin_trap();
        if (auto fb = receiver.takeFeedback(now))
            (void)encodeFeedback(*fb);
    }
    return 0;
}
