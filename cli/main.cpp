// The `parley` program: `parley daemon` runs a node; every other command is a thin client
// of the daemon's control API (DESIGN.md §1, §10).
#include "chat_ui.h"
#include "control_client.h"
#include "dht/contact_id.h"
#include "dht/identity.h"
#include "node/api/control_server.h"
#include "node/node.h"
#include "node/store/profile.h"
#include "terminal.h"
#ifdef PARLEY_HAVE_MEDIA_CHECK
#include "media_check.h"
#endif

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using nlohmann::json;
using namespace parley;
using namespace std::chrono_literals;

namespace {

enum ExitCode { kOk = 0, kRuntime = 1, kUsage = 2, kNoDaemon = 3 };

// A failure with the exit code it maps to; main() prints it once.
struct Failure : std::runtime_error {
    Failure(ExitCode c, const std::string& m) : std::runtime_error(m), code(c) {}
    ExitCode code;
};

struct Global {
    std::optional<std::string> profile;
    std::string passphraseFile;
    int passphraseFd = -1; // internal: `parley up` hands the passphrase to its daemon this way
};

struct DaemonFlags {
    std::optional<std::uint16_t> port;
    std::string bind;
    std::vector<std::string> bootstrap;
    std::optional<std::uint32_t> network;
    bool noLan = false;
    bool noPortmap = false;
    std::string logLevel = "info";
};

node::Profile profileOf(const Global& g) {
    return node::Profile(node::Profile::resolveDir(g.profile));
}

std::string trimNewline(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
        s.pop_back();
    return s;
}

// The passphrase from --passphrase-file or PARLEY_PASSPHRASE, if either is given.
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

dht::Identity loadIdentity(const Global& g, const node::Profile& profile) {
    if (!profile.hasIdentity())
        throw Failure(kRuntime, "no identity in " + profile.dir().string() +
                                    ": create one with 'parley init'");
    std::string passphrase;
    if (profile.identityEncrypted()) {
        if (auto p = passphraseFromFlags(g))
            passphrase = *p;
        else if (auto typed = cli::promptHidden("Passphrase for " + profile.dir().string() + ": "))
            passphrase = *typed;
    }
    dht::Identity identity;
    auto err = profile.loadIdentity(passphrase, identity);
    if (err != dht::IdentityError::ok)
        throw Failure(kRuntime, std::string(dht::describe(err)));
    return identity;
}

void setLogLevel(const std::string& level) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("parley", sink);
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off")
        throw Failure(kUsage, "unknown log level '" + level +
                                  "': use trace, debug, info, warn, error or off");
    spdlog::set_level(lvl);
}

std::string notRunningMessage(const node::Profile& profile) {
    return "the parley daemon is not running for profile " + profile.dir().string() +
           ": start it with 'parley up' (background) or 'parley daemon' (foreground)";
}

json rpcCall(const node::Profile& profile, const std::string& method, const json& params,
             std::chrono::milliseconds timeout) {
    try {
        cli::ControlClient client(profile.controlSocketPath());
        return client.call(method, params, timeout);
    } catch (const cli::DaemonNotRunning&) {
        throw Failure(kNoDaemon, notRunningMessage(profile));
    } catch (const cli::RpcError& e) {
        throw Failure(e.code == node::rpc::kInvalidParams ? kUsage : kRuntime, e.what());
    }
}

bool daemonAnswers(const node::Profile& profile) {
    try {
        cli::ControlClient client(profile.controlSocketPath());
        client.call("status", json::object(), 2s);
        return true;
    } catch (const std::exception&) {
        return false;
    }
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

// Flag errors are usage errors, reported before anything else happens.
void validateDaemonFlags(const DaemonFlags& f) {
    for (auto& b : f.bootstrap)
        if (!dht::splitHostPort(b))
            throw Failure(kUsage, "bad bootstrap address '" + b + "': expected HOST:PORT");
    if (!f.bind.empty() && !dht::SocketAddress::parse(f.bind))
        throw Failure(kUsage, "bad --bind address '" + f.bind + "': expected a numeric IP address");
}

// ---- commands -------------------------------------------------------------------------

int cmdInit(const Global& g, const std::string& name, unsigned keyBits, bool askPassphrase) {
    if (name.empty() || name.size() > dht::kMaxNameSize || !dht::isValidUtf8(name))
        throw Failure(kUsage, "--name must be 1 to " + std::to_string(dht::kMaxNameSize) +
                                  " bytes of UTF-8");
    auto profile = profileOf(g);
    if (profile.hasIdentity())
        throw Failure(kRuntime, "an identity already exists in " + profile.dir().string() +
                                    "; refusing to overwrite it (choose another --profile)");
    std::string passphrase;
    if (auto p = passphraseFromFlags(g)) {
        passphrase = *p;
    } else if (askPassphrase) {
        auto first = cli::promptHidden("New passphrase: ");
        if (!first)
            throw Failure(kUsage, "--passphrase needs a terminal; use PARLEY_PASSPHRASE or "
                                  "--passphrase-file instead");
        auto second = cli::promptHidden("Repeat passphrase: ");
        if (!second || *first != *second)
            throw Failure(kUsage, "the passphrases do not match; nothing was created");
        if (first->empty())
            throw Failure(kUsage, "an empty passphrase encrypts nothing; nothing was created "
                                  "(leave out --passphrase for an unencrypted key)");
        passphrase = *first;
    }
    auto identity = profile.createIdentity(name, keyBits, passphrase);
    std::cerr << "Created identity '" << cli::sanitizeForTerminal(name) << "' (RSA-" << keyBits
              << (passphrase.empty() ? ", key not encrypted" : ", key encrypted") << ") in "
              << profile.dir().string() << "\nYour contact id (share it with people):\n";
    std::cout << identity.contactId().toHex() << "\n";
    return kOk;
}

int cmdId(const Global& g, bool qr, bool asJson) {
    auto profile = profileOf(g);
    if (!fs::exists(profile.certificatePath()))
        throw Failure(kRuntime, "no identity in " + profile.dir().string() +
                                    ": create one with 'parley init'");
    auto info = dht::inspectCertificate(node::readFile(profile.certificatePath()));
    if (!info)
        throw Failure(kRuntime, profile.certificatePath().string() + " is damaged");
    auto hex = info->id.toHex();
    if (asJson) {
        std::cout << json{{"id", hex}, {"name", info->name}}.dump() << "\n";
        return kOk;
    }
    std::cout << hex << "\n";
    if (qr)
        std::cout << cli::renderQr(hex);
    return kOk;
}

node::NodeOptions nodeOptions(const node::Profile& profile, const DaemonFlags& f,
                              const dht::Identity& identity) {
    auto settings = profile.loadSettings();
    node::NodeOptions o;
    o.profileDir = profile.dir();
    o.overlay.bindAddress = !f.bind.empty() ? f.bind : settings.bind.value_or("");
    if (f.port)
        o.overlay.port = *f.port;
    else if (settings.port)
        o.overlay.port = *settings.port;
    else
        o.overlay.port = profile.lastPort().value_or(0);
    o.overlay.network = f.network ? *f.network : settings.network.value_or(0);
    o.overlay.bootstrap = f.bootstrap;
    for (auto& b : settings.bootstrap)
        o.overlay.bootstrap.push_back(b);
    o.overlay.lanDiscovery = !f.noLan && settings.lan.value_or(true);
    o.portMapping = !f.noPortmap && settings.portmap.value_or(true);
    o.overlay.nodesFile = profile.nodesPath().string();
    o.overlay.name = identity.name();
    for (auto& b : o.overlay.bootstrap)
        if (!dht::splitHostPort(b))
            throw Failure(kUsage, "bad bootstrap address '" + b + "': expected HOST:PORT");
    return o;
}

// Holds DIR/daemon.lock for the daemon's lifetime: one daemon per profile.
int lockProfile(const node::Profile& profile) {
    int fd = ::open(profile.lockPath().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        throw Failure(kRuntime,
                      "cannot open " + profile.lockPath().string() + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
        throw Failure(kRuntime, "a parley daemon is already running for " + profile.dir().string() +
                                    " (stop it with 'parley down')");
    std::string pid = std::to_string(::getpid()) + "\n";
    [[maybe_unused]] auto r = ::ftruncate(fd, 0);
    [[maybe_unused]] auto w = ::write(fd, pid.data(), pid.size());
    return fd;
}

int cmdDaemon(const Global& g, const DaemonFlags& f) {
    setLogLevel(f.logLevel);
    validateDaemonFlags(f);
    auto profile = profileOf(g);
    if (!profile.hasIdentity())
        throw Failure(kRuntime, "no identity in " + profile.dir().string() +
                                    ": create one with 'parley init'");
    int lockFd = lockProfile(profile);
    auto identity = loadIdentity(g, profile);
    auto options = nodeOptions(profile, f, identity);

    // Signals are taken synchronously below, never by a handler in an arbitrary thread.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    std::unique_ptr<node::Node> node;
    try {
        node = std::make_unique<node::Node>(options, identity);
        node->start();
    } catch (const std::system_error& e) {
        bool triedLastPort = !f.port && options.overlay.port != 0 && !profile.loadSettings().port;
        bool portTaken = e.code() == std::errc::address_in_use;
        if (!triedLastPort || !portTaken)
            throw Failure(kRuntime, e.what());
        spdlog::info("last port {} is taken, using another", options.overlay.port);
        options.overlay.port = 0;
        node = std::make_unique<node::Node>(options, identity);
        node->start();
    } catch (const std::exception& e) {
        throw Failure(kRuntime, e.what());
    }
    profile.saveLastPort(node->port());
    spdlog::info("parley {} daemon: id {} on UDP port {}, network {}; control socket {}",
                 PARLEY_VERSION, node->id().toHex(), node->port(), options.overlay.network,
                 profile.controlSocketPath().string());

    timespec tick{0, 200'000'000};
    for (;;) {
        siginfo_t info{};
        int sig = sigtimedwait(&signals, &info, &tick);
        if (sig > 0) {
            spdlog::info("received {}, stopping", strsignal(sig));
            break;
        }
        if (node->waitForStopRequest(0ms)) {
            spdlog::info("stop requested through the control API");
            break;
        }
    }
    node->stop(3s);
    node.reset();
    ::close(lockFd);
    spdlog::info("stopped");
    return kOk;
}

int cmdUp(const Global& g, const DaemonFlags& f, const std::vector<std::string>& forwarded,
          double timeoutS) {
    validateDaemonFlags(f);
    if (spdlog::level::from_str(f.logLevel) == spdlog::level::off && f.logLevel != "off")
        throw Failure(kUsage, "unknown log level '" + f.logLevel + "'");
    if (!(timeoutS > 0 && timeoutS <= 3600))
        throw Failure(kUsage, "--timeout must be between 0 and 3600 seconds");
    auto profile = profileOf(g);
    if (daemonAnswers(profile)) {
        std::cerr << "parley daemon is already running for " << profile.dir().string() << "\n";
        return kOk;
    }
    if (!profile.hasIdentity())
        throw Failure(kRuntime, "no identity in " + profile.dir().string() +
                                    ": create one with 'parley init'");
    // Ask for the passphrase here, where there is a terminal, and check it before forking.
    std::optional<std::string> passphrase;
    if (profile.identityEncrypted()) {
        passphrase = passphraseFromFlags(g);
        if (!passphrase)
            passphrase = cli::promptHidden("Passphrase for " + profile.dir().string() + ": ");
        dht::Identity probe;
        auto err = profile.loadIdentity(passphrase.value_or(""), probe);
        if (err != dht::IdentityError::ok)
            throw Failure(kRuntime, std::string(dht::describe(err)));
    }
    std::vector<std::string> args = {"parley", "--profile", profile.dir().string()};
    // The passphrase travels through a pipe, never the daemon's environment or arguments.
    int pipeFds[2] = {-1, -1};
    if (passphrase) {
        if (::pipe2(pipeFds, O_CLOEXEC) != 0)
            throw Failure(kRuntime, std::string("cannot create a pipe: ") + std::strerror(errno));
        args.insert(args.end(), {"--passphrase-fd", "3"});
    }
    args.push_back("daemon");
    args.insert(args.end(), forwarded.begin(), forwarded.end());

    int logFd = ::open(profile.logPath().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logFd < 0)
        throw Failure(kRuntime,
                      "cannot open " + profile.logPath().string() + ": " + std::strerror(errno));
    auto logStart = ::lseek(logFd, 0, SEEK_END);
    pid_t pid = ::fork();
    if (pid < 0)
        throw Failure(kRuntime, std::string("cannot start the daemon: ") + std::strerror(errno));
    if (pid == 0) {
        ::setsid();
        int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::dup2(devnull, STDIN_FILENO);
        ::dup2(logFd, STDOUT_FILENO);
        ::dup2(logFd, STDERR_FILENO);
        if (pipeFds[0] == 3)
            ::fcntl(3, F_SETFD, 0); // already in place: only clear close-on-exec
        else if (pipeFds[0] >= 0)
            ::dup2(pipeFds[0], 3); // dup2 clears close-on-exec on the copy
        ::close_range(pipeFds[0] >= 0 ? 4 : 3, ~0U, 0);
        ::unsetenv("PARLEY_PASSPHRASE");
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv("/proc/self/exe", argv.data());
        std::perror("exec parley daemon");
        ::_exit(127);
    }
    ::close(logFd);
    if (pipeFds[0] >= 0) {
        ::close(pipeFds[0]);
        std::string line = *passphrase + "\n";
        [[maybe_unused]] auto n = ::write(pipeFds[1], line.data(), line.size());
        ::close(pipeFds[1]);
    }
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<long>(timeoutS * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            std::ifstream log(profile.logPath());
            log.seekg(logStart);
            std::string tail((std::istreambuf_iterator<char>(log)), {});
            throw Failure(kRuntime, "the daemon exited during start-up; its log (" +
                                        profile.logPath().string() + ") says:\n" + tail);
        }
        if (daemonAnswers(profile)) {
            auto st = rpcCall(profile, "status", json::object(), 2s);
            std::cerr << "parley daemon started (pid " << pid << ", UDP port " << st["dht"]["port"]
                      << ", log " << profile.logPath().string() << ")\n";
            return kOk;
        }
        std::this_thread::sleep_for(50ms);
    }
    ::kill(pid, SIGTERM);
    throw Failure(kRuntime,
                  "the daemon did not become ready in time; see " + profile.logPath().string());
}

int cmdDown(const Global& g, double timeoutS) {
    if (!(timeoutS > 0 && timeoutS <= 3600))
        throw Failure(kUsage, "--timeout must be between 0 and 3600 seconds");
    auto profile = profileOf(g);
    rpcCall(profile, "shutdown", json::object(), 5s);
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<long>(timeoutS * 1000));
    // The daemon holds daemon.lock until it has fully stopped.
    while (std::chrono::steady_clock::now() < deadline) {
        int fd = ::open(profile.lockPath().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return kOk;
        bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
        ::close(fd);
        if (free) {
            std::cerr << "parley daemon stopped\n";
            return kOk;
        }
        std::this_thread::sleep_for(50ms);
    }
    throw Failure(kRuntime, "the daemon did not stop in time");
}

int cmdStatus(const Global& g, bool asJson) {
    auto profile = profileOf(g);
    auto st = rpcCall(profile, "status", json::object(), 5s);
    if (asJson) {
        std::cout << st.dump(2) << "\n";
        return kOk;
    }
    const auto& d = st["dht"];
    std::cout << "id:       " << st["id"].get<std::string>() << "\n"
              << "name:     " << cli::sanitizeForTerminal(st["name"].get<std::string>()) << "\n"
              << "version:  " << st["version"].get<std::string>() << "\n"
              << "dht:      " << d["state"].get<std::string>() << ", " << d["nodes"]
              << " nodes, UDP port " << d["port"] << ", network " << d["network"] << "\n"
              << "public:   "
              << (d["public_address"].is_null() ? std::string("unknown yet")
                                                : d["public_address"].get<std::string>())
              << "\n"
              << "uptime:   " << st["uptime_s"] << " s\n";
    return kOk;
}

int cmdLookup(const Global& g, const std::string& idText, double timeoutS, bool asJson) {
    auto id = dht::ContactId::parse(idText);
    if (!id)
        throw Failure(kUsage, "'" + cli::sanitizeForTerminal(idText.substr(0, 80)) +
                                  "' is not a contact id: expected 64 hexadecimal characters");
    if (!(timeoutS > 0 && timeoutS <= 300))
        throw Failure(kUsage, "--timeout must be between 0 and 300 seconds");
    auto profile = profileOf(g);
    auto r = rpcCall(profile, "lookup", {{"id", id->toHex()}, {"timeout", timeoutS}},
                     std::chrono::milliseconds(static_cast<long>(timeoutS * 1000) + 5000));
    if (asJson) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    std::cout << r["id"].get<std::string>() << "\n  state:     " << r["state"].get<std::string>()
              << "\n  name:      "
              << (r["name"].is_null() ? std::string("-")
                                      : cli::sanitizeForTerminal(r["name"].get<std::string>()))
              << "\n  last seen: "
              << (r["last_seen"].is_null() ? std::string("-")
                                           : formatTime(r["last_seen"].get<std::int64_t>()))
              << "\n";
    return kOk;
}

dht::ContactId parseIdArg(const std::string& text) {
    auto id = dht::ContactId::parse(text);
    if (!id)
        throw Failure(kUsage, "'" + cli::sanitizeForTerminal(text.substr(0, 80)) +
                                  "' is not a contact id: expected 64 hexadecimal characters");
    return *id;
}

std::string orDash(const json& v) {
    if (v.is_null() || (v.is_string() && v.get<std::string>().empty()))
        return "-";
    return cli::sanitizeForTerminal(v.is_string() ? v.get<std::string>() : v.dump());
}

// A contact named by id, or by the alias or name of an existing contact.
dht::ContactId resolveContact(const node::Profile& profile, const std::string& text) {
    if (auto id = dht::ContactId::parse(text))
        return *id;
    auto list = rpcCall(profile, "contacts", json::object(), std::chrono::seconds(10));
    std::vector<dht::ContactId> matches;
    for (const auto& c : list)
        if (c.value("alias", "") == text || c.value("name", "") == text)
            if (auto id = dht::ContactId::parse(c.value("id", "")))
                matches.push_back(*id);
    if (matches.size() == 1)
        return matches.front();
    if (matches.empty())
        throw Failure(kUsage, "'" + cli::sanitizeForTerminal(text.substr(0, 80)) +
                                  "' is neither a contact id nor the alias or name of a contact "
                                  "(see 'parley contacts')");
    throw Failure(kUsage, "'" + cli::sanitizeForTerminal(text.substr(0, 80)) + "' names " +
                              std::to_string(matches.size()) +
                              " contacts: use the contact id instead");
}

int cmdPing(const Global& g, const std::string& who, int count, double intervalS, double timeoutS,
            bool asJson) {
    if (count < 0 || count > 1000)
        throw Failure(kUsage, "--count must be between 0 and 1000");
    if (!(intervalS >= 0 && intervalS <= 60))
        throw Failure(kUsage, "--interval must be between 0 and 60 seconds");
    if (!(timeoutS > 0 && timeoutS <= 300))
        throw Failure(kUsage, "--timeout must be between 0 and 300 seconds");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, who);
    // The daemon bounds the set-up by the timeout, then each ping by 5 s.
    auto budget = std::chrono::milliseconds(
        static_cast<long>((timeoutS + count * (intervalS + 5.0)) * 1000) + 5000);
    json params = {
        {"id", id.toHex()}, {"count", count}, {"interval", intervalS}, {"timeout", timeoutS}};
    auto r = rpcCall(profile, "ping", params, budget);
    if (asJson) {
        std::cout << r.dump() << "\n";
        return r.value("connected", false) ? kOk : kRuntime;
    }
    if (!r.value("connected", false)) {
        std::cerr << "parley: no direct connection to " << id.toHex().substr(0, 16) << ": "
                  << cli::sanitizeForTerminal(r.value("error", "unknown error")) << "\n";
        return kRuntime;
    }
    std::cout << "connected to " << id.toHex().substr(0, 16) << " at "
              << cli::sanitizeForTerminal(r.value("remote", "")) << " ("
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
        std::cerr << "parley: " << cli::sanitizeForTerminal(r.value("error", "")) << "\n";
    return r.value("lost", 0) == 0 && !r.contains("error") ? kOk : kRuntime;
}

// The display label of a contact: alias, else name, else the start of the id.
std::string contactLabel(const node::Profile& profile, const dht::ContactId& id) {
    auto list = rpcCall(profile, "contacts", json::object(), std::chrono::seconds(10));
    for (const auto& c : list)
        if (c.value("id", "") == id.toHex()) {
            auto label = c.value("alias", "").empty() ? c.value("name", "") : c.value("alias", "");
            if (!label.empty())
                return cli::sanitizeForTerminal(label);
        }
    return id.toHex().substr(0, 8);
}

std::string readStdinText() {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    return text;
}

int cmdSend(const Global& g, const std::string& who, std::string text, bool wait, double timeoutS,
            bool asJson) {
    if (!(timeoutS > 0 && timeoutS <= 3600))
        throw Failure(kUsage, "--timeout must be between 0 and 3600 seconds");
    if (text == "-")
        text = readStdinText();
    if (text.empty())
        throw Failure(kUsage, "the message is empty");
    if (!dht::isValidUtf8(text))
        throw Failure(kUsage, "the message is not valid UTF-8 text");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, who);
    json params = {{"id", id.toHex()}, {"text", text}};
    auto r = rpcCall(profile, "chat.send", params, std::chrono::seconds(15));
    if (wait) {
        json waitParams = {{"message", r["id"]}, {"timeout", timeoutS}};
        auto w = rpcCall(profile, "chat.wait", waitParams,
                         std::chrono::milliseconds(static_cast<long>(timeoutS * 1000) + 5000));
        r["state"] = w.value("state", r.value("state", ""));
        r["delivered"] = w.value("delivered", false);
        if (asJson)
            std::cout << r.dump() << "\n";
        else if (r["delivered"].get<bool>())
            std::cout << r["id"].get<std::string>() << " " << r["state"].get<std::string>() << "\n";
        if (!r["delivered"].get<bool>()) {
            std::cerr << "parley: not delivered within " << timeoutS
                      << " s (state: " << r.value("state", "?")
                      << "); the message stays queued and is delivered when "
                      << contactLabel(profile, id) << " is reachable\n";
            return kRuntime;
        }
        return kOk;
    }
    if (asJson)
        std::cout << r.dump() << "\n";
    else
        std::cout << r["id"].get<std::string>() << " " << r["state"].get<std::string>() << "\n";
    return kOk;
}

int cmdHistory(const Global& g, const std::string& who, int limit, bool asJson) {
    if (limit < 1 || limit > 100000)
        throw Failure(kUsage, "--limit must be between 1 and 100000");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, who);
    json params = {{"id", id.toHex()}, {"limit", limit}};
    auto r = rpcCall(profile, "chat.history", params, std::chrono::seconds(30));
    if (asJson) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    auto label = contactLabel(profile, id);
    if (r.empty())
        std::cout << "No messages with " << label << " yet.\n";
    for (const auto& m : r) {
        bool in = m.value("direction", "") == "in";
        std::cout << formatTime(m.value("ts", std::int64_t{0}) / 1000) << "  "
                  << (in ? label : std::string("you")) << ": "
                  << cli::sanitizeForTerminal(m.value("text", ""));
        if (!in)
            std::cout << "  (" << m.value("state", "") << ")";
        std::cout << "\n";
    }
    return kOk;
}

int cmdChat(const Global& g, const std::string& who) {
    auto profile = profileOf(g);
    auto id = resolveContact(profile, who);
    auto label = contactLabel(profile, id);
    cli::ControlClient calls(profile.controlSocketPath()), events(profile.controlSocketPath());
    return cli::runChat(calls, events, cli::ChatPeer{id.toHex(), label});
}

int cmdContactAdd(const Global& g, const std::string& idText, const std::string& message,
                  const std::string& alias, bool asJson) {
    auto id = parseIdArg(idText);
    if (message.size() > dht::kMaxRequestMessageSize || !dht::isValidUtf8(message))
        throw Failure(kUsage, "--message must be at most " +
                                  std::to_string(dht::kMaxRequestMessageSize) + " bytes of UTF-8");
    auto r = rpcCall(profileOf(g), "contact.add",
                     {{"id", id.toHex()}, {"message", message}, {"alias", alias}}, 30s);
    if (asJson) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    auto delivery = r.value("delivery", std::string());
    auto state = r.value("state", std::string());
    if (state == "accepted" && delivery == "none")
        std::cout << "Already a contact.\n";
    else if (state == "accepted")
        std::cout << "They had asked you already: you are now contacts.\n";
    else if (delivery == "stored")
        std::cout << "Contact request delivered to their DHT inbox; they will see it when they "
                     "are online.\n";
    else if (delivery == "no-card")
        std::cout << "Their key card is not in the DHT yet (have they ever been online?): the "
                     "request stays pending and the daemon keeps trying while it runs.\n";
    else
        std::cout << "No DHT node has taken the request yet: it stays pending and the daemon "
                     "keeps trying while it runs.\n";
    return kOk;
}

int cmdContactSimple(const Global& g, const std::string& action, const std::string& idText) {
    auto id = parseIdArg(idText);
    rpcCall(profileOf(g), "contact." + action, {{"id", id.toHex()}}, 10s);
    static const std::map<std::string, std::string> said = {
        {"accept", "Accepted: you are now contacts."},
        {"decline", "Declined (they are not told)."},
        {"block", "Blocked: anything they send is dropped without a reply."},
        {"unblock", "Unblocked."},
        {"remove", "Removed."}};
    std::cout << said.at(action) << "\n";
    return kOk;
}

int cmdRequests(const Global& g, bool asJson) {
    auto r = rpcCall(profileOf(g), "contact.requests", json::object(), 10s);
    if (asJson) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    if (r.empty())
        std::cout << "No contact requests.\n";
    for (const auto& q : r)
        std::cout << q["id"].get<std::string>() << "\n  name:     " << orDash(q["name"])
                  << "\n  message:  " << orDash(q["message"])
                  << "\n  received: " << formatTime(q["received"].get<std::int64_t>()) << "\n";
    return kOk;
}

int cmdContacts(const Global& g, bool asJson) {
    auto r = rpcCall(profileOf(g), "contacts", json::object(), 10s);
    if (asJson) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    if (r.empty())
        std::cout << "No contacts yet: 'parley contact add <contact-id>'.\n";
    for (const auto& c : r) {
        auto label = !c["alias"].get<std::string>().empty() ? c["alias"] : c["name"];
        std::cout << c["id"].get<std::string>().substr(0, 16) << "…  " << std::left << std::setw(9)
                  << c["state"].get<std::string>() << " " << std::setw(8)
                  << (c["state"] == "accepted" ? c["presence"].get<std::string>() : "")
                  << orDash(label);
        if (!c["last_seen"].is_null() && c["state"] == "accepted")
            std::cout << "  (last seen " << formatTime(c["last_seen"].get<std::int64_t>()) << ")";
        if (auto unread = c.value("unread", 0); unread > 0)
            std::cout << "  " << unread << " unread";
        std::cout << "\n";
    }
    return kOk;
}

void addDaemonFlags(CLI::App* cmd, DaemonFlags& f) {
    cmd->add_option(
        "--port", f.port,
        "UDP port for DHT and direct connections (default: the last one used, else any)");
    cmd->add_option("--bind", f.bind, "bind to this address only (default: every address)");
    cmd->add_option("--bootstrap", f.bootstrap,
                    "bootstrap node HOST:PORT (repeatable; also 'bootstrap' in DIR/config.json)");
    cmd->add_option("--network", f.network,
                    "DHT network id (0 = the public network; others are private)");
    cmd->add_flag("--no-lan", f.noLan,
                  "no LAN discovery (multicast); it is off anyway when bound to loopback");
    cmd->add_flag("--no-portmap", f.noPortmap,
                  "do not ask the router for a port mapping (NAT-PMP, UPnP); never asked when "
                  "bound to loopback");
    cmd->add_option("--log-level", f.logLevel, "trace, debug, info, warn, error or off")
        ->capture_default_str();
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"parley: a serverless, end-to-end encrypted messenger.\n"
                 "Run a node with 'parley up', share the contact id 'parley id' prints, and find\n"
                 "people by theirs with 'parley lookup'. Exit codes: 0 ok, 1 runtime error,\n"
                 "2 usage error, 3 daemon not running."};
    app.require_subcommand(1);
    app.set_version_flag("--version", PARLEY_VERSION);
    Global g;
    app.add_option("--profile", g.profile,
                   "profile directory (default: $PARLEY_PROFILE, else ~/.local/share/parley)");
    app.add_option("--passphrase-fd", g.passphraseFd,
                   "read the key passphrase from this file descriptor (used by 'parley up')")
        ->group("");
    app.add_option("--passphrase-file", g.passphraseFile,
                   "read the key passphrase from the first line of this file "
                   "(also: PARLEY_PASSPHRASE, or a prompt)");

    std::string name = "parley user";
    unsigned keyBits = dht::Identity::kDefaultKeyBits;
    bool askPassphrase = false;
    auto* init = app.add_subcommand("init", "create the identity and print its contact id");
    init->add_option("--name", name, "display name published on the key card")
        ->capture_default_str();
    init->add_option("--key-bits", keyBits, "RSA key size")
        ->check(CLI::Range(dht::Identity::kMinKeyBits, dht::Identity::kMaxKeyBits))
        ->capture_default_str();
    init->add_flag("--passphrase", askPassphrase,
                   "ask for a passphrase that encrypts the private key");

    bool qr = false, idJson = false;
    auto* id = app.add_subcommand("id", "print this profile's contact id");
    id->add_flag("--qr", qr, "also draw it as a QR code");
    id->add_flag("--json", idJson, "print JSON");

    DaemonFlags daemonFlags;
    auto* daemon = app.add_subcommand("daemon", "run the node in the foreground (Ctrl-C stops it)");
    addDaemonFlags(daemon, daemonFlags);

    DaemonFlags upFlags;
    double upTimeout = 20;
    auto* up = app.add_subcommand("up", "start the daemon in the background unless it runs; "
                                        "return when it is ready");
    addDaemonFlags(up, upFlags);
    up->add_option("--timeout", upTimeout, "seconds to wait for readiness")->capture_default_str();

    double downTimeout = 15;
    auto* down = app.add_subcommand("down", "stop the background daemon");
    down->add_option("--timeout", downTimeout, "seconds to wait for it to stop")
        ->capture_default_str();

    bool statusJson = false;
    auto* status = app.add_subcommand("status", "show the node's id and DHT state");
    status->add_flag("--json", statusJson, "print JSON");

    std::string chatWho, chatText;
    bool sendWait = false, sendJson = false, historyJson = false;
    double sendTimeout = 30;
    int historyLimit = 50;
    auto* send = app.add_subcommand(
        "send", "send a chat message; it is queued at once and delivered directly, or through "
                "their DHT inbox while they are offline");
    send->add_option("contact", chatWho, "contact id, or the alias or name of a contact")
        ->required();
    send->add_option("text", chatText, "the message (UTF-8; '-' reads it from standard input)")
        ->required();
    send->add_flag("--wait", sendWait,
                   "return once it is delivered (exit 1 after --timeout; it "
                   "stays queued)");
    send->add_option("--timeout", sendTimeout, "seconds --wait waits")->capture_default_str();
    send->add_flag("--json", sendJson, "print JSON: id, seq, state (and delivered with --wait)");
    auto* historyCmd = app.add_subcommand("history", "the messages of a conversation");
    historyCmd->add_option("contact", chatWho, "contact id, or the alias or name of a contact")
        ->required();
    historyCmd->add_option("--limit", historyLimit, "the last N messages")->capture_default_str();
    historyCmd->add_flag("--json", historyJson,
                         "print JSON: [{id, contact, direction, seq, ts, text, state}]");
    auto* chatCmd = app.add_subcommand(
        "chat", "talk with a contact in the terminal: history, live messages, delivery states");
    chatCmd->add_option("contact", chatWho, "contact id, or the alias or name of a contact")
        ->required();

    std::string pingWho;
    int pingCount = 4;
    double pingInterval = 0.2, pingTimeout = 15;
    bool pingJson = false;
    auto* ping = app.add_subcommand(
        "ping", "set up (or reuse) the direct, encrypted connection to a contact and measure "
                "round trips over it");
    ping->add_option("contact", pingWho, "contact id, or the alias or name of a contact")
        ->required();
    ping->add_option("--count", pingCount, "pings to send (0: only connect)")
        ->capture_default_str();
    ping->add_option("--interval", pingInterval, "seconds between pings")->capture_default_str();
    ping->add_option("--timeout", pingTimeout, "seconds to wait for the connection")
        ->capture_default_str();
    ping->add_flag("--json", pingJson,
                   "print JSON: contact, connected, reused, setup_ms, rtt_ms, remote, role, lost");

    std::string lookupId;
    double lookupTimeout = 10;
    bool lookupJson = false;
    auto* lookup = app.add_subcommand("lookup", "find someone by contact id: online, offline "
                                                "or not-found, with name and last seen");
    lookup->add_option("contact-id", lookupId, "64 hexadecimal characters")->required();
    lookup->add_option("--timeout", lookupTimeout, "seconds before giving up")
        ->capture_default_str();
    lookup->add_flag("--json", lookupJson, "print JSON");

    auto* contact = app.add_subcommand("contact", "contact requests: add, requests, accept, "
                                                  "decline, block, unblock, remove");
    contact->require_subcommand(1);
    std::string contactId, contactMessage, contactAlias;
    bool contactJson = false;
    auto* cAdd = contact->add_subcommand("add", "ask someone to become your contact (an "
                                                "encrypted request into their DHT inbox)");
    cAdd->add_option("contact-id", contactId, "their contact id (64 hexadecimal characters)")
        ->required();
    cAdd->add_option("--message", contactMessage, "a note for them (at most 512 bytes)");
    cAdd->add_option("--alias", contactAlias, "your own name for them");
    cAdd->add_flag("--json", contactJson, "print JSON");
    auto* cRequests = contact->add_subcommand("requests", "incoming contact requests");
    cRequests->add_flag("--json", contactJson, "print JSON");
    std::map<std::string, CLI::App*> simple;
    for (auto [action, help] :
         {std::pair{"accept", "accept a request: you become each other's contacts"},
          std::pair{"decline", "decline a request (the sender is not told)"},
          std::pair{"block", "drop everything from this contact id, without a reply"},
          std::pair{"unblock", "stop blocking this contact id"},
          std::pair{"remove", "forget a contact"}}) {
        auto* cmd = contact->add_subcommand(action, help);
        cmd->add_option("contact-id", contactId, "their contact id")->required();
        simple[action] = cmd;
    }
    bool contactsJson = false;
    auto* contactsCmd = app.add_subcommand("contacts", "your contacts with their state and "
                                                       "presence");
    contactsCmd->add_flag("--json", contactsJson, "print JSON");

#ifdef PARLEY_HAVE_MEDIA_CHECK
    auto mediaCheck = cli::addMediaCheckCommand(app);
#endif

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? kOk : kUsage;
    }

    try {
        if (*init)
            return cmdInit(g, name, keyBits, askPassphrase);
        if (*id)
            return cmdId(g, qr, idJson);
        if (*daemon)
            return cmdDaemon(g, daemonFlags);
        if (*up) {
            // Forward the daemon flags exactly as given.
            std::vector<std::string> forwarded;
            if (upFlags.port)
                forwarded.insert(forwarded.end(), {"--port", std::to_string(*upFlags.port)});
            if (!upFlags.bind.empty())
                forwarded.insert(forwarded.end(), {"--bind", upFlags.bind});
            for (auto& b : upFlags.bootstrap)
                forwarded.insert(forwarded.end(), {"--bootstrap", b});
            if (upFlags.network)
                forwarded.insert(forwarded.end(), {"--network", std::to_string(*upFlags.network)});
            if (upFlags.noLan)
                forwarded.push_back("--no-lan");
            if (upFlags.noPortmap)
                forwarded.push_back("--no-portmap");
            forwarded.insert(forwarded.end(), {"--log-level", upFlags.logLevel});
            return cmdUp(g, upFlags, forwarded, upTimeout);
        }
        if (*down)
            return cmdDown(g, downTimeout);
        if (*status)
            return cmdStatus(g, statusJson);
        if (*lookup)
            return cmdLookup(g, lookupId, lookupTimeout, lookupJson);
        if (*send)
            return cmdSend(g, chatWho, chatText, sendWait, sendTimeout, sendJson);
        if (*historyCmd)
            return cmdHistory(g, chatWho, historyLimit, historyJson);
        if (*chatCmd)
            return cmdChat(g, chatWho);
        if (*ping)
            return cmdPing(g, pingWho, pingCount, pingInterval, pingTimeout, pingJson);
        if (*cAdd)
            return cmdContactAdd(g, contactId, contactMessage, contactAlias, contactJson);
        if (*cRequests)
            return cmdRequests(g, contactJson);
        for (auto& [action, cmd] : simple)
            if (*cmd)
                return cmdContactSimple(g, action, contactId);
        if (*contactsCmd)
            return cmdContacts(g, contactsJson);
#ifdef PARLEY_HAVE_MEDIA_CHECK
        if (mediaCheck.command && *mediaCheck.command)
            return mediaCheck.run();
#endif
    } catch (const Failure& e) {
        std::cerr << "parley: " << e.what() << "\n";
        return e.code;
    } catch (const std::exception& e) {
        std::cerr << "parley: " << e.what() << "\n";
        return kRuntime;
    }
    return kUsage;
}
