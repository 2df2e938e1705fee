// Fuzz target: what a peer sends on the transfer room's streams (node/transfer/protocol.h).
// The first byte chooses the decoder (offer prefix, control message, answer, chunk request,
// chunk answer prefix); what decodes must re-encode to the same bytes, and nothing may crash,
// throw or read past the input.
#include "node/transfer/protocol.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

namespace tr = parley::node::transfer;

namespace {

void require(bool ok) {
    if (!ok)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    std::span<const std::uint8_t> in(data + 1, size - 1);
    std::vector<std::uint8_t> out;
    switch (data[0] % 5) {
    case 0: {
        std::string error;
        if (auto p = tr::decodeOfferPrefix(in, &error)) {
            require(p->manifestOffset <= in.size());
            tr::encodeOfferPrefix(p->message, out);
            require(std::equal(out.begin(), out.end(), in.begin(), in.begin() + p->manifestOffset));
        }
        break;
    }
    case 1:
        if (auto m = tr::decodeControl(in)) {
            tr::encodeControl(*m, out);
            require(std::equal(out.begin(), out.end(), in.begin(), in.end()));
        }
        break;
    case 2:
        if (auto a = tr::decodeAnswer(in)) {
            tr::encodeAnswer(*a, out);
            require(std::equal(out.begin(), out.end(), in.begin(), in.end()));
        }
        break;
    case 3:
        if (auto r = tr::decodeChunkRequest(in)) {
            tr::encodeChunkRequest(*r, out);
            require(std::equal(out.begin(), out.end(), in.begin(), in.end()));
        }
        break;
    default: {
        bool malformed = false;
        if (auto p = tr::decodeChunkAnswerPrefix(in, &malformed)) {
            require(!malformed && p->size <= in.size());
            tr::encodeChunkAnswerPrefix(p->status, p->reason, out);
            require(out.size() == p->size);
        }
        break;
    }
    }
    return 0;
}
