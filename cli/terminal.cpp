// Terminal helpers: hidden prompts, sanitising, QR rendering with libqrencode.
#include "terminal.h"

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <memory>
#include <qrencode.h>
#include <stdexcept>
#include <termios.h>
#include <unistd.h>

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

std::string sanitizeForTerminal(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7f) {
            out += "\xEF\xBF\xBD"; // U+FFFD: visible, inert
            continue;
        }
        // C1 controls (U+0080..U+009F) encoded in UTF-8 as C2 80..C2 9F, e.g. CSI.
        if (c == 0xC2 && i + 1 < text.size()) {
            auto n = static_cast<unsigned char>(text[i + 1]);
            if (n >= 0x80 && n <= 0x9f) {
                out += "\xEF\xBF\xBD";
                ++i;
                continue;
            }
        }
        out.push_back(static_cast<char>(c));
    }
    return out;
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
