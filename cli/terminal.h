// Terminal helpers for the CLI: passphrase prompts, safe printing and QR codes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace parley::cli {

bool stdinIsTerminal();
// Reads a line from the controlling terminal with echo off; nullopt without a terminal.
std::optional<std::string> promptHidden(const std::string& prompt);
// Replaces control characters and escape sequences so that text from others cannot
// drive the terminal.
std::string sanitizeForTerminal(std::string_view text);
// The text as a QR code drawn with Unicode half blocks; throws std::runtime_error.
std::string renderQr(const std::string& text);

} // namespace parley::cli
