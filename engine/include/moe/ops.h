#pragma once
// The compute ops of the forward pass, each recorded into a vk::Recorder.
// Activations are float32 buffers addressed by element offsets and strides;
// weights stay in their stored dtype (F32/F16/BF16) on the device.
#include "moe/device_matrix.h"
#include "moe/model_config.h"
#include "moe/routing.h"
#include "moe/vk.h"

#include <cstdint>
#include <vector>

namespace moe {

namespace ops {

// Activation operand: a float32 buffer, element offset and row stride.
struct Act {
    const vk::Buffer* buffer = nullptr;
    uint32_t offset = 0;
    uint32_t stride = 0;
};

// Restricts a matmul to one expert slot's tokens, as listed by routeTokens():
// `gather` reads input row list[slot] (else slot), `scatter` writes output row
// list[slot] scaled by the token's routing weight (else row slot).
struct ExpertSlot {
    const vk::Buffer* route = nullptr;
    uint32_t slot = 0;
    uint32_t slotCount = 0; // experts + 1 (the base slot)
    uint32_t maxBatch = 0; // list capacity
    bool gather = false;
    bool scatter = false;
};

// An RMSNorm folded into a projection's input: x is the un-normalised
// residual, and the matvec applies x / rms(x) * weight as it reads it.
struct InputNorm {
    const vk::Buffer* weight = nullptr; // float32, the projection's column count (padded to 4)
    float eps = 0;
};

enum class MatmulKernel { Auto, Vector, Tiled };
// Which kernel Auto picks: MOE_MATMUL=vector|tiled overrides the token-count
// rule, and so does a KernelScope alive on the calling thread.
MatmulKernel chooseKernel(uint32_t nTokens, MatmulKernel requested = MatmulKernel::Auto);
// While alive, Auto takes `kernel` on this thread (Auto: the usual rule).
// Sessions that batch their decode steps record every decode step, of one
// sequence or several, under one, so that a sequence's results do not
// depend on how many others step with it: each kernel forms every (row,
// token) sum the same way for any token count (tested bitwise).
class KernelScope {
public:
    explicit KernelScope(MatmulKernel kernel);
    ~KernelScope();
    KernelScope(const KernelScope&) = delete;
    KernelScope& operator=(const KernelScope&) = delete;

private:
    MatmulKernel saved_;
};
// Whether matmul() and matmulGated() are given InputNorms to fold (both
// kernels fold them); MOE_FOLD_NORM=0 keeps the norms as passes of their own.
bool foldsInputNorm();

// What a matmul does besides out = W · x; set by name:
// matmul(..., {.bias = &b, .accumulate = true}).
struct MatmulOptions {
    const vk::Buffer* bias = nullptr;   // float32 [rows], added to each output row (before a scatter's weight)
    bool accumulate = false;            // out += instead of out =
    MatmulKernel kernel = MatmulKernel::Auto;
    const ExpertSlot* expert = nullptr; // one expert slot's tokens (nTokens = the slot's capacity)
    const InputNorm* norm = nullptr;    // x normalised on the way in (see foldsInputNorm)
};
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for t < nTokens.
void matmul(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& w, const Act& x, const Act& out,
            uint32_t nTokens, const MatmulOptions& options = {});
struct GatedOptions {
    const ExpertSlot* expert = nullptr;
    const InputNorm* norm = nullptr;
    Activation act = Activation::Silu; // the gate's activation (GeluTanh: GeGLU)
};
// out[t, r] = act(Wg[r] · x[t]) * (Wu[r] · x[t]) in one pass (the matvec or the
// tiled kernel, as matmul() chooses).
void matmulGated(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& gate, const DeviceMatrix& up,
                 const Act& x, const Act& out, uint32_t nTokens, const GatedOptions& options = {});

// Experts of a layer stacked: slots firstSlot .. firstSlot + experts - 1,
// slot firstSlot + e's rows of each projection at e * rows (gate and up
// [experts * I, H], down [experts * H, I]), every chunk holding whole experts.
struct StackedExperts {
    const DeviceMatrix* gate = nullptr;
    const DeviceMatrix* up = nullptr;
    const DeviceMatrix* down = nullptr;
    uint32_t experts = 0;
    uint32_t firstSlot = 0;
};
// All of a step's routed experts at once (the matvec, few tokens), from one
// or more stacks: h[t * topK + j] = silu(Wg_s · x[t]) * (Wu_s · x[t]) for
// token t's j-th chosen slot s, then residual[t] += Σ_j weight(t, s) · Wd_s ·
// h[t * topK + j]. Every gated pass runs before any down pass, so x may be
// the residual itself (with `norm`, x is normalised on the way in). Two
// dispatches per stacked chunk, whatever the number of experts; the caller
// puts a barrier after. `route` is the routeTokens() buffer (its slotCount
// and maxBatch); h holds nTokens * topK rows.
void stackedExperts(vk::Context& ctx, vk::Recorder& rec, const std::vector<StackedExperts>& stacks,
                    const ExpertSlot& route, uint32_t topK, const Act& x, const Act& h, const Act& residual,
                    uint32_t nTokens, const InputNorm* norm = nullptr, Activation act = Activation::Silu);

// Routing of one MoE layer's step (moe_route.comp): softmax of `logits`
// [n, experts], scores in `mode` (Token, Running or Sequence), top-k,
// renormalised weights and per-slot token lists into `route`. `state` holds
// the running sums per sequence and position, each sequence's frozen prompt
// choice and the step's probabilities; `usage` [sequences][experts + 1]
// counts the tokens each slot received.
struct RouteParams {
    uint32_t experts = 0, topK = 1;
    RoutingMode mode = RoutingMode::Token;
    uint32_t maxBatch = 0, maxContext = 0;
    float decay = 1.0f;
    uint32_t renormalise = 1; // 0: the chosen experts keep their raw scores as weights
    uint32_t sequences = 1;   // running sums, frozen choices and usage rows kept per sequence
};
uint64_t routeBufferBytes(const RouteParams& p);
uint64_t routeStateBytes(const RouteParams& p);
void routeTokens(vk::Context& ctx, vk::Recorder& rec, const RouteParams& p, const vk::Buffer& step,
                 const vk::Buffer& logits, const vk::Buffer& route, const vk::Buffer& state, const vk::Buffer& usage);
// out[r, :] = rmsnorm(x[r, :]) * weight for `rows` rows of `dim`. With
// rowsPerToken > 1 (per-head norms) a token's rows lie `dim` apart and the
// Act strides are per token: row r starts at offset + (r / rowsPerToken) *
// stride + (r % rowsPerToken) * dim.
// With `accumulate`, out += the normalised rows (out must not overlap x).
void rmsnorm(vk::Context& ctx, vk::Recorder& rec, const Act& x, const vk::Buffer& weight, const Act& out,
             uint32_t rows, uint32_t dim, float eps, uint32_t rowsPerToken = 1, bool accumulate = false);
// out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias for `rows`
// rows of `dim` (LayerNorm; Phi-2). out must not overlap x.
void layernorm(vk::Context& ctx, vk::Recorder& rec, const Act& x, const vk::Buffer& weight, const vk::Buffer& bias,
               const Act& out, uint32_t rows, uint32_t dim, float eps);
// out[t, :] = table[step.tokens[t], :] * scale for t < nTokens.
void embed(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& step,
           const vk::Buffer& out, uint32_t nTokens, float scale = 1.0f);
// x[offset + i] = cap * tanh(x[offset + i] / cap) for i < n, in place.
void softcap(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& x, uint32_t offset, uint32_t n, float cap);

struct AttentionShape {
    uint32_t nHeads = 0, nKvHeads = 0, headDim = 0;
    uint32_t window = 0; // sliding window in tokens, 0 = none
    float scale = 0;
    float softcap = 0;   // scores = softcap * tanh(scores / softcap) (Gemma 2); 0 = none
    uint32_t ropeDim = 0; // rotated dimensions per head (Phi-3's partial rotary); 0 = headDim
    uint32_t rotaryDim() const { return ropeDim ? ropeDim : headDim; }
};
// RoPE on q (into qOut, rows of nHeads * headDim) and k, storing k and v into
// the caches at each token's row (StepToken: its sequence's rows, its
// position). q, k and v are read at their offsets and strides (column ranges
// of one QKV output, or buffers of their own).
// `table` holds cos [maxPos][rotaryDim/2] then sin [maxPos][rotaryDim/2].
void ropeStore(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step, const Act& q,
               const Act& k, const Act& v, const vk::Buffer& qOut, const vk::Buffer& kCache, const vk::Buffer& vCache,
               const vk::Buffer& table, uint32_t tableMaxPos, uint32_t nTokens);
// Whether qkvRope() can take this projection (decode's kernel, one chunk,
// rotation pairs within a subgroup's rows); else matmul() then ropeStore().
bool qkvRopeFits(vk::Context& ctx, const DeviceMatrix& qkv, uint32_t nTokens);
// The fused q/k/v projection (rows q, k, v) with RoPE applied as it is
// written: rotated q into qOut [tokens, nHeads * headDim], rotated k and v
// into the caches at each token's row. matmul() plus ropeStore() in one pass.
void qkvRope(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const DeviceMatrix& qkv, const Act& x,
             const vk::Buffer* bias, const InputNorm* norm, const vk::Buffer& step, const vk::Buffer& qOut,
             const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& table, uint32_t tableMaxPos,
             uint32_t nTokens);
// Causal attention of each of the step's queries over its sequence's cache
// rows up to its position. `oneSequence`: the step is one sequence's
// consecutive positions (prefill), so a subgroup can serve several queries.
void attention(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step,
               const vk::Buffer& q, const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& out,
               uint32_t nTokens, bool oneSequence = true);
// h[t, :] *= sigmoid(s[t]) for t < nTokens over rows of `width` (gated shared experts).
void sigmoidScaleRows(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& s, const vk::Buffer& h, uint32_t nTokens,
                      uint32_t width);
// h = act(g) * u over n elements (silu, or the tanh GELU).
void siluMul(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& g, const vk::Buffer& u, const vk::Buffer& h,
             uint32_t n, Activation act = Activation::Silu);
// h = act(h) over n elements, in place (an ungated MLP's activation; Phi-2).
void activate(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& h, uint32_t n, Activation act);
// dst = src, `bytes` a multiple of 16 (bandwidth probe).
// texelSource: read src through a texel-buffer view (how weights are read).
void copy(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& src, const vk::Buffer& dst, uint64_t bytes,
          bool texelSource = false);

// Step buffer layout shared with the shaders (DECLARE_STEP in common.glsl):
// the header, then one StepToken per token. Tokens of one sequence are
// consecutive and in position order; a step may hold several sequences
// (batched decode), each with its own KV cache rows.
struct StepHeader {
    uint32_t nTokens = 0;
    uint32_t seqRows = 0; // KV cache (and routing state) rows per sequence
    uint32_t pad[2] = {0, 0};
};
struct StepToken {
    int32_t token = 0;
    uint32_t pos = 0; // position in its sequence
    uint32_t seq = 0; // the sequence: cache rows seq * seqRows ..
    uint32_t flags = 0; // routeFlags()
};
// bit 0: the token is a reply (sequence routing keeps the prompt's choice);
// bits 1..: 0 = route normally, slot + 1 = send the token to that slot.
inline uint32_t routeFlags(bool reply, int pinSlot) {
    return (reply ? 1u : 0u) | (pinSlot >= 0 ? uint32_t(pinSlot + 1) << 1 : 0u);
}
inline uint64_t stepBufferBytes(uint32_t maxTokens) { return sizeof(StepHeader) + uint64_t(maxTokens) * sizeof(StepToken); }
static_assert(sizeof(StepHeader) == 16 && sizeof(StepToken) == 16);

} // namespace ops
} // namespace moe
