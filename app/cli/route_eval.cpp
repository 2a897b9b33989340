// moe-cli route-eval: routing accuracy of a built MoE's gates on a labelled dataset.
#include "build_report.h"

#include "moe/dataset.h"
#include "moe/gate_training.h"
#include "moe/selector.h"
#include "moe/validate.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct RouteEvalArgs {
    std::filesystem::path selector, dataset;
    std::string routing;
    bool asJson = false;
    DeviceOptions device;
};

int runRouteEval(const RouteEvalArgs& a) {
    vk::Context ctx(a.device.context());
    const Selector s = loadSelectorAny(a.selector);
    const SelectionFacts facts = validateSelection(s);
    std::map<std::string, std::string> meta;
    const auto gates = loadGates(gatesFile(s), facts.layers, uint32_t(facts.nExperts),
                                      uint32_t(facts.base.hiddenSize), &meta);
    RoutingMode mode = s.routing.value_or(RoutingMode::Token);
    if (!s.routing && meta.count("routing")) parseRoutingMode(meta["routing"], mode);
    if (!a.routing.empty()) mode = parseRouting(a.routing);
    const auto rows = loadDataset(a.dataset);
    auto model = Model::load(ctx, s.baseModel);
    auto tok = Tokenizer::load(s.baseModel);
    Session session(*model);
    const auto layers = evaluateRouting(session, *tok, ChatTemplate::fromModelDir(s.baseModel), rows,
                                             facts.layers, gates, uint32_t(facts.nExperts), mode, s.routingHalflife,
                                             s.useChatTemplate);
    if (a.asJson) {
        std::cout << json{{"routing", toString(mode)}, {"dataset", a.dataset.string()}, {"rows", rows.size()},
                          {"layers", layersJson(layers, false)}}.dump() << "\n";
        return 0;
    }
    std::printf("routing %s, %zu prompts\n", toString(mode), rows.size());
    for (const auto& l : layers) {
        std::printf("layer %3d  accuracy  per token %.3f  per prompt %.3f\n  confusion (rows: label, columns: predicted)\n",
                    l.layer, l.token, l.prompt);
        for (const auto& row : l.confusion) {
            std::printf("   ");
            for (int v : row) std::printf(" %4d", v);
            std::printf("\n");
        }
    }
    return 0;
}

} // namespace

Command addRouteEvalCommand(CLI::App& app) {
    auto a = std::make_shared<RouteEvalArgs>();
    auto* cmd = app.add_subcommand("route-eval", "Routing accuracy of a built MoE's gates on a labelled dataset");
    cmd->add_option("--selector,-s", a->selector, "Selector of the built MoE")->required()->check(CLI::ExistingFile);
    cmd->add_option("--dataset,-d", a->dataset, "AnyMoE dataset JSON")->required()->check(CLI::ExistingFile);
    cmd->add_option("--routing", a->routing, "Routing mode (default: the MoE's)");
    cmd->add_flag("--json", a->asJson, "End with one JSON object");
    a->device.add(cmd);
    return {cmd, [a] { return runRouteEval(*a); }};
}

} // namespace moe::cli
