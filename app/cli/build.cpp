// moe-cli build: validate a selector, capture, train or compute the gates.
#include "build_report.h"

#include "moe/selector.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct BuildArgs {
    std::filesystem::path selector;
    bool asJson = false;
    DeviceOptions device;
};

int runBuild(const BuildArgs& a) {
    vk::Context ctx(a.device.context());
    const Selector s = loadSelectorAny(a.selector);
    auto result = buildWithProgress(ctx, s, a.asJson);
    const auto& r = result.report;
    if (a.asJson) {
        std::cout << buildReportJson(r).dump() << "\n";
        return r.cancelled ? 2 : 0;
    }
    for (const auto& w : r.warnings) std::printf("warning: %s\n", w.c_str());
    for (const auto& l : r.layers)
        std::printf("layer %3d  validation accuracy  per token %.3f  per prompt %.3f\n", l.layer, l.token, l.prompt);
    for (const auto& [mode, loss] : r.validationLoss) std::printf("routing %-10s validation loss %.4f\n", mode.c_str(), loss);
    std::printf("routing: %s%s\n", toString(r.routing),
                r.routingChosen ? " (lowest next-token loss on the validation prompts)" : " (from the selector)");
    std::printf("gates: %s\n", r.gates.c_str());
    if (!r.lossCsv.empty()) std::printf("loss CSV: %s\n", r.lossCsv.c_str());
    std::printf("experts add %s; built in %.1f s\n", mib(r.expertBytes).c_str(), r.seconds);
    return 0;
}

} // namespace

Command addBuildCommand(CLI::App& app) {
    auto a = std::make_shared<BuildArgs>();
    auto* cmd = app.add_subcommand("build", "Build an MoE from a selector: validate, capture, train or compute the gates");
    cmd->add_option("selector", a->selector, "Selector (TOML, or a mergekit-moe YAML)")->required()->check(CLI::ExistingFile);
    cmd->add_flag("--json", a->asJson, "End with one JSON object of figures and paths");
    a->device.add(cmd);
    return {cmd, [a] { return runBuild(*a); }};
}

} // namespace moe::cli
