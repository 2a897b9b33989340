#pragma once
// mergekit-moe YAML configs read as selectors, so a mergekit recipe can be
// built (and then trained further) by MoE Studio:
//   base_model         -> modelId / baseModel
//   gate_mode          -> gateMode (hidden, cheap_embed, random)
//   dtype              -> exportDtype (bfloat16, float16, float32)
//   experts_per_token  -> topK
//   experts[]          -> fine-tuned experts; positive/negative_prompts -> expertPrompts
//   architecture       -> exportArchitecture (informational)
// mergekit's router has no bias (gateBias = false) and routes every token
// (routing = token). shared_experts, noise_scale, residual_scale and other
// keys are refused with the key and its line.
#include "moe/selector.h"

#include <filesystem>

namespace moe {

// Throws moe::Error "<file>:<line>: <key>: ..." (syntax errors: <file>:<line>:<column>).
Selector loadMergekitConfig(const std::filesystem::path& yaml);

} // namespace moe
