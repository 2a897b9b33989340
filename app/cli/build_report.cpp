#include "build_report.h"

#include <cstdio>

namespace moe::cli {

json layersJson(const std::vector<LayerAccuracy>& layers, bool validation) {
    json out = json::array();
    for (const auto& l : layers) {
        if (validation)
            out.push_back({{"layer", l.layer}, {"val_accuracy_token", l.token}, {"val_accuracy_prompt", l.prompt},
                           {"confusion", l.confusion}});
        else
            out.push_back({{"layer", l.layer}, {"accuracy_token", l.token}, {"accuracy_prompt", l.prompt},
                           {"confusion", l.confusion}});
    }
    return out;
}

json buildReportJson(const BuildReport& r) {
    return {{"layers", layersJson(r.layers, true)},
            {"routing", toString(r.routing)},
            {"routing_chosen", r.routingChosen},
            {"validation_loss", r.validationLoss},
            {"gates", r.gates.string()},
            {"loss_csv", r.lossCsv.empty() ? json(nullptr) : json(r.lossCsv.string())},
            {"seconds", r.seconds},
            {"capture_tokens", r.captureTokens},
            {"capture_tokens_per_second", r.captureSeconds > 0 ? double(r.captureTokens) / r.captureSeconds : 0.0},
            {"train_steps", r.trainSteps},
            {"train_steps_per_second", r.trainSeconds > 0 ? r.trainSteps / r.trainSeconds : 0.0},
            {"expert_bytes", r.expertBytes},
            {"cancelled", r.cancelled},
            {"warnings", r.warnings}};
}

BuildResult buildWithProgress(vk::Context& ctx, const Selector& s, bool quiet) {
    std::string lastStage;
    auto lastPrint = Clock::now() - std::chrono::seconds(1);
    auto result = buildMoe(ctx, s, [&](const BuildProgress& p) {
        if (quiet) return;
        // At most five updates a second, and every stage change.
        const bool last = p.done + 1 >= p.total;
        if (p.stage == lastStage && !last && !(p.training && p.training->epochEnd) &&
            secondsSince(lastPrint) < 0.2)
            return;
        lastPrint = Clock::now();
        if (p.training) {
            const auto& t = *p.training;
            std::fprintf(stderr, "\rtrain  epoch %d/%d  step %d/%d  loss %.4f  %.0fs left   ", t.epoch, t.epochs, t.step,
                         t.totalSteps, t.meanLoss, t.etaSeconds);
        } else {
            if (p.stage != lastStage && !lastStage.empty()) std::fprintf(stderr, "\n");
            std::fprintf(stderr, "\r%-28s %zu/%zu   ", p.stage.c_str(), p.done, p.total);
        }
        lastStage = p.stage;
    });
    if (!quiet) std::fprintf(stderr, "\n");
    return result;
}

} // namespace moe::cli
