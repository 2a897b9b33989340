#include "moe/ops.h"

#include "moe/error.h"
#include "op_tuning.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace moe {
using namespace tuning;
namespace {

// The shaders' Kp: a row's elements for float weights, its 32-bit words for
// block types (quant.glsl addresses rows in words).
uint32_t rowStride(const DeviceMatrix& m) {
    return isQuantized(m.dtype) ? static_cast<uint32_t>(m.rowBytes() / 4) : m.colsPadded;
}


WeightType weightType(DType t) {
    switch (t) {
    case DType::F32: return WeightType::f32;
    case DType::F16: return WeightType::f16;
    case DType::BF16: return WeightType::bf16;
    case DType::Q8_0: return WeightType::q8_0;
    case DType::Q4_0: return WeightType::q4_0;
    case DType::Q4_1: return WeightType::q4_1;
    case DType::Q5_0: return WeightType::q5_0;
    case DType::Q5_1: return WeightType::q5_1;
    case DType::Q4_K: return WeightType::q4_k;
    case DType::Q5_K: return WeightType::q5_k;
    case DType::Q6_K: return WeightType::q6_k;
    default:
        throw Error(std::string("weights of dtype ") + dtypeName(t) +
                    " are not supported (F32, F16, BF16 and the quantized block types are)");
    }
}

// A weight-reading shader's variant for the context's read path: storage
// buffers, texel buffers (TEXEL_READS in common.glsl), or texel buffers with
// 4-float input texels (INPUT_VEC4) when `x` (and `otherInput`, a whole
// buffer) are 16-byte aligned. `weights` and `inputs` are the binding masks.
struct WeightShader {
    ShaderId id;
    vk::TexelBindings texels;
};
WeightShader weightShader(const vk::Context& ctx, WeightFamily family, DType dtype, uint32_t weights, uint32_t inputs,
                          const ops::Act* x = nullptr, const vk::Buffer* otherInput = nullptr) {
    const WeightType type = weightType(dtype);
    if (!ctx.texelReads()) return {weightShaderId(family, type, ReadPath::storage), {}};
    const bool aligned = x && x->offset % 4 == 0 && x->stride % 4 == 0 && x->buffer->size() % 16 == 0 &&
                         (!otherInput || otherInput->size() % 16 == 0);
    if (aligned) return {weightShaderId(family, type, ReadPath::texel4), {weights, 0u, inputs}};
    return {weightShaderId(family, type, ReadPath::texel), {weights, inputs, 0u}};
}

// Push constants shared by matvec.comp and matmul.comp.
struct MatmulPush {
    uint32_t rows, K, Kp, nTokens;
    uint32_t xOffset, xStride, outOffset, outStride;
    uint32_t rowBase, flags;
    uint32_t routeSlot = 0, routeList = 0, routeWeight = 0, routeSlots = 0;
    float eps = 0; // matvec.comp with NORM_INPUT
    uint32_t topK = 0, chunkExperts = 0; // matvec.comp with EXPERTS
    uint32_t qDim = 0, kvDim = 0, headDim = 0, sinOffset = 0; // matvec.comp with QKV_ROPE
};
constexpr uint32_t kFlagBias = 1, kFlagAccumulate = 2, kFlagGather = 4, kFlagScatter = 8, kFlagGelu = 16;
uint32_t actFlag(Activation act) { return act == Activation::GeluTanh ? kFlagGelu : 0u; }
constexpr uint32_t kRouteLists = 160; // ROUTE_LISTS in common.glsl
constexpr uint32_t kMaxSlots = 160;   // MAX_SLOTS in moe_route.comp
constexpr uint32_t kMaskWords = 5;    // MASK_WORDS in moe_route.comp

// Fills the routing fields of the push constants for an expert slot.
void setRoute(MatmulPush& p, const ops::ExpertSlot* e) {
    if (!e) return;
    p.flags |= (e->gather ? kFlagGather : 0u) | (e->scatter ? kFlagScatter : 0u);
    p.routeSlot = e->slot;
    p.routeList = kRouteLists + e->slot * e->maxBatch;
    p.routeWeight = kRouteLists + e->slotCount * e->maxBatch + e->slot; // weights[t][slot]
    p.routeSlots = e->slotCount;
}

} // namespace

namespace ops {

namespace {
// Workgroups of matmul.comp over a chunk's rows: `group` invocations of 4 * quads rows each.
uint32_t tiledRowGroups(uint32_t rows, uint32_t quads, uint32_t group) {
    return ((rows + 4 * quads - 1) / (4 * quads) + group - 1) / group;
}

// The norm weights a matvec or tiled matmul binds: the folded norm's, or a placeholder.
const vk::Buffer& normWeights(vk::Context& ctx, const ops::InputNorm* norm, uint32_t cols) {
    if (!norm) return ctx.placeholderBuffer();
    if (norm->weight->size() < uint64_t(cols) * sizeof(float))
        throw Error("internal: input-norm weights shorter than the projection's columns");
    return *norm->weight;
}
} // namespace

void matmul(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& w, const Act& x, const Act& out,
            uint32_t nTokens, const MatmulOptions& options) {
    if (nTokens == 0) return;
    const vk::Buffer* bias = options.bias;
    const bool accumulate = options.accumulate;
    const ExpertSlot* expert = options.expert;
    const InputNorm* norm = options.norm;
    const MatmulKernel kernel = chooseKernel(nTokens, options.kernel);
    const bool vector = kernel == MatmulKernel::Vector;
    const vk::Buffer& normBuf = normWeights(ctx, norm, w.cols);
    // Both kernels read the norm weights (binding 5) the way they read x.
    const WeightShader shader =
        weightShader(ctx, vector ? WeightFamily::matvec : WeightFamily::matmul, w.dtype, 1u, 1u << 1 | 1u << 5, &x, &normBuf);
    const uint32_t tokens = vector ? matvecTokens(nTokens, isQuantized(w.dtype)) : tiledTokens(matmulTokens(ctx), nTokens),
                   quads = matmulQuads(ctx), group = matmulGroupSize(ctx);
    const vk::Pipeline& pipe = vector ? ctx.pipeline(shader.id, 6, sizeof(MatmulPush), matvecSpecs(ctx, norm, tokens), shader.texels)
                                      : ctx.pipeline(shader.id, 6, sizeof(MatmulPush), {tokens, quads, norm ? 1u : 0u, group}, shader.texels);
    const vk::Buffer& biasBuf = bias ? *bias : ctx.placeholderBuffer();
    const vk::Buffer& routeBuf = expert ? *expert->route : ctx.placeholderBuffer();
    for (const auto& c : w.chunks) {
        MatmulPush p{c.rowCount, w.cols, rowStride(w), nTokens, x.offset, x.stride, out.offset, out.stride,
                     c.firstRow, (bias ? kFlagBias : 0u) | (accumulate ? kFlagAccumulate : 0u)};
        setRoute(p, expert);
        p.eps = norm ? norm->eps : 0.0f;
        if (vector)
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, biasBuf, routeBuf, normBuf}, &p, sizeof p,
                             matvecGroups(ctx, c.rowCount, tokens), (nTokens + tokens - 1) / tokens);
        else
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, biasBuf, routeBuf, normBuf}, &p, sizeof p,
                             tiledRowGroups(c.rowCount, quads, group), (nTokens + tokens - 1) / tokens);
    }
}

void matmulGated(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& gate, const DeviceMatrix& up,
                 const Act& x, const Act& out, uint32_t nTokens, const GatedOptions& options) {
    const ExpertSlot* expert = options.expert;
    const InputNorm* norm = options.norm;
    if (gate.rows != up.rows || gate.cols != up.cols || gate.dtype != up.dtype || gate.chunks.size() != up.chunks.size())
        throw Error("internal: gate and up projections differ in shape or dtype");
    if (nTokens == 0) return;
    const bool vector = chooseKernel(nTokens) == MatmulKernel::Vector;
    const vk::Buffer& normBuf = normWeights(ctx, norm, gate.cols);
    // Both gated kernels read the norm weights (binding 6) the way they read x.
    const WeightShader shader = weightShader(ctx, vector ? WeightFamily::matvec_gated : WeightFamily::matmul_gated, gate.dtype, 1u | 1u << 4,
                                             1u << 1 | 1u << 6, &x, &normBuf);
    const uint32_t tokens = vector ? matvecTokens(nTokens, isQuantized(gate.dtype)) : tiledTokens(matmulGatedTokens(), nTokens),
                   quads = matmulGatedQuads(), group = matmulGroupSize(ctx);
    const vk::Pipeline& pipe = vector ? ctx.pipeline(shader.id, 7, sizeof(MatmulPush), matvecSpecs(ctx, norm, tokens), shader.texels)
                                      : ctx.pipeline(shader.id, 7, sizeof(MatmulPush), {tokens, quads, norm ? 1u : 0u, group}, shader.texels);
    const vk::Buffer& routeBuf = expert ? *expert->route : ctx.placeholderBuffer();
    for (size_t i = 0; i < gate.chunks.size(); ++i) {
        const auto& c = gate.chunks[i];
        MatmulPush p{c.rowCount, gate.cols, rowStride(gate), nTokens, x.offset, x.stride, out.offset, out.stride,
                     c.firstRow, actFlag(options.act)};
        setRoute(p, expert);
        p.eps = norm ? norm->eps : 0.0f;
        if (vector)
            rec.dispatchFlat(pipe,
                             {c.binding(), *x.buffer, *out.buffer, ctx.placeholderBuffer(), up.chunks[i].binding(), routeBuf, normBuf},
                             &p, sizeof p, matvecGroups(ctx, c.rowCount, tokens), (nTokens + tokens - 1) / tokens);
        else
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, ctx.placeholderBuffer(), up.chunks[i].binding(), routeBuf, normBuf},
                             &p, sizeof p, tiledRowGroups(c.rowCount, quads, group), (nTokens + tokens - 1) / tokens);
    }
}

void stackedExperts(vk::Context& ctx, vk::Recorder& rec, const std::vector<StackedExperts>& stacks,
                    const ExpertSlot& route, uint32_t topK, const Act& x, const Act& h, const Act& residual,
                    uint32_t nTokens, const InputNorm* norm, Activation act) {
    if (nTokens == 0 || stacks.empty()) return;
    for (const StackedExperts& e : stacks)
        if (e.experts == 0 || e.gate->rows % e.experts || e.down->rows % e.experts || e.gate->rows != e.up->rows ||
            e.gate->chunks.size() != e.up->chunks.size() || e.gate->dtype != e.up->dtype ||
            e.gate->rows / e.experts != stacks[0].gate->rows / stacks[0].experts)
            throw Error("internal: stacked experts of unequal shapes");
    const uint32_t inter = stacks[0].gate->rows / stacks[0].experts, hidden = stacks[0].down->rows / stacks[0].experts;
    const vk::Buffer& normBuf = normWeights(ctx, norm, stacks[0].gate->cols);
    MatmulPush p{};
    p.routeList = kRouteLists + 2 * route.slotCount * route.maxBatch; // chosen-slot masks
    p.routeWeight = kRouteLists + route.slotCount * route.maxBatch;   // weights [token][slot]
    p.routeSlots = route.slotCount;
    p.topK = topK;
    p.nTokens = nTokens;
    // Every stack's gated pass reads x before any down pass adds into the
    // residual (which is x itself when the norm is folded); each writes only
    // the h rows of pairs whose slot it holds.
    p.eps = norm ? norm->eps : 0.0f;
    p.flags = actFlag(act);
    for (const StackedExperts& e : stacks) {
        const DeviceMatrix &gate = *e.gate, &up = *e.up;
        const WeightShader shader =
            weightShader(ctx, WeightFamily::matvec_experts_gated, gate.dtype, 1u | 1u << 4, 1u << 1 | 1u << 6, &x, &normBuf);
        const vk::Pipeline& pipe =
            ctx.pipeline(shader.id, 7, sizeof(MatmulPush), matvecSpecs(ctx, norm), shader.texels);
        for (size_t i = 0; i < gate.chunks.size(); ++i) {
            const auto& c = gate.chunks[i];
            p.rows = inter, p.K = gate.cols, p.Kp = rowStride(gate);
            p.xOffset = x.offset, p.xStride = x.stride, p.outOffset = h.offset, p.outStride = h.stride;
            p.routeSlot = e.firstSlot + c.firstRow / inter, p.chunkExperts = c.rowCount / inter;
            rec.dispatchFlat(pipe,
                             {c.binding(), *x.buffer, *h.buffer, ctx.placeholderBuffer(), up.chunks[i].binding(),
                              *route.route, normBuf},
                             &p, sizeof p, matvecGroups(ctx, inter), nTokens * topK);
        }
    }
    p.eps = 0.0f;
    p.flags = kFlagAccumulate;
    for (const StackedExperts& e : stacks) {
        const DeviceMatrix& down = *e.down;
        const WeightShader shader = weightShader(ctx, WeightFamily::matvec_experts, down.dtype, 1u, 1u << 1 | 1u << 5, &h);
        const vk::Pipeline& pipe = ctx.pipeline(shader.id, 6, sizeof(MatmulPush), matvecSpecs(ctx, false), shader.texels);
        for (const auto& c : down.chunks) {
            // After the gated passes, and after the previous chunk: every chunk adds into the same residual rows.
            rec.barrier();
            p.rows = hidden, p.K = down.cols, p.Kp = rowStride(down);
            p.xOffset = h.offset, p.xStride = h.stride, p.outOffset = residual.offset, p.outStride = residual.stride;
            p.routeSlot = e.firstSlot + c.firstRow / hidden, p.chunkExperts = c.rowCount / hidden;
            rec.dispatchFlat(pipe,
                             {c.binding(), *h.buffer, *residual.buffer, ctx.placeholderBuffer(), *route.route,
                              ctx.placeholderBuffer()},
                             &p, sizeof p, matvecGroups(ctx, hidden), nTokens);
        }
    }
}

uint64_t routeBufferBytes(const RouteParams& p) {
    const uint64_t slots = p.experts + 1;
    return (kRouteLists + slots * p.maxBatch + uint64_t(p.maxBatch) * slots + uint64_t(p.maxBatch) * kMaskWords) * 4;
}

uint64_t routeStateBytes(const RouteParams& p) {
    const uint64_t seqs = std::max<uint32_t>(1, p.sequences);
    return (seqs * p.maxContext * p.experts + seqs * p.experts + uint64_t(p.maxBatch) * p.experts) * 4;
}

void routeTokens(vk::Context& ctx, vk::Recorder& rec, const RouteParams& rp, const vk::Buffer& step,
                 const vk::Buffer& logits, const vk::Buffer& route, const vk::Buffer& state, const vk::Buffer& usage) {
    if (rp.experts == 0 || rp.experts + 1 > kMaxSlots)
        throw Error("an MoE layer holds 1 to " + std::to_string(kMaxSlots - 1) + " experts, not " +
                    std::to_string(rp.experts));
    struct Push {
        uint32_t experts, topK, mode, maxBatch;
        float decay;
        uint32_t probsBase, frozenBase, renormalise;
    } p{};
    const uint32_t seqs = std::max<uint32_t>(1, rp.sequences);
    const uint64_t frozenBase = uint64_t(seqs) * rp.maxContext * rp.experts;
    if (frozenBase + uint64_t(seqs) * rp.experts > UINT32_MAX)
        throw Error("the routing state of " + std::to_string(seqs) + " sequences of " + std::to_string(rp.maxContext) +
                    " tokens is too large");
    p = {rp.experts, rp.topK, uint32_t(rp.mode), rp.maxBatch, rp.decay, uint32_t(frozenBase + uint64_t(seqs) * rp.experts),
         uint32_t(frozenBase), rp.renormalise};
    const auto& pipe = ctx.pipeline(ShaderId::moe_route, 5, sizeof p);
    rec.dispatch(pipe, {step, logits, route, state, usage}, &p, sizeof p, 1);
}

void rmsnorm(vk::Context& ctx, vk::Recorder& rec, const Act& x, const vk::Buffer& weight, const Act& out,
             uint32_t rows, uint32_t dim, float eps, uint32_t rowsPerToken, bool accumulate) {
    struct Push {
        uint32_t rows, dim, xOffset, xStride, outOffset, outStride;
        float eps;
        uint32_t rowsPerToken, accumulate;
    } p{rows, dim, x.offset, x.stride, out.offset, out.stride, eps, std::max(rowsPerToken, 1u), accumulate ? 1u : 0u};
    const auto& pipe = ctx.pipeline(ShaderId::rmsnorm, 3, sizeof p, {ctx.subgroupSize()});
    rec.dispatchFlat(pipe, {*x.buffer, weight, *out.buffer}, &p, sizeof p, rows);
}

void layernorm(vk::Context& ctx, vk::Recorder& rec, const Act& x, const vk::Buffer& weight, const vk::Buffer& bias,
               const Act& out, uint32_t rows, uint32_t dim, float eps) {
    struct Push {
        uint32_t rows, dim, xOffset, xStride, outOffset, outStride;
        float eps;
    } p{rows, dim, x.offset, x.stride, out.offset, out.stride, eps};
    const auto& pipe = ctx.pipeline(ShaderId::layernorm, 4, sizeof p, {ctx.subgroupSize()});
    rec.dispatchFlat(pipe, {*x.buffer, weight, bias, *out.buffer}, &p, sizeof p, rows);
}

void embed(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& step,
           const vk::Buffer& out, uint32_t nTokens, float scale) {
    struct Push {
        uint32_t dim, Kp, nTokens, vocab, firstRow, rowCount;
        float scale;
    };
    const WeightShader shader = weightShader(ctx, WeightFamily::embed, table.dtype, 1u, 0u);
    const auto& pipe = ctx.pipeline(shader.id, 3, sizeof(Push), {}, shader.texels);
    for (const auto& c : table.chunks) {
        Push p{table.cols, rowStride(table), nTokens, table.rows, c.firstRow, c.rowCount, scale};
        rec.dispatchFlat(pipe, {c.binding(), step, out}, &p, sizeof p, (uint64_t(nTokens) * table.cols + 63) / 64);
    }
}

bool qkvRopeFits(vk::Context& ctx, const DeviceMatrix& qkv, uint32_t nTokens) {
    return chooseKernel(nTokens) == MatmulKernel::Vector && qkv.chunks.size() == 1 &&
           matvecRows(ctx, matvecTokens(nTokens, isQuantized(qkv.dtype))) % 2 == 0;
}

void qkvRope(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const DeviceMatrix& w, const Act& x,
             const vk::Buffer* bias, const InputNorm* norm, const vk::Buffer& step, const vk::Buffer& qOut,
             const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& table, uint32_t tableMaxPos,
             uint32_t nTokens) {
    if (nTokens == 0) return;
    const uint32_t qDim = s.nHeads * s.headDim, kvDim = s.nKvHeads * s.headDim;
    if (!qkvRopeFits(ctx, w, nTokens) || w.rows != qDim + 2 * kvDim || s.headDim % 2 || s.rotaryDim() != s.headDim)
        throw Error("internal: qkvRope on a projection it does not fit");
    const vk::Buffer& normBuf = normWeights(ctx, norm, w.cols);
    const WeightShader shader = weightShader(ctx, WeightFamily::matvec_qkv_rope, w.dtype, 1u, 1u << 1 | 1u << 5, &x, &normBuf);
    const uint32_t tokens = matvecTokens(nTokens, isQuantized(w.dtype));
    const vk::Pipeline& pipe = ctx.pipeline(shader.id, 10, sizeof(MatmulPush), matvecSpecs(ctx, norm, tokens), shader.texels);
    const auto& c = w.chunks[0];
    MatmulPush p{c.rowCount, w.cols, rowStride(w), nTokens, x.offset, x.stride, 0, qDim, 0, bias ? kFlagBias : 0u};
    p.eps = norm ? norm->eps : 0.0f;
    p.qDim = qDim, p.kvDim = kvDim, p.headDim = s.headDim, p.sinOffset = tableMaxPos * (s.headDim / 2);
    rec.dispatchFlat(pipe,
                     {c.binding(), *x.buffer, qOut, bias ? *bias : ctx.placeholderBuffer(), ctx.placeholderBuffer(),
                      normBuf, kCache, vCache, table, step},
                     &p, sizeof p, matvecGroups(ctx, c.rowCount, tokens), (nTokens + tokens - 1) / tokens);
}

void ropeStore(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step, const Act& q,
               const Act& k, const Act& v, const vk::Buffer& qOut, const vk::Buffer& kCache, const vk::Buffer& vCache,
               const vk::Buffer& table, uint32_t tableMaxPos, uint32_t nTokens) {
    const uint32_t half = s.headDim / 2, rotHalf = s.rotaryDim() / 2;
    if (s.rotaryDim() % 2 || s.rotaryDim() > s.headDim) throw Error("internal: ropeStore with an odd or too wide rotary width");
    struct Push {
        uint32_t nTokens, nHeads, nKvHeads, headDim;
        uint32_t qOffset, qStride, kOffset, kStride, vOffset, vStride, qOutStride, kvStride;
        uint32_t cosOffset, sinOffset, rotHalf;
    } p{nTokens, s.nHeads, s.nKvHeads, s.headDim, q.offset, q.stride, k.offset, k.stride, v.offset, v.stride,
        s.nHeads * s.headDim, s.nKvHeads * s.headDim, 0, tableMaxPos * rotHalf, rotHalf};
    const auto& pipe = ctx.pipeline(ShaderId::rope, 8, sizeof p);
    rec.dispatchFlat(pipe, {step, *q.buffer, *k.buffer, *v.buffer, qOut, kCache, vCache, table}, &p, sizeof p,
                     (uint64_t(nTokens) * (s.nHeads + s.nKvHeads) * half + 63) / 64);
}

void attention(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step,
               const vk::Buffer& q, const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& out,
               uint32_t nTokens, bool oneSequence) {
    struct Push {
        uint32_t nTokens, nHeads, nKvHeads, headDim, qStride, kvStride, outStride, window;
        float scale, softcap;
    } p{nTokens, s.nHeads, s.nKvHeads, s.headDim, s.nHeads * s.headDim, s.nKvHeads * s.headDim,
        s.nHeads * s.headDim, s.window, s.scale, s.softcap};
    const uint32_t S = ctx.subgroupSize();
    const uint32_t dimsPerLane = (s.headDim + S - 1) / S;
    // Texel reads of q, K and V (bindings 1-3); four floats per fetch when
    // every row starts 16-byte aligned.
    const bool aligned = s.headDim % 4 == 0 && q.size() % 16 == 0 && kCache.size() % 16 == 0 && vCache.size() % 16 == 0;
    const ShaderId shader = !ctx.texelReads() ? ShaderId::attention
                          : aligned         ? ShaderId::attention_texel4
                                            : ShaderId::attention_texel;
    const vk::TexelBindings texels = !ctx.texelReads() ? vk::TexelBindings{}
                                     : aligned          ? vk::TexelBindings{0u, 0u, 0xeu}
                                                        : vk::TexelBindings{0u, 0xeu, 0u};
    // Prefill: each subgroup attends for several consecutive queries, so a key
    // and value are loaded once for all of them.
    const uint32_t queries = nTokens > 1 && oneSequence ? attentionQueries() : 1u;
    const auto& pipe = ctx.pipeline(shader, 5, sizeof p, {S, std::max(dimsPerLane, 1u), queries}, texels);
    rec.dispatch(pipe, {step, q, kCache, vCache, out}, &p, sizeof p, s.nHeads, (nTokens + queries - 1) / queries, 1);
}

void siluMul(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& g, const vk::Buffer& u, const vk::Buffer& h,
             uint32_t n, Activation act) {
    struct Push {
        uint32_t n, flags;
    } p{n, actFlag(act)};
    const auto& pipe = ctx.pipeline(ShaderId::silu_mul, 3, sizeof p);
    rec.dispatchFlat(pipe, {g, u, h}, &p, sizeof p, (n + 63) / 64);
}

void activate(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& h, uint32_t n, Activation act) {
    struct Push {
        uint32_t n, flags;
    } p{n, actFlag(act)};
    const auto& pipe = ctx.pipeline(ShaderId::activate, 1, sizeof p);
    rec.dispatchFlat(pipe, {h}, &p, sizeof p, (n + 63) / 64);
}

void softcap(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& x, uint32_t offset, uint32_t n, float cap) {
    if (!(cap > 0)) throw Error("internal: soft-capping needs a positive cap");
    struct Push {
        uint32_t n, offset;
        float cap;
    } p{n, offset, cap};
    const auto& pipe = ctx.pipeline(ShaderId::softcap, 1, sizeof p);
    rec.dispatchFlat(pipe, {x}, &p, sizeof p, (n + 63) / 64);
}

void sigmoidScaleRows(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& s, const vk::Buffer& h, uint32_t nTokens,
                      uint32_t width) {
    struct Push {
        uint32_t n, width;
    } p{nTokens, width};
    const auto& pipe = ctx.pipeline(ShaderId::sigmoid_scale_rows, 2, sizeof p);
    rec.dispatchFlat(pipe, {s, h}, &p, sizeof p, (nTokens * width + 63) / 64);
}

void copy(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& src, const vk::Buffer& dst, uint64_t bytes,
          bool texelSource) {
    struct Push {
        uint32_t n;
    } p{static_cast<uint32_t>(bytes / 16)};
    const auto& pipe = texelSource ? ctx.pipeline(ShaderId::copy_vec4_texel, 2, sizeof p, {}, vk::TexelBindings{1u, 0u})
                                   : ctx.pipeline(ShaderId::copy_vec4, 2, sizeof p);
    rec.dispatchFlat(pipe, {vk::BufferView(src, 0, bytes / 16 * 16), dst}, &p, sizeof p, (p.n + 255) / 256);
}

} // namespace ops
} // namespace moe
