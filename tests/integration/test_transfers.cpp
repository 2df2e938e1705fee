// The transfer room between two real nodes on loopback (DESIGN.md §8, node/transfer/):
// a folder tree (nested and empty folders, an empty file, a multi-chunk file, many small
// files, names in several scripts) arrives identical (`diff -r`, modes, modification times);
// a receiver that restarts mid-transfer resumes from its verified chunks; pause, resume,
// decline and cancel reach the other side; an offer goes out once the contact comes online; a
// crafted offer from a peer is refused and counted.
#include "node/link/links.h"
#include "node/transfer/manifest.h"
#include "node/transfer/protocol.h"
#include "node/transfer/transfers.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace parley;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void writeFile(const fs::path& p, std::size_t size, unsigned seed) {
    fs::create_directories(p.parent_path());
    std::mt19937 rng(seed);
    std::vector<char> bytes(size);
    for (auto& b : bytes)
        b = static_cast<char>(rng());
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The tree every test sends a part of.
void makeTree(const fs::path& root, std::size_t bigSize, int smallFiles) {
    fs::create_directories(root / "empty folder");
    fs::create_directories(root / "a" / "b" / "c");
    writeFile(root / "a" / "b" / "c" / "deep.bin", 1000, 1);
    writeFile(root / "zero", 0, 2);
    writeFile(root / "big.bin", bigSize, 3);
    writeFile(root / "Grüße" / "日本語.txt", 4321, 4);
    writeFile(root / "Ελληνικά" / "файл.dat", 77, 5);
    for (int i = 0; i < smallFiles; ++i)
        writeFile(root / "many" / ("f" + std::to_string(i)), static_cast<std::size_t>(i * 13),
                  10 + i);
    fs::permissions(root / "a" / "b" / "c" / "deep.bin", fs::perms(0751));
    fs::permissions(root / "a" / "b", fs::perms(0710));
    // A time in the past, to see it kept.
    struct timespec times[2] = {{0, UTIME_OMIT}, {1'600'000'000, 123'456'789}};
    ::utimensat(AT_FDCWD, (root / "big.bin").c_str(), times, 0);
    ::utimensat(AT_FDCWD, (root / "empty folder").c_str(), times, 0);
}

struct Pair {
    test::TestNetwork net;
    dht::Identity aId = test::makeIdentity("alice"), bId = test::makeIdentity("bob");
    test::TestNode a = net.start(aId), b = net.start(bId);
    test::TempDir files; // sources and destinations

    node::Node& na() { return *a.node; }
    node::Node& nb() { return *b.node; }
    dht::ContactId idA() const { return aId.contactId(); }
    dht::ContactId idB() const { return bId.contactId(); }
    void contacts() { REQUIRE(test::makeContacts(na(), aId, nb(), bId)); }
};

node::OfferResult offer(node::Node& n, const dht::ContactId& to, std::vector<fs::path> paths) {
    auto promise = std::make_shared<std::promise<node::OfferResult>>();
    auto future = promise->get_future();
    n.call([&] {
        n.transfers().offer(to, paths, "here you go",
                            [promise](const node::OfferResult& r) { promise->set_value(r); });
        return 0;
    });
    REQUIRE(future.wait_for(60s) == std::future_status::ready);
    return future.get();
}

std::optional<node::TransferSummary> get(node::Node& n, const node::transfer::TransferId& id) {
    return n.call([&] { return n.transfers().get(id); });
}

std::string stateOf(node::Node& n, const node::transfer::TransferId& id) {
    auto s = get(n, id);
    return s ? s->state : "none";
}

// What a failed wait shows: the transfer and the room's counters.
std::string describe(node::Node& n, const node::transfer::TransferId& id) {
    std::string out;
    if (auto s = get(n, id))
        out = s->state + " (" + s->reason + ") " + std::to_string(s->doneBytes) + "/" +
              std::to_string(s->totalBytes);
    auto c = n.call([&] { return n.transfers().counters(); });
    for (const auto& [k, v] : c)
        out += " " + k + "=" + std::to_string(v);
    return out;
}

bool waitState(node::Node& n, const node::transfer::TransferId& id, const std::string& state,
               std::chrono::milliseconds timeout = 60s) {
    bool ok = test::eventually([&] { return stateOf(n, id) == state; }, timeout, 20ms);
    if (!ok)
        UNSCOPED_INFO("waiting for " << state << ": " << describe(n, id));
    return ok;
}

std::uint64_t counter(node::Node& n, const std::string& name) {
    auto c = n.call([&] { return n.transfers().counters(); });
    return c.count(name) ? c[name] : 0;
}

std::int64_t mtimeNs(const fs::path& p) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    return st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
}

unsigned modeOf(const fs::path& p) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    return st.st_mode & 07777;
}

} // namespace

TEST_CASE("a folder tree arrives identical, with modes and times", "[transfers]") {
    Pair p;
    p.contacts();
    auto src = p.files.path / "src" / "tree";
    makeTree(src, 3 * 1024 * 1024 + 17, 200);
    auto dest = p.files.path / "dest";

    auto r = offer(p.na(), p.idB(), {src});
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(r.transfer.state == "offered");
    CHECK(r.transfer.files == 205);
    auto id = r.transfer.id;
    // The offer arrives at the receiver while both are online.
    REQUIRE(test::eventually([&] { return get(p.nb(), id).has_value(); }, 20s));
    auto offered = *get(p.nb(), id);
    CHECK(offered.state == "offered");
    CHECK(offered.name == "tree");
    CHECK(offered.message == "here you go");
    CHECK(offered.totalBytes == r.transfer.totalBytes);

    auto accepted = p.nb().call([&] { return p.nb().transfers().accept(id, dest); });
    INFO(accepted.error);
    REQUIRE(accepted.ok());
    bool completed = waitState(p.nb(), id, "completed");
    UNSCOPED_INFO("sender: " << describe(p.na(), id));
    REQUIRE(completed);
    REQUIRE(waitState(p.na(), id, "completed", 10s));
    auto cmd = "diff -r '" + src.string() + "' '" + (dest / "tree").string() + "' >/dev/null";
    CHECK(std::system(cmd.c_str()) == 0);
    CHECK(fs::is_directory(dest / "tree" / "empty folder"));
    CHECK(fs::file_size(dest / "tree" / "zero") == 0);
    CHECK(modeOf(dest / "tree" / "a" / "b" / "c" / "deep.bin") == 0751);
    CHECK(modeOf(dest / "tree" / "a" / "b") == 0710);
    CHECK(mtimeNs(dest / "tree" / "big.bin") == mtimeNs(src / "big.bin"));
    CHECK(mtimeNs(dest / "tree" / "empty folder") == mtimeNs(src / "empty folder"));
    CHECK(mtimeNs(dest / "tree" / "many" / "f7") == mtimeNs(src / "many" / "f7"));
    // No partial file is left behind.
    for (const auto& e : fs::recursive_directory_iterator(dest))
        CHECK(e.path().filename().string().find(".parley-part") == std::string::npos);

    // A second offer of the same tree lands beside the first, never over it.
    auto again = offer(p.na(), p.idB(), {src / "a"});
    REQUIRE(again.ok());
    REQUIRE(test::eventually([&] { return get(p.nb(), again.transfer.id).has_value(); }, 20s));
    REQUIRE(p.nb()
                .call([&] { return p.nb().transfers().accept(again.transfer.id, dest / "tree"); })
                .ok());
    REQUIRE(waitState(p.nb(), again.transfer.id, "completed"));
    CHECK(fs::exists(dest / "tree" / "a (2)" / "b" / "c" / "deep.bin"));
}

TEST_CASE("a receiver that restarts resumes from its verified chunks", "[transfers]") {
    Pair p;
    p.contacts();
    auto src = p.files.path / "src";
    writeFile(src / "large.bin", 48 * 1024 * 1024, 9);
    auto dest = p.files.path / "dest";
    auto r = offer(p.na(), p.idB(), {src / "large.bin"});
    REQUIRE(r.ok());
    auto id = r.transfer.id;
    REQUIRE(test::eventually([&] { return get(p.nb(), id).has_value(); }, 20s));
    REQUIRE(p.nb().call([&] { return p.nb().transfers().accept(id, dest); }).ok());
    // Stop the receiver once part of it is there.
    REQUIRE(test::eventually(
        [&] {
            auto s = get(p.nb(), id);
            return s && s->doneBytes >= 8u * 1024 * 1024;
        },
        60s, 5ms));
    auto fetchedBefore = counter(p.nb(), "chunks_fetched");
    auto doneBefore = get(p.nb(), id)->doneBytes;
    p.b.node->stop();
    auto dir = std::move(p.b.dir);
    p.b.node.reset();
    p.b = p.net.start(p.bId, std::move(dir));
    auto resumed = get(p.nb(), id);
    REQUIRE(resumed);
    // Everything verified before the stop is still counted as done.
    CHECK(resumed->doneBytes >= doneBefore);
    REQUIRE(waitState(p.nb(), id, "completed", 90s));
    REQUIRE(waitState(p.na(), id, "completed", 10s));
    auto cmd =
        "cmp -s '" + (src / "large.bin").string() + "' '" + (dest / "large.bin").string() + "'";
    CHECK(std::system(cmd.c_str()) == 0);
    // Chunks fetched in the second run: at most those not verified in the first.
    auto chunkSize = node::transfer::chooseChunkSize(48 * 1024 * 1024);
    auto total = (48u * 1024 * 1024) / chunkSize;
    auto second = counter(p.nb(), "chunks_fetched");
    INFO("first run " << fetchedBefore << ", second run " << second << " of " << total);
    CHECK(second <= total - doneBefore / chunkSize);
}

TEST_CASE("pause, resume, decline and cancel reach the other side", "[transfers]") {
    Pair p;
    p.contacts();
    auto src = p.files.path / "src";
    writeFile(src / "one.bin", 24 * 1024 * 1024, 21);
    writeFile(src / "two.bin", 1000, 22);
    auto dest = p.files.path / "dest";

    auto declined = offer(p.na(), p.idB(), {src / "two.bin"});
    REQUIRE(declined.ok());
    REQUIRE(test::eventually([&] { return get(p.nb(), declined.transfer.id).has_value(); }, 20s));
    REQUIRE(p.nb().call([&] { return p.nb().transfers().decline(declined.transfer.id); }).ok());
    REQUIRE(waitState(p.na(), declined.transfer.id, "declined", 10s));

    auto r = offer(p.na(), p.idB(), {src / "one.bin"});
    REQUIRE(r.ok());
    auto id = r.transfer.id;
    REQUIRE(test::eventually([&] { return get(p.nb(), id).has_value(); }, 20s));
    REQUIRE(p.nb().call([&] { return p.nb().transfers().accept(id, dest); }).ok());
    REQUIRE(p.nb().call([&] { return p.nb().transfers().pause(id); }).ok());
    REQUIRE(waitState(p.na(), id, "paused", 10s));
    // The sender may not resume what the receiver paused.
    auto refused = p.na().call([&] { return p.na().transfers().resume(id); });
    CHECK_FALSE(refused.ok());
    auto held = get(p.nb(), id)->doneBytes;
    std::this_thread::sleep_for(500ms);
    CHECK(get(p.nb(), id)->doneBytes == held);
    REQUIRE(p.nb().call([&] { return p.nb().transfers().resume(id); }).ok());
    REQUIRE(waitState(p.nb(), id, "completed"));

    auto c = offer(p.na(), p.idB(), {src / "one.bin"});
    REQUIRE(c.ok());
    REQUIRE(test::eventually([&] { return get(p.nb(), c.transfer.id).has_value(); }, 20s));
    REQUIRE(p.nb().call([&] { return p.nb().transfers().accept(c.transfer.id, dest / "c"); }).ok());
    REQUIRE(p.na().call([&] { return p.na().transfers().cancel(c.transfer.id); }).ok());
    REQUIRE(waitState(p.nb(), c.transfer.id, "cancelled", 10s));
    // No partial file stays behind a cancelled transfer.
    REQUIRE(test::eventually(
        [&] {
            if (!fs::exists(dest / "c"))
                return true;
            for (const auto& e : fs::recursive_directory_iterator(dest / "c"))
                if (e.path().filename().string().find(".parley-part") != std::string::npos)
                    return false;
            return true;
        },
        5s));
}

TEST_CASE("an offer waits for the contact to come online", "[transfers]") {
    Pair p;
    p.contacts();
    auto src = p.files.path / "src";
    writeFile(src / "later.txt", 5000, 31);
    // The receiver goes away; the offer is made meanwhile.
    p.b.node->stop();
    auto dir = std::move(p.b.dir);
    p.b.node.reset();
    auto r = offer(p.na(), p.idB(), {src / "later.txt"});
    REQUIRE(r.ok());
    p.b = p.net.start(p.bId, std::move(dir));
    REQUIRE(test::eventually([&] { return get(p.nb(), r.transfer.id).has_value(); }, 30s));
    auto dest = p.files.path / "dest";
    REQUIRE(p.nb().call([&] { return p.nb().transfers().accept(r.transfer.id, dest); }).ok());
    REQUIRE(waitState(p.nb(), r.transfer.id, "completed"));
    CHECK(fs::file_size(dest / "later.txt") == 5000);
}

TEST_CASE("a crafted offer is refused and counted", "[transfers]") {
    Pair p;
    p.contacts();
    auto ping = p.na().ping(p.idB(), 1, 0ms, 30s);
    REQUIRE(ping.connected);
    auto send = [&](std::vector<std::uint8_t> body) {
        node::transfer::TransferId id{};
        id[0] = static_cast<std::uint8_t>(body.size());
        id[1] = body.empty() ? 0 : body.back();
        p.na().call([&] {
            auto opened = p.na().links().openStream(p.idB(), node::transfer::kOfferStream, id);
            if (opened.error == node::LinkManager::StreamError::ok)
                p.na().links().writeStream(opened.handle, body, true);
            return 0;
        });
    };
    // Not an offer at all; a manifest that claims 2^32-1 entries; one whose chunk count does
    // not match its size.
    send({0x07});
    std::vector<std::uint8_t> prefix;
    node::transfer::encodeOfferPrefix("x", prefix);
    auto huge = prefix;
    for (std::uint8_t c :
         std::initializer_list<std::uint8_t>{'P', 'L', 'Y', 'M', 1, 0xff, 0xff, 0xff, 0xff})
        huge.push_back(c);
    send(huge);
    node::transfer::Manifest m;
    node::transfer::ManifestEntry e;
    e.path = "liar.bin";
    e.size = 10 * 1024 * 1024;
    e.chunkSize = node::transfer::kMinChunkSize;
    e.hashes.resize(3); // 80 would be right
    m.entries.push_back(e);
    auto liar = prefix;
    node::transfer::encodeManifest(m, liar);
    send(liar);
    REQUIRE(test::eventually([&] { return counter(p.nb(), "offers_refused") >= 3; }, 10s));
    CHECK(p.nb().call([&] { return p.nb().transfers().list().size(); }) == 0);
    // The link is still fine.
    CHECK(p.na().ping(p.idB(), 1, 0ms, 5s).connected);
}

TEST_CASE("a full disk pauses the transfer with the reason, and it goes on once there is space",
          "[transfers]") {
    if (::geteuid() != 0) {
        WARN("skipped: mounting a small tmpfs needs root");
        return;
    }
    Pair p;
    p.contacts();
    auto src = p.files.path / "src";
    writeFile(src / "fill.bin", 40 * 1024 * 1024, 41);
    auto small = p.files.path / "small";
    fs::create_directories(small);
    auto mount = "mount -t tmpfs -o size=64m parley-test '" + small.string() + "'";
    REQUIRE(std::system(mount.c_str()) == 0);
    struct Unmount {
        fs::path dir;
        ~Unmount() { std::system(("umount -l '" + dir.string() + "'").c_str()); }
    } unmount{small};

    auto r = offer(p.na(), p.idB(), {src / "fill.bin"});
    REQUIRE(r.ok());
    auto id = r.transfer.id;
    REQUIRE(test::eventually([&] { return get(p.nb(), id).has_value(); }, 20s));
    // Too little space for the whole offer: refused before anything starts.
    writeFile(small / "ballast", 30 * 1024 * 1024, 42);
    auto refused = p.nb().call([&] { return p.nb().transfers().accept(id, small / "in"); });
    CHECK_FALSE(refused.ok());
    CHECK(refused.error.find("not enough free space") != std::string::npos);
    fs::remove(small / "ballast");
    // Room at accept; the disk fills up while paused, then the transfer goes on.
    REQUIRE(p.nb().call([&] { return p.nb().transfers().accept(id, small / "in"); }).ok());
    REQUIRE(p.nb().call([&] { return p.nb().transfers().pause(id); }).ok());
    auto doneAtPause = get(p.nb(), id)->doneBytes;
    // Half of what is left fits.
    writeFile(small / "ballast", 44 * 1024 * 1024 - doneAtPause / 2, 43);
    REQUIRE(p.nb().call([&] { return p.nb().transfers().resume(id); }).ok());
    REQUIRE(test::eventually(
        [&] {
            auto s = get(p.nb(), id);
            return s && s->state == "paused" && s->reason.find("disk is full") != std::string::npos;
        },
        30s));
    REQUIRE(waitState(p.na(), id, "paused", 10s));
    fs::remove(small / "ballast");
    REQUIRE(waitState(p.nb(), id, "completed", 60s));
    auto cmd = "cmp -s '" + (src / "fill.bin").string() + "' '" +
               (small / "in" / "fill.bin").string() + "'";
    CHECK(std::system(cmd.c_str()) == 0);
}
