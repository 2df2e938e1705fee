// `parley daemon`, `up`, `down` and `status`: run the node in the foreground, start it in the
// background and wait until it is ready, stop it, and show its state.
#include "commands.h"
#include "control_client.h"
#include "dht/identity.h"
#include "dht/socket_address.h"
#include "node/node.h"
#include "terminal.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace parley::cli {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct DaemonFlags {
    std::optional<std::uint16_t> port;
    std::string bind;
    std::vector<std::string> bootstrap;
    std::optional<std::uint32_t> network;
    bool noLan = false;
    bool noPortmap = false;
    std::string logLevel = "info";
};

struct UpOptions {
    DaemonFlags flags;
    double timeoutS = 20;
};

// A daemon `parley up` has started: its pid and where its part of the log begins.
struct StartedDaemon {
    pid_t pid;
    off_t logStart;
};

std::string noIdentityMessage(const node::Profile& profile) {
    return "no identity in " + profile.dir().string() + ": create one with 'parley init'";
}

dht::Identity loadIdentity(const Global& g, const node::Profile& profile) {
    if (!profile.hasIdentity())
        throw Failure(kRuntime, noIdentityMessage(profile));
    std::string passphrase;
    if (profile.identityEncrypted()) {
        if (auto p = passphraseFromFlags(g))
            passphrase = *p;
        else if (auto typed = promptHidden("Passphrase for " + profile.dir().string() + ": "))
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

bool daemonAnswers(const node::Profile& profile) {
    try {
        ControlClient client(profile.controlSocketPath());
        client.call("status", json::object(), 2s);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

// Flag errors are usage errors, reported before anything else happens.
void validateDaemonFlags(const DaemonFlags& f) {
    for (auto& b : f.bootstrap)
        if (!dht::splitHostPort(b))
            throw Failure(kUsage, "bad bootstrap address '" + b + "': expected HOST:PORT");
    if (!f.bind.empty() && !dht::SocketAddress::parse(f.bind))
        throw Failure(kUsage, "bad --bind address '" + f.bind + "': expected a numeric IP address");
}

void checkTimeout(double timeoutS) {
    if (!(timeoutS > 0 && timeoutS <= 3600))
        throw Failure(kUsage, "--timeout must be between 0 and 3600 seconds");
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
    if (settings.downloads)
        o.transfers.downloads = *settings.downloads;
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

// Starts the node; if the last port it used is taken now (and no port was asked for), any.
std::unique_ptr<node::Node> startNode(const node::Profile& profile, const DaemonFlags& f,
                                      node::NodeOptions& options, const dht::Identity& identity) {
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
    return node;
}

int cmdDaemon(const Global& g, const DaemonFlags& f) {
    setLogLevel(f.logLevel);
    validateDaemonFlags(f);
    auto profile = profileOf(g);
    if (!profile.hasIdentity())
        throw Failure(kRuntime, noIdentityMessage(profile));
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

    auto node = startNode(profile, f, options, identity);
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

// The daemon flags of `parley up`, exactly as given, for the daemon it starts.
std::vector<std::string> forwardedFlags(const DaemonFlags& f) {
    std::vector<std::string> forwarded;
    if (f.port)
        forwarded.insert(forwarded.end(), {"--port", std::to_string(*f.port)});
    if (!f.bind.empty())
        forwarded.insert(forwarded.end(), {"--bind", f.bind});
    for (auto& b : f.bootstrap)
        forwarded.insert(forwarded.end(), {"--bootstrap", b});
    if (f.network)
        forwarded.insert(forwarded.end(), {"--network", std::to_string(*f.network)});
    if (f.noLan)
        forwarded.push_back("--no-lan");
    if (f.noPortmap)
        forwarded.push_back("--no-portmap");
    forwarded.insert(forwarded.end(), {"--log-level", f.logLevel});
    return forwarded;
}

// Asks for the passphrase of an encrypted key here, where there is a terminal, and checks it
// before the daemon is forked.
std::optional<std::string> checkedPassphrase(const Global& g, const node::Profile& profile) {
    std::optional<std::string> passphrase;
    if (profile.identityEncrypted()) {
        passphrase = passphraseFromFlags(g);
        if (!passphrase)
            passphrase = promptHidden("Passphrase for " + profile.dir().string() + ": ");
        dht::Identity probe;
        auto err = profile.loadIdentity(passphrase.value_or(""), probe);
        if (err != dht::IdentityError::ok)
            throw Failure(kRuntime, std::string(dht::describe(err)));
    }
    return passphrase;
}

// In the forked child: becomes `parley ... daemon` with its output in the log and the read
// end of the passphrase pipe (if any) on fd 3.
[[noreturn]] void execDaemon(std::vector<std::string>& args, int logFd, int passphraseFd) {
    ::setsid();
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(logFd, STDOUT_FILENO);
    ::dup2(logFd, STDERR_FILENO);
    if (passphraseFd == 3)
        ::fcntl(3, F_SETFD, 0); // already in place: only clear close-on-exec
    else if (passphraseFd >= 0)
        ::dup2(passphraseFd, 3); // dup2 clears close-on-exec on the copy
    ::close_range(passphraseFd >= 0 ? 4 : 3, ~0U, 0);
    ::unsetenv("PARLEY_PASSPHRASE");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    std::perror("exec parley daemon");
    ::_exit(127);
}

StartedDaemon spawnDaemon(const node::Profile& profile, const std::vector<std::string>& forwarded,
                          const std::optional<std::string>& passphrase) {
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
    if (pid == 0)
        execDaemon(args, logFd, pipeFds[0]);
    ::close(logFd);
    if (pipeFds[0] >= 0) {
        ::close(pipeFds[0]);
        std::string line = *passphrase + "\n";
        [[maybe_unused]] auto n = ::write(pipeFds[1], line.data(), line.size());
        ::close(pipeFds[1]);
    }
    return {pid, logStart};
}

int waitUntilReady(const node::Profile& profile, const StartedDaemon& daemon, double timeoutS) {
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<long>(timeoutS * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(daemon.pid, &status, WNOHANG) == daemon.pid) {
            std::ifstream log(profile.logPath());
            log.seekg(daemon.logStart);
            std::string tail((std::istreambuf_iterator<char>(log)), {});
            throw Failure(kRuntime, "the daemon exited during start-up; its log (" +
                                        profile.logPath().string() + ") says:\n" + tail);
        }
        if (daemonAnswers(profile)) {
            auto st = rpcCall(profile, "status", json::object(), 2s);
            std::cerr << "parley daemon started (pid " << daemon.pid << ", UDP port "
                      << st["dht"]["port"] << ", log " << profile.logPath().string() << ")\n";
            return kOk;
        }
        std::this_thread::sleep_for(50ms);
    }
    ::kill(daemon.pid, SIGTERM);
    throw Failure(kRuntime,
                  "the daemon did not become ready in time; see " + profile.logPath().string());
}

int cmdUp(const Global& g, const UpOptions& o) {
    const auto& f = o.flags;
    validateDaemonFlags(f);
    if (spdlog::level::from_str(f.logLevel) == spdlog::level::off && f.logLevel != "off")
        throw Failure(kUsage, "unknown log level '" + f.logLevel + "'");
    checkTimeout(o.timeoutS);
    auto profile = profileOf(g);
    if (daemonAnswers(profile)) {
        std::cerr << "parley daemon is already running for " << profile.dir().string() << "\n";
        return kOk;
    }
    if (!profile.hasIdentity())
        throw Failure(kRuntime, noIdentityMessage(profile));
    auto passphrase = checkedPassphrase(g, profile);
    auto daemon = spawnDaemon(profile, forwardedFlags(f), passphrase);
    return waitUntilReady(profile, daemon, o.timeoutS);
}

int cmdDown(const Global& g, double timeoutS) {
    checkTimeout(timeoutS);
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
              << "name:     " << sanitizeForTerminal(st["name"].get<std::string>()) << "\n"
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

void addDaemonCommands(CLI::App& app, const Global& g, Commands& commands) {
    auto daemonFlags = std::make_shared<DaemonFlags>();
    auto* daemon = app.add_subcommand("daemon", "run the node in the foreground (Ctrl-C stops it)");
    addDaemonFlags(daemon, *daemonFlags);
    commands.push_back({daemon, [&g, daemonFlags] { return cmdDaemon(g, *daemonFlags); }});

    auto uo = std::make_shared<UpOptions>();
    auto* up = app.add_subcommand("up", "start the daemon in the background unless it runs; "
                                        "return when it is ready");
    addDaemonFlags(up, uo->flags);
    up->add_option("--timeout", uo->timeoutS, "seconds to wait for readiness")
        ->capture_default_str();
    commands.push_back({up, [&g, uo] { return cmdUp(g, *uo); }});

    auto downTimeout = std::make_shared<double>(15);
    auto* down = app.add_subcommand("down", "stop the background daemon");
    down->add_option("--timeout", *downTimeout, "seconds to wait for it to stop")
        ->capture_default_str();
    commands.push_back({down, [&g, downTimeout] { return cmdDown(g, *downTimeout); }});

    auto statusJson = std::make_shared<bool>(false);
    auto* status = app.add_subcommand("status", "show the node's id and DHT state");
    status->add_flag("--json", *statusJson, "print JSON");
    commands.push_back({status, [&g, statusJson] { return cmdStatus(g, *statusJson); }});
}

} // namespace parley::cli
