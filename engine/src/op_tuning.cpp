// Tile sizes and kernel choices of the ops, per device type, and the
// environment variables that override them for tuning experiments.
#include "op_tuning.h"

#include "moe/ops.h"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace moe {
namespace tuning {

uint32_t rowShaderGroupSize(vk::Context& ctx) { return ctx.subgroupSize() * ctx.subgroupsPerWorkgroup(); }

// A positive count from the environment (tuning experiments), else `fallback`.
uint32_t envCount(const char* name, uint32_t fallback) {
    const char* e = std::getenv(name);
    return e && std::atoi(e) > 0 ? uint32_t(std::atoi(e)) : fallback;
}

// Rows per subgroup in the matvec: reusing each x block for several rows
// saves loads on CPU drivers, where every per-lane load is a gather
// (measurements: docs/PERFORMANCE.md). MOE_MATVEC_ROWS overrides it.
// With several tokens per workgroup the accumulators (rows x tokens) must
// still fit in registers, so the rows shrink (an even count: the fused
// QKV + RoPE pass rotates row pairs); MOE_MATVEC_TOKEN_ROWS overrides it.
uint32_t matvecRows(const vk::Context& ctx, uint32_t tokens) {
    const uint32_t rows = envCount("MOE_MATVEC_ROWS", ctx.info().type == "cpu" ? 16u : 2u);
    if (tokens <= 1) return rows;
    return envCount("MOE_MATVEC_TOKEN_ROWS", std::max(2u, rows / tokens / 2 * 2));
}

// Batched decode steps share each weight load across up to 4 tokens
// (MOE_MATVEC_TOKENS). Quantized rows are dequantized per token anyway, so
// they keep one token per workgroup.
uint32_t matvecTokens(uint32_t nTokens, bool quantized) {
    static const uint32_t most = envCount("MOE_MATVEC_TOKENS", 4u);
    return quantized ? 1u : std::max(1u, std::min(nTokens, most));
}

// Tokens and groups of 4 rows per matmul invocation: each loaded weight is
// reused for every token and each x value for every row, but the
// accumulators (tokens x rows) must stay in registers, so the best tile
// depends on the device type (measurements: docs/PERFORMANCE.md).
// MOE_MATMUL_TOKENS / MOE_MATMUL_QUADS override them.
uint32_t matmulTokens(const vk::Context& ctx) { return envCount("MOE_MATMUL_TOKENS", ctx.info().type == "cpu" ? 4u : 16u); }
// A tile never holds more tokens than the step has: each token's sums are
// formed the same way whatever the tile, so a step of one token (a decode
// under the tiled kernel) does not compute three more for nothing.
uint32_t tiledTokens(uint32_t tileTokens, uint32_t nTokens) { return std::max(1u, std::min(tileTokens, nTokens)); }

// The kernel of batched decode steps, and of one sequence's decode steps
// beside them: for 16/32-bit weights on CPU drivers the tiled kernel, which
// shares each weight load across the step's tokens best; for quantized
// weights (dequantized per token either way) and on GPUs, whose subgroups
// spread every row, the matvec (MOE_BATCH_DECODE_KERNEL=matvec|tiled
// overrides it).
ops::MatmulKernel batchDecodeKernel(const vk::Context& ctx, bool quantizedWeights) {
    const char* e = std::getenv("MOE_BATCH_DECODE_KERNEL");
    if (e && std::string(e) == "matvec") return ops::MatmulKernel::Vector;
    if (e && std::string(e) == "tiled") return ops::MatmulKernel::Tiled;
    return ctx.info().type == "cpu" && !quantizedWeights ? ops::MatmulKernel::Tiled : ops::MatmulKernel::Vector;
}
uint32_t matmulQuads(const vk::Context& ctx) { return envCount("MOE_MATMUL_QUADS", ctx.info().type == "cpu" ? 3u : 1u); }

// The same for the gated matmul, which holds two sets of accumulators
// (MOE_MATMUL_GATED_TOKENS / MOE_MATMUL_GATED_QUADS).
uint32_t matmulGatedTokens() { return envCount("MOE_MATMUL_GATED_TOKENS", 16u); }
uint32_t matmulGatedQuads() { return envCount("MOE_MATMUL_GATED_QUADS", 1u); }

// Invocations per workgroup of the tiled kernels. CPU drivers run a
// workgroup on one thread, and a decode step has a single tile of tokens, so
// a matrix of a few hundred rows needs small workgroups to reach every core
// (MOE_MATMUL_GROUP overrides it).
uint32_t matmulGroupSize(const vk::Context& ctx) { return envCount("MOE_MATMUL_GROUP", ctx.info().type == "cpu" ? 8u : 64u); }

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
std::vector<uint32_t> matvecSpecs(vk::Context& ctx, bool normInput, uint32_t tokens) {
    return {rowShaderGroupSize(ctx), matvecRows(ctx, tokens), matvecSplitK(ctx), ctx.subgroupsPerWorkgroup(), normInput ? 1u : 0u, tokens};
}

uint32_t matvecGroups(vk::Context& ctx, uint32_t rows, uint32_t tokens) {
    const uint32_t rowsPerGroup = ctx.subgroupsPerWorkgroup() / matvecSplitK(ctx) * matvecRows(ctx, tokens);
    return (rows + rowsPerGroup - 1) / rowsPerGroup;
}

} // namespace tuning

namespace ops {

namespace {
thread_local MatmulKernel scopedKernel = MatmulKernel::Auto;
} // namespace

KernelScope::KernelScope(MatmulKernel kernel) : saved_(scopedKernel) { scopedKernel = kernel; }
KernelScope::~KernelScope() { scopedKernel = saved_; }

MatmulKernel chooseKernel(uint32_t nTokens, MatmulKernel requested) {
    if (requested != MatmulKernel::Auto) return requested;
    static const MatmulKernel forced = [] {
        const char* e = std::getenv("MOE_MATMUL");
        if (e && std::string(e) == "vector") return MatmulKernel::Vector;
        if (e && std::string(e) == "tiled") return MatmulKernel::Tiled;
        return MatmulKernel::Auto;
    }();
    if (forced != MatmulKernel::Auto) return forced;
    if (scopedKernel != MatmulKernel::Auto) return scopedKernel;
    // The matvec reads each weight once per token; tiling pays off beyond a few tokens.
    return nTokens <= 4 ? MatmulKernel::Vector : MatmulKernel::Tiled;
}

bool foldsInputNorm() {
    static const bool enabled = [] {
        const char* e = std::getenv("MOE_FOLD_NORM");
        return !(e && std::string(e) == "0");
    }();
    return enabled;
}

} // namespace ops
} // namespace moe
