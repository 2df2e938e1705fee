// `parley lookup`, `contact ...` and `contacts`: find people by contact id, ask them to become
// contacts, answer their requests, set what holds for one (`contact set`), and list them.
#include "commands.h"
#include "dht/envelope.h"
#include "dht/records.h"
#include "terminal.h"

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>

namespace parley::cli {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct LookupOptions {
    std::string id;
    double timeoutS = 10;
    bool json = false;
};

// The options of the `contact` subcommands; only one of them runs.
struct ContactOptions {
    std::string id;
    std::string message;
    std::string alias;
    std::string autoAccept; // set: a folder
    bool noAutoAccept = false;
    bool json = false;
};

dht::ContactId parseIdArg(const std::string& text) {
    auto id = dht::ContactId::parse(text);
    if (!id)
        throw Failure(kUsage, "'" + sanitizeForTerminal(text.substr(0, 80)) +
                                  "' is not a contact id: expected 64 hexadecimal characters");
    return *id;
}

std::string orDash(const json& v) {
    if (v.is_null() || (v.is_string() && v.get<std::string>().empty()))
        return "-";
    return sanitizeForTerminal(v.is_string() ? v.get<std::string>() : v.dump());
}

int cmdLookup(const Global& g, const LookupOptions& o) {
    auto id = parseIdArg(o.id);
    if (!(o.timeoutS > 0 && o.timeoutS <= 300))
        throw Failure(kUsage, "--timeout must be between 0 and 300 seconds");
    auto profile = profileOf(g);
    auto r = rpcCall(profile, "lookup", {{"id", id.toHex()}, {"timeout", o.timeoutS}},
                     std::chrono::milliseconds(static_cast<long>(o.timeoutS * 1000) + 5000));
    if (o.json) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    std::cout << r["id"].get<std::string>() << "\n  state:     " << r["state"].get<std::string>()
              << "\n  name:      "
              << (r["name"].is_null() ? std::string("-")
                                      : sanitizeForTerminal(r["name"].get<std::string>()))
              << "\n  last seen: "
              << (r["last_seen"].is_null() ? std::string("-")
                                           : formatTime(r["last_seen"].get<std::int64_t>()))
              << "\n";
    return kOk;
}

int cmdContactAdd(const Global& g, const ContactOptions& o) {
    auto id = parseIdArg(o.id);
    if (o.message.size() > dht::kMaxRequestMessageSize || !dht::isValidUtf8(o.message))
        throw Failure(kUsage, "--message must be at most " +
                                  std::to_string(dht::kMaxRequestMessageSize) + " bytes of UTF-8");
    auto r = rpcCall(profileOf(g), "contact.add",
                     {{"id", id.toHex()}, {"message", o.message}, {"alias", o.alias}}, 30s);
    if (o.json) {
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

int cmdContactSet(const Global& g, const ContactOptions& o) {
    if (o.autoAccept.empty() == !o.noAutoAccept)
        throw Failure(kUsage, "say what to set: --auto-accept DIR or --no-auto-accept");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, o.id);
    json dir = nullptr;
    if (!o.autoAccept.empty())
        dir = std::filesystem::absolute(o.autoAccept).lexically_normal().string();
    auto r = rpcCall(profile, "transfer.auto_accept", {{"contact", id.toHex()}, {"dir", dir}}, 10s);
    if (o.json) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    auto label = contactLabel(profile, id);
    if (dir.is_null())
        std::cout << "Files " << label << " offers wait for 'parley transfer accept' again.\n";
    else
        std::cout << "Files " << label << " offers are accepted at once into "
                  << sanitizeForTerminal(dir.get<std::string>()) << ".\n";
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

void addLookupCommand(CLI::App& app, const Global& g, Commands& commands) {
    auto o = std::make_shared<LookupOptions>();
    auto* lookup = app.add_subcommand("lookup", "find someone by contact id: online, offline "
                                                "or not-found, with name and last seen");
    lookup->add_option("contact-id", o->id, "64 hexadecimal characters")->required();
    lookup->add_option("--timeout", o->timeoutS, "seconds before giving up")->capture_default_str();
    lookup->add_flag("--json", o->json, "print JSON");
    commands.push_back({lookup, [&g, o] { return cmdLookup(g, *o); }});
}

void addContactSubcommands(CLI::App& app, const Global& g, Commands& commands) {
    auto* contact = app.add_subcommand("contact", "contact requests and settings: add, requests, "
                                                  "accept, decline, block, unblock, remove, set");
    contact->require_subcommand(1);
    auto o = std::make_shared<ContactOptions>();
    auto* add = contact->add_subcommand("add", "ask someone to become your contact (an "
                                               "encrypted request into their DHT inbox)");
    add->add_option("contact-id", o->id, "their contact id (64 hexadecimal characters)")
        ->required();
    add->add_option("--message", o->message, "a note for them (at most 512 bytes)");
    add->add_option("--alias", o->alias, "your own name for them");
    add->add_flag("--json", o->json, "print JSON");
    commands.push_back({add, [&g, o] { return cmdContactAdd(g, *o); }});

    auto* requests = contact->add_subcommand("requests", "incoming contact requests");
    requests->add_flag("--json", o->json, "print JSON");
    commands.push_back({requests, [&g, o] { return cmdRequests(g, o->json); }});

    for (auto [action, help] :
         {std::pair{"accept", "accept a request: you become each other's contacts"},
          std::pair{"decline", "decline a request (the sender is not told)"},
          std::pair{"block", "drop everything from this contact id, without a reply"},
          std::pair{"unblock", "stop blocking this contact id"},
          std::pair{"remove", "forget a contact"}}) {
        auto* cmd = contact->add_subcommand(action, help);
        cmd->add_option("contact-id", o->id, "their contact id")->required();
        commands.push_back({cmd, [&g, o, name = std::string(action)] {
                                return cmdContactSimple(g, name, o->id);
                            }});
    }

    auto* set = contact->add_subcommand("set", "settings for one contact: files they offer "
                                               "accepted at once into a folder, or not");
    set->add_option("contact", o->id, "contact id, or the alias or name of a contact")->required();
    auto* autoAccept = set->add_option("--auto-accept", o->autoAccept,
                                       "accept what they offer at once, into this folder");
    set->add_flag("--no-auto-accept", o->noAutoAccept, "ask about each offer again (the default)")
        ->excludes(autoAccept);
    set->add_flag("--json", o->json, "print JSON: {contact, dir}");
    commands.push_back({set, [&g, o] { return cmdContactSet(g, *o); }});
}

} // namespace

void addContactCommands(CLI::App& app, const Global& g, Commands& commands) {
    addLookupCommand(app, g, commands);
    addContactSubcommands(app, g, commands);

    auto contactsJson = std::make_shared<bool>(false);
    auto* contacts = app.add_subcommand("contacts", "your contacts with their state and "
                                                    "presence");
    contacts->add_flag("--json", *contactsJson, "print JSON");
    commands.push_back({contacts, [&g, contactsJson] { return cmdContacts(g, *contactsJson); }});
}

} // namespace parley::cli
