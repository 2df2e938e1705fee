// `parley send`, `history` and `chat`: chat messages with a contact, one at a time from the
// shell or live in the terminal.
#include "chat_ui.h"
#include "commands.h"
#include "control_client.h"
#include "dht/records.h"
#include "terminal.h"

#include <algorithm>
#include <iostream>
#include <iterator>
#include <memory>

namespace parley::cli {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct SendOptions {
    std::string who;
    std::string text;
    bool wait = false;
    double timeoutS = 30;
    bool json = false;
};

struct HistoryOptions {
    std::string who;
    int limit = 50;
    bool json = false;
};

const char* const kContactHelp = "contact id, or the alias or name of a contact";

std::string readStdinText() {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    return text;
}

// `send --wait`: waits for the delivery of the message r that chat.send returned.
int waitForDelivery(const node::Profile& profile, const dht::ContactId& id, json r, double timeoutS,
                    bool asJson) {
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

int cmdSend(const Global& g, const SendOptions& o) {
    if (!(o.timeoutS > 0 && o.timeoutS <= 3600))
        throw Failure(kUsage, "--timeout must be between 0 and 3600 seconds");
    auto text = o.text == "-" ? readStdinText() : o.text;
    if (text.empty())
        throw Failure(kUsage, "the message is empty");
    if (!dht::isValidUtf8(text))
        throw Failure(kUsage, "the message is not valid UTF-8 text");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, o.who);
    json params = {{"id", id.toHex()}, {"text", text}};
    auto r = rpcCall(profile, "chat.send", params, 15s);
    if (o.wait)
        return waitForDelivery(profile, id, std::move(r), o.timeoutS, o.json);
    if (o.json)
        std::cout << r.dump() << "\n";
    else
        std::cout << r["id"].get<std::string>() << " " << r["state"].get<std::string>() << "\n";
    return kOk;
}

int cmdHistory(const Global& g, const HistoryOptions& o) {
    if (o.limit < 1 || o.limit > 100000)
        throw Failure(kUsage, "--limit must be between 1 and 100000");
    auto profile = profileOf(g);
    auto id = resolveContact(profile, o.who);
    json params = {{"id", id.toHex()}, {"limit", o.limit}};
    auto r = rpcCall(profile, "chat.history", params, 30s);
    if (o.json) {
        std::cout << r.dump() << "\n";
        return kOk;
    }
    auto label = contactLabel(profile, id);
    // The conversation's transfers go between its messages, by when they were offered.
    auto transfers = rpcCall(profile, "transfers", {{"contact", id.toHex()}}, 30s);
    std::vector<std::pair<std::int64_t, std::string>> lines;
    for (const auto& m : r) {
        bool in = m.value("direction", "") == "in";
        auto line = formatTime(m.value("ts", std::int64_t{0}) / 1000) + "  " +
                    (in ? label : std::string("you")) + ": " +
                    sanitizeForTerminal(m.value("text", ""));
        if (!in)
            line += "  (" + m.value("state", "") + ")";
        lines.emplace_back(m.value("ts", std::int64_t{0}), line);
    }
    for (const auto& t : transfers.value("transfers", json::array())) {
        bool in = t.value("direction", "") == "in";
        auto when = t.value("created_ms", std::int64_t{0});
        auto line = formatTime(when / 1000) + "  " + (in ? label : std::string("you")) +
                    " offered " + sanitizeForTerminal(t.value("name", "")) + " (" +
                    std::to_string(t.value("files", 0)) + " files, " +
                    formatSize(t.value("bytes", std::uint64_t{0})) + "): " + t.value("state", "");
        if (!t.value("reason", "").empty())
            line += " (" + sanitizeForTerminal(t.value("reason", "")) + ")";
        lines.emplace_back(when, line);
    }
    std::stable_sort(lines.begin(), lines.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    if (lines.empty())
        std::cout << "No messages with " << label << " yet.\n";
    for (const auto& [when, line] : lines)
        std::cout << line << "\n";
    return kOk;
}

int cmdChat(const Global& g, const std::string& who) {
    auto profile = profileOf(g);
    auto id = resolveContact(profile, who);
    auto label = contactLabel(profile, id);
    ControlClient calls(profile.controlSocketPath()), events(profile.controlSocketPath());
    return runChat(calls, events, ChatPeer{id.toHex(), label});
}

} // namespace

void addChatCommands(CLI::App& app, const Global& g, Commands& commands) {
    auto so = std::make_shared<SendOptions>();
    auto* send = app.add_subcommand(
        "send", "send a chat message; it is queued at once and delivered directly, or through "
                "their DHT inbox while they are offline");
    send->add_option("contact", so->who, kContactHelp)->required();
    send->add_option("text", so->text, "the message (UTF-8; '-' reads it from standard input)")
        ->required();
    send->add_flag("--wait", so->wait,
                   "return once it is delivered (exit 1 after --timeout; it "
                   "stays queued)");
    send->add_option("--timeout", so->timeoutS, "seconds --wait waits")->capture_default_str();
    send->add_flag("--json", so->json, "print JSON: id, seq, state (and delivered with --wait)");
    commands.push_back({send, [&g, so] { return cmdSend(g, *so); }});

    auto ho = std::make_shared<HistoryOptions>();
    auto* history = app.add_subcommand("history", "the messages of a conversation");
    history->add_option("contact", ho->who, kContactHelp)->required();
    history->add_option("--limit", ho->limit, "the last N messages")->capture_default_str();
    history->add_flag("--json", ho->json,
                      "print JSON: [{id, contact, direction, seq, ts, text, state}]");
    commands.push_back({history, [&g, ho] { return cmdHistory(g, *ho); }});

    auto chatWho = std::make_shared<std::string>();
    auto* chat = app.add_subcommand(
        "chat", "talk with a contact in the terminal: history, live messages, delivery states");
    chat->add_option("contact", *chatWho, kContactHelp)->required();
    commands.push_back({chat, [&g, chatWho] { return cmdChat(g, *chatWho); }});
}

} // namespace parley::cli
