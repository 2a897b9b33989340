#pragma once
// GGUF export: a built MoE (selector + trained gates) or any model the engine
// runs (a folder or a .gguf file) written as one GGUF file that llama.cpp,
// Ollama and LM Studio run, converted and quantized in one step (llama.cpp's
// convert_hf_to_gguf.py and llama-quantize do it in two).
//
// A built MoE becomes llama.cpp's Mixtral layout under the `llama`
// architecture: llama.expert_count / expert_used_count, blk.N.ffn_gate_inp
// and stacked ffn_{gate,up,down}_exps, softmax -> top-k -> renormalised, as
// the built MoE routes. llama.cpp's MoE architectures need experts in every
// layer, so a layer that was not chosen holds the base MLP as every expert
// behind a zero gate (the report says what that costs). Qwen2 bases go the
// same way with their q/k/v biases: llama.cpp's qwen2moe never renormalises
// the top-k weights, so it could not run the built MoE faithfully. Qwen3
// bases (q/k norms, which `llama` has not) become `qwen3moe`, which routes
// as `llama` does; Q/K are permuted for `llama` only.
//
// Tensors are made, quantized and written a chunk of rows at a time (each
// chunk's mapped source pages dropped once written) under a temporary
// name, renamed at the end; a cancelled export leaves nothing. An Ollama
// Modelfile is written beside the file.
#include "moe/selector.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace moe {

// The file types `--dtype` offers (llama.cpp's ftype names).
enum class GgufFileType { F32, F16, BF16, Q8_0, Q4_K_M, Q5_K_M, Q6_K };
const char* toString(GgufFileType t);          // "f32", ..., "q4_k_m"
bool parseGgufFileType(const std::string& s, GgufFileType& out);
const char* ggufFileTypeNames();               // "f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k"

struct GgufExportOptions {
    std::filesystem::path out;                 // FILE.gguf; must not exist
    GgufFileType type = GgufFileType::F16;
    std::string name;                          // general.name; default: the file's stem
    bool modelfile = true;                     // an Ollama Modelfile beside the file
    bool dryRun = false;                       // plan only: the report's sizes, nothing written
};

struct GgufExportProgress {
    size_t done = 0, total = 0;                // tensors
    std::string tensor;
};

struct GgufExportReport {
    std::filesystem::path out, modelfile;
    std::string architecture;                  // general.architecture
    size_t tensors = 0;
    uint64_t bytes = 0;                        // the file's size
    uint64_t parameters = 0;
    int experts = 0, expertsPerToken = 0;
    std::map<std::string, size_t> tensorTypes; // ggml type name -> tensors
    std::vector<std::string> warnings;         // not fatal: routing that changes, layers padded with the base MLP
    bool cancelled = false;                    // nothing was left behind
};

// Throws moe::Error (naming the file / field at fault) when the model cannot
// be written faithfully: gates with a bias, no gates built yet, an
// architecture or RoPE scaling GGUF cannot express.
GgufExportReport exportMoeGguf(const Selector& s, const GgufExportOptions& options,
                               const std::function<void(const GgufExportProgress&)>& onProgress = {},
                               const std::atomic<bool>* cancel = nullptr);
GgufExportReport exportModelGguf(const std::filesystem::path& model, const GgufExportOptions& options,
                                 const std::function<void(const GgufExportProgress&)>& onProgress = {},
                                 const std::atomic<bool>* cancel = nullptr);

} // namespace moe
