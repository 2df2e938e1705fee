// Encoding and decoding of the feedback message; reception statistics.
#include "media/feedback.h"

#include <algorithm>
#include <cmath>

namespace parley::media {

namespace {
enum : std::uint8_t { kVersion = 1, kNack = 1, kPli = 2, kReport = 3, kBitrate = 4 };
constexpr std::size_t kMaxNackPairs = 63; // 63 * 4 bytes fits an item's u8 length

void put16(Bytes& b, std::uint32_t v) {
    b.push_back(std::uint8_t(v >> 8));
    b.push_back(std::uint8_t(v));
}
void put24(Bytes& b, std::uint32_t v) {
    b.push_back(std::uint8_t(v >> 16));
    put16(b, v);
}
void put32(Bytes& b, std::uint32_t v) {
    put16(b, v >> 16);
    put16(b, v);
}
std::uint32_t get(const std::uint8_t* p, int n) {
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i)
        v = v << 8 | p[i];
    return v;
}
} // namespace

const char* toString(FeedbackError e) {
    switch (e) {
    case FeedbackError::ok:
        return "ok";
    case FeedbackError::empty:
        return "empty feedback";
    case FeedbackError::badVersion:
        return "unknown feedback version";
    case FeedbackError::truncated:
        return "feedback truncated";
    case FeedbackError::badItem:
        return "malformed feedback item";
    case FeedbackError::tooManyItems:
        return "too many feedback items";
    }
    return "unknown";
}

Bytes encodeFeedback(const Feedback& f) {
    Bytes b;
    b.push_back(kVersion);
    put32(b, f.ssrc);
    // NACKs: sort, then pack into (first, bitmask) pairs.
    std::vector<std::uint16_t> seqs = f.nacks;
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    std::vector<std::pair<std::uint16_t, std::uint16_t>> pairs;
    for (std::uint16_t s : seqs) {
        if (!pairs.empty()) {
            std::uint16_t d = std::uint16_t(s - pairs.back().first);
            if (d >= 1 && d <= 16) {
                pairs.back().second |= std::uint16_t(1u << (d - 1));
                continue;
            }
        }
        pairs.emplace_back(s, 0);
    }
    for (std::size_t i = 0; i < pairs.size(); i += kMaxNackPairs) {
        std::size_t n = std::min(kMaxNackPairs, pairs.size() - i);
        b.push_back(kNack);
        b.push_back(std::uint8_t(4 * n));
        for (std::size_t j = 0; j < n; ++j) {
            put16(b, pairs[i + j].first);
            put16(b, pairs[i + j].second);
        }
    }
    if (f.pictureLoss) {
        b.push_back(kPli);
        b.push_back(0);
    }
    if (f.report) {
        b.push_back(kReport);
        b.push_back(16);
        put32(b, f.report->ssrc);
        b.push_back(f.report->fractionLost);
        put24(b, f.report->cumulativeLost & 0xffffff);
        put32(b, f.report->highestSequence);
        put32(b, f.report->jitter);
    }
    if (f.targetBitrate) {
        b.push_back(kBitrate);
        b.push_back(4);
        put32(b, *f.targetBitrate);
    }
    return b;
}

FeedbackError decodeFeedback(std::span<const std::uint8_t> bytes, Feedback& out) {
    out = Feedback{};
    if (bytes.empty())
        return FeedbackError::empty;
    if (bytes[0] != kVersion)
        return FeedbackError::badVersion;
    if (bytes.size() < 5)
        return FeedbackError::truncated;
    out.ssrc = get(bytes.data() + 1, 4);
    std::size_t pos = 5;
    std::size_t items = 0;
    while (pos < bytes.size()) {
        if (++items > 64)
            return FeedbackError::tooManyItems;
        if (pos + 2 > bytes.size())
            return FeedbackError::truncated;
        std::uint8_t type = bytes[pos];
        std::size_t len = bytes[pos + 1];
        pos += 2;
        if (pos + len > bytes.size())
            return FeedbackError::truncated;
        const std::uint8_t* p = bytes.data() + pos;
        switch (type) {
        case kNack:
            if (len % 4 != 0)
                return FeedbackError::badItem;
            for (std::size_t i = 0; i < len; i += 4) {
                auto first = std::uint16_t(get(p + i, 2));
                auto mask = std::uint16_t(get(p + i + 2, 2));
                out.nacks.push_back(first);
                for (int bit = 0; bit < 16; ++bit)
                    if (mask & (1u << bit))
                        out.nacks.push_back(std::uint16_t(first + bit + 1));
            }
            break;
        case kPli:
            if (len != 0)
                return FeedbackError::badItem;
            out.pictureLoss = true;
            break;
        case kReport:
            if (len != 16)
                return FeedbackError::badItem;
            out.report =
                ReceiverReport{get(p, 4), p[4], get(p + 5, 3), get(p + 8, 4), get(p + 12, 4)};
            break;
        case kBitrate:
            if (len != 4)
                return FeedbackError::badItem;
            out.targetBitrate = get(p, 4);
            break;
        default:
            break; // unknown item: skip
        }
        pos += len;
    }
    return FeedbackError::ok;
}

void ReceptionStats::onPacket(std::int64_t seq, double transitMs) {
    if (received_ == 0) {
        base_ = highest_ = seq;
    } else {
        base_ = std::min(base_, seq);
        highest_ = std::max(highest_, seq);
    }
    ++received_;
    if (haveTransit_)
        jitterMs_ += (std::abs(transitMs - lastTransit_) - jitterMs_) / 16.0;
    haveTransit_ = true;
    lastTransit_ = transitMs;
}

ReceiverReport ReceptionStats::makeReport(std::uint32_t ssrc, int clockRate) {
    ReceiverReport r;
    r.ssrc = ssrc;
    std::int64_t exp = expected();
    std::int64_t expInterval = exp - expectedPrior_;
    std::int64_t recvInterval = std::int64_t(received_) - std::int64_t(receivedPrior_);
    expectedPrior_ = exp;
    receivedPrior_ = received_;
    std::int64_t lostInterval = expInterval - recvInterval;
    r.fractionLost =
        (expInterval <= 0 || lostInterval <= 0)
            ? 0
            : std::uint8_t(std::min<std::int64_t>(255, (lostInterval << 8) / expInterval));
    r.cumulativeLost = std::uint32_t(std::min<std::int64_t>(lost(), 0xffffff));
    r.highestSequence = std::uint32_t(highest_);
    r.jitter = std::uint32_t(jitterMs_ * clockRate / 1000.0);
    return r;
}

} // namespace parley::media
