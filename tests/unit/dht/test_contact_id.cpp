// ContactId: parsing, formatting and derivation from a public key.
#include "dht/contact_id.h"
#include "dht/detail/identity_handle.h"
#include "dht/identity.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <cstring>

using parley::dht::ContactId;

TEST_CASE("ContactId parses 64 hex digits and prints lowercase") {
    std::string upper(64, 'A');
    auto id = ContactId::parse(upper);
    REQUIRE(id);
    CHECK(id->toHex() == std::string(64, 'a'));
    CHECK(id->shortHex() == "aaaaaaaa");
    auto again = ContactId::parse(id->toHex());
    REQUIRE(again);
    CHECK(*again == *id);
}

TEST_CASE("ContactId rejects malformed text") {
    CHECK_FALSE(ContactId::parse(""));
    CHECK_FALSE(ContactId::parse(std::string(63, 'a')));
    CHECK_FALSE(ContactId::parse(std::string(65, 'a')));
    CHECK_FALSE(ContactId::parse(std::string(63, 'a') + "g"));
    CHECK_FALSE(ContactId::parse(std::string(63, 'a') + " "));
    CHECK_FALSE(ContactId::parse(std::string(40, 'a'))); // an InfoHash, not a ContactId
    CHECK_FALSE(ContactId::fromBytes(std::vector<std::uint8_t>(31)));
    CHECK(ContactId::fromBytes(std::vector<std::uint8_t>(32))->isZero());
}

TEST_CASE("ContactId orders and hashes by bytes") {
    ContactId::Bytes a{}, b{};
    b[0] = 1;
    CHECK(ContactId(a) < ContactId(b));
    CHECK(std::hash<ContactId>{}(ContactId(a)) != std::hash<ContactId>{}(ContactId(b)));
}

TEST_CASE("ContactId of an identity is OpenDHT's long id (SHA-256 of the DER public key)") {
    auto identity = parley::test::makeIdentity("alice");
    const auto& longId = identity.handle().id.first->getPublicKey().getLongId();
    REQUIRE(longId.size() == ContactId::kSize);
    CHECK(std::memcmp(longId.data(), identity.contactId().bytes().data(), ContactId::kSize) == 0);
    CHECK(identity.contactId() == ContactId::ofPublicKeyDer(identity.publicKeyDer()));
    CHECK(longId.toString() == identity.contactId().toHex());
}
