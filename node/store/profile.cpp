// Profile directory layout, identity files and settings.
#include "node/store/profile.h"

#include "dht/socket_address.h"

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
    // A stale temporary file (or a planted symlink) is removed, and the new one must be ours.
    ::unlink(tmp.c_str());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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

// The key is written first and the certificate last: an identity exists once both are there.
// A profile with only a key was interrupted during init and can be initialised again.
bool Profile::hasIdentity() const {
    return fs::exists(certificatePath());
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
    if (::chmod(dir_.c_str(), 0700) != 0)
        throw std::runtime_error("cannot make " + dir_.string() +
                                 " private: " + std::strerror(errno));
    auto identity = dht::Identity::generate(name, keyBits);
    writePrivateFile(keyPath(), identity.privateKeyPem(passphrase));
    writePrivateFile(certificatePath(), identity.certificatePem());
    return identity;
}

dht::IdentityError Profile::loadIdentity(const std::string& passphrase, dht::Identity& out) const {
    if (!hasIdentity() || !fs::exists(keyPath()))
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
        for (const auto& b : s.bootstrap)
            if (!dht::splitHostPort(b))
                throw std::runtime_error(where + ": bad bootstrap address '" + b +
                                         "': expected HOST:PORT");
        auto ranged = [&](const char* key, std::int64_t max) -> std::optional<std::int64_t> {
            if (!j.contains(key))
                return std::nullopt;
            const auto& v = j.at(key);
            if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > max)
                throw std::runtime_error(where + ": \"" + key + "\" must be an integer from 0 to " +
                                         std::to_string(max));
            return v.get<std::int64_t>();
        };
        if (auto n = ranged("network", UINT32_MAX))
            s.network = static_cast<std::uint32_t>(*n);
        if (auto n = ranged("port", 65535))
            s.port = static_cast<std::uint16_t>(*n);
        if (j.contains("bind"))
            s.bind = j.at("bind").get<std::string>();
        if (j.contains("lan"))
            s.lan = j.at("lan").get<bool>();
        if (j.contains("portmap"))
            s.portmap = j.at("portmap").get<bool>();
        if (j.contains("downloads")) {
            auto dir = std::filesystem::path(j.at("downloads").get<std::string>());
            if (!dir.is_absolute())
                throw std::runtime_error(where + ": \"downloads\" must be an absolute path");
            s.downloads = dir.string();
        }
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(
            where + ": " + std::string(e.what()) +
            " (expected {\"bootstrap\": [\"host:port\"], \"network\": N, "
            "\"port\": N, \"bind\": \"addr\", \"lan\": true, \"portmap\": true, "
            "\"downloads\": \"/absolute/folder\"})");
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
