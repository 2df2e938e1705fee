#include "node/transfer/manifest.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utf8proc.h>

namespace parley::node::transfer {

namespace {

constexpr std::uint8_t kMagic[4] = {'P', 'L', 'Y', 'M'};
constexpr std::size_t kHeaderSize = sizeof(kMagic) + 1 + 4;
// The smallest an entry can be on the wire: a folder with a one-byte path. What a count may
// reserve is bounded by this, so a lying count cannot make the decoder allocate.
constexpr std::size_t kMinEntrySize = 1 + 2 + 1 + 4 + 8;
constexpr std::size_t kFileFieldsSize = 8 + 4 + 4;
constexpr std::size_t kHashSize = sizeof(ChunkHash);
constexpr std::uint32_t kModeMask = 07777;
constexpr std::uint64_t kMaxChunksPerSize = 2048;

void putU16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void putU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void putU64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8)
        out.push_back(static_cast<std::uint8_t>(v >> shift));
}

// Reads big-endian fields; every read says whether the bytes were there, so a short input is
// `truncated` wherever it ends.
class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

    std::size_t remaining() const { return bytes_.size() - at_; }

    bool u8(std::uint8_t& v) { return read(v, 1); }
    bool u16(std::uint16_t& v) { return read(v, 2); }
    bool u32(std::uint32_t& v) { return read(v, 4); }
    bool u64(std::uint64_t& v) { return read(v, 8); }

    bool take(std::size_t n, std::span<const std::uint8_t>& out) {
        if (remaining() < n)
            return false;
        out = bytes_.subspan(at_, n);
        at_ += n;
        return true;
    }

private:
    template <typename T> bool read(T& v, std::size_t n) {
        if (remaining() < n)
            return false;
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < n; ++i)
            value = (value << 8) | bytes_[at_ + i];
        at_ += n;
        v = static_cast<T>(value);
        return true;
    }

    std::span<const std::uint8_t> bytes_;
    std::size_t at_ = 0;
};

bool validChunkSize(std::uint32_t size) {
    return size >= kMinChunkSize && size <= kMaxChunkSize && (size & (size - 1)) == 0;
}

std::uint64_t chunksFor(std::uint64_t size, std::uint32_t chunkSize) {
    return size / chunkSize + (size % chunkSize != 0 ? 1 : 0);
}

// The file fields of an entry (size, chunk size, hashes), after its common fields.
ManifestError decodeFileFields(Reader& in, ManifestEntry& entry) {
    std::uint32_t count = 0;
    if (!in.u64(entry.size) || !in.u32(entry.chunkSize) || !in.u32(count))
        return ManifestError::truncated;
    if (!validChunkSize(entry.chunkSize) || count > kMaxChunksPerFile ||
        count != chunksFor(entry.size, entry.chunkSize))
        return ManifestError::badEntry;
    std::span<const std::uint8_t> hashes;
    // Checked before the reserve: the hashes must really be there.
    if (!in.take(std::size_t{count} * kHashSize, hashes))
        return ManifestError::truncated;
    entry.hashes.resize(count);
    for (std::size_t i = 0; i < count; ++i)
        std::memcpy(entry.hashes[i].data(), hashes.data() + i * kHashSize, kHashSize);
    return ManifestError::ok;
}

ManifestError decodeEntry(Reader& in, ManifestEntry& entry) {
    std::uint8_t kind = 0;
    std::uint16_t pathSize = 0;
    if (!in.u8(kind))
        return ManifestError::truncated;
    if (kind > 1)
        return ManifestError::badEntry;
    if (!in.u16(pathSize))
        return ManifestError::truncated;
    if (pathSize == 0 || pathSize > kMaxPathSize)
        return ManifestError::badEntry;
    std::span<const std::uint8_t> path;
    std::uint32_t mode = 0;
    std::uint64_t mtime = 0;
    if (!in.take(pathSize, path) || !in.u32(mode) || !in.u64(mtime))
        return ManifestError::truncated;
    entry.path.assign(reinterpret_cast<const char*>(path.data()), path.size());
    entry.folder = kind == 1;
    entry.mode = mode;
    entry.mtimeNs = static_cast<std::int64_t>(mtime);
    return entry.folder ? ManifestError::ok : decodeFileFields(in, entry);
}

// One UTF-8 sequence at `s[at]`: its length, or 0 when it is not well formed (overlong,
// a surrogate, above U+10FFFF, cut short).
std::size_t utf8Sequence(std::string_view s, std::size_t at) {
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    unsigned char lead = byte(at);
    if (lead < 0x80)
        return 1;
    std::size_t length = 0;
    std::uint32_t cp = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
        cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        cp = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        cp = lead & 0x07;
    } else {
        return 0; // a continuation byte, 0xC0/0xC1 (always overlong) or above 0xF4
    }
    if (s.size() - at < length)
        return 0;
    for (std::size_t i = 1; i < length; ++i) {
        if ((byte(at + i) & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (byte(at + i) & 0x3F);
    }
    constexpr std::uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return length;
}

// The byte-level checks of a whole path: NUL, backslash, control characters, UTF-8.
std::optional<std::string> checkBytes(std::string_view path) {
    for (std::size_t at = 0; at < path.size();) {
        auto c = static_cast<unsigned char>(path[at]);
        if (c == 0)
            return "the name contains a NUL byte";
        if (c == '\\')
            return "the name contains a backslash";
        if (c < 0x20)
            return "the name contains a control character";
        std::size_t length = utf8Sequence(path, at);
        if (length == 0)
            return "the name is not valid UTF-8";
        at += length;
    }
    return std::nullopt;
}

} // namespace

std::uint32_t ManifestEntry::chunkLength(std::size_t index) const {
    // Compared by division first: index * chunkSize could wrap for a wild index.
    if (folder || chunkSize == 0 || index > size / chunkSize)
        return 0;
    std::uint64_t start = std::uint64_t{index} * chunkSize;
    if (start >= size)
        return 0;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(chunkSize, size - start));
}

std::uint64_t Manifest::totalBytes() const {
    std::uint64_t total = 0;
    for (const auto& e : entries)
        if (!e.folder)
            total += e.size;
    return total;
}

std::size_t Manifest::files() const {
    return static_cast<std::size_t>(
        std::count_if(entries.begin(), entries.end(), [](const auto& e) { return !e.folder; }));
}

std::string_view describe(ManifestError error) {
    switch (error) {
    case ManifestError::ok:
        return "The file list is valid.";
    case ManifestError::truncated:
        return "The file list ends too early.";
    case ManifestError::badMagic:
        return "The file list is not in parley's format.";
    case ManifestError::badVersion:
        return "The file list is in a version of the format this parley does not know.";
    case ManifestError::tooManyEntries:
        return "The file list has too many files and folders.";
    case ManifestError::badEntry:
        return "An entry of the file list is malformed.";
    case ManifestError::trailingBytes:
        return "The file list has bytes after its last entry.";
    case ManifestError::tooLarge:
        return "The file list is too large.";
    }
    return "The file list is invalid.";
}

std::uint32_t chooseChunkSize(std::uint64_t size) {
    for (std::uint32_t cs = kMinChunkSize; cs < kMaxChunkSize; cs *= 2)
        if (chunksFor(size, cs) <= kMaxChunksPerSize)
            return cs;
    return kMaxChunkSize;
}

void encodeManifest(const Manifest& manifest, std::vector<std::uint8_t>& out) {
    out.insert(out.end(), std::begin(kMagic), std::end(kMagic));
    out.push_back(kManifestVersion);
    putU32(out, static_cast<std::uint32_t>(manifest.entries.size()));
    for (const auto& e : manifest.entries) {
        out.push_back(e.folder ? 1 : 0);
        putU16(out, static_cast<std::uint16_t>(e.path.size()));
        out.insert(out.end(), e.path.begin(), e.path.end());
        // Masked so that what decodes (masked too) encodes back to the same bytes.
        putU32(out, e.mode & kModeMask);
        putU64(out, static_cast<std::uint64_t>(e.mtimeNs));
        if (e.folder)
            continue;
        putU64(out, e.size);
        putU32(out, e.chunkSize);
        putU32(out, static_cast<std::uint32_t>(e.hashes.size()));
        for (const auto& h : e.hashes)
            out.insert(out.end(), h.begin(), h.end());
    }
}

ManifestError checkManifestHeader(std::span<const std::uint8_t> bytes) {
    if (!bytes.empty() &&
        std::memcmp(bytes.data(), kMagic, std::min(bytes.size(), sizeof(kMagic))) != 0)
        return ManifestError::badMagic;
    if (bytes.size() < kHeaderSize)
        return ManifestError::truncated;
    if (bytes[sizeof(kMagic)] != kManifestVersion)
        return ManifestError::badVersion;
    Reader in(bytes.subspan(sizeof(kMagic) + 1, 4));
    std::uint32_t count = 0;
    in.u32(count);
    return count > kMaxManifestEntries ? ManifestError::tooManyEntries : ManifestError::ok;
}

ManifestError decodeManifest(std::span<const std::uint8_t> bytes, Manifest& out,
                             std::size_t* badIndex) {
    if (bytes.size() > kMaxManifestSize)
        return ManifestError::tooLarge;
    if (auto header = checkManifestHeader(bytes); header != ManifestError::ok)
        return header;
    Reader in(bytes.subspan(kHeaderSize));
    std::uint32_t count = 0;
    Reader(bytes.subspan(sizeof(kMagic) + 1, 4)).u32(count);
    Manifest manifest;
    manifest.entries.reserve(std::min<std::size_t>(count, in.remaining() / kMinEntrySize));
    for (std::size_t i = 0; i < count; ++i) {
        ManifestEntry entry;
        auto error = decodeEntry(in, entry);
        if (error != ManifestError::ok) {
            if (badIndex)
                *badIndex = i;
            return error;
        }
        entry.mode &= kModeMask; // the header: the other bits are ignored
        manifest.entries.push_back(std::move(entry));
    }
    if (in.remaining() != 0)
        return ManifestError::trailingBytes;
    out = std::move(manifest);
    return ManifestError::ok;
}

std::optional<std::string> checkRelativePath(std::string_view path) {
    if (path.empty())
        return "the name is empty";
    if (path.size() > kMaxPathSize)
        return "the name is longer than " + std::to_string(kMaxPathSize) + " bytes";
    if (path.front() == '/')
        return "the name is an absolute path";
    if (auto bad = checkBytes(path))
        return bad;
    std::size_t components = 0;
    for (std::size_t start = 0; start <= path.size();) {
        std::size_t end = std::min(path.find('/', start), path.size());
        std::string_view component = path.substr(start, end - start);
        if (component.empty())
            return "the name has an empty component (two '/' in a row, or one at the end)";
        if (component == "." || component == "..")
            return "the name contains \"" + std::string(component) + "\"";
        if (component.size() > kMaxNameSize)
            return "a component of the name is longer than " + std::to_string(kMaxNameSize) +
                   " bytes";
        if (++components > kMaxPathDepth)
            return "the name has more than " + std::to_string(kMaxPathDepth) + " components";
        start = end + 1;
    }
    return std::nullopt;
}

std::string foldCase(std::string_view path) {
    utf8proc_uint8_t* folded = nullptr;
    auto n = utf8proc_map(
        reinterpret_cast<const utf8proc_uint8_t*>(path.data()),
        static_cast<utf8proc_ssize_t>(path.size()), &folded,
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD));
    if (n < 0)
        return std::string(path);
    std::string out(reinterpret_cast<const char*>(folded), static_cast<std::size_t>(n));
    std::free(folded);
    return out;
}

} // namespace parley::node::transfer
