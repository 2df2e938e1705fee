// Fuzz target: the key card and presence decoders take bytes from any DHT node.
#include "dht/records.h"

#include <cstdint>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> bytes(data, size);
    parley::dht::KeyCard card;
    if (parley::dht::decodeKeyCard(bytes, card) == parley::dht::RecordError::ok) {
        // What decodes must encode back to something that decodes the same.
        auto again = parley::dht::encodeKeyCard(card);
        parley::dht::KeyCard card2;
        if (parley::dht::decodeKeyCard(again, card2) != parley::dht::RecordError::ok ||
            !(card2 == card))
            __builtin_trap();
        parley::dht::ContactId::Bytes zero{};
        (void)parley::dht::verifyKeyCard(card, parley::dht::ContactId(zero));
    }
    parley::dht::Presence presence;
    if (parley::dht::decodePresence(bytes, presence) == parley::dht::RecordError::ok) {
        parley::dht::Presence p2;
        if (parley::dht::decodePresence(parley::dht::encodePresence(presence), p2) !=
                parley::dht::RecordError::ok ||
            !(p2 == presence))
            __builtin_trap();
        (void)parley::dht::isPresenceFresh(presence, 0);
    }
    return 0;
}
