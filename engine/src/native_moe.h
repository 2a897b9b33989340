#pragma once
// Native sparse-MoE checkpoints (Mixtral, Qwen2-MoE, Qwen3-MoE): a layer's
// experts and router as the engine's routed block.
#include "moe/model.h"

#include <memory>
#include <string>

namespace moe {

// A native sparse MoE block as a RoutedMlp (the one expert-dispatch path):
// expert 0's projections serve as the block's "base" and expert 0 refers to
// them, so no weights are held twice. Both tensor layouts of Transformers:
// - one tensor per expert and projection, as Transformers 4 wrote them and 5
//   still saves them: Mixtral block_sparse_moe.gate and
//   block_sparse_moe.experts.E.w1/w2/w3 (gate/down/up), Qwen mlp.gate and
//   mlp.experts.E.gate_proj/up_proj/down_proj;
// - fused, Transformers 5's in-memory layout (conversion_mapping.py stacks the
//   experts and concatenates gate and up along dim 1), which some checkpoints
//   store: mlp.gate, mlp.experts.gate_up_proj [E, 2I, H] with the gate rows
//   first, mlp.experts.down_proj [E, H, I].
// With `pagedOut`, experts 1..E-1 are only mapped (an expert budget uploads
// them when routing asks for them).
std::unique_ptr<MlpBlock> loadSparseMoe(vk::Context& ctx, const ModelConfig& c,
                                        const std::shared_ptr<const WeightStore>& store,
                                        const std::string& layerPrefix, uint64_t& parameters, bool pagedOut,
                                        QuantizeScheme quantize = QuantizeScheme::None, int layer = 0,
                                        const std::atomic<bool>* cancel = nullptr); // polled per expert

} // namespace moe
