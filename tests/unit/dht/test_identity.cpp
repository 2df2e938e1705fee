// Identity: generation, PEM round trips, passphrases (incl. OpenDHT 2.4.12's loader bug).
#include "dht/identity.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>

using namespace parley::dht;

TEST_CASE("identity round-trips through PEM without a passphrase") {
    auto identity = parley::test::makeIdentity("alice");
    CHECK(identity.keyBits() == 2048);
    CHECK(identity.name() == "alice");
    auto key = identity.privateKeyPem("");
    CHECK_FALSE(Identity::isEncryptedKeyPem(key));
    Identity loaded;
    REQUIRE(Identity::load(key, identity.certificatePem(), "", loaded) == IdentityError::ok);
    CHECK(loaded.contactId() == identity.contactId());
    CHECK(loaded.name() == "alice");
}

TEST_CASE("an encrypted key opens with the right passphrase only") {
    auto identity = parley::test::makeIdentity("bob");
    auto key = identity.privateKeyPem("correct horse");
    CHECK(Identity::isEncryptedKeyPem(key));
    Identity loaded;
    CHECK(Identity::load(key, identity.certificatePem(), "", loaded) ==
          IdentityError::passphraseRequired);
    CHECK(Identity::load(key, identity.certificatePem(), "wrong", loaded) ==
          IdentityError::wrongPassphrase);
    CHECK_FALSE(loaded.valid());
    REQUIRE(Identity::load(key, identity.certificatePem(), "correct horse", loaded) ==
            IdentityError::ok);
    CHECK(loaded.contactId() == identity.contactId());
}

TEST_CASE("damaged or mismatched identity files give clear errors") {
    auto a = parley::test::makeIdentity("a");
    auto b = parley::test::makeIdentity("b");
    Identity loaded;
    CHECK(Identity::load("not a key", a.certificatePem(), "", loaded) ==
          IdentityError::malformedKey);
    CHECK(Identity::load(a.privateKeyPem(""), "garbage", "", loaded) ==
          IdentityError::malformedCertificate);
    CHECK(Identity::load(a.privateKeyPem(""), b.certificatePem(), "", loaded) ==
          IdentityError::keyMismatch);
    auto pem = a.privateKeyPem("");
    pem[pem.size() / 2] ^= 0x5;
    CHECK(Identity::load(pem, a.certificatePem(), "", loaded) != IdentityError::ok);
    for (auto e : {IdentityError::passphraseRequired, IdentityError::wrongPassphrase,
                   IdentityError::malformedKey, IdentityError::malformedCertificate,
                   IdentityError::keyMismatch})
        CHECK(describe(e).size() > 10);
}

TEST_CASE("a certificate alone tells the ContactId and name") {
    auto identity = parley::test::makeIdentity("carol");
    auto info = inspectCertificate(identity.certificatePem());
    REQUIRE(info);
    CHECK(info->id == identity.contactId());
    CHECK(info->name == "carol");
    CHECK_FALSE(inspectCertificate("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"));
}

TEST_CASE("key sizes outside the supported range are refused") {
    CHECK_THROWS_AS(Identity::generate("x", 1024), std::invalid_argument);
}
