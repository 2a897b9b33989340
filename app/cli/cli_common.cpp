#include "cli_common.h"

#include "moe/byte_size.h"
#include "moe/error.h"

#include <cstdio>

namespace moe::cli {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string gib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / (1ull << 30));
    return buf;
}

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1ull << 20));
    return buf;
}

void DeviceOptions::add(CLI::App* app) {
    app->add_option("--device", device, "Vulkan device: index or part of its name (default: MOE_VK_DEVICE, else the best)");
}

vk::ContextOptions DeviceOptions::context() const {
    vk::ContextOptions o;
    o.device = device;
    return o;
}

void ModelOptions::add(CLI::App* app, bool withRouting, bool withBudget) {
    auto* m = app->add_option("--model,-m", model, "Model folder or .gguf file");
    auto* s = app->add_option("--selector,-s", selector, "A built MoE: its selector (TOML or mergekit YAML)");
    m->excludes(s);
    addQuantizeOption(app, quantize);
    if (withRouting)
        app->add_option("--routing", routing, "Override the MoE's routing: token, running, sequence, likelihood");
    if (withBudget)
        app->add_option("--expert-budget", expertBudget,
                        "Keep at most SIZE of expert weights on the device (512MB, 2GB); the rest stays memory-mapped "
                        "on the host and is uploaded when routed to, least-frequently-used experts evicted");
}

OpenOptions ModelOptions::openOptions() const {
    OpenOptions o;
    o.expertBudget = parseExpertBudget(expertBudget);
    o.quantize = parseQuantizeOption(quantize);
    if (!routing.empty()) o.routing = parseRouting(routing);
    return o;
}

std::unique_ptr<RunnableModel> ModelOptions::open(vk::Context& ctx) const {
    const OpenOptions o = openOptions();
    if (!selector.empty()) return RunnableModel::openSelector(ctx, selector, o);
    if (model.empty()) throw Error("give --model DIR or --selector FILE");
    if (o.routing) throw Error("--routing applies to a built MoE (--selector)");
    auto run = RunnableModel::openModel(ctx, model, o);
    if (o.expertBudget && !run->isMoe())
        throw Error("--expert-budget: the model has no routed experts to keep under a budget");
    return run;
}

void addQuantizeOption(CLI::App* app, std::string& quantize) {
    app->add_option("--quantize", quantize,
                    std::string("Quantize 16/32-bit weights on load: ") + quantizeSchemeNames() +
                        " (a GGUF file's quantized tensors stay as they are)");
}

std::optional<QuantizeScheme> parseQuantizeOption(const std::string& name) {
    if (name.empty()) return std::nullopt;
    const auto s = parseQuantizeScheme(name);
    if (!s) throw Error("--quantize " + name + ": use " + quantizeSchemeNames());
    return s;
}

RoutingMode parseRouting(const std::string& name) {
    RoutingMode m;
    if (!parseRoutingMode(name, m)) throw Error("--routing " + name + ": use token, running, sequence or likelihood");
    return m;
}

uint64_t parseExpertBudget(const std::string& budget) {
    if (budget.empty()) return 0;
    uint64_t bytes = 0;
    try {
        bytes = parseByteSize(budget);
    } catch (const Error&) {
        throw Error("--expert-budget " + budget + ": expected a size such as 512MB, 2GB or 1000000 (bytes)");
    }
    if (bytes == 0) throw Error("--expert-budget " + budget + ": give a size above 0 (leave it out for no budget)");
    return bytes;
}

void addSampling(CLI::App* app, SamplingParams& s) {
    app->add_option("--temperature,--temp", s.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
    app->add_option("--top-k", s.topK, "Keep the k most likely tokens (0 = off)")->capture_default_str();
    app->add_option("--top-p", s.topP, "Nucleus sampling mass (1 = off)")->capture_default_str();
    app->add_option("--min-p", s.minP, "Drop tokens below min-p x the best probability (0 = off)")->capture_default_str();
    app->add_option("--repeat-penalty", s.repetitionPenalty, "Repetition penalty (1 = off)")->capture_default_str();
    app->add_option("--presence-penalty", s.presencePenalty, "Presence penalty")->capture_default_str();
    app->add_option("--frequency-penalty", s.frequencyPenalty, "Frequency penalty")->capture_default_str();
    app->add_option("--penalty-last-n", s.penaltyLastN, "Tokens the penalties look back over (-1 = all)")->capture_default_str();
    app->add_option("--seed", s.seed, "Random seed (0 = random)")->capture_default_str();
}

void addThinkingOption(CLI::App* app, std::string& thinking) {
    app->add_option("--thinking", thinking,
                    "on or off: the chat template's enable_thinking (Qwen3 thinks by default; off renders an empty "
                    "think block)")
        ->check(CLI::IsMember({"on", "off"}));
}

ChatTemplateKwargs thinkingKwargs(const std::string& thinking) {
    if (thinking.empty()) return {};
    return {{"enable_thinking", thinking == "on"}};
}

json expertCacheJson(const Model& model, const ExpertCacheFigures& f) {
    if (model.expertBudget() == 0) return nullptr;
    const ExpertCacheStats& s = f.stats;
    return {{"budget_bytes", s.budgetBytes},
            {"hits", s.hits},
            {"misses", s.misses},
            {"hit_rate", f.hitRate()},
            {"evictions", s.evictions},
            {"bytes_uploaded", s.bytesUploaded},
            {"tokens", f.tokens},
            {"hits_per_token", f.perToken(s.hits)},
            {"misses_per_token", f.perToken(s.misses)},
            {"bytes_uploaded_per_token", f.perToken(s.bytesUploaded)},
            {"resident_bytes", s.residentBytes},
            {"peak_resident_bytes", s.peakResidentBytes},
            {"pageable_bytes", f.pageableBytes}};
}

json expertCacheJson(const Model& model, const std::optional<ExpertCacheFigures>& f) {
    return f ? expertCacheJson(model, *f) : json(nullptr);
}

json expertUsageJson(const std::vector<LayerUsage>& usage) {
    json out = json::array();
    for (const auto& u : usage) out.push_back({{"layer", u.layer}, {"tokens", u.tokens}});
    return out;
}

json likelihoodJson(const RunnableModel& model, const LikelihoodPick& pick) {
    if (pick.slot < 0) return nullptr;
    const auto names = model.slotNames();
    json losses = json::object();
    for (size_t i = 0; i < pick.candidates.size(); ++i) losses[names.at(size_t(pick.candidates[i]))] = pick.loss[i];
    return {{"pick", names.at(size_t(pick.slot))}, {"slot", pick.slot}, {"prompt_loss", losses}};
}

} // namespace moe::cli
