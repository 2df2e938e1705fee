// What the command groups of the `parley` program share: the global options, the exit codes
// and the failure that carries one, and the helpers for the profile, the passphrase, the
// control socket and contact arguments. Each group (cmd_*.cpp) adds its own subcommands.
#pragma once

#include "dht/contact_id.h"
#include "node/store/profile.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace parley::cli {

enum ExitCode { kOk = 0, kRuntime = 1, kUsage = 2, kNoDaemon = 3 };

// A failure with the exit code it maps to; main() prints it once.
struct Failure : std::runtime_error {
    Failure(ExitCode c, const std::string& m) : std::runtime_error(m), code(c) {}
    ExitCode code;
};

// The options given before the subcommand.
struct Global {
    std::optional<std::string> profile;
    std::string passphraseFile;
    int passphraseFd = -1; // internal: `parley up` hands the passphrase to its daemon this way
};

// A subcommand and what running it does. main() runs the one given once the whole command
// line is parsed; run() returns the exit code, or throws Failure.
struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};
using Commands = std::vector<Command>;

void addGlobalOptions(CLI::App& app, Global& g);

// The command groups, in the order `parley --help` lists their subcommands. The options are
// read when a command runs, so g must outlive the app.
void addIdentityCommands(CLI::App& app, const Global& g, Commands& commands); // init, id
void addDaemonCommands(CLI::App& app, const Global& g, Commands& commands);   // daemon, up, ...
void addChatCommands(CLI::App& app, const Global& g, Commands& commands);     // send, history, chat
void addLinkCommands(CLI::App& app, const Global& g, Commands& commands);     // ping
void addContactCommands(CLI::App& app, const Global& g, Commands& commands);  // lookup, contact*
void addTransferCommands(CLI::App& app, const Global& g, Commands& commands); // share, transfer*

node::Profile profileOf(const Global& g);

// The passphrase from --passphrase-fd, --passphrase-file or PARLEY_PASSPHRASE, if any is given.
std::optional<std::string> passphraseFromFlags(const Global& g);

// One call to the daemon's control API; a missing daemon and refused parameters become
// Failures with their exit codes.
nlohmann::json rpcCall(const node::Profile& profile, const std::string& method,
                       const nlohmann::json& params, std::chrono::milliseconds timeout);

// A contact named by id, or by the alias or name of an existing contact.
dht::ContactId resolveContact(const node::Profile& profile, const std::string& text);

// The display label of a contact: alias, else name, else the start of the id, safe to print.
// `contacts` is the reply of the `contacts` method (one call for many labels).
std::string contactLabel(const nlohmann::json& contacts, const dht::ContactId& id);
std::string contactLabel(const node::Profile& profile, const dht::ContactId& id);

// "2026-01-02 03:04:05 UTC (5 min ago)".
std::string formatTime(std::int64_t unixSeconds);
// "512 B", "1.5 KiB", "123.4 MiB", "2.0 GiB": powers of 1024, one decimal.
std::string formatSize(std::uint64_t bytes);
// "4.2 s", "45 s", "3 min 5 s", "2 h 10 min".
std::string formatDuration(double seconds);

} // namespace parley::cli
