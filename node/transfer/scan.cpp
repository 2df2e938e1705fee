#include "node/transfer/scan.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <limits>
#include <optional>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace parley::node::transfer {

namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kProgressEvery = 64ull * 1024 * 1024;
// The largest file whose chunk hashes fit kMaxChunksPerFile (16 TiB).
constexpr std::uint64_t kMaxFileSize = std::uint64_t{kMaxChunksPerFile} * kMaxChunkSize;
// What encodeManifest writes besides the path and the hashes (see manifest.h).
constexpr std::size_t kHeaderSize = 4 + 1 + 4;
constexpr std::size_t kFolderOverhead = 1 + 2 + 4 + 8;
constexpr std::size_t kFileOverhead = kFolderOverhead + 8 + 4 + 4;

std::string errorText(int error) {
    // std::strerror is not thread-safe and scans run on a disk thread next to others.
    return std::error_code(error, std::generic_category()).message();
}

std::int64_t mtimeOf(const struct stat& st) {
    std::int64_t ns = 0;
    if (__builtin_mul_overflow(static_cast<std::int64_t>(st.st_mtim.tv_sec), 1'000'000'000, &ns) ||
        __builtin_add_overflow(ns, static_cast<std::int64_t>(st.st_mtim.tv_nsec), &ns))
        return st.st_mtim.tv_sec < 0 ? std::numeric_limits<std::int64_t>::min()
                                     : std::numeric_limits<std::int64_t>::max();
    return ns;
}

// Why an entry of this type is not offered; nullopt for files and folders.
std::optional<std::string> notOffered(fs::file_type type) {
    switch (type) {
    case fs::file_type::regular:
    case fs::file_type::directory:
        return std::nullopt;
    case fs::file_type::symlink:
        return "symbolic link";
    case fs::file_type::block:
    case fs::file_type::character:
        return "device";
    case fs::file_type::fifo:
        return "FIFO";
    case fs::file_type::socket:
        return "socket";
    default:
        return "not a file or a folder";
    }
}

fs::file_type typeOf(mode_t mode) {
    if (S_ISREG(mode))
        return fs::file_type::regular;
    if (S_ISDIR(mode))
        return fs::file_type::directory;
    if (S_ISLNK(mode))
        return fs::file_type::symlink;
    if (S_ISBLK(mode))
        return fs::file_type::block;
    if (S_ISCHR(mode))
        return fs::file_type::character;
    if (S_ISFIFO(mode))
        return fs::file_type::fifo;
    if (S_ISSOCK(mode))
        return fs::file_type::socket;
    return fs::file_type::unknown;
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// Reads up to `size` bytes, fewer only at the end of the file; -1 with errno on an error.
ssize_t readFully(int fd, std::uint8_t* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::read(fd, data + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    return static_cast<ssize_t>(done);
}

// Walks the offered paths into a result. Every method that returns bool returns false on a
// fatal error (result.error set): the walk stops there.
class Walker {
public:
    Walker(const ScanOptions& options, ScanResult& result) : options_(options), result_(result) {}

    // One more name to hold (an entry, a skipped one or a folder's child not yet visited):
    // refused past maxEntries, so a huge folder costs bounded memory.
    bool see(std::size_t names = 1) {
        seen_ += names;
        if (seen_ <= options_.maxEntries)
            return true;
        return fail("more than " + std::to_string(options_.maxEntries) +
                    " files and folders: offer fewer at once");
    }

    bool visit(const fs::path& source, const std::string& name, fs::file_type type) {
        if (cancelled())
            return false;
        if (auto bad = checkRelativePath(name))
            return skip(name, *bad);
        if (auto reason = notOffered(type))
            return skip(name, *reason);
        return type == fs::file_type::directory ? folder(source, name) : file(source, name);
    }

    bool skip(const std::string& name, std::string reason) {
        result_.skipped.push_back({name, std::move(reason)});
        return true;
    }

    bool fail(std::string error) {
        result_.error = std::move(error);
        return false;
    }

    void reportProgress() {
        if (options_.progress)
            options_.progress(hashedBytes_);
    }

private:
    bool cancelled() {
        if (options_.cancel && options_.cancel->load(std::memory_order_relaxed))
            return !fail("the scan was cancelled");
        return false;
    }

    bool addFolder(ManifestEntry entry) {
        if (!reserveEncoded(kFolderOverhead + entry.path.size()))
            return false;
        result_.manifest.entries.push_back(std::move(entry));
        return true;
    }

    bool reserveEncoded(std::size_t size) {
        if (kMaxManifestSize - encodedSize_ >= size) {
            encodedSize_ += size;
            return true;
        }
        return fail("the list of files would be over " + std::to_string(kMaxManifestSize >> 20) +
                    " MiB: offer fewer at once");
    }

    struct Child {
        std::string name;
        fs::file_type type;
    };

    // The folder's children sorted bytewise, or nullopt when it cannot be read (then skipped)
    // or on a fatal error (then result.error is set).
    std::optional<std::vector<Child>> list(const fs::path& source, const std::string& name) {
        std::vector<Child> children;
        std::error_code ec;
        fs::directory_iterator it(source, ec);
        for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
            if (!see())
                return std::nullopt;
            std::error_code typeError;
            auto type = it->symlink_status(typeError).type();
            children.push_back(
                {it->path().filename().string(), typeError ? fs::file_type::unknown : type});
        }
        if (ec) {
            skip(name, "cannot read: " + ec.message());
            return std::nullopt;
        }
        std::sort(children.begin(), children.end(),
                  [](const Child& a, const Child& b) { return a.name < b.name; });
        return children;
    }

    bool folder(const fs::path& source, const std::string& name) {
        struct stat st {};
        if (::lstat(source.c_str(), &st) != 0)
            return skip(name, "cannot read: " + errorText(errno));
        if (!S_ISDIR(st.st_mode))
            return skip(name, "changed while it was read");
        auto children = list(source, name);
        if (!children)
            return result_.error.empty();
        ManifestEntry entry;
        entry.path = name;
        entry.folder = true;
        entry.mode = st.st_mode & 07777;
        entry.mtimeNs = mtimeOf(st);
        if (!addFolder(std::move(entry)))
            return false;
        for (const auto& child : *children)
            if (!visit(source / child.name, name + "/" + child.name, child.type))
                return false;
        return true;
    }

    bool file(const fs::path& source, const std::string& name) {
        // O_NONBLOCK: if the file was replaced by a FIFO since it was listed, open does not
        // wait for a writer (fstat then says what it is). It changes nothing for a file.
        Fd fd(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (fd.get() < 0)
            return skip(name,
                        errno == ELOOP ? "symbolic link" : "cannot read: " + errorText(errno));
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0)
            return skip(name, "cannot read: " + errorText(errno));
        if (!S_ISREG(st.st_mode)) // replaced since it was listed
            return skip(name, notOffered(typeOf(st.st_mode)).value_or("changed while it was read"));
        auto size = static_cast<std::uint64_t>(st.st_size);
        if (size > kMaxFileSize)
            return skip(name, "larger than " + std::to_string(kMaxFileSize >> 40) + " TiB");
        ManifestEntry entry;
        entry.path = name;
        entry.mode = st.st_mode & 07777;
        entry.mtimeNs = mtimeOf(st);
        entry.size = size;
        entry.chunkSize = chooseChunkSize(size);
        auto chunks = static_cast<std::size_t>((size + entry.chunkSize - 1) / entry.chunkSize);
        // Reserved before hashing: a file whose hashes could not be sent is not read at all.
        std::size_t encoded = kFileOverhead + name.size() + chunks * sizeof(ChunkHash);
        if (!reserveEncoded(encoded))
            return false;
        entry.hashes.reserve(chunks);
        auto hashed = hash(fd.get(), st, entry, chunks);
        if (!hashed)
            return false;
        if (!hashed->empty()) {
            encodedSize_ -= encoded;
            return skip(name, *hashed);
        }
        result_.manifest.entries.push_back(std::move(entry));
        return true;
    }

    // Hashes the file's chunks into entry.hashes: an empty string when done, the reason to skip
    // it, or nullopt when cancelled.
    std::optional<std::string> hash(int fd, const struct stat& st, ManifestEntry& entry,
                                    std::size_t chunks) {
        if (buffer_.size() < entry.chunkSize)
            buffer_.resize(entry.chunkSize);
        for (std::size_t i = 0; i < chunks; ++i) {
            if (cancelled())
                return std::nullopt;
            std::uint32_t length = entry.chunkLength(i);
            ssize_t n = readFully(fd, buffer_.data(), length);
            if (n < 0)
                return "cannot read: " + errorText(errno);
            if (static_cast<std::size_t>(n) != length)
                return "changed while it was read";
            entry.hashes.push_back(sha256({buffer_.data(), length}));
            hashedBytes_ += length;
            if (options_.progress && hashedBytes_ - reportedBytes_ >= kProgressEvery) {
                reportedBytes_ = hashedBytes_;
                options_.progress(hashedBytes_);
            }
        }
        // Grown since fstat, or rewritten in place (same size, a new time).
        std::uint8_t extra = 0;
        struct stat after {};
        if (readFully(fd, &extra, 1) != 0 || ::fstat(fd, &after) != 0 ||
            after.st_size != st.st_size || mtimeOf(after) != mtimeOf(st))
            return "changed while it was read";
        return std::string();
    }

    const ScanOptions& options_;
    ScanResult& result_;
    std::vector<std::uint8_t> buffer_; // one chunk, reused for every file
    std::size_t seen_ = 0;
    std::size_t encodedSize_ = kHeaderSize;
    std::uint64_t hashedBytes_ = 0;
    std::uint64_t reportedBytes_ = 0;
};

struct Root {
    std::string name;
    fs::path source;
    fs::file_type type = fs::file_type::none;
    std::string unreadable; // why its type is unknown, if it is
};

// The absolute, normal path of an offered path and its name at the top; error set when it
// cannot be offered.
std::optional<Root> rootOf(const fs::path& path, std::string& error) {
    std::error_code ec;
    fs::path source = fs::absolute(path, ec).lexically_normal();
    if (ec) {
        error = "cannot find " + path.string() + ": " + ec.message();
        return std::nullopt;
    }
    if (!source.has_filename()) // "/a/b/" is the folder "/a/b"
        source = source.parent_path();
    if (source == source.root_path()) {
        error = "cannot offer the root folder";
        return std::nullopt;
    }
    Root root;
    root.name = source.filename().string();
    root.source = source;
    auto status = fs::symlink_status(source, ec);
    if (status.type() == fs::file_type::not_found) {
        error = path.string() + " does not exist";
        return std::nullopt;
    }
    root.type = status.type();
    if (ec)
        root.unreadable = "cannot read: " + ec.message();
    return root;
}

ScanResult failed(ScanResult result) {
    result.manifest = {};
    result.roots.clear();
    return result;
}

} // namespace

ScanResult scanPaths(const std::vector<fs::path>& paths, const ScanOptions& options) {
    ScanResult result;
    std::vector<Root> roots;
    for (const auto& path : paths) {
        auto root = rootOf(path, result.error);
        if (!root)
            return failed(std::move(result));
        roots.push_back(std::move(*root));
    }
    std::sort(roots.begin(), roots.end(),
              [](const Root& a, const Root& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < roots.size(); ++i) {
        if (roots[i].name == roots[i - 1].name) {
            result.error = "two of the paths are named \"" + roots[i].name +
                           "\": offer them one at a time, or in a folder";
            return failed(std::move(result));
        }
    }
    Walker walker(options, result);
    for (const auto& root : roots) {
        std::size_t before = result.manifest.entries.size();
        bool ok = walker.see() &&
                  (root.unreadable.empty() ? walker.visit(root.source, root.name, root.type)
                                           : walker.skip(root.name, root.unreadable));
        if (!ok)
            return failed(std::move(result));
        if (result.manifest.entries.size() > before)
            result.roots.emplace_back(root.name, root.source);
    }
    if (result.manifest.entries.empty()) {
        walker.fail(paths.empty() ? "nothing to offer"
                                  : "nothing left to offer: every path was skipped");
        return failed(std::move(result));
    }
    walker.reportProgress();
    return result;
}

ChunkHash sha256(std::span<const std::uint8_t> data) {
    ChunkHash out{};
    static const std::uint8_t kNothing = 0;
    // SHA-256 cannot fail but for a memory allocation in GnuTLS; a wrong hash would be
    // refused by every receiver, so stop here rather than offer it.
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data.empty() ? &kNothing : data.data(), data.size(),
                         out.data()) < 0)
        std::abort();
    return out;
}

fs::path sourceOf(const std::vector<std::pair<std::string, fs::path>>& roots,
                  std::string_view manifestPath) {
    // A path a peer names could say "..": only what a scan could have produced is resolved.
    if (checkRelativePath(manifestPath))
        return {};
    auto slash = manifestPath.find('/');
    std::string_view first = manifestPath.substr(0, slash);
    for (const auto& [name, source] : roots) {
        if (name != first)
            continue;
        if (slash == std::string_view::npos)
            return source;
        return source / fs::path(std::string(manifestPath.substr(slash + 1)));
    }
    return {};
}

} // namespace parley::node::transfer
