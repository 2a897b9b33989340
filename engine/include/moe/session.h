#pragma once
// The forward pass: a sequence's KV cache, activations and recorded command
// buffers over a Model (decode recorded once and replayed, prefill per batch
// size, paged steps under an expert budget). Sessions made from one another
// share that device state as sequences side by side: each may forward from
// its own thread, and their one-token steps are batched into one pass over
// the weights (continuous batching).
#include "moe/model.h"

#include <memory>
#include <span>
#include <vector>

namespace moe {

class Session {
public:
    // `maxContext` 0 = min(max_position_embeddings, 4096) per sequence;
    // `maxBatch` bounds how many tokens one submit processes; `maxSequences`
    // how many sessions (this one and those made from it) share the state.
    explicit Session(Model& model, uint32_t maxContext = 0, uint32_t maxBatch = 256, uint32_t maxSequences = 1);
    // Another sequence on `shared`'s device state. Throws when every sequence
    // it was created for is taken.
    explicit Session(Session& shared);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Model& model() const;
    uint32_t position() const { return pos_; }
    uint32_t maxContext() const;
    // This session's sequence among those sharing the device state.
    uint32_t sequence() const { return seq_; }
    void reset() { truncate(0); }
    // Drops cached positions past `pos` (for regenerate / rewinding a chat).
    void truncate(uint32_t pos);

    // Appends `tokens` at the current position and returns the logits of the
    // last one. With `allLogits`, every token's logits are appended to it
    // ([n, vocab] row-major). Throws moe::Error when the context is full or a
    // token id is outside the vocabulary. A one-token step waits briefly for
    // the other sequences that are decoding, so that they step together.
    std::span<const float> forward(std::span<const int32_t> tokens, std::vector<float>* allLogits = nullptr);
    // The last token's logits of the last forward().
    std::span<const float> lastLogits() const { return lastLogits_; }
    // This sequence stopped decoding (its reply ended): the others no longer
    // wait for its next token. Any forward() of it starts decoding again.
    void finishDecoding();

    // Layers whose MLP input (post_attention_layernorm output) is copied out
    // for every token forwarded from now on; read with captured(). For a
    // session that shares its state with no other.
    void setCaptureLayers(std::vector<int> layers);
    // [tokens, hidden] of the last forward() for capture layer `i` (index into the list).
    const std::vector<float>& captured(size_t i) const;

    // Routing controls for the MoE layers (ops::StepToken flags): `reply`
    // marks the tokens forwarded from now on as a reply (sequence routing
    // keeps the prompt's choice); `pinSlot` >= 0 sends every token to that
    // expert slot in every MoE layer (slot = the experts' count means the base MLP).
    void setReply(bool reply) { reply_ = reply; }
    void setPinnedSlot(int pinSlot) { pinSlot_ = pinSlot; }
    int pinnedSlot() const { return pinSlot_; }
    // Per MoE layer (layer index, tokens each expert slot received) of this
    // sequence since the last reset: built and native MoEs alike.
    std::vector<std::pair<int, std::vector<uint32_t>>> expertUsage() const;
    void resetExpertUsage();
    // The state a layer's block keeps in the shared device state (null for dense layers).
    MlpState* mlpState(int layer) const;

    // Figures of the last step run for any sequence: dispatches and barriers
    // recorded per submit, and how many sequences it stepped together.
    uint32_t lastDispatches() const;
    uint32_t lastBarriers() const;
    uint32_t lastStepSequences() const;
    // Counts over every step run for the sequences sharing the state.
    struct StepFigures {
        uint64_t steps = 0;        // submits of any kind
        uint64_t decodeSteps = 0;  // steps of one-token decodes (of one or more sequences)
        uint64_t decodeTokens = 0; // tokens those steps decoded
    };
    StepFigures stepFigures() const;

    struct Shared; // the device state, the sequences and the step queue (session.cpp)

private:
    std::shared_ptr<Shared> shared_;
    uint32_t seq_ = 0;
    uint32_t pos_ = 0;
    bool reply_ = false;
    int pinSlot_ = -1;
    std::vector<float> lastLogits_;
};

} // namespace moe
