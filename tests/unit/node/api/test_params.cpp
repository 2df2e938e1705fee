// intParam: JSON numbers to integers without undefined behaviour (1e300, 2^40, 0.5, NaN-free).
#include "node/api/params.h"

#include <catch2/catch.hpp>

using nlohmann::json;
using parley::node::api::intParam;

TEST_CASE("intParam: absent gives the default, whole numbers in range pass") {
    CHECK(intParam(json::object(), "count", 4, 0, 1000) == 4);
    CHECK(intParam(json::array(), "count", 4, 0, 1000) == 4); // positional params: defaults
    CHECK(intParam(json{{"count", 0}}, "count", 4, 0, 1000) == 0);
    CHECK(intParam(json{{"count", 1000}}, "count", 4, 0, 1000) == 1000);
    CHECK(intParam(json{{"count", 3.0}}, "count", 4, 0, 1000) == 3);
    CHECK(intParam(json::parse(R"({"count": 7e2})"), "count", 4, 0, 1000) == 700);
}

TEST_CASE("intParam: out of range, fractions, huge numbers and other types are refused") {
    CHECK_FALSE(intParam(json{{"count", -1}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", 1001}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", 2.5}}, "count", 4, 0, 1000));
    // Converting these to an int was undefined behaviour (1e300) or wrapped into range (2^32+5).
    CHECK_FALSE(intParam(json::parse(R"({"count": 1e300})"), "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json::parse(R"({"count": -1e300})"), "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", 4294967301LL}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", 18446744073709551615ULL}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", "5"}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", nullptr}}, "count", 4, 0, 1000));
    CHECK_FALSE(intParam(json{{"count", true}}, "count", 4, 0, 1000));
}

TEST_CASE("secondsParam: seconds as milliseconds, in range or refused") {
    using parley::node::api::secondsParam;
    using std::chrono::milliseconds;
    CHECK(secondsParam(json::object(), "timeout", 15.0, 0, 300) == milliseconds(15000));
    CHECK(secondsParam(json{{"timeout", 0.25}}, "timeout", 15.0, 0, 300) == milliseconds(250));
    CHECK(secondsParam(json{{"timeout", 300}}, "timeout", 15.0, 0, 300) == milliseconds(300000));
    CHECK(secondsParam(json{{"interval", 0}}, "interval", 0.2, 0, 60) == milliseconds(0));
    CHECK_FALSE(secondsParam(json{{"timeout", -0.001}}, "timeout", 15.0, 0, 300));
    CHECK_FALSE(secondsParam(json{{"timeout", 300.5}}, "timeout", 15.0, 0, 300));
    // Multiplying these by 1000 and converting was undefined behaviour before the range check.
    CHECK_FALSE(secondsParam(json::parse(R"({"timeout": 1e300})"), "timeout", 15.0, 0, 300));
    CHECK_FALSE(secondsParam(json{{"timeout", "10"}}, "timeout", 15.0, 0, 300));
    CHECK_FALSE(secondsParam(json{{"timeout", nullptr}}, "timeout", 15.0, 0, 300));
}
