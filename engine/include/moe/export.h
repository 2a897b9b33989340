#pragma once
// Export of a built MoE (selector + trained gates) as a native sparse-MoE
// checkpoint other tools load: Transformers / vLLM / llama.cpp read a
// Mixtral, Qwen2-MoE or Qwen3-MoE folder (config.json, sharded safetensors +
// index, tokenizer, generation_config.json, a README.md model card). Mixtral
// has experts in every layer (layers not chosen repeat the base MLP);
// Qwen2-MoE keeps them dense (mlp_only_layers), takes Qwen2 bases (q/k/v
// biases; zero biases for others) and gets a zero shared expert of width 1
// (adds 0); Qwen3-MoE takes Qwen3 bases only (per-head q/k norms) and keeps
// the layers not chosen dense too. Experts are written dense
// (LoRA merged: W + alpha/r·B·A); include_base makes the base MLP expert 0.
// The folder is written under a temporary name and renamed at the end.
#include "moe/byte_size.h"
#include "moe/selector.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace moe {

enum class ExportFormat { Mixtral, Qwen2Moe, Qwen3Moe };
const char* toString(ExportFormat);                          // "mixtral", "qwen2_moe", "qwen3_moe"
bool parseExportFormat(const std::string& s, ExportFormat& out);
// The format a MoE on this base exports to when none is asked for: qwen3_moe
// for a Qwen3 base (no other format has its q/k norms), else mixtral.
ExportFormat defaultExportFormat(const Selector& s);


struct ExportOptions {
    std::filesystem::path out;               // must not exist or be empty
    ExportFormat format = ExportFormat::Mixtral;
    std::string dtype;                       // bf16 | f16 | f32; empty = the selector's export_dtype, else the base's
    uint64_t shardBytes = 5'000'000'000ull;  // largest shard (a bigger single tensor gets its own shard)
};

struct ExportProgress {
    std::string stage; // "tensors", "files"
    size_t done = 0, total = 0;
};

struct ExportReport {
    std::filesystem::path out;
    std::vector<std::string> files;    // written, relative to `out`
    std::vector<std::string> warnings; // not fatal: routing that changes, layers padded with base experts
    size_t tensors = 0;
    uint64_t bytes = 0, parameters = 0;
    int experts = 0, expertsPerToken = 0;
    bool cancelled = false;            // nothing was left behind
};

// Throws moe::Error (naming the file / field at fault) when the MoE cannot be
// exported faithfully: gates with a bias (set gate_bias = false and rebuild),
// no gates built yet, a base the format cannot express.
ExportReport exportMoe(const Selector& s, const ExportOptions& options,
                       const std::function<void(const ExportProgress&)>& onProgress = {},
                       const std::atomic<bool>* cancel = nullptr);

} // namespace moe
