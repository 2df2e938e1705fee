// The OpenDHT identity behind parley::dht::Identity; only dht/ sources include this.
#pragma once

#include <opendht/crypto.h>

namespace parley::dht::detail {

struct IdentityHandle {
    ::dht::crypto::Identity id;
};

} // namespace parley::dht::detail
