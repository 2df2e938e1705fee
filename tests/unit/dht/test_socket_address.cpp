// SocketAddress parsing and splitHostPort: what address text from strangers may become.
#include "dht/socket_address.h"

#include <catch2/catch.hpp>
#include <string>

using namespace parley::dht;

TEST_CASE("splitHostPort refuses an empty port in both forms", "[socket_address]") {
    CHECK_FALSE(splitHostPort("[::1]:"));
    CHECK_FALSE(splitHostPort("1.2.3.4:"));
    CHECK_FALSE(splitHostPort("[::1]"));
    auto v6 = splitHostPort("[::1]:5");
    REQUIRE(v6);
    CHECK(v6->first == "::1");
    CHECK(v6->second == "5");
    CHECK_FALSE(SocketAddress::parse("[::1]:"));
    CHECK_FALSE(SocketAddress::parse("[::1]:", 7));
}

TEST_CASE("SocketAddress::parse refuses text with an embedded NUL", "[socket_address]") {
    using namespace std::string_literals;
    CHECK_FALSE(SocketAddress::parse("1.2.3.4\0junk"s));
    CHECK_FALSE(SocketAddress::parse("1.2.3.4:5\0"s));
    CHECK_FALSE(SocketAddress::parse("[::1\0]:5"s));
    CHECK_FALSE(SocketAddress::parse("\0"s));
    auto ok = SocketAddress::parse("1.2.3.4:5");
    REQUIRE(ok);
    CHECK(ok->toString() == "1.2.3.4:5");
}
