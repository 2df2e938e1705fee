// The `parley` program: `parley daemon` runs a node; every other command is a thin client
// of the daemon's control API (DESIGN.md §1, §10). The commands live in cmd_*.cpp, one file
// per group; main() parses the command line and runs the one given.
#include "commands.h"
#ifdef PARLEY_HAVE_MEDIA_CHECK
#include "media_check.h"
#endif

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

using namespace parley::cli;

int main(int argc, char** argv) {
    CLI::App app{"parley: a serverless, end-to-end encrypted messenger.\n"
                 "Run a node with 'parley up', share the contact id 'parley id' prints, and find\n"
                 "people by theirs with 'parley lookup'. Exit codes: 0 ok, 1 runtime error,\n"
                 "2 usage error, 3 daemon not running."};
    app.require_subcommand(1);
    app.set_version_flag("--version", PARLEY_VERSION);
    Global g;
    addGlobalOptions(app, g);
    Commands commands;
    addIdentityCommands(app, g, commands);
    addDaemonCommands(app, g, commands);
    addChatCommands(app, g, commands);
    addTransferCommands(app, g, commands);
    addLinkCommands(app, g, commands);
    addContactCommands(app, g, commands);
#ifdef PARLEY_HAVE_MEDIA_CHECK
    auto mediaCheck = addMediaCheckCommand(app);
    if (mediaCheck.command)
        commands.push_back({mediaCheck.command, mediaCheck.run});
#endif

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? kOk : kUsage;
    }

    try {
        for (const auto& command : commands)
            if (*command.app)
                return command.run();
    } catch (const Failure& e) {
        std::cerr << "parley: " << e.what() << "\n";
        return e.code;
    } catch (const std::exception& e) {
        std::cerr << "parley: " << e.what() << "\n";
        return kRuntime;
    }
    return kUsage;
}
