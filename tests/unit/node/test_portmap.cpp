// Port mapping, the parts without a router: renewal and retry schedule, which external
// addresses count as public, the gateway from a UPnP URL, and what status() and the log say.
// No PortMapper is started here: it would ask the machine's real router (docs/NAT.md); the
// NAT lab test (tests/cli/test_portmap.sh) runs one against miniupnpd in a namespace.
#include "node/api/transport_json.h"
#include "node/transport/portmap.h"

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

using namespace parley::node;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

TEST_CASE("a mapping is renewed at half its lifetime, never sooner than 30 s") {
    CHECK(detail::renewalDelay(hours(1)) == minutes(30));
    CHECK(detail::renewalDelay(seconds(7200)) == hours(1));
    CHECK(detail::renewalDelay(seconds(120)) == seconds(60));
    // A router granting a few seconds must not make us ask in a tight loop.
    CHECK(detail::renewalDelay(seconds(10)) == seconds(30));
    CHECK(detail::renewalDelay(seconds(0)) == seconds(30));
}

TEST_CASE("failed attempts back off from 1 min, doubling, to at most 30 min") {
    CHECK(detail::retryDelay(1) == minutes(1));
    CHECK(detail::retryDelay(2) == minutes(2));
    CHECK(detail::retryDelay(3) == minutes(4));
    CHECK(detail::retryDelay(5) == minutes(16));
    CHECK(detail::retryDelay(6) == minutes(30));
    CHECK(detail::retryDelay(7) == minutes(30));
    CHECK(detail::retryDelay(1000) == minutes(30));
    CHECK(detail::retryDelay(0) == minutes(1));
}

TEST_CASE("a failed renewal is retried before the mapping still held lapses") {
    // 20 min left: the backoff (1 min) is sooner than half of it.
    CHECK(detail::retryDelay(1, minutes(20)) == minutes(1));
    // 4 min left after several failures: half of what is left, not the 16 min backoff.
    CHECK(detail::retryDelay(5, minutes(4)) == minutes(2));
    // Almost lapsed: still at least 5 s apart.
    CHECK(detail::retryDelay(3, seconds(4)) == seconds(5));
}

TEST_CASE("only public external addresses are used") {
    CHECK(detail::isPublicIPv4("11.0.0.11"));
    CHECK(detail::isPublicIPv4("8.8.8.8"));
    CHECK(detail::isPublicIPv4("198.20.0.1"));  // just past the benchmarking /15
    CHECK(detail::isPublicIPv4("172.32.0.1"));  // just past 172.16/12
    CHECK(detail::isPublicIPv4("100.128.0.1")); // just past 100.64/10
    CHECK(detail::isPublicIPv4("223.255.255.255"));
    // Behind another NAT: private, carrier-grade, or the router has none.
    CHECK_FALSE(detail::isPublicIPv4("192.168.1.20"));
    CHECK_FALSE(detail::isPublicIPv4("10.1.0.1"));
    CHECK_FALSE(detail::isPublicIPv4("172.16.0.1"));
    CHECK_FALSE(detail::isPublicIPv4("172.31.255.255"));
    CHECK_FALSE(detail::isPublicIPv4("100.64.0.1"));
    CHECK_FALSE(detail::isPublicIPv4("100.127.255.255"));
    CHECK_FALSE(detail::isPublicIPv4("0.0.0.0"));
    // Special ranges, the NAT lab's public segment among them.
    CHECK_FALSE(detail::isPublicIPv4("198.18.0.11"));
    CHECK_FALSE(detail::isPublicIPv4("198.19.255.255"));
    CHECK_FALSE(detail::isPublicIPv4("192.0.2.1"));
    CHECK_FALSE(detail::isPublicIPv4("198.51.100.1"));
    CHECK_FALSE(detail::isPublicIPv4("203.0.113.1"));
    CHECK_FALSE(detail::isPublicIPv4("127.0.0.1"));
    CHECK_FALSE(detail::isPublicIPv4("169.254.1.1"));
    CHECK_FALSE(detail::isPublicIPv4("224.0.0.1"));
    CHECK_FALSE(detail::isPublicIPv4("255.255.255.255"));
    // Not an IPv4 address at all.
    CHECK_FALSE(detail::isPublicIPv4(""));
    CHECK_FALSE(detail::isPublicIPv4("2001:db8::1"));
    CHECK_FALSE(detail::isPublicIPv4("11.0.0.11:4301"));
    CHECK_FALSE(detail::isPublicIPv4("router.example"));
}

TEST_CASE("the gateway is the host of the UPnP control URL") {
    CHECK(detail::urlHost("http://10.1.0.1:40331/ctl/IPConn") == "10.1.0.1");
    CHECK(detail::urlHost("http://192.168.1.1/upnp/control") == "192.168.1.1");
    CHECK(detail::urlHost("http://192.168.1.1") == "192.168.1.1");
    CHECK(detail::urlHost("http://[fe80::1]:5000/ctl") == "fe80::1");
    CHECK(detail::urlHost("http://user@10.0.0.1:80/x") == "10.0.0.1");
    CHECK(detail::urlHost("10.0.0.1:80/x").empty());
    CHECK(detail::urlHost("").empty());
    CHECK(detail::urlHost("http://[fe80::1").empty());
}

TEST_CASE("the log line says what was mapped, to which port, by whom") {
    PortMapping m{"UPnP", "10.1.0.1", "11.0.0.11:4301", 1'700'000'000};
    CHECK(detail::describeMapping(m, 4301) ==
          "UPnP mapping 11.0.0.11:4301 -> port 4301 via 10.1.0.1");
    m.method = "NAT-PMP";
    m.external = "11.0.0.11:50123";
    CHECK(detail::describeMapping(m, 4301) ==
          "NAT-PMP mapping 11.0.0.11:50123 -> port 4301 via 10.1.0.1");
}

TEST_CASE("status says the state, and the mapping only when there is one") {
    const PortMapping m{"NAT-PMP", "10.1.0.1", "11.0.0.11:4301", 1'700'003'600};
    auto mapped = api::toJson(PortMapStatus{"mapped", m, ""});
    CHECK(mapped == nlohmann::json{{"state", "mapped"},
                                   {"method", "NAT-PMP"},
                                   {"gateway", "10.1.0.1"},
                                   {"external", "11.0.0.11:4301"},
                                   {"expires", 1'700'003'600}});
    auto unavailable = api::toJson(
        PortMapStatus{"unavailable", std::nullopt, "NAT-PMP: no answer; UPnP: no device answered"});
    CHECK(unavailable ==
          nlohmann::json{{"state", "unavailable"},
                         {"reason", "NAT-PMP: no answer; UPnP: no device answered"}});
    CHECK(api::toJson(PortMapStatus{"disabled", std::nullopt, ""}) ==
          nlohmann::json{{"state", "disabled"}});
    CHECK(api::toJson(PortMapStatus{"discovering", std::nullopt, ""}) ==
          nlohmann::json{{"state", "discovering"}});
    // A stale mapping is not shown once the state left "mapped".
    CHECK(api::toJson(PortMapStatus{"unavailable", m, "lapsed"}) ==
          nlohmann::json{{"state", "unavailable"}, {"reason", "lapsed"}});
}

TEST_CASE("a mapper that was never started is disabled and maps nothing") {
    asio::io_context io;
    {
        PortMapper mapper(io, 4301);
        CHECK(api::toJson(mapper.status()) == nlohmann::json{{"state", "disabled"}});
        CHECK(mapper.mappedEndpoints().empty());
        mapper.stop(); // harmless without start(), and again from the destructor
        CHECK(mapper.status().state == "disabled");
        CHECK_FALSE(mapper.status().mapping);
    }
    CHECK(io.poll() == 0);
}
