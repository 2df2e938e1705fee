// `parley ping`: set up (or reuse) the direct, encrypted link to a contact and measure round
// trips over it.
#include "commands.h"
#include "terminal.h"

#include <iostream>
#include <memory>
#include <spdlog/fmt/fmt.h>

namespace parley::cli {

using nlohmann::json;

namespace {

struct PingOptions {
    std::string who;
    int count = 4;
    double intervalS = 0.2;
    double timeoutS = 15;
    bool json = false;
};

void checkPingOptions(const PingOptions& o) {
    if (o.count < 0 || o.count > 1000)
        throw Failure(kUsage, "--count must be between 0 and 1000");
    if (!(o.intervalS >= 0 && o.intervalS <= 60))
        throw Failure(kUsage, "--interval must be between 0 and 60 seconds");
    if (!(o.timeoutS > 0 && o.timeoutS <= 300))
        throw Failure(kUsage, "--timeout must be between 0 and 300 seconds");
}

// What the daemon answered to ping, for people.
int printPing(const dht::ContactId& id, const json& r) {
    if (!r.value("connected", false)) {
        std::cerr << "parley: no direct connection to " << id.toHex().substr(0, 16) << ": "
                  << sanitizeForTerminal(r.value("error", "unknown error")) << "\n";
        return kRuntime;
    }
    std::cout << "connected to " << id.toHex().substr(0, 16) << " at "
              << sanitizeForTerminal(r.value("remote", "")) << " ("
              << (r.value("reused", false)
                      ? std::string("reused the open connection")
                      : fmt::format("set up in {:.1f} ms", r.value("setup_ms", 0.)))
              << ", we are the " << r.value("role", "?") << ")\n";
    int seq = 0;
    for (const auto& v : r["rtt_ms"]) {
        ++seq;
        if (v.is_null())
            std::cout << "  ping " << seq << ": no answer within 5 s\n";
        else
            std::cout << "  ping " << seq << ": " << fmt::format("{:.3f}", v.get<double>())
                      << " ms\n";
    }
    if (r.contains("error"))
        std::cerr << "parley: " << sanitizeForTerminal(r.value("error", "")) << "\n";
    return r.value("lost", 0) == 0 && !r.contains("error") ? kOk : kRuntime;
}

int cmdPing(const Global& g, const PingOptions& o) {
    checkPingOptions(o);
    auto profile = profileOf(g);
    auto id = resolveContact(profile, o.who);
    // The daemon bounds the set-up by the timeout, then each ping by 5 s.
    auto budget = std::chrono::milliseconds(
        static_cast<long>((o.timeoutS + o.count * (o.intervalS + 5.0)) * 1000) + 5000);
    json params = {
        {"id", id.toHex()}, {"count", o.count}, {"interval", o.intervalS}, {"timeout", o.timeoutS}};
    auto r = rpcCall(profile, "ping", params, budget);
    if (o.json) {
        std::cout << r.dump() << "\n";
        return r.value("connected", false) ? kOk : kRuntime;
    }
    return printPing(id, r);
}

} // namespace

void addLinkCommands(CLI::App& app, const Global& g, Commands& commands) {
    auto o = std::make_shared<PingOptions>();
    auto* ping = app.add_subcommand(
        "ping", "set up (or reuse) the direct, encrypted connection to a contact and measure "
                "round trips over it");
    ping->add_option("contact", o->who, "contact id, or the alias or name of a contact")
        ->required();
    ping->add_option("--count", o->count, "pings to send (0: only connect)")->capture_default_str();
    ping->add_option("--interval", o->intervalS, "seconds between pings")->capture_default_str();
    ping->add_option("--timeout", o->timeoutS, "seconds to wait for the connection")
        ->capture_default_str();
    ping->add_flag("--json", o->json,
                   "print JSON: contact, connected, reused, setup_ms, rtt_ms, remote, role, lost");
    commands.push_back({ping, [&g, o] { return cmdPing(g, *o); }});
}

} // namespace parley::cli
