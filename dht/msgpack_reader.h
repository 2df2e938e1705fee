// Reading msgpack maps from untrusted bytes: the one field reader of the DHT records, the inbox
// envelopes and the control frames, so that all three refuse the same things the same way.
// Include it from .cpp files only: it pulls in msgpack, which every target links PRIVATE.
#pragma once

#include "records.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <msgpack.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace parley::dht {

// Unpacks the msgpack object at the front of `bytes`. msgpack-cxx allocates an array's or a
// map's objects when it reads the header, so `limit` is what bounds what a few hostile bytes
// can make it allocate. Never throws: bytes that are not msgpack, cut short, over a limit or
// more than memory allows give nullopt. `used`, if given, receives the bytes the object took;
// what follows is the caller's to refuse or ignore.
inline std::optional<msgpack::object_handle> unpackMsgpack(std::span<const std::uint8_t> bytes,
                                                           const msgpack::unpack_limit& limit,
                                                           std::size_t* used = nullptr) noexcept {
    try {
        std::size_t offset = 0;
        auto handle = msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size(),
                                      offset, nullptr, nullptr, limit);
        if (used)
            *used = offset;
        return handle;
    } catch (...) {
        return std::nullopt;
    }
}

enum class Need { required, optional };

// What a decoder's error enum calls the two ways a map or a field can be wrong.
template <class Error> struct FieldErrors {
    // Not a map, a key present twice, a required field absent, a value of the wrong type or
    // size, a number out of its type's range.
    Error malformed;
    // A value of the right type over its cap (text, bytes, a list), or text that is not UTF-8.
    Error invalid;
};

// Reads the fields of one msgpack map for a decoder whose error enum is `Error` (its `ok` must
// be 0). A string key present twice fails the whole map: two decoders could pick different
// copies. Keys nobody asks for are ignored, whatever their type.
//
// Each read says whether its field was there and good, and writes `out` only then. Failures
// stick, and a decoder reads all its fields before it looks at failed() once. When several
// fields are wrong, error() is that of the one met first in the map (then a missing field),
// whatever order the decoder reads them in: the error a loop over the map would have stopped
// at. A read throws nothing but std::bad_alloc when copying a value out, which the decoder's
// try/catch turns into its malformed.
template <class Error> class MsgpackFields {
public:
    MsgpackFields(const msgpack::object& root, FieldErrors<Error> errors) : errors_(errors) {
        if (root.type != msgpack::type::MAP) {
            fail(kMapRank, errors_.malformed);
            return;
        }
        map_ = root.via.map;
        if (hasRepeatedKey())
            fail(kMapRank, errors_.malformed);
    }

    bool failed() const { return failed_; }
    Error error() const { return failed_ ? error_ : Error{}; }

    // The value under `key`, or nullptr when it is absent (a failure if required).
    const msgpack::object* find(std::string_view key, Need need) {
        std::size_t at = indexOf(key);
        if (at < map_.size)
            return &map_.ptr[at].val;
        if (need == Need::required)
            fail(absentRank(), errors_.malformed);
        return nullptr;
    }

    // A non-negative integer within Int's range; a negative one is malformed even if Int is
    // signed.
    template <class Int> bool unsignedNumber(std::string_view key, Int& out, Need need) {
        return read(key, need, [&](const msgpack::object& o) { return readUnsigned(o, out); });
    }

    // Any integer within Int's range.
    template <class Int> bool signedNumber(std::string_view key, Int& out, Need need) {
        return read(key, need, [&](const msgpack::object& o) { return readSigned(o, out); });
    }

    // A str of well-formed UTF-8 of at most `maxBytes` bytes.
    bool text(std::string_view key, std::size_t maxBytes, std::string& out, Need need) {
        return read(key, need,
                    [&](const msgpack::object& o) { return readText(o, maxBytes, out); });
    }

    // At most `maxBytes` bytes from a str or a bin, not checked as UTF-8.
    bool bytes(std::string_view key, std::size_t maxBytes, std::string& out, Need need) {
        return read(key, need, [&](const msgpack::object& o) {
            if (o.type == msgpack::type::STR)
                return copyBytes(o.via.str.ptr, o.via.str.size, maxBytes, out);
            if (o.type == msgpack::type::BIN)
                return copyBytes(o.via.bin.ptr, o.via.bin.size, maxBytes, out);
            return Fault::malformed;
        });
    }

    // A bin of at most `maxBytes` bytes.
    bool bin(std::string_view key, std::size_t maxBytes, std::vector<std::uint8_t>& out,
             Need need) {
        return read(key, need, [&](const msgpack::object& o) {
            return o.type == msgpack::type::BIN
                       ? copyBytes(o.via.bin.ptr, o.via.bin.size, maxBytes, out)
                       : Fault::malformed;
        });
    }

    // A bin of exactly out.size() bytes.
    bool fixedBin(std::string_view key, std::span<std::uint8_t> out, Need need) {
        return read(key, need, [&](const msgpack::object& o) { return readFixedBin(o, out); });
    }

    // An array of at most `maxItems` items, each read as by unsignedNumber (text, fixedBin).
    template <class Int>
    bool unsignedList(std::string_view key, std::size_t maxItems, std::vector<Int>& out,
                      Need need) {
        return list(key, maxItems, out, need,
                    [](const msgpack::object& o, Int& item) { return readUnsigned(o, item); });
    }

    bool textList(std::string_view key, std::size_t maxItems, std::size_t maxItemBytes,
                  std::vector<std::string>& out, Need need) {
        return list(key, maxItems, out, need, [maxItemBytes](const msgpack::object& o, auto& item) {
            return readText(o, maxItemBytes, item);
        });
    }

    template <std::size_t N>
    bool fixedBinList(std::string_view key, std::size_t maxItems,
                      std::vector<std::array<std::uint8_t, N>>& out, Need need) {
        return list(key, maxItems, out, need,
                    [](const msgpack::object& o, auto& item) { return readFixedBin(o, item); });
    }

    // A rule of the decoder's own about a field it read (a version, a range), failed as
    // `error` at that field's place in the map.
    void reject(std::string_view key, Error error) { fail(indexOf(key) + 1, error); }

private:
    enum class Fault { none, malformed, invalid };

    // Where a failure was met: before the entries (the map itself), at entry i (i + 1), or
    // after them all (a field absent).
    static constexpr std::size_t kMapRank = 0;
    std::size_t absentRank() const { return std::size_t{map_.size} + 1; }

    void fail(std::size_t rank, Error error) {
        if (failed_ && rank_ <= rank)
            return;
        failed_ = true;
        rank_ = rank;
        error_ = error;
    }

    static std::string_view keyOf(const msgpack::object_kv& kv) {
        return {kv.key.via.str.ptr, kv.key.via.str.size};
    }

    // The entry whose key is the string `key`, or map_.size.
    std::size_t indexOf(std::string_view key) const {
        for (std::uint32_t i = 0; i < map_.size; ++i)
            if (map_.ptr[i].key.type == msgpack::type::STR && keyOf(map_.ptr[i]) == key)
                return i;
        return map_.size;
    }

    // Quadratic, without allocating: the unpack limit bounds the number of keys.
    bool hasRepeatedKey() const {
        for (std::uint32_t i = 0; i < map_.size; ++i) {
            if (map_.ptr[i].key.type != msgpack::type::STR)
                continue;
            for (std::uint32_t j = i + 1; j < map_.size; ++j)
                if (map_.ptr[j].key.type == msgpack::type::STR &&
                    keyOf(map_.ptr[i]) == keyOf(map_.ptr[j]))
                    return true;
        }
        return false;
    }

    template <class ReadValue> bool read(std::string_view key, Need need, ReadValue&& readValue) {
        std::size_t at = indexOf(key);
        if (at == map_.size) {
            if (need == Need::required)
                fail(absentRank(), errors_.malformed);
            return false;
        }
        Fault fault = readValue(map_.ptr[at].val);
        if (fault != Fault::none)
            fail(at + 1, fault == Fault::invalid ? errors_.invalid : errors_.malformed);
        return fault == Fault::none;
    }

    template <class Item, class ReadItem>
    bool list(std::string_view key, std::size_t maxItems, std::vector<Item>& out, Need need,
              ReadItem&& readItem) {
        return read(key, need, [&](const msgpack::object& o) {
            if (o.type != msgpack::type::ARRAY)
                return Fault::malformed;
            if (o.via.array.size > maxItems)
                return Fault::invalid;
            std::vector<Item> items(o.via.array.size);
            for (std::uint32_t i = 0; i < o.via.array.size; ++i)
                if (Fault fault = readItem(o.via.array.ptr[i], items[i]); fault != Fault::none)
                    return fault;
            out = std::move(items);
            return Fault::none;
        });
    }

    template <class Int> static Fault readUnsigned(const msgpack::object& o, Int& out) {
        static_assert(std::is_integral_v<Int> && !std::is_same_v<Int, bool>);
        if (o.type != msgpack::type::POSITIVE_INTEGER ||
            o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<Int>::max()))
            return Fault::malformed;
        out = static_cast<Int>(o.via.u64);
        return Fault::none;
    }

    template <class Int> static Fault readSigned(const msgpack::object& o, Int& out) {
        static_assert(std::is_signed_v<Int>);
        if (o.type == msgpack::type::POSITIVE_INTEGER)
            return readUnsigned(o, out);
        if (o.type != msgpack::type::NEGATIVE_INTEGER ||
            o.via.i64 < std::int64_t{std::numeric_limits<Int>::min()})
            return Fault::malformed;
        out = static_cast<Int>(o.via.i64);
        return Fault::none;
    }

    static Fault readText(const msgpack::object& o, std::size_t maxBytes, std::string& out) {
        if (o.type != msgpack::type::STR)
            return Fault::malformed;
        std::string_view value(o.via.str.ptr, o.via.str.size);
        if (value.size() > maxBytes || !isValidUtf8(value))
            return Fault::invalid;
        out = value;
        return Fault::none;
    }

    static Fault readFixedBin(const msgpack::object& o, std::span<std::uint8_t> out) {
        if (o.type != msgpack::type::BIN || o.via.bin.size != out.size())
            return Fault::malformed;
        std::copy(o.via.bin.ptr, o.via.bin.ptr + o.via.bin.size, out.begin());
        return Fault::none;
    }

    template <class Bytes>
    static Fault copyBytes(const char* data, std::uint32_t size, std::size_t maxBytes, Bytes& out) {
        if (size > maxBytes)
            return Fault::invalid;
        out.assign(data, data + size);
        return Fault::none;
    }

    FieldErrors<Error> errors_;
    msgpack::object_map map_{};
    bool failed_ = false;
    std::size_t rank_ = 0;
    Error error_{};
};

} // namespace parley::dht
