// The helpers every command group uses (see commands.h).
#include "commands.h"

#include "control_client.h"
#include "node/api/control_server.h"
#include "terminal.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <unistd.h>

namespace parley::cli {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string trimNewline(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
        s.pop_back();
    return s;
}

std::string notRunningMessage(const node::Profile& profile) {
    return "the parley daemon is not running for profile " + profile.dir().string() +
           ": start it with 'parley up' (background) or 'parley daemon' (foreground)";
}

} // namespace

void addGlobalOptions(CLI::App& app, Global& g) {
    app.add_option("--profile", g.profile,
                   "profile directory (default: $PARLEY_PROFILE, else ~/.local/share/parley)");
    app.add_option("--passphrase-fd", g.passphraseFd,
                   "read the key passphrase from this file descriptor (used by 'parley up')")
        ->group("");
    app.add_option("--passphrase-file", g.passphraseFile,
                   "read the key passphrase from the first line of this file "
                   "(also: PARLEY_PASSPHRASE, or a prompt)");
}

node::Profile profileOf(const Global& g) {
    return node::Profile(node::Profile::resolveDir(g.profile));
}

std::optional<std::string> passphraseFromFlags(const Global& g) {
    if (g.passphraseFd >= 0) {
        std::string line;
        char c;
        while (::read(g.passphraseFd, &c, 1) == 1 && c != '\n')
            line.push_back(c);
        ::close(g.passphraseFd);
        return line;
    }
    if (!g.passphraseFile.empty()) {
        std::ifstream in(g.passphraseFile);
        if (!in)
            throw Failure(kUsage, "cannot read --passphrase-file " + g.passphraseFile + ": " +
                                      std::strerror(errno));
        std::string line;
        std::getline(in, line);
        return trimNewline(line);
    }
    if (const char* env = std::getenv("PARLEY_PASSPHRASE")) {
        std::string value(env);
        ::unsetenv("PARLEY_PASSPHRASE"); // no longer visible in /proc/PID/environ's copy
        return value;
    }
    return std::nullopt;
}

json rpcCall(const node::Profile& profile, const std::string& method, const json& params,
             std::chrono::milliseconds timeout) {
    try {
        ControlClient client(profile.controlSocketPath());
        return client.call(method, params, timeout);
    } catch (const DaemonNotRunning&) {
        throw Failure(kNoDaemon, notRunningMessage(profile));
    } catch (const RpcError& e) {
        throw Failure(e.code == node::rpc::kInvalidParams ? kUsage : kRuntime, e.what());
    }
}

dht::ContactId resolveContact(const node::Profile& profile, const std::string& text) {
    if (auto id = dht::ContactId::parse(text))
        return *id;
    auto list = rpcCall(profile, "contacts", json::object(), 10s);
    std::vector<dht::ContactId> matches;
    for (const auto& c : list)
        if (c.value("alias", "") == text || c.value("name", "") == text)
            if (auto id = dht::ContactId::parse(c.value("id", "")))
                matches.push_back(*id);
    if (matches.size() == 1)
        return matches.front();
    if (matches.empty())
        throw Failure(kUsage, "'" + sanitizeForTerminal(text.substr(0, 80)) +
                                  "' is neither a contact id nor the alias or name of a contact "
                                  "(see 'parley contacts')");
    throw Failure(kUsage, "'" + sanitizeForTerminal(text.substr(0, 80)) + "' names " +
                              std::to_string(matches.size()) +
                              " contacts: use the contact id instead");
}

std::string contactLabel(const json& contacts, const dht::ContactId& id) {
    for (const auto& c : contacts)
        if (c.value("id", "") == id.toHex()) {
            auto label = c.value("alias", "").empty() ? c.value("name", "") : c.value("alias", "");
            if (!label.empty())
                return sanitizeForTerminal(label);
        }
    return id.toHex().substr(0, 8);
}

std::string contactLabel(const node::Profile& profile, const dht::ContactId& id) {
    return contactLabel(rpcCall(profile, "contacts", json::object(), 10s), id);
}

std::string formatTime(std::int64_t unixSeconds) {
    std::time_t t = unixSeconds;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    auto ago = std::time(nullptr) - unixSeconds;
    std::string rel = ago < 0      ? ""
                      : ago < 120  ? std::to_string(ago) + " s ago"
                      : ago < 7200 ? std::to_string(ago / 60) + " min ago"
                                   : std::to_string(ago / 3600) + " h ago";
    return std::string(buf) + (rel.empty() ? "" : " (" + rel + ")");
}

std::string formatSize(std::uint64_t bytes) {
    static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024)
        return std::to_string(bytes) + " B";
    double v = static_cast<double>(bytes) / 1024;
    std::size_t unit = 0;
    while (v >= 1023.95 && unit + 1 < std::size(units)) { // 1023.96 KiB prints as 1.0 MiB
        v /= 1024;
        ++unit;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[unit]);
    return buf;
}

std::string formatDuration(double seconds) {
    if (!(seconds >= 0)) // negative or NaN
        seconds = 0;
    char buf[32];
    if (seconds < 9.95) {
        std::snprintf(buf, sizeof buf, "%.1f s", seconds);
        return buf;
    }
    auto s = static_cast<std::uint64_t>(std::llround(std::min(seconds, 1e15)));
    if (s < 60)
        return std::to_string(s) + " s";
    if (s < 3600)
        return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
    return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
}

} // namespace parley::cli
