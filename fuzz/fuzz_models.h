#pragma once
// Tiny model folders for the targets that read files naming other folders
// (selectors, mergekit configs, adapters): under workDir()/models, a Llama
// base (base/), two fine-tuned experts (expert-a/, expert-b/), a LoRA adapter
// (lora-a/) and a dataset (amoe.json). Written once per process.
#include "fuzz_common.h"
#include "moe/safetensors.h"

#include <cstdlib>
#include <string>
#include <vector>

namespace moe::fuzz {

// hidden 8, intermediate 16, 2 layers, 2 heads (head_dim 4), vocabulary 16.
inline constexpr const char* kTinyLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
  "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 16,
  "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
  "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false, "torch_dtype": "float32"
})";

inline constexpr const char* kTinyLoraConfig = R"({
  "peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none",
  "target_modules": ["gate_proj", "up_proj", "down_proj"], "base_model_name_or_path": "../base"
})";

inline void writeTinyWeights(const std::filesystem::path& file, bool lora) {
    struct Spec {
        std::string name;
        std::vector<int64_t> shape;
    };
    std::vector<Spec> specs;
    const int hidden = 8, inter = 16, vocab = 16, rank = 2;
    if (!lora) {
        specs.push_back({"model.embed_tokens.weight", {vocab, hidden}});
        specs.push_back({"model.norm.weight", {hidden}});
        specs.push_back({"lm_head.weight", {vocab, hidden}});
    }
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        if (lora) {
            const std::string b = "base_model.model." + p + "mlp.";
            specs.push_back({b + "gate_proj.lora_A.weight", {rank, hidden}});
            specs.push_back({b + "gate_proj.lora_B.weight", {inter, rank}});
            specs.push_back({b + "up_proj.lora_A.weight", {rank, hidden}});
            specs.push_back({b + "up_proj.lora_B.weight", {inter, rank}});
            specs.push_back({b + "down_proj.lora_A.weight", {rank, inter}});
            specs.push_back({b + "down_proj.lora_B.weight", {hidden, rank}});
            continue;
        }
        for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
            specs.push_back({p + "self_attn." + proj + ".weight", {hidden, hidden}});
        specs.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
        specs.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
        specs.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
        specs.push_back({p + "input_layernorm.weight", {hidden}});
        specs.push_back({p + "post_attention_layernorm.weight", {hidden}});
    }
    static const std::vector<float> zeros(size_t(vocab) * hidden * 2, 0.01f);
    std::vector<moe::TensorToWrite> tensors;
    for (const Spec& s : specs) {
        size_t n = 1;
        for (int64_t d : s.shape) n *= size_t(d);
        tensors.push_back({s.name, moe::DType::F32, s.shape,
                           {reinterpret_cast<const std::byte*>(zeros.data()), n * sizeof(float)}});
    }
    moe::writeSafetensors(file, tensors);
}

// The models folder (created on first call). HF_HUB_CACHE points into the
// work folder, so a Hugging Face id in an input never finds a real cache.
inline const std::filesystem::path& tinyModels() {
    static const std::filesystem::path dir = [] {
        const auto d = workDir() / "models";
        ::setenv("HF_HUB_CACHE", (workDir() / "hub").c_str(), 1);
        for (const char* m : {"base", "expert-a", "expert-b"}) {
            writeFile(d / m / "config.json", kTinyLlamaConfig);
            writeTinyWeights(d / m / "model.safetensors", false);
        }
        writeFile(d / "lora-a" / "adapter_config.json", kTinyLoraConfig);
        writeTinyWeights(d / "lora-a" / "adapter_model.safetensors", true);
        writeFile(d / "amoe.json", R"({"rows": [{"prompt": "def f(x):", "expert": 0},
            {"prompt": "The court held", "expert": 1}]})");
        return d;
    }();
    return dir;
}

} // namespace moe::fuzz
