#pragma once
// Reasons a built MoE cannot be exported, shared by the safetensors and the
// GGUF export so that both say the same thing.
#include "moe/model_config.h"

namespace moe {

// A MoE on a Phi-3 base: no MoE format any engine reads has Phi-3's layout.
[[noreturn]] void refusePhi3MoeExport(const ModelConfig& base);

} // namespace moe
