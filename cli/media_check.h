#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace parley::cli {
struct MediaCheckCommand {
    CLI::App* command = nullptr;
    std::function<int()> run;
};
// Adds `parley media-check` to the app; run() returns the exit code (0 ok, 1 runtime error, 2 usage
// error) and prints its own messages.
MediaCheckCommand addMediaCheckCommand(CLI::App& app);
} // namespace parley::cli
