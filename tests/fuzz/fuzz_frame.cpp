// Fuzz target: the control stream carries whatever a connected peer sends. The input is read
// both as a byte stream, split into frames in several chunk sizes (which must all agree), and
// as one payload; every message that decodes must re-encode to the same message.
#include "node/link/frame.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace wire = parley::node::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

void checkPayload(std::span<const std::uint8_t> payload) {
    wire::Message message;
    auto error = wire::decodeMessage(payload, message);
    if (wire::describe(error).empty())
        std::abort();
    if (error != wire::FrameError::ok)
        return;
    auto encoded = wire::encodeMessage(message);
    wire::Message again;
    if (wire::decodeMessage(encoded, again) != wire::FrameError::ok || !(again == message) ||
        wire::typeName(again) != wire::typeName(message))
        std::abort();
    // What decodes is within the caps, so it always fits in a frame.
    std::vector<std::uint8_t> framed;
    if (wire::encodeFrame(message, framed) != wire::FrameError::ok ||
        framed.size() != wire::kFramePrefixSize + encoded.size())
        std::abort();
}

struct Split {
    std::vector<Bytes> frames;
    wire::FrameError error = wire::FrameError::ok;
    std::size_t buffered = 0;
};

Split split(std::span<const std::uint8_t> input, std::size_t chunk) {
    Split out;
    wire::FrameReader reader;
    for (std::size_t at = 0; at < input.size() && out.error == wire::FrameError::ok; at += chunk) {
        out.error = reader.push(input.subspan(at, std::min(chunk, input.size() - at)));
        while (auto payload = reader.next())
            out.frames.push_back(std::move(*payload));
    }
    out.buffered = reader.buffered();
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> input(data, size);
    checkPayload(input);

    // Byte by byte, every frame before a bad prefix comes out; bigger chunks may lose the
    // frames that arrived in the same push as the bad prefix, but never differ otherwise.
    auto reference = split(input, 1);
    for (std::size_t chunk : {std::size_t{3}, std::size_t{64}, size + 1}) {
        auto other = split(input, chunk);
        if (other.error != reference.error || other.frames.size() > reference.frames.size() ||
            !std::equal(other.frames.begin(), other.frames.end(), reference.frames.begin()))
            std::abort();
        if (other.error == wire::FrameError::ok &&
            (other.frames.size() != reference.frames.size() ||
             other.buffered != reference.buffered))
            std::abort();
    }
    for (const auto& payload : reference.frames)
        checkPayload(payload);
    return 0;
}
