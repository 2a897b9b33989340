#pragma once
// Bases whose MoE no export format can hold: the reason, shared by the
// folder export (moe/export.h) and the GGUF export (moe/gguf_export.h).
#include "moe/model_config.h"

#include <string>

namespace moe {

// Why an MoE built on `base` is not written in any standard format (it runs
// in MoE Studio itself), or empty when one fits. Phi-3 and Phi-2.
std::string moeExportRefusal(const ModelConfig& base);

} // namespace moe
