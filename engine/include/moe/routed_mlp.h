#pragma once
// A layer's MLP as a routed set of experts: a gate scores the experts per
// token, routing picks the top-k (in token, running or sequence mode) and only
// the chosen experts run, each on its own tokens (sparse dispatch on the
// device; no host round trip). Experts are dense fine-tuned MLPs or the base
// MLP plus low-rank LoRA deltas, kept low-rank.
#include "moe/model.h"
#include "moe/routing.h"

#include <optional>
#include <vector>

namespace moe {

// y += B·(A·x) with B already scaled by alpha/r. A [r, in], B [out, r].
struct LoraDelta {
    DeviceMatrix a, b;
};

// One expert of a layer. Projections it does not own (rows == 0) are the
// base MLP's; a default-constructed ExpertMlp is the base MLP itself.
struct ExpertMlp {
    DeviceMatrix gate, up, down;
    // A fine-tuned expert's own up / down biases (ungated MLPs with biases,
    // Phi-2); empty: the base's, when it has them. Small, so never paged out.
    vk::Buffer upBias, downBias;
    std::optional<LoraDelta> loraGate, loraUp, loraDown;
    // The expert's checkpoint: keeps the files its matrices' mappedSource
    // points into mapped while the expert may be paged out and in again.
    std::shared_ptr<const WeightStore> mappedWeights;
    uint64_t bytes() const;
    bool hasLora() const { return loraGate || loraUp || loraDown; }
};

struct RoutingOptions {
    uint32_t topK = 2;
    RoutingMode mode = RoutingMode::Token; // Token, Running or Sequence (a layer does not score likelihoods)
    float halflife = 0; // running/sequence: tokens for a weight to halve; 0 = plain mean
    bool baseSlot = false; // record the base MLP as a pinnable slot (likelihood routing without include_base)
    // Token mode: the chosen experts' softmax probabilities are scaled to sum
    // to 1 (Mixtral; Qwen2-MoE norm_topk_prob = true), or used as they are
    // (false). Running and sequence scores are sums, so those always renormalise.
    bool renormalise = true;
};

class RoutedMlp : public MlpBlock {
public:
    // `gateWeight` [experts, hidden] row-major; `gateBias` [experts] or empty.
    RoutedMlp(vk::Context& ctx, std::unique_ptr<DenseMlp> base, std::vector<ExpertMlp> experts,
              const std::vector<float>& gateWeight, const std::vector<float>& gateBias, RoutingOptions routing);

    // recordRouting() then recordExperts(), in one command buffer.
    void record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const override;
    // Gate logits and routing: the per-slot token lists and the usage counts.
    void recordRouting(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const;
    // Every resident expert on its own tokens (a paged-out expert is skipped:
    // the caller made every expert that received tokens resident first).
    // With the step's tokens per slot known (read back after routing), slots
    // without tokens are not dispatched at all.
    void recordExperts(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step,
                       const std::vector<uint32_t>* tokensPerSlot = nullptr) const;
    std::unique_ptr<MlpState> createState(vk::Context& ctx, const MlpStateShape& shape) const override;
    uint64_t deviceBytes() const override;
    uint32_t scratchWidth() const override { return base_->scratchWidth(); }
    // Steps that run the stacked experts fold the input norm into the router
    // and the experts' gated pass.
    bool foldsInputNorm(const MlpStep& step) const override;
    std::vector<uint32_t> expertUsage(const MlpState* state, int sequence = -1) const override {
        return state ? usage(*state, sequence) : std::vector<uint32_t>{};
    }
    void resetExpertUsage(MlpState* state, int sequence = -1) const override {
        if (state) resetUsage(*state, sequence);
    }

    // Experts under a memory budget. An expert that owns weights (dense
    // projections or LoRA factors) can be paged: its device buffers are freed
    // until makeResident() uploads them again, straight from the memory-mapped
    // checkpoint where the device holds the file's bytes (fine-tuned and
    // native experts), else from a host copy made at page-out (LoRA factors,
    // converted to float32 and scaled at load; merged LoRA weights).
    // Experts that are the base MLP own nothing and are always resident.
    bool ownsWeights(uint32_t expert) const;
    bool isResident(uint32_t expert) const;
    bool paged() const { return paged_; }
    // Whether decode runs the experts from their stacked projections (see stack_).
    bool expertsStacked() const { return stack_ != nullptr; }
    // Device bytes of the expert's own weights when resident.
    uint64_t expertBytes(uint32_t expert) const;
    // Host bytes held for paged experts (copies of weights with no mapped source).
    uint64_t hostCopyBytes() const;
    // Frees every expert's own weights on the device (copying to the host
    // those that cannot be read from their file again).
    void pageOutExperts(vk::Context& ctx);
    // Uploads a paged-out expert; returns the bytes uploaded (0 when already resident).
    uint64_t makeResident(vk::Context& ctx, uint32_t expert);
    void evict(uint32_t expert);

    uint32_t expertCount() const { return uint32_t(experts_.size()); }
    // Bytes the experts and the gate add to the dense layer.
    uint64_t addedBytes() const;
    const RoutingOptions& routing() const { return routing_; }
    // Takes effect once the model's revision changes (Model::setMlp or invalidate).
    void setRouting(const RoutingOptions& r) { routing_ = r; }
    const DenseMlp& base() const { return *base_; }

    // Tokens each slot (experts, then the base slot) received in one
    // sequence of a session (-1: summed over its sequences) since the last reset.
    static std::vector<uint32_t> usage(const MlpState& state, int sequence = -1);
    static void resetUsage(MlpState& state, int sequence = -1);

private:
    // Stacks the experts' projections (see stack_) when every expert has
    // dense gate, up and down matrices of one chunk each (its own, read from
    // a mapped file, or the base's for at most one slot) and no LoRA.
    void stackExperts(vk::Context& ctx);
    // Before paging out: the experts' matrices lose their device memory and
    // the base's get buffers of their own again.
    void unstackExperts(vk::Context& ctx);
    // Whether this step runs the experts from the stack (few tokens, room for
    // every (token, choice) pair in the scratch).
    bool runsStacked(const MlpStep& step) const;

    std::unique_ptr<DenseMlp> base_;
    std::vector<ExpertMlp> experts_;
    // The experts' gate, up and down projections stacked, one buffer each per
    // chunk of whole experts, so that decode runs all chosen experts in two
    // dispatches per group (ops::stackedExperts) rather than two per expert.
    // A group is a run of slots whose projections share their dtypes. The
    // experts' own matrices (and the base's, where a slot is the base) are
    // views into it. Null when not stacked.
    struct ExpertStack {
        struct Group {
            DeviceMatrix gate, up, down;
            uint32_t firstSlot = 0, slotCount = 0;
        };
        std::vector<Group> groups;
        uint32_t slotCount = 0; // the experts, plus the base MLP as slot E when no expert is the base
    };
    std::unique_ptr<ExpertStack> stack_;
    DeviceMatrix gate_;
    vk::Buffer gateBias_;
    uint32_t loraRank_ = 0;
    RoutingOptions routing_;
    // Paged experts: per expert, the host copy of each chunk of its matrices
    // that have no mapped source (forEachMatrix order), its device bytes when
    // resident, and whether it is.
    bool paged_ = false;
    std::vector<std::vector<std::vector<std::byte>>> hostCopies_;
    std::vector<uint64_t> residentBytes_;
    std::vector<bool> resident_;
};

// A routed block plus an always-on shared expert weighted per token by
// sigmoid(shared_gate · x) (Qwen2-MoE): residual += routed(x) + σ(g·x)·shared(x).
// The routed part is the RoutedMlp dispatch path unchanged.
class SharedExpertMoe : public MlpBlock {
public:
    // `sharedGate` [hidden] (the [1, hidden] shared_expert_gate row).
    SharedExpertMoe(vk::Context& ctx, std::unique_ptr<RoutedMlp> routed, std::unique_ptr<DenseMlp> shared,
                    const std::vector<float>& sharedGate);
    void record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const override;
    std::unique_ptr<MlpState> createState(vk::Context& ctx, const MlpStateShape& shape) const override;
    uint64_t deviceBytes() const override;
    uint32_t scratchWidth() const override;
    // No folded input norm: the routed experts add into the residual before
    // the shared expert reads its input, so that input must be a copy (xn).
    std::vector<uint32_t> expertUsage(const MlpState* state, int sequence = -1) const override;
    void resetExpertUsage(MlpState* state, int sequence = -1) const override;
    const RoutedMlp& routed() const { return *routed_; }
    RoutedMlp& routed() { return *routed_; }
    // The shared expert's part of record(), after the routed part.
    void recordShared(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const;
    // The routed part's state (for RoutedMlp::usage).
    static MlpState& routedState(MlpState& state);

private:
    std::unique_ptr<RoutedMlp> routed_;
    std::unique_ptr<DenseMlp> shared_;
    DeviceMatrix sharedGate_; // [1, hidden]
};

} // namespace moe
