// LinkManager's control stream glue: frames out (with the backlog cap), what ControlStream
// decodes in (hello, ping and pong, goodbye; the rest to the message handler), and ping.
#include "node/link/links_internal.h"

#include <asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

namespace parley::node {

using Clock = link::SteadyClock;
using link::Link;

namespace {

double msSince(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::uint64_t monotonicUs() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count());
}

} // namespace

bool LinkManager::Impl::sendOn(const std::shared_ptr<Link>& link, const wire::Message& message) {
    if (link->control < 0 || link->conn->closed())
        return false;
    std::vector<std::uint8_t> bytes;
    if (auto error = link::ControlStream::encode(message, bytes); error != wire::FrameError::ok) {
        count("encode_errors");
        spdlog::error("not sending a {} frame to {}: {}", wire::typeName(message),
                      link->peer.shortHex(), wire::describe(error));
        return false;
    }
    auto backlog = link->conn->write(link->control, bytes);
    if (link::ControlStream::overBacklog(backlog)) {
        protocolError(link, "the peer does not read its control stream");
        return false;
    }
    return backlog > 0;
}

void LinkManager::Impl::protocolError(const std::shared_ptr<Link>& link,
                                      const std::string& reason) {
    core.onProtocolError(link->id, reason);
    drain();
}

void LinkManager::Impl::onData(const std::shared_ptr<Link>& link, std::int64_t stream,
                               std::span<const std::uint8_t> data, bool fin) {
    if (link->control < 0 && !link->conn->isClient() && stream % 4 == 0)
        link->control = stream; // the client's first bidirectional stream
    if (stream != link->control) {
        onBulkData(link, stream, data, fin);
        return;
    }
    auto& control = link->controlStream;
    control.push(data, fin);
    // The control stream's credit comes back once its frames are handled (no autoConsume:
    // the bulk streams' credit is their rooms' to return).
    link->conn->consume(stream, data.size());
    while (auto event = control.next()) {
        count("unknown_frames", control.takeUnknownFrames());
        if (auto* error = std::get_if<link::ControlStream::Error>(&*event)) {
            protocolError(link, error->reason);
            return;
        }
        onMessage(link, std::get<wire::Message>(*event));
        if (link->conn->closed())
            return;
    }
    count("unknown_frames", control.takeUnknownFrames());
}

// The control stream checked the hello (one, first, a version we speak).
void LinkManager::Impl::onMessage(const std::shared_ptr<Link>& link, const wire::Message& message) {
    if (std::holds_alternative<wire::Hello>(message)) {
        if (!link->conn->isClient() && !sendOn(link, hello()))
            return;
        core.onHello(link->id, Clock::now());
        drain();
        return;
    }
    if (auto* p = std::get_if<wire::Ping>(&message)) {
        sendOn(link, wire::Pong{p->seq, p->sentUs});
        return;
    }
    if (auto* p = std::get_if<wire::Pong>(&message)) {
        // Late pongs (the pinger gave up on them) are ignored.
        finishPing(link, p->seq, static_cast<double>(monotonicUs() - p->sentUs) / 1000.0);
        return;
    }
    if (auto* g = std::get_if<wire::Goodbye>(&message)) {
        spdlog::info("{} says goodbye: {}", link->peer.shortHex(), g->reason);
        core.onGoodbye(link->id);
        drain();
        return;
    }
    core.onUsed(link->id, Clock::now());
    if (messageHandler)
        messageHandler(link->peer, message);
}

void LinkManager::Impl::finishPing(const std::shared_ptr<Link>& link, std::uint64_t seq,
                                   std::optional<double> rtt) {
    auto it = link->pings.find(seq);
    if (it == link->pings.end())
        return;
    auto done = std::move(it->second);
    link->pings.erase(it);
    core.onPingFinished(link->id);
    done(rtt);
}

// One ping on the control stream; `record` hears its round trip, or nullopt when it is lost.
void LinkManager::Impl::sendProbe(const std::shared_ptr<Link>& link,
                                  std::function<void(std::optional<double>)> record) {
    auto seq = link->nextPing++;
    link->pings[seq] = record;
    core.onPingStarted(link->id);
    // A ping that gets no pong in 5 s counts as lost.
    // (Cancelled at stop; the link's close then answers the ping as lost.)
    timers.after(std::chrono::seconds(5),
                 [weak = weak_from_this(), wl = std::weak_ptr<Link>(link), seq, record] {
                     auto s4 = weak.lock();
                     auto l = wl.lock();
                     if (s4 && l)
                         s4->finishPing(l, seq, std::nullopt);
                     record(std::nullopt);
                 });
    sendOn(link, wire::Ping{seq, monotonicUs()});
}

// --- public -----------------------------------------------------------------------------------

void LinkManager::ping(const dht::ContactId& peer, int count, std::chrono::milliseconds interval,
                       std::chrono::milliseconds timeout,
                       std::function<void(const PingResult&)> done) {
    auto weak = std::weak_ptr<Impl>(impl_);
    auto started = Clock::now();
    connect(peer, timeout, [weak, peer, count, interval, done, started](const ConnectResult& r) {
        auto s = weak.lock();
        auto state = std::make_shared<PingResult>();
        state->peer = peer;
        state->connected = r.ok;
        state->reused = r.reused;
        if (!r.ok || !s) {
            state->error = r.ok ? "the node is stopping" : r.error;
            state->elapsedMs = msSince(started);
            done(*state);
            return;
        }
        state->setupMs = r.reused ? 0.0 : r.setupMs;
        state->remote = r.remote;
        state->role = r.role;
        auto remaining = std::make_shared<int>(count);
        auto timer = std::make_shared<asio::steady_timer>(s->io);
        auto next = std::make_shared<std::function<void()>>();
        *next = [weak, peer, interval, done, state, remaining, timer, next]() {
            auto s2 = weak.lock();
            auto finish = [&] {
                done(*state);
                *next = nullptr; // break the cycle
            };
            if (!s2 || *remaining <= 0) {
                finish();
                return;
            }
            auto link = s2->activeLink(peer);
            if (!link) {
                state->error = "the link closed";
                finish();
                return;
            }
            --*remaining;
            s2->core.onUsed(link->id, Clock::now());
            auto answered = std::make_shared<bool>(false);
            s2->sendProbe(link, [weak, state, remaining, timer, next, interval,
                                 answered](std::optional<double> rtt) {
                if (*answered)
                    return;
                *answered = true;
                state->rttMs.push_back(rtt);
                auto s3 = weak.lock();
                if (!s3 || !*next)
                    return;
                timer->expires_after(*remaining > 0 ? interval : std::chrono::milliseconds(0));
                timer->async_wait([next](const std::error_code& ec) {
                    if (!ec && *next)
                        (*next)();
                });
            });
        };
        (*next)();
    });
}

int PingResult::lost() const {
    int n = 0;
    for (const auto& rtt : rttMs)
        n += rtt ? 0 : 1;
    return n;
}

} // namespace parley::node
