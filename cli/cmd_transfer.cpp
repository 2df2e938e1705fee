// `parley share`, `transfers` and `transfer ...`: files and folders to and from contacts. The
// daemon scans, sends, receives and verifies; these commands offer, answer and follow.
#include "commands.h"
#include "control_client.h"
#include "dht/records.h"
#include "terminal.h"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace parley::cli {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct ShareOptions {
    std::string who;
    std::vector<std::string> paths;
    std::string message;
    bool wait = false;
    bool json = false;
};

struct ListOptions {
    bool json = false;
    bool watch = false;
};

// The options of the `transfer` subcommands; only one of them runs.
struct TransferOptions {
    std::string id;
    std::string to;
    bool wait = false;
    bool json = false;
};

const char* const kContactHelp = "contact id, or the alias or name of a contact";
const char* const kIdHelp = "the transfer id, or a unique start of it (see 'parley transfers')";
const char* const kWaitHelp = "follow the transfer until it ends: exit 0 completed, 1 failed, "
                              "declined or cancelled; Ctrl-C stops waiting (exit 130), the "
                              "transfer goes on";
constexpr int kInterrupted = 130; // 128 + SIGINT, as the shell reports it

// Ctrl-C sets a flag instead of ending the program while a guard lives; poll() then returns
// early (no SA_RESTART).
volatile std::sig_atomic_t gInterrupted = 0;

void onInterrupt(int) {
    gInterrupted = 1;
}

class InterruptGuard {
public:
    InterruptGuard() {
        gInterrupted = 0;
        struct sigaction sa {};
        sa.sa_handler = onInterrupt;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGINT, &sa, &old_);
    }
    ~InterruptGuard() { ::sigaction(SIGINT, &old_, nullptr); }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;
    bool interrupted() const { return gInterrupted != 0; }

private:
    struct sigaction old_ {};
};

bool isFinal(const std::string& state) {
    return state == "completed" || state == "failed" || state == "cancelled" || state == "declined";
}

std::uint64_t count(const json& t, const char* key) {
    return t.value(key, std::uint64_t{0});
}

std::size_t terminalColumns() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

// `text` cut to at most `width` columns, with "…" where it was cut.
std::string fit(const std::string& text, std::size_t width) {
    if (displayWidth(text) <= width)
        return text;
    // A code point is never wider than its bytes, so `width - 1` bytes fit in width - 1 columns.
    return dht::truncateUtf8(text, width > 1 ? width - 1 : 0) + "…";
}

std::string percentOf(const json& t) {
    auto total = count(t, "bytes");
    if (total == 0)
        return t.value("state", "") == "completed" ? "100%" : "0%";
    auto pct = std::min<std::uint64_t>(100, count(t, "done") * 100 / total);
    return std::to_string(pct) + "%";
}

// "NAME  45%  123.4 MiB / 270.0 MiB  85.2 MiB/s  2 s left  [transferring]" in `width` columns.
std::string progressLine(const json& t, std::size_t width) {
    auto total = count(t, "bytes");
    auto done = count(t, "done");
    auto state = t.value("state", "");
    double rate = t.value("rate", 0.0);
    std::string rest = "  " + percentOf(t) + "  " + formatSize(done) + " / " + formatSize(total);
    if (rate > 0 && state == "transferring") {
        rest += "  " + formatSize(static_cast<std::uint64_t>(rate)) + "/s";
        if (done < total)
            rest += "  " + formatDuration(static_cast<double>(total - done) / rate) + " left";
    }
    rest += "  [" + sanitizeForTerminal(state) + "]";
    auto name = sanitizeForTerminal(t.value("name", ""));
    auto room = width > rest.size() + 8 ? width - rest.size() : 8; // rest is ASCII
    return fit(name, room) + rest;
}

// Follows one transfer until it ends: events from a subscription, and transfer.get every 2 s
// in case one was missed.
class Follow {
public:
    Follow(const node::Profile& profile, json transfer, bool asJson)
        : profile_(profile), id_(transfer.value("id", "")), last_(std::move(transfer)),
          printedState_(last_.value("state", "")), asJson_(asJson),
          tty_(!asJson && ::isatty(STDOUT_FILENO)) {}

    int run() {
        InterruptGuard guard;
        ControlClient events(profile_.controlSocketPath());
        events.call("subscribe", json::object(), 5s);
        try {
            see(get(), false);
            auto nextPoll = Clock::now() + 2s;
            while (!isFinal(last_.value("state", ""))) {
                if (guard.interrupted()) {
                    clearLine();
                    std::cerr << "parley: stopped waiting; the transfer goes on in the daemon "
                                 "(see 'parley transfers')\n";
                    return kInterrupted;
                }
                pollfd p{events.fd(), POLLIN, 0};
                ::poll(&p, 1, events.hasLine() ? 0 : 500); // EINTR: the loop looks at the flag
                if ((p.revents & (POLLIN | POLLHUP | POLLERR)) || events.hasLine())
                    while (auto m = events.nextMessage(1ms))
                        handle(*m);
                if (Clock::now() >= nextPoll) {
                    see(get(), false);
                    nextPoll = Clock::now() + 2s;
                }
                draw();
            }
        } catch (...) {
            clearLine();
            throw;
        }
        return end();
    }

private:
    json get() const {
        return rpcCall(profile_, "transfer.get", {{"id", id_}}, 10s).value("transfer", json());
    }

    void handle(const json& m) {
        if (m.value("method", "") != "event" || !m.contains("params"))
            return;
        const auto& ev = m["params"];
        if (ev.value("id", "") != id_ || ev.value("type", "").rfind("transfer.", 0) != 0)
            return;
        if (asJson_)
            std::cout << ev.dump() << std::endl;
        see(ev, true);
    }

    // A newer view of the transfer; with --json, a state change no event showed is printed.
    void see(json t, bool printed) {
        if (!t.is_object())
            return;
        auto state = t.value("state", "");
        if (asJson_ && !printed && state != printedState_) {
            t["type"] = "transfer.state";
            std::cout << t.dump() << std::endl;
        }
        if (asJson_)
            printedState_ = state;
        if (!started_ && (state == "accepted" || state == "transferring" || state == "verifying")) {
            started_ = true;
            startedAt_ = Clock::now();
            doneAtStart_ = count(t, "done");
        }
        stateChanged_ = stateChanged_ || state != last_.value("state", "");
        last_ = std::move(t);
    }

    void draw() {
        if (asJson_)
            return;
        if (tty_) {
            std::cout << "\r" << progressLine(last_, terminalColumns() - 1) << "\033[K"
                      << std::flush;
            drawn_ = true;
        } else if (stateChanged_ || Clock::now() - lastPlain_ >= 5s) {
            std::cout << progressLine(last_, 200) << std::endl;
            lastPlain_ = Clock::now();
        }
        stateChanged_ = false;
    }

    void clearLine() {
        if (drawn_)
            std::cout << "\r\033[K" << std::flush;
        drawn_ = false;
    }

    void printProblems() const {
        for (const auto& p : last_.value("problems", json::array()))
            std::cerr << "parley: " << sanitizeForTerminal(p.value("path", "")) << ": "
                      << sanitizeForTerminal(p.value("reason", "")) << "\n";
        if (auto more = count(last_, "more_problems"))
            std::cerr << "parley: ... and " << more << " more\n";
    }

    int end() {
        clearLine();
        printProblems();
        auto state = last_.value("state", "");
        auto name = sanitizeForTerminal(last_.value("name", ""));
        if (state != "completed") {
            auto reason = sanitizeForTerminal(last_.value("reason", ""));
            std::cerr << "parley: " << name << ": " << state
                      << (reason.empty() ? "" : ": " + reason) << "\n";
            return kRuntime;
        }
        if (asJson_)
            return kOk;
        double seconds = 0;
        auto moved = count(last_, "bytes");
        if (started_) {
            seconds = std::chrono::duration<double>(Clock::now() - startedAt_).count();
            moved -= std::min(moved, doneAtStart_);
        } else {
            seconds = static_cast<double>(last_.value("updated_ms", std::int64_t{0}) -
                                          last_.value("created_ms", std::int64_t{0})) /
                      1000;
        }
        auto files = count(last_, "files");
        auto total = count(last_, "bytes");
        std::cout << "completed: " << name << ", " << files << (files == 1 ? " file, " : " files, ")
                  << formatSize(total);
        // Time and rate are of what this command saw move: a transfer half done before it
        // started says how much of it that was.
        if (moved != total)
            std::cout << ", " << formatSize(moved) << " of it";
        std::cout << " in " << formatDuration(seconds);
        if (seconds > 0)
            std::cout << " (" << formatSize(static_cast<std::uint64_t>(moved / seconds)) << "/s)";
        std::cout << "\n";
        return kOk;
    }

    const node::Profile& profile_;
    std::string id_;
    json last_;
    std::string printedState_;
    bool asJson_;
    bool tty_;
    bool drawn_ = false;
    bool stateChanged_ = false;
    bool started_ = false;
    Clock::time_point startedAt_{};
    std::uint64_t doneAtStart_ = 0;
    Clock::time_point lastPlain_{};
};

// The absolute, lexically normal form of a path argument ("." and "dir/" name the folder).
// Not resolved: a symbolic link stays one (the daemon skips those).
std::filesystem::path absoluteArg(const std::string& text) {
    auto p = std::filesystem::absolute(text).lexically_normal();
    if (!p.has_filename() && p != p.root_path())
        p = p.parent_path();
    if (!dht::isValidUtf8(p.string())) // the control API speaks JSON, which is UTF-8
        throw Failure(kUsage, sanitizeForTerminal(text) + ": the path is not valid UTF-8");
    return p;
}

int cmdShare(const Global& g, const ShareOptions& o) {
    json paths = json::array();
    for (const auto& text : o.paths) {
        auto p = absoluteArg(text);
        std::error_code ec;
        if (!std::filesystem::exists(std::filesystem::symlink_status(p, ec)))
            throw Failure(kUsage, sanitizeForTerminal(text) + ": no such file or folder");
        paths.push_back(p.string());
    }
    if (!dht::isValidUtf8(o.message))
        throw Failure(kUsage, "--message is not valid UTF-8 text");
    auto profile = profileOf(g);
    auto to = resolveContact(profile, o.who);
    json params = {{"contact", to.toHex()}, {"paths", paths}, {"message", o.message}};
    auto r = rpcCall(profile, "transfer.offer", params, 1h); // the daemon hashes every byte
    const auto& t = r["transfer"];
    if (o.json)
        std::cout << r.dump() << std::endl;
    else
        std::cout << t.value("id", "") << std::endl;
    for (const auto& s : r.value("skipped", json::array()))
        std::cerr << "parley: skipped " << sanitizeForTerminal(s.value("path", "")) << ": "
                  << sanitizeForTerminal(s.value("reason", "")) << "\n";
    if (!o.wait)
        return kOk;
    return Follow(profile, t, o.json).run();
}

// A transfer named by its id or a unique start of it.
std::string resolveTransferId(const node::Profile& profile, const std::string& text) {
    std::string prefix = text;
    std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    bool hex = !prefix.empty() && prefix.size() <= 32 &&
               std::all_of(prefix.begin(), prefix.end(),
                           [](unsigned char c) { return std::isxdigit(c) != 0; });
    auto shown = "'" + sanitizeForTerminal(text.substr(0, 80)) + "'";
    if (!hex)
        throw Failure(kUsage, shown + " is not a transfer id: expected up to 32 hexadecimal "
                                      "characters (see 'parley transfers')");
    if (prefix.size() == 32)
        return prefix;
    std::vector<std::string> matches;
    auto list = rpcCall(profile, "transfers", json::object(), 10s);
    for (const auto& t : list["transfers"])
        if (auto id = t.value("id", ""); id.rfind(prefix, 0) == 0)
            matches.push_back(id);
    if (matches.empty())
        throw Failure(kUsage, "no transfer id starts with " + shown + " (see 'parley transfers')");
    if (matches.size() > 1)
        throw Failure(kUsage, shown + " starts " + std::to_string(matches.size()) +
                                  " transfer ids: give more of it");
    return matches.front();
}

int cmdTransfer(const Global& g, const std::string& action, const TransferOptions& o) {
    auto profile = profileOf(g);
    json params = {{"id", resolveTransferId(profile, o.id)}};
    if (action == "accept" && !o.to.empty())
        params["dir"] = absoluteArg(o.to).string();
    auto r = rpcCall(profile, "transfer." + action, params, 30s);
    const auto& t = r["transfer"];
    if (o.json) {
        std::cout << r.dump() << std::endl;
    } else {
        static const std::map<std::string, std::string> said = {{"accept", "Accepted"},
                                                                {"decline", "Declined"},
                                                                {"cancel", "Cancelled"},
                                                                {"pause", "Paused"},
                                                                {"resume", "Resumed"}};
        std::cout << said.at(action) << ": " << sanitizeForTerminal(t.value("name", ""));
        if (action == "accept")
            std::cout << " into " << sanitizeForTerminal(t.value("dest", ""));
        std::cout << std::endl;
    }
    if (action == "accept" && o.wait)
        return Follow(profile, t, o.json).run();
    return kOk;
}

// One row of `parley transfers`: the cells cut or padded to their columns.
std::string tableRow(const std::vector<std::string>& cells) {
    // Columns, a space included; < 0: left-aligned.
    static const int widths[] = {-10, -5, -15, -25, 6, 11, -2, -13, 5, 13};
    std::string row;
    for (std::size_t i = 0; i < cells.size() && i < std::size(widths); ++i) {
        auto width = static_cast<std::size_t>(std::abs(widths[i]));
        auto cell = fit(cells[i], widths[i] < 0 ? width - 1 : width);
        auto fill = std::string(width - std::min(width, displayWidth(cell)), ' ');
        row += widths[i] < 0 ? cell + fill : fill + cell;
    }
    return row;
}

void printTable(const json& transfers, const json& contacts) {
    if (transfers.empty()) {
        std::cout << "No transfers yet: 'parley share <contact> <path>...'.\n";
        return;
    }
    std::cout << tableRow(
                     {"ID", "DIR", "CONTACT", "NAME", "FILES", "SIZE", "", "STATE", "DONE", "RATE"})
              << "\n";
    for (const auto& t : transfers) {
        auto contact = dht::ContactId::parse(t.value("contact", ""));
        auto state = t.value("state", "");
        double rate = t.value("rate", 0.0);
        std::cout << tableRow({t.value("id", "").substr(0, 8),
                               t.value("direction", "") == "out" ? "→" : "←",
                               contact ? contactLabel(contacts, *contact) : std::string("?"),
                               sanitizeForTerminal(t.value("name", "")),
                               std::to_string(count(t, "files")), formatSize(count(t, "bytes")), "",
                               sanitizeForTerminal(state), percentOf(t),
                               state == "transferring" && rate > 0
                                   ? formatSize(static_cast<std::uint64_t>(rate)) + "/s"
                                   : std::string("-")})
                  << "\n";
    }
}

int cmdTransfers(const Global& g, const ListOptions& o) {
    auto profile = profileOf(g);
    std::optional<InterruptGuard> guard;
    if (o.watch)
        guard.emplace();
    bool tty = ::isatty(STDOUT_FILENO);
    std::string shown;
    do {
        auto transfers = rpcCall(profile, "transfers", json::object(), 10s)["transfers"];
        if (o.json) {
            if (auto line = transfers.dump(); line != shown) // --watch: each change once
                std::cout << line << std::endl;
            shown = transfers.dump();
        } else {
            if (o.watch && tty)
                std::cout << "\033[H\033[2J";
            else if (o.watch)
                std::cout << "\n";
            printTable(transfers, rpcCall(profile, "contacts", json::object(), 10s));
            std::cout << std::flush;
        }
        if (o.watch)
            ::poll(nullptr, 0, 1000); // Ctrl-C ends it early (EINTR)
    } while (o.watch && !guard->interrupted());
    return kOk;
}

void addTransferSubcommands(CLI::App& app, const Global& g, Commands& commands) {
    auto* transfer = app.add_subcommand("transfer", "answer or steer a transfer: accept, "
                                                    "decline, cancel, pause, resume");
    transfer->require_subcommand(1);
    auto o = std::make_shared<TransferOptions>();
    auto* accept = transfer->add_subcommand(
        "accept", "accept an offer: the files go into the downloads folder or --to");
    accept->add_option("id", o->id, kIdHelp)->required();
    accept->add_option("--to", o->to, "the folder to put them in (made absolute)");
    accept->add_flag("--wait", o->wait, kWaitHelp);
    accept->add_flag("--json", o->json, "print JSON: {transfer} (and each event with --wait)");
    commands.push_back({accept, [&g, o] { return cmdTransfer(g, "accept", *o); }});
    for (auto [action, help] :
         {std::pair{"decline", "decline an offer: nothing is sent, the sender is told"},
          std::pair{"cancel", "end a transfer for good, on both sides"},
          std::pair{"pause", "stop moving bytes until 'parley transfer resume'"},
          std::pair{"resume", "go on with a paused transfer where it stopped"}}) {
        auto* cmd = transfer->add_subcommand(action, help);
        cmd->add_option("id", o->id, kIdHelp)->required();
        cmd->add_flag("--json", o->json, "print JSON: {transfer}");
        commands.push_back(
            {cmd, [&g, o, name = std::string(action)] { return cmdTransfer(g, name, *o); }});
    }
}

} // namespace

void addTransferCommands(CLI::App& app, const Global& g, Commands& commands) {
    auto so = std::make_shared<ShareOptions>();
    auto* share = app.add_subcommand(
        "share", "offer files and folders to a contact; they go out when the contact accepts");
    share->add_option("contact", so->who, kContactHelp)->required();
    share->add_option("paths", so->paths, "files and folders to offer")->required();
    share->add_option("--message", so->message, "a note for them (at most 4096 bytes)");
    share->add_flag("--wait", so->wait, kWaitHelp);
    share->add_flag("--json", so->json,
                    "print JSON: {transfer, skipped} (and each event with --wait)");
    commands.push_back({share, [&g, so] { return cmdShare(g, *so); }});

    auto lo = std::make_shared<ListOptions>();
    auto* transfers = app.add_subcommand(
        "transfers", "the transfers to and from your contacts, with their state and progress");
    transfers->add_flag("--json", lo->json, "print JSON: [{id, contact, direction, state, ...}]");
    transfers->add_flag("--watch", lo->watch, "redraw every second until Ctrl-C");
    commands.push_back({transfers, [&g, lo] { return cmdTransfers(g, *lo); }});

    addTransferSubcommands(app, g, commands);
}

} // namespace parley::cli
