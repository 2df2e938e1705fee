// `parley chat <contact>`: an interactive conversation in the terminal (issue 5).
#pragma once

#include "control_client.h"

#include <string>
#include <string_view>
#include <vector>

namespace parley::cli {

struct ChatPeer {
    std::string id;    // 64 hex characters
    std::string label; // alias or name, for display (already sanitised)
};

// Runs the conversation until the person quits (Ctrl-D on an empty line, Ctrl-C, "/quit") or
// the daemon goes away. `calls` answers requests; `events` is subscribed here. Returns an
// exit code (0, or 1 when the daemon went away).
int runChat(ControlClient& calls, ControlClient& events, const ChatPeer& peer);

// The line editor's buffer logic, separate from the terminal so that it can be tested.
class LineEditor {
public:
    enum class Action { none, submit, quit, redraw };
    // Feeds one byte of keyboard input (escape sequences arrive byte by byte).
    Action feed(unsigned char byte);
    const std::string& text() const { return text_; }
    std::size_t cursor() const { return cursor_; } // byte offset, on a code point boundary
    std::string take();                            // the submitted line; clears the buffer
    // Terminal columns taken by the text after the cursor (displayWidth), to place the
    // terminal's cursor: wide characters count 2, combining marks 0.
    std::size_t columnsAfterCursor() const;

private:
    void insert(std::string_view bytes);
    void erase(std::size_t from, std::size_t to);
    // Cursor keys, Backspace, Delete and Ctrl-W move over whole grapheme clusters (a letter
    // with its accents, an emoji ZWJ sequence), as utf8proc segments the line.
    std::size_t prevBoundary(std::size_t pos) const;
    std::size_t nextBoundary(std::size_t pos) const;
    std::size_t wordStartBefore(std::size_t pos) const;
    Action escape(unsigned char byte);

    std::string text_;
    std::size_t cursor_ = 0;
    std::string pendingUtf8_; // a multi-byte character being typed
    std::string escape_;      // an escape sequence being read
    bool inEscape_ = false;
    std::vector<std::string> history_;
    std::size_t historyPos_ = 0;
};

} // namespace parley::cli
