// moe-cli: the headless entry point. Each subcommand lives in its own file
// (app/cli/<name>.cpp); the work itself is the engine's.
#include "cli_common.h"

#include <cstdio>
#include <exception>
#include <vector>

int main(int argc, char** argv) {
    CLI::App app{"moe-cli: build, inspect and run Mixture-of-Experts models on Vulkan"};
    app.require_subcommand(1);
    using namespace moe::cli;
    const std::vector<Command> commands = {addDevicesCommand(app),    addInfoCommand(app),  addGenerateCommand(app),
                                           addBenchCommand(app),      addPerplexityCommand(app), addBuildCommand(app),
                                           addRouteEvalCommand(app),  addExportCommand(app), addChatCommand(app),
                                           addModelsCommand(app),     addServeCommand(app)};
    CLI11_PARSE(app, argc, argv);
    try {
        for (const Command& c : commands)
            if (c.app->parsed()) return c.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-cli: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
