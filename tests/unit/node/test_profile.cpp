// Profile: identity files, permissions, settings.
#include "node/store/profile.h"
#include "support/test_support.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sys/stat.h>

using namespace parley;
namespace fs = std::filesystem;

namespace {
unsigned modeOf(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 0777;
}
} // namespace

TEST_CASE("a profile creates private identity files and refuses to overwrite them") {
    test::TempDir tmp;
    node::Profile profile(tmp.path / "alice");
    CHECK_FALSE(profile.hasIdentity());
    auto identity = profile.createIdentity("alice", 2048, "");
    CHECK(profile.hasIdentity());
    CHECK_FALSE(profile.identityEncrypted());
    CHECK(modeOf(profile.dir()) == 0700);
    CHECK(modeOf(profile.keyPath()) == 0600);
    CHECK(modeOf(profile.certificatePath()) == 0600);
    CHECK_THROWS_WITH(profile.createIdentity("again", 2048, ""),
                      Catch::Contains("refusing to overwrite"));
    dht::Identity loaded;
    REQUIRE(profile.loadIdentity("", loaded) == dht::IdentityError::ok);
    CHECK(loaded.contactId() == identity.contactId());
}

TEST_CASE("a profile with a passphrase keeps the key encrypted") {
    test::TempDir tmp;
    node::Profile profile(tmp.path);
    auto identity = profile.createIdentity("bob", 2048, "s3cret");
    CHECK(profile.identityEncrypted());
    dht::Identity loaded;
    CHECK(profile.loadIdentity("nope", loaded) == dht::IdentityError::wrongPassphrase);
    CHECK(profile.loadIdentity("s3cret", loaded) == dht::IdentityError::ok);
    CHECK(loaded.contactId() == identity.contactId());
}

TEST_CASE("loading from an empty profile says what to do") {
    test::TempDir tmp;
    node::Profile profile(tmp.path);
    dht::Identity loaded;
    CHECK_THROWS_WITH(profile.loadIdentity("", loaded), Catch::Contains("parley init"));
}

TEST_CASE("settings come from config.json and bad files are reported") {
    test::TempDir tmp;
    node::Profile profile(tmp.path);
    CHECK(profile.loadSettings().bootstrap.empty());
    {
        std::ofstream(profile.configPath())
            << R"({"bootstrap": ["127.0.0.1:4222"], "network": 7, "port": 5000, "lan": false})";
    }
    auto s = profile.loadSettings();
    CHECK(s.bootstrap == std::vector<std::string>{"127.0.0.1:4222"});
    CHECK(s.network == 7u);
    CHECK(s.port == 5000);
    CHECK(s.lan == false);
    { std::ofstream(profile.configPath()) << "{not json"; }
    CHECK_THROWS_WITH(profile.loadSettings(), Catch::Contains("not valid JSON"));
    { std::ofstream(profile.configPath()) << R"({"port": "high"})"; }
    CHECK_THROWS_WITH(profile.loadSettings(), Catch::Contains("config.json"));
}

TEST_CASE("the profile directory comes from the flag, then PARLEY_PROFILE, then HOME") {
    CHECK(node::Profile::resolveDir(std::string("/tmp/x")) == "/tmp/x");
    ::setenv("PARLEY_PROFILE", "/tmp/from-env", 1);
    CHECK(node::Profile::resolveDir(std::nullopt) == "/tmp/from-env");
    ::unsetenv("PARLEY_PROFILE");
    ::unsetenv("XDG_DATA_HOME");
    ::setenv("HOME", "/home/someone", 1);
    CHECK(node::Profile::resolveDir(std::nullopt) == "/home/someone/.local/share/parley");
}

TEST_CASE("the last port is remembered") {
    test::TempDir tmp;
    node::Profile profile(tmp.path);
    CHECK_FALSE(profile.lastPort());
    profile.saveLastPort(4567);
    CHECK(profile.lastPort() == 4567);
}
