// Direct connections between real nodes on loopback (DESIGN.md §6): set-up through connect
// envelopes, reuse, restarts on either side, idle close, strangers and impostors, replayed
// and stale connect envelopes, malformed control frames and a handshake flood. Bare QUIC
// transports on their own sockets stand in for attackers and for a node that crashes.
#include "dht/clock.h"
#include "dht/envelope.h"
#include "dht/udp_endpoint.h"
#include "node/api/link_methods.h"
#include "node/api/params.h"
#include "node/contacts/contacts.h"
#include "node/link/frame.h"
#include "node/transport/candidates.h"
#include "node/transport/quic.h"
#include "node/transport/quic_inbox.h"
#include "support/test_support.h"

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <gnutls/crypto.h>
#include <random>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <thread>
#include <variant>

using namespace parley;
using namespace std::chrono_literals;
using nlohmann::json;
using node::quic::ConnectionPtr;
using node::quic::Transport;
using node::quic::TransportConfig;

namespace {

std::vector<std::uint8_t> framedMessage(const node::wire::Message& message) {
    std::vector<std::uint8_t> out;
    REQUIRE(node::wire::encodeFrame(message, out) == node::wire::FrameError::ok);
    return out;
}

std::array<std::uint8_t, 16> randomEnvelopeId() {
    static std::mt19937_64 rng{std::random_device{}()};
    std::array<std::uint8_t, 16> id{};
    for (auto& b : id)
        b = static_cast<std::uint8_t>(rng());
    return id;
}

// Two identities, ordered: the first is the QUIC client of the pair (node::isClientRole).
std::pair<dht::Identity, dht::Identity> orderedPair(const std::string& lowName,
                                                    const std::string& highName) {
    auto a = test::makeIdentity(lowName), b = test::makeIdentity(highName);
    if (b.contactId() < a.contactId())
        std::swap(a, b);
    return {a, b};
}

std::uint64_t linkCount(node::Node& n, const std::string& name) {
    auto c = n.call([&] { return n.links().counters(); });
    return c.count(name) ? c[name] : 0;
}

std::int64_t contactCount(node::Node& n, const std::string& name) {
    auto c = n.call([&] { return n.contacts().counters(); });
    return c.count(name) ? static_cast<std::int64_t>(c[name]) : 0;
}

bool linked(node::Node& n, const dht::ContactId& peer) {
    return n.call([&] { return n.links().connected(peer); });
}

std::size_t linkCountInStatus(node::Node& n) {
    return n.call([&] { return n.links().status().size(); });
}

// Straight into the node's envelope handler, as if the DHT had delivered it.
void deliver(node::Node& n, const dht::Envelope& e, const dht::ContactId& signer) {
    n.call([&] {
        n.contacts().onEnvelope(e, signer);
        return 0;
    });
}

dht::Envelope connectEnvelope(dht::EnvelopeKind kind, const dht::ContactId& from,
                              const dht::ContactId& to, std::vector<std::string> candidates) {
    dht::Envelope e;
    e.kind = kind;
    e.id = randomEnvelopeId();
    e.createdMs = dht::unixMs();
    e.from = from;
    e.to = to;
    e.candidates = std::move(candidates);
    return e;
}

// A bare QUIC endpoint with some identity, on its own UDP socket and io thread: an attacker,
// an impostor, or a stand-in for a node whose crash we control (mute() then destroy: no
// CONNECTION_CLOSE ever leaves). Everything that touches the transport runs through call().
class RawPeer {
public:
    RawPeer(const dht::Identity& id, const std::string& host = "127.0.0.1", std::uint16_t port = 0,
            std::array<std::uint8_t, 32> resetSecret = {})
        : endpoint_(host, port) {
        TransportConfig config;
        config.certificatePem = id.certificatePem();
        config.privateKeyPem = id.privateKeyPem("");
        config.resetSecret = resetSecret;
        config.local4 = endpoint_.bound4();
        config.handshakeTimeout = 5s;
        transport_ = std::make_unique<Transport>(io_, config,
                                                 [this](const dht::SocketAddress& to,
                                                        std::span<const std::uint8_t> d,
                                                        std::size_t segmentSize) {
                                                     if (!muted_)
                                                         endpoint_.sendOther(to, d, segmentSize);
                                                 });
        transport_->setAuthorizer([](const dht::ContactId&) { return true; });
        inbox_ = std::make_shared<node::quic::DatagramInbox>(
            io_, [this](std::span<const std::uint8_t> d, const dht::SocketAddress& from) {
                if (transport_)
                    transport_->receive(d, from);
            });
        endpoint_.setOtherHandler([inbox = inbox_](std::span<const std::uint8_t> run,
                                                   std::size_t segmentSize,
                                                   const dht::SocketAddress& from) {
            inbox->push(run, segmentSize, from);
        });
        endpoint_.start();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~RawPeer() {
        endpoint_.setOtherHandler(nullptr);
        endpoint_.stop();
        call([this] {
            transport_.reset();
            return 0;
        });
        work_.reset();
        io_.stop();
        thread_.join();
    }
    RawPeer(const RawPeer&) = delete;
    RawPeer& operator=(const RawPeer&) = delete;

    template <class F> auto call(F&& f) -> decltype(f()) {
        using R = decltype(f());
        auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
        auto future = task->get_future();
        asio::post(io_, [task] { (*task)(); });
        return future.get();
    }

    Transport& transport() { return *transport_; }
    std::string address() const { return endpoint_.bound4().toString(); }
    std::uint16_t port() const { return endpoint_.port(); }
    void mute() { muted_ = true; }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    dht::UdpEndpoint endpoint_;
    std::unique_ptr<Transport> transport_;
    std::shared_ptr<node::quic::DatagramInbox> inbox_;
    std::atomic<bool> muted_{false};
    std::thread thread_;
};

// A dial's outcome and the connection's later life; only touched on the peer's io thread.
struct Dial {
    bool done = false;
    ConnectionPtr conn;
    std::string error;
    std::string closedReason;
};

std::shared_ptr<Dial> dial(RawPeer& peer, const dht::ContactId& expected, const std::string& to) {
    auto d = std::make_shared<Dial>();
    peer.call([&] {
        peer.transport().dial(expected, *dht::SocketAddress::parse(to),
                              [d](ConnectionPtr c, const std::string& error) {
                                  d->done = true;
                                  d->conn = c;
                                  d->error = error;
                                  if (c) {
                                      c->onClosed = [d](const node::quic::CloseReason& r) {
                                          d->closedReason = r.text.empty() ? "(no reason)" : r.text;
                                      };
                                      c->start();
                                  }
                              });
        return 0;
    });
    return d;
}

// Answers on the control stream the way a node does: hello for hello, pong for ping.
void answerLikeANode(const ConnectionPtr& c) {
    auto reader = std::make_shared<node::wire::FrameReader>();
    std::weak_ptr<node::quic::Connection> weak = c;
    c->onStreamData = [weak, reader](std::int64_t stream, std::span<const std::uint8_t> data,
                                     bool) {
        auto conn = weak.lock();
        if (!conn || reader->push(data) != node::wire::FrameError::ok)
            return;
        while (auto payload = reader->next()) {
            node::wire::Message m;
            if (node::wire::decodeMessage(*payload, m) != node::wire::FrameError::ok)
                continue;
            if (std::holds_alternative<node::wire::Hello>(m))
                conn->write(stream, framedMessage(node::wire::Hello{}));
            else if (auto* p = std::get_if<node::wire::Ping>(&m))
                conn->write(stream, framedMessage(node::wire::Pong{p->seq, p->sentUs}));
        }
    };
    c->start();
}

// Attackers that keep starting QUIC handshakes with a node and never finish them: two new
// ones every 500 ms from each of several addresses. Their endpoints have no receive handler
// (nor thread), so the node's answers are dropped. One io thread drives them all.
class HandshakeFlood {
public:
    HandshakeFlood(const dht::Identity& id, const std::vector<std::string>& hosts,
                   const dht::ContactId& peer, const std::string& target)
        : peer_(peer), target_(*dht::SocketAddress::parse(target)) {
        for (const auto& host : hosts) {
            auto& ep = endpoints_.emplace_back(std::make_unique<dht::UdpEndpoint>(host, 0));
            TransportConfig config;
            config.certificatePem = id.certificatePem();
            config.privateKeyPem = id.privateKeyPem("");
            config.local4 = ep->bound4();
            config.handshakeTimeout = 3s;
            auto* endpoint = ep.get();
            transports_.push_back(std::make_unique<Transport>(
                io_, config,
                [endpoint](const dht::SocketAddress& to, std::span<const std::uint8_t> d,
                           std::size_t segmentSize) { endpoint->sendOther(to, d, segmentSize); }));
        }
        asio::post(io_, [this] { round(); });
        thread_ = std::thread([this] { io_.run(); });
    }
    ~HandshakeFlood() { stop(); }
    std::vector<std::string> addresses() const {
        std::vector<std::string> out;
        for (const auto& ep : endpoints_)
            out.push_back(ep->bound4().toString());
        return out;
    }
    HandshakeFlood(const HandshakeFlood&) = delete;
    HandshakeFlood& operator=(const HandshakeFlood&) = delete;

    void stop() {
        if (!thread_.joinable())
            return;
        asio::post(io_, [this] {
            stopped_ = true;
            timer_.cancel();
            transports_.clear();
            io_.stop();
        });
        thread_.join();
    }

private:
    void round() {
        if (stopped_)
            return;
        for (auto& t : transports_)
            for (int k = 0; k < 2; ++k)
                t->dial(peer_, target_, [](ConnectionPtr, const std::string&) {});
        timer_.expires_after(500ms);
        timer_.async_wait([this](const std::error_code& ec) {
            if (!ec)
                round();
        });
    }

    asio::io_context io_;
    asio::steady_timer timer_{io_};
    std::vector<std::unique_ptr<dht::UdpEndpoint>> endpoints_;
    std::vector<std::unique_ptr<Transport>> transports_;
    dht::ContactId peer_;
    dht::SocketAddress target_;
    bool stopped_ = false; // io thread only
    std::thread thread_;
};

// The secret a node derives its stateless reset tokens from (node/node.cpp, startTransport):
// a stand-in for a node must use the same one for the node's next incarnation to reset the
// stand-in's connections.
std::array<std::uint8_t, 32> nodeResetSecret(const dht::Identity& id) {
    std::array<std::uint8_t, 32> secret{};
    auto material = id.privateKeyPem("") + "\nparley/quic-stateless-reset/1";
    REQUIRE(gnutls_hash_fast(GNUTLS_DIG_SHA256, material.data(), material.size(), secret.data()) ==
            0);
    return secret;
}

// Collects log lines while it lives (the node logs why it closes or loses a connection).
// Create it before any node starts and let it outlive them: the logger's sinks are not
// guarded against threads that log meanwhile.
struct LogCapture {
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink =
        std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096);
    spdlog::level::level_enum previous = spdlog::get_level();
    explicit LogCapture(spdlog::level::level_enum atLeast) {
        spdlog::default_logger()->sinks().push_back(sink);
        if (previous > atLeast)
            spdlog::set_level(atLeast);
    }
    ~LogCapture() {
        auto& sinks = spdlog::default_logger()->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
        spdlog::set_level(previous);
    }
    bool contains(const std::string& a, const std::string& b) const {
        for (const auto& line : sink->last_formatted())
            if (line.find(a) != std::string::npos && line.find(b) != std::string::npos)
                return true;
        return false;
    }
};

} // namespace

TEST_CASE("links: a contact connects, the link is reused and set up again after a restart, "
          "an unused link closes",
          "[links]") {
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    auto aIsClient = node::isClientRole(aId.contactId(), bId.contactId());

    auto first = a.node->ping(bId.contactId(), 3, 20ms, 30s);
    INFO(node::api::toJson(first).dump());
    REQUIRE(first.connected);
    CHECK(!first.reused);
    CHECK(first.role == (aIsClient ? "client" : "server"));
    CHECK(first.remote == b.address());
    CHECK(first.setupMs > 0);
    CHECK(first.lost() == 0);
    REQUIRE(first.rttMs.size() == 3);
    for (const auto& rtt : first.rttMs)
        CHECK(rtt.has_value());
    CHECK(first.error.empty());

    // Both sides list the one link, with each other's address and opposite roles.
    auto aLinks = a.node->status()["links"], bLinks = b.node->status()["links"];
    REQUIRE(aLinks.size() == 1);
    REQUIRE(bLinks.size() == 1);
    CHECK(aLinks[0]["id"] == bId.contactId().toHex());
    CHECK(bLinks[0]["id"] == aId.contactId().toHex());
    CHECK(bLinks[0]["remote"] == a.address());
    CHECK(aLinks[0]["role"] != bLinks[0]["role"]);

    // The same link serves further pings, in both directions.
    auto again = a.node->ping(bId.contactId(), 1, 0ms, 30s);
    CHECK(again.connected);
    CHECK(again.reused);
    auto back = b.node->ping(aId.contactId(), 1, 0ms, 30s);
    CHECK(back.connected);
    CHECK(back.reused);
    CHECK(linkCount(*a.node, "links_up") == 1);
    CHECK(linkCount(*b.node, "links_up") == 1);
    CHECK(linkCount(*a.node, "quic_connections") == 1);

    // A stops (it says goodbye): B drops the link and does not chase a node that left.
    a.node->stop();
    a.node.reset();
    REQUIRE(test::eventually([&] { return !linked(*b.node, aId.contactId()); }, 10s));
    CHECK(linkCount(*b.node, "links_down") == 1);

    // A restarts on its profile, on a new port, with a short idle timeout. B pings: a new
    // link, set up through the DHT (B's old address for A is stale).
    node::LinkOptions shortIdle;
    shortIdle.idleClose = 2s;
    auto a2 = net.start(aId, std::move(a.dir), {.links = shortIdle});
    auto afterRestart = b.node->ping(aId.contactId(), 1, 0ms, 30s);
    INFO(node::api::toJson(afterRestart).dump());
    REQUIRE(afterRestart.connected);
    CHECK(!afterRestart.reused);
    CHECK(afterRestart.remote == a2.address());
    CHECK(linkCount(*b.node, "links_up") == 2);
    CHECK(linked(*a2.node, bId.contactId()));

    // Nobody uses it: A closes it when idle; neither side reconnects.
    REQUIRE(test::eventually(
        [&] { return linkCountInStatus(*a2.node) == 0 && linkCountInStatus(*b.node) == 0; }, 15s));
    CHECK(linkCount(*a2.node, "idle_closes") == 1);
    CHECK(linkCount(*a2.node, "links_down") == 1);
    CHECK(linkCount(*b.node, "links_down") == 2);
    // That neither reconnects later is proven on virtual time in test_link_core.cpp.
    CHECK(linkCount(*a2.node, "reconnects") == 0);
    CHECK(linkCount(*b.node, "reconnects") == 0);
    CHECK_FALSE(linked(*b.node, aId.contactId()));
    // B's dial to A's old port gives up after the handshake timeout.
    CHECK(test::eventually([&] { return linkCount(*b.node, "quic_connections") == 0; }, 15s));
}

TEST_CASE("links: when the server side crashes and restarts, the client notices at once and "
          "reconnects",
          "[links]") {
    LogCapture logs(spdlog::level::info);
    test::TestNetwork net;
    const auto ids = orderedPair("client", "server");
    const auto& clientId = ids.first;
    const auto& serverId = ids.second;
    auto client = net.start(clientId);
    auto server = net.start(serverId);
    REQUIRE(test::makeContacts(*client.node, clientId, *server.node, serverId));
    auto port = server.node->port();
    server.node->stop();
    server.node.reset();

    // The server's stand-in on its port, with its key and reset secret: the client connects
    // to it after a connect request naming that address.
    auto standIn =
        std::make_unique<RawPeer>(serverId, "127.0.0.1", port, nodeResetSecret(serverId));
    standIn->call([&] {
        standIn->transport().setAcceptHandler(answerLikeANode);
        return 0;
    });
    deliver(*client.node,
            connectEnvelope(dht::EnvelopeKind::connectRequest, serverId.contactId(),
                            clientId.contactId(), {"127.0.0.1:" + std::to_string(port)}),
            serverId.contactId());
    REQUIRE(test::eventually([&] { return linked(*client.node, serverId.contactId()); }, 15s));
    CHECK(linkCount(*client.node, "requests_received") == 1);

    // The stand-in crashes: not a byte leaves. The real server restarts on the same port.
    standIn->mute();
    standIn.reset();
    auto restarted = net.start(serverId, std::move(server.dir), {.port = port});

    // The client's next packet (this ping, or a keep-alive) meets a server that does not know
    // the connection: a stateless reset ends it at once, not the 30 s idle timeout, and the
    // client reconnects by itself.
    auto ping = client.node->ping(serverId.contactId(), 1, 0ms, 10s);
    INFO(node::api::toJson(ping).dump());
    REQUIRE(test::eventually([&] { return linkCount(*client.node, "links_down") >= 1; }, 10s));
    CHECK(linkCount(*restarted.node, "quic_stateless_resets_sent") >= 1);
    CHECK(logs.contains("link to " + serverId.contactId().shortHex() + " lost", "stateless reset"));
    REQUIRE(test::eventually(
        [&] {
            return linked(*client.node, serverId.contactId()) &&
                   linked(*restarted.node, clientId.contactId());
        },
        30s));
    CHECK(linkCount(*client.node, "reconnects") >= 1);
    auto fresh = client.node->ping(serverId.contactId(), 2, 10ms, 10s);
    INFO(node::api::toJson(fresh).dump());
    CHECK(fresh.connected);
    CHECK(fresh.lost() == 0);
    CHECK(fresh.remote == restarted.address());
}

TEST_CASE("links: strangers get no connection, no answer and no handshake, an impostor's key "
          "is refused",
          "[links]") {
    test::TestNetwork net;
    // The victim is the lower id, so that it dials its contact as the QUIC client.
    const auto ids = orderedPair("victim", "contact");
    const auto& victimId = ids.first;
    const auto& contactId = ids.second;
    auto strangerId = test::makeIdentity("stranger");
    auto victim = net.start(victimId);
    auto contact = net.start(contactId);
    auto stranger = net.start(strangerId);
    REQUIRE(test::makeContacts(*contact.node, contactId, *victim.node, victimId));

    // `parley ping` to someone who is not our contact is refused before anything is sent.
    auto refused = stranger.node->ping(victimId.contactId(), 1, 0ms, 5s);
    INFO(node::api::toJson(refused).dump());
    CHECK(!refused.connected);
    CHECK(refused.error.find("not an accepted contact") != std::string::npos);
    CHECK(linkCount(*stranger.node, "requests_sent") == 0);

    // A stranger's connect request: dropped unanswered, no dial, no punch. Delivered again,
    // it is dropped again, before the replay table (a dropped envelope costs no write).
    auto e = connectEnvelope(dht::EnvelopeKind::connectRequest, strangerId.contactId(),
                             victimId.contactId(), {stranger.address()});
    deliver(*victim.node, e, strangerId.contactId());
    CHECK(contactCount(*victim.node, "connect_from_stranger") == 1);
    deliver(*victim.node, e, strangerId.contactId());
    CHECK(contactCount(*victim.node, "connect_from_stranger") == 2);
    CHECK(contactCount(*victim.node, "envelopes_replayed") == 0);
    CHECK(linkCount(*victim.node, "requests_received") == 0);

    // One-sided: the stranger asked to be a contact and believes it was accepted (a forged
    // acceptance in its own store); the victim never accepted. Its connect request goes
    // through the DHT and is never answered.
    REQUIRE(test::eventually(
        [&] { return stranger.node->lookup(victimId.contactId(), 3s).card.has_value(); }, 20s));
    stranger.node->call([&] {
        return stranger.node->contacts()
            .add(victimId.contactId(), "hello?", "", [](const node::AddResult&) {})
            .ok();
    });
    auto acceptance = connectEnvelope(dht::EnvelopeKind::contactAccept, victimId.contactId(),
                                      strangerId.contactId(), {});
    deliver(*stranger.node, acceptance, victimId.contactId());
    REQUIRE(test::contactState(*stranger.node, victimId.contactId()) == "accepted");
    auto unanswered = stranger.node->ping(victimId.contactId(), 1, 0ms, 6s);
    INFO(node::api::toJson(unanswered).dump());
    CHECK(!unanswered.connected);
    CHECK(unanswered.error.find("timed out") != std::string::npos);
    CHECK(linkCount(*stranger.node, "requests_sent") == 1);
    CHECK(linkCount(*stranger.node, "answers_received") == 0);
    // Its envelopes did arrive: the contact request waits for the victim's answer, the
    // connect request was dropped.
    CHECK(test::eventually(
        [&] { return test::contactState(*victim.node, strangerId.contactId()) == "incoming"; },
        20s));
    CHECK(test::eventually([&] { return contactCount(*victim.node, "connect_from_stranger") == 3; },
                           20s));
    CHECK(linkCount(*victim.node, "requests_received") == 0);
    CHECK(linkCount(*victim.node, "dials") == 0);
    CHECK(linkCount(*victim.node, "punches") == 0);
    CHECK(linkCount(*victim.node, "quic_handshakes_refused") == 0);

    // A stranger's QUIC handshake straight to the victim's port is refused.
    {
        RawPeer raw(strangerId);
        auto d = dial(raw, victimId.contactId(), victim.address());
        REQUIRE(test::eventually([&] { return raw.call([&] { return d->done; }); }, 15s));
        CHECK_FALSE(raw.call([&] { return d->conn != nullptr; }));
        CHECK(linkCount(*victim.node, "quic_handshakes_refused") == 1);
        CHECK(linkCount(*victim.node, "links_up") == 0);
        CHECK_FALSE(linked(*victim.node, strangerId.contactId()));
        CHECK(test::eventually([&] { return linkCount(*victim.node, "quic_connections") == 0; },
                               10s));
    }

    // An impostor (the stranger's key) at the address a contact's request names: the victim
    // dials it, expecting the contact's key, and the handshake fails; no stream, no link.
    bool impostorAccepted = false; // set on the impostor's thread: declared before it
    RawPeer impostor(strangerId);
    impostor.call([&] {
        impostor.transport().setAcceptHandler([&](ConnectionPtr c) {
            impostorAccepted = true;
            c->start();
        });
        return 0;
    });
    deliver(*victim.node,
            connectEnvelope(dht::EnvelopeKind::connectRequest, contactId.contactId(),
                            victimId.contactId(), {impostor.address()}),
            contactId.contactId());
    REQUIRE(test::eventually([&] { return linkCount(*victim.node, "dials_failed") >= 1; }, 15s));
    CHECK(linkCount(*victim.node, "dials") == 1);
    CHECK(linkCount(*victim.node, "links_up") == 0);
    CHECK_FALSE(linked(*victim.node, contactId.contactId()));
    CHECK_FALSE(impostor.call([&] { return impostorAccepted; }));
    CHECK(test::eventually(
        [&] {
            return impostor.call([&] { return impostor.transport().stats().connections; }) == 0;
        },
        10s));

    // The real contact still gets through.
    auto ok = contact.node->ping(victimId.contactId(), 1, 0ms, 30s);
    INFO(node::api::toJson(ok).dump());
    CHECK(ok.connected);
    CHECK(ok.remote == victim.address());
}

TEST_CASE("links: replayed, stale, early and unmatched connect envelopes do nothing", "[links]") {
    test::TestNetwork net;
    // B is the lower id: an answer it accepted would make it dial.
    const auto ids = orderedPair("bob", "alice");
    const auto& bId = ids.first;
    const auto& aId = ids.second;
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    auto from = aId.contactId(), to = bId.contactId();
    auto nowhere = std::vector<std::string>{"127.0.0.1:9"}; // discard port: a dial would show

    auto request = connectEnvelope(dht::EnvelopeKind::connectRequest, from, to, {});
    deliver(*b.node, request, from);
    CHECK(linkCount(*b.node, "requests_received") == 1);
    // The same envelope again (a replay, or the DHT delivering it twice).
    deliver(*b.node, request, from);
    CHECK(contactCount(*b.node, "envelopes_replayed") == 1);
    CHECK(linkCount(*b.node, "requests_received") == 1);

    // Older than two minutes, but well inside the window of other envelopes.
    auto stale = connectEnvelope(dht::EnvelopeKind::connectRequest, from, to, nowhere);
    stale.createdMs -= dht::kConnectWindowMs + 5'000;
    deliver(*b.node, stale, from);
    CHECK(contactCount(*b.node, "envelopes_expired") == 1);
    auto staleAnswer = connectEnvelope(dht::EnvelopeKind::connectAnswer, from, to, nowhere);
    staleAnswer.createdMs -= dht::kConnectWindowMs + 5'000;
    deliver(*b.node, staleAnswer, from);
    CHECK(contactCount(*b.node, "envelopes_expired") == 2);
    // From too far in the future.
    auto early = connectEnvelope(dht::EnvelopeKind::connectRequest, from, to, nowhere);
    early.createdMs += 10 * 60'000;
    deliver(*b.node, early, from);
    CHECK(contactCount(*b.node, "envelopes_from-the-future") == 1);
    // Claiming to be from A, signed by someone else.
    auto forged = connectEnvelope(dht::EnvelopeKind::connectRequest, from, to, nowhere);
    dht::ContactId::Bytes mallory{};
    mallory.fill(0x4d);
    deliver(*b.node, forged, dht::ContactId(mallory));
    CHECK(contactCount(*b.node, "envelopes_forged") == 1);
    // An answer to no request of ours (or to one that is over).
    auto unmatched = connectEnvelope(dht::EnvelopeKind::connectAnswer, from, to, nowhere);
    unmatched.replyTo = randomEnvelopeId();
    deliver(*b.node, unmatched, from);
    CHECK(linkCount(*b.node, "answers_unmatched") == 1);

    CHECK(linkCount(*b.node, "requests_received") == 1);
    CHECK(linkCount(*b.node, "answers_received") == 0);
    CHECK(linkCount(*b.node, "dials") == 0);
    CHECK(linkCount(*b.node, "punches") == 0);
    CHECK_FALSE(linked(*b.node, from));
}

TEST_CASE("links: oversized and malformed control frames close the connection with a reason, "
          "the node keeps running",
          "[links]") {
    LogCapture logs(spdlog::level::warn);
    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    auto aShort = aId.contactId().shortHex();

    // A misbehaving program with A's key (B accepts it: A is a contact) on another port. It
    // goes away before the real A connects: B's last address for A is then the evil one's,
    // and a program there that completes handshakes would hold up A's connection (see the
    // case "... never says hello ..." below).
    auto evilPeer = std::make_unique<RawPeer>(aId);
    auto& evil = *evilPeer;
    auto connectAndSend = [&](const std::vector<std::uint8_t>& bytes) {
        auto d = dial(evil, bId.contactId(), b.address());
        REQUIRE(test::eventually([&] { return evil.call([&] { return d->done; }); }, 15s));
        REQUIRE(evil.call([&] { return d->conn != nullptr; }));
        auto stream = evil.call([&] {
            auto s = d->conn->openBidiStream();
            if (s >= 0)
                d->conn->write(s, bytes);
            return s;
        });
        REQUIRE(stream >= 0);
        REQUIRE(test::eventually(
            [&] { return !evil.call([&] { return d->closedReason; }).empty(); }, 15s));
        return evil.call([&] { return d->closedReason; });
    };
    auto prefix = [](std::uint32_t n) {
        return std::vector<std::uint8_t>{
            static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
            static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
    };
    auto hello = framedMessage(node::wire::Hello{});
    auto concat = [](std::vector<std::uint8_t> x, const std::vector<std::uint8_t>& y) {
        x.insert(x.end(), y.begin(), y.end());
        return x;
    };
    auto tooLarge = std::string(node::wire::describe(node::wire::FrameError::tooLarge));
    auto malformed = std::string(node::wire::describe(node::wire::FrameError::malformed));

    // (a) A length prefix one byte over the limit: refused as soon as the prefix arrives.
    auto reason = connectAndSend(prefix(node::wire::kMaxFrameSize + 1));
    CHECK(reason.find("closed by the peer") != std::string::npos);
    CHECK(reason.find(tooLarge.substr(0, 40)) != std::string::npos);
    CHECK(linkCount(*b.node, "protocol_errors") == 1);
    CHECK(linkCount(*b.node, "links_up") == 0);

    // (b) A valid hello, then bytes that are not msgpack.
    std::vector<std::uint8_t> garbage = {0xc1, 0xc1, 0xc1};
    reason = connectAndSend(concat(hello, concat(prefix(3), garbage)));
    CHECK(reason.find(malformed.substr(0, 40)) != std::string::npos);
    CHECK(linkCount(*b.node, "protocol_errors") == 2);

    // (c) A hello whose fields have the wrong types.
    std::string text = "\x82\xa1t\xa5hello\xa7version\xa3one"; // {t: hello, version: "one"}
    std::vector<std::uint8_t> badHello(text.begin(), text.end());
    reason = connectAndSend(concat(prefix(static_cast<std::uint32_t>(badHello.size())), badHello));
    CHECK(reason.find("closed by the peer") != std::string::npos);
    CHECK(linkCount(*b.node, "protocol_errors") == 3);

    // (d) A ping before the hello.
    reason = connectAndSend(framedMessage(node::wire::Ping{1, 2}));
    CHECK(reason.find("before the hello") != std::string::npos);
    CHECK(linkCount(*b.node, "protocol_errors") == 4);

    // B said why in its log, and holds nothing of those connections.
    CHECK(logs.contains("closing the connection with " + aShort, tooLarge.substr(0, 40)));
    CHECK(logs.contains("closing the connection with " + aShort, malformed.substr(0, 40)));
    REQUIRE(test::eventually([&] { return linkCount(*b.node, "quic_connections") == 0; }, 10s));
    CHECK_FALSE(linked(*b.node, aId.contactId()));
    CHECK(linkCount(*b.node, "reconnects") == 0);
    evilPeer.reset();

    // B keeps running: the real A connects and pings.
    auto ping = a.node->ping(bId.contactId(), 2, 10ms, 30s);
    INFO(node::api::toJson(ping).dump());
    CHECK(ping.connected);
    CHECK(ping.lost() == 0);
    CHECK(linkCount(*b.node, "protocol_errors") == 4);
}

TEST_CASE("links: a flood of unfinished handshakes and stranger connect envelopes stays "
          "bounded, a contact still connects",
          "[links]") {
    test::TestNetwork net;
    // B, the target, is the higher id: A dials it, into B's full handshake table.
    const auto ids = orderedPair("alice", "bob");
    const auto& aId = ids.first;
    const auto& bId = ids.second;
    auto attackerId = test::makeIdentity("attacker");
    auto a = net.start(aId);
    auto b = net.start(bId);
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));
    const auto cap = TransportConfig{}.maxHandshakes;

    // Attackers on 20 addresses, one of them A's own (127.0.0.1), keep starting handshakes.
    std::vector<std::string> hosts = {"127.0.0.1"};
    for (int i = 0; i < 19; ++i)
        hosts.push_back("127.0.0." + std::to_string(11 + i));
    HandshakeFlood flood(attackerId, hosts, bId.contactId(), b.address());

    auto inProgress = [&] { return linkCount(*b.node, "quic_handshakes_in_progress"); };
    REQUIRE(test::eventually([&] { return inProgress() == cap; }, 20s));
    CHECK(test::eventually([&] { return linkCount(*b.node, "quic_initials_dropped") > 0; }, 5s));

    // Connect requests from 200 strangers, naming the attackers' addresses: dropped, counted,
    // unanswered, and those addresses get no reserved room past the cap.
    auto attackers = flood.addresses();
    for (int i = 0; i < 200; ++i) {
        dht::ContactId::Bytes bytes{};
        bytes[0] = 0xee;
        bytes[1] = static_cast<std::uint8_t>(i);
        bytes[2] = static_cast<std::uint8_t>(i >> 8);
        dht::ContactId sender(bytes);
        deliver(*b.node,
                connectEnvelope(dht::EnvelopeKind::connectRequest, sender, bId.contactId(),
                                {attackers[static_cast<std::size_t>(i) % attackers.size()]}),
                sender);
    }
    CHECK(contactCount(*b.node, "connect_from_stranger") == 200);
    CHECK(linkCount(*b.node, "requests_received") == 0);
    std::uint64_t most = 0;
    for (int i = 0; i < 30; ++i) {
        most = std::max(most, inProgress());
        std::this_thread::sleep_for(50ms);
    }
    CHECK(most == cap);

    // Through all of it, A (whose address B expects once its request arrived) connects.
    CHECK(test::eventually([&] { return inProgress() == cap; }, 5s)); // still full
    auto ping = a.node->ping(bId.contactId(), 1, 0ms, 40s);
    INFO(node::api::toJson(ping).dump());
    CHECK(ping.connected);
    CHECK(ping.role == "client");
    CHECK(ping.lost() == 0);
    auto counters = b.node->call([&] { return b.node->links().counters(); });
    INFO(node::api::toJson(counters).dump());
    CHECK(counters["quic_handshakes_in_progress"] <= cap);
    CHECK(counters["quic_initials_dropped"] > 0);
    // Established plus half-open connections: the cap, and A.
    CHECK(counters["quic_connections"] <= cap + 1);
    CHECK(counters["links_up"] == 1);
    CHECK(counters["requests_received"] == 1);

    flood.stop();
    // The attackers leave (closing their half-open connections) and B's table empties; the
    // link to A stays.
    REQUIRE(test::eventually([&] { return inProgress() == 0; }, 20s));
    CHECK(linked(*b.node, aId.contactId()));
    CHECK(linked(*a.node, bId.contactId()));
}

// When the client side of a pair dials several paths, the first handshake that completes
// wins and later ones are closed ("another path won", node/links.cpp, dialAll) even while
// the winner has not said hello yet. If the winner then never does (an old instance still
// holding a port, a path that breaks right after the handshake), it is closed at the hello
// deadline, and the attempt has no path left although a working one was found: the contact
// stays unreachable until the attempt expires.
TEST_CASE("links: a path that completes the handshake but never says hello does not block a "
          "working path",
          "[links]") {
    test::TestNetwork net;
    const auto ids = orderedPair("bob", "alice"); // B dials: it is the QUIC client
    const auto& bId = ids.first;
    const auto& aId = ids.second;
    node::LinkOptions quick;
    quick.helloTimeout = 2s;
    quick.attemptLifetime = 15s;
    auto a = net.start(aId);
    auto b = net.start(bId, nullptr, {.links = quick});
    REQUIRE(test::makeContacts(*a.node, aId, *b.node, bId));

    // Something with A's key had a link with B from another port, then closed it politely:
    // B remembers that address as A's. It still completes handshakes there, and then is
    // silent (no accept handler: nothing reads or answers).
    RawPeer hung(aId);
    auto d = dial(hung, bId.contactId(), b.address());
    REQUIRE(test::eventually([&] { return hung.call([&] { return d->conn != nullptr; }); }, 15s));
    hung.call([&] {
        auto stream = d->conn->openBidiStream();
        d->conn->write(stream, framedMessage(node::wire::Hello{}));
        return 0;
    });
    REQUIRE(test::eventually([&] { return linked(*b.node, aId.contactId()); }, 10s));
    hung.call([&] {
        d->conn->close(node::quic::CloseCode::normal, "bye");
        return 0;
    });
    REQUIRE(test::eventually([&] { return !linked(*b.node, aId.contactId()); }, 10s));

    // B pings A: it dials the remembered address at once (the silent one) and A's real
    // address once A answered B's connect request. A connects all the same.
    auto ping = b.node->ping(aId.contactId(), 1, 0ms, 12s);
    INFO(node::api::toJson(ping).dump());
    INFO(node::api::toJson(b.node->call([&] { return b.node->links().counters(); })).dump());
    CHECK(ping.connected);
    CHECK(ping.remote == a.address());
}
