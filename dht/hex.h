// Hex: bytes as lowercase hex digits, and back. The one implementation for ContactIds,
// message ids, tokens and logs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace parley::dht {

std::string toHex(std::span<const std::uint8_t> bytes); // lowercase, 2 digits a byte
// Fills `out` from exactly 2 * out.size() hex digits (either case); false otherwise, and
// then `out` is left unspecified.
bool parseHex(std::string_view hex, std::span<std::uint8_t> out);

} // namespace parley::dht
