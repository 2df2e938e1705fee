// Benchmark: chat (issue 5) between two nodes on loopback, in a 7-node DHT. Prints figures;
// never asserts on time.
//  a. latency of one message on an established link, one at a time: send -> stored at the
//     peer (its chat.message event, read from its control socket), and send -> delivered
//     (the ack is back and recorded; ChatManager::wait), p50/p95/p99.
//  b. sustained throughput with acknowledgements and persistence: N messages queued as fast
//     as possible (BATCH per turn of the sender's loop), then the time until all are
//     stored at the peer and all are delivered at the sender; messages per second.
//  c. send -> delivered when no link exists yet but the contact is online: the sender closes
//     the link (LinkManager::disconnect, which the peer does not re-establish) before each
//     run, so that the message waits for a connect request through the DHT, the QUIC
//     handshake and the hellos. Run before (b), and again after it (a long conversation).
// Usage: bench_chat [LATENCY_RUNS=1000] [THROUGHPUT_N=20000] [SETUP_RUNS=30] [TEXT_BYTES=60]
//                   [BATCH=500]
// A count of 0 skips that part. BATCH: messages sent per turn of the sender's loop in (b).
#include "bench_stats.h"
#include "dht/hex.h"
#include "node/api/params.h"
#include "node/chat/chat.h"
#include "node/contacts/contacts.h"
#include "node/link/links.h"
#include "support/test_support.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace parley;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

using bench::ms;
using bench::pct;

void report(const char* what, const std::vector<double>& v) {
    if (v.empty()) {
        std::printf("  %s: no successful run\n", what);
        return;
    }
    std::printf("  %s: p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  min %.2f ms  max %.2f ms  (%zu)\n",
                what, pct(v, 0.5), pct(v, 0.95), pct(v, 0.99), pct(v, 0), pct(v, 1), v.size());
}

double cpuSeconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    return sec(u.ru_utime) + sec(u.ru_stime);
}

std::string textOf(const std::string& prefix, std::size_t bytes) {
    std::string t = prefix + " ";
    while (t.size() < bytes)
        t.push_back(static_cast<char>('a' + t.size() % 26));
    return t;
}

// A subscriber on a node's control socket that notes when each incoming chat message's event
// arrives (the message is then stored at that node).
class Arrivals {
public:
    explicit Arrivals(const std::filesystem::path& socketPath) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socketPath.c_str());
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            throw std::runtime_error("cannot connect to " + socketPath.string());
        std::string line = R"({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{}})"
                           "\n";
        if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            throw std::runtime_error("cannot subscribe");
        reader_ = std::thread([this] { run(); });
        // The subscription is in place once its answer came back.
        test::eventually([&] { return subscribed_.load(); }, 5s, 1ms);
    }
    ~Arrivals() {
        stop_ = true;
        reader_.join();
        ::close(fd_);
    }
    std::optional<Clock::time_point> at(const std::string& id) {
        std::lock_guard lock(mutex_);
        auto it = seen_.find(id);
        return it == seen_.end() ? std::nullopt : std::optional(it->second);
    }

private:
    void run() {
        std::string buffer;
        char chunk[65536];
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0)
                continue;
            auto n = ::read(fd_, chunk, sizeof chunk);
            if (n <= 0)
                return;
            auto now = Clock::now();
            buffer.append(chunk, static_cast<std::size_t>(n));
            std::size_t nl;
            while ((nl = buffer.find('\n')) != std::string::npos) {
                auto m = json::parse(buffer.substr(0, nl), nullptr, false);
                buffer.erase(0, nl + 1);
                if (m.is_object() && m.contains("result"))
                    subscribed_ = true;
                if (!m.is_object() || m.value("method", "") != "event")
                    continue;
                const auto& e = m["params"];
                if (e.value("type", "") == "chat.message" && e.value("direction", "") == "in") {
                    std::lock_guard lock(mutex_);
                    seen_.emplace(e.value("id", ""), now);
                }
            }
        }
    }
    int fd_ = -1;
    std::thread reader_;
    std::atomic<bool> stop_{false}, subscribed_{false};
    std::mutex mutex_;
    std::map<std::string, Clock::time_point> seen_;
};

// Contacts (test::makeContacts), and a sees b online. False when a step takes over 20 s.
bool makeContacts(node::Node& a, const dht::ContactId& aId, node::Node& b,
                  const dht::ContactId& bId) {
    return test::makeContacts(a, aId, b, bId) &&
           test::eventually(
               [&] { return a.call([&] { return a.contacts().online(bId).value_or(false); }); },
               20s, 2ms);
}

struct Delivery {
    bool delivered = false;
    std::string id;
    Clock::time_point sent, done;
};

// Sends one message from `a` and waits (up to `timeout`) for its delivery; the times are
// taken on a's thread, around send() and in wait()'s answer.
Delivery sendAndWait(node::Node& a, const dht::ContactId& to, const std::string& text,
                     std::chrono::milliseconds timeout) {
    auto promise = std::make_shared<std::promise<Delivery>>();
    auto future = promise->get_future();
    a.call([&] {
        auto d = std::make_shared<Delivery>();
        d->sent = Clock::now();
        auto r = a.chat().send(to, text);
        d->id = dht::toHex(r.id);
        a.chat().wait(r.id, timeout, [d, promise](const node::WaitResult& w) {
            d->done = Clock::now();
            d->delivered = w.delivered;
            promise->set_value(*d);
        });
        return 0;
    });
    return future.get();
}

std::uint64_t counter(node::Node& n, const char* name) {
    auto c = n.call([&] { return n.chat().counters(); });
    return c.count(name) ? c[name] : 0;
}

// --- a. latency on an established link ---------------------------------------------------------

void latency(node::Node& a, node::Node& b, const dht::ContactId& bId, int runs,
             std::size_t textBytes, const std::filesystem::path& bSocket) {
    // The link is set up (and everything warmed) by a few messages first.
    for (int i = 0; i < 20; ++i)
        sendAndWait(a, bId, textOf("warm-up", textBytes), 10s);
    Arrivals arrivals(bSocket);
    std::vector<Delivery> runsDone;
    int failed = 0;
    for (int i = 0; i < runs; ++i) {
        auto d = sendAndWait(a, bId, textOf("latency " + std::to_string(i), textBytes), 5s);
        if (d.delivered)
            runsDone.push_back(d);
        else
            ++failed;
    }
    std::vector<double> toDelivered, toStored;
    for (const auto& d : runsDone) {
        toDelivered.push_back(ms(d.done - d.sent));
        // The event normally arrives before the ack; allow for a late reader thread.
        std::optional<Clock::time_point> at;
        test::eventually([&] { return (at = arrivals.at(d.id)).has_value(); }, 1s, 1ms);
        if (at)
            toStored.push_back(ms(*at - d.sent));
    }
    std::printf("a. one message at a time on an established link, %d runs (%d not delivered "
                "within 5 s), %zu-byte texts\n",
                runs, failed, textBytes);
    report("send -> stored at the peer (its chat.message event)", toStored);
    report("send -> delivered (ack back and recorded)", toDelivered);
    (void)b;
}

// --- b. throughput ------------------------------------------------------------------------------

void throughput(node::Node& a, node::Node& b, const dht::ContactId& bId, int n,
                std::size_t textBytes, int batch) {
    auto before = a.call([&] { return a.chat().history(bId, 100000).size(); });
    auto acks0 = counter(a, "acks");
    auto received0 = counter(b, "received");
    auto cpu0 = cpuSeconds();
    auto t0 = Clock::now();
    std::vector<Clock::time_point> batchDone; // does sending slow down as the history grows?
    int refused = 0;
    for (int sent = 0; sent < n; sent += batch) {
        refused += a.call([&] {
            int r = 0;
            for (int j = sent; j < std::min(n, sent + batch); ++j)
                r +=
                    a.chat().send(bId, textOf("bulk " + std::to_string(j), textBytes)).ok() ? 0 : 1;
            return r;
        });
        batchDone.push_back(Clock::now());
    }
    if (refused > 0)
        std::printf("  %d messages refused by send()\n", refused);
    auto tQueued = Clock::now();
    std::optional<Clock::time_point> tReceived, tDelivered;
    auto deadline = tQueued + 300s;
    while (Clock::now() < deadline && !(tReceived && tDelivered)) {
        if (!tReceived && counter(b, "received") >= received0 + static_cast<std::uint64_t>(n))
            tReceived = Clock::now();
        if (!tDelivered && counter(a, "acks") >= acks0 + static_cast<std::uint64_t>(n))
            tDelivered = Clock::now();
        std::this_thread::sleep_for(1ms);
    }
    auto cpu = cpuSeconds() - cpu0;
    // Check what the counters say against the store: every message delivered.
    auto history = a.call([&] { return a.chat().history(bId, static_cast<std::size_t>(n)); });
    int delivered = 0;
    for (const auto& m : history)
        delivered += m.state == "delivered" || m.state == "read";
    auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
    auto rate = [&](Clock::time_point t) { return n / seconds(t - t0); };
    std::printf("b. throughput: %d messages of %zu bytes, sent as fast as possible (batches of "
                "%d), after %zu messages already in the conversation\n",
                n, textBytes, batch, before);
    std::printf("  queued (send() returned for all): %.0f ms, %.0f msg/s\n", ms(tQueued - t0),
                rate(tQueued));
    if (batchDone.size() >= 4) {
        auto tenth = std::max<std::size_t>(1, batchDone.size() / 10);
        auto count = static_cast<double>(tenth * batch);
        auto first = batchDone[tenth - 1] - t0;
        auto last = batchDone.back() - batchDone[batchDone.size() - 1 - tenth];
        std::printf("  queueing rate over the first %.0f messages: %.0f msg/s; over the last "
                    "%.0f: %.0f msg/s\n",
                    count, count / seconds(first), count, count / seconds(last));
    }
    if (tReceived)
        std::printf("  all stored at the peer: %.0f ms, %.0f msg/s\n", ms(*tReceived - t0),
                    rate(*tReceived));
    else
        std::printf("  NOT all stored at the peer 300 s after queueing (%llu)\n",
                    static_cast<unsigned long long>(counter(b, "received") - received0));
    if (tDelivered)
        std::printf("  all delivered (acknowledged, recorded): %.0f ms, %.0f msg/s\n",
                    ms(*tDelivered - t0), rate(*tDelivered));
    else
        std::printf("  NOT all delivered 300 s after queueing (%llu)\n",
                    static_cast<unsigned long long>(counter(a, "acks") - acks0));
    std::printf("  the store agrees: %d of the last %d delivered; process CPU %.2f s "
                "(both nodes and the DHT helpers, %.1f us per message)\n",
                delivered, n, cpu, cpu * 1e6 / n);
}

// --- c. first message when no link exists --------------------------------------------------------

void setup(node::Node& a, node::Node& b, const dht::ContactId& aId, const dht::ContactId& bId,
           int runs, std::size_t textBytes, const std::filesystem::path& bSocket) {
    auto history = a.call([&] { return a.chat().history(bId, 100000).size(); });
    Arrivals arrivals(bSocket);
    std::vector<double> toDelivered, toStored;
    int failed = 0, stillUp = 0;
    for (int i = 0; i < runs; ++i) {
        a.call([&] {
            a.links().disconnect(bId, "bench");
            return 0;
        });
        auto down = [&] {
            return !a.call([&] { return a.links().connected(bId); }) &&
                   !b.call([&] { return b.links().connected(aId); });
        };
        if (!test::eventually(down, 5s, 1ms)) {
            ++stillUp;
            continue;
        }
        // The peer must not set the link up again on its own: then this would measure (a).
        std::this_thread::sleep_for(100ms);
        if (!down()) {
            ++stillUp;
            continue;
        }
        auto d = sendAndWait(a, bId, textOf("setup " + std::to_string(i), textBytes), 20s);
        if (!d.delivered) {
            ++failed;
            continue;
        }
        toDelivered.push_back(ms(d.done - d.sent));
        std::optional<Clock::time_point> at;
        test::eventually([&] { return (at = arrivals.at(d.id)).has_value(); }, 1s, 1ms);
        if (at)
            toStored.push_back(ms(*at - d.sent));
    }
    std::printf("c. first message with no link (closed by the sender before each run), contact "
                "online, %zu messages in the conversation before, %d runs (%d not delivered "
                "within 20 s, %d with the link back too early)\n",
                history, runs, failed, stillUp);
    report("send -> stored at the peer", toStored);
    report("send -> delivered", toDelivered);
    auto c = a.call([&] { return a.links().counters(); });
    std::printf("  sender's link counters: %s\n", node::api::toJson(c).dump().c_str());
}

} // namespace

int main(int argc, char** argv) {
    int latencyRuns = argc > 1 ? std::atoi(argv[1]) : 1000;
    int throughputN = argc > 2 ? std::atoi(argv[2]) : 20000;
    int setupRuns = argc > 3 ? std::atoi(argv[3]) : 30;
    auto textBytes = static_cast<std::size_t>(argc > 4 ? std::atoi(argv[4]) : 60);
    int batch = std::max(1, argc > 5 ? std::atoi(argv[5]) : 500);
    // The nodes' info lines (links up and down) would bury the figures; PARLEY_TEST_LOG
    // still overrides this.
    spdlog::set_level(spdlog::level::warn);
    test::TestNetwork net(4);
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(
        bId, nullptr, {.controlSocket = true}); // its control socket shows when messages are stored
    if (!makeContacts(*a.node, aId.contactId(), *b.node, bId.contactId())) {
        std::printf("alice and bob did not become contacts\n");
        return 1;
    }
    auto bSocket = b.dir->path / "control.sock";
    std::printf("chat on loopback, 7-node network, alice -> bob\n");
    if (latencyRuns > 0)
        latency(*a.node, *b.node, bId.contactId(), latencyRuns, textBytes, bSocket);
    // (c) runs before (b) with a short conversation, and again after it with a long one: the
    // chat store's queries depend on the conversation's length.
    if (setupRuns > 0)
        setup(*a.node, *b.node, aId.contactId(), bId.contactId(), setupRuns, textBytes, bSocket);
    if (throughputN > 0)
        throughput(*a.node, *b.node, bId.contactId(), throughputN, textBytes, batch);
    if (setupRuns > 0 && throughputN > 0)
        setup(*a.node, *b.node, aId.contactId(), bId.contactId(), setupRuns, textBytes, bSocket);
    return 0;
}
