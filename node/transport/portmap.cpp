// Router port mappings (see portmap.h): NAT-PMP through libnatpmp, else UPnP IGD through
// miniupnpc, on a worker thread that renews the mapping and retries with backoff. The
// worker never touches the io thread's state: it posts updates, and stops posting once
// stop() has begun.
#include "node/transport/portmap.h"

#include <algorithm>
#include <arpa/inet.h>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <functional>
#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
#include <mutex>
#include <spdlog/spdlog.h>
#include <sys/select.h>
#include <thread>

#define ENABLE_STRNATPMPERR
#include <natpmp.h>

namespace parley::node {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

constexpr auto kNatPmpWait = std::chrono::seconds(2); // a router on the LAN answers in ms
constexpr int kDiscoverRoundMs = 1000; // UPnP SSDP: rounds of M-SEARCHes (whole seconds: MX)
constexpr int kDiscoverRounds = 2;     // 2 s in all; stop() waits for one round at most
constexpr auto kRemoveBound = std::chrono::seconds(2); // stop(): removal and join
constexpr int kNatPmpTimedOut = -1000;                 // ours: no answer before the deadline
constexpr const char* kDescription = "parley";

std::string ipv4String(in_addr_t networkOrder) {
    char buf[INET_ADDRSTRLEN] = {};
    in_addr a{};
    a.s_addr = networkOrder;
    return inet_ntop(AF_INET, &a, buf, sizeof buf) ? buf : "?";
}

std::int64_t unixNowS() {
    return std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A mapping as the worker holds it: what is published, plus what renewal and removal need.
struct Granted {
    PortMapping pub;
    std::uint16_t externalPort = 0;
    seconds lifetime{0};
    Clock::time_point expiresAt;
    // UPnP only: the IGD's control point and our address as it saw it.
    std::string controlUrl, serviceType, lanAddr;
};

struct Attempt {
    std::optional<Granted> granted;
    std::string reason; // why there is none
};

Attempt failed(std::string reason) {
    return Attempt{std::nullopt, std::move(reason)};
}

// What the worker tells the io thread.
struct Update {
    std::string state;
    std::optional<PortMapping> mapping;
    std::string reason;
};

// The stop flag and its wake-up, shared by the io side and the worker thread.
struct Control {
    std::mutex m;
    std::condition_variable cv;
    bool stopping = false;
    bool finished = false;

    bool stopRequested() {
        std::lock_guard lk(m);
        return stopping;
    }
};

// --- NAT-PMP (RFC 6886) ---

struct NatPmpSession {
    natpmp_t n{};
    bool open = false;
    NatPmpSession() = default;
    NatPmpSession(const NatPmpSession&) = delete;
    NatPmpSession& operator=(const NatPmpSession&) = delete;
    ~NatPmpSession() {
        if (open)
            closenatpmp(&n);
    }
};

std::string natPmpError(int code) {
    if (code == kNatPmpTimedOut)
        return "no answer within " + std::to_string(kNatPmpWait.count()) + " s";
    const char* s = strnatpmperr(code);
    return s ? s : "error " + std::to_string(code);
}

// Waits for the answer to the pending request, letting libnatpmp resend on its schedule,
// until `deadline` or until `interrupted()`.
int awaitNatPmp(NatPmpSession& s, natpmpresp_t& resp, Clock::time_point deadline,
                const std::function<bool()>& interrupted) {
    for (;;) {
        int r = readnatpmpresponseorretry(&s.n, &resp);
        if (r != NATPMP_TRYAGAIN)
            return r;
        auto now = Clock::now();
        if (now >= deadline || interrupted())
            return kNatPmpTimedOut;
        timeval tv{};
        if (getnatpmprequesttimeout(&s.n, &tv) < 0)
            tv = timeval{0, 100'000};
        auto wait = std::min({std::chrono::microseconds(tv.tv_sec * 1'000'000LL + tv.tv_usec),
                              std::chrono::duration_cast<std::chrono::microseconds>(deadline - now),
                              std::chrono::microseconds(100'000)});
        wait = std::max(wait, std::chrono::microseconds(1'000));
        tv.tv_sec = static_cast<time_t>(wait.count() / 1'000'000);
        tv.tv_usec = static_cast<suseconds_t>(wait.count() % 1'000'000);
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(s.n.s, &fds);
        select(s.n.s + 1, &fds, nullptr, nullptr, &tv);
    }
}

Attempt natPmpMap(std::uint16_t internalPort, std::uint16_t wantedExternal, seconds lifetime,
                  const std::function<bool()>& interrupted) {
    NatPmpSession s;
    int r = initnatpmp(&s.n, 0, 0);
    if (r < 0)
        return failed(natPmpError(r));
    s.open = true;
    const std::string gateway = ipv4String(s.n.gateway);

    natpmpresp_t resp{};
    if ((r = sendpublicaddressrequest(&s.n)) < 0 ||
        (r = awaitNatPmp(s, resp, Clock::now() + kNatPmpWait, interrupted)) < 0)
        return failed("gateway " + gateway + ": " + natPmpError(r));
    if (resp.type != NATPMP_RESPTYPE_PUBLICADDRESS)
        return failed("gateway " + gateway + ": unexpected answer");
    const std::string externalIp = ipv4String(resp.pnu.publicaddress.addr.s_addr);
    if (!detail::isPublicIPv4(externalIp))
        return failed("gateway " + gateway + " has external address " + externalIp +
                      ", not a public one (is there another NAT outside it?)");

    resp = natpmpresp_t{};
    if ((r = sendnewportmappingrequest(&s.n, NATPMP_PROTOCOL_UDP, internalPort, wantedExternal,
                                       static_cast<std::uint32_t>(lifetime.count()))) < 0 ||
        (r = awaitNatPmp(s, resp, Clock::now() + kNatPmpWait, interrupted)) < 0)
        return failed("gateway " + gateway + ": " + natPmpError(r));
    if (resp.type != NATPMP_RESPTYPE_UDPPORTMAPPING || resp.pnu.newportmapping.lifetime == 0 ||
        resp.pnu.newportmapping.mappedpublicport == 0)
        return failed("gateway " + gateway + " granted no mapping");

    Granted g;
    g.externalPort = resp.pnu.newportmapping.mappedpublicport;
    g.lifetime = seconds(resp.pnu.newportmapping.lifetime);
    g.expiresAt = Clock::now() + g.lifetime;
    g.pub = PortMapping{"NAT-PMP", gateway, externalIp + ":" + std::to_string(g.externalPort),
                        unixNowS() + g.lifetime.count()};
    return Attempt{std::move(g), {}};
}

void natPmpRemove(const Granted& g, std::uint16_t internalPort, Clock::time_point deadline) {
    NatPmpSession s;
    if (initnatpmp(&s.n, 0, 0) < 0)
        return;
    s.open = true;
    // Lifetime 0 removes the mapping of this internal port (RFC 6886 §3.4).
    natpmpresp_t resp{};
    int r = sendnewportmappingrequest(&s.n, NATPMP_PROTOCOL_UDP, internalPort, 0, 0);
    if (r >= 0)
        r = awaitNatPmp(s, resp, deadline, [] { return false; });
    if (r < 0)
        spdlog::debug("removing the NAT-PMP mapping {}: {}", g.pub.external, natPmpError(r));
    else
        spdlog::debug("removed the NAT-PMP mapping {}", g.pub.external);
}

// --- UPnP IGD ---

std::string upnpError(int code) {
    const char* s = strupnperror(code);
    return s ? std::string(s) + " (" + std::to_string(code) + ")" : "error " + std::to_string(code);
}

// AddPortMapping for `g` (external port, lease): also how a mapping is renewed.
int upnpAdd(const Granted& g, std::uint16_t internalPort, seconds lifetime) {
    const std::string ext = std::to_string(g.externalPort);
    const std::string in = std::to_string(internalPort);
    const std::string lease = std::to_string(lifetime.count());
    return UPNP_AddPortMapping(g.controlUrl.c_str(), g.serviceType.c_str(), ext.c_str(), in.c_str(),
                               g.lanAddr.c_str(), kDescription, "UDP", nullptr, lease.c_str());
}

// SSDP search for an IGD. miniupnpc's upnpDiscover() tries its four search targets one
// after the other, each with the full delay (8 s when nothing answers); this sends them all at
// once per round instead, and stops between rounds when asked to. No minissdpd: its cache
// holds whatever the host's own network offers, even when we run in a network namespace.
UPNPDev* upnpSearch(int& err, const std::function<bool()>& interrupted) {
    static const char* const kTargets[] = {
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
        "upnp:rootdevice",
        nullptr,
    };
    for (int round = 0; round < kDiscoverRounds && !interrupted(); ++round) {
        err = 0;
        if (UPNPDev* devices = upnpDiscoverDevices(kTargets, kDiscoverRoundMs, nullptr, "",
                                                   UPNP_LOCAL_PORT_ANY, 0, 2, &err, 1))
            return devices;
        if (err != UPNPDISCOVER_SUCCESS)
            break;
    }
    return nullptr;
}

Attempt upnpMap(std::uint16_t internalPort, seconds lifetime,
                const std::function<bool()>& interrupted) {
    int err = 0;
    UPNPDev* devices = upnpSearch(err, interrupted);
    if (!devices)
        return failed(err == UPNPDISCOVER_SUCCESS
                          ? "no UPnP device answered discovery"
                          : "discovery failed (" + std::to_string(err) + ")");
    UPNPUrls urls{};
    IGDdatas data{};
    char lanAddr[64] = {};
    int igd = UPNP_GetValidIGD(devices, &urls, &data, lanAddr, sizeof lanAddr);
    freeUPNPDevlist(devices);
    Granted g;
    if (igd != 0) {
        g.controlUrl = urls.controlURL ? urls.controlURL : "";
        g.serviceType = data.first.servicetype;
        g.lanAddr = lanAddr;
        FreeUPNPUrls(&urls);
    }
    if (igd != 1) {
        return failed(igd == 0   ? "no UPnP Internet gateway device found"
                      : igd == 2 ? "the UPnP gateway " + detail::urlHost(g.controlUrl) +
                                       " is not connected, or its external address is not public"
                                 : "the UPnP devices found are not Internet gateways");
    }
    const std::string gateway = detail::urlHost(g.controlUrl);

    char externalIp[64] = {};
    int r = UPNP_GetExternalIPAddress(g.controlUrl.c_str(), g.serviceType.c_str(), externalIp);
    if (r != UPNPCOMMAND_SUCCESS)
        return failed("UPnP gateway " + gateway + ": GetExternalIPAddress: " + upnpError(r));
    if (!detail::isPublicIPv4(externalIp))
        return failed("UPnP gateway " + gateway + " has external address " +
                      std::string(externalIp) +
                      ", not a public one (is there another NAT outside it?)");

    g.externalPort = internalPort;
    g.lifetime = lifetime;
    r = upnpAdd(g, internalPort, lifetime);
    if (r == 725) { // OnlyPermanentLeasesSupported: ask for one, and remove it on stop
        g.lifetime = seconds(0);
        r = upnpAdd(g, internalPort, seconds(0));
    }
    if (r == 718) { // ConflictInMappingEntry: our port is taken; let the IGD (v2) pick one
        char reserved[8] = {};
        const std::string in = std::to_string(internalPort);
        const std::string lease = std::to_string(g.lifetime.count());
        r = UPNP_AddAnyPortMapping(g.controlUrl.c_str(), g.serviceType.c_str(), in.c_str(),
                                   in.c_str(), g.lanAddr.c_str(), kDescription, "UDP", nullptr,
                                   lease.c_str(), reserved);
        if (r == UPNPCOMMAND_SUCCESS)
            g.externalPort = static_cast<std::uint16_t>(std::atoi(reserved));
    }
    if (r != UPNPCOMMAND_SUCCESS || g.externalPort == 0)
        return failed("UPnP gateway " + gateway + ": AddPortMapping: " + upnpError(r));

    // A permanent lease is still renewed at half the lifetime we wanted: that notices a
    // router that forgot it.
    const seconds effective = g.lifetime.count() > 0 ? g.lifetime : lifetime;
    g.lifetime = effective;
    g.expiresAt = Clock::now() + effective;
    g.pub =
        PortMapping{"UPnP", gateway, std::string(externalIp) + ":" + std::to_string(g.externalPort),
                    unixNowS() + effective.count()};
    return Attempt{std::move(g), {}};
}

Attempt upnpRenew(const Granted& current, std::uint16_t internalPort, seconds lifetime) {
    int r = upnpAdd(current, internalPort, lifetime);
    if (r != UPNPCOMMAND_SUCCESS)
        return failed("UPnP gateway " + current.pub.gateway + ": renewing: " + upnpError(r));
    Granted g = current;
    g.lifetime = lifetime;
    g.expiresAt = Clock::now() + lifetime;
    g.pub.expiresUnixS = unixNowS() + lifetime.count();
    return Attempt{std::move(g), {}};
}

void upnpRemove(const Granted& g) {
    const std::string ext = std::to_string(g.externalPort);
    int r = UPNP_DeletePortMapping(g.controlUrl.c_str(), g.serviceType.c_str(), ext.c_str(), "UDP",
                                   nullptr);
    if (r != UPNPCOMMAND_SUCCESS)
        spdlog::debug("removing the UPnP mapping {}: {}", g.pub.external, upnpError(r));
    else
        spdlog::debug("removed the UPnP mapping {}", g.pub.external);
}

// --- the worker ---

class Worker {
public:
    using Publish = std::function<void(Update)>;

    Worker(std::shared_ptr<Control> control, Publish publish, std::uint16_t internalPort,
           seconds lifetime)
        : control_(std::move(control)), publish_(std::move(publish)), port_(internalPort),
          lifetime_(lifetime) {}

    void run() {
        try {
            loop();
        } catch (const std::exception& e) {
            spdlog::warn("port mapping stopped: {}", e.what());
        } catch (...) {
            spdlog::warn("port mapping stopped: unknown error");
        }
        {
            std::lock_guard lk(control_->m);
            control_->finished = true;
        }
        control_->cv.notify_all();
    }

private:
    void loop() {
        unsigned failures = 0;
        std::optional<Granted> current;
        const auto interrupted = [this] { return control_->stopRequested(); };
        while (!interrupted()) {
            Attempt a = attempt(current, interrupted);
            if (interrupted()) { // quietly: a worker stop() gave up on may outlive main()
                if (a.granted)
                    current = std::move(a.granted);
                break;
            }
            if (a.granted) {
                const bool changed = !current || current->pub.external != a.granted->pub.external ||
                                     current->pub.method != a.granted->pub.method;
                current = std::move(a.granted);
                failures = 0;
                if (changed)
                    spdlog::info("{}", detail::describeMapping(current->pub, port_));
                else
                    spdlog::debug("renewed the {} mapping {} for {} s", current->pub.method,
                                  current->pub.external, current->lifetime.count());
                publish_(Update{"mapped", current->pub, {}});
                sleepFor(detail::renewalDelay(current->lifetime));
                continue;
            }
            ++failures;
            std::optional<seconds> left;
            if (current) {
                auto l = std::chrono::duration_cast<seconds>(current->expiresAt - Clock::now());
                if (l > seconds(0))
                    left = l;
                else
                    current.reset();
            }
            const seconds wait = detail::retryDelay(failures, left);
            spdlog::debug("no port mapping for UDP port {}: {}; next try in {} s", port_, a.reason,
                          wait.count());
            if (!current)
                publish_(Update{"unavailable", std::nullopt, a.reason});
            sleepFor(wait);
        }
        if (current)
            remove(*current);
    }

    // Renews the current mapping the way it was made; else NAT-PMP, then UPnP.
    Attempt attempt(const std::optional<Granted>& current,
                    const std::function<bool()>& interrupted) {
        try {
            if (current) {
                return current->pub.method == "UPnP"
                           ? upnpRenew(*current, port_, lifetime_)
                           : natPmpMap(port_, current->externalPort, lifetime_, interrupted);
            }
            Attempt n = natPmpMap(port_, port_, lifetime_, interrupted);
            if (n.granted || interrupted())
                return n;
            Attempt u = upnpMap(port_, lifetime_, interrupted);
            if (!u.granted)
                u.reason = "NAT-PMP: " + n.reason + "; UPnP: " + u.reason;
            return u;
        } catch (const std::exception& e) {
            return failed(e.what());
        }
    }

    void remove(const Granted& g) {
        try {
            if (g.pub.method == "UPnP")
                upnpRemove(g);
            else
                natPmpRemove(g, port_, Clock::now() + kRemoveBound / 2);
        } catch (const std::exception& e) {
            spdlog::debug("removing the mapping {}: {}", g.pub.external, e.what());
        }
    }

    void sleepFor(seconds d) {
        std::unique_lock lk(control_->m);
        control_->cv.wait_for(lk, d, [this] { return control_->stopping; });
    }

    std::shared_ptr<Control> control_;
    Publish publish_;
    std::uint16_t port_;
    seconds lifetime_;
};

} // namespace

// --- the io-thread side ---

struct PortMapper::Impl : std::enable_shared_from_this<PortMapper::Impl> {
    asio::io_context& io;
    std::uint16_t port;
    seconds lifetime;

    // io thread
    std::string state = "disabled";
    std::optional<PortMapping> mapping;
    std::string reason;
    unsigned generation = 0; // updates from an earlier start() are ignored
    std::shared_ptr<Control> control;
    std::thread thread;

    Impl(asio::io_context& ioc, std::uint16_t p, seconds l) : io(ioc), port(p), lifetime(l) {}

    void apply(unsigned gen, Update u) {
        if (gen != generation || !control)
            return;
        state = std::move(u.state);
        mapping = std::move(u.mapping);
        reason = std::move(u.reason);
    }
};

PortMapper::PortMapper(asio::io_context& io, std::uint16_t internalPort, seconds lifetime)
    : impl_(std::make_shared<Impl>(io, internalPort, lifetime)) {}

PortMapper::~PortMapper() {
    stop();
}

void PortMapper::start() {
    Impl& s = *impl_;
    if (s.control)
        return;
    s.control = std::make_shared<Control>();
    const unsigned gen = ++s.generation;
    s.state = "discovering";
    s.mapping.reset();
    s.reason.clear();

    // Posted under the control mutex, and only while not stopping: once stop() has set the
    // flag, the worker never touches the io_context again, even if it outlives stop().
    auto publish = [control = s.control, io = &s.io, weak = std::weak_ptr<Impl>(impl_),
                    gen](Update u) {
        std::lock_guard lk(control->m);
        if (control->stopping)
            return;
        asio::post(*io, [weak, gen, u = std::move(u)]() mutable {
            if (auto impl = weak.lock())
                impl->apply(gen, std::move(u));
        });
    };
    auto worker = std::make_shared<Worker>(s.control, std::move(publish), s.port, s.lifetime);
    s.thread = std::thread([worker] { worker->run(); });
}

void PortMapper::stop() {
    Impl& s = *impl_;
    if (!s.control)
        return;
    auto control = std::move(s.control);
    bool finished = false;
    {
        std::unique_lock lk(control->m);
        control->stopping = true;
        control->cv.notify_all();
        // The worker removes the mapping (bounded by kRemoveBound / 2 for NAT-PMP, by
        // miniupnpc's socket timeouts for UPnP); a little slack beyond that, then give up.
        finished = control->cv.wait_for(lk, kRemoveBound, [&] { return control->finished; });
    }
    if (finished) {
        s.thread.join();
    } else {
        spdlog::debug("port mapping: the router did not answer in time; leaving the worker to "
                      "finish on its own");
        s.thread.detach();
    }
    s.state = "disabled";
    s.mapping.reset();
    s.reason.clear();
}

std::vector<std::string> PortMapper::mappedEndpoints() const {
    if (impl_->state == "mapped" && impl_->mapping)
        return {impl_->mapping->external};
    return {};
}

PortMapStatus PortMapper::status() const {
    const auto& s = *impl_;
    if (s.state == "mapped" && s.mapping)
        return {s.state, s.mapping, ""};
    return {s.state, std::nullopt, s.reason};
}

// --- sans-I/O helpers ---

namespace detail {

seconds renewalDelay(seconds granted) {
    return std::max(granted / 2, seconds(30));
}

seconds retryDelay(unsigned failures, std::optional<seconds> leftOnMapping) {
    constexpr seconds kFirst{60}, kCap{30 * 60};
    seconds d = kFirst;
    for (unsigned i = 1; i < failures && d < kCap; ++i)
        d *= 2;
    d = std::min(d, kCap);
    if (leftOnMapping)
        d = std::min(d, std::max(*leftOnMapping / 2, seconds(5)));
    return d;
}

bool isPublicIPv4(std::string_view dotted) {
    in_addr addr{};
    if (inet_pton(AF_INET, std::string(dotted).c_str(), &addr) != 1)
        return false;
    const std::uint32_t ip = ntohl(addr.s_addr);
    struct Range {
        std::uint32_t net;
        int bits;
    };
    constexpr auto ip4 = [](unsigned a, unsigned b, unsigned c, unsigned d) {
        return static_cast<std::uint32_t>(a << 24 | b << 16 | c << 8 | d);
    };
    // IANA IPv4 special-purpose ranges (RFC 6890 and successors).
    const Range reserved[] = {
        {ip4(0, 0, 0, 0), 8},       {ip4(10, 0, 0, 0), 8},     {ip4(100, 64, 0, 0), 10},
        {ip4(127, 0, 0, 0), 8},     {ip4(169, 254, 0, 0), 16}, {ip4(172, 16, 0, 0), 12},
        {ip4(192, 0, 0, 0), 24},    {ip4(192, 0, 2, 0), 24},   {ip4(192, 31, 196, 0), 24},
        {ip4(192, 52, 193, 0), 24}, {ip4(192, 88, 99, 0), 24}, {ip4(192, 168, 0, 0), 16},
        {ip4(192, 175, 48, 0), 24}, {ip4(198, 18, 0, 0), 15},  {ip4(198, 51, 100, 0), 24},
        {ip4(203, 0, 113, 0), 24},  {ip4(224, 0, 0, 0), 4},    {ip4(240, 0, 0, 0), 4},
    };
    for (const auto& r : reserved) {
        if ((ip >> (32 - r.bits)) == (r.net >> (32 - r.bits)))
            return false;
    }
    return true;
}

std::string urlHost(std::string_view url) {
    auto scheme = url.find("://");
    if (scheme == std::string_view::npos)
        return {};
    auto rest = url.substr(scheme + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (auto at = rest.rfind('@'); at != std::string_view::npos)
        rest = rest.substr(at + 1);
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        return close == std::string_view::npos ? std::string()
                                               : std::string(rest.substr(1, close - 1));
    }
    return std::string(rest.substr(0, rest.find(':')));
}

std::string describeMapping(const PortMapping& m, std::uint16_t internalPort) {
    return m.method + " mapping " + m.external + " -> port " + std::to_string(internalPort) +
           " via " + m.gateway;
}

} // namespace detail

} // namespace parley::node
