// Fuzz target: what a connected peer sends on its streams. The first byte chooses what the
// rest feeds: even, the control stream (ControlStream: frames, the hello check, errors); odd,
// a bulk stream's typed header (StreamHeaderDecoder and StreamRouter). Each input is fed in
// several chunk sizes, which must agree, and what decodes must re-encode to the same bytes.
#include "node/link/control_stream.h"
#include "node/link/stream_router.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace link = parley::node::link;
namespace wire = parley::node::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

void require(bool ok) {
    if (!ok)
        std::abort();
}

const Bytes& helloFrame() {
    static const Bytes frame = [] {
        Bytes out;
        require(link::ControlStream::encode(wire::Hello{}, out) == wire::FrameError::ok);
        return out;
    }();
    return frame;
}

struct ControlRun {
    std::vector<wire::Message> messages;
    std::optional<std::string> error;
};

ControlRun feedControl(std::span<const std::uint8_t> input, std::size_t chunk, bool fin) {
    ControlRun run;
    link::ControlStream stream;
    auto drain = [&] {
        while (auto event = stream.next()) {
            require(!run.error); // nothing after the error
            if (auto* e = std::get_if<link::ControlStream::Error>(&*event)) {
                require(!e->reason.empty() && stream.failed());
                run.error = e->reason;
            } else {
                run.messages.push_back(std::get<wire::Message>(*event));
            }
        }
        stream.takeUnknownFrames();
    };
    for (std::size_t at = 0; at < input.size(); at += chunk) {
        stream.push(input.subspan(at, std::min(chunk, input.size() - at)));
        drain();
    }
    if (fin) {
        stream.push({}, true);
        drain();
        require(run.error.has_value()); // a control stream never ends well
    }
    // The hello check: exactly one hello, first, whenever anything came out.
    for (std::size_t i = 0; i < run.messages.size(); ++i)
        require(std::holds_alternative<wire::Hello>(run.messages[i]) == (i == 0));
    require(stream.helloSeen() == !run.messages.empty());
    return run;
}

void fuzzControl(std::span<const std::uint8_t> input) {
    auto reference = feedControl(input, 1, false);
    // A bigger chunk may lose the frames that came in the same push as a bad length prefix
    // (and then report that error instead of a later frame's), but never differs otherwise.
    for (std::size_t chunk : {std::size_t{5}, std::size_t{300}, input.size() + 1}) {
        auto other = feedControl(input, chunk, false);
        require(other.error.has_value() == reference.error.has_value());
        require(other.messages.size() <= reference.messages.size());
        require(
            std::equal(other.messages.begin(), other.messages.end(), reference.messages.begin()));
        if (!other.error)
            require(other.messages.size() == reference.messages.size());
    }
    feedControl(input, 64, true);
    for (const auto& m : reference.messages) {
        Bytes framed;
        require(link::ControlStream::encode(m, framed) == wire::FrameError::ok);
        link::ControlStream again;
        if (!std::holds_alternative<wire::Hello>(m))
            again.push(helloFrame());
        again.push(framed);
        std::optional<wire::Message> last;
        while (auto e = again.next()) {
            require(std::holds_alternative<wire::Message>(*e));
            last = std::get<wire::Message>(*e);
        }
        require(last && *last == m);
    }
}

struct HeaderRun {
    std::optional<link::StreamHeader> opened;
    std::optional<link::StreamResetCode> reset;
    Bytes data; // what the handler got
    std::size_t linkBytes = 0;
};

HeaderRun feedHeader(std::span<const std::uint8_t> input, std::size_t chunk) {
    HeaderRun run;
    link::StreamRouter router;
    require(router.registerType(1) && router.registerType(7) && router.registerType(255));
    link::StreamKey key{1, 1}, other{1, 5};
    for (std::size_t at = 0; at < input.size(); at += chunk) {
        auto piece = input.subspan(at, std::min(chunk, input.size() - at));
        bool fin = at + piece.size() == input.size();
        auto r = router.push(key, true, piece, fin);
        // Another stream of the same connection, fed the same bytes, is not disturbed.
        router.push(other, true, piece, false);
        require(r.data.size() <= piece.size());
        require(r.data.empty() || r.data.data() + r.data.size() == piece.data() + piece.size());
        run.linkBytes += piece.size() - r.data.size();
        require(!(r.reset && (r.type || r.opened || !r.data.empty())));
        if (r.reset) {
            require(!run.reset);
            run.reset = r.reset;
        }
        if (r.opened) {
            require(!run.opened && r.type == r.opened->type);
            run.opened = r.opened;
        }
        if (r.type)
            run.data.insert(run.data.end(), r.data.begin(), r.data.end());
    }
    require(run.linkBytes + run.data.size() == input.size());
    require(router.closed(key).has_value() == (run.opened && !run.reset));
    router.closedConnection(1);
    require(router.streams() == 0);
    return run;
}

void fuzzHeader(std::span<const std::uint8_t> input) {
    link::StreamHeaderDecoder decoder;
    auto taken = decoder.push(input);
    require(taken <= link::kMaxStreamHeaderSize && taken <= input.size());
    require(decoder.push(input.subspan(taken)) == 0); // all taken, or the header is over
    if (decoder.status() == link::StreamHeaderDecoder::Status::complete) {
        auto h = decoder.header();
        Bytes encoded;
        require(link::encodeStreamHeader(h.type, h.id, encoded));
        require(encoded.size() == taken &&
                std::equal(encoded.begin(), encoded.end(), input.begin()));
    }
    auto reference = feedHeader(input, 1);
    for (std::size_t chunk : {std::size_t{2}, std::size_t{67}, input.size() + 1}) {
        auto run = feedHeader(input, chunk);
        require(run.opened == reference.opened && run.reset == reference.reset &&
                run.data == reference.data && run.linkBytes == reference.linkBytes);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    std::span<const std::uint8_t> input(data + 1, size - 1);
    if (data[0] % 2 == 0)
        fuzzControl(input);
    else
        fuzzHeader(input);
    return 0;
}
