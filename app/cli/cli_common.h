#pragma once
// What the moe-cli subcommands share: how a subcommand registers itself, the
// device, model and sampling options, and the JSON shapes of the figures
// several of them print.
#include "moe/chat_template.h"
#include "moe/runnable_model.h"
#include "moe/sampler.h"
#include "moe/vk.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace moe::cli {

using nlohmann::json;

// A subcommand: its parser, and what runs when it was given (exit status).
struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};

Command addDevicesCommand(CLI::App& app);
Command addInfoCommand(CLI::App& app);
Command addModelsCommand(CLI::App& app);
Command addGenerateCommand(CLI::App& app);
Command addChatCommand(CLI::App& app);
Command addBenchCommand(CLI::App& app);
Command addBuildCommand(CLI::App& app);
Command addExportCommand(CLI::App& app);
Command addRouteEvalCommand(CLI::App& app);
Command addPerplexityCommand(CLI::App& app);
Command addServeCommand(CLI::App& app);

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t);
std::string mib(uint64_t bytes);
std::string gib(uint64_t bytes);

// --device: index or part of the name (default: MOE_VK_DEVICE, else the best).
struct DeviceOptions {
    std::string device;
    void add(CLI::App* app);
    vk::ContextOptions context() const;
};

// --model DIR or --selector FILE (a built MoE), --routing, --expert-budget.
struct ModelOptions {
    std::filesystem::path model, selector;
    std::string routing, expertBudget, quantize;
    // `routing`/`budget`: whether this subcommand takes --routing / --expert-budget.
    void add(CLI::App* app, bool routing, bool budget);
    OpenOptions openOptions() const;
    std::unique_ptr<RunnableModel> open(vk::Context& ctx) const;
};

// --routing NAME; throws naming the option.
RoutingMode parseRouting(const std::string& name);
// --expert-budget SIZE in bytes (empty = 0: every expert resident).
uint64_t parseExpertBudget(const std::string& budget);
// --quantize NAME (empty = not given); throws naming the option.
std::optional<QuantizeScheme> parseQuantizeOption(const std::string& name);
void addQuantizeOption(CLI::App* app, std::string& quantize);

void addSampling(CLI::App* app, SamplingParams& s);
// --thinking on|off: the chat template's enable_thinking (Qwen3's switch;
// templates without it ignore it). Unset: the template's own default.
void addThinkingOption(CLI::App* app, std::string& thinking);
ChatTemplateKwargs thinkingKwargs(const std::string& thinking);

// Expert cache figures (null without a budget).
json expertCacheJson(const Model& model, const ExpertCacheFigures& f);
json expertCacheJson(const Model& model, const std::optional<ExpertCacheFigures>& f);
// [{"layer": L, "tokens": [per slot]}] per MoE layer.
json expertUsageJson(const std::vector<LayerUsage>& usage);
// The likelihood pick with each candidate's prompt loss (null when there is none).
json likelihoodJson(const RunnableModel& model, const LikelihoodPick& pick);

} // namespace moe::cli
