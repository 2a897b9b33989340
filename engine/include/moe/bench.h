#pragma once
// The benchmark behind `moe-cli bench`: prefill and decode speed of a model,
// per-shader device time, the device's copy bandwidth, the bytes a decode
// step reads, and the process's peak memory. Figures only; printing them is
// the caller's.
#include "moe/model.h"
#include "moe/model_config.h"
#include "moe/runnable_model.h"
#include "moe/vk.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe::bench {

struct SpeedFigures {
    double prefill = 0, decode = 0; // tokens per second
    uint32_t prefillDispatches = 0, decodeDispatches = 0, decodeBarriers = 0;
    // Under an expert budget: the cache over the prefill and over the decode steps.
    std::optional<ExpertCacheFigures> prefillCache, decodeCache;
};

// A prefill of `promptTokens` reproducible random tokens in one batch, then
// `genTokens` greedy decode steps, after a warm-up.
SpeedFigures measureSpeed(Model& model, int promptTokens, int genTokens);

// `sequences` prompts of `promptTokens` random tokens queued at once on one
// shared session (one thread each), then `genTokens` greedy decode steps
// each, batched into common steps (Session(Session&)), after a warm-up round.
struct ParallelFigures {
    int sequences = 0;
    double aggregateDecode = 0;   // decode tokens per second over all sequences
    double perSequenceDecode = 0; // the mean of each sequence's own decode tokens per second
    double timeToFirstToken = 0;  // seconds from the start to a sequence's first logits, mean
    double sequencesPerStep = 0;  // decode tokens per decode step
    // With `profile`: time per shader over the decode steps of one more round
    // (a separate run: timestamps slow small steps down), and their count.
    std::vector<vk::ProfileEntry> decodeProfile;
    uint64_t profiledSteps = 0;
};
ParallelFigures measureParallelDecode(Model& model, int sequences, int promptTokens, int genTokens, bool profile = false);

// Time per shader in one prefill and in the decode steps after it, from the
// device's timestamps (a separate run: timestamps slow small steps down).
struct StepProfiles {
    std::vector<vk::ProfileEntry> prefill, decode;
};
StepProfiles profileSteps(vk::Context& ctx, Model& model, int promptTokens, int genTokens);

// The device's copy bandwidth in bytes per second (read + write), copying a
// buffer of up to 64 MiB; `texelSource` reads it the way texel weights are read.
double probeBandwidth(vk::Context& ctx, bool texelSource);

// Parameters one token runs: all but the experts it is not routed to.
uint64_t activeParameters(const ModelConfig& config, uint64_t parameters);
// Weight bytes one decode step reads: every weight but the embedding table
// (one row of it) and, in a native MoE, the experts a token is not routed to.
uint64_t decodeWeightBytes(const Model& model);
// The dtypes of the dense weight matrices, most bytes first, with their share
// ("q4_k 71% + q6_k 24% + f32 5%"; a routed layer's experts are not counted).
std::string weightDTypes(const Model& model);

// Peak resident memory of this process (VmHWM), in bytes; 0 where unknown.
uint64_t peakHostMemory();

} // namespace moe::bench
