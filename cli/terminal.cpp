// Terminal helpers: hidden prompts, sanitising and display width with utf8proc, QR rendering
// with libqrencode.
#include "terminal.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <memory>
#include <qrencode.h>
#include <stdexcept>
#include <termios.h>
#include <unistd.h>
#include <utf8proc.h>
#include <vector>

namespace parley::cli {

bool stdinIsTerminal() {
    return ::isatty(STDIN_FILENO) == 1;
}

std::optional<std::string> promptHidden(const std::string& prompt) {
    int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    // Ctrl-C or Ctrl-Z while echo is off would leave the terminal silent: hold those signals
    // until the terminal is restored; a pending one is delivered right after.
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTSTP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &block, &old);
    [[maybe_unused]] auto w = ::write(fd, prompt.data(), prompt.size());
    termios oldTermios{};
    bool haveTermios = ::tcgetattr(fd, &oldTermios) == 0;
    if (haveTermios) {
        termios noEcho = oldTermios;
        noEcho.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        ::tcsetattr(fd, TCSAFLUSH, &noEcho);
    }
    std::string line;
    bool complete = false;
    char c;
    while (::read(fd, &c, 1) == 1) {
        if (c == '\n') {
            complete = true;
            break;
        }
        line.push_back(c);
    }
    if (haveTermios)
        ::tcsetattr(fd, TCSAFLUSH, &oldTermios);
    w = ::write(fd, "\n", 1);
    ::close(fd);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!complete)
        return std::nullopt; // end of input: no answer, not an empty one
    return line;
}

namespace {

constexpr std::string_view kMark = "\xEF\xBF\xBD"; // U+FFFD: visible, inert
constexpr utf8proc_int32_t kZwnj = 0x200C;
constexpr utf8proc_int32_t kZwj = 0x200D;

// One code point of the input, or (cp < 0) one byte that does not start valid UTF-8.
struct Decoded {
    utf8proc_int32_t cp;
    std::size_t offset;
    std::size_t length;
};

std::vector<Decoded> decode(std::string_view text) {
    std::vector<Decoded> out;
    out.reserve(text.size());
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    for (std::size_t i = 0; i < text.size();) {
        utf8proc_int32_t cp = -1;
        auto n = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
        std::size_t length = n > 0 ? static_cast<std::size_t>(n) : 1;
        out.push_back({n > 0 ? cp : -1, i, length});
        i += length;
    }
    return out;
}

// What a code point is on its own; joiners and attached ones depend on their neighbours.
enum class Kind { kept, neutralised, attached, joiner };

Kind kindOf(utf8proc_int32_t cp) {
    if (cp < 0)
        return Kind::neutralised;
    if (cp == kZwj || cp == kZwnj)
        return Kind::joiner;
    const auto* property = utf8proc_get_property(cp);
    switch (property->category) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CS:
        return Kind::neutralised;
    case UTF8PROC_CATEGORY_MN:
        return property->ignorable ? Kind::attached : Kind::kept;
    default:
        return property->ignorable ? Kind::neutralised : Kind::kept;
    }
}

bool isMark(utf8proc_int32_t cp) {
    auto category = utf8proc_category(cp);
    return category == UTF8PROC_CATEGORY_MN || category == UTF8PROC_CATEGORY_MC ||
           category == UTF8PROC_CATEGORY_ME;
}

bool isArabicLetter(utf8proc_int32_t cp) {
    return utf8proc_get_property(cp)->bidi_class == UTF8PROC_BIDI_CLASS_AL && !isMark(cp);
}

} // namespace

std::string sanitizeForTerminal(std::string_view text) {
    auto cps = decode(text);
    std::vector<Kind> kinds(cps.size());
    // joinedToPrevious[i]: utf8proc's grapheme rules put cps[i - 1] and cps[i] in one cluster.
    std::vector<bool> joinedToPrevious(cps.size(), false);
    utf8proc_int32_t graphemeState = 0;
    for (std::size_t i = 0; i < cps.size(); ++i) {
        kinds[i] = kindOf(cps[i].cp);
        if (i > 0) {
            auto before = cps[i - 1].cp < 0 ? 0xFFFD : cps[i - 1].cp;
            auto here = cps[i].cp < 0 ? 0xFFFD : cps[i].cp;
            joinedToPrevious[i] = !utf8proc_grapheme_break_stateful(before, here, &graphemeState);
        }
    }
    // Decided left to right: a joiner or attached mark looks at what was kept before it and
    // at the kind of what follows, which never depends on it.
    std::vector<bool> keep(cps.size(), false);
    for (std::size_t i = 0; i < cps.size(); ++i) {
        switch (kinds[i]) {
        case Kind::kept:
            keep[i] = true;
            break;
        case Kind::neutralised:
            break;
        case Kind::attached: // one per character: a run of them would hide bytes
            keep[i] = i > 0 && keep[i - 1] && kinds[i - 1] == Kind::kept;
            break;
        case Kind::joiner: {
            bool nextKept = i + 1 < cps.size() && kinds[i + 1] == Kind::kept;
            if (i == 0 || !keep[i - 1] || !nextKept)
                break;
            if (cps[i].cp == kZwj) {
                keep[i] = joinedToPrevious[i] && joinedToPrevious[i + 1];
            } else {
                std::size_t base = i - 1; // the letter under any marks before the ZWNJ
                while (base > 0 && keep[base] && isMark(cps[base].cp))
                    --base;
                keep[i] =
                    keep[base] && isArabicLetter(cps[base].cp) && isArabicLetter(cps[i + 1].cp);
            }
            break;
        }
        }
    }
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < cps.size(); ++i) {
        if (keep[i])
            out.append(text.substr(cps[i].offset, cps[i].length));
        else
            out.append(kMark);
    }
    return out;
}

std::size_t displayWidth(std::string_view text) {
    std::size_t columns = 0;
    for (const auto& d : decode(text))
        columns += d.cp < 0 ? 1 : static_cast<std::size_t>(std::max(0, utf8proc_charwidth(d.cp)));
    return columns;
}

std::string renderQr(const std::string& text) {
    std::unique_ptr<QRcode, decltype(&QRcode_free)> qr(
        QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1), &QRcode_free);
    if (!qr)
        throw std::runtime_error("cannot encode the QR code");
    const int quiet = 2;
    const int size = qr->width + 2 * quiet;
    auto dark = [&](int x, int y) {
        x -= quiet;
        y -= quiet;
        if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
            return false;
        return (qr->data[y * qr->width + x] & 1) != 0;
    };
    // Light modules are drawn (terminal foreground), dark ones left blank: on the usual
    // light-on-dark terminal this gives dark modules on a light background, as scanners expect.
    std::string out;
    for (int y = 0; y < size; y += 2) {
        for (int x = 0; x < size; ++x) {
            bool top = !dark(x, y);
            bool bottom = y + 1 < size ? !dark(x, y + 1) : false;
            out += top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ";
        }
        out += '\n';
    }
    return out;
}

} // namespace parley::cli
