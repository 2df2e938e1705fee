// LinkManager's private state, shared by its .cpp files (links.cpp: the glue to LinkCore and
// the public calls; rendezvous.cpp: connect envelopes, candidates, dialling, punching). Not
// part of the room's interface: only node/link/*.cpp include it.
#pragma once

#include "dht/timer_set.h"
#include "node/link/control_stream.h"
#include "node/link/link_core.h"
#include "node/link/links.h"
#include "node/link/stream_router.h"
#include "node/transport/candidates.h"
#include "node/transport/quic.h"

#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parley::node {

namespace link {

using SteadyClock = std::chrono::steady_clock;

// One QUIC connection as the glue sees it: its control stream and the pings.
struct Link {
    ConnId id = 0;
    dht::ContactId peer;
    quic::ConnectionPtr conn;
    std::int64_t control = -1;
    ControlStream controlStream;
    std::uint64_t nextPing = 1;
    std::map<std::uint64_t, std::function<void(std::optional<double>)>> pings;
};

ConnectResult failed(std::string error);
ConnectResult succeeded(const Link& link, bool reused);

} // namespace link

// The glue around LinkCore: performs its actions on QUIC, the DHT and asio, feeds it events.
struct LinkManager::Impl : std::enable_shared_from_this<LinkManager::Impl> {
    using Link = link::Link;
    using Clock = link::SteadyClock;

    Impl(asio::io_context& ioContext, quic::Transport& t, ContactDirectory& c, dht::Overlay& o,
         const dht::ContactId& selfId, LinkOptions opts);

    asio::io_context& io;
    quic::Transport& transport;
    ContactDirectory& contacts;
    dht::Overlay& overlay;
    dht::ContactId self;
    EventSink events;
    LinkOptions options;
    MessageHandler messageHandler;
    LinkHandler linkHandler;
    std::function<std::vector<std::string>()> mapped;
    link::LinkCore core;
    std::map<link::ConnId, std::shared_ptr<Link>> links; // every connection the core knows
    std::map<link::WaiterId, std::function<void(const ConnectResult&)>> waiters;
    link::ConnId nextConn = 1;
    asio::steady_timer deadline; // the core's next deadline
    std::optional<Clock::time_point> armedFor;
    bool draining = false;
    dht::TimerSet timers; // pings' loss deadlines
    std::map<std::string, std::uint64_t> counts;
    link::StreamRouter router; // every connection's typed streams
    std::map<link::StreamType, StreamHandler> streamHandlers;
    // Flow-control credit of bytes handed to a room and not yet consumed, per routed stream:
    // consumeStream returns at most this much, and what is left goes back to the connection's
    // window when the stream ends, so a room that resets or abandons a stream without
    // consuming cannot shrink the link's window for good.
    std::map<link::StreamKey, std::uint64_t> owedCredit;

    bool stopped() const { return core.stopped(); }
    void count(const std::string& name, std::uint64_t n = 1) {
        if (n > 0)
            counts[name] += n;
    }
    wire::Hello hello() const;

    // rendezvous.cpp
    CandidatePolicy policy() const;
    std::vector<std::string> ourCandidates() const;
    void sendRequest(const dht::ContactId& peer, const link::RequestId& id);
    void onConnectEnvelope(const dht::Envelope& envelope);
    void dial(const dht::ContactId& peer, const dht::SocketAddress& to);
    void punch(const std::vector<dht::SocketAddress>& targets);

    // link_streams.cpp: typed bulk streams
    void onBulkData(const std::shared_ptr<Link>& link, std::int64_t stream,
                    std::span<const std::uint8_t> data, bool fin);
    void onStreamClosed(const std::shared_ptr<Link>& link, std::int64_t stream);
    void onWritable(const std::shared_ptr<Link>& link, std::int64_t stream);
    void closeStreams(const std::shared_ptr<Link>& link); // the connection is gone
    void refuse(const std::shared_ptr<Link>& link, std::int64_t stream, link::StreamResetCode code);
    // A room's callback failed: the stream is reset and the room hears `closed`.
    void roomFailed(const std::shared_ptr<Link>& link, std::int64_t stream,
                    const StreamHandler& handler);
    // The stream is done with: what the room still owed goes back to the connection's window.
    void settleCredit(const std::shared_ptr<Link>& link, std::int64_t stream);

    // link_control.cpp: onData's control stream, onMessage, sendOn, sendProbe, finishPing;
    // links.cpp: the rest
    void drain();
    void arm();
    void perform(const link::Action& action);
    std::shared_ptr<Link> track(const quic::ConnectionPtr& conn);
    void startConnection(const std::shared_ptr<Link>& link);
    void linkUp(const std::shared_ptr<Link>& link);
    void linkDown(const link::act::LinkDown& down);
    void waiterDone(const link::act::WaiterDone& done);
    void onData(const std::shared_ptr<Link>& link, std::int64_t stream,
                std::span<const std::uint8_t> data, bool fin);
    void onMessage(const std::shared_ptr<Link>& link, const wire::Message& message);
    void onClosed(const std::shared_ptr<Link>& link, const quic::CloseReason& why);
    void protocolError(const std::shared_ptr<Link>& link, const std::string& reason);
    bool sendOn(const std::shared_ptr<Link>& link, const wire::Message& message);
    std::shared_ptr<Link> activeLink(const dht::ContactId& peer) const;
    // The link a handle names, if it is still there and the stream is not its control stream.
    std::shared_ptr<Link> linkOf(const StreamHandle& handle) const;
    void sendProbe(const std::shared_ptr<Link>& link,
                   std::function<void(std::optional<double>)> record);
    void finishPing(const std::shared_ptr<Link>& link, std::uint64_t seq,
                    std::optional<double> rtt);
};

} // namespace parley::node
