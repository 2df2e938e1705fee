// Benchmark: files between two nodes on loopback through the transfer room (node/transfer/),
// from accept to completed at the receiver: one file of SIZE MiB, then a folder of FILES files
// of 4 KiB to 1 MiB. Prints MiB/s, files/s, the sender's scan (hashing) time, process CPU per
// GiB and peak RSS. contrib/bench-transfer.sh runs it next to scp, rsync and our raw QUIC
// stream in the same run.
//
// Usage: bench_transfer [SIZE_MIB=1024] [RUNS=3] [FILES=2000] [DIR=$TMPDIR]
//        bench_transfer --file PATH --folder PATH [RUNS=3]   (data made by the caller)
#include "bench_stats.h"
#include "node/transfer/transfers.h"
#include "support/test_support.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

using namespace parley;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double cpuSeconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

long peakRssMiB() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024;
}

void writeRandom(const fs::path& p, std::size_t size, unsigned seed) {
    fs::create_directories(p.parent_path());
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> block(1 << 17); // 1 MiB
    std::ofstream out(p, std::ios::binary);
    for (std::size_t done = 0; done < size;) {
        for (auto& w : block)
            w = rng();
        auto n = std::min(size - done, block.size() * 8);
        out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
        done += n;
    }
}

struct Run {
    double scanS = 0, transferS = 0, cpuS = 0;
    bool ok = false;
    std::string error;
};

Run transferOnce(node::Node& a, node::Node& b, const dht::ContactId& bId, const fs::path& src,
                 const fs::path& dest) {
    Run run;
    auto t0 = Clock::now();
    auto promise = std::make_shared<std::promise<node::OfferResult>>();
    auto future = promise->get_future();
    a.call([&] {
        a.transfers().offer(bId, {src}, "",
                            [promise](const node::OfferResult& r) { promise->set_value(r); });
        return 0;
    });
    auto offered = future.get();
    if (!offered.ok()) {
        run.error = offered.error;
        return run;
    }
    run.scanS = std::chrono::duration<double>(Clock::now() - t0).count();
    auto id = offered.transfer.id;
    if (!test::eventually([&] { return b.call([&] { return b.transfers().get(id).has_value(); }); },
                          30s, 1ms)) {
        run.error = "the offer did not arrive";
        return run;
    }
    auto cpu0 = cpuSeconds();
    auto t1 = Clock::now();
    auto accepted = b.call([&] { return b.transfers().accept(id, dest); });
    if (!accepted.ok()) {
        run.error = accepted.error;
        return run;
    }
    std::string state;
    test::eventually(
        [&] {
            state = b.call([&] { return b.transfers().get(id)->state; });
            return state == "completed" || state == "failed";
        },
        std::chrono::minutes(30), 20ms);
    run.transferS = std::chrono::duration<double>(Clock::now() - t1).count();
    run.cpuS = cpuSeconds() - cpu0;
    run.ok = state == "completed";
    if (!run.ok)
        run.error = "ended " + state;
    return run;
}

void report(const char* what, const std::vector<Run>& runs, double mib, std::size_t files) {
    std::vector<double> rate, filesPerS, scan, cpuPerGiB;
    for (const auto& r : runs) {
        if (!r.ok) {
            std::printf("  %s: a run failed: %s\n", what, r.error.c_str());
            continue;
        }
        rate.push_back(mib / r.transferS);
        filesPerS.push_back(static_cast<double>(files) / r.transferS);
        scan.push_back(r.scanS);
        cpuPerGiB.push_back(r.cpuS / (mib / 1024.0));
    }
    std::printf("  %s: median %.0f MiB/s (min %.0f, max %.0f), %.0f files/s; sender's scan "
                "%.2f s; process CPU %.2f s per GiB (both nodes); peak RSS %ld MiB (%zu runs)\n",
                what, bench::median(rate), bench::pct(rate, 0), bench::pct(rate, 1),
                bench::median(filesPerS), bench::median(scan), bench::median(cpuPerGiB),
                peakRssMiB(), rate.size());
}

// Resume: the receiver is stopped at 30 % of the file and started again on the same profile;
// the time from that start to the first chunk verified after it (bytes flowing again), with
// the sender online all along.
double resumeOnce(test::TestNetwork& net, const dht::Identity& bId, test::TestNode& b,
                  node::Node& a, const fs::path& src, const fs::path& dest, std::string& error) {
    auto promise = std::make_shared<std::promise<node::OfferResult>>();
    auto future = promise->get_future();
    a.call([&] {
        a.transfers().offer(bId.contactId(), {src}, "",
                            [promise](const node::OfferResult& r) { promise->set_value(r); });
        return 0;
    });
    auto offered = future.get();
    if (!offered.ok()) {
        error = offered.error;
        return -1;
    }
    auto id = offered.transfer.id;
    auto doneOf = [&](node::Node& n) {
        return n.call([&] {
            auto t = n.transfers().get(id);
            return t ? t->doneBytes : 0;
        });
    };
    if (!test::eventually(
            [&] { return b.node->call([&] { return b.node->transfers().get(id).has_value(); }); },
            30s, 1ms) ||
        !b.node->call([&] { return b.node->transfers().accept(id, dest); }).ok()) {
        error = "the offer did not arrive or was not accepted";
        return -1;
    }
    auto total = offered.transfer.totalBytes;
    if (!test::eventually([&] { return doneOf(*b.node) * 10 >= total * 3; }, 120s, 2ms)) {
        error = "never reached 30 %";
        return -1;
    }
    b.node->stop();
    auto dir = std::move(b.dir);
    b.node.reset();
    auto t0 = Clock::now();
    b = net.start(bId, std::move(dir));
    auto at = doneOf(*b.node);
    if (!test::eventually([&] { return doneOf(*b.node) > at; }, 60s, 1ms)) {
        error = "no byte after the restart";
        return -1;
    }
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    test::eventually(
        [&] {
            return b.node->call([&] { return b.node->transfers().get(id)->state; }) == "completed";
        },
        std::chrono::minutes(10), 20ms);
    return s;
}

} // namespace

std::uint64_t folderBytes(const fs::path& dir, std::size_t& files) {
    std::uint64_t bytes = 0;
    files = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) {
            bytes += e.file_size();
            ++files;
        }
    return bytes;
}

int main(int argc, char** argv) {
    fs::path givenFile, givenFolder;
    int runs = 3;
    std::size_t sizeMiB = 1024, files = 2000;
    fs::path base = fs::temp_directory_path();
    if (argc > 4 && std::string(argv[1]) == "--file" && std::string(argv[3]) == "--folder") {
        givenFile = argv[2];
        givenFolder = argv[4];
        runs = argc > 5 ? std::atoi(argv[5]) : 3;
        sizeMiB = fs::file_size(givenFile) >> 20;
    } else {
        sizeMiB = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
        runs = argc > 2 ? std::atoi(argv[2]) : 3;
        files = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 2000;
        base = argc > 4 ? fs::path(argv[4]) : base;
    }
    auto work = base / ("parley-bench-transfer-" + std::to_string(::getpid()));
    fs::create_directories(work);

    test::TestNetwork net;
    auto aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    auto a = net.start(aId);
    auto b = net.start(bId);
    if (!test::makeContacts(*a.node, aId, *b.node, bId)) {
        std::printf("alice and bob did not become contacts\n");
        return 1;
    }
    std::printf("transfers on loopback, alice -> bob, in %s\n", work.c_str());

    if (sizeMiB > 0) {
        auto src = givenFile;
        if (src.empty()) {
            src = work / "src" / "one.bin";
            writeRandom(src, sizeMiB << 20, 1);
        }
        std::vector<Run> results;
        for (int i = 0; i < runs; ++i) {
            auto dest = work / ("dest" + std::to_string(i));
            results.push_back(transferOnce(*a.node, *b.node, bId.contactId(), src, dest));
            fs::remove_all(dest);
        }
        char what[64];
        std::snprintf(what, sizeof what, "one file of %zu MiB", sizeMiB);
        report(what, results, static_cast<double>(sizeMiB), 1);
        std::vector<double> resumes;
        for (int i = 0; i < runs; ++i) {
            std::string error;
            auto dest = work / ("rdest" + std::to_string(i));
            auto sec = resumeOnce(net, bId, b, *a.node, src, dest, error);
            fs::remove_all(dest);
            if (sec < 0)
                std::printf("  resume: a run failed: %s\n", error.c_str());
            else
                resumes.push_back(sec * 1000);
        }
        std::printf("  resume: receiver restarted at 30 %%, first chunk verified after it: "
                    "median %.0f ms (min %.0f, max %.0f, %zu runs)\n",
                    bench::median(resumes), bench::pct(resumes, 0), bench::pct(resumes, 1),
                    resumes.size());
    }
    if (files > 0) {
        auto folder = givenFolder;
        if (folder.empty()) {
            folder = work / "folder";
            std::mt19937 rng(7);
            for (std::size_t i = 0; i < files; ++i) {
                auto size = std::size_t{4096} << (rng() % 9); // 4 KiB .. 1 MiB
                writeRandom(folder / ("d" + std::to_string(i % 50)) / ("f" + std::to_string(i)),
                            size, static_cast<unsigned>(i));
            }
        }
        auto bytes = folderBytes(folder, files);
        std::vector<Run> results;
        for (int i = 0; i < runs; ++i) {
            auto dest = work / ("fdest" + std::to_string(i));
            results.push_back(transferOnce(*a.node, *b.node, bId.contactId(), folder, dest));
            fs::remove_all(dest);
        }
        char what[96];
        std::snprintf(what, sizeof what, "a folder of %zu files (%.0f MiB)", files,
                      static_cast<double>(bytes) / (1 << 20));
        report(what, results, static_cast<double>(bytes) / (1 << 20), files);
    }
    auto counters = a.node->call([&] { return a.node->transfers().counters(); });
    std::printf("  sender: %llu chunks served\n",
                static_cast<unsigned long long>(counters["chunks_served"]));
    fs::remove_all(work);
    return 0;
}
