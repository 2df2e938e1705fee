// Text from others on our terminal: sanitizeForTerminal and displayWidth.
#include "cli/terminal.h"

#include <catch2/catch.hpp>
#include <string>
#include <utf8proc.h>
#include <vector>

using parley::cli::displayWidth;
using parley::cli::sanitizeForTerminal;

namespace {

const std::string kMark = "\xEF\xBF\xBD"; // U+FFFD

std::string utf8(utf8proc_int32_t cp) {
    utf8proc_uint8_t buf[4];
    auto n = utf8proc_encode_char(cp, buf);
    return std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

} // namespace

TEST_CASE("sanitize: ordinary text passes unchanged", "[terminal]") {
    const std::vector<std::string> texts = {
        "hello, world! 123 ~",
        "h\u00E9llo na\u00EFve \u00C5ngstr\u00F6m",                // precomposed accents
        "e\u0301 a\u0308 n\u0303",                                 // combining accents
        "\u65E5\u672C\u8A9E \uD55C\uAD6D\uC5B4",                   // CJK, Hangul
        "\u0645\u0631\u062D\u0628\u0627 \u05E9\u05DC\u05D5\u05DD", // Arabic, Hebrew (no controls)
        "\U0001F600 \u2764\uFE0F \u0031\uFE0F\u20E3",              // emoji, VS16, keycap 1
        "\U0001F468\u200D\U0001F469\u200D\U0001F467",              // family: ZWJ sequence
        "\u2764\uFE0F\u200D\U0001F525",                            // heart on fire: VS16 then ZWJ
        "\U0001F44B\U0001F3FD\u200D\u2642\uFE0F",                  // skin tone, ZWJ, VS16
        "\U0001F1E9\U0001F1EA",                                    // a flag
        "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645",        // Persian, ZWNJ between letters
        "a\u00A0b\u3000c",                                         // no-break and ideographic space
    };
    for (const auto& t : texts) {
        INFO(t);
        CHECK(sanitizeForTerminal(t) == t);
    }
}

TEST_CASE("sanitize: controls become U+FFFD, as before", "[terminal]") {
    CHECK(sanitizeForTerminal("a\tb\nc\rd") == "a" + kMark + "b" + kMark + "c" + kMark + "d");
    CHECK(sanitizeForTerminal("\x1b[31mred\x7f") == kMark + "[31mred" + kMark);
    CHECK(sanitizeForTerminal("\xC2\x9B"
                              "7m\xC2\x85") == kMark + "7m" + kMark); // C1: CSI, NEL
    CHECK(sanitizeForTerminal(std::string("a\0b", 3)) == "a" + kMark + "b");
}

TEST_CASE("sanitize: invalid UTF-8 becomes U+FFFD, one per byte", "[terminal]") {
    CHECK(sanitizeForTerminal("a\xFFz") == "a" + kMark + "z");
    CHECK(sanitizeForTerminal("\xC3") == kMark);                         // truncated
    CHECK(sanitizeForTerminal("\xC0\xAF") == kMark + kMark);             // overlong "/"
    CHECK(sanitizeForTerminal("\xC0\x9B") == kMark + kMark);             // overlong ESC
    CHECK(sanitizeForTerminal("\xED\xA0\x80") == kMark + kMark + kMark); // a surrogate
    CHECK(sanitizeForTerminal("\xF4\x90\x80\x80") == kMark + kMark + kMark + kMark);
}

TEST_CASE("sanitize: no bidi control ever passes", "[terminal]") {
    const std::vector<utf8proc_int32_t> bidi = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066,
                                                0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C};
    for (auto cp : bidi) {
        INFO("U+" << std::hex << cp);
        auto c = utf8(cp);
        CHECK(sanitizeForTerminal("a" + c + "b") == "a" + kMark + "b");
        CHECK(sanitizeForTerminal(c) == kMark);
        // Not even next to the characters that let a joiner or variation selector pass.
        auto out = sanitizeForTerminal("\u0645" + c + "\u200C\u0645\U0001F468\u200D" + c +
                                       "\U0001F469\u2764" + c + "\uFE0F");
        CHECK(out.find(c) == std::string::npos);
    }
    // The classic: a file name that displays as "abcexe.png".
    auto name = sanitizeForTerminal("abc\u202Egnp.exe");
    CHECK(name.find("\u202E") == std::string::npos);
    CHECK(name == "abc" + kMark + "gnp.exe");
}

TEST_CASE("sanitize: invisible and format characters become U+FFFD", "[terminal]") {
    const std::vector<std::string> invisible = {
        "\u200B",       // zero width space
        "\u2060",       // word joiner
        "\uFEFF",       // byte order mark
        "\u00AD",       // soft hyphen
        "\u180E",       // Mongolian vowel separator
        "\U000E0041",   // tag latin capital letter A ("ASCII smuggling")
        "\u2028",       // line separator (Zl)
        "\u2029",       // paragraph separator (Zp)
        "\u3164",       // Hangul filler: a blank "letter"
        "\uFFA0",       // halfwidth Hangul filler
        "\uE000",       // private use: its glyph is whatever the reader's font has there
        "\U000F0000",   // supplementary private use
        "\u0378",       // unassigned
        "\xEF\xBF\xBF", // U+FFFF, a noncharacter
    };
    for (const auto& c : invisible) {
        INFO(c);
        CHECK(sanitizeForTerminal("a" + c + "b") == "a" + kMark + "b");
    }
}

TEST_CASE("sanitize: joiners and variation selectors pass only where they join", "[terminal]") {
    const std::string zwj = "\u200D", zwnj = "\u200C", vs16 = "\uFE0F";
    // A ZWJ between letters, or at an end, joins nothing: names that look alike.
    CHECK(sanitizeForTerminal("b" + zwj + "ob") == "b" + kMark + "ob");
    CHECK(sanitizeForTerminal("bob" + zwj) == "bob" + kMark);
    CHECK(sanitizeForTerminal(zwj + "\U0001F469") == kMark + "\U0001F469");
    CHECK(sanitizeForTerminal("\U0001F468" + zwj) == "\U0001F468" + kMark);
    CHECK(sanitizeForTerminal("\U0001F468" + zwj + zwj + "\U0001F469") ==
          "\U0001F468" + kMark + kMark + "\U0001F469");
    // A ZWNJ only between Arabic-script letters (an accent in between is fine).
    CHECK(sanitizeForTerminal("bo" + zwnj + "b") == "bo" + kMark + "b");
    CHECK(sanitizeForTerminal("\u0645\u064E" + zwnj + "\u0645") ==
          "\u0645\u064E" + zwnj + "\u0645");
    CHECK(sanitizeForTerminal("\u0645" + zwnj + "b") == "\u0645" + kMark + "b");
    // One variation selector after a kept character; not alone, not in a run.
    CHECK(sanitizeForTerminal(vs16 + "a") == kMark + "a");
    CHECK(sanitizeForTerminal("\u2764" + vs16 + vs16) == "\u2764" + vs16 + kMark);
    CHECK(sanitizeForTerminal("\u200B" + vs16) == kMark + kMark);
}

TEST_CASE("sanitize: every control, format, private-use or unassigned code point is "
          "neutralised",
          "[terminal]") {
    // Planes 0, 1 and 14 (where the format characters live), between two letters where no
    // joiner or variation selector may pass.
    std::vector<utf8proc_int32_t> passed;
    auto sweep = [&](utf8proc_int32_t from, utf8proc_int32_t to) {
        for (auto cp = from; cp <= to; ++cp) {
            if (cp >= 0xD800 && cp <= 0xDFFF)
                continue;
            auto category = utf8proc_category(cp);
            bool invisible =
                category == UTF8PROC_CATEGORY_CC || category == UTF8PROC_CATEGORY_CF ||
                category == UTF8PROC_CATEGORY_ZL || category == UTF8PROC_CATEGORY_ZP ||
                category == UTF8PROC_CATEGORY_CO || category == UTF8PROC_CATEGORY_CN ||
                (utf8proc_get_property(cp)->ignorable && category != UTF8PROC_CATEGORY_MN);
            if (invisible && sanitizeForTerminal("x" + utf8(cp) + "x") != "x" + kMark + "x")
                passed.push_back(cp);
        }
    };
    sweep(0, 0x1FFFF);
    sweep(0xE0000, 0xE0FFF);
    CHECK(passed.empty());
    // Ignorable combining marks (variation selectors) attach to the letter before them.
    CHECK(sanitizeForTerminal("x\uFE00x") == "x\uFE00x");
}

TEST_CASE("display width: wide characters 2, combining marks 0", "[terminal]") {
    CHECK(displayWidth("") == 0);
    CHECK(displayWidth("abc") == 3);
    CHECK(displayWidth("\u65E5\u672C") == 4); // "日本"
    CHECK(displayWidth("e\u0301") == 1);
    CHECK(displayWidth("h\u00E9llo") == 5);
    CHECK(displayWidth("\U0001F600") == 2);
    CHECK(displayWidth("\xFF") == 1); // shown as one U+FFFD
}
