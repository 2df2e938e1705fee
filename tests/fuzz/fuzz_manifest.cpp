// Fuzz target: a file offer's manifest as a peer sends it (decodeManifest). What decodes must
// re-encode to the same bytes (but for the mode bits outside 07777, which decoding drops),
// decode again to the same manifest, have consistent chunks, and every path must go through
// checkRelativePath; a shorter input never decodes.
#include "node/transfer/manifest.h"

#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace transfer = parley::node::transfer;

namespace {

using Bytes = std::vector<std::uint8_t>;

void require(bool ok) {
    if (!ok)
        std::abort();
}

// The input with its entries' mode fields masked to 07777, as encodeManifest writes them.
Bytes withMaskedModes(std::span<const std::uint8_t> input, const transfer::Manifest& m) {
    Bytes out(input.begin(), input.end());
    std::size_t at = 4 + 1 + 4;
    for (const auto& e : m.entries) {
        std::size_t mode = at + 1 + 2 + e.path.size();
        require(mode + 4 <= out.size());
        out[mode] = 0;
        out[mode + 1] = 0;
        out[mode + 2] &= 0x0F;
        at = mode + 4 + 8;
        if (!e.folder)
            at += 8 + 4 + 4 + e.hashes.size() * sizeof(transfer::ChunkHash);
    }
    require(at == out.size());
    return out;
}

void checkEntry(const transfer::ManifestEntry& e) {
    require(!e.path.empty() && e.path.size() <= transfer::kMaxPathSize);
    require((e.mode & ~07777u) == 0);
    if (auto reason = transfer::checkRelativePath(e.path))
        require(!reason->empty());
    if (e.folder) {
        require(e.size == 0 && e.hashes.empty());
        return;
    }
    require(e.chunks() <= transfer::kMaxChunksPerFile);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < e.chunks(); ++i) {
        auto length = e.chunkLength(i);
        require(length > 0 && length <= e.chunkSize);
        total += length;
    }
    require(total == e.size);
    require(e.chunkLength(e.chunks()) == 0);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> input(data, size);
    transfer::Manifest manifest;
    std::size_t badIndex = SIZE_MAX;
    auto error = transfer::decodeManifest(input, manifest, &badIndex);
    require(!transfer::describe(error).empty());
    if (error != transfer::ManifestError::ok) {
        require(manifest.entries.empty()); // untouched
        if (error == transfer::ManifestError::badEntry)
            require(badIndex < transfer::kMaxManifestEntries);
        return 0;
    }
    for (const auto& e : manifest.entries)
        checkEntry(e);
    Bytes encoded;
    transfer::encodeManifest(manifest, encoded);
    require(encoded == withMaskedModes(input, manifest));
    transfer::Manifest again;
    require(transfer::decodeManifest(encoded, again) == transfer::ManifestError::ok);
    require(again == manifest);
    transfer::Manifest shorter;
    require(transfer::decodeManifest(input.first(size - 1), shorter) !=
            transfer::ManifestError::ok);
    return 0;
}
