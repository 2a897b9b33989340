#include "moe/moe_export_refusal.h"

namespace moe {

std::string moeExportRefusal(const ModelConfig& c) {
    const std::string base = "the base is " + c.archName() + " (" + c.architecture + "), ";
    const std::string runsHere = "; none is written. The build runs in MoE Studio itself (moe-cli chat, serve, bench)";
    if (c.arch == Arch::Phi3)
        return base + "and its standard MoE format, PhimoeForCausalLM (Phi-3.5-MoE; llama.cpp's phimoe), has another "
                      "layout: LayerNorm with biases instead of RMSNorm, biases on q/k/v/o and the LM head, and "
                      "sparsemixer routing instead of a softmax over the top-k, so a Phi-3 MoE written in it would be "
                      "another model (and Mixtral has neither partial rotary nor LongRoPE)" + runsHere;
    if (c.arch == Arch::Phi2)
        return base + "and no standard sparse-MoE format has its layers: Phixtral's checkpoints need their own "
                      "modeling code (trust_remote_code) and llama.cpp has no Phi-2 MoE architecture, while "
                      "Mixtral, Qwen2-MoE and PhiMoE have neither LayerNorm with biases on a parallel attention and "
                      "MLP, nor an ungated fc1 -> gelu -> fc2 MLP with biases, so any file written would be another "
                      "model" + runsHere;
    return {};
}

} // namespace moe
