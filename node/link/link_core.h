// LinkCore: the link policy of LinkManager as a sans-IO state machine (DESIGN.md §1, §6).
// Events and a time in (connect requested, connect envelope, connection dialled/accepted/
// closed, hello received, link used, timer due, goodbye, stop), actions out (send a connect
// request, dial, punch, start a connection, send hello/goodbye, close a connection, report a
// link up or down, answer a waiter) and the next deadline. No socket, clock, asio or QUIC
// here: connections are opaque ids chosen by the glue, and randomness (request ids) comes
// from an injected dht::Random.
//
// Per contact:
//   - an attempt: one set-up (connect request, dials, punches) that lives attemptLifetime,
//     with the waiters that asked for it; a server punches punchCount times punchInterval
//     apart towards the client's candidates.
//   - pending connections: handshake done, hello not yet; each has helloTimeout to get one.
//     The client (lower ContactId) says hello first; a server counts a connection as the link
//     only once the hello arrived. A second client connection that confirms while one is
//     pending waits on standby, and takes over if the first closes without a hello.
//   - the active link, checked for idleness every min(max(idleClose/4, 100 ms), 30 s) and
//     closed once unused for idleClose (and no ping outstanding).
//   - reconnects after a lost link (not one closed on purpose by either side): 500 ms << tries
//     (tries capped at 8), capped at reconnectMax, at most 12 in a row.
#pragma once

#include "dht/clock.h"
#include "dht/contact_id.h"
#include "dht/socket_address.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace parley::node {

struct LinkOptions {
    std::chrono::milliseconds idleClose{std::chrono::minutes(5)}; // unused links close
    std::chrono::milliseconds helloTimeout{5'000};
    std::chrono::milliseconds attemptLifetime{30'000}; // one set-up attempt (dials, punches)
    std::chrono::milliseconds punchInterval{100};
    int punchCount = 30;
    std::chrono::milliseconds reconnectMax{30'000}; // backoff cap after a lost link
};

namespace link {

using ConnId = std::uint64_t; // chosen by the glue, never reused
using WaiterId = std::uint64_t;
using TimePoint = dht::Clock::TimePoint;
using RequestId = std::array<std::uint8_t, 16>;

// Why a connection is closed (mapped onto quic::CloseCode by the glue).
enum class CloseCode { normal, protocol, replaced, unwanted };
// Who closed a connection (as quic::ClosedBy reports it).
enum class ClosedBy { us, peer, other };

namespace act {
struct SendRequest { // a connect request envelope with this id
    dht::ContactId peer;
    RequestId id;
};
struct Dial {
    dht::ContactId peer;
    dht::SocketAddress to;
};
struct Punch {
    std::vector<dht::SocketAddress> targets;
};
struct StartConnection { // install the stream handlers; a client opens control, says hello
    ConnId conn;
    bool client = false;
};
struct SendGoodbye {
    ConnId conn;
};
struct Close {
    ConnId conn;
    CloseCode code;
    std::string reason;
};
struct LinkUp {
    dht::ContactId peer;
    ConnId conn;
};
struct LinkDown {
    dht::ContactId peer;
    ConnId conn;
    bool goodbye = false;   // the peer said it is going offline
    bool reconnect = false; // lost while in use: a reconnect is scheduled
    std::string reason;
};
struct WaiterDone { // a connect() is answered: ok with the link `conn`, or failed
    WaiterId waiter;
    bool ok = false;
    ConnId conn = 0;
    double setupMs = 0;
    std::string error;
};
} // namespace act

using Action =
    std::variant<act::SendRequest, act::Dial, act::Punch, act::StartConnection, act::SendGoodbye,
                 act::Close, act::LinkUp, act::LinkDown, act::WaiterDone>;

class LinkCore {
public:
    // `accepted` answers whether a contact is accepted (a pure look-up; no I/O).
    LinkCore(const dht::ContactId& self, LinkOptions options, dht::Random& random,
             std::function<bool(const dht::ContactId&)> accepted);

    // --- events ---
    // A connect() from a caller: sets up an attempt (with a connect request) unless one is
    // running; the waiter is answered when a link comes up, the attempt ends, or `timeout`.
    WaiterId connect(const dht::ContactId& peer, std::chrono::milliseconds timeout, TimePoint now);
    // A connect envelope with usable `targets` from an accepted contact. For an answer,
    // `replyTo` must be the running attempt's request id (else false: unmatched).
    bool onConnectEnvelope(const dht::ContactId& from, bool answer, const RequestId& replyTo,
                           const std::vector<dht::SocketAddress>& targets, TimePoint now);
    // The transport suspects our client restarted: ask it to connect again.
    void onSuspect(ConnId conn, TimePoint now);
    // A dial confirmed a handshake (we are the client), or we accepted one (server).
    void onDialed(ConnId conn, const dht::ContactId& peer, const dht::SocketAddress& remote,
                  TimePoint now);
    void onAccepted(ConnId conn, const dht::ContactId& peer, const dht::SocketAddress& remote,
                    TimePoint now);
    // The peer's hello arrived (the glue checked it and, as server, answered it).
    void onHello(ConnId conn, TimePoint now);
    // A message that is not hello/ping/pong/goodbye, or a send on the link.
    void onUsed(ConnId conn, TimePoint now);
    void onPingStarted(ConnId conn);
    void onPingFinished(ConnId conn);
    void onGoodbye(ConnId conn);
    void onProtocolError(ConnId conn, const std::string& reason);
    void onClosed(ConnId conn, ClosedBy by, const std::string& reason, TimePoint now);
    void disconnect(const dht::ContactId& peer, const std::string& reason);
    void tick(TimePoint now); // runs everything due at `now`
    void stop();

    // --- actions and time ---
    std::optional<Action> nextAction();
    std::optional<TimePoint> nextDeadline() const;

    // --- queries ---
    std::optional<ConnId> activeLink(const dht::ContactId& peer) const;
    bool helloSeen(ConnId conn) const;
    bool closing(ConnId conn) const; // we closed it (or it is unknown)
    bool stopped() const { return stopped_; }
    bool client(const dht::ContactId& peer) const { return self_ < peer; }
    TimePoint establishedAt(ConnId conn) const;
    TimePoint lastUsed(ConnId conn) const;
    const std::map<std::string, std::uint64_t>& counts() const { return counts_; }
    const std::map<dht::ContactId, ConnId>& active() const { return active_; }

private:
    struct Link {
        dht::ContactId peer;
        bool client = false;
        bool pending = true; // handshake done, hello not yet (and not replaced)
        bool active = false, helloReceived = false;
        bool closedByUs = false, goodbye = false;
        dht::SocketAddress remote;
        TimePoint lastUsed{}, establishedAt{};
        std::optional<TimePoint> deadline; // hello deadline, then idle checks
        int pings = 0;
    };
    struct Waiter {
        WaiterId id = 0;
        std::optional<TimePoint> deadline; // none: a reconnect's own waiter
    };
    struct Attempt {
        RequestId requestId{};
        bool requestSent = false;
        TimePoint started{}, expires{};
        std::vector<Waiter> waiters;
        std::map<std::string, TimePoint> dialed; // address -> last dial
        std::set<std::string> punched;
        std::vector<dht::SocketAddress> punchTargets;
        int punchesLeft = 0;
        std::optional<TimePoint> nextPunch;
        // Confirmed client connections on other paths, kept while the first one has not
        // said hello: if it never does, the next takes its place.
        std::vector<std::pair<ConnId, dht::SocketAddress>> standby;
    };
    struct Reconnect {
        int tries = 0;
        std::optional<TimePoint> due;
    };

    Attempt& attemptFor(const dht::ContactId& peer, bool withRequest, TimePoint now);
    void finishAttempt(const dht::ContactId& peer, bool ok, ConnId conn, const std::string& error,
                       TimePoint now);
    void dialAll(const dht::ContactId& peer, const std::vector<dht::SocketAddress>& targets,
                 TimePoint now);
    void punchTick(const dht::ContactId& peer, Attempt& a, TimePoint now);
    void setupLink(ConnId conn, const dht::ContactId& peer, bool client,
                   const dht::SocketAddress& remote, TimePoint now);
    void activate(ConnId conn, Link& link, TimePoint now);
    void armIdle(Link& link, TimePoint now);
    void idleCheck(ConnId conn, Link& link, TimePoint now);
    void scheduleReconnect(const dht::ContactId& peer, TimePoint now);
    void reconnectDue(const dht::ContactId& peer, TimePoint now);
    void close(ConnId conn, CloseCode code, std::string reason);
    void count(const std::string& name) { ++counts_[name]; }
    void emit(Action a) { actions_.push_back(std::move(a)); }

    dht::ContactId self_;
    LinkOptions options_;
    dht::Random& random_;
    std::function<bool(const dht::ContactId&)> accepted_;
    std::map<ConnId, Link> links_; // pending and active connections (and closing ones)
    std::map<dht::ContactId, ConnId> active_;
    std::map<dht::ContactId, Attempt> attempts_;
    std::map<dht::ContactId, dht::SocketAddress> lastRemote_;
    std::map<dht::ContactId, Reconnect> reconnects_;
    std::map<std::string, std::uint64_t> counts_;
    std::deque<Action> actions_;
    WaiterId nextWaiter_ = 1;
    bool stopped_ = false;
};

} // namespace link
} // namespace parley::node
