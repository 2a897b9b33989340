// moe-cli: the headless entry point (devices, info, generate, chat, build,
// route-eval, perplexity, bench).
#include "moe/atomic_file.h"
#include "moe/builder.h"
#include "moe/chat_prompt.h"
#include "moe/chat_template.h"
#include "moe/mergekit.h"
#include "moe/error.h"
#include "moe/export.h"
#include "moe/generate.h"
#include "moe/model.h"
#include "moe/scoring.h"
#include "moe/tokenizer.h"
#include "moe/vk.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Peak resident memory of this process (VmHWM), in bytes.
uint64_t peakHostMemory() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

std::string apiVersionString(uint32_t v) {
    return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
           std::to_string(VK_API_VERSION_PATCH(v));
}

uint64_t folderBytes(const std::filesystem::path& dir) {
    uint64_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.is_regular_file()) n += e.file_size();
    return n;
}

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

struct DeviceOptions {
    std::string device;
    void add(CLI::App* app) {
        app->add_option("--device", device, "Vulkan device: index or part of its name (default: MOE_VK_DEVICE, else the best)");
    }
    moe::vk::ContextOptions context() const {
        moe::vk::ContextOptions o;
        o.device = device;
        return o;
    }
};

int runDevices(bool asJson) {
    auto devices = moe::vk::listDevices();
    json out = json::array();
    for (const auto& d : devices) {
        json heaps = json::array();
        for (const auto& h : d.heaps) heaps.push_back({{"bytes", h.size}, {"device_local", h.deviceLocal}});
        out.push_back({{"index", d.index}, {"name", d.name}, {"type", d.type}, {"driver", d.driver},
                       {"api_version", apiVersionString(d.apiVersion)}, {"subgroup_size", d.subgroupSize},
                       {"max_storage_buffer_range", d.maxStorageBufferRange},
                       {"max_memory_allocation_size", d.maxMemoryAllocationSize},
                       {"max_compute_shared_memory", d.maxComputeSharedMemorySize},
                       {"max_workgroup_count", {d.maxWorkGroupCount[0], d.maxWorkGroupCount[1], d.maxWorkGroupCount[2]}},
                       {"max_workgroup_invocations", d.maxWorkGroupInvocations},
                       {"max_push_constants", d.maxPushConstantsSize},
                       {"full_subgroups", d.fullSubgroups}, {"memory_heaps", heaps}});
    }
    if (asJson) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    for (const auto& d : out) {
        std::cout << "[" << d["index"] << "] " << d["name"].get<std::string>() << " (" << d["type"].get<std::string>()
                  << ", Vulkan " << d["api_version"].get<std::string>() << ", " << d["driver"].get<std::string>() << ")\n";
        std::cout << "    subgroup size " << d["subgroup_size"] << ", max storage buffer range "
                  << mib(d["max_storage_buffer_range"]) << ", max allocation " << mib(d["max_memory_allocation_size"])
                  << ", shared memory " << d["max_compute_shared_memory"].get<uint64_t>() / 1024 << " KiB, push constants "
                  << d["max_push_constants"] << " B\n";
        for (const auto& h : d["memory_heaps"])
            std::cout << "    heap " << gib(h["bytes"]) << (h["device_local"].get<bool>() ? " device-local" : " host") << "\n";
    }
    if (out.empty()) std::cout << "no Vulkan devices\n";
    return 0;
}

json modelFacts(const moe::ModelConfig& c, const std::filesystem::path& dir, uint64_t params, const std::string& dtype) {
    return {{"path", dir.string()}, {"architecture", c.architecture}, {"model_type", c.modelType},
            {"parameters", params}, {"layers", c.numLayers}, {"hidden_size", c.hiddenSize},
            {"intermediate_size", c.intermediateSize}, {"attention_heads", c.numHeads},
            {"kv_heads", c.numKvHeads}, {"head_dim", c.headDim}, {"vocab_size", c.vocabSize},
            {"max_position_embeddings", c.maxPositions}, {"rope_theta", c.ropeTheta},
            {"rms_norm_eps", c.rmsNormEps}, {"sliding_window", c.slidingWindow},
            {"tie_word_embeddings", c.tieWordEmbeddings}, {"attention_bias", c.attentionBias},
            {"dtype", dtype}, {"size_on_disk", folderBytes(dir)}};
}

// Parameters one token runs: all but the experts it is not routed to
// (`params` for a dense model).
uint64_t activeParameters(const moe::ModelConfig& config, uint64_t params) {
    if (!config.isMoe()) return params;
    const uint64_t perExpert = 3ull * uint64_t(config.hiddenSize) * uint64_t(config.expertIntermediateSize());
    uint64_t sparseLayers = 0;
    for (int l = 0; l < config.numLayers; ++l) sparseLayers += config.isSparseLayer(l) ? 1 : 0;
    const uint64_t idle = uint64_t(config.numExperts - config.expertsPerToken) * perExpert * sparseLayers;
    return params > idle ? params - idle : 0;
}

int runInfo(const std::filesystem::path& dir, bool asJson) {
    auto config = moe::ModelConfig::load(dir);
    auto store = moe::WeightStore::openFolder(dir);
    uint64_t params = 0;
    std::string dtype;
    for (const auto& name : store->names()) {
        const auto* t = store->find(name);
        params += uint64_t(t->numel());
        if (dtype.empty() && name.find("embed_tokens") != std::string::npos) dtype = moe::dtypeName(t->dtype);
    }
    json facts = modelFacts(config, dir, params, dtype);
    try {
        auto tok = moe::Tokenizer::load(dir);
        facts["tokenizer"] = tok->kind();
        facts["tokenizer_vocab"] = tok->vocabSize();
    } catch (const moe::Error& e) {
        facts["tokenizer"] = std::string("unavailable: ") + e.what();
    }
    facts["chat_template"] = !moe::ChatTemplate::fromModelDir(dir).isFallback();
    if (config.isMoe()) {
        facts["experts"] = config.numExperts;
        facts["experts_per_token"] = config.expertsPerToken;
        facts["active_parameters"] = activeParameters(config, params);
    }
    if (asJson) {
        std::cout << facts.dump(2) << "\n";
        return 0;
    }
    std::cout << "model         " << dir.string() << "\n"
              << "architecture  " << config.architecture << "\n"
              << "parameters    " << params << "\n"
              << "layers        " << config.numLayers << "\n"
              << "hidden size   " << config.hiddenSize << " (intermediate " << config.intermediateSize << ")\n"
              << "attention     " << config.numHeads << " heads, " << config.numKvHeads << " KV heads, head_dim "
              << config.headDim << (config.slidingWindow ? ", sliding window " + std::to_string(config.slidingWindow) : "")
              << "\n"
              << "vocabulary    " << config.vocabSize << "\n"
              << "context       " << config.maxPositions << " (rope theta " << config.ropeTheta << ")\n"
              << "dtype         " << dtype << "\n"
              << "size on disk  " << mib(folderBytes(dir)) << "\n"
              << "tokenizer     " << facts["tokenizer"].get<std::string>() << "\n"
              << "chat template " << (facts["chat_template"].get<bool>() ? "yes" : "no (plain fallback)") << "\n";
    if (config.isMoe())
        std::cout << "experts       " << config.numExperts << " per layer, top-" << config.expertsPerToken
                  << " per token (" << (config.normTopkProb ? "renormalised" : "not renormalised") << ")\n"
                  << "active params " << facts["active_parameters"].get<uint64_t>() << " of " << params
                  << " per token\n";
    return 0;
}

// A dense model or a built MoE (from a selector), with what running it needs.
struct Runnable {
    std::unique_ptr<moe::Model> dense;
    std::unique_ptr<moe::Tokenizer> denseTokenizer;
    std::unique_ptr<moe::MoeModel> moe;
    moe::Model& model() { return moe ? moe->model() : *dense; }
    const moe::Tokenizer& tokenizer() { return moe ? moe->tokenizer() : *denseTokenizer; }
    std::filesystem::path dir;
};

moe::RoutingMode parseRouting(const std::string& name) {
    moe::RoutingMode m;
    if (!moe::parseRoutingMode(name, m))
        throw moe::Error("--routing " + name + ": use token, running, sequence or likelihood");
    return m;
}

// --expert-budget SIZE in bytes (empty = 0: every expert resident).
uint64_t parseExpertBudget(const std::string& budget) {
    if (budget.empty()) return 0;
    uint64_t bytes = 0;
    try {
        bytes = moe::parseByteSize(budget);
    } catch (const moe::Error&) {
        throw moe::Error("--expert-budget " + budget + ": expected a size such as 512MB, 2GB or 1000000 (bytes)");
    }
    if (bytes == 0) throw moe::Error("--expert-budget " + budget + ": give a size above 0 (leave it out for no budget)");
    return bytes;
}

// --expert-budget SIZE on a model (loaded under it already, or not).
void applyExpertBudget(moe::Model& model, const std::string& budget) {
    const uint64_t bytes = parseExpertBudget(budget);
    if (bytes == 0) return;
    if (model.pageableExpertBytes() == 0)
        throw moe::Error("--expert-budget: the model has no routed experts to keep under a budget");
    if (model.expertBudget() != bytes) model.setExpertBudget(bytes);
}

// Expert cache figures over `tokens` forwarded tokens (null without a budget).
json expertCacheJson(moe::Model& model, uint64_t tokens) {
    if (model.expertBudget() == 0) return nullptr;
    const moe::ExpertCacheStats s = model.expertCacheStats();
    const uint64_t uses = s.hits + s.misses;
    const double perToken = tokens ? 1.0 / double(tokens) : 0.0;
    return {{"budget_bytes", s.budgetBytes},
            {"hits", s.hits},
            {"misses", s.misses},
            {"hit_rate", uses ? double(s.hits) / double(uses) : 0.0},
            {"evictions", s.evictions},
            {"bytes_uploaded", s.bytesUploaded},
            {"tokens", tokens},
            {"hits_per_token", double(s.hits) * perToken},
            {"misses_per_token", double(s.misses) * perToken},
            {"bytes_uploaded_per_token", double(s.bytesUploaded) * perToken},
            {"resident_bytes", s.residentBytes},
            {"peak_resident_bytes", s.peakResidentBytes},
            {"pageable_bytes", model.pageableExpertBytes()}};
}

Runnable openRunnable(moe::vk::Context& ctx, const std::filesystem::path& model, const std::filesystem::path& selector,
                      const std::string& routing, const std::string& expertBudget = {}) {
    Runnable r;
    // Loaded under the budget: experts are mapped, never all on the device.
    const uint64_t budget = parseExpertBudget(expertBudget);
    if (!selector.empty()) {
        r.moe = moe::MoeModel::load(ctx, moe::loadSelectorAny(selector), budget);
        if (!routing.empty()) r.moe->setRouting(parseRouting(routing));
        r.dir = r.moe->selector().baseModel;
    } else {
        if (model.empty()) throw moe::Error("give --model DIR or --selector FILE");
        r.dense = moe::Model::load(ctx, model, {}, budget);
        r.denseTokenizer = moe::Tokenizer::load(model);
        r.dir = model;
    }
    applyExpertBudget(r.model(), expertBudget);
    return r;
}

// Tokens each expert slot received per MoE layer since the last reset
// (built and native MoEs; empty for a dense model).
json expertUsage(moe::Session& session) {
    json out = json::array();
    for (const auto& [layer, tokens] : session.expertUsage()) out.push_back({{"layer", layer}, {"tokens", tokens}});
    return out;
}

// Generation options that route the prompt the MoE's way (likelihood picks an expert).
void routePrompts(Runnable& r, moe::GenerateOptions& opts, moe::TurnRouting* pick) {
    if (r.moe) opts.prefill = moe::routedPrefill(*r.moe, pick);
}

json likelihoodJson(Runnable& r, const moe::TurnRouting& t) {
    if (!r.moe || t.slot < 0) return nullptr;
    const auto names = r.moe->slotNames();
    json losses = json::object();
    for (size_t i = 0; i < t.candidates.size(); ++i) losses[names.at(size_t(t.candidates[i]))] = t.loss[i];
    return {{"pick", names.at(size_t(t.slot))}, {"slot", t.slot}, {"prompt_loss", losses}};
}

struct GenerateArgs {
    std::filesystem::path selector;
    std::string routing;
    std::filesystem::path model;
    std::string prompt;
    std::string system;
    int maxTokens = 128;
    bool chat = false;
    bool asJson = false;
    uint32_t context = 0;
    std::vector<std::string> stops;
    std::string expertBudget;
    moe::SamplingParams sampling;
};

int runGenerate(const GenerateArgs& a, const DeviceOptions& dev) {
    moe::vk::Context ctx(dev.context());
    Runnable run = openRunnable(ctx, a.model, a.selector, a.routing, a.expertBudget);
    moe::Model* model = &run.model();
    const moe::Tokenizer* tok = &run.tokenizer();
    std::vector<int32_t> prompt;
    if (a.chat) {
        auto tmpl = moe::ChatTemplate::fromModelDir(run.dir);
        std::vector<moe::ChatMessage> messages;
        if (!a.system.empty()) messages.push_back({"system", a.system});
        messages.push_back({"user", a.prompt});
        prompt = moe::encodeChat(tmpl, *tok, messages);
    } else {
        prompt = tok->encode(a.prompt, true, false);
    }
    if (prompt.empty()) throw moe::Error("the prompt encodes to no tokens");
    moe::Session session(*model, a.context);
    moe::GenerateOptions opts;
    opts.maxTokens = a.maxTokens;
    opts.stopStrings = a.stops;
    opts.sampling = a.sampling;
    moe::TurnRouting pick;
    routePrompts(run, opts, &pick);
    session.resetExpertUsage();
    auto result = moe::generate(session, *tok, prompt, opts, [&](const std::string& piece) {
        if (!a.asJson) {
            std::cout << piece << std::flush;
        }
        return true;
    });
    if (a.asJson) {
        json out = {{"prompt_tokens", result.promptTokens}, {"prompt_ids", prompt}, {"token_ids", result.tokens},
                    {"text", result.text}, {"stop_reason", result.stopReason},
                    {"prompt_tokens_per_second", result.promptTokensPerSecond()},
                    {"decode_tokens_per_second", result.decodeTokensPerSecond()}, {"device", ctx.info().name}};
        if (const json usage = expertUsage(session); !usage.empty()) out["expert_usage"] = usage;
        if (run.moe) {
            out["routing"] = moe::toString(run.moe->routing());
            if (pick.slot >= 0) out["likelihood"] = likelihoodJson(run, pick);
        }
        if (model->expertBudget())
            out["expert_cache"] = expertCacheJson(*model, uint64_t(result.promptTokens) + result.tokens.size());
        std::cout << out.dump() << "\n";
    } else {
        std::cout << "\n";
        if (pick.slot >= 0) std::fprintf(stderr, "likelihood routing: %s\n", likelihoodJson(run, pick).dump().c_str());
        std::fprintf(stderr, "\nprompt: %d tokens, %.1f tokens/s | generation: %zu tokens, %.1f tokens/s (%s) | %s\n",
                     result.promptTokens, result.promptTokensPerSecond(), result.tokens.size(),
                     result.decodeTokensPerSecond(), result.stopReason.c_str(), ctx.info().name.c_str());
        if (model->expertBudget())
            std::fprintf(stderr, "expert cache: %s\n",
                         expertCacheJson(*model, uint64_t(result.promptTokens) + result.tokens.size()).dump().c_str());
    }
    return 0;
}

struct BenchArgs {
    std::filesystem::path selector;
    std::filesystem::path model;
    std::filesystem::path dense; // optional: a dense model to compare decode speed with
    int promptTokens = 256;
    int genTokens = 128;
    bool asJson = false;
    bool profile = false; // also time each shader over one prefill and the decode steps
    std::string expertBudget;
};

// Device bandwidth ceiling: copy a 64 MiB buffer several times; read + write bytes per second.
double probeBandwidth(moe::vk::Context& ctx, bool texelSource) {
    const uint64_t bytes = std::min<uint64_t>(64ull << 20, ctx.maxStorageRange());
    moe::vk::Buffer src(ctx, bytes, moe::vk::MemoryUse::Device), dst(ctx, bytes, moe::vk::MemoryUse::Device);
    src.fillZero();
    moe::vk::Recorder rec(ctx);
    const int reps = 8;
    rec.begin();
    for (int i = 0; i < reps; ++i) {
        moe::ops::copy(ctx, rec, src, dst, bytes, texelSource);
        rec.barrier();
    }
    rec.end();
    rec.submitAndWait(); // warm-up
    auto t0 = Clock::now();
    rec.submitAndWait();
    return double(bytes) * 2 * reps / secondsSince(t0);
}

json buildReportJson(const moe::BuildReport& r);
moe::BuildResult buildWithProgress(moe::vk::Context& ctx, const moe::Selector& s, bool quiet);

struct SpeedFigures {
    double prefill = 0, decode = 0;
    uint32_t prefillDispatches = 0, decodeDispatches = 0, decodeBarriers = 0;
    json prefillCache, decodeCache; // expert cache figures under a budget, else null
};

// The benchmark's prompt: reproducible random token ids past the usual special ids.
std::vector<int32_t> randomPrompt(const moe::ModelConfig& c, int tokens) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> anyToken(3, c.vocabSize - 1);
    std::vector<int32_t> prompt(static_cast<size_t>(tokens));
    for (auto& t : prompt) t = anyToken(rng);
    return prompt;
}

// A session that holds the prompt in one batch and the decode steps after it.
std::unique_ptr<moe::Session> benchSession(moe::Model& model, int promptTokens, int genTokens) {
    return std::make_unique<moe::Session>(model, uint32_t(std::max(promptTokens + genTokens + 1, 16)),
                                          uint32_t(std::max(promptTokens, 1)));
}

// Prefill of a random prompt, then greedy decode, after a warm-up.
SpeedFigures measureSpeed(moe::Model& model, int promptTokens, int genTokens) {
    auto sessionOwner = benchSession(model, promptTokens, genTokens);
    moe::Session& session = *sessionOwner;
    const std::vector<int32_t> prompt = randomPrompt(model.config(), promptTokens);
    session.forward(std::span<const int32_t>(prompt.data(), std::min<size_t>(8, prompt.size())));
    session.forward(std::span<const int32_t>(prompt.data(), 1));
    session.reset();
    model.resetExpertCacheStats(); // count the measured tokens only
    SpeedFigures f;
    auto tp = Clock::now();
    auto logits = session.forward(prompt);
    f.prefill = promptTokens / secondsSince(tp);
    f.prefillDispatches = session.lastDispatches();
    f.prefillCache = expertCacheJson(model, uint64_t(promptTokens));
    model.resetExpertCacheStats();
    int32_t next = moe::argmax(logits);
    auto td = Clock::now();
    for (int i = 0; i < genTokens; ++i) {
        logits = session.forward(std::span<const int32_t>(&next, 1));
        next = moe::argmax(logits);
    }
    f.decode = genTokens / secondsSince(td);
    f.decodeDispatches = session.lastDispatches();
    f.decodeBarriers = session.lastBarriers();
    f.decodeCache = expertCacheJson(model, uint64_t(genTokens));
    return f;
}

// Time per shader in one prefill and in the decode steps after it, from the
// device's timestamps (a separate run: timestamps slow small steps down).
struct StepProfiles {
    std::vector<moe::vk::ProfileEntry> prefill, decode;
};

StepProfiles profileSteps(moe::vk::Context& ctx, moe::Model& model, int promptTokens, int genTokens) {
    ctx.setProfiling(true);
    StepProfiles out;
    {
        auto session = benchSession(model, promptTokens, genTokens);
        ctx.takeProfile();
        int32_t next = moe::argmax(session->forward(randomPrompt(model.config(), promptTokens)));
        out.prefill = ctx.takeProfile();
        for (int i = 0; i < genTokens; ++i) next = moe::argmax(session->forward(std::span<const int32_t>(&next, 1)));
        out.decode = ctx.takeProfile();
    }
    ctx.setProfiling(false);
    return out;
}

json profileJson(const std::vector<moe::vk::ProfileEntry>& entries, int steps) {
    json out = json::array();
    for (const auto& e : entries)
        out.push_back({{"shader", e.shader}, {"dispatches_per_step", double(e.dispatches) / steps},
                       {"milliseconds_per_step", e.milliseconds / steps}});
    return out;
}

void printProfile(const char* title, const std::vector<moe::vk::ProfileEntry>& entries, int steps) {
    double total = 0;
    for (const auto& e : entries) total += e.milliseconds;
    std::printf("%s: %.2f ms of shaders per step\n", title, total / steps);
    for (const auto& e : entries)
        std::printf("  %-28s %7.1f dispatches %9.3f ms %5.1f%%\n", e.shader.c_str(), double(e.dispatches) / steps,
                    e.milliseconds / steps, total > 0 ? 100 * e.milliseconds / total : 0);
}

// The decode figures of an expert cache, as bench prints them.
void printExpertCache(const moe::Model& model, const json& decodeCache) {
    if (!model.expertBudget() || decodeCache.is_null()) return;
    std::printf("expert cache    budget %s of %s; decode: hit rate %.1f%%, %.2f misses and %s uploaded per token; "
                "peak resident %s\n",
                mib(model.expertBudget()).c_str(), mib(decodeCache["pageable_bytes"].get<uint64_t>()).c_str(),
                100 * decodeCache["hit_rate"].get<double>(), decodeCache["misses_per_token"].get<double>(),
                mib(uint64_t(decodeCache["bytes_uploaded_per_token"].get<double>())).c_str(),
                mib(decodeCache["peak_resident_bytes"].get<uint64_t>()).c_str());
}

// The MoE builder's figures: capture and training speed, build time, and
// decode speed of the MoE against its dense base.
int runBenchSelector(const BenchArgs& a, const DeviceOptions& dev) {
    moe::vk::Context ctx(dev.context());
    const moe::Selector s = moe::loadSelectorAny(a.selector);
    auto result = buildWithProgress(ctx, s, a.asJson);
    if (!result.moe) throw moe::Error("the build was cancelled");
    const auto& r = result.report;
    auto base = moe::Model::load(ctx, s.baseModel);
    const SpeedFigures dense = measureSpeed(*base, a.promptTokens, a.genTokens);
    base.reset();
    moe::Model& moeModel = result.moe->model();
    applyExpertBudget(moeModel, a.expertBudget);
    const SpeedFigures moeSpeed = measureSpeed(moeModel, a.promptTokens, a.genTokens);
    json out = buildReportJson(r);
    out["device"] = ctx.info().name;
    out["build_seconds"] = r.seconds;
    out["dense_prefill_tokens_per_second"] = dense.prefill;
    out["dense_decode_tokens_per_second"] = dense.decode;
    out["moe_prefill_tokens_per_second"] = moeSpeed.prefill;
    out["moe_decode_tokens_per_second"] = moeSpeed.decode;
    out["moe_decode_dispatches_per_token"] = moeSpeed.decodeDispatches;
    out["moe_decode_barriers_per_token"] = moeSpeed.decodeBarriers;
    out["top_k"] = s.topK;
    if (moeModel.expertBudget()) out["expert_cache"] = {{"prefill", moeSpeed.prefillCache}, {"decode", moeSpeed.decodeCache}};
    if (a.asJson) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::printf("device          %s\n", ctx.info().name.c_str());
    std::printf("capture         %.1f tokens/s (%zu tokens)\n", out["capture_tokens_per_second"].get<double>(), r.captureTokens);
    std::printf("gate training   %.1f steps/s (%d steps)\n", out["train_steps_per_second"].get<double>(), r.trainSteps);
    std::printf("build           %.1f s in total (routing: %s)\n", r.seconds, moe::toString(r.routing));
    std::printf("prefill         dense %.1f tokens/s, MoE %.1f tokens/s\n", dense.prefill, moeSpeed.prefill);
    std::printf("decode          dense %.1f tokens/s, MoE %.1f tokens/s (top-%d; %u dispatches, %u barriers per token)\n",
                dense.decode, moeSpeed.decode, s.topK, moeSpeed.decodeDispatches, moeSpeed.decodeBarriers);
    printExpertCache(moeModel, moeSpeed.decodeCache);
    return 0;
}

int runBench(const BenchArgs& a, const DeviceOptions& dev) {
    if (!a.selector.empty()) return runBenchSelector(a, dev);
    if (a.model.empty()) throw moe::Error("give --model DIR or --selector FILE");
    auto t0 = Clock::now();
    moe::vk::Context ctx(dev.context());
    auto model = moe::Model::load(ctx, a.model, {}, parseExpertBudget(a.expertBudget));
    const double loadSeconds = secondsSince(t0);
    applyExpertBudget(*model, a.expertBudget);
    const auto& c = model->config();
    const SpeedFigures speed = measureSpeed(*model, a.promptTokens, a.genTokens);
    const double prefillRate = speed.prefill, decodeRate = speed.decode;
    // Bytes a decode step reads: every weight but the embedding table (one row of it)
    // and, in a native MoE, the experts a token is not routed to.
    uint64_t weightBytes = model->deviceBytes();
    if (!c.tieWordEmbeddings) weightBytes -= uint64_t(c.vocabSize) * c.hiddenSize * moe::dtypeSize(model->weightDType());
    // A native MoE token reads only its top-k experts' weights.
    if (c.isMoe())
        weightBytes -= (model->parameterCount() - activeParameters(c, model->parameterCount())) *
                       moe::dtypeSize(model->weightDType());
    const double gbps = double(weightBytes) * decodeRate / 1e9;
    // Read before the probe: its buffers are not the model's (on CPU drivers
    // device memory is host memory).
    const uint64_t peak = peakHostMemory();
    // The ceiling for the read path the shaders use (texel or storage buffers).
    const double probe = probeBandwidth(ctx, ctx.texelReads()) / 1e9;
    const char* readPath = ctx.texelReads() ? "texel" : "storage";

    json out = {{"model", a.model.string()},
                {"device", ctx.info().name},
                {"device_type", ctx.info().type},
                {"parameters", model->parameterCount()},
                {"weight_bytes", model->deviceBytes()},
                {"load_seconds", loadSeconds},
                {"prompt_tokens", a.promptTokens},
                {"prefill_tokens_per_second", prefillRate},
                {"generated_tokens", a.genTokens},
                {"decode_tokens_per_second", decodeRate},
                {"decode_dispatches_per_token", speed.decodeDispatches},
                {"decode_barriers_per_token", speed.decodeBarriers},
                {"prefill_dispatches", speed.prefillDispatches},
                {"decode_weight_bytes_per_token", weightBytes},
                {"decode_effective_gb_per_s", gbps},
                {"device_copy_gb_per_s", probe},
                {"weight_reads", readPath},
                {"decode_fraction_of_copy_bandwidth", probe > 0 ? gbps / probe : 0},
                {"peak_host_memory_bytes", peak},
                {"peak_host_memory_over_weights", double(peak) / double(model->deviceBytes())}};
    if (model->expertBudget()) out["expert_cache"] = {{"prefill", speed.prefillCache}, {"decode", speed.decodeCache}};
    StepProfiles profile;
    if (a.profile) {
        profile = profileSteps(ctx, *model, a.promptTokens, a.genTokens);
        out["profile"] = {{"prefill", profileJson(profile.prefill, 1)}, {"decode", profileJson(profile.decode, a.genTokens)}};
    }
    if (c.isMoe()) {
        out["experts"] = c.numExperts;
        out["experts_per_token"] = c.expertsPerToken;
        out["active_parameters"] = activeParameters(c, model->parameterCount());
    }
    // A dense model with the MoE's active parameters shows what routing costs
    // beyond the weights a token reads.
    SpeedFigures dense;
    uint64_t denseParams = 0;
    if (!a.dense.empty()) {
        auto denseModel = moe::Model::load(ctx, a.dense);
        denseParams = denseModel->parameterCount();
        dense = measureSpeed(*denseModel, a.promptTokens, a.genTokens);
        out["dense_model"] = a.dense.string();
        out["dense_parameters"] = denseParams;
        out["dense_prefill_tokens_per_second"] = dense.prefill;
        out["dense_decode_tokens_per_second"] = dense.decode;
        out["decode_speed_over_dense"] = dense.decode > 0 ? decodeRate / dense.decode : 0;
    }
    if (a.asJson) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::printf("model           %s (%s, %llu parameters, %s of weights)\n", a.model.c_str(), c.architecture.c_str(),
                (unsigned long long)model->parameterCount(), mib(model->deviceBytes()).c_str());
    std::printf("device          %s (%s)\n", ctx.info().name.c_str(), ctx.info().type.c_str());
    std::printf("load            %.2f s\n", loadSeconds);
    std::printf("prefill         %.1f tokens/s (%d-token prompt, %u dispatches)\n", prefillRate, a.promptTokens,
                speed.prefillDispatches);
    std::printf("decode          %.1f tokens/s (%d tokens, %u dispatches and %u barriers per token)\n", decodeRate,
                a.genTokens, speed.decodeDispatches, speed.decodeBarriers);
    std::printf("decode reads    %.2f GB/s effective (%s per token); device copy probe %.2f GB/s with %s reads (%.0f%%)\n",
                gbps, mib(weightBytes).c_str(), probe, readPath, probe > 0 ? 100 * gbps / probe : 0);
    std::printf("peak host mem   %s (%.2f x weight bytes)\n", mib(peak).c_str(), double(peak) / double(model->deviceBytes()));
    printExpertCache(*model, speed.decodeCache);
    if (a.profile) {
        printProfile("prefill profile", profile.prefill, 1);
        printProfile("decode profile", profile.decode, a.genTokens);
    }
    if (c.isMoe())
        std::printf("experts         %d per layer, top-%d; %llu active parameters per token\n", c.numExperts,
                    c.expertsPerToken, (unsigned long long)out["active_parameters"].get<uint64_t>());
    if (!a.dense.empty())
        std::printf("dense compare   %s (%llu parameters): prefill %.1f tokens/s, decode %.1f tokens/s; this model "
                    "decodes at %.2f x its speed\n",
                    a.dense.c_str(), (unsigned long long)denseParams, dense.prefill, dense.decode,
                    dense.decode > 0 ? decodeRate / dense.decode : 0);
    return 0;
}

struct PerplexityArgs {
    std::filesystem::path selector;
    std::string routing;
    std::filesystem::path model;
    std::filesystem::path file;
    uint32_t window = 256;
    uint32_t promptTokens = 0;
    size_t maxWindows = 0;
    bool asJson = false;
};

int runPerplexity(const PerplexityArgs& a, const DeviceOptions& dev) {
    auto t0 = Clock::now();
    moe::vk::Context ctx(dev.context());
    Runnable run = openRunnable(ctx, a.model, a.selector, a.routing);
    const std::string text = moe::readTextFile(a.file);
    moe::Session session(run.model(), a.window + 1, a.window + 1);
    moe::PerplexityOptions opt;
    opt.window = a.window;
    opt.maxWindows = a.maxWindows;
    opt.promptTokens = a.promptTokens;
    if (run.moe && run.moe->routing() == moe::RoutingMode::Likelihood) opt.likelihoodSlots = run.moe->likelihoodSlots();
    opt.progress = [&](size_t w, size_t n) {
        if (!a.asJson) std::fprintf(stderr, "\rwindow %zu/%zu", w + 1, n);
        return true;
    };
    const auto r = moe::perplexity(session, run.tokenizer(), text, opt);
    if (!a.asJson) std::fprintf(stderr, "\n");
    json out = {{"perplexity", r.perplexity}, {"loss", r.loss}, {"tokens", r.tokens}, {"windows", r.windows},
                {"file", a.file.string()}, {"seconds", secondsSince(t0)}};
    if (run.moe) out["routing"] = moe::toString(run.moe->routing());
    if (!r.picks.empty()) {
        json picks = json::array();
        const auto names = run.moe->slotNames();
        for (int p : r.picks) picks.push_back(names.at(size_t(p)));
        out["picks"] = picks;
    }
    if (a.asJson) std::cout << out.dump() << "\n";
    else std::printf("perplexity %.4f (loss %.4f nats/token over %zu tokens in %zu windows)\n", r.perplexity, r.loss,
                     r.tokens, r.windows);
    return 0;
}

struct BuildArgs {
    std::filesystem::path selector;
    bool asJson = false;
};

json layersJson(const std::vector<moe::LayerAccuracy>& layers, bool validation) {
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

json buildReportJson(const moe::BuildReport& r) {
    return {{"layers", layersJson(r.layers, true)},
            {"routing", moe::toString(r.routing)},
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

moe::BuildResult buildWithProgress(moe::vk::Context& ctx, const moe::Selector& s, bool quiet) {
    std::string lastStage;
    auto lastPrint = Clock::now() - std::chrono::seconds(1);
    auto result = moe::buildMoe(ctx, s, [&](const moe::BuildProgress& p) {
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

int runBuild(const BuildArgs& a, const DeviceOptions& dev) {
    moe::vk::Context ctx(dev.context());
    const moe::Selector s = moe::loadSelectorAny(a.selector);
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
    std::printf("routing: %s%s\n", moe::toString(r.routing),
                r.routingChosen ? " (lowest next-token loss on the validation prompts)" : " (from the selector)");
    std::printf("gates: %s\n", r.gates.c_str());
    if (!r.lossCsv.empty()) std::printf("loss CSV: %s\n", r.lossCsv.c_str());
    std::printf("experts add %s; built in %.1f s\n", mib(r.expertBytes).c_str(), r.seconds);
    return 0;
}

struct ExportArgs {
    std::filesystem::path selector, out;
    std::string format = "mixtral", dtype, shardSize = "5GB";
    bool asJson = false;
};

int runExport(const ExportArgs& a) {
    const moe::Selector s = moe::loadSelectorAny(a.selector);
    moe::ExportOptions o;
    o.out = a.out;
    if (!moe::parseExportFormat(a.format, o.format))
        throw moe::Error("--format \"" + a.format + "\": expected mixtral or qwen2_moe");
    o.dtype = a.dtype;
    o.shardBytes = moe::parseByteSize(a.shardSize);
    size_t lastPercent = 101;
    const auto rep = moe::exportMoe(s, o, [&](const moe::ExportProgress& p) {
        if (a.asJson || p.total == 0) return;
        const size_t pct = p.done * 100 / p.total;
        if (pct != lastPercent) std::fprintf(stderr, "\rexport %s %3zu%%", p.stage.c_str(), pct);
        lastPercent = pct;
    });
    if (!a.asJson) std::fprintf(stderr, "\n");
    if (a.asJson) {
        std::cout << json{{"out", rep.out.string()}, {"files", rep.files}, {"warnings", rep.warnings},
                          {"tensors", rep.tensors}, {"bytes", rep.bytes}, {"parameters", rep.parameters},
                          {"experts", rep.experts}, {"experts_per_token", rep.expertsPerToken}}
                         .dump()
                  << "\n";
        return 0;
    }
    for (const auto& w : rep.warnings) std::printf("warning: %s\n", w.c_str());
    std::printf("%s: %s, %d experts, top-%d, %zu tensors, %llu parameters, %s in %zu files\n", rep.out.c_str(),
                moe::toString(o.format), rep.experts, rep.expertsPerToken, rep.tensors,
                static_cast<unsigned long long>(rep.parameters), mib(rep.bytes).c_str(), rep.files.size());
    return 0;
}

struct RouteEvalArgs {
    std::filesystem::path selector, dataset;
    std::string routing;
    bool asJson = false;
};

int runRouteEval(const RouteEvalArgs& a, const DeviceOptions& dev) {
    moe::vk::Context ctx(dev.context());
    const moe::Selector s = moe::loadSelectorAny(a.selector);
    const moe::SelectionFacts facts = moe::validateSelection(s);
    std::map<std::string, std::string> meta;
    const auto gates = moe::loadGates(moe::gatesFile(s), facts.layers, uint32_t(facts.nExperts),
                                      uint32_t(facts.base.hiddenSize), &meta);
    moe::RoutingMode mode = s.routing.value_or(moe::RoutingMode::Token);
    if (!s.routing && meta.count("routing")) moe::parseRoutingMode(meta["routing"], mode);
    if (!a.routing.empty()) mode = parseRouting(a.routing);
    const auto rows = moe::loadDataset(a.dataset);
    auto model = moe::Model::load(ctx, s.baseModel);
    auto tok = moe::Tokenizer::load(s.baseModel);
    moe::Session session(*model);
    const auto layers = moe::evaluateRouting(session, *tok, moe::ChatTemplate::fromModelDir(s.baseModel), rows,
                                             facts.layers, gates, uint32_t(facts.nExperts), mode, s.routingHalflife,
                                             s.useChatTemplate);
    if (a.asJson) {
        std::cout << json{{"routing", moe::toString(mode)}, {"dataset", a.dataset.string()}, {"rows", rows.size()},
                          {"layers", layersJson(layers, false)}}.dump() << "\n";
        return 0;
    }
    std::printf("routing %s, %zu prompts\n", moe::toString(mode), rows.size());
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

struct ChatArgs {
    std::filesystem::path model, selector;
    std::string routing, system;
    int maxTokens = 256;
    uint32_t context = 0;
    std::string expertBudget;
    moe::SamplingParams sampling;
};

// Interactive chat in the terminal: each turn renders the whole conversation
// and forwards only what the session has not seen (likelihood routing scores
// the new turn).
int runChat(const ChatArgs& a, const DeviceOptions& dev) {
    moe::vk::Context ctx(dev.context());
    Runnable run = openRunnable(ctx, a.model, a.selector, a.routing, a.expertBudget);
    const auto tmpl = moe::ChatTemplate::fromModelDir(run.dir);
    const moe::Tokenizer& tok = run.tokenizer();
    moe::Session session(run.model(), a.context);
    std::vector<moe::ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    std::vector<int32_t> cached; // tokens in the session's cache
    std::fprintf(stderr, "chat with %s (empty line or Ctrl-D ends)\n", run.dir.c_str());
    std::string line;
    while (std::fprintf(stderr, "> "), std::getline(std::cin, line) && !line.empty()) {
        messages.push_back({"user", line});
        std::vector<int32_t> ids = moe::encodeChat(tmpl, tok, messages);
        size_t common = 0;
        while (common < cached.size() && common < ids.size() && cached[common] == ids[common]) ++common;
        if (common == ids.size()) --common; // at least one new token to forward
        session.truncate(uint32_t(common));
        const std::vector<int32_t> turn(ids.begin() + long(common), ids.end());
        moe::GenerateOptions opts;
        opts.maxTokens = a.maxTokens;
        opts.sampling = a.sampling;
        moe::TurnRouting pick;
        routePrompts(run, opts, &pick);
        session.resetExpertUsage();
        run.model().resetExpertCacheStats();
        auto result = moe::generate(session, tok, turn, opts, [](const std::string& piece) {
            std::cout << piece << std::flush;
            return true;
        });
        std::cout << "\n";
        if (pick.slot >= 0) std::fprintf(stderr, "[likelihood routing: %s]\n", likelihoodJson(run, pick).dump().c_str());
        if (const json usage = expertUsage(session); !usage.empty())
            std::fprintf(stderr, "[expert usage: %s]\n", usage.dump().c_str());
        if (run.model().expertBudget())
            std::fprintf(stderr, "[expert cache: %s]\n",
                         expertCacheJson(run.model(), uint64_t(turn.size()) + result.tokens.size()).dump().c_str());
        cached.assign(ids.begin(), ids.end());
        cached.insert(cached.end(), result.tokens.begin(), result.tokens.end());
        cached.resize(std::min<size_t>(cached.size(), session.position()));
        messages.push_back({"assistant", result.text});
    }
    return 0;
}

// --model DIR or --selector FILE (a built MoE), and --routing to override the MoE's.
void addModelOrSelector(CLI::App* app, std::filesystem::path& model, std::filesystem::path& selector,
                        std::string* routing) {
    auto* m = app->add_option("--model,-m", model, "Model folder");
    auto* s = app->add_option("--selector,-s", selector, "A built MoE: its selector (TOML or mergekit YAML)");
    m->excludes(s);
    if (routing)
        app->add_option("--routing", *routing, "Override the MoE's routing: token, running, sequence, likelihood");
}

void addSampling(CLI::App* app, moe::SamplingParams& s) {
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

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"moe-cli: build, inspect and run Mixture-of-Experts models on Vulkan"};
    app.require_subcommand(1);

    bool devicesJson = false;
    auto* devices = app.add_subcommand("devices", "List Vulkan devices with their type, memory and limits");
    devices->add_flag("--json", devicesJson, "Machine-readable output");

    std::filesystem::path infoModel;
    bool infoJson = false;
    auto* info = app.add_subcommand("info", "Print a model's facts");
    info->add_option("--model,-m", infoModel, "Model folder (config.json + safetensors + tokenizer)")->required();
    info->add_flag("--json", infoJson, "Machine-readable output");

    GenerateArgs gen;
    DeviceOptions genDev;
    auto* generate = app.add_subcommand("generate", "Generate text from a prompt, streamed as it is produced");
    addModelOrSelector(generate, gen.model, gen.selector, &gen.routing);
    generate->add_option("--prompt,-p", gen.prompt, "Prompt text")->required();
    generate->add_option("-n,--max-tokens", gen.maxTokens, "Most tokens to generate")->capture_default_str();
    generate->add_flag("--chat", gen.chat, "Wrap the prompt in the model's chat template");
    generate->add_option("--system", gen.system, "System message (with --chat)");
    generate->add_option("--stop", gen.stops, "Stop string (repeatable)");
    generate->add_option("--ctx", gen.context, "Context length (default: the model's, at most 4096)");
    generate->add_option("--expert-budget", gen.expertBudget, "Keep at most SIZE of expert weights on the device (512MB, 2GB); the rest stays memory-mapped on the host and is uploaded when routed to, least-frequently-used experts evicted");
    generate->add_flag("--json", gen.asJson, "Print one JSON object with the token ids and text");
    addSampling(generate, gen.sampling);
    genDev.add(generate);

    BenchArgs bench;
    DeviceOptions benchDev;
    auto* benchCmd = app.add_subcommand("bench", "Measure load, prefill, decode, bandwidth and memory");
    addModelOrSelector(benchCmd, bench.model, bench.selector, nullptr); // with a selector: build it, then measure
    benchCmd->add_option("--prompt-tokens", bench.promptTokens, "Prompt length")->capture_default_str();
    benchCmd->add_option("--gen-tokens", bench.genTokens, "Tokens to decode")->capture_default_str();
    benchCmd->add_option("--expert-budget", bench.expertBudget, "Keep at most SIZE of expert weights on the device (512MB, 2GB); the rest stays memory-mapped on the host and is uploaded when routed to, least-frequently-used experts evicted");
    benchCmd->add_option("--dense", bench.dense,
                         "A dense model to compare decode speed with (e.g. one with the MoE's active parameters)")
        ->check(CLI::ExistingDirectory);
    benchCmd->add_flag("--json", bench.asJson, "Machine-readable output");
    benchCmd->add_flag("--profile", bench.profile,
                       "Also time each shader (device timestamps) over one prefill and the decode steps");
    benchDev.add(benchCmd);

    BuildArgs build;
    DeviceOptions buildDev;
    auto* buildCmd = app.add_subcommand("build", "Build an MoE from a selector: validate, capture, train or compute the gates");
    buildCmd->add_option("selector", build.selector, "Selector (TOML, or a mergekit-moe YAML)")->required()->check(CLI::ExistingFile);
    buildCmd->add_flag("--json", build.asJson, "End with one JSON object of figures and paths");
    buildDev.add(buildCmd);

    ExportArgs exportArgs;
    auto* exportCmd = app.add_subcommand("export", "Write a built MoE as a native sparse-MoE checkpoint (Mixtral)");
    exportCmd->add_option("selector", exportArgs.selector, "Selector of the built MoE")->required()->check(CLI::ExistingFile);
    exportCmd->add_option("--out,-o", exportArgs.out, "New output folder")->required();
    exportCmd->add_option("--format", exportArgs.format, "mixtral (default) or qwen2_moe");
    exportCmd->add_option("--dtype", exportArgs.dtype, "bf16, f16 or f32 (default: export_dtype, else the base's)");
    exportCmd->add_option("--shard-size", exportArgs.shardSize, "Largest safetensors shard (default 5GB)");
    exportCmd->add_flag("--json", exportArgs.asJson, "End with one JSON object");

    RouteEvalArgs reval;
    DeviceOptions revalDev;
    auto* revalCmd = app.add_subcommand("route-eval", "Routing accuracy of a built MoE's gates on a labelled dataset");
    revalCmd->add_option("--selector,-s", reval.selector, "Selector of the built MoE")->required()->check(CLI::ExistingFile);
    revalCmd->add_option("--dataset,-d", reval.dataset, "AnyMoE dataset JSON")->required()->check(CLI::ExistingFile);
    revalCmd->add_option("--routing", reval.routing, "Routing mode (default: the MoE's)");
    revalCmd->add_flag("--json", reval.asJson, "End with one JSON object");
    revalDev.add(revalCmd);

    ChatArgs chat;
    DeviceOptions chatDev;
    auto* chatCmd = app.add_subcommand("chat", "Chat in the terminal with a model or a built MoE, streamed");
    addModelOrSelector(chatCmd, chat.model, chat.selector, &chat.routing);
    chatCmd->add_option("--system", chat.system, "System message");
    chatCmd->add_option("-n,--max-tokens", chat.maxTokens, "Most tokens per reply")->capture_default_str();
    chatCmd->add_option("--ctx", chat.context, "Context length");
    chatCmd->add_option("--expert-budget", chat.expertBudget, "Keep at most SIZE of expert weights on the device (512MB, 2GB); the rest stays memory-mapped on the host and is uploaded when routed to, least-frequently-used experts evicted");
    addSampling(chatCmd, chat.sampling);
    chatDev.add(chatCmd);

    PerplexityArgs ppl;
    DeviceOptions pplDev;
    auto* pplCmd = app.add_subcommand("perplexity", "Perplexity of a model over a text file, in windows");
    addModelOrSelector(pplCmd, ppl.model, ppl.selector, &ppl.routing);
    pplCmd->add_option("--max-windows", ppl.maxWindows, "Score only the first N windows (0 = all)")->capture_default_str();
    pplCmd->add_option("--file,-f", ppl.file, "UTF-8 text file")->required()->check(CLI::ExistingFile);
    pplCmd->add_option("--window", ppl.window, "Tokens per window")->capture_default_str();
    pplCmd->add_option("--prompt-tokens", ppl.promptTokens,
                       "The first P tokens of each window are the prompt (they decide sequence and likelihood "
                       "routing) and are not scored")->capture_default_str();
    pplCmd->add_flag("--json", ppl.asJson, "Print one JSON object");
    pplDev.add(pplCmd);

    CLI11_PARSE(app, argc, argv);
    try {
        if (devices->parsed()) return runDevices(devicesJson);
        if (info->parsed()) return runInfo(infoModel, infoJson);
        if (generate->parsed()) return runGenerate(gen, genDev);
        if (benchCmd->parsed()) return runBench(bench, benchDev);
        if (pplCmd->parsed()) return runPerplexity(ppl, pplDev);
        if (buildCmd->parsed()) return runBuild(build, buildDev);
        if (revalCmd->parsed()) return runRouteEval(reval, revalDev);
        if (exportCmd->parsed()) return runExport(exportArgs);
        if (chatCmd->parsed()) return runChat(chat, chatDev);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-cli: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
