// `parley init` and `parley id`: create this profile's identity and show its contact id.
// Neither needs the daemon.
#include "commands.h"
#include "dht/identity.h"
#include "dht/records.h"
#include "terminal.h"

#include <filesystem>
#include <iostream>
#include <memory>

namespace parley::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct InitOptions {
    std::string name = "parley user";
    unsigned keyBits = dht::Identity::kDefaultKeyBits;
    bool askPassphrase = false;
};

struct IdOptions {
    bool qr = false;
    bool json = false;
};

// A new passphrase typed twice at the terminal.
std::string promptNewPassphrase() {
    auto first = promptHidden("New passphrase: ");
    if (!first)
        throw Failure(kUsage, "--passphrase needs a terminal; use PARLEY_PASSPHRASE or "
                              "--passphrase-file instead");
    auto second = promptHidden("Repeat passphrase: ");
    if (!second || *first != *second)
        throw Failure(kUsage, "the passphrases do not match; nothing was created");
    if (first->empty())
        throw Failure(kUsage, "an empty passphrase encrypts nothing; nothing was created "
                              "(leave out --passphrase for an unencrypted key)");
    return *first;
}

int cmdInit(const Global& g, const InitOptions& o) {
    if (o.name.empty() || o.name.size() > dht::kMaxNameSize || !dht::isValidUtf8(o.name))
        throw Failure(kUsage, "--name must be 1 to " + std::to_string(dht::kMaxNameSize) +
                                  " bytes of UTF-8");
    auto profile = profileOf(g);
    if (profile.hasIdentity())
        throw Failure(kRuntime, "an identity already exists in " + profile.dir().string() +
                                    "; refusing to overwrite it (choose another --profile)");
    std::string passphrase;
    if (auto p = passphraseFromFlags(g))
        passphrase = *p;
    else if (o.askPassphrase)
        passphrase = promptNewPassphrase();
    auto identity = profile.createIdentity(o.name, o.keyBits, passphrase);
    std::cerr << "Created identity '" << sanitizeForTerminal(o.name) << "' (RSA-" << o.keyBits
              << (passphrase.empty() ? ", key not encrypted" : ", key encrypted") << ") in "
              << profile.dir().string() << "\nYour contact id (share it with people):\n";
    std::cout << identity.contactId().toHex() << "\n";
    return kOk;
}

int cmdId(const Global& g, const IdOptions& o) {
    auto profile = profileOf(g);
    if (!fs::exists(profile.certificatePath()))
        throw Failure(kRuntime, "no identity in " + profile.dir().string() +
                                    ": create one with 'parley init'");
    auto info = dht::inspectCertificate(node::readFile(profile.certificatePath()));
    if (!info)
        throw Failure(kRuntime, profile.certificatePath().string() + " is damaged");
    auto hex = info->id.toHex();
    if (o.json) {
        std::cout << json{{"id", hex}, {"name", info->name}}.dump() << "\n";
        return kOk;
    }
    std::cout << hex << "\n";
    if (o.qr)
        std::cout << renderQr(hex);
    return kOk;
}

} // namespace

void addIdentityCommands(CLI::App& app, const Global& g, Commands& commands) {
    auto io = std::make_shared<InitOptions>();
    auto* init = app.add_subcommand("init", "create the identity and print its contact id");
    init->add_option("--name", io->name, "display name published on the key card")
        ->capture_default_str();
    init->add_option("--key-bits", io->keyBits, "RSA key size")
        ->check(CLI::Range(dht::Identity::kMinKeyBits, dht::Identity::kMaxKeyBits))
        ->capture_default_str();
    init->add_flag("--passphrase", io->askPassphrase,
                   "ask for a passphrase that encrypts the private key");
    commands.push_back({init, [&g, io] { return cmdInit(g, *io); }});

    auto ido = std::make_shared<IdOptions>();
    auto* id = app.add_subcommand("id", "print this profile's contact id");
    id->add_flag("--qr", ido->qr, "also draw it as a QR code");
    id->add_flag("--json", ido->json, "print JSON");
    commands.push_back({id, [&g, ido] { return cmdId(g, *ido); }});
}

} // namespace parley::cli
