// Fuzz target: the feedback decoder. What decodes must encode to something that decodes
// to the same message (NACKs compared as sorted sets).
#include "media/feedback.h"

#include <algorithm>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::media;
    Feedback f;
    if (decodeFeedback(std::span<const std::uint8_t>(data, size), f) != FeedbackError::ok)
        return 0;
    auto normalise = [](Feedback& x) {
        std::sort(x.nacks.begin(), x.nacks.end());
        x.nacks.erase(std::unique(x.nacks.begin(), x.nacks.end()), x.nacks.end());
        if (x.report)
            x.report->cumulativeLost &= 0xffffff;
    };
    Feedback g;
    if (decodeFeedback(encodeFeedback(f), g) != FeedbackError::ok)
        __builtin_trap();
    normalise(f);
    normalise(g);
    if (!(f == g))
        __builtin_trap();
    return 0;
}
