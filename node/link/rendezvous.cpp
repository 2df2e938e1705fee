// LinkManager's rendezvous (DESIGN.md §6 steps 1-2): our candidate addresses, connect
// request and answer envelopes through the DHT inbox, dialling the peer's candidates (we are
// the client) and punch datagrams towards them (we are the server).
#include "dht/clock.h"
#include "dht/overlay.h"
#include "dht/udp_endpoint.h"
#include "node/link/contact_directory.h"
#include "node/link/links_internal.h"

#include <spdlog/spdlog.h>

namespace parley::node {

CandidatePolicy LinkManager::Impl::policy() const {
    // Loopback addresses are candidates only in a network that lives on loopback (tests,
    // the demo): bound to loopback, or seen by DHT peers at a loopback address.
    auto& ep = overlay.endpoint();
    bool loopback = ep.boundToLoopback();
    if (!loopback) {
        auto st = overlay.status();
        loopback = !st.publicEndpoints.empty();
        for (const auto& p : st.publicEndpoints) {
            auto a = dht::SocketAddress::parse(p);
            loopback = loopback && a && a->isLoopback();
        }
    }
    return CandidatePolicy{.allowLoopback = loopback};
}

std::vector<std::string> LinkManager::Impl::ourCandidates() const {
    auto& ep = overlay.endpoint();
    auto pol = policy();
    auto interfaces = interfaceAddresses(ep.hasIPv4() ? ep.bound4() : dht::SocketAddress{},
                                         ep.hasIPv6() ? ep.bound6() : dht::SocketAddress{},
                                         ep.port(), pol.allowLoopback);
    std::vector<std::string> publicEndpoints;
    for (const auto& p : overlay.status().publicEndpoints) {
        auto a = dht::SocketAddress::parse(p);
        if (a && (pol.allowLoopback || !a->isLoopback()))
            publicEndpoints.push_back(p);
    }
    return mergeCandidates(interfaces, publicEndpoints,
                           mapped ? mapped() : std::vector<std::string>{});
}

void LinkManager::Impl::sendRequest(const dht::ContactId& peer, const link::RequestId& id) {
    dht::Envelope e;
    e.kind = dht::EnvelopeKind::connectRequest;
    e.id = id;
    e.createdMs = dht::unixMs();
    e.from = self;
    e.to = peer;
    e.candidates = ourCandidates();
    count("requests_sent");
    spdlog::debug("connect request to {} with {} candidates", peer.shortHex(), e.candidates.size());
    contacts.sendNow(e, [weak = weak_from_this(), peer](bool ok) {
        auto s = weak.lock();
        if (!s || ok)
            return;
        s->count("requests_not_stored");
        spdlog::info("connect request to {} was not stored in the DHT", peer.shortHex());
    });
}

void LinkManager::Impl::onConnectEnvelope(const dht::Envelope& e) {
    if (stopped())
        return;
    auto targets = selectCandidates(e.candidates, policy());
    auto until = Clock::now() + options.attemptLifetime;
    for (const auto& t : targets)
        transport.expect(t, until);
    bool answer = e.kind != dht::EnvelopeKind::connectRequest;
    if (!answer) {
        dht::Envelope reply;
        reply.kind = dht::EnvelopeKind::connectAnswer;
        dht::SystemRandom::instance().fill(reply.id);
        reply.createdMs = dht::unixMs();
        reply.from = self;
        reply.to = e.from;
        reply.replyTo = e.id;
        reply.candidates = ourCandidates();
        contacts.sendNow(reply, [weak = weak_from_this()](bool ok) {
            if (auto st = weak.lock(); st && !ok)
                st->count("answers_not_stored");
        });
    }
    if (core.onConnectEnvelope(e.from, answer, e.replyTo, targets, Clock::now()))
        spdlog::debug("{} from {}: {} usable candidates", dht::toString(e.kind), e.from.shortHex(),
                      targets.size());
    drain();
}

void LinkManager::Impl::dial(const dht::ContactId& peer, const dht::SocketAddress& to) {
    spdlog::debug("dialling {} at {}", peer.shortHex(), to.toString());
    transport.dial(
        peer, to,
        [weak = weak_from_this(), peer, to](quic::ConnectionPtr conn, const std::string& error) {
            auto s = weak.lock();
            if (!s || s->stopped()) {
                if (conn)
                    conn->close(quic::CloseCode::normal, "stopping");
                return;
            }
            if (!conn) {
                s->count("dials_failed");
                spdlog::debug("dial {} at {}: {}", peer.shortHex(), to.toString(), error);
                return;
            }
            auto l = s->track(conn);
            s->core.onDialed(l->id, peer, conn->remote(), Clock::now());
            s->drain();
        });
}

void LinkManager::Impl::punch(const std::vector<dht::SocketAddress>& targets) {
    for (const auto& t : targets)
        transport.punch(t);
}

// --- public -----------------------------------------------------------------------------------

void LinkManager::onConnectEnvelope(const dht::Envelope& envelope) {
    impl_->onConnectEnvelope(envelope);
}

void LinkManager::setMappedEndpoints(std::function<std::vector<std::string>()> source) {
    impl_->mapped = std::move(source);
}

std::vector<std::string> LinkManager::candidates() const {
    return impl_->ourCandidates();
}

} // namespace parley::node
