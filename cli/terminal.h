// Terminal helpers for the CLI: passphrase prompts, safe printing and QR codes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace parley::cli {

bool stdinIsTerminal();
// Reads a line from the controlling terminal with echo off; nullopt without a terminal.
std::optional<std::string> promptHidden(const std::string& prompt);
// Makes text from others (names, messages, file names) safe to print: it can neither drive the
// terminal nor reorder or hide what is shown. Each neutralised code point, and each byte that
// is not valid UTF-8, becomes one U+FFFD, the one visible mark for "something was here". Judged
// by utf8proc's Unicode data:
// - controls (Cc: C0 including tab and newline, DEL, C1 such as CSI), format characters (Cf:
//   bidi embeddings, overrides, isolates and marks, zero-width space, soft hyphen, BOM, tags),
//   line and paragraph separators (Zl, Zp), private use (Co: its glyph depends on the reader's
//   font, e.g. icon fonts) and unassigned code points (Cn) are neutralised;
// - other default-ignorable code points are neutralised too (Hangul fillers, blank letters),
//   except that one ignorable combining mark may follow a kept character (variation selectors:
//   U+FE0F for emoji, ideographic variants);
// - U+200D ZERO WIDTH JOINER is kept only where utf8proc's grapheme rules join the characters
//   on both sides into one cluster (emoji ZWJ sequences), U+200C ZERO WIDTH NON-JOINER only
//   between two Arabic-script letters, where it changes the letters' shapes (Persian, Urdu);
// - everything else (letters, marks, digits, punctuation, symbols, spaces) is kept.
// No bidi control (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C) ever passes.
std::string sanitizeForTerminal(std::string_view text);
// The columns a terminal uses for valid UTF-8 text (utf8proc_charwidth): wide characters (CJK,
// most emoji) 2, combining marks and format characters 0; a byte that is not UTF-8 counts 1.
std::size_t displayWidth(std::string_view text);
// The text as a QR code drawn with Unicode half blocks; throws std::runtime_error.
std::string renderQr(const std::string& text);

} // namespace parley::cli
