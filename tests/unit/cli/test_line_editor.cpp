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
    CHECK(e.charsAfterCursor() == 2);
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
    CHECK(e.charsAfterCursor() == 4);
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
