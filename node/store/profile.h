// Profile: the directory that holds one person's identity, settings and runtime files.
#pragma once

#include "dht/identity.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace parley::node {

// Settings a person may keep in DIR/config.json; command-line flags override them.
struct ProfileSettings {
    std::vector<std::string> bootstrap;
    std::optional<std::uint32_t> network;
    std::optional<std::uint16_t> port;
    std::optional<std::string> bind;
    std::optional<bool> lan;
    std::optional<bool> portmap;          // ask the router for a port mapping (NAT-PMP / UPnP)
    std::optional<std::string> downloads; // where accepted transfers go without --to
};

class Profile {
public:
    // --profile, else $PARLEY_PROFILE, else $XDG_DATA_HOME/parley, else ~/.local/share/parley.
    static std::filesystem::path resolveDir(const std::optional<std::string>& flag);

    explicit Profile(std::filesystem::path dir) : dir_(std::move(dir)) {}

    const std::filesystem::path& dir() const { return dir_; }
    std::filesystem::path keyPath() const { return dir_ / "identity.key"; }
    std::filesystem::path certificatePath() const { return dir_ / "identity.crt"; }
    std::filesystem::path configPath() const { return dir_ / "config.json"; }
    std::filesystem::path nodesPath() const { return dir_ / "nodes.txt"; }
    std::filesystem::path controlSocketPath() const { return dir_ / "control.sock"; }
    std::filesystem::path lockPath() const { return dir_ / "daemon.lock"; }
    std::filesystem::path logPath() const { return dir_ / "daemon.log"; }
    std::filesystem::path lastPortPath() const { return dir_ / "last_port"; }

    bool hasIdentity() const;
    bool identityEncrypted() const;

    // Creates the directory (0700) and the identity files (0600). Throws std::runtime_error
    // if an identity exists already or a file cannot be written.
    dht::Identity createIdentity(const std::string& name, unsigned keyBits,
                                 const std::string& passphrase) const;
    // Throws std::runtime_error when the files are missing or unreadable.
    dht::IdentityError loadIdentity(const std::string& passphrase, dht::Identity& out) const;

    // Throws std::runtime_error with the file and the problem when config.json is invalid.
    ProfileSettings loadSettings() const;

    std::optional<std::uint16_t> lastPort() const;
    void saveLastPort(std::uint16_t port) const;

private:
    std::filesystem::path dir_;
};

// Writes `data` to `path` atomically with mode 0600.
void writePrivateFile(const std::filesystem::path& path, const std::string& data);
std::string readFile(const std::filesystem::path& path);

} // namespace parley::node
