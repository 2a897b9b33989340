#include "moe/ops.h"

#include "moe/error.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace moe {
namespace {

const char* dtypeSuffix(DType t) {
    switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    default: throw Error(std::string("weights of dtype ") + dtypeName(t) + " are not supported (F32, F16, BF16 are)");
    }
}

uint32_t roundUp(uint32_t v, uint32_t m) { return (v + m - 1) / m * m; }

// A weight-reading shader's variant for the context's read path: storage
// buffers, texel buffers (`_texel`, TEXEL_READS in common.glsl), or texel
// buffers with 4-float input texels (`_texel4`, INPUT_VEC4) when `x` (and
// `otherInput`, a whole buffer) are 16-byte aligned. `weights` and `inputs`
// are the binding masks.
struct WeightShader {
    std::string name;
    vk::TexelBindings texels;
};
WeightShader weightShader(const vk::Context& ctx, const char* base, DType dtype, uint32_t weights, uint32_t inputs,
                          const ops::Act* x = nullptr, const vk::Buffer* otherInput = nullptr) {
    std::string name = std::string(base) + dtypeSuffix(dtype);
    if (!ctx.texelReads()) return {name, {}};
    const bool aligned = x && x->offset % 4 == 0 && x->stride % 4 == 0 && x->buffer->size() % 16 == 0 &&
                         (!otherInput || otherInput->size() % 16 == 0);
    if (aligned) return {name + "_texel4", {weights, 0u, inputs}};
    return {name + "_texel", {weights, inputs, 0u}};
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
constexpr uint32_t kFlagBias = 1, kFlagAccumulate = 2, kFlagGather = 4, kFlagScatter = 8;
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

uint32_t rowShaderGroupSize(vk::Context& ctx) { return ctx.subgroupSize() * ctx.subgroupsPerWorkgroup(); }

// A positive count from the environment (tuning experiments), else `fallback`.
uint32_t envCount(const char* name, uint32_t fallback) {
    const char* e = std::getenv(name);
    return e && std::atoi(e) > 0 ? uint32_t(std::atoi(e)) : fallback;
}

// Rows per subgroup in the matvec: reusing each x block for several rows
// saves loads on CPU drivers (every per-lane load is a gather there); at 0.5B
// shapes on lavapipe 16 rows decoded 11-12 tokens/s against 8.3-9.9 with 4.
// MOE_MATVEC_ROWS overrides it for experiments.
uint32_t matvecRows(const vk::Context& ctx) { return envCount("MOE_MATVEC_ROWS", ctx.info().type == "cpu" ? 16u : 2u); }

// Tokens and groups of 4 rows per matmul invocation: each loaded weight is
// reused for every token and each x value for every row, but the
// accumulators (tokens x rows) must stay in registers. At 0.5B shapes on
// lavapipe 4 tokens x 12 rows prefilled 53-55 tokens/s, 16 x 4 46-47, 8 x 8
// 49-50, 4 x 16 45-50; GPUs keep 16 x 4 (what the H100 figures were measured
// with). MOE_MATMUL_TOKENS / MOE_MATMUL_QUADS override them.
uint32_t matmulTokens(const vk::Context& ctx) { return envCount("MOE_MATMUL_TOKENS", ctx.info().type == "cpu" ? 4u : 16u); }
uint32_t matmulQuads(const vk::Context& ctx) { return envCount("MOE_MATMUL_QUADS", ctx.info().type == "cpu" ? 3u : 1u); }

// The same for the gated matmul (two sets of accumulators): 16 tokens x 4
// rows prefilled 60-63 tokens/s at 0.5B shapes on lavapipe, 4 x 8 55-57, 12 x 4
// 58-61, 24 x 4 41-45 (against 56-60 for two plain matmuls and a SiLU pass).
uint32_t matmulGatedTokens() { return envCount("MOE_MATMUL_GATED_TOKENS", 16u); }
uint32_t matmulGatedQuads() { return envCount("MOE_MATMUL_GATED_QUADS", 1u); }

// Queries per attention subgroup in prefill (MOE_ATTENTION_QUERIES overrides it).
uint32_t attentionQueries() { return envCount("MOE_ATTENTION_QUERIES", 4u); }

// Subgroups of a matvec workgroup that share its rows (matvec.comp's
// SPLIT_K): on GPUs all of them, so that matrices with few rows still have
// enough loads in flight; on CPU drivers 1 (no shared memory, no barrier).
// MOE_MATVEC_SPLIT_K overrides it (a divisor of the subgroups per workgroup).
uint32_t matvecSplitK(const vk::Context& ctx) {
    const uint32_t subgroups = ctx.subgroupsPerWorkgroup();
    const uint32_t split = envCount("MOE_MATVEC_SPLIT_K", ctx.info().type == "cpu" ? 1u : subgroups);
    return subgroups % split == 0 ? split : 1u;
}

// Specialization constants of matvec.comp: workgroup size, rows per
// subgroup, split of K, subgroups per workgroup, folded input norm.
std::vector<uint32_t> matvecSpecs(vk::Context& ctx, bool normInput) {
    return {rowShaderGroupSize(ctx), matvecRows(ctx), matvecSplitK(ctx), ctx.subgroupsPerWorkgroup(), normInput ? 1u : 0u};
}

uint32_t matvecGroups(vk::Context& ctx, uint32_t rows) {
    const uint32_t rowsPerGroup = ctx.subgroupsPerWorkgroup() / matvecSplitK(ctx) * matvecRows(ctx);
    return (rows + rowsPerGroup - 1) / rowsPerGroup;
}

} // namespace

uint64_t DeviceMatrix::bytes() const {
    uint64_t n = 0;
    for (const auto& c : chunks) n += c.viewOf ? c.viewBytes : c.buffer.size();
    return n;
}

uint64_t DeviceMatrix::residentBytes() const {
    uint64_t n = 0;
    for (const auto& c : chunks) n += uint64_t(c.rowCount) * colsPadded * dtypeSize(dtype);
    return n;
}

uint32_t DeviceMatrix::rowsPerChunk(const vk::Context& ctx, uint64_t bytesPerRow) {
    uint64_t limit = std::min<uint64_t>(ctx.maxStorageRange(), ctx.info().maxMemoryAllocationSize
                                                                    ? ctx.info().maxMemoryAllocationSize
                                                                    : ctx.maxStorageRange());
    if (ctx.texelReads()) limit = std::min<uint64_t>(limit, ctx.info().maxTexelBufferElements * 16);
    uint64_t rows = limit / bytesPerRow;
    if (rows == 0) throw Error("a single weight row of " + std::to_string(bytesPerRow) +
                               " bytes exceeds the device's storage-buffer range");
    return static_cast<uint32_t>(std::min<uint64_t>(rows, 0xffffffffu));
}

namespace {
// Rows of one source, row-major and unpadded.
struct RowSource {
    const std::byte* data;
    uint32_t rows;
};

// Uploads the rows of `sources`, one after another, into padded chunks.
DeviceMatrix uploadRows(vk::Context& ctx, DType dtype, uint32_t cols, const std::vector<RowSource>& sources) {
    dtypeSuffix(dtype); // rejects unsupported dtypes
    DeviceMatrix m;
    m.dtype = dtype;
    m.rows = 0;
    for (const auto& s : sources) m.rows += s.rows;
    if (m.rows == 0) throw Error("internal: empty weight matrix");
    m.cols = cols;
    m.colsPadded = roundUp(std::max(cols, 1u), 8);
    const uint64_t esize = dtypeSize(dtype);
    const uint64_t srcRow = uint64_t(cols) * esize;
    const uint64_t dstRow = uint64_t(m.colsPadded) * esize;
    const uint32_t perChunk = DeviceMatrix::rowsPerChunk(ctx, dstRow);
    // Source row r of the whole matrix, and how many rows follow it in the same source.
    auto rowAt = [&](uint32_t r) -> std::pair<const std::byte*, uint32_t> {
        for (const auto& s : sources) {
            if (r < s.rows) return {s.data + uint64_t(r) * srcRow, s.rows - r};
            r -= s.rows;
        }
        throw Error("internal: row past the end of a weight matrix");
    };
    const uint32_t slabRows = std::max<uint32_t>(1, static_cast<uint32_t>((16ull << 20) / dstRow));
    std::vector<std::byte> padded;
    for (uint32_t first = 0; first < m.rows; first += perChunk) {
        DeviceMatrix::Chunk c;
        c.firstRow = first;
        c.rowCount = std::min(perChunk, m.rows - first);
        c.buffer = vk::Buffer(ctx, uint64_t(c.rowCount) * dstRow, vk::MemoryUse::Device);
        for (uint32_t r0 = 0; r0 < c.rowCount;) {
            auto [src, following] = rowAt(first + r0);
            const uint32_t run = std::min(following, c.rowCount - r0);
            if (srcRow == dstRow) {
                c.buffer.upload(src, uint64_t(run) * srcRow, uint64_t(r0) * dstRow);
                r0 += run;
                continue;
            }
            // Repack into padded rows, a bounded slab at a time.
            const uint32_t n = std::min(slabRows, run);
            padded.assign(uint64_t(n) * dstRow, std::byte{0});
            for (uint32_t r = 0; r < n; ++r) std::memcpy(padded.data() + uint64_t(r) * dstRow, src + uint64_t(r) * srcRow, srcRow);
            c.buffer.upload(padded.data(), padded.size(), uint64_t(r0) * dstRow);
            r0 += n;
        }
        m.chunks.push_back(std::move(c));
    }
    return m;
}
} // namespace

DeviceMatrix DeviceMatrix::fromHost(vk::Context& ctx, DType dtype, uint32_t rows, uint32_t cols, const void* data) {
    if (rows == 0) throw Error("internal: empty weight matrix");
    return uploadRows(ctx, dtype, cols, {{static_cast<const std::byte*>(data), rows}});
}

DeviceMatrix DeviceMatrix::uploadStacked(vk::Context& ctx, const std::vector<const TensorView*>& parts) {
    std::vector<RowSource> sources;
    for (const TensorView* t : parts) {
        if (t->shape.size() != 2 || t->dtype != parts[0]->dtype || t->shape[1] != parts[0]->shape[1])
            throw Error("internal: stacked tensors need one dtype and one column count (" + t->name + ")");
        sources.push_back({t->data, static_cast<uint32_t>(t->shape[0])});
    }
    DeviceMatrix m = uploadRows(ctx, parts[0]->dtype, static_cast<uint32_t>(parts[0]->shape[1]), sources);
    for (const TensorView* t : parts)
        if (t->file) t->file->releasePages(t->data, t->nbytes);
    return m;
}

DeviceMatrix DeviceMatrix::upload(vk::Context& ctx, const TensorView& t) {
    if (t.shape.size() != 2)
        throw Error((t.file ? t.file->path().string() + ": " : std::string()) + "tensor " + t.name +
                    " should be 2-D but has shape " + t.shapeString());
    DeviceMatrix m = fromHost(ctx, t.dtype, static_cast<uint32_t>(t.shape[0]), static_cast<uint32_t>(t.shape[1]), t.data);
    if (t.file) {
        t.file->releasePages(t.data, t.nbytes);
        m.mappedSource = t.data;
        m.mappedFile = t.file;
    }
    return m;
}

DeviceMatrix DeviceMatrix::mapped(vk::Context& ctx, const TensorView& t) {
    if (t.shape.size() != 2 || !t.file)
        throw Error("internal: only a 2-D tensor of a mapped file can stay paged out (" + t.name + ")");
    dtypeSuffix(t.dtype); // rejects unsupported dtypes
    DeviceMatrix m;
    m.dtype = t.dtype;
    m.rows = static_cast<uint32_t>(t.shape[0]);
    m.cols = static_cast<uint32_t>(t.shape[1]);
    m.colsPadded = roundUp(std::max(m.cols, 1u), 8);
    if (m.rows == 0) throw Error("internal: empty weight matrix");
    // The same chunks as fromHost(), so uploadFromMapping() fills them.
    const uint32_t perChunk = rowsPerChunk(ctx, uint64_t(m.colsPadded) * dtypeSize(m.dtype));
    for (uint32_t first = 0; first < m.rows; first += perChunk)
        m.chunks.push_back({vk::Buffer(), first, std::min(perChunk, m.rows - first)});
    m.mappedSource = t.data;
    m.mappedFile = t.file;
    return m;
}

uint64_t DeviceMatrix::uploadFromMapping(vk::Context& ctx) {
    if (!mappedSource) throw Error("internal: a weight matrix without a mapped source cannot be uploaded again");
    DeviceMatrix again = fromHost(ctx, dtype, rows, cols, mappedSource);
    chunks = std::move(again.chunks);
    // The pages were only needed for the copy: do not keep them in host memory.
    const uint64_t sourceBytes = uint64_t(rows) * cols * dtypeSize(dtype);
    if (mappedFile) mappedFile->releasePages(mappedSource, sourceBytes);
    return bytes();
}

vk::Buffer uploadFloats(vk::Context& ctx, const std::vector<float>& values) {
    vk::Buffer b(ctx, values.size() * sizeof(float), vk::MemoryUse::Device);
    b.upload(values.data(), values.size() * sizeof(float));
    return b;
}

vk::Buffer uploadAsFloat32(vk::Context& ctx, const TensorView& t) {
    // Padded with zeros to whole 16-byte texels, so that norm weights can be
    // read as 4-float texels like the activations they scale.
    std::vector<float> values = toFloat32(t);
    values.resize(roundUp(uint32_t(values.size()), 4), 0.0f);
    vk::Buffer b = uploadFloats(ctx, values);
    if (t.file) t.file->releasePages(t.data, t.nbytes);
    return b;
}

namespace ops {

MatmulKernel chooseKernel(uint32_t nTokens, MatmulKernel requested) {
    if (requested != MatmulKernel::Auto) return requested;
    static const MatmulKernel forced = [] {
        const char* e = std::getenv("MOE_MATMUL");
        if (e && std::string(e) == "vector") return MatmulKernel::Vector;
        if (e && std::string(e) == "tiled") return MatmulKernel::Tiled;
        return MatmulKernel::Auto;
    }();
    if (forced != MatmulKernel::Auto) return forced;
    // The matvec reads each weight once per token; tiling pays off beyond a few tokens.
    return nTokens <= 4 ? MatmulKernel::Vector : MatmulKernel::Tiled;
}

bool foldsInputNorm(uint32_t nTokens) {
    static const bool enabled = [] {
        const char* e = std::getenv("MOE_FOLD_NORM");
        return !(e && std::string(e) == "0");
    }();
    return enabled && chooseKernel(nTokens) == MatmulKernel::Vector;
}

namespace {
// Workgroups of matmul.comp over a chunk's rows: 64 invocations of 4 * quads rows each.
uint32_t tiledRowGroups(uint32_t rows, uint32_t quads) { return ((rows + 4 * quads - 1) / (4 * quads) + 63) / 64; }

// The norm weights a matvec binds: the folded norm's, or a placeholder.
const vk::Buffer& normWeights(vk::Context& ctx, const ops::InputNorm* norm, uint32_t cols, bool vector) {
    if (!norm) return ctx.placeholderBuffer();
    if (!vector) throw Error("internal: only the matvec folds an input norm");
    if (norm->weight->size() < uint64_t(cols) * sizeof(float))
        throw Error("internal: input-norm weights shorter than the projection's columns");
    return *norm->weight;
}
} // namespace

void matmul(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& w, const Act& x, const Act& out,
            uint32_t nTokens, const vk::Buffer* bias, bool accumulate, MatmulKernel kernel, const ExpertSlot* expert,
            const InputNorm* norm) {
    if (nTokens == 0) return;
    kernel = chooseKernel(nTokens, kernel);
    const bool vector = kernel == MatmulKernel::Vector;
    const vk::Buffer& normBuf = normWeights(ctx, norm, w.cols, vector);
    // The matvec reads the norm weights (binding 5) the way it reads x.
    const WeightShader shader =
        weightShader(ctx, vector ? "matvec_" : "matmul_", w.dtype, 1u, vector ? 1u << 1 | 1u << 5 : 1u << 1, &x, &normBuf);
    const uint32_t tokens = matmulTokens(ctx), quads = matmulQuads(ctx);
    const vk::Pipeline& pipe = vector ? ctx.pipeline(shader.name, 6, sizeof(MatmulPush), matvecSpecs(ctx, norm), shader.texels)
                                      : ctx.pipeline(shader.name, 5, sizeof(MatmulPush), {tokens, quads}, shader.texels);
    const vk::Buffer& biasBuf = bias ? *bias : ctx.placeholderBuffer();
    const vk::Buffer& routeBuf = expert ? *expert->route : ctx.placeholderBuffer();
    for (const auto& c : w.chunks) {
        MatmulPush p{c.rowCount, w.cols, w.colsPadded, nTokens, x.offset, x.stride, out.offset, out.stride,
                     c.firstRow, (bias ? kFlagBias : 0u) | (accumulate ? kFlagAccumulate : 0u)};
        setRoute(p, expert);
        p.eps = norm ? norm->eps : 0.0f;
        if (vector)
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, biasBuf, routeBuf, normBuf}, &p, sizeof p,
                             matvecGroups(ctx, c.rowCount), nTokens);
        else
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, biasBuf, routeBuf}, &p, sizeof p,
                             tiledRowGroups(c.rowCount, quads), (nTokens + tokens - 1) / tokens);
    }
}

void matmulGated(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& gate, const DeviceMatrix& up,
                 const Act& x, const Act& out, uint32_t nTokens, const ExpertSlot* expert, const InputNorm* norm) {
    if (gate.rows != up.rows || gate.cols != up.cols || gate.dtype != up.dtype || gate.chunks.size() != up.chunks.size())
        throw Error("internal: gate and up projections differ in shape or dtype");
    if (nTokens == 0) return;
    const bool vector = chooseKernel(nTokens) == MatmulKernel::Vector;
    const vk::Buffer& normBuf = normWeights(ctx, norm, gate.cols, vector);
    // The gated matvec reads the norm weights (binding 6) the way it reads x.
    const WeightShader shader = weightShader(ctx, vector ? "matvec_gated_" : "matmul_gated_", gate.dtype, 1u | 1u << 4,
                                             vector ? 1u << 1 | 1u << 6 : 1u << 1, &x, &normBuf);
    const uint32_t tokens = matmulGatedTokens(), quads = matmulGatedQuads();
    const vk::Pipeline& pipe = vector ? ctx.pipeline(shader.name, 7, sizeof(MatmulPush), matvecSpecs(ctx, norm), shader.texels)
                                      : ctx.pipeline(shader.name, 6, sizeof(MatmulPush), {tokens, quads}, shader.texels);
    const vk::Buffer& routeBuf = expert ? *expert->route : ctx.placeholderBuffer();
    for (size_t i = 0; i < gate.chunks.size(); ++i) {
        const auto& c = gate.chunks[i];
        MatmulPush p{c.rowCount, gate.cols, gate.colsPadded, nTokens, x.offset, x.stride, out.offset, out.stride,
                     c.firstRow, 0u};
        setRoute(p, expert);
        p.eps = norm ? norm->eps : 0.0f;
        if (vector)
            rec.dispatchFlat(pipe,
                             {c.binding(), *x.buffer, *out.buffer, ctx.placeholderBuffer(), up.chunks[i].binding(), routeBuf, normBuf},
                             &p, sizeof p, matvecGroups(ctx, c.rowCount), nTokens);
        else
            rec.dispatchFlat(pipe, {c.binding(), *x.buffer, *out.buffer, ctx.placeholderBuffer(), up.chunks[i].binding(), routeBuf},
                             &p, sizeof p, tiledRowGroups(c.rowCount, quads), (nTokens + tokens - 1) / tokens);
    }
}

void stackedExperts(vk::Context& ctx, vk::Recorder& rec, const std::vector<StackedExperts>& stacks,
                    const ExpertSlot& route, uint32_t topK, const Act& x, const Act& h, const Act& residual,
                    uint32_t nTokens, const InputNorm* norm) {
    if (nTokens == 0 || stacks.empty()) return;
    for (const StackedExperts& e : stacks)
        if (e.experts == 0 || e.gate->rows % e.experts || e.down->rows % e.experts || e.gate->rows != e.up->rows ||
            e.gate->chunks.size() != e.up->chunks.size() || e.gate->dtype != e.up->dtype ||
            e.gate->rows / e.experts != stacks[0].gate->rows / stacks[0].experts)
            throw Error("internal: stacked experts of unequal shapes");
    const uint32_t inter = stacks[0].gate->rows / stacks[0].experts, hidden = stacks[0].down->rows / stacks[0].experts;
    const vk::Buffer& normBuf = normWeights(ctx, norm, stacks[0].gate->cols, true);
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
    for (const StackedExperts& e : stacks) {
        const DeviceMatrix &gate = *e.gate, &up = *e.up;
        const WeightShader shader =
            weightShader(ctx, "matvec_experts_gated_", gate.dtype, 1u | 1u << 4, 1u << 1 | 1u << 6, &x, &normBuf);
        const vk::Pipeline& pipe =
            ctx.pipeline(shader.name, 7, sizeof(MatmulPush), matvecSpecs(ctx, norm), shader.texels);
        for (size_t i = 0; i < gate.chunks.size(); ++i) {
            const auto& c = gate.chunks[i];
            p.rows = inter, p.K = gate.cols, p.Kp = gate.colsPadded;
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
        const WeightShader shader = weightShader(ctx, "matvec_experts_", down.dtype, 1u, 1u << 1 | 1u << 5, &h);
        const vk::Pipeline& pipe = ctx.pipeline(shader.name, 6, sizeof(MatmulPush), matvecSpecs(ctx, false), shader.texels);
        for (const auto& c : down.chunks) {
            // After the gated passes, and after the previous chunk: every chunk adds into the same residual rows.
            rec.barrier();
            p.rows = hidden, p.K = down.cols, p.Kp = down.colsPadded;
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
    return (uint64_t(p.maxContext) * p.experts + p.experts + uint64_t(p.maxBatch) * p.experts) * 4;
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
    } p{rp.experts, rp.topK, rp.mode, rp.maxBatch, rp.decay,
        rp.maxContext * rp.experts + rp.experts, rp.maxContext * rp.experts, rp.renormalise};
    const auto& pipe = ctx.pipeline("moe_route", 5, sizeof p);
    rec.dispatch(pipe, {step, logits, route, state, usage}, &p, sizeof p, 1);
}

void rmsnorm(vk::Context& ctx, vk::Recorder& rec, const Act& x, const vk::Buffer& weight, const Act& out,
             uint32_t rows, uint32_t dim, float eps, uint32_t rowsPerToken) {
    struct Push {
        uint32_t rows, dim, xOffset, xStride, outOffset, outStride;
        float eps;
        uint32_t rowsPerToken;
    } p{rows, dim, x.offset, x.stride, out.offset, out.stride, eps, std::max(rowsPerToken, 1u)};
    const auto& pipe = ctx.pipeline("rmsnorm", 3, sizeof p, {ctx.subgroupSize()});
    rec.dispatchFlat(pipe, {*x.buffer, weight, *out.buffer}, &p, sizeof p, rows);
}

void embed(vk::Context& ctx, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& step,
           const vk::Buffer& out, uint32_t nTokens) {
    struct Push {
        uint32_t dim, Kp, nTokens, vocab, firstRow, rowCount;
    };
    const WeightShader shader = weightShader(ctx, "embed_", table.dtype, 1u, 0u);
    const auto& pipe = ctx.pipeline(shader.name, 3, sizeof(Push), {}, shader.texels);
    for (const auto& c : table.chunks) {
        Push p{table.cols, table.colsPadded, nTokens, table.rows, c.firstRow, c.rowCount};
        rec.dispatchFlat(pipe, {c.binding(), step, out}, &p, sizeof p, (uint64_t(nTokens) * table.cols + 63) / 64);
    }
}

bool qkvRopeFits(vk::Context& ctx, const DeviceMatrix& qkv, uint32_t nTokens) {
    return chooseKernel(nTokens) == MatmulKernel::Vector && qkv.chunks.size() == 1 && matvecRows(ctx) % 2 == 0;
}

void qkvRope(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const DeviceMatrix& w, const Act& x,
             const vk::Buffer* bias, const InputNorm* norm, const vk::Buffer& step, const vk::Buffer& qOut,
             const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& table, uint32_t tableMaxPos,
             uint32_t nTokens) {
    if (nTokens == 0) return;
    const uint32_t qDim = s.nHeads * s.headDim, kvDim = s.nKvHeads * s.headDim;
    if (!qkvRopeFits(ctx, w, nTokens) || w.rows != qDim + 2 * kvDim || s.headDim % 2)
        throw Error("internal: qkvRope on a projection it does not fit");
    const vk::Buffer& normBuf = normWeights(ctx, norm, w.cols, true);
    const WeightShader shader = weightShader(ctx, "matvec_qkv_rope_", w.dtype, 1u, 1u << 1 | 1u << 5, &x, &normBuf);
    const vk::Pipeline& pipe = ctx.pipeline(shader.name, 10, sizeof(MatmulPush), matvecSpecs(ctx, norm), shader.texels);
    const auto& c = w.chunks[0];
    MatmulPush p{c.rowCount, w.cols, w.colsPadded, nTokens, x.offset, x.stride, 0, qDim, 0, bias ? kFlagBias : 0u};
    p.eps = norm ? norm->eps : 0.0f;
    p.qDim = qDim, p.kvDim = kvDim, p.headDim = s.headDim, p.sinOffset = tableMaxPos * (s.headDim / 2);
    rec.dispatchFlat(pipe,
                     {c.binding(), *x.buffer, qOut, bias ? *bias : ctx.placeholderBuffer(), ctx.placeholderBuffer(),
                      normBuf, kCache, vCache, table, step},
                     &p, sizeof p, matvecGroups(ctx, c.rowCount), nTokens);
}

void ropeStore(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step, const Act& q,
               const Act& k, const Act& v, const vk::Buffer& qOut, const vk::Buffer& kCache, const vk::Buffer& vCache,
               const vk::Buffer& table, uint32_t tableMaxPos, uint32_t nTokens) {
    const uint32_t half = s.headDim / 2;
    struct Push {
        uint32_t nTokens, nHeads, nKvHeads, headDim;
        uint32_t qOffset, qStride, kOffset, kStride, vOffset, vStride, qOutStride, kvStride;
        uint32_t cosOffset, sinOffset;
    } p{nTokens, s.nHeads, s.nKvHeads, s.headDim, q.offset, q.stride, k.offset, k.stride, v.offset, v.stride,
        s.nHeads * s.headDim, s.nKvHeads * s.headDim, 0, tableMaxPos * half};
    const auto& pipe = ctx.pipeline("rope", 8, sizeof p);
    rec.dispatchFlat(pipe, {step, *q.buffer, *k.buffer, *v.buffer, qOut, kCache, vCache, table}, &p, sizeof p,
                     (uint64_t(nTokens) * (s.nHeads + s.nKvHeads) * half + 63) / 64);
}

void attention(vk::Context& ctx, vk::Recorder& rec, const AttentionShape& s, const vk::Buffer& step,
               const vk::Buffer& q, const vk::Buffer& kCache, const vk::Buffer& vCache, const vk::Buffer& out,
               uint32_t nTokens) {
    struct Push {
        uint32_t nTokens, nHeads, nKvHeads, headDim, qStride, kvStride, outStride, window;
        float scale;
    } p{nTokens, s.nHeads, s.nKvHeads, s.headDim, s.nHeads * s.headDim, s.nKvHeads * s.headDim,
        s.nHeads * s.headDim, s.window, s.scale};
    const uint32_t S = ctx.subgroupSize();
    const uint32_t dimsPerLane = (s.headDim + S - 1) / S;
    // Texel reads of q, K and V (bindings 1-3); four floats per fetch when
    // every row starts 16-byte aligned.
    const bool aligned = s.headDim % 4 == 0 && q.size() % 16 == 0 && kCache.size() % 16 == 0 && vCache.size() % 16 == 0;
    const std::string name = !ctx.texelReads() ? "attention" : aligned ? "attention_texel4" : "attention_texel";
    const vk::TexelBindings texels = !ctx.texelReads() ? vk::TexelBindings{}
                                     : aligned          ? vk::TexelBindings{0u, 0u, 0xeu}
                                                        : vk::TexelBindings{0u, 0xeu, 0u};
    // Prefill: each subgroup attends for several consecutive queries, so a key
    // and value are loaded once for all of them.
    const uint32_t queries = nTokens > 1 ? attentionQueries() : 1u;
    const auto& pipe = ctx.pipeline(name, 5, sizeof p, {S, std::max(dimsPerLane, 1u), queries}, texels);
    rec.dispatch(pipe, {step, q, kCache, vCache, out}, &p, sizeof p, s.nHeads, (nTokens + queries - 1) / queries, 1);
}

void siluMul(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& g, const vk::Buffer& u, const vk::Buffer& h,
             uint32_t n) {
    struct Push {
        uint32_t n;
    } p{n};
    const auto& pipe = ctx.pipeline("silu_mul", 3, sizeof p);
    rec.dispatchFlat(pipe, {g, u, h}, &p, sizeof p, (n + 63) / 64);
}

void sigmoidScaleRows(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& s, const vk::Buffer& h, uint32_t nTokens,
                      uint32_t width) {
    struct Push {
        uint32_t n, width;
    } p{nTokens, width};
    const auto& pipe = ctx.pipeline("sigmoid_scale_rows", 2, sizeof p);
    rec.dispatchFlat(pipe, {s, h}, &p, sizeof p, (nTokens * width + 63) / 64);
}

void copy(vk::Context& ctx, vk::Recorder& rec, const vk::Buffer& src, const vk::Buffer& dst, uint64_t bytes,
          bool texelSource) {
    struct Push {
        uint32_t n;
    } p{static_cast<uint32_t>(bytes / 16)};
    const auto& pipe = texelSource ? ctx.pipeline("copy_vec4_texel", 2, sizeof p, {}, vk::TexelBindings{1u, 0u})
                                   : ctx.pipeline("copy_vec4", 2, sizeof p);
    rec.dispatchFlat(pipe, {vk::BufferView(src, 0, bytes / 16 * 16), dst}, &p, sizeof p, (p.n + 255) / 256);
}

} // namespace ops
} // namespace moe
