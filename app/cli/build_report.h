#pragma once
// The MoE build as moe-cli shows it: progress on stderr, the report as JSON
// (build and bench --selector), routing accuracy per layer (also route-eval).
#include "cli_common.h"

#include "moe/builder.h"

namespace moe::cli {

// Builds `s`, printing progress to stderr unless `quiet`.
BuildResult buildWithProgress(vk::Context& ctx, const Selector& s, bool quiet);
json buildReportJson(const BuildReport& r);
// Per layer: accuracy per token and per prompt, and the confusion matrix
// ("val_" keys for the build's validation split).
json layersJson(const std::vector<LayerAccuracy>& layers, bool validation);

} // namespace moe::cli
