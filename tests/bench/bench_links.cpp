// Benchmark: direct connections (issue 4) on loopback. Prints figures; never asserts on time.
//  a. set-up of a first connection (`Node::ping(peer, 1)` when no connection exists), p50/p95,
//     in a 7-node loopback DHT: (1) one contact pair whose pinging side restarts each run (stop,
//     then start on the same profile, same or new port; both QUIC roles). The stop says
//     goodbye, on which the peer puts a connect request into the stopping node's inbox: the
//     restarted node answers it at once, and the ping joins that attempt (setup_ms counts
//     from the attempt's start). (2) a new contact pair each run, i.e. a first-ever
//     connection between two young nodes, set up by the ping. (3) (1a) again once the pairs
//     of (2) are gone, i.e. with dead nodes in the saved node list.
//  b. RTT of pings over an established link (p50/p99).
//  c. bulk throughput of one QUIC stream between two Transports on real UDP sockets, against
//     one TLS 1.3 stream over TCP (tls_tcp_baseline.h) with the same identity, taking turns
//     REPEATS times; CPU time, per thread, packet rates and system calls; medians.
// Usage: bench_links [RUNS=10] [PINGS=500] [MIB=256] [SETTLE_SECONDS=0] [REPEATS=5]
// RUNS 0 skips the set-up runs, PINGS 0 the RTT, MIB 0 the throughput (RUNS and PINGS 0: no
// DHT at all). SETTLE_SECONDS: a new pair waits that long after becoming contacts before its
// first ping (its routing tables mature). PARLEY_TEST_LOG=info shows the nodes' logs.
// For comparisons: BENCH_CC=cubic|bbr|bbr2, BENCH_PACING=0, BENCH_GSO=0 (no GSO/GRO),
// BENCH_RECEIVE_THREAD=1 (the endpoint reads on its own thread, not the io thread).
#include "bench_stats.h"
#include "dht/udp_endpoint.h"
#include "node/api/link_methods.h"
#include "node/contacts/contacts.h"
#include "node/transport/quic.h"
#include "node/transport/quic_inbox.h"
#include "support/test_support.h"
#include "tls_tcp_baseline.h"

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace parley;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

using bench::median;
using bench::ms;
using bench::pct;

void report(const char* what, const std::vector<double>& v) {
    if (v.empty()) {
        std::printf("  %s: no successful run\n", what);
        return;
    }
    std::printf("  %s: p50 %.1f ms  p95 %.1f ms  min %.1f ms  max %.1f ms  (%zu runs)\n", what,
                pct(v, 0.5), pct(v, 0.95), pct(v, 0), pct(v, 1), v.size());
}

// --- a. set-up --------------------------------------------------------------------------------

struct SetupSample {
    bool ok = false;
    double setupMs = 0, wallMs = 0, rttMs = 0;
    std::string role, error;
};

SetupSample firstPing(node::Node& from, const dht::ContactId& to) {
    SetupSample s;
    auto t0 = Clock::now();
    auto r = from.ping(to, 1, 0ms, 20s);
    s.wallMs = ms(Clock::now() - t0);
    s.ok = r.connected && !r.reused;
    if (!s.ok) {
        s.error = r.reused ? "reused an existing link" : r.error;
        return s;
    }
    s.setupMs = r.setupMs;
    s.role = r.role;
    if (!r.rttMs.empty() && r.rttMs[0])
        s.rttMs = *r.rttMs[0];
    return s;
}

struct SetupFigures {
    std::vector<double> setup, wall, rtt;
    std::map<std::string, int> roles;
    int failed = 0;
    void add(const SetupSample& s) {
        if (!s.ok) {
            ++failed;
            return;
        }
        setup.push_back(s.setupMs);
        wall.push_back(s.wallMs);
        rtt.push_back(s.rttMs);
        ++roles[s.role];
    }
    void print(const char* title) const {
        std::printf("%s: %zu ok, %d failed; roles of the pinger:", title, setup.size(), failed);
        for (const auto& [role, n] : roles)
            std::printf(" %s %d", role.c_str(), n);
        std::printf("\n");
        report("setup_ms (Node::ping's figure)", setup);
        report("first ping, wall time of the call", wall);
        report("its RTT", rtt);
    }
};

void printSample(const char* kind, int run, const SetupSample& s) {
    if (s.ok)
        std::printf("    %s %d: setup %.1f ms, wall %.1f ms, role %s\n", kind, run, s.setupMs,
                    s.wallMs, s.role.c_str());
    else
        std::printf("    %s %d: FAILED (%s) after %.1f ms\n", kind, run, s.error.c_str(), s.wallMs);
    std::fflush(stdout);
}

void benchSetup(test::TestNetwork& net, int runs, int pings, std::chrono::seconds settle) {
    std::printf("== set-up of a first connection, loopback, 7-node DHT (seed + 4 helpers + 2)\n");
    // One long-lived pair; the pinger restarts (stop, then start on the same profile) so that
    // neither side keeps anything of the old connection in memory.
    auto xId = test::makeIdentity("x"), yId = test::makeIdentity("y");
    auto x = net.start(xId);
    auto y = net.start(yId);
    if (!test::makeContacts(*x.node, xId.contactId(), *y.node, yId.contactId())) {
        std::printf("restart runs: contact set-up failed\n");
        return;
    }
    auto warm = firstPing(*x.node, yId.contactId());
    printSample("long-lived pair, first ping", 0, warm);
    // Same port: a daemon restarted with the same --port (as in the netlab benchmark). New
    // port: a restart on an ephemeral port.
    auto restarts = [&](const std::string& label, bool samePort, int side) {
        auto& restarted = side == 0 ? x : y;
        auto& restartedId = side == 0 ? xId : yId;
        auto& other = side == 0 ? yId : xId;
        SetupFigures figures;
        std::vector<double> joins, usable;
        for (int run = 0; run < runs; ++run) {
            auto port = restarted.node->port();
            restarted.node->stop();
            restarted.node.reset();
            auto t0 = Clock::now();
            restarted = samePort ? net.start(restartedId, std::move(restarted.dir), {.port = port})
                                 : net.start(restartedId, std::move(restarted.dir));
            joins.push_back(ms(Clock::now() - t0));
            auto s = firstPing(*restarted.node, other.contactId());
            printSample("after restart", run, s);
            figures.add(s);
            if (s.ok)
                usable.push_back(ms(Clock::now() - t0));
        }
        auto role = restartedId.contactId() < other.contactId() ? "client" : "server";
        auto title = label + " after a restart of the pinger on " +
                     (samePort ? "the same" : "a new") +
                     " port (start -> DHT connected, then ping); pinger is the QUIC " + role;
        figures.print(title.c_str());
        report("restart: Node::start to DHT connected (not in setup_ms)", joins);
        report("restart: Node::start to the first pong", usable);
    };
    restarts("(1a)", true, 0);
    restarts("(1b)", true, 1);
    restarts("(1c)", false, 0);
    restarts("(1d)", false, 1);

    SetupFigures fresh;
    for (int run = 0; run < runs; ++run) {
        auto aId = test::makeIdentity("a" + std::to_string(run));
        auto bId = test::makeIdentity("b" + std::to_string(run));
        auto a = net.start(aId);
        auto b = net.start(bId);
        if (!test::makeContacts(*a.node, aId.contactId(), *b.node, bId.contactId())) {
            std::printf("    new pair %d: contact set-up failed\n", run);
            ++fresh.failed;
            continue;
        }
        if (settle.count() > 0)
            std::this_thread::sleep_for(settle);
        auto s = firstPing(*a.node, bId.contactId());
        printSample("new pair", run, s);
        fresh.add(s);
    }
    fresh.print("(2) first-ever connection of a new contact pair (pinged right after accepted)");

    // The new pairs are stopped now: 2 x RUNS dead nodes that the long-lived pair's saved
    // node lists and the helpers' routing tables still hold.
    restarts("(3)", true, 0);

    if (pings <= 0)
        return;
    // b. RTT over the established link.
    std::printf("== RTT over an established link (Node::ping, %d pings, interval 0)\n", pings);
    auto r = x.node->ping(yId.contactId(), pings, 0ms, 20s);
    std::vector<double> rtt;
    int lost = 0;
    for (const auto& v : r.rttMs)
        v ? rtt.push_back(*v) : static_cast<void>(++lost);
    if (rtt.empty()) {
        std::printf("  no answer: %s\n", node::api::toJson(r).dump().c_str());
        return;
    }
    std::printf("  reused %s, role %s: p50 %.3f ms  p99 %.3f ms  min %.3f ms  max %.3f ms  "
                "(%zu answered, %d lost)\n",
                r.reused ? "yes" : "no", r.role.c_str(), pct(rtt, 0.5), pct(rtt, 0.99), pct(rtt, 0),
                pct(rtt, 1), rtt.size(), lost);
}

// --- c. throughput ----------------------------------------------------------------------------

pid_t threadId() {
    return static_cast<pid_t>(::syscall(SYS_gettid));
}

std::vector<pid_t> threadIds() {
    std::vector<pid_t> out;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (auto* e = ::readdir(d))
            if (e->d_name[0] != '.')
                out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
        ::closedir(d);
    }
    return out;
}

// CPU seconds (user + system) of one thread of this process.
double threadCpu(pid_t tid) {
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), {});
    auto close = s.rfind(')');
    if (close == std::string::npos)
        return 0;
    std::istringstream rest(s.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; rest >> field; ++i) {
        if (i == 14)
            utime = std::stod(field);
        if (i == 15) {
            stime = std::stod(field);
            break;
        }
    }
    return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void nameThread(pid_t tid, const std::string& name) {
    std::ofstream("/proc/self/task/" + std::to_string(tid) + "/comm") << name.substr(0, 15);
}

double processCpu() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto sec = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return sec(u.ru_utime) + sec(u.ru_stime);
}

struct Side {
    std::string name;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::unique_ptr<dht::UdpEndpoint> endpoint;
    std::unique_ptr<node::quic::Transport> transport;
    std::shared_ptr<node::quic::DatagramInbox> inbox; // as the node feeds its transport
    std::thread thread;
    std::atomic<pid_t> ioTid{0};
    pid_t receiveTid = 0;

    Side(std::string n, const dht::Identity& id) : name(std::move(n)) {
        endpoint = std::make_unique<dht::UdpEndpoint>("127.0.0.1", 0);
        node::quic::TransportConfig config;
        config.certificatePem = id.certificatePem();
        config.privateKeyPem = id.privateKeyPem("");
        config.resetSecret.fill(name == "client" ? 1 : 2);
        config.local4 = endpoint->bound4();
        // For comparisons (see the header).
        if (const char* cc = std::getenv("BENCH_CC"); cc && std::string(cc) == "bbr")
            config.congestionControl = node::quic::CongestionControl::bbr;
        else if (cc && std::string(cc) == "bbr2")
            config.congestionControl = node::quic::CongestionControl::bbr2;
        if (const char* p = std::getenv("BENCH_PACING"); p && std::string(p) == "0")
            config.pacing = false;
        if (const char* g = std::getenv("BENCH_GSO"); g && std::string(g) == "0")
            endpoint->setSegmentationOffload(false);
        auto* ep = endpoint.get();
        transport = std::make_unique<node::quic::Transport>(
            io, config,
            [ep](const dht::SocketAddress& to, std::span<const std::uint8_t> bytes,
                 std::size_t segmentSize) { ep->sendOther(to, bytes, segmentSize); });
        inbox = std::make_shared<node::quic::DatagramInbox>(
            io,
            [t = transport.get()](std::span<const std::uint8_t> bytes,
                                  const dht::SocketAddress& from) { t->receive(bytes, from); },
            [t = transport.get()] { t->endOfBurst(); });
        endpoint->setOtherHandler([inbox = inbox](std::span<const std::uint8_t> run,
                                                  std::size_t segmentSize,
                                                  const dht::SocketAddress& from) {
            inbox->push(run, segmentSize, from);
        });
        auto before = threadIds();
        // As the node does: the io thread reads the socket (BENCH_RECEIVE_THREAD=1: the
        // endpoint's own receive thread does).
        if (const char* r = std::getenv("BENCH_RECEIVE_THREAD"); r && std::string(r) == "1")
            endpoint->start();
        else
            endpoint->start(io);
        for (auto tid : threadIds())
            if (std::find(before.begin(), before.end(), tid) == before.end())
                receiveTid = tid;
        thread = std::thread([this] {
            ioTid = threadId();
            io.run();
        });
        while (ioTid == 0)
            std::this_thread::yield();
        // Thread names, for `perf report --sort comm` and top -H.
        nameThread(ioTid, name + "-io");
        if (receiveTid)
            nameThread(receiveTid, name + "-recv");
    }
    template <class F> void run(F&& f) {
        std::promise<void> done;
        asio::post(io, [&] {
            f();
            done.set_value();
        });
        done.get_future().get();
    }
    ~Side() {
        run([&] { transport->shutdown(); });
        std::this_thread::sleep_for(50ms); // let the CONNECTION_CLOSE go out
        run([&] { endpoint->stop(); });    // on the io thread, which may read the socket
        work.reset();
        io.stop();
        thread.join();
        transport.reset();
    }
};

struct Bulk {
    std::uint64_t total = 0;
    std::size_t chunkSize = 64 * 1024, highWater = 16 << 20;
    std::vector<std::uint8_t> chunk;
    // Client (client io thread).
    node::quic::ConnectionPtr clientConn;
    std::int64_t stream = -1;
    std::uint64_t written = 0;
    Clock::time_point firstWrite;
    std::size_t maxBuffered = 0;
    // Server (server io thread).
    node::quic::ConnectionPtr serverConn;
    std::uint64_t received = 0;
    std::uint64_t callbacks = 0;
    Clock::time_point lastByte;
    std::promise<void> finished;
    std::promise<std::string> dialed;

    void pump() {
        while (written < total && clientConn->buffered(stream) < highWater) {
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunkSize, total - written));
            if (written == 0)
                firstWrite = Clock::now();
            auto buffered = clientConn->write(stream, std::span(chunk.data(), n));
            written += n;
            maxBuffered = std::max(maxBuffered, buffered); // above highWater: onWritable resumes
        }
    }
};

struct CpuSnapshot {
    double process = 0;
    std::map<pid_t, double> threads;
    static CpuSnapshot take() {
        CpuSnapshot s;
        s.process = processCpu();
        for (auto tid : threadIds())
            s.threads[tid] = threadCpu(tid);
        return s;
    }
};

double cpuDelta(const CpuSnapshot& before, const CpuSnapshot& after, pid_t tid) {
    auto b = before.threads.find(tid);
    auto e = after.threads.find(tid);
    return (e == after.threads.end() ? 0 : e->second) - (b == before.threads.end() ? 0 : b->second);
}

// One QUIC transfer of `mib` MiB with its details printed; returns MiB/s (0: failed).
double quicThroughputOnce(std::uint64_t mib, const dht::Identity& clientId,
                          const dht::Identity& serverId) {
    auto bulk = std::make_shared<Bulk>();
    bulk->total = mib << 20;
    bulk->chunk.assign(bulk->chunkSize, 0x5a);
    double quicMiBs = 0;
    {
        Side server("server", serverId);
        Side client("client", clientId);
        server.run([&] {
            server.transport->setAuthorizer(
                [&](const dht::ContactId& peer) { return peer == clientId.contactId(); });
            server.transport->setAcceptHandler([b = bulk](node::quic::ConnectionPtr c) {
                b->serverConn = c;
                c->onStreamData = [b](std::int64_t, std::span<const std::uint8_t> data, bool) {
                    b->received += data.size();
                    ++b->callbacks;
                    if (b->received == b->total) {
                        b->lastByte = Clock::now();
                        b->finished.set_value();
                    }
                };
                c->start();
            });
        });
        auto finished = bulk->finished.get_future();
        auto dialed = bulk->dialed.get_future();
        auto tDial = Clock::now();
        client.run([&] {
            client.transport->dial(
                serverId.contactId(), server.endpoint->bound4(),
                [b = bulk](node::quic::ConnectionPtr c, const std::string& error) {
                    if (!c) {
                        b->dialed.set_value(error);
                        return;
                    }
                    b->clientConn = c;
                    c->onWritable = [b](std::int64_t) { b->pump(); };
                    c->start();
                    b->stream = c->openBidiStream();
                    b->dialed.set_value("");
                });
        });
        if (auto err = dialed.get(); !err.empty()) {
            std::printf("  QUIC dial failed: %s\n", err.c_str());
            return 0;
        }
        auto handshake = ms(Clock::now() - tDial);
        auto ep0c = client.endpoint->stats(), ep0s = server.endpoint->stats();
        auto cpu0 = CpuSnapshot::take();
        auto t0 = Clock::now();
        client.run([&] { bulk->pump(); });
        if (finished.wait_for(120s) != std::future_status::ready) {
            std::printf("  QUIC: not finished within 120 s (%llu of %llu bytes received)\n",
                        static_cast<unsigned long long>(bulk->received),
                        static_cast<unsigned long long>(bulk->total));
            return 0;
        }
        auto cpu1 = CpuSnapshot::take();
        auto ep1c = client.endpoint->stats(), ep1s = server.endpoint->stats();
        auto seconds = std::chrono::duration<double>(bulk->lastByte - bulk->firstWrite).count();
        quicMiBs = static_cast<double>(mib) / seconds;
        auto wall = std::chrono::duration<double>(Clock::now() - t0).count();
        {
            node::quic::ConnectionStats cs;
            client.run([&] { cs = bulk->clientConn->stats(); });
            std::printf("  QUIC handshake (dial to confirmed, real sockets): %.2f ms\n", handshake);
            std::printf("  QUIC: %.1f MiB/s (%.3f s first write to last byte); process CPU %.2f s "
                        "= %.0f %% of one core over %.2f s\n",
                        quicMiBs, seconds, cpu1.process - cpu0.process,
                        100 * (cpu1.process - cpu0.process) / wall, wall);
            auto cOut = ep1c.otherOut - ep0c.otherOut, cIn = ep1c.otherIn - ep0c.otherIn;
            auto sOut = ep1s.otherOut - ep0s.otherOut, sIn = ep1s.otherIn - ep0s.otherIn;
            std::printf("  packets: client sent %llu (%.0f/s, %.0f payload bytes each), server "
                        "received %llu, server sent %llu (ACKs), client received %llu; "
                        "send errors %llu/%llu\n",
                        static_cast<unsigned long long>(cOut), static_cast<double>(cOut) / seconds,
                        static_cast<double>(bulk->total) / static_cast<double>(cOut),
                        static_cast<unsigned long long>(sIn), static_cast<unsigned long long>(sOut),
                        static_cast<unsigned long long>(cIn),
                        static_cast<unsigned long long>(ep1c.sendErrors - ep0c.sendErrors),
                        static_cast<unsigned long long>(ep1s.sendErrors - ep0s.sendErrors));
            std::printf("  cost per data packet: %.1f us of process CPU (%.1f us in the server io "
                        "thread, %.1f us in the client io thread)\n",
                        1e6 * (cpu1.process - cpu0.process) / static_cast<double>(cOut),
                        1e6 * cpuDelta(cpu0, cpu1, server.ioTid) / static_cast<double>(cOut),
                        1e6 * cpuDelta(cpu0, cpu1, client.ioTid) / static_cast<double>(cOut));
            std::printf("  system calls: client %llu sends (%.1f datagrams each, %s), server %llu "
                        "receives (%.1f datagrams each)\n",
                        static_cast<unsigned long long>(ep1c.otherSendCalls - ep0c.otherSendCalls),
                        static_cast<double>(cOut) /
                            static_cast<double>(std::max<std::uint64_t>(
                                1, ep1c.otherSendCalls - ep0c.otherSendCalls)),
                        client.endpoint->segmentationOffload() ? "GSO on" : "GSO off",
                        static_cast<unsigned long long>(ep1s.receiveCalls - ep0s.receiveCalls),
                        static_cast<double>(sIn) / static_cast<double>(std::max<std::uint64_t>(
                                                       1, ep1s.receiveCalls - ep0s.receiveCalls)));
            auto si = server.inbox->counters(), ci = client.inbox->counters();
            std::printf("  inbox: server %llu datagrams in %llu batches (%.1f per batch), %llu "
                        "dropped; client %llu in %llu batches, %llu dropped\n",
                        static_cast<unsigned long long>(si.delivered),
                        static_cast<unsigned long long>(si.batches),
                        static_cast<double>(si.delivered) /
                            static_cast<double>(std::max<std::uint64_t>(1, si.batches)),
                        static_cast<unsigned long long>(si.dropped),
                        static_cast<unsigned long long>(ci.delivered),
                        static_cast<unsigned long long>(ci.batches),
                        static_cast<unsigned long long>(ci.dropped));
            std::printf("  client connection: srtt %.3f ms, min rtt %.3f ms, cwnd %llu bytes; "
                        "most buffered %zu bytes; %llu stream-data callbacks at the server\n",
                        static_cast<double>(cs.smoothedRtt.count()) / 1000,
                        static_cast<double>(cs.minRtt.count()) / 1000,
                        static_cast<unsigned long long>(cs.congestionWindow), bulk->maxBuffered,
                        static_cast<unsigned long long>(bulk->callbacks));
            auto cpuOf = [&](pid_t tid) { return cpuDelta(cpu0, cpu1, tid); };
            double known = 0;
            auto line = [&](const char* what, pid_t tid) {
                auto c = cpuOf(tid);
                known += c;
                std::printf("    %-28s %.2f s (%.0f %% of the transfer time)\n", what, c,
                            100 * c / seconds);
            };
            std::printf("  CPU per thread:\n");
            line("client io thread (sender)", client.ioTid);
            if (client.receiveTid)
                line("client receive thread", client.receiveTid);
            line("server io thread (receiver)", server.ioTid);
            if (server.receiveTid)
                line("server receive thread", server.receiveTid);
            std::printf("    %-28s %.2f s\n", "everything else",
                        (cpu1.process - cpu0.process) - known);
        }
        bulk->clientConn.reset();
        bulk->serverConn.reset();
    }
    return quicMiBs;
}

double tlsThroughputOnce(std::uint64_t mib, const dht::Identity& serverId) {
    auto tls0 = processCpu();
    auto t0 = Clock::now();
    auto tls = bench::measureTlsTcpThroughput(serverId.certificatePem(), serverId.privateKeyPem(""),
                                              mib << 20);
    auto wall = std::chrono::duration<double>(Clock::now() - t0).count();
    auto tlsCpu = processCpu() - tls0;
    std::printf("  TLS 1.3/TCP baseline: %.1f MiB/s (%.3f s); process CPU %.2f s = %.0f %% of one "
                "core over %.2f s (handshake included)\n",
                tls.mibPerSecond, tls.seconds, tlsCpu, 100 * tlsCpu / wall, wall);
    return tls.mibPerSecond;
}

// QUIC and TLS/TCP take turns `repeats` times: both see the same machine, and the medians
// say more than one pair (either figure alone varies by a third from run to run here).
void benchThroughput(std::uint64_t mib, int repeats) {
    std::printf("== bulk throughput of one stream on 127.0.0.1, %llu MiB in 64 KiB writes, "
                "%d pairs of runs\n",
                static_cast<unsigned long long>(mib), repeats);
    auto clientId = test::makeIdentity("bulk-client");
    auto serverId = test::makeIdentity("bulk-server");
    std::vector<double> quic, tls, ratios;
    for (int i = 0; i < repeats; ++i) {
        std::printf(" -- pair %d of %d\n", i + 1, repeats);
        auto q = quicThroughputOnce(mib, clientId, serverId);
        auto t = tlsThroughputOnce(mib, serverId);
        if (q <= 0 || t <= 0)
            continue;
        quic.push_back(q);
        tls.push_back(t);
        ratios.push_back(100 * q / t);
        std::printf("  QUIC / TLS-TCP = %.0f %%\n", 100 * q / t);
    }
    auto list = [](const std::vector<double>& v, const char* format) {
        std::string out;
        for (auto x : v) {
            char buf[32];
            std::snprintf(buf, sizeof buf, format, x);
            out += (out.empty() ? "" : ", ") + std::string(buf);
        }
        return out;
    };
    std::printf("  summary: QUIC MiB/s %s (median %.0f); TLS/TCP MiB/s %s (median %.0f)\n",
                list(quic, "%.0f").c_str(), median(quic), list(tls, "%.0f").c_str(), median(tls));
    std::printf("  QUIC / TLS-TCP per pair %s %%; median of the pairs %.0f %%, ratio of the "
                "medians %.0f %% (target >= 60 %%)\n",
                list(ratios, "%.0f").c_str(), median(ratios),
                median(tls) > 0 ? 100 * median(quic) / median(tls) : 0.0);
}

} // namespace

int main(int argc, char** argv) {
    // The nodes' info lines (links up and down) would drown the figures: PARLEY_TEST_LOG=info
    // (or debug) shows them.
    if (!std::getenv("PARLEY_TEST_LOG"))
        spdlog::set_level(spdlog::level::warn);
    int runs = argc > 1 ? std::atoi(argv[1]) : 10;
    int pings = argc > 2 ? std::atoi(argv[2]) : 500;
    auto mib = static_cast<std::uint64_t>(argc > 3 ? std::atoll(argv[3]) : 256);
    auto settle = std::chrono::seconds(argc > 4 ? std::atoi(argv[4]) : 0);
    int repeats = argc > 5 ? std::max(1, std::atoi(argv[5])) : 5;
    if (runs > 0 || pings > 0) {
        test::TestNetwork net(4);
        benchSetup(net, runs, pings, settle);
    }
    if (mib > 0)
        benchThroughput(mib, repeats);
    return 0;
}
