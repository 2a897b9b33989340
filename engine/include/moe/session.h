#pragma once
// The forward pass: one sequence's KV cache, activations and recorded
// command buffers over a Model (decode recorded once and replayed, prefill
// per batch size, paged steps under an expert budget).
#include "moe/model.h"

#include <memory>
#include <span>
#include <vector>

namespace moe {

// One sequence's state: KV cache, activations and recorded command buffers.
class Session {
public:
    // `maxContext` 0 = min(max_position_embeddings, 4096); `maxBatch` bounds
    // how many tokens one prefill submit processes.
    explicit Session(Model& model, uint32_t maxContext = 0, uint32_t maxBatch = 256);
    ~Session();

    Model& model() const { return model_; }
    uint32_t position() const { return pos_; }
    uint32_t maxContext() const { return maxContext_; }
    void reset() { pos_ = 0; }
    // Drops cached positions past `pos` (for regenerate / rewinding a chat).
    void truncate(uint32_t pos);

    // Appends `tokens` at the current position and returns the logits of the
    // last one. With `allLogits`, every token's logits are appended to it
    // ([n, vocab] row-major). Throws moe::Error when the context is full or a
    // token id is outside the vocabulary.
    std::span<const float> forward(std::span<const int32_t> tokens, std::vector<float>* allLogits = nullptr);
    // The last token's logits of the last forward().
    std::span<const float> lastLogits() const { return lastLogits_; }

    // Layers whose MLP input (post_attention_layernorm output) is copied out
    // for every token forwarded from now on; read with captured().
    void setCaptureLayers(std::vector<int> layers);
    // [tokens, hidden] of the last forward() for capture layer `i` (index into the list).
    const std::vector<float>& captured(size_t i) const { return captured_.at(i); }

    // Routing controls for the MoE layers (ops::StepHeader): `reply` marks the
    // tokens forwarded from now on as a reply (sequence routing keeps the
    // prompt's choice); `pinSlot` >= 0 sends every token to that expert slot in
    // every MoE layer (slot = the experts' count means the base MLP).
    void setReply(bool reply) { reply_ = reply; }
    void setPinnedSlot(int pinSlot) { pinSlot_ = pinSlot; }
    int pinnedSlot() const { return pinSlot_; }
    // Per MoE layer (layer index, tokens each expert slot received) since the
    // last reset: built and native MoEs alike.
    std::vector<std::pair<int, std::vector<uint32_t>>> expertUsage() const;
    void resetExpertUsage();
    // The state a layer's block keeps in this session (null for dense layers).
    MlpState* mlpState(int layer) const;

    // Figures of the last forward(): dispatches and barriers recorded per submit.
    uint32_t lastDispatches() const { return lastDispatches_; }
    uint32_t lastBarriers() const { return lastBarriers_; }

private:
    void recordStep(vk::Recorder& rec, uint32_t nTokens, bool allRows);
    void recordLayer(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    // Final norm and LM head: logits of every row (allRows) or of the last.
    void recordHead(vk::Recorder& rec, uint32_t nTokens, bool allRows);
    // Everything of a layer before its MLP block.
    void recordAttention(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    // The q/k/v projection(s) into qkv_, Qwen3's q/k norms, then RoPE into q_ and the caches.
    void recordQkvThenRope(vk::Recorder& rec, size_t layer, uint32_t nTokens, const ops::Act& in,
                           const ops::InputNorm* inNorm);
    // The post-attention norm into xn_, and the capture of xn_ where asked for.
    void recordMlpNorm(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    MlpStep mlpStep(size_t layer, uint32_t nTokens);
    float embedScale() const;
    // Before a layer's MLP block: clears mlpOut_ where the block adds into it (Gemma).
    void recordMlpPrologue(vk::Recorder& rec, uint32_t nTokens);
    // After it: x_ += post_feedforward_layernorm(mlpOut_) (Gemma); else nothing.
    void recordMlpEpilogue(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    // One step under an expert budget: a submit per MoE layer's routing.
    void runPagedStep(uint32_t nTokens, bool allRows);
    void writeStep(std::span<const int32_t> tokens);
    void syncWithModel();

    Model& model_;
    vk::Context& ctx_;
    uint32_t maxContext_ = 0;
    uint32_t maxBatch_ = 0;
    uint32_t logitRows_ = 0; // rows of logits one submit can hold
    uint32_t pos_ = 0;
    ops::AttentionShape attn_;
    vk::Buffer step_, x_, xn_, qkv_, q_, attnOut_, gate_, up_, hidden_, logits_, ropeTable_;
    vk::Buffer ropeLocalTable_; // Gemma 3's sliding layers' RoPE; else empty
    vk::Buffer mlpOut_;         // the MLP's output before its post-norm (Gemma); else empty
    // The attention of layer l (its window) and its RoPE table.
    ops::AttentionShape layerAttention(size_t layer) const;
    const vk::Buffer& ropeTable(size_t layer) const;
    std::vector<vk::Buffer> kCache_, vCache_;
    std::vector<int> captureLayers_;
    std::vector<vk::Buffer> captureBuffers_;
    std::vector<std::vector<float>> captured_;
    std::unique_ptr<vk::Recorder> decode_;   // recorded once, replayed for every one-token step
    std::unique_ptr<vk::Recorder> prefill_;  // re-recorded per batch size
    std::vector<std::unique_ptr<vk::Recorder>> segments_; // paged steps, re-recorded every step
    uint32_t prefillRecordedFor_ = 0;
    uint64_t recordedRevision_ = 0;
    bool prefillAllRows_ = false;
    std::vector<std::unique_ptr<MlpState>> mlpStates_;
    bool reply_ = false;
    int pinSlot_ = -1;
    std::vector<float> lastLogits_;
    uint32_t lastDispatches_ = 0, lastBarriers_ = 0;
};

} // namespace moe
