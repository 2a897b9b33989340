#pragma once
// Tile sizes and kernel choices of the ops, per device type; each can be
// overridden by an environment variable for tuning experiments (op_tuning.cpp).
#include "moe/ops.h"
#include "moe/vk.h"

#include <cstdint>
#include <vector>

namespace moe::tuning {

// Rows per subgroup, tokens and 4-row groups per invocation, queries per
// attention subgroup, and the subgroups sharing a matvec's rows.
uint32_t matvecRows(const vk::Context& ctx, uint32_t tokens = 1);
// Tokens per matvec workgroup for a step of nTokens (batched decode).
uint32_t matvecTokens(uint32_t nTokens, bool quantized);
uint32_t matmulTokens(const vk::Context& ctx);
// Tokens of a tiled-kernel tile for a step of nTokens: at most the step's.
uint32_t tiledTokens(uint32_t tileTokens, uint32_t nTokens);
// The kernel sessions that batch their decode steps record them with.
ops::MatmulKernel batchDecodeKernel(const vk::Context& ctx, bool quantizedWeights);
uint32_t matmulQuads(const vk::Context& ctx);
uint32_t matmulGatedTokens();
uint32_t matmulGatedQuads();
// Invocations per workgroup of the tiled kernels.
uint32_t matmulGroupSize(const vk::Context& ctx);
uint32_t attentionQueries();
uint32_t matvecSplitK(const vk::Context& ctx);
std::vector<uint32_t> matvecSpecs(vk::Context& ctx, bool normInput, uint32_t tokens = 1);
uint32_t matvecGroups(vk::Context& ctx, uint32_t rows, uint32_t tokens = 1);
uint32_t rowShaderGroupSize(vk::Context& ctx);
// A positive count from the environment, else `fallback`.
uint32_t envCount(const char* name, uint32_t fallback);

} // namespace moe::tuning
