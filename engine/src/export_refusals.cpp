#include "export_refusals.h"

#include "moe/error.h"

namespace moe {

void refusePhi3MoeExport(const ModelConfig& c) {
    throw Error((c.dir / "config.json").string() + ": the base is " + c.archName() + " (" + c.architecture +
                "), and its standard MoE format, PhimoeForCausalLM (Phi-3.5-MoE; llama.cpp's phimoe), has another "
                "layout: LayerNorm with biases instead of RMSNorm, biases on q/k/v/o and the LM head, and "
                "sparsemixer routing instead of a softmax over the top-k, so a Phi-3 MoE written in it would be "
                "another model (and Mixtral has neither partial rotary nor LongRoPE); none is written. The build "
                "runs in MoE Studio itself (moe-cli chat, serve, bench)");
}

} // namespace moe
