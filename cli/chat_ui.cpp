// The interactive chat: history, live messages and states, a small line editor.
#include "chat_ui.h"

#include "dht/records.h"
#include "terminal.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <set>
#include <termios.h>
#include <unistd.h>
#include <utf8proc.h>

namespace parley::cli {

using nlohmann::json;

// --- line editor --------------------------------------------------------------------------------

namespace {

bool isContinuation(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

std::size_t utf8Length(unsigned char lead) {
    if (lead < 0x80)
        return 1;
    if ((lead >> 5) == 0x6)
        return 2;
    if ((lead >> 4) == 0xE)
        return 3;
    if ((lead >> 3) == 0x1E)
        return 4;
    return 0;
}

// Byte offsets at which the grapheme clusters of `text` start (the first is 0). A byte that is
// not UTF-8 (the editor never holds one) is a cluster of its own.
std::vector<std::size_t> clusterStarts(std::string_view text) {
    std::vector<std::size_t> starts;
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    utf8proc_int32_t state = 0;
    utf8proc_int32_t previous = -1;
    for (std::size_t i = 0; i < text.size();) {
        utf8proc_int32_t cp = -1;
        auto n = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
        if (n <= 0) {
            starts.push_back(i);
            previous = -1;
            state = 0;
            ++i;
            continue;
        }
        if (previous < 0 || utf8proc_grapheme_break_stateful(previous, cp, &state))
            starts.push_back(i);
        previous = cp;
        i += static_cast<std::size_t>(n);
    }
    return starts;
}

} // namespace

std::size_t LineEditor::prevBoundary(std::size_t pos) const {
    auto starts = clusterStarts(text_);
    auto it = std::lower_bound(starts.begin(), starts.end(), pos);
    return it == starts.begin() ? 0 : *(it - 1);
}

std::size_t LineEditor::nextBoundary(std::size_t pos) const {
    auto starts = clusterStarts(text_);
    auto it = std::upper_bound(starts.begin(), starts.end(), pos);
    return it == starts.end() ? text_.size() : *it;
}

std::size_t LineEditor::wordStartBefore(std::size_t pos) const {
    // Spaces before the cursor, then the word before them, by whole clusters: a space carrying
    // a combining mark is one cluster with it, and a space.
    auto starts = clusterStarts(text_);
    starts.push_back(text_.size());
    auto i = static_cast<std::size_t>(std::lower_bound(starts.begin(), starts.end(), pos) -
                                      starts.begin());
    auto spaceBefore = [&](std::size_t k) { return text_[starts[k - 1]] == ' '; };
    while (i > 0 && spaceBefore(i))
        --i;
    while (i > 0 && !spaceBefore(i))
        --i;
    return starts[i];
}

void LineEditor::insert(std::string_view bytes) {
    text_.insert(cursor_, bytes);
    cursor_ += bytes.size();
}

void LineEditor::erase(std::size_t from, std::size_t to) {
    text_.erase(from, to - from);
    cursor_ = from;
}

std::size_t LineEditor::columnsAfterCursor() const {
    return displayWidth(std::string_view(text_).substr(cursor_));
}

std::string LineEditor::take() {
    std::string line = std::move(text_);
    text_.clear();
    cursor_ = 0;
    if (!line.empty() && (history_.empty() || history_.back() != line))
        history_.push_back(line);
    historyPos_ = history_.size();
    return line;
}

LineEditor::Action LineEditor::escape(unsigned char byte) {
    escape_.push_back(static_cast<char>(byte));
    // ESC [ ... final byte (0x40-0x7e), or ESC O x; ESC and anything else (Alt+key) is
    // ignored as a whole.
    if (escape_.size() == 1) {
        if (byte != '[' && byte != 'O') {
            inEscape_ = false;
            escape_.clear();
        }
        return Action::none;
    }
    if (byte < 0x40 || byte > 0x7e || escape_.size() < 2)
        return escape_.size() > 8 ? (inEscape_ = false, escape_.clear(), Action::none)
                                  : Action::none;
    std::string seq = escape_;
    inEscape_ = false;
    escape_.clear();
    auto key = seq.back();
    if (key == 'D') {
        cursor_ = prevBoundary(cursor_);
    } else if (key == 'C') {
        cursor_ = nextBoundary(cursor_);
    } else if (key == 'H' || seq == "[1~" || seq == "[7~") {
        cursor_ = 0;
    } else if (key == 'F' || seq == "[4~" || seq == "[8~") {
        cursor_ = text_.size();
    } else if (seq == "[3~") {
        erase(cursor_, nextBoundary(cursor_));
    } else if (key == 'A' || key == 'B') {
        if (history_.empty())
            return Action::none;
        if (key == 'A' && historyPos_ > 0)
            --historyPos_;
        else if (key == 'B' && historyPos_ < history_.size())
            ++historyPos_;
        text_ = historyPos_ < history_.size() ? history_[historyPos_] : std::string();
        cursor_ = text_.size();
    } else {
        return Action::none;
    }
    return Action::redraw;
}

LineEditor::Action LineEditor::feed(unsigned char byte) {
    if (inEscape_)
        return escape(byte);
    if (!pendingUtf8_.empty()) {
        if (!isContinuation(byte)) {
            pendingUtf8_.clear(); // a broken character: drop it, then handle this byte
        } else {
            pendingUtf8_.push_back(static_cast<char>(byte));
            if (pendingUtf8_.size() == utf8Length(static_cast<unsigned char>(pendingUtf8_[0]))) {
                // C1 controls (U+0080..U+009F, e.g. CSI) are dropped like the C0 ones below,
                // since the line is echoed to the terminal as typed.
                bool c1 = static_cast<unsigned char>(pendingUtf8_[0]) == 0xC2 &&
                          static_cast<unsigned char>(pendingUtf8_[1]) < 0xA0;
                if (!c1 && dht::isValidUtf8(pendingUtf8_))
                    insert(pendingUtf8_);
                pendingUtf8_.clear();
                return Action::redraw;
            }
            return Action::none;
        }
    }
    switch (byte) {
    case '\r':
    case '\n':
        return Action::submit;
    case 0x03: // Ctrl-C
        return Action::quit;
    case 0x04: // Ctrl-D: quit on an empty line, else delete under the cursor
        if (text_.empty())
            return Action::quit;
        erase(cursor_, nextBoundary(cursor_));
        return Action::redraw;
    case 0x01: // Ctrl-A
        cursor_ = 0;
        return Action::redraw;
    case 0x05: // Ctrl-E
        cursor_ = text_.size();
        return Action::redraw;
    case 0x02: // Ctrl-B
        cursor_ = prevBoundary(cursor_);
        return Action::redraw;
    case 0x06: // Ctrl-F
        cursor_ = nextBoundary(cursor_);
        return Action::redraw;
    case 0x08: // Ctrl-H
    case 0x7f: // Backspace
        erase(prevBoundary(cursor_), cursor_);
        return Action::redraw;
    case 0x0b: // Ctrl-K
        erase(cursor_, text_.size());
        return Action::redraw;
    case 0x15: // Ctrl-U
        erase(0, cursor_);
        return Action::redraw;
    case 0x17: // Ctrl-W: the word before the cursor
        erase(wordStartBefore(cursor_), cursor_);
        return Action::redraw;
    case 0x0c: // Ctrl-L
        return Action::redraw;
    case 0x1b:
        inEscape_ = true;
        escape_.clear();
        return Action::none;
    default:
        break;
    }
    if (byte < 0x20)
        return Action::none; // other control keys do nothing
    if (byte < 0x80) {
        insert(std::string(1, static_cast<char>(byte)));
        return Action::redraw;
    }
    if (utf8Length(byte) >= 2)
        pendingUtf8_.assign(1, static_cast<char>(byte));
    return Action::none;
}

// --- the conversation ---------------------------------------------------------------------------

namespace {

class RawTerminal {
public:
    RawTerminal() {
        if (::tcgetattr(STDIN_FILENO, &saved_) != 0)
            return;
        termios raw = saved_;
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO | ISIG | IEXTEN));
        raw.c_iflag &= static_cast<tcflag_t>(~(IXON | ICRNL));
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    ~RawTerminal() {
        if (active_)
            ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    bool active() const { return active_; }

private:
    termios saved_{};
    bool active_ = false;
};

std::string clock(std::int64_t ms) {
    std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%H:%M", &tm);
    return buf;
}

std::string stateMark(const std::string& state) {
    if (state == "queued")
        return "queued";
    if (state == "stored")
        return "sent";
    if (state == "delivered")
        return "delivered";
    if (state == "read")
        return "read";
    return state;
}

struct Screen {
    bool raw = false;
    std::string prompt = "> ";
    LineEditor* editor = nullptr;

    void clearLine() const {
        if (raw)
            std::cout << "\r\033[K";
    }
    void redraw() const {
        if (!raw)
            return;
        std::cout << "\r\033[K" << prompt << editor->text();
        if (auto back = editor->columnsAfterCursor())
            std::cout << "\033[" << back << "D";
        std::cout << std::flush;
    }
    // Prints a line above the one being typed.
    void line(const std::string& text) const {
        clearLine();
        std::cout << text << "\n";
        redraw();
        std::cout << std::flush;
    }
};

std::string describeMessage(const json& m, const ChatPeer& peer) {
    bool in = m.value("direction", "") == "in";
    std::string who = in ? peer.label : "you";
    std::string text = sanitizeForTerminal(m.value("text", ""));
    std::string out = "[" + clock(m.value("ts", std::int64_t{0})) + "] " + who + ": " + text;
    if (!in)
        out += "  (" + stateMark(m.value("state", "")) + ")";
    return out;
}

std::string snippet(const std::string& text) {
    auto clean = sanitizeForTerminal(text);
    if (clean.size() <= 24)
        return clean;
    return dht::truncateUtf8(clean, 24) + "…";
}

} // namespace

int runChat(ControlClient& calls, ControlClient& events, const ChatPeer& peer) {
    using namespace std::chrono_literals;
    bool tty = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
    LineEditor editor;
    Screen screen;
    screen.editor = &editor;
    std::cout << "Chat with " << peer.label << " (" << peer.id.substr(0, 16) << "…). "
              << (tty ? "Enter sends; Ctrl-D or /quit leaves.\n" : "One message per line.\n");
    events.call("subscribe", json::object(), 5s);
    auto history = calls.call("chat.history", {{"id", peer.id}, {"limit", 20}}, 10s);
    std::map<std::string, std::string> ours; // our message ids shown here -> text
    for (const auto& m : history) {
        std::cout << describeMessage(m, peer) << "\n";
        if (m.value("direction", "") == "out")
            ours[m.value("id", "")] = m.value("text", "");
    }
    calls.call("chat.read", {{"id", peer.id}}, 10s);

    std::optional<RawTerminal> rawTerminal;
    if (tty) {
        rawTerminal.emplace();
        screen.raw = rawTerminal->active();
    }
    screen.redraw();
    std::string pendingInput; // line mode: bytes of an unfinished line
    auto submit = [&](const std::string& line) -> bool {
        if (line == "/quit")
            return false;
        if (line.empty())
            return true;
        try {
            auto r = calls.call("chat.send", {{"id", peer.id}, {"text", line}}, 10s);
            ours[r.value("id", "")] = line;
            json shown = {{"direction", "out"},
                          {"text", line},
                          {"ts", static_cast<std::int64_t>(std::time(nullptr)) * 1000},
                          {"state", r.value("state", "queued")}};
            screen.line(describeMessage(shown, peer));
        } catch (const std::exception& e) {
            screen.line(std::string("  (not sent: ") + sanitizeForTerminal(e.what()) + ")");
        }
        return true;
    };
    for (;;) {
        pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {events.fd(), POLLIN, 0}};
        int rc = ::poll(fds, 2, events.hasLine() ? 0 : 1000);
        if (rc < 0 && errno != EINTR)
            break;
        if ((fds[1].revents & (POLLIN | POLLHUP)) || events.hasLine()) {
            try {
                while (auto m = events.nextMessage(1ms)) {
                    if ((*m).value("method", "") != "event")
                        continue;
                    const auto& ev = (*m)["params"];
                    auto type = ev.value("type", "");
                    if (ev.value("contact", "") != peer.id)
                        continue;
                    auto id = ev.value("id", "");
                    if (type == "chat.message" && ev.value("direction", "") == "in") {
                        screen.line(describeMessage(ev, peer));
                        calls.call("chat.read", {{"id", peer.id}}, 10s);
                    } else if (type == "chat.message" && !ours.count(id)) {
                        ours[id] = ev.value("text", ""); // sent from elsewhere (parley send)
                        screen.line(describeMessage(ev, peer));
                    } else if (type == "chat.state" && ours.count(id)) {
                        screen.line("  · \"" + snippet(ours[id]) + "\" " +
                                    stateMark(ev.value("state", "")));
                    }
                }
            } catch (const std::exception& e) {
                screen.clearLine();
                std::cout << "\nparley: " << e.what() << "\n";
                return 1;
            }
        }
        if (!(fds[0].revents & (POLLIN | POLLHUP)))
            continue;
        char buf[4096];
        auto n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { // end of input
            if (!screen.raw && !pendingInput.empty())
                submit(pendingInput);
            break;
        }
        if (!screen.raw) {
            pendingInput.append(buf, static_cast<std::size_t>(n));
            std::size_t nl;
            bool go = true;
            while (go && (nl = pendingInput.find('\n')) != std::string::npos) {
                auto line = pendingInput.substr(0, nl);
                pendingInput.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r')
                    line.pop_back();
                go = submit(line);
            }
            if (!go)
                break;
            continue;
        }
        bool quit = false;
        for (ssize_t i = 0; i < n && !quit; ++i) {
            switch (editor.feed(static_cast<unsigned char>(buf[i]))) {
            case LineEditor::Action::submit: {
                auto line = editor.take();
                screen.redraw();
                quit = !submit(line);
                break;
            }
            case LineEditor::Action::quit:
                quit = true;
                break;
            case LineEditor::Action::redraw:
                screen.redraw();
                break;
            case LineEditor::Action::none:
                break;
            }
        }
        if (quit)
            break;
    }
    screen.clearLine();
    std::cout << "Bye.\n";
    return 0;
}

} // namespace parley::cli
