// The chat's line editor: keys in, buffer and cursor out (no terminal needed).
#include "cli/chat_ui.h"

#include <catch2/catch.hpp>

using parley::cli::LineEditor;
using Action = LineEditor::Action;

namespace {

Action type(LineEditor& e, std::string_view keys) {
    Action last = Action::none;
    for (char c : keys)
        last = e.feed(static_cast<unsigned char>(c));
    return last;
}

} // namespace

TEST_CASE("line editor: typing, submitting and history", "[chat]") {
    LineEditor e;
    type(e, "hello");
    CHECK(e.text() == "hello");
    CHECK(e.cursor() == 5);
    CHECK(type(e, "\r") == Action::submit);
    CHECK(e.take() == "hello");
    CHECK(e.text().empty());
    type(e, "second");
    e.take();
    type(e, "\x1b[A"); // up: the last line
    CHECK(e.text() == "second");
    type(e, "\x1b[A");
    CHECK(e.text() == "hello");
    type(e, "\x1b[B\x1b[B"); // down twice: an empty line again
    CHECK(e.text().empty());
}

TEST_CASE("line editor: cursor movement and editing keys", "[chat]") {
    LineEditor e;
    type(e, "abcdef");
    type(e, "\x1b[D\x1b[D"); // left twice
    CHECK(e.cursor() == 4);
    CHECK(e.columnsAfterCursor() == 2);
    type(e, "X");
    CHECK(e.text() == "abcdXef");
    type(e, "\x7f"); // backspace
    CHECK(e.text() == "abcdef");
    type(e, "\x01"); // Ctrl-A
    CHECK(e.cursor() == 0);
    type(e, "\x1b[3~"); // delete
    CHECK(e.text() == "bcdef");
    type(e, "\x05"); // Ctrl-E
    CHECK(e.cursor() == e.text().size());
    type(e, " two words");
    type(e, "\x17"); // Ctrl-W removes "words"
    CHECK(e.text() == "bcdef two ");
    type(e, "\x15"); // Ctrl-U removes everything before the cursor
    CHECK(e.text().empty());
}

TEST_CASE("line editor: UTF-8 characters move and delete as one", "[chat]") {
    LineEditor e;
    type(e, "h\xC3\xA9llo \xE2\x82\xAC"); // "héllo €"
    CHECK(e.text() == "h\xC3\xA9llo \xE2\x82\xAC");
    type(e, "\x7f"); // backspace removes the whole euro sign
    CHECK(e.text() == "h\xC3\xA9llo ");
    type(e, "\x01\x1b[C\x1b[C"); // home, right, right: after "é"
    CHECK(e.cursor() == 3);
    CHECK(e.columnsAfterCursor() == 4);
    // A broken sequence (lead byte then ASCII) is dropped, the ASCII kept.
    LineEditor f;
    type(f, "\xC3z");
    CHECK(f.text() == "z");
}

TEST_CASE("line editor: Ctrl-D quits only on an empty line, Ctrl-C always", "[chat]") {
    LineEditor e;
    CHECK(type(e, "\x04") == Action::quit);
    type(e, "ab\x01");
    CHECK(type(e, "\x04") == Action::redraw); // deletes "a"
    CHECK(e.text() == "b");
    CHECK(type(e, "\x03") == Action::quit);
    // Other control characters and unknown escape sequences never reach the text.
    LineEditor f;
    type(f, "\x07\x1b[99Zq\x1bxq");
    CHECK(f.text() == "qq");
}

TEST_CASE("line editor: the cursor is placed by display columns", "[chat]") {
    LineEditor e;
    type(e, "\u65E5\u672C"); // "日本": two wide characters
    CHECK(e.columnsAfterCursor() == 0);
    type(e, "\x1b[D"); // left: before "本"
    CHECK(e.cursor() == 3);
    CHECK(e.columnsAfterCursor() == 2);
    type(e, "\x1b[D");
    CHECK(e.columnsAfterCursor() == 4);
    // A combining accent takes no column: "e\u0301" is one column, like "é".
    LineEditor f;
    type(f, "e\u0301x\x01");
    CHECK(f.columnsAfterCursor() == 2);
}

TEST_CASE("line editor: a letter with a combining accent is one character", "[chat]") {
    LineEditor e;
    type(e, "ae\u0301"); // "a", then "e" + COMBINING ACUTE ACCENT
    type(e, "\x7f");     // one backspace removes the accent and its letter
    CHECK(e.text() == "a");
    type(e, "e\u0301b\x1b[D\x1b[D"); // two lefts: over "b", then over "e\u0301"
    CHECK(e.cursor() == 1);
    type(e, "\x1b[3~"); // delete removes "e\u0301" as a whole
    CHECK(e.text() == "ab");
    type(e, "\x1b[C");
    CHECK(e.cursor() == 2);
}

TEST_CASE("line editor: an emoji ZWJ sequence moves and deletes as one", "[chat]") {
    // MAN, ZWJ, WOMAN, ZWJ, GIRL: one family emoji, five code points, 18 bytes.
    const std::string family = "\U0001F468\u200D\U0001F469\u200D\U0001F467";
    LineEditor e;
    type(e, "a" + family + "b");
    type(e, "\x1b[D\x1b[D"); // over "b", then over the whole family
    CHECK(e.cursor() == 1);
    CHECK(e.columnsAfterCursor() == 7); // three wide emoji, as terminals place them, and "b"
    type(e, "\x1b[C");
    CHECK(e.cursor() == 1 + family.size());
    type(e, "\x7f");
    CHECK(e.text() == "ab");
    // A flag is two regional indicators: one cluster, then the next flag.
    LineEditor f;
    type(f, "\U0001F1E9\U0001F1EA\U0001F1EB\U0001F1F7\x7f"); // "🇩🇪🇫🇷", backspace
    CHECK(f.text() == "\U0001F1E9\U0001F1EA");
}

TEST_CASE("line editor: Ctrl-W erases whole clusters", "[chat]") {
    LineEditor e;
    type(e, "hi \U0001F468\u200D\U0001F469 caf\u00E9\x17"); // "café" goes
    CHECK(e.text() == "hi \U0001F468\u200D\U0001F469 ");
    type(e, "\x17"); // then the family emoji
    CHECK(e.text() == "hi ");
    // A combining mark on a space stays with its space rather than being split from it.
    LineEditor f;
    type(f, "ab \u0301cd\x17");
    CHECK(f.text() == "ab \u0301");
}

TEST_CASE("line editor: C1 controls never reach the text", "[chat]") {
    LineEditor e;
    type(e, "a\xC2\x9B"
            "31mb\xC2\x85"); // CSI and NEL encoded as UTF-8
    CHECK(e.text() == "a31mb");
}
