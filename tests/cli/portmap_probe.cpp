// portmap_probe: one PortMapper for one UDP port, for the NAT lab test (test_portmap.sh).
// Run only inside a lab namespace: it asks the default gateway and the LAN's SSDP group.
//
//   portmap_probe PORT [--timeout SECONDS] [--lifetime SECONDS]
//
// Prints status() as one JSON line once a mapping exists, or when the timeout (default 10 s)
// passes without one (exit 1). A mapping is then held until SIGTERM or SIGINT, when the mapper
// is stopped and a second line says how long stop() took: {"state": ..., "stop_ms": ...}.
// The mapper's log goes to stderr, at debug level.
#include "node/api/transport_json.h"
#include "node/transport/portmap.h"

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <string>

namespace {

int usage() {
    std::cerr << "usage: portmap_probe PORT [--timeout SECONDS] [--lifetime SECONDS]\n";
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2)
        return usage();
    const int port = std::atoi(argv[1]);
    int timeoutS = 10;
    int lifetimeS = 3600;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string opt = argv[i];
        if (opt == "--timeout")
            timeoutS = std::atoi(argv[i + 1]);
        else if (opt == "--lifetime")
            lifetimeS = std::atoi(argv[i + 1]);
        else
            return usage();
    }
    if (port <= 0 || port > 65535 || timeoutS <= 0 || lifetimeS <= 0 || argc % 2 != 0)
        return usage();

    spdlog::set_default_logger(spdlog::stderr_color_st("portmap"));
    spdlog::set_level(spdlog::level::debug);

    asio::io_context io;
    parley::node::PortMapper mapper(io, static_cast<std::uint16_t>(port),
                                    std::chrono::seconds(lifetimeS));
    mapper.start();

    int rc = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutS);
    asio::steady_timer poll(io);
    asio::signal_set signals(io, SIGTERM, SIGINT);
    bool holding = false;

    const auto finish = [&] {
        poll.cancel();
        signals.cancel();
        const auto t0 = std::chrono::steady_clock::now();
        mapper.stop();
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count();
        auto j = parley::node::api::toJson(mapper.status());
        j["stop_ms"] = ms;
        j["endpoints"] = mapper.mappedEndpoints();
        std::cout << j.dump() << std::endl;
    };

    std::function<void()> check = [&] {
        if (!mapper.mappedEndpoints().empty() || std::chrono::steady_clock::now() >= deadline) {
            const bool mapped = !mapper.mappedEndpoints().empty();
            std::cout << parley::node::api::toJson(mapper.status()).dump() << std::endl;
            if (!mapped) {
                rc = 1;
                finish();
                return;
            }
            holding = true; // until a signal
            return;
        }
        poll.expires_after(std::chrono::milliseconds(100));
        poll.async_wait([&](std::error_code ec) {
            if (!ec)
                check();
        });
    };
    check();
    signals.async_wait([&](std::error_code ec, int) {
        if (ec)
            return;
        if (!holding) {
            std::cout << parley::node::api::toJson(mapper.status()).dump() << std::endl;
            rc = 1;
        }
        finish();
    });
    io.run();
    return rc;
}
