#pragma once
// Device side of gate training (engine-internal; tests use it to read the
// gradients the shaders compute). trainGates() in gate_training.cpp drives it.
#include "moe/gate_training.h"
#include "moe/vk.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moe::detail {

// The step buffer's header (DECLARE_GATE_STEP in shaders/gate_common.glsl),
// followed by one uint32 feature-row index per batch token.
struct GateStepHeader {
    uint32_t nTokens = 0;
    uint32_t adamStep = 0;
    float lr = 0;
    float biasCorrection1 = 1;
    float biasCorrection2 = 1;
    uint32_t pad[3] = {0, 0, 0};
};
static_assert(sizeof(GateStepHeader) == 32);

// Features [rows, hidden] as float32 rows zero-padded to a multiple of 8 and
// split into row chunks that each fit one storage-buffer binding.
struct GateFeatureMatrix {
    struct Chunk {
        vk::Buffer buffer;
        uint32_t firstRow = 0;
        uint32_t rowCount = 0;
    };
    uint32_t rows = 0, hidden = 0, hiddenPadded = 0;
    std::vector<Chunk> chunks;
    // maxChunkBytes: 0 = the device limits; smaller values split further (tests).
    static GateFeatureMatrix upload(vk::Context& ctx, const float* data, uint32_t rows, uint32_t hidden,
                                    uint64_t maxChunkBytes = 0);
};

// Row length the shaders use for weights and features.
uint32_t paddedHidden(uint32_t hidden);
// W [E, hidden] (+ bias [E]) -> the device layout: W [E, Kp] zero-padded, then bias [E] (zeros when absent).
std::vector<float> packGateParams(const GateWeights& g, uint32_t Kp);

// All gated layers of one training run on the device: features, parameters,
// gradients and AdamW moments per layer, and one command buffer recorded once
// (forward -> gradients -> AdamW for every layer) replayed for each step.
class GateTrainer {
public:
    // `init` holds one gate per layer of `train.features` (already validated).
    GateTrainer(vk::Context& ctx, const GateSamples& train, uint32_t nExperts, const GateTrainOptions& opt,
                const std::vector<GateWeights>& init, uint32_t maxBatchTokens, uint64_t maxChunkBytes = 0);
    ~GateTrainer();

    // One optimizer step over the tokens `rows` (indices into the feature
    // matrices, at most maxBatchTokens); returns each layer's batch loss.
    std::vector<float> step(const std::vector<uint32_t>& rows);
    int stepsTaken() const { return steps_; }

    // Reads back a layer's current parameters.
    GateWeights weights(size_t layer) const;
    // The last step's gradients of a layer: dW [E * hidden] then db [E].
    std::vector<float> gradient(size_t layer) const;
    // The last step's softmax probabilities of a layer, [n * E] in batch order.
    std::vector<float> batchProbabilities(size_t layer, size_t n) const;

    // Validation tokens, uploaded once; probabilities of every layer in one submit.
    void setValidation(const GateSamples& validation);
    std::vector<std::vector<float>> validationProbabilities();

    size_t layerCount() const { return layers_.size(); }

private:
    struct Layer;
    vk::Context& ctx_;
    uint32_t nExperts_ = 0, hidden_ = 0, hiddenPadded_ = 0, maxBatchTokens_ = 0;
    uint32_t tokenCount_ = 0;
    uint64_t maxChunkBytes_ = 0;
    GateTrainOptions opt_;
    int steps_ = 0;
    std::vector<std::unique_ptr<Layer>> layers_;
    vk::Buffer stepBuffer_, labels_, lossOut_;
    std::unique_ptr<vk::Recorder> trainRec_;
    // Validation
    uint32_t valTokens_ = 0;
    vk::Buffer valStep_;
    std::unique_ptr<vk::Recorder> valRec_;

    void recordTraining();
};

// Records gate_forward for all chunks of `features` (the step buffer selects the tokens).
void recordGateForward(vk::Context& ctx, vk::Recorder& rec, const GateFeatureMatrix& features, uint32_t nExperts,
                       const vk::Buffer& params, const vk::Buffer& step, uint32_t maxTokens, bool train,
                       const vk::Buffer& labels, const vk::Buffer& probs, const vk::Buffer& tokenLoss,
                       const vk::Buffer& dlogits);

} // namespace moe::detail
