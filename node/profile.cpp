// Profile directory layout, identity files and settings.
#include "profile.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace parley::node {

namespace fs = std::filesystem;

fs::path Profile::resolveDir(const std::optional<std::string>& flag) {
    if (flag && !flag->empty())
        return fs::absolute(*flag);
    if (const char* env = std::getenv("PARLEY_PROFILE"); env && *env)
        return fs::absolute(env);
    if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg)
        return fs::path(xdg) / "parley";
    if (const char* home = std::getenv("HOME"); home && *home)
        return fs::path(home) / ".local" / "share" / "parley";
    throw std::runtime_error("cannot find a profile directory: set --profile or PARLEY_PROFILE");
}

void writePrivateFile(const fs::path& path, const std::string& data) {
    auto tmp = path;
    tmp += ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
    std::size_t off = 0;
    while (off < data.size()) {
        auto n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(err));
        }
        off += static_cast<std::size_t>(n);
    }
    ::fchmod(fd, 0600);
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
}

std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool Profile::hasIdentity() const {
    return fs::exists(keyPath()) || fs::exists(certificatePath());
}

bool Profile::identityEncrypted() const {
    try {
        return dht::Identity::isEncryptedKeyPem(readFile(keyPath()));
    } catch (const std::exception&) {
        return false;
    }
}

dht::Identity Profile::createIdentity(const std::string& name, unsigned keyBits,
                                      const std::string& passphrase) const {
    if (hasIdentity())
        throw std::runtime_error("an identity already exists in " + dir_.string() +
                                 "; refusing to overwrite it (use another --profile)");
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec)
        throw std::runtime_error("cannot create " + dir_.string() + ": " + ec.message());
    ::chmod(dir_.c_str(), 0700);
    auto identity = dht::Identity::generate(name, keyBits);
    writePrivateFile(certificatePath(), identity.certificatePem());
    writePrivateFile(keyPath(), identity.privateKeyPem(passphrase));
    return identity;
}

dht::IdentityError Profile::loadIdentity(const std::string& passphrase, dht::Identity& out) const {
    if (!fs::exists(keyPath()))
        throw std::runtime_error("no identity in " + dir_.string() + ": run 'parley init' first");
    auto key = readFile(keyPath());
    auto cert = readFile(certificatePath());
    return dht::Identity::load(key, cert, passphrase, out);
}

ProfileSettings Profile::loadSettings() const {
    ProfileSettings s;
    if (!fs::exists(configPath()))
        return s;
    auto where = configPath().string();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(readFile(configPath()));
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(where + " is not valid JSON: " + e.what());
    }
    if (!j.is_object())
        throw std::runtime_error(where + " must hold a JSON object");
    try {
        if (j.contains("bootstrap"))
            s.bootstrap = j.at("bootstrap").get<std::vector<std::string>>();
        if (j.contains("network"))
            s.network = j.at("network").get<std::uint32_t>();
        if (j.contains("port"))
            s.port = j.at("port").get<std::uint16_t>();
        if (j.contains("bind"))
            s.bind = j.at("bind").get<std::string>();
        if (j.contains("lan"))
            s.lan = j.at("lan").get<bool>();
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(where + ": " + e.what() +
                                 " (expected {\"bootstrap\": [\"host:port\"], \"network\": N, "
                                 "\"port\": N, \"bind\": \"addr\", \"lan\": true})");
    }
    return s;
}

std::optional<std::uint16_t> Profile::lastPort() const {
    std::ifstream in(lastPortPath());
    unsigned port = 0;
    if (in >> port && port > 0 && port < 65536)
        return static_cast<std::uint16_t>(port);
    return std::nullopt;
}

void Profile::saveLastPort(std::uint16_t port) const {
    try {
        writePrivateFile(lastPortPath(), std::to_string(port) + "\n");
    } catch (const std::exception&) {
        // Only a convenience for the next start.
    }
}

} // namespace parley::node
