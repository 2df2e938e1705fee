// Fuzz target: the inbox envelope decoder takes bytes from anyone who knows our ContactId.
#include "dht/envelope.h"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    parley::dht::Envelope envelope;
    if (parley::dht::decodeEnvelope({data, size}, envelope) == parley::dht::EnvelopeError::ok) {
        parley::dht::Envelope again;
        if (parley::dht::decodeEnvelope(parley::dht::encodeEnvelope(envelope), again) !=
                parley::dht::EnvelopeError::ok ||
            !(again == envelope))
            __builtin_trap();
        (void)parley::dht::checkEnvelope(envelope, envelope.from, envelope.to, envelope.createdMs);
    }
    return 0;
}
