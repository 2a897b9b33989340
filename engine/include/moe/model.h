#pragma once
// A Llama-family decoder on the device and the forward pass over a KV cache.
// A layer's MLP is an MlpBlock: dense by default, replaceable by a routed set
// of experts without touching the rest of the pass. The MLP input of chosen
// layers can be captured per token (gate training).
#include "moe/error.h"
#include "moe/expert_cache.h"
#include "moe/model_config.h"
#include "moe/ops.h"
#include "moe/quantize_on_load.h"
#include "moe/safetensors.h"
#include "moe/vk.h"

#include <atomic>
#include <functional>
#include <set>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace moe {

class Session;
class RoutedMlp;

// Scratch activations a block may use during one recorded step.
struct MlpScratch {
    const vk::Buffer* gate = nullptr; // [tokens, intermediate]
    const vk::Buffer* up = nullptr;   // [tokens, intermediate]
    const vk::Buffer* hidden = nullptr; // [tokens, intermediate]
};

// A block's state in one session (a routed block's running sums and expert
// usage), created by the session so that sessions never share it.
class MlpState {
public:
    virtual ~MlpState() = default;
};

// What a block records against in one step.
struct MlpStep {
    const vk::Buffer* input = nullptr;    // [tokens, hidden] MLP input (post-attention norm)
    const vk::Buffer* residual = nullptr; // [tokens, hidden] residual stream, added to
    MlpScratch scratch;
    const vk::Buffer* step = nullptr;     // step header + token ids (ops::StepHeader)
    MlpState* state = nullptr;            // from createState(), or null
    uint32_t nTokens = 0;
    // Set only where the block foldsInputNorm(step): `input` is then the
    // un-normalised residual and the block folds this norm into the
    // projections that read it.
    ops::InputNorm inputNorm;
    Activation act = Activation::Silu; // the gate activation of every expert (the model's)
};

// What a block's session state is sized for: positions per sequence, tokens
// per step, and the sequences a session runs side by side.
struct MlpStateShape {
    uint32_t maxContext = 0;
    uint32_t maxBatch = 0;
    uint32_t sequences = 1;
};

// Records a layer's feed-forward block: residual[t] += MLP(input[t]).
class MlpBlock {
public:
    virtual ~MlpBlock() = default;
    virtual void record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const = 0;
    virtual std::unique_ptr<MlpState> createState(vk::Context&, const MlpStateShape&) const { return nullptr; }
    virtual uint64_t deviceBytes() const = 0;
    // Routed blocks: tokens each expert slot received in one sequence of a
    // session (-1: all of them) since the last reset (empty for dense blocks).
    virtual std::vector<uint32_t> expertUsage(const MlpState*, int /*sequence*/ = -1) const { return {}; }
    virtual void resetExpertUsage(MlpState*, int /*sequence*/ = -1) const {}
    // Widest intermediate activation the block needs (sizes MlpScratch).
    virtual uint32_t scratchWidth() const = 0;
    // Whether record() takes this step with an inputNorm (see MlpStep).
    virtual bool foldsInputNorm(const MlpStep&) const { return false; }
};

// down(act(gate · x) * (up · x)), or ungated (no gate matrix, rows == 0):
// down(act(up · x + upBias)) + downBias (Phi-2's fc1 / fc2).
class DenseMlp : public MlpBlock {
public:
    DenseMlp(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix down, vk::Buffer upBias = {}, vk::Buffer downBias = {});
    void record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const override;
    uint64_t deviceBytes() const override;
    uint32_t scratchWidth() const override { return up_.rows; }
    // The gated pass folds an RMSNorm; the ungated one reads normalised input.
    bool foldsInputNorm(const MlpStep&) const override { return gated() && ops::foldsInputNorm(); }
    bool gated() const { return gate_.rows != 0; }
    const DeviceMatrix& gate() const { return gate_; }
    const DeviceMatrix& up() const { return up_; }
    const DeviceMatrix& down() const { return down_; }
    const vk::Buffer& upBias() const { return upBias_; }     // float32 [intermediate], or empty
    const vk::Buffer& downBias() const { return downBias_; } // float32 [hidden], or empty

private:
    // A routed block stacks its experts' matrices, the base's included (as
    // an expert, or as the slot likelihood routing pins to), and leaves
    // views in their place.
    friend class RoutedMlp;
    DeviceMatrix gate_, up_, down_;
    vk::Buffer upBias_, downBias_;
};

struct LayerWeights {
    vk::Buffer attnNorm, mlpNorm; // float32
    vk::Buffer attnNormBias;      // float32, LayerNorm's bias (Phi-2); else empty
    // Phi-2 (parallel residual): attention and MLP share attnNorm; mlpNorm is empty.
    vk::Buffer postAttnNorm, postMlpNorm; // float32, Gemma's norms of the attention and MLP outputs; else empty
    // q, k and v as one projection (rows q, then k, then v: one dispatch);
    // separate matrices only when their dtypes differ.
    DeviceMatrix qkv;
    vk::Buffer qkvBias;             // float32 [q | k | v], empty when the architecture has none
    DeviceMatrix q, k, v, o;        // q, k, v: empty when fused into qkv
    vk::Buffer qBias, kBias, vBias; // float32, with separate q, k, v only
    vk::Buffer oBias;               // float32, Llama / Qwen3 with attention_bias; else empty
    vk::Buffer qNorm, kNorm;        // float32 [headDim], per-head RMSNorm weights (Qwen3); else empty
    std::unique_ptr<MlpBlock> mlp;
};

struct LoadProgress {
    std::function<void(size_t done, size_t total)> onTensor; // optional
    // Polled before every tensor and every expert (set from any thread): the
    // load throws moe::Cancelled and frees what it had uploaded.
    const std::atomic<bool>* cancel = nullptr;
    void throwIfCancelled() const { moe::throwIfCancelled(cancel, "loading the model"); }
};

class Model {
public:
    // Loads config.json and the safetensors of `dir` onto the device. A
    // native MoE with `expertBudget` > 0 loads under that budget
    // (setExpertBudget): its experts are mapped, not uploaded, so the device
    // never holds more of them than the budget. `dir` may also be a .gguf
    // file. With `quantize`, 16/32-bit weight matrices are quantized on the
    // way to the device (moe/quantize_on_load.h).
    static std::unique_ptr<Model> load(vk::Context& ctx, const std::filesystem::path& dir, const LoadProgress& progress = {},
                                       uint64_t expertBudget = 0, QuantizeScheme quantize = QuantizeScheme::None);
    QuantizeScheme quantizeScheme() const { return quantize_; }

    const ModelConfig& config() const { return config_; }
    vk::Context& context() const { return ctx_; }
    const WeightStore& weights() const { return *store_; }
    uint64_t deviceBytes() const;
    uint64_t parameterCount() const { return parameters_; }
    DType weightDType() const { return embed_.dtype; }
    const DeviceMatrix& embedding() const { return embed_; }
    const DeviceMatrix& lmHead() const { return *lmHead_; }

    // Replaces layer `layer`'s MLP (dense → routed experts) and returns the old one.
    std::unique_ptr<MlpBlock> setMlp(int layer, std::unique_ptr<MlpBlock> block);
    // Removes layer `layer`'s MLP to build its replacement from it; the model
    // cannot run until setMlp() puts a block back.
    std::unique_ptr<MlpBlock> takeMlp(int layer);
    const LayerWeights& layer(int l) const { return layers_.at(size_t(l)); }
    const MlpBlock& mlp(int layer) const { return *layers_.at(layer).mlp; }
    MlpBlock& mlp(int layer) { return *layers_.at(layer).mlp; }
    // Changes whenever a block is replaced, so sessions re-record their steps.
    uint64_t revision() const { return revision_; }
    // A block's recorded settings changed (routing mode): sessions re-record.
    void invalidate() { ++revision_; }

    // Experts under a memory budget: at most `bytes` of expert weights stay
    // on the device, the rest in host memory, uploaded when routing asks for
    // them; the least-frequently-used resident expert is evicted, frequencies
    // decaying by `decay` per step. A step then stops after each MoE layer's
    // routing to learn which experts it needs. 0 = every expert resident and
    // one submit per step (the default). Applies to the routed layers present
    // now and to blocks set later. The experts needed by one layer in one step
    // are kept even when they alone exceed the budget.
    void setExpertBudget(uint64_t bytes, double decay = 0.9);
    uint64_t expertBudget() const { return cache_ ? cache_->stats.budgetBytes : 0; }
    ExpertCacheStats expertCacheStats() const { return cache_ ? cache_->stats : ExpertCacheStats{}; }
    void resetExpertCacheStats();
    // Bytes of every routed layer's own expert weights (what a budget of "all" holds).
    uint64_t pageableExpertBytes();
    // Host memory the paged experts hold: copies of the weights that cannot be
    // uploaded from their memory-mapped files again (LoRA factors); 0 for
    // fine-tuned and native experts.
    uint64_t expertHostCopyBytes();

private:
    friend class Session;
    struct ExpertCache {
        LfuExpertPolicy policy;
        std::set<ExpertKey> resident;
        ExpertCacheStats stats;
        uint64_t revision = ~0ull;
    };
    // The routed part of layer `l`'s block (RoutedMlp or SharedExpertMoe), or null.
    RoutedMlp* routedPart(size_t l);
    // Pages out the experts of blocks set since the budget (or last sync).
    void syncExpertCache();
    // Counts hits and misses for the experts that received tokens, evicts and uploads.
    void requireExperts(size_t layer, RoutedMlp& routed, const std::vector<uint32_t>& tokensPerSlot);
    std::optional<ExpertCache> cache_;
    explicit Model(vk::Context& ctx) : ctx_(ctx) {}
    vk::Context& ctx_;
    ModelConfig config_;
    std::shared_ptr<const WeightStore> store_; // shared with the experts that upload from it again
    DeviceMatrix embed_;
    DeviceMatrix lmHeadOwn_; // empty when tied to the embedding
    const DeviceMatrix* lmHead_ = nullptr;
    vk::Buffer finalNorm_;
    vk::Buffer finalNormBias_; // LayerNorm (Phi-2); else empty
    vk::Buffer lmHeadBias_;    // Phi-2; else empty
    std::vector<LayerWeights> layers_;
    uint64_t parameters_ = 0;
    uint64_t revision_ = 0;
    QuantizeScheme quantize_ = QuantizeScheme::None;
};

} // namespace moe
