// moe-cli bench: load, prefill, decode, bandwidth and memory figures of a
// model (moe::bench), or of a selector's build and the MoE it makes.
#include "build_report.h"

#include "moe/bench.h"
#include "moe/error.h"
#include "moe/selector.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct BenchArgs {
    std::filesystem::path selector, model;
    std::filesystem::path dense; // optional: a dense model to compare decode speed with
    int promptTokens = 256;
    int genTokens = 128;
    bool asJson = false;
    bool profile = false; // also time each shader over one prefill and the decode steps
    std::string expertBudget;
    std::string quantize;
    std::vector<int> parallel; // batched decode at these numbers of sequences
    DeviceOptions device;
};

json profileJson(const std::vector<vk::ProfileEntry>& entries, int steps) {
    json out = json::array();
    for (const auto& e : entries)
        out.push_back({{"shader", e.shader}, {"dispatches_per_step", double(e.dispatches) / steps},
                       {"milliseconds_per_step", e.milliseconds / steps}});
    return out;
}

void printProfile(const char* title, const std::vector<vk::ProfileEntry>& entries, int steps) {
    double total = 0;
    for (const auto& e : entries) total += e.milliseconds;
    std::printf("%s: %.2f ms of shaders per step\n", title, total / steps);
    for (const auto& e : entries)
        std::printf("  %-28s %7.1f dispatches %9.3f ms %5.1f%%\n", e.shader.c_str(), double(e.dispatches) / steps,
                    e.milliseconds / steps, total > 0 ? 100 * e.milliseconds / total : 0);
}

// Batched decode at each of a.parallel's sequence counts, into out["parallel"];
// printed unless JSON.
void runParallel(Model& model, const BenchArgs& a, json& out) {
    if (a.parallel.empty()) return;
    json rows = json::array();
    double single = 0;
    std::vector<bench::ParallelFigures> figures;
    for (int n : a.parallel) {
        const bench::ParallelFigures& f =
            figures.emplace_back(bench::measureParallelDecode(model, n, a.promptTokens, a.genTokens, a.profile));
        if (n == 1) single = f.aggregateDecode;
        rows.push_back({{"sequences", n},
                        {"aggregate_decode_tokens_per_second", f.aggregateDecode},
                        {"per_sequence_decode_tokens_per_second", f.perSequenceDecode},
                        {"time_to_first_token_seconds", f.timeToFirstToken},
                        {"sequences_per_decode_step", f.sequencesPerStep}});
        if (a.profile && f.profiledSteps)
            rows.back()["decode_step_profile"] = profileJson(f.decodeProfile, int(f.profiledSteps));
    }
    for (auto& r : rows)
        if (single > 0) r["aggregate_over_one_sequence"] = r["aggregate_decode_tokens_per_second"].get<double>() / single;
    out["parallel"] = rows;
    if (a.asJson) return;
    std::printf("batched decode  %d-token prompts, %d tokens each\n", a.promptTokens, a.genTokens);
    std::printf("  %9s %14s %14s %10s %12s %10s\n", "sequences", "aggregate t/s", "per-seq t/s", "TTFT s", "seqs/step",
                "x one seq");
    for (const auto& r : rows)
        std::printf("  %9d %14.1f %14.1f %10.3f %12.2f %10.2f\n", r["sequences"].get<int>(),
                    r["aggregate_decode_tokens_per_second"].get<double>(),
                    r["per_sequence_decode_tokens_per_second"].get<double>(), r["time_to_first_token_seconds"].get<double>(),
                    r["sequences_per_decode_step"].get<double>(), r.value("aggregate_over_one_sequence", 0.0));
    for (const bench::ParallelFigures& f : figures)
        if (a.profile && f.profiledSteps) {
            const std::string title = std::to_string(f.sequences) + " sequences, decode step profile";
            printProfile(title.c_str(), f.decodeProfile, int(f.profiledSteps));
        }
}

// The decode figures of an expert cache, as bench prints them.
void printExpertCache(const Model& model, const json& decodeCache) {
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
int runBenchSelector(const BenchArgs& a) {
    vk::Context ctx(a.device.context());
    Selector s = loadSelectorAny(a.selector);
    if (auto q = parseQuantizeOption(a.quantize)) s.quantize = *q;
    auto result = buildWithProgress(ctx, s, a.asJson);
    if (!result.moe) throw Error("the build was cancelled");
    const auto& r = result.report;
    auto base = Model::load(ctx, s.baseModel, {}, 0, s.quantize);
    const bench::SpeedFigures dense = bench::measureSpeed(*base, a.promptTokens, a.genTokens);
    base.reset();
    auto run = RunnableModel::fromBuilt(std::move(result.moe));
    run->setExpertBudget(parseExpertBudget(a.expertBudget));
    Model& moeModel = run->model();
    const bench::SpeedFigures moeSpeed = bench::measureSpeed(moeModel, a.promptTokens, a.genTokens);
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
    if (moeModel.expertBudget()) out["expert_cache"] = {{"prefill", expertCacheJson(moeModel, moeSpeed.prefillCache)},
                               {"decode", expertCacheJson(moeModel, moeSpeed.decodeCache)}};
    if (a.asJson) {
        runParallel(moeModel, a, out);
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::printf("device          %s\n", ctx.info().name.c_str());
    std::printf("capture         %.1f tokens/s (%zu tokens)\n", out["capture_tokens_per_second"].get<double>(), r.captureTokens);
    std::printf("gate training   %.1f steps/s (%d steps)\n", out["train_steps_per_second"].get<double>(), r.trainSteps);
    std::printf("build           %.1f s in total (routing: %s)\n", r.seconds, toString(r.routing));
    std::printf("prefill         dense %.1f tokens/s, MoE %.1f tokens/s\n", dense.prefill, moeSpeed.prefill);
    std::printf("decode          dense %.1f tokens/s, MoE %.1f tokens/s (top-%d; %u dispatches, %u barriers per token)\n",
                dense.decode, moeSpeed.decode, s.topK, moeSpeed.decodeDispatches, moeSpeed.decodeBarriers);
    printExpertCache(moeModel, expertCacheJson(moeModel, moeSpeed.decodeCache));
    runParallel(moeModel, a, out);
    return 0;
}

int runBench(const BenchArgs& a) {
    if (!a.selector.empty()) return runBenchSelector(a);
    if (a.model.empty()) throw Error("give --model DIR or --selector FILE");
    auto t0 = Clock::now();
    vk::Context ctx(a.device.context());
    // The model alone (no tokenizer needed): the prompt is random token ids.
    const uint64_t budget = parseExpertBudget(a.expertBudget);
    const QuantizeScheme quantize = parseQuantizeOption(a.quantize).value_or(QuantizeScheme::None);
    auto model = Model::load(ctx, a.model, {}, budget, quantize);
    const double loadSeconds = secondsSince(t0);
    // Peak host memory of the load alone (mapped pages, host copies, and on
    // CPU drivers the device memory itself), before sessions add theirs.
    const uint64_t loadPeak = bench::peakHostMemory();
    if (budget) {
        if (model->pageableExpertBytes() == 0)
            throw Error("--expert-budget: the model has no routed experts to keep under a budget");
        if (model->expertBudget() != budget) model->setExpertBudget(budget);
    }
    const auto& c = model->config();
    const bench::SpeedFigures speed = bench::measureSpeed(*model, a.promptTokens, a.genTokens);
    const double prefillRate = speed.prefill, decodeRate = speed.decode;
    const uint64_t weightBytes = bench::decodeWeightBytes(*model);
    const double gbps = double(weightBytes) * decodeRate / 1e9;
    // Read before the probe: its buffers are not the model's (on CPU drivers
    // device memory is host memory).
    const uint64_t peak = bench::peakHostMemory();
    // The ceiling for the read path the shaders use (texel or storage buffers).
    const double probe = bench::probeBandwidth(ctx, ctx.texelReads()) / 1e9;
    const char* readPath = ctx.texelReads() ? "texel" : "storage";

    json out = {{"model", a.model.string()},
                {"device", ctx.info().name},
                {"device_type", ctx.info().type},
                {"parameters", model->parameterCount()},
                {"weight_bytes", model->deviceBytes()},
                {"weight_dtypes", bench::weightDTypes(*model)},
                {"quantize", toString(quantize)},
                {"load_seconds", loadSeconds},
                {"load_peak_host_memory_bytes", loadPeak},
                {"load_peak_host_memory_over_weights", double(loadPeak) / double(model->deviceBytes())},
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
    if (model->expertBudget()) out["expert_cache"] = {{"prefill", expertCacheJson(*model, speed.prefillCache)},
                               {"decode", expertCacheJson(*model, speed.decodeCache)}};
    bench::StepProfiles profile;
    if (a.profile) {
        profile = bench::profileSteps(ctx, *model, a.promptTokens, a.genTokens);
        out["profile"] = {{"prefill", profileJson(profile.prefill, 1)}, {"decode", profileJson(profile.decode, a.genTokens)}};
    }
    if (c.isMoe()) {
        out["experts"] = c.numExperts;
        out["experts_per_token"] = c.expertsPerToken;
        out["active_parameters"] = bench::activeParameters(c, model->parameterCount());
    }
    // A dense model with the MoE's active parameters shows what routing costs
    // beyond the weights a token reads.
    bench::SpeedFigures dense;
    uint64_t denseParams = 0;
    if (!a.dense.empty()) {
        auto denseModel = Model::load(ctx, a.dense);
        denseParams = denseModel->parameterCount();
        dense = bench::measureSpeed(*denseModel, a.promptTokens, a.genTokens);
        out["dense_model"] = a.dense.string();
        out["dense_parameters"] = denseParams;
        out["dense_prefill_tokens_per_second"] = dense.prefill;
        out["dense_decode_tokens_per_second"] = dense.decode;
        out["decode_speed_over_dense"] = dense.decode > 0 ? decodeRate / dense.decode : 0;
    }
    if (a.asJson) {
        runParallel(*model, a, out);
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::printf("model           %s (%s, %llu parameters, %s of weights)\n", a.model.c_str(), c.architecture.c_str(),
                (unsigned long long)model->parameterCount(), mib(model->deviceBytes()).c_str());
    std::printf("weights         %s%s\n", bench::weightDTypes(*model).c_str(),
                quantize == QuantizeScheme::None ? "" : (std::string(" (quantized on load: ") + toString(quantize) + ")").c_str());
    std::printf("device          %s (%s)\n", ctx.info().name.c_str(), ctx.info().type.c_str());
    std::printf("load            %.2f s, peak host memory %s (%.2f x weight bytes)\n", loadSeconds, mib(loadPeak).c_str(),
                double(loadPeak) / double(model->deviceBytes()));
    std::printf("prefill         %.1f tokens/s (%d-token prompt, %u dispatches)\n", prefillRate, a.promptTokens,
                speed.prefillDispatches);
    std::printf("decode          %.1f tokens/s (%d tokens, %u dispatches and %u barriers per token)\n", decodeRate,
                a.genTokens, speed.decodeDispatches, speed.decodeBarriers);
    std::printf("decode reads    %.2f GB/s effective (%s per token); device copy probe %.2f GB/s with %s reads (%.0f%%)\n",
                gbps, mib(weightBytes).c_str(), probe, readPath, probe > 0 ? 100 * gbps / probe : 0);
    std::printf("peak host mem   %s (%.2f x weight bytes)\n", mib(peak).c_str(), double(peak) / double(model->deviceBytes()));
    printExpertCache(*model, expertCacheJson(*model, speed.decodeCache));
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
    runParallel(*model, a, out);
    return 0;
}

} // namespace

Command addBenchCommand(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    auto* cmd = app.add_subcommand("bench", "Measure load, prefill, decode, bandwidth and memory");
    // With a selector: build it, then measure.
    auto* m = cmd->add_option("--model,-m", a->model, "Model folder or .gguf file");
    auto* s = cmd->add_option("--selector,-s", a->selector, "A built MoE: its selector (TOML or mergekit YAML)");
    m->excludes(s);
    addQuantizeOption(cmd, a->quantize);
    cmd->add_option("--prompt-tokens", a->promptTokens, "Prompt length")->capture_default_str();
    cmd->add_option("--gen-tokens", a->genTokens, "Tokens to decode")->capture_default_str();
    cmd->add_option("--expert-budget", a->expertBudget,
                    "Keep at most SIZE of expert weights on the device (512MB, 2GB); the rest stays memory-mapped on "
                    "the host and is uploaded when routed to, least-frequently-used experts evicted");
    cmd->add_option("--dense", a->dense,
                    "A dense model to compare decode speed with (e.g. one with the MoE's active parameters)")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--parallel", a->parallel,
                    "Also measure batched decode at these numbers of sequences decoding together (1,2,4,8)")
        ->delimiter(',')
        ->check(CLI::Range(1, 64));
    cmd->add_flag("--json", a->asJson, "Machine-readable output");
    cmd->add_flag("--profile", a->profile,
                  "Also time each shader (device timestamps) over one prefill and the decode steps, and over the "
                  "batched decode steps of each --parallel count");
    a->device.add(cmd);
    return {cmd, [a] { return runBench(*a); }};
}

} // namespace moe::cli
