// The transfer room's disk thread and file operations (disk.h).
#include "node/transfer/disk.h"

#include "node/transfer/scan.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <mutex>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>

namespace parley::node::transfer {

namespace fs = std::filesystem;

struct DiskThread::Impl {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
    std::thread thread;

    void run() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mutex);
                wake.wait(lock, [&] { return stopping || !jobs.empty(); });
                if (jobs.empty())
                    return;
                job = std::move(jobs.front());
                jobs.pop_front();
            }
            try {
                job();
            } catch (const std::exception& e) {
                spdlog::error("a transfer's disk job failed: {}", e.what());
            }
        }
    }
};

DiskThread::DiskThread() : impl_(std::make_unique<Impl>()) {
    impl_->thread = std::thread([this] { impl_->run(); });
}

DiskThread::~DiskThread() {
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_one();
    impl_->thread.join();
}

void DiskThread::post(std::function<void()> job) {
    {
        std::lock_guard lock(impl_->mutex);
        impl_->jobs.push_back(std::move(job));
    }
    impl_->wake.notify_one();
}

namespace {

std::string errnoText(int error) {
    return std::strerror(error);
}

std::int64_t mtimeNs(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0)
            ::close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

// {atime: now, mtime: `ns` since the epoch}, for futimens and utimensat. The access time is
// given, not left out with UTIME_OMIT: FUSE file systems on libfuse2 that do not announce
// UTIME_OMIT drop the whole call and report success, and the time would be lost.
void modificationTime(std::int64_t ns, struct timespec (&times)[2]) {
    ::clock_gettime(CLOCK_REALTIME, &times[0]);
    auto sec = ns / 1'000'000'000;
    auto rest = ns % 1'000'000'000;
    if (rest < 0) { // before 1970: the nanoseconds are never negative
        rest += 1'000'000'000;
        sec -= 1;
    }
    times[1].tv_sec = static_cast<time_t>(sec);
    times[1].tv_nsec = static_cast<long>(rest);
}

std::uint64_t offsetOf(const ManifestEntry& entry, std::uint32_t chunk) {
    return std::uint64_t{chunk} * entry.chunkSize;
}

std::string appeared(const fs::path& part, const fs::path& target) {
    return "something named " + target.filename().string() +
           " appeared in the destination meanwhile; the file stays as " + part.string();
}

// Renames `part` to `target` without ever replacing what is there: something may have appeared
// since the offer was accepted. renameat2(RENAME_NOREPLACE) where the file system has it; FUSE
// file systems on libfuse2 (ntfs-3g, sshfs) answer EINVAL, so then a hard link (atomic, fails
// on an existing name) and, where there are no hard links either (vfat-like), a rename after
// a check, which only a file created in between can beat.
std::optional<std::string> putInPlace(const fs::path& part, const fs::path& target) {
    if (::renameat2(AT_FDCWD, part.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0)
        return std::nullopt;
    if (errno == EEXIST)
        return appeared(part, target);
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return "cannot rename " + part.string() + ": " + errnoText(errno);
    if (::link(part.c_str(), target.c_str()) == 0) {
        ::unlink(part.c_str());
        return std::nullopt;
    }
    if (errno == EEXIST)
        return appeared(part, target);
    struct stat st {};
    if (::lstat(target.c_str(), &st) == 0)
        return appeared(part, target);
    if (errno != ENOENT)
        return "cannot look at " + target.string() + ": " + errnoText(errno);
    if (::rename(part.c_str(), target.c_str()) != 0)
        return "cannot rename " + part.string() + ": " + errnoText(errno);
    return std::nullopt;
}

} // namespace

ReadResult readChunk(const fs::path& source, const ManifestEntry& entry, std::uint32_t chunk) {
    ReadResult r;
    Fd file(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (file.fd < 0) {
        r.status = errno == ENOENT || errno == ELOOP ? ReadResult::Status::changed
                                                     : ReadResult::Status::failed;
        r.reason = errno == ENOENT ? "the file was removed from the sender's disk"
                                   : "the sender cannot read it: " + errnoText(errno);
        return r;
    }
    struct stat st {};
    if (::fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<std::uint64_t>(st.st_size) != entry.size || mtimeNs(st) != entry.mtimeNs) {
        r.status = ReadResult::Status::changed;
        r.reason = "the file changed on the sender's disk after it was offered";
        return r;
    }
    auto length = entry.chunkLength(chunk);
    r.bytes.resize(length);
    std::size_t got = 0;
    while (got < length) {
        auto n = ::pread(file.fd, r.bytes.data() + got, length - got,
                         static_cast<off_t>(offsetOf(entry, chunk) + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r.status = n == 0 ? ReadResult::Status::changed : ReadResult::Status::failed;
            r.reason = n == 0 ? "the file changed on the sender's disk after it was offered"
                              : "the sender cannot read it: " + errnoText(errno);
            r.bytes.clear();
            return r;
        }
        got += static_cast<std::size_t>(n);
    }
    return r;
}

WriteResult writeChunk(const fs::path& part, const ManifestEntry& entry, std::uint32_t chunk,
                       const std::vector<std::uint8_t>& bytes) {
    WriteResult r;
    if (chunk >= entry.chunks() || bytes.size() != entry.chunkLength(chunk) ||
        sha256(bytes) != entry.hashes[chunk]) {
        r.status = WriteResult::Status::badHash;
        return r;
    }
    int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        std::error_code ec;
        fs::create_directories(part.parent_path(), ec);
        fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    Fd file(fd);
    if (file.fd < 0) {
        r.status = WriteResult::Status::failed;
        r.diskFull = errno == ENOSPC || errno == EDQUOT;
        r.reason = "cannot write " + part.string() + ": " + errnoText(errno);
        return r;
    }
    std::size_t put = 0;
    while (put < bytes.size()) {
        auto n = ::pwrite(file.fd, bytes.data() + put, bytes.size() - put,
                          static_cast<off_t>(offsetOf(entry, chunk) + put));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r.status = WriteResult::Status::failed;
            r.diskFull = errno == ENOSPC || errno == EDQUOT;
            r.reason = r.diskFull ? "the disk is full: free some space, then resume"
                                  : "cannot write " + part.string() + ": " + errnoText(errno);
            return r;
        }
        put += static_cast<std::size_t>(n);
    }
    // Start writing it back now, without waiting: the fsync before the rename then finds
    // little left to do, and does not hold the disk thread for the whole file.
    ::sync_file_range(file.fd, static_cast<off_t>(offsetOf(entry, chunk)),
                      static_cast<off_t>(bytes.size()), SYNC_FILE_RANGE_WRITE);
    return r;
}

fs::path partialPath(const fs::path& target, std::string_view tag) {
    auto name = "." + target.filename().string() + "." + std::string(tag) + ".parley-part";
    return target.parent_path() / name;
}

std::optional<std::string> finalizeFile(const fs::path& part, const fs::path& target,
                                        const ManifestEntry& entry) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    Fd file(::open(part.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (file.fd < 0)
        return "cannot open " + part.string() + ": " + errnoText(errno);
    // The partial file may be longer if an earlier try wrote past the end of a lying manifest.
    if (::ftruncate(file.fd, static_cast<off_t>(entry.size)) != 0)
        return "cannot set the size of " + part.string() + ": " + errnoText(errno);
    if (::fchmod(file.fd, static_cast<mode_t>(entry.mode & 0777)) != 0)
        return "cannot set the mode of " + part.string() + ": " + errnoText(errno);
    struct timespec times[2];
    modificationTime(entry.mtimeNs, times);
    if (::futimens(file.fd, times) != 0)
        return "cannot set the modification time of " + part.string() + ": " + errnoText(errno);
    // The bytes reach the disk before the name does: after a power cut the file is either
    // whole under its name or still a partial file with its bitmap, never a name with holes.
    if (::fsync(file.fd) != 0)
        return "cannot write " + part.string() + " to the disk: " + errnoText(errno);
    return putInPlace(part, target);
}

std::vector<std::pair<std::uint32_t, std::string>>
finishFolders(const fs::path& dest, const std::vector<std::string>& targets,
              const Manifest& manifest) {
    std::vector<std::pair<std::uint32_t, std::string>> failed;
    std::vector<std::uint32_t> folders;
    for (std::uint32_t i = 0; i < manifest.entries.size() && i < targets.size(); ++i)
        if (manifest.entries[i].folder && !targets[i].empty())
            folders.push_back(i);
    for (auto i : folders) {
        std::error_code ec;
        fs::create_directories(dest / targets[i], ec);
        if (ec)
            failed.emplace_back(i, "cannot create the folder: " + ec.message());
    }
    // Deepest first: setting a folder's time after its children are done keeps it.
    std::sort(folders.begin(), folders.end(), [&](std::uint32_t a, std::uint32_t b) {
        return std::count(targets[a].begin(), targets[a].end(), '/') >
               std::count(targets[b].begin(), targets[b].end(), '/');
    });
    for (auto i : folders) {
        const auto& e = manifest.entries[i];
        auto path = dest / targets[i];
        if (::chmod(path.c_str(), static_cast<mode_t>(e.mode & 0777)) != 0)
            continue;
        struct timespec times[2];
        modificationTime(e.mtimeNs, times);
        ::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
    return failed;
}

std::optional<std::uint64_t> freeSpace(const fs::path& dir) {
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0)
        return std::nullopt;
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

bool caseInsensitive(const fs::path& dir) {
    // A name nobody else uses: the pid and a counter, in mixed case.
    static std::atomic<unsigned> counter{0};
    auto tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    auto mixed = dir / (".parley-Case-Probe-" + tag);
    auto upper = dir / (".PARLEY-CASE-PROBE-" + tag);
    Fd probe(::open(mixed.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (probe.fd < 0)
        return false;
    struct stat made {
    }, looked{};
    bool same = ::fstat(probe.fd, &made) == 0 && ::lstat(upper.c_str(), &looked) == 0 &&
                made.st_dev == looked.st_dev && made.st_ino == looked.st_ino;
    ::unlink(mixed.c_str());
    return same;
}

} // namespace parley::node::transfer
