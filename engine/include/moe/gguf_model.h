#pragma once
// A GGUF file as a model: its metadata as a ModelConfig and its tensors under
// the Hugging Face names the loaders already read, so that a GGUF base,
// expert or chat model takes the same path as a safetensors folder. The
// tensors stay views into the file's mapping, quantized types included.
#include "moe/gguf.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"

#include <filesystem>
#include <memory>

namespace moe {

// Whether `path` names a GGUF file (called *.gguf, or a regular file that
// starts with the GGUF magic, as Ollama's blobs do) rather than a model folder.
bool isGgufPath(const std::filesystem::path& path);

// The architecture, sizes, RoPE and token ids of a GGUF model. Throws
// moe::Error naming the file and the metadata key (or tensor) on anything
// missing, malformed or unsupported.
ModelConfig ggufModelConfig(const GgufFile& file);

// The file's tensors under Hugging Face names (model.layers.N.self_attn.q_proj.weight,
// ...; stacked experts as one view per expert). Every tensor of the file must
// be one the engine uses; an unknown one is an error naming it.
std::unique_ptr<WeightStore> ggufWeightStore(std::shared_ptr<const GgufFile> file, const ModelConfig& config);

// The GGUF name within a block (attn_q.weight) of a Hugging Face tensor name
// within a layer (self_attn.q_proj.weight), or empty when GGUF has none.
std::string ggufLayerTensorName(const std::string& hfName);

// A model folder's safetensors or a GGUF file's tensors, by the path's kind.
// Phi-3's fused tensors come split and Phi-2's renamed (useEngineTensorNames).
std::shared_ptr<const WeightStore> openModelWeights(const std::filesystem::path& path);

// Phi-3 keeps q/k/v in one self_attn.qkv_proj (rows q, k, v) and gate/up in
// one mlp.gate_up_proj (rows gate, up): replaced by views named q_proj,
// k_proj, v_proj, gate_proj and up_proj, so that everything downstream
// (the layer loader, experts, builds) sees the usual tensors. Phi-2's
// self_attn.dense, mlp.fc1, mlp.fc2 and model.final_layernorm (weights and
// biases) become o_proj, up_proj, down_proj and model.norm likewise.
void useEngineTensorNames(WeightStore& store, const ModelConfig& config);
// A PEFT adapter of such a model: lora_B of gate_up_proj split into the
// gate and up halves of its rows, lora_A shared by both (B·A of the fused
// projection is exactly those two blocks); Phi-2's fc1 / fc2 / dense
// factors renamed as above.
void useEngineLoraNames(WeightStore& adapter);

// llama.cpp's converter stores the q and k rows of `llama` models with each
// head's two rotation halves interleaved (GGUF row h*d + 2i + s holds Hugging
// Face row h*d + s*d/2 + i). The order that undoes it: entry r is the GGUF row
// that Hugging Face row r comes from.
std::vector<uint32_t> ggufUninterleavedRows(int heads, int headDim);

} // namespace moe
