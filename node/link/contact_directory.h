// ContactDirectory: what the link and the features above it need to know about contacts,
// without depending on the contacts room: whether a ContactId is an accepted contact, their
// presence as last seen, and a way to put an envelope into their DHT inbox now. The
// composition root (node.cpp) implements it over ContactManager and routes the envelopes
// that ContactManager accepted to the room that handles their kind.
#pragma once

#include "dht/contact_id.h"
#include "dht/envelope.h"

#include <functional>
#include <optional>

namespace parley::node {

class ContactDirectory {
public:
    virtual ~ContactDirectory() = default;
    virtual bool isAccepted(const dht::ContactId& id) const = 0;
    // nullopt: not an accepted contact.
    virtual std::optional<bool> online(const dht::ContactId& id) const = 0;
    // Encrypts and puts an envelope now, without a persistent retry queue.
    // `done(false)`: no key or not stored.
    virtual void sendNow(const dht::Envelope& envelope, std::function<void(bool ok)> done) = 0;
};

} // namespace parley::node
