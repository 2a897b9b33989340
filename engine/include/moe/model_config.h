#pragma once
// A Hugging Face model folder's config.json, reduced to what the engine needs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moe {

enum class Arch { Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2Moe, Qwen3Moe, Gemma2, Gemma3, Phi3, Phi2 };

// The decoder's norms: RMSNorm (weight only), or LayerNorm with weight and
// bias (Phi-2: the mean subtracted, the variance's root divided out).
enum class NormKind { Rms, Layer };

// The MLP's gate activation: SwiGLU (silu) or GeGLU with the tanh GELU
// (Gemma's gelu_pytorch_tanh).
enum class Activation { Silu, GeluTanh };

struct ModelConfig {
    std::filesystem::path dir;    // the model folder, or the .gguf file
    // Read from a GGUF file's metadata (moe/gguf_model.h). The q and k rows
    // are then in llama.cpp's interleaved RoPE order when qkRowsInterleaved
    // (GGUF `llama`), which the loader undoes.
    bool fromGguf = false;
    bool qkRowsInterleaved = false;
    Arch arch = Arch::Llama;
    std::string architecture;     // as in config.json, e.g. "LlamaForCausalLM"
    std::string modelType;        // config.json model_type
    // Where the decoder's tensors are: "model." (model.embed_tokens.weight,
    // model.layers.N.…), or a vision checkpoint's language model's prefix.
    std::string weightPrefix = "model.";
    int vocabSize = 0;
    int hiddenSize = 0;
    int intermediateSize = 0;
    int numLayers = 0;
    int numHeads = 0;
    int numKvHeads = 0;
    int headDim = 0;
    int maxPositions = 0;
    NormKind normKind = NormKind::Rms;
    float normEps = 1e-6f;        // rms_norm_eps, or layer_norm_eps for LayerNorm
    float ropeTheta = 10000.0f;
    std::vector<float> ropeInvFreq; // rotaryDim()/2 inverse frequencies, rope_scaling applied
    // Phi-3's partial_rotary_factor: RoPE on each head's first ropeDim
    // dimensions (rotate_half within them), the rest passes through; 0 = headDim.
    int ropeDim = 0;
    int rotaryDim() const { return ropeDim > 0 ? ropeDim : headDim; }
    // LongRoPE (rope_scaling type longrope): ropeInvFreq holds the short
    // factors' frequencies, ropeLongInvFreq the long ones, used from position
    // ropeOriginalMax on (Transformers switches once the sequence is longer
    // than original_max_position_embeddings); cos and sin are multiplied by
    // ropeAttnFactor. Empty / 1 otherwise.
    std::vector<float> ropeLongInvFreq;
    int ropeOriginalMax = 0;
    float ropeAttnFactor = 1.0f;
    float attentionScale = 0;       // 1/sqrt(headDim) unless the config says otherwise
    int slidingWindow = 0;          // 0 = full attention
    bool tieWordEmbeddings = false;
    bool attentionBias = false;     // q/k/v biases (Qwen2; Llama and Qwen3 with attention_bias)
    bool outputBias = false;        // o_proj bias too (Llama and Qwen3 attention_bias; never Qwen2)
    bool qkNorm = false;            // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3)
    // Gemma: RMSNorm scales by (1 + w); the loader adds normOffset to every
    // norm weight of a safetensors checkpoint (llama.cpp's converter already
    // stored 1 + w in GGUF files, so there it is 0).
    float normOffset = 0;
    Activation hiddenAct = Activation::Silu;
    // Phi-2: the MLP is fc1 -> activation -> fc2 (no gate; up_proj and
    // down_proj in the engine's names), with biases on both when mlpBias.
    bool gatedMlp = true;
    bool mlpBias = false;
    bool lmHeadBias = false;        // lm_head.bias (Phi-2)
    // Phi-2: attention and MLP both read the layer's one input norm and add
    // into the residual side by side (no post_attention_layernorm).
    bool parallelResidual = false;
    // Gemma 2/3: four norms per layer; attention and MLP outputs are
    // RMS-normalised (post_attention / post_feedforward_layernorm) before
    // they are added to the residual.
    bool postNorms = false;
    float embedScale = 0;    // embeddings multiplied by this (Gemma: sqrt(hidden)); 0 = not scaled
    float attnSoftcap = 0;   // scores = cap * tanh(scores / cap) (Gemma 2 attn_logit_softcapping); 0 = none
    float finalSoftcap = 0;  // the same on the logits (final_logit_softcapping); 0 = none
    // Per layer: whether slidingWindow applies; empty = every layer (Gemma
    // alternates sliding and global layers).
    std::vector<bool> slidingLayers;
    // Gemma 3: the sliding layers' own RoPE frequencies (rope_local_base_freq);
    // empty = ropeInvFreq on every layer.
    std::vector<float> ropeLocalInvFreq;
    float ropeLocalTheta = 0;
    int layerWindow(int layer) const {
        return slidingLayers.empty() || slidingLayers.at(size_t(layer)) ? slidingWindow : 0;
    }
    bool localRope(int layer) const { return !ropeLocalInvFreq.empty() && layerWindow(layer) > 0; }
    bool isGemma() const { return arch == Arch::Gemma2 || arch == Arch::Gemma3; }
    // The MLP's projections in the engine's names: gate_proj (when gated), up_proj, down_proj.
    std::vector<std::string> mlpProjections() const;
    // Native sparse MoE (Mixtral): experts per MLP layer (0 = dense MLPs),
    // experts each token runs, and whether the chosen experts' softmax
    // weights are renormalised to sum to 1 (Mixtral: yes).
    int numExperts = 0;
    // The config.json key numExperts came from, for messages: "num_local_experts" or
    // "num_experts", with " (not given: Transformers' default)" when it was absent.
    std::string numExpertsField;
    int expertsPerToken = 0;
    bool normTopkProb = true;
    // Qwen2-/Qwen3-MoE: expert and shared-expert (Qwen2 only) widths (intermediateSize is the
    // dense layers'), every decoderSparseStep-th layer sparse, except mlpOnlyLayers.
    int moeIntermediateSize = 0;
    int sharedExpertIntermediateSize = 0;
    int decoderSparseStep = 1;
    std::vector<int> mlpOnlyLayers;
    bool isSparseLayer(int layer) const;
    int expertIntermediateSize() const { return moeIntermediateSize > 0 ? moeIntermediateSize : intermediateSize; }
    std::string torchDtype;
    std::vector<int> bosTokenIds;
    std::vector<int> eosTokenIds;

    // Reads config.json from a folder, or the metadata of a .gguf file.
    // Throws moe::Error naming the file and the field on any problem.
    static ModelConfig load(const std::filesystem::path& dir);
    std::string archName() const;
    bool isMoe() const { return numExperts > 0; }
};

} // namespace moe
