// Fuzz target: the shared UDP port tells DHT from QUIC traffic by a datagram's first bytes
// (classifyDatagram), and one receive with UDP GRO carries a run of datagrams of one size,
// which the QUIC inbox splits again before the transport sees them. The first two bytes are a
// segment size (big-endian, 0: one datagram), the rest is the coalesced buffer. Every segment
// is classified and must follow the rules in udp_endpoint.h; the buffer pushed to a
// DatagramInbox, whole and as the endpoint would hand over its QUIC runs, must come out as
// exactly its segments, in order, in one burst.
#include "dht/socket_address.h"
#include "dht/udp_endpoint.h"
#include "node/transport/quic_inbox.h"

#include <algorithm>
#include <asio/io_context.hpp>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

namespace dht = parley::dht;
namespace quic = parley::node::quic;

namespace {

using Bytes = std::vector<std::uint8_t>;

// A msgpack string header (fixstr, str8, str16, str32): how an OpenDHT map's first key starts.
bool isStringHeader(std::uint8_t b) {
    return (b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb);
}

void checkKind(std::span<const std::uint8_t> d) {
    auto kind = dht::classifyDatagram(d);
    if (kind != dht::DatagramKind::dht && kind != dht::DatagramKind::quic &&
        kind != dht::DatagramKind::unknown)
        std::abort();
    // Nothing empty reaches a handler (Transport::receive reads the first byte).
    if (d.empty()) {
        if (kind != dht::DatagramKind::unknown)
            std::abort();
        return;
    }
    std::uint8_t b = d[0];
    // The DHT filter only sees msgpack fixmaps; the fixed bit, which no fixmap has, is QUIC.
    if (kind == dht::DatagramKind::dht && (b < 0x80 || b > 0x8f))
        std::abort();
    if ((b & 0x40) && kind != dht::DatagramKind::quic)
        std::abort();
    // An OpenDHT message (a map whose first key is a string) always goes to the DHT.
    if (b >= 0x81 && b <= 0x8f && d.size() >= 2 && isStringHeader(d[1]) &&
        kind != dht::DatagramKind::dht)
        std::abort();
    // QUIC v1 and version negotiation long headers are QUIC even with the fixed bit greased.
    bool v1OrNegotiation = d.size() >= 5 && d[1] == 0 && d[2] == 0 && d[3] == 0 && d[4] <= 1;
    if ((b & 0x80) && v1OrNegotiation && kind != dht::DatagramKind::quic)
        std::abort();
    // Punch datagrams (first byte 0x00, shorter than any greased short header) are dropped.
    if (b == 0x00 && d.size() < dht::kMinGreasedShortHeader && kind != dht::DatagramKind::unknown)
        std::abort();
}

asio::io_context& io() {
    static auto* context = new asio::io_context; // never destroyed: outlives every input
    return *context;
}

struct Received {
    std::vector<Bytes> datagrams;
    int bursts = 0;
};

// Pushes `runs` (each with `segment`) into a fresh inbox and runs what it posted.
Received throughInbox(const std::vector<std::span<const std::uint8_t>>& runs, std::size_t segment,
                      const dht::SocketAddress& from) {
    Received out;
    auto inbox = std::make_shared<quic::DatagramInbox>(
        io(),
        [&](std::span<const std::uint8_t> d, const dht::SocketAddress& sender) {
            if (!(sender == from))
                std::abort();
            out.datagrams.emplace_back(d.begin(), d.end());
        },
        [&] { ++out.bursts; });
    for (auto run : runs)
        inbox->push(run, segment, from);
    io().restart();
    io().poll();
    auto counters = inbox->counters();
    if (counters.dropped != 0 || counters.delivered != out.datagrams.size() ||
        counters.batches != static_cast<std::uint64_t>(out.bursts))
        std::abort();
    return out;
}

bool sameDatagrams(const std::vector<Bytes>& got,
                   const std::vector<std::span<const std::uint8_t>>& want) {
    return got.size() == want.size() &&
           std::equal(got.begin(), got.end(), want.begin(), [](const Bytes& a, auto b) {
               return std::equal(a.begin(), a.end(), b.begin(), b.end());
           });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> input(data, size);
    checkKind(input);
    std::size_t segment = 0;
    if (size >= 2) {
        segment = static_cast<std::size_t>(data[0]) << 8 | data[1];
        input = input.subspan(2);
    }
    // The kernel reports the segment size of a coalesced receive; a single datagram has none.
    std::size_t step = segment == 0 ? input.size() : std::min(segment, input.size());
    std::vector<std::span<const std::uint8_t>> segments, quicSegments, runs;
    std::size_t runStart = 0, runEnd = 0;
    for (std::size_t offset = 0; offset < input.size(); offset += step) {
        auto d = input.subspan(offset, std::min(step, input.size() - offset));
        segments.push_back(d);
        checkKind(d);
        // Consecutive QUIC datagrams form the runs the endpoint hands to the inbox.
        if (dht::classifyDatagram(d) == dht::DatagramKind::quic) {
            quicSegments.push_back(d);
            runEnd = offset + d.size();
            continue;
        }
        if (runEnd > runStart)
            runs.push_back(input.subspan(runStart, runEnd - runStart));
        runStart = runEnd = offset + d.size();
    }
    if (runEnd > runStart)
        runs.push_back(input.subspan(runStart, runEnd - runStart));

    static const auto from = *dht::SocketAddress::parse("[2001:db8::7]:4222");
    auto whole = throughInbox({input}, segment, from);
    if (!sameDatagrams(whole.datagrams, segments) || whole.bursts != (input.empty() ? 0 : 1))
        std::abort();
    auto quicRuns = throughInbox(runs, step, from);
    if (!sameDatagrams(quicRuns.datagrams, quicSegments) ||
        quicRuns.bursts != (runs.empty() ? 0 : 1))
        std::abort();
    for (const auto& d : quicRuns.datagrams)
        if (dht::classifyDatagram(d) != dht::DatagramKind::quic)
            std::abort();
    return 0;
}
