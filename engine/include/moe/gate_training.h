#pragma once
// Gate (router) training on the Vulkan device, training-free gates, gate
// files and loss CSVs.
//
// A gate is Linear(hidden -> nExperts) with optional bias over the MLP input
// of one layer; it is trained with per-token cross entropy against the
// expert label of the token's prompt (AdamW, one optimizer per layer). All
// gated layers train together: one recorded command buffer, one submit and
// one small readback per step.
#include "moe/vk.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moe {

struct GateWeights {
    uint32_t nExperts = 0, hidden = 0;
    std::vector<float> weight; // [nExperts * hidden], row-major
    std::vector<float> bias;   // [nExperts] or empty
};

// Tokens of labelled prompts, shared by all gated layers.
struct GateSamples {
    uint32_t hidden = 0;
    std::vector<std::vector<float>> features; // per layer: [nTokens * hidden]
    std::vector<int32_t> labels;              // per token: expert index
    std::vector<uint32_t> promptOf;           // per token: prompt index (tokens of a prompt are contiguous)
    size_t tokenCount() const { return labels.size(); }
};

struct GateTrainOptions {
    float lr = 1e-3f;
    int epochs = 100;
    int batchSize = 4; // prompts per step
    float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weightDecay = 0.0f;
    uint64_t seed = 0; // prompt shuffling and the initial weights
    bool bias = true;
};

struct GateTrainProgress {
    int epoch = 0, epochs = 0; // epoch is 1-based
    int step = 0, totalSteps = 0; // step is 1-based, counted over all epochs
    std::vector<float> loss; // per layer: this step's batch loss
    float meanLoss = 0;
    double elapsedSeconds = 0, etaSeconds = 0;
    bool epochEnd = false;
    // Per layer; filled at epochEnd when validation data exists.
    std::vector<float> valAccuracyToken, valAccuracyPrompt;
};

struct LossRow {
    int step = 0; // 1-based
    int epoch = 0; // 1-based
    std::vector<float> loss; // per layer
    float mean = 0;
    std::optional<float> valAccuracy; // mean over layers, per token; epoch-end rows with validation data
};

struct GateTrainResult {
    std::vector<GateWeights> gates;
    std::vector<LossRow> history;
    bool cancelled = false;
    std::vector<float> valAccuracyToken, valAccuracyPrompt; // per layer, last epoch
};

// Trains one gate per layer of `train.features`. Each epoch shuffles the
// prompts (std::mt19937_64 seeded with opt.seed) and steps over batches of
// opt.batchSize prompts; a step's loss is the mean cross entropy over the
// batch's tokens. `init` gives starting weights (e.g. gateFromMeans), else
// they are drawn like torch's Linear (uniform ±1/sqrt(hidden)) from the seed.
// `onProgress` runs after every step; `cancel` is checked between steps (a
// cancelled run returns the gates trained so far). Throws moe::Error on
// inconsistent samples (naming the layer/token at fault).
GateTrainResult trainGates(vk::Context& ctx, const GateSamples& train, const GateSamples* validation, uint32_t nExperts,
                           const GateTrainOptions& opt, const std::vector<GateWeights>* init = nullptr,
                           const std::function<void(const GateTrainProgress&)>& onProgress = {},
                           const std::atomic<bool>* cancel = nullptr);

// softmax(W x + b) for n tokens ([n * hidden] features) on the device -> [n * nExperts].
std::vector<float> gateProbabilities(vk::Context& ctx, const GateWeights& gate, const float* features, size_t n);

struct RoutingAccuracy {
    float token = 0;  // share of tokens whose most probable expert is their label
    float prompt = 0; // share of prompts whose sequence-averaged probabilities pick their label (AnyMoE's routing)
    std::vector<std::vector<int>> confusion; // [label][predicted], counted per prompt
};
// A prompt's label is the most frequent label of its tokens.
RoutingAccuracy routingAccuracy(const std::vector<float>& probs, uint32_t nExperts, const std::vector<int32_t>& labels,
                                const std::vector<uint32_t>& promptOf);

// Training-free gates (mergekit-moe modes). gateFromMeans: row e =
// normalised(positiveMeans[e] - negativeMeans[e]) ("hidden" mode; "cheap_embed"
// is the same from embedding means the caller computes); negativeMeans may be
// empty, or empty for some experts. randomGate: N(0,1) rows from the seed.
// Biases, when asked for, start at zero.
GateWeights gateFromMeans(const std::vector<std::vector<float>>& positiveMeans,
                          const std::vector<std::vector<float>>& negativeMeans, bool bias);
GateWeights randomGate(uint32_t nExperts, uint32_t hidden, uint64_t seed, bool bias);

// Gates file (safetensors, AnyMoE's keys): moe_gate.{layer}.weight [E, hidden]
// F32 and moe_gate.{layer}.bias [E]; metadata strings (the caller's, plus
// "experts", "hidden_size" and "layers" written from the gates). Atomic write.
void saveGates(const std::filesystem::path& file, const std::vector<int>& layers, const std::vector<GateWeights>& gates,
               const std::map<std::string, std::string>& metadata);
// Loads the gates of exactly `layers` (F32/F16/BF16 accepted), checking the
// file's layer set, E and hidden; errors name the file and the key.
std::vector<GateWeights> loadGates(const std::filesystem::path& file, const std::vector<int>& layers, uint32_t nExperts,
                                   uint32_t hidden, std::map<std::string, std::string>* metadata = nullptr);

// Loss CSV, written atomically. Default: header
// "step,epoch,loss_layer_<L>...,mean[,val_accuracy]", one row per step.
// anymoeHeader: mistral.rs AnyMoE's file ("Step,Gating layer 0,Gating layer 1,..."
// then "Step <i>,<loss>,..." with 4 decimals, i counted from 0).
void writeLossCsv(const std::filesystem::path& file, const std::vector<int>& layers, const std::vector<LossRow>& history,
                  bool anymoeHeader, bool withValAccuracy = false);

} // namespace moe
