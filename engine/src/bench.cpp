#include "moe/bench.h"

#include "moe/error.h"
#include "moe/ops.h"
#include "moe/sampler.h"
#include "moe/session.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cctype>
#include <cmath>
#include <map>
#include <fstream>
#include <exception>
#include <random>
#include <string>
#include <thread>

namespace moe::bench {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Reproducible random token ids past the usual special ids.
std::vector<int32_t> randomPrompt(const ModelConfig& c, int tokens) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> anyToken(3, c.vocabSize - 1);
    std::vector<int32_t> prompt(static_cast<size_t>(tokens));
    for (auto& t : prompt) t = anyToken(rng);
    return prompt;
}

// A session that holds the prompt in one batch and the decode steps after it.
std::unique_ptr<Session> benchSession(Model& model, int promptTokens, int genTokens) {
    return std::make_unique<Session>(model, uint32_t(std::max(promptTokens + genTokens + 1, 16)),
                                     uint32_t(std::max(promptTokens, 1)));
}

std::optional<ExpertCacheFigures> cacheFigures(Model& model, uint64_t tokens) {
    if (model.expertBudget() == 0) return std::nullopt;
    return expertCacheFigures(model, tokens);
}

} // namespace

SpeedFigures measureSpeed(Model& model, int promptTokens, int genTokens) {
    auto sessionOwner = benchSession(model, promptTokens, genTokens);
    Session& session = *sessionOwner;
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
    f.prefillCache = cacheFigures(model, uint64_t(promptTokens));
    model.resetExpertCacheStats();
    int32_t next = argmax(logits);
    auto td = Clock::now();
    for (int i = 0; i < genTokens; ++i) {
        logits = session.forward(std::span<const int32_t>(&next, 1));
        next = argmax(logits);
    }
    f.decode = genTokens / secondsSince(td);
    f.decodeDispatches = session.lastDispatches();
    f.decodeBarriers = session.lastBarriers();
    f.decodeCache = cacheFigures(model, uint64_t(genTokens));
    return f;
}

ParallelFigures measureParallelDecode(Model& model, int sequences, int promptTokens, int genTokens, bool profile) {
    if (sequences < 1 || sequences > 64) throw Error("parallel sequences: give 1 to 64");
    const uint32_t context = uint32_t(std::max(promptTokens + genTokens + 1, 16));
    std::vector<std::unique_ptr<Session>> sessions;
    auto makeSessions = [&] {
        sessions.clear();
        auto first = std::make_unique<Session>(model, context, uint32_t(std::max(promptTokens, 1)), uint32_t(sequences));
        for (int i = 1; i < sequences; ++i) sessions.push_back(std::make_unique<Session>(*first));
        sessions.insert(sessions.begin(), std::move(first));
    };
    makeSessions();
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < sequences; ++i) {
        auto p = randomPrompt(model.config(), promptTokens + i);
        prompts.emplace_back(p.begin() + i, p.end()); // a different prompt per sequence
    }
    struct Times {
        Clock::time_point firstToken, end;
    };
    // A profiled round starts the profile once every prompt is in, so that
    // it holds decode steps only.
    vk::Context& ctx = model.context();
    auto round = [&](int steps, bool profiled) {
        for (auto& s : sessions) s->reset();
        std::vector<Times> times(static_cast<size_t>(sequences));
        std::vector<std::exception_ptr> errors(static_cast<size_t>(sequences));
        std::barrier promptsIn(sequences, [&]() noexcept {
            try {
                ctx.takeProfile();
            } catch (...) {
            }
        });
        const auto start = Clock::now();
        std::vector<std::thread> threads;
        for (int i = 0; i < sequences; ++i)
            threads.emplace_back([&, i] {
                bool arrived = !profiled;
                try {
                    Session& s = *sessions[size_t(i)];
                    int32_t next = argmax(s.forward(prompts[size_t(i)]));
                    arrived = true;
                    if (profiled) promptsIn.arrive_and_wait();
                    times[size_t(i)].firstToken = Clock::now();
                    for (int t = 0; t < steps; ++t) next = argmax(s.forward(std::span<const int32_t>(&next, 1)));
                    s.finishDecoding();
                    times[size_t(i)].end = Clock::now();
                } catch (...) {
                    errors[size_t(i)] = std::current_exception();
                    if (!arrived) promptsIn.arrive_and_drop(); // the others do not wait for it
                }
            });
        for (auto& t : threads) t.join();
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
        return std::pair{start, times};
    };
    round(4, false); // warm-up: records the steps of every batch size
    const Session::StepFigures before = sessions[0]->stepFigures();
    const auto [start, times] = round(genTokens, false);
    const Session::StepFigures after = sessions[0]->stepFigures();
    ParallelFigures f;
    f.sequences = sequences;
    auto decodeStart = times[0].firstToken, decodeEnd = times[0].end;
    for (const Times& t : times) {
        decodeStart = std::min(decodeStart, t.firstToken);
        decodeEnd = std::max(decodeEnd, t.end);
        f.timeToFirstToken += std::chrono::duration<double>(t.firstToken - start).count() / sequences;
        f.perSequenceDecode += genTokens / std::chrono::duration<double>(t.end - t.firstToken).count() / sequences;
    }
    f.aggregateDecode = double(sequences) * genTokens / std::chrono::duration<double>(decodeEnd - decodeStart).count();
    const uint64_t steps = after.decodeSteps - before.decodeSteps;
    f.sequencesPerStep = steps ? double(after.decodeTokens - before.decodeTokens) / double(steps) : 0;
    if (profile) {
        // Steps are recorded with their timestamps: new sessions, warmed up again.
        ctx.setProfiling(true);
        makeSessions();
        round(4, false);
        const uint64_t warm = sessions[0]->stepFigures().decodeSteps;
        round(genTokens, true);
        f.decodeProfile = ctx.takeProfile();
        f.profiledSteps = sessions[0]->stepFigures().decodeSteps - warm;
        sessions.clear();
        ctx.setProfiling(false);
    }
    return f;
}

StepProfiles profileSteps(vk::Context& ctx, Model& model, int promptTokens, int genTokens) {
    ctx.setProfiling(true);
    StepProfiles out;
    {
        auto session = benchSession(model, promptTokens, genTokens);
        ctx.takeProfile();
        int32_t next = argmax(session->forward(randomPrompt(model.config(), promptTokens)));
        out.prefill = ctx.takeProfile();
        for (int i = 0; i < genTokens; ++i) next = argmax(session->forward(std::span<const int32_t>(&next, 1)));
        out.decode = ctx.takeProfile();
    }
    ctx.setProfiling(false);
    return out;
}

double probeBandwidth(vk::Context& ctx, bool texelSource) {
    const uint64_t bytes = std::min<uint64_t>(64ull << 20, ctx.maxStorageRange());
    vk::Buffer src(ctx, bytes, vk::MemoryUse::Device), dst(ctx, bytes, vk::MemoryUse::Device);
    src.fillZero();
    vk::Recorder rec(ctx);
    const int reps = 8;
    rec.begin();
    for (int i = 0; i < reps; ++i) {
        ops::copy(ctx, rec, src, dst, bytes, texelSource);
        rec.barrier();
    }
    rec.end();
    rec.submitAndWait(); // warm-up
    auto t0 = Clock::now();
    rec.submitAndWait();
    return double(bytes) * 2 * reps / secondsSince(t0);
}

uint64_t activeParameters(const ModelConfig& config, uint64_t params) {
    if (!config.isMoe()) return params;
    const uint64_t perExpert = 3ull * uint64_t(config.hiddenSize) * uint64_t(config.expertIntermediateSize());
    uint64_t sparseLayers = 0;
    for (int l = 0; l < config.numLayers; ++l) sparseLayers += config.isSparseLayer(l) ? 1 : 0;
    const uint64_t idle = uint64_t(config.numExperts - config.expertsPerToken) * perExpert * sparseLayers;
    return params > idle ? params - idle : 0;
}

uint64_t decodeWeightBytes(const Model& model) {
    const ModelConfig& c = model.config();
    // The embedding table is read a row per token, not streamed; idle experts
    // are not read at all (counted at the model's mean bytes per weight).
    uint64_t bytes = model.deviceBytes();
    if (!c.tieWordEmbeddings) bytes -= model.embedding().bytes();
    if (c.isMoe()) {
        const double perWeight = double(model.deviceBytes()) / double(std::max<uint64_t>(model.parameterCount(), 1));
        bytes -= uint64_t(double(model.parameterCount() - activeParameters(c, model.parameterCount())) * perWeight);
    }
    return bytes;
}

std::string weightDTypes(const Model& model) {
    std::map<DType, uint64_t> bytes;
    auto add = [&](const DeviceMatrix& m) {
        if (m.rows) bytes[m.dtype] += m.bytes();
    };
    add(model.embedding());
    if (!model.config().tieWordEmbeddings) add(model.lmHead());
    for (int l = 0; l < model.config().numLayers; ++l) {
        const LayerWeights& L = model.layer(l);
        for (const DeviceMatrix* m : {&L.qkv, &L.q, &L.k, &L.v, &L.o}) add(*m);
        if (const auto* dense = dynamic_cast<const DenseMlp*>(L.mlp.get()))
            for (const DeviceMatrix* m : {&dense->gate(), &dense->up(), &dense->down()}) add(*m);
    }
    uint64_t total = 0;
    std::vector<std::pair<uint64_t, DType>> order;
    for (const auto& [dtype, n] : bytes) total += n, order.emplace_back(n, dtype);
    std::sort(order.rbegin(), order.rend());
    std::string out;
    for (const auto& [n, dtype] : order) {
        std::string name = dtypeName(dtype);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
        out += (out.empty() ? "" : " + ") + name + " " + std::to_string(int(std::lround(100.0 * double(n) / double(total)))) + "%";
    }
    return out;
}

uint64_t peakHostMemory() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

} // namespace moe::bench
