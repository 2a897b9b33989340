#pragma once
// Tiny random Llama-family models written as Hugging Face folders, and a plain
// CPU transcription of the Transformers forward pass to check the engine
// against (double accumulation). Shared by the architecture and MoE tests.
#include "moe/session.h"
#include "moe/safetensors.h"
#include "reference_ops.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace moe::test::ref {

using nlohmann::json;


struct Spec {
    std::string arch; // "llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "gemma2", "gemma3", "phi3", "phi2"
    int hidden, inter, layers, heads, kvHeads, headDim, vocab;
    int window = 0;
    bool tied = false;
    DType dtype = DType::F32;
    // Tensors whose names end with this are stored as F32 whatever `dtype` is
    // (checkpoints that mix dtypes); empty: none.
    std::string f32Suffix;
    // MoE archs: experts per layer, experts per token, Transformers 5's fused
    // layout (mlp.experts.gate_up_proj / down_proj) instead of per-expert tensors
    int experts = 0, topK = 0;
    bool fusedExperts = false;
    // qwen2_moe / qwen3_moe (no shared expert): expert / shared expert widths (inter = dense layers'), sparse step, dense layers, renormalisation
    int moeInter = 0, sharedInter = 0, sparseStep = 1;
    std::vector<int> mlpOnly;
    bool normTopk = false;
    // llama / qwen3 / qwen3_moe attention_bias: biases on q, k, v and o
    bool attentionBias = false;
    bool qkvBias() const { return arch == "qwen2" || arch == "qwen2_moe" || attentionBias; }
    bool oBias() const { return attentionBias; }
    // gemma2 / gemma3: query_pre_attn_scalar, soft-caps (0 = null), every
    // slidingPattern-th layer global (gemma2: 2), rope_local_base_freq.
    double queryPreAttnScalar = 0; // 0: headDim
    double attnSoftcap = 0, finalSoftcap = 0;
    int slidingPattern = 2;
    double ropeLocalTheta = 10000;
    // gemma3: a Gemma3ForConditionalGeneration checkpoint (text_config, language_model.model.* tensors)
    bool multimodal = false;
    // gemma3: rope_scaling linear on the global layers (0 = none), written as
    // Transformers 5's per-layer-type rope_parameters with ropeParameters.
    double ropeLinearFactor = 0;
    bool ropeParameters = false;
    // phi3: fused qkv_proj / gate_up_proj, partial_rotary_factor, and
    // rope_scaling longrope with original_max_position_embeddings
    // longropeOriginal (0 = none; max_position_embeddings is 256).
    double partialRotary = 1;
    int longropeOriginal = 0;
    bool phi3() const { return arch == "phi3"; }
    // phi2 (PhiForCausalLM): LayerNorm with biases, parallel attention and
    // MLP, fc1 -> gelu_new -> fc2, biases everywhere, partialRotary of each
    // head rotated; headDim must be hidden / heads (PhiConfig has no head_dim).
    // kvHeadsNull: num_key_value_heads written as null (= heads).
    bool kvHeadsNull = false;
    bool phi2() const { return arch == "phi2"; }
    int rotaryDim() const { return int(headDim * partialRotary); }
    bool gemma() const { return arch == "gemma2" || arch == "gemma3"; }
    bool slides(int layer) const { return window > 0 && (!gemma() || (layer + 1) % slidingPattern != 0); }
    bool qkNorm() const { return arch == "qwen3" || arch == "qwen3_moe" || arch == "gemma3"; }
    std::string prefix() const { return multimodal ? "language_model.model." : "model."; }
    bool qwenMoe() const { return arch == "qwen2_moe" || arch == "qwen3_moe"; }
    bool sparse(int layer) const {
        if (arch == "mixtral") return true;
        if (!qwenMoe()) return false;
        return std::find(mlpOnly.begin(), mlpOnly.end(), layer) == mlpOnly.end() && (layer + 1) % sparseStep == 0;
    }
};

inline double ropeTheta(const Spec& s) {
    return s.arch == "qwen2" || s.arch == "qwen3" || s.arch == "mixtral" || s.qwenMoe() || s.arch == "gemma3" ? 1e6 : 1e4;
}

struct HostTensor {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<float> values;
    std::vector<std::byte> bytes;
};

inline void writeModel(const std::filesystem::path& dir, const Spec& s, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::map<std::string, HostTensor> tensors;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0) {
        HostTensor t;
        t.dtype = !s.f32Suffix.empty() && name.ends_with(s.f32Suffix) ? DType::F32 : s.dtype;
        t.shape = shape;
        size_t n = 1;
        for (auto d : shape) n *= size_t(d);
        t.bytes.resize(n * dtypeSize(t.dtype));
        for (size_t i = 0; i < n; ++i) {
            const float v = offset + scale * normal(rng);
            if (t.dtype == DType::F32) std::memcpy(t.bytes.data() + i * 4, &v, 4);
            else {
                const uint16_t h = t.dtype == DType::F16 ? floatToF16(v) : floatToBf16(v);
                std::memcpy(t.bytes.data() + i * 2, &h, 2);
            }
        }
        tensors[name] = std::move(t);
    };
    const int64_t H = s.hidden, I = s.inter, q = int64_t(s.heads) * s.headDim, kv = int64_t(s.kvHeads) * s.headDim;
    // Gemma stores norms as w of (1 + w): around 0.
    const float normMean = s.gemma() ? 0.0f : 1.0f;
    const std::string m = s.prefix();
    if (s.phi2()) {
        // PhiForCausalLM's names, as released (microsoft/phi-2).
        add(m + "embed_tokens.weight", {s.vocab, H}, 0.5f);
        add("lm_head.weight", {s.vocab, H}, 0.1f);
        add("lm_head.bias", {s.vocab}, 0.5f);
        add(m + "final_layernorm.weight", {H}, 0.1f, 1.0f);
        add(m + "final_layernorm.bias", {H}, 0.2f);
        for (int l = 0; l < s.layers; ++l) {
            const std::string p = m + "layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
            add(p + "input_layernorm.bias", {H}, 0.2f);
            add(p + "self_attn.q_proj.weight", {q, H}, 0.2f);
            add(p + "self_attn.k_proj.weight", {kv, H}, 0.2f);
            add(p + "self_attn.v_proj.weight", {kv, H}, 0.2f);
            add(p + "self_attn.q_proj.bias", {q}, 0.5f);
            add(p + "self_attn.k_proj.bias", {kv}, 0.5f);
            add(p + "self_attn.v_proj.bias", {kv}, 0.5f);
            add(p + "self_attn.dense.weight", {H, q}, 0.1f);
            add(p + "self_attn.dense.bias", {H}, 0.3f);
            add(p + "mlp.fc1.weight", {I, H}, 0.1f);
            add(p + "mlp.fc1.bias", {I}, 0.5f);
            add(p + "mlp.fc2.weight", {H, I}, 0.1f);
            add(p + "mlp.fc2.bias", {H}, 0.3f);
        }
        std::vector<TensorToWrite> out;
        for (auto& [name, t] : tensors) out.push_back({name, t.dtype, t.shape, t.bytes});
        writeSafetensors(dir / "model.safetensors", out);
        json c = {{"architectures", {"PhiForCausalLM"}}, {"model_type", "phi"}, {"hidden_size", s.hidden},
                  {"intermediate_size", s.inter}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
                  {"num_key_value_heads", s.kvHeadsNull ? json(nullptr) : json(s.kvHeads)}, {"vocab_size", s.vocab},
                  {"max_position_embeddings", 256}, {"layer_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                  {"partial_rotary_factor", s.partialRotary}, {"hidden_act", "gelu_new"}, {"qk_layernorm", false},
                  {"rope_scaling", nullptr}, {"tie_word_embeddings", false}, {"resid_pdrop", 0.1},
                  {"embd_pdrop", 0.0}, {"attention_dropout", 0.0}, {"bos_token_id", 1}, {"eos_token_id", 2}};
        std::ofstream(dir / "config.json") << c.dump(2);
        return;
    }
    add(m + "embed_tokens.weight", {s.vocab, H}, 0.5f);
    if (!s.tied) add("lm_head.weight", {s.vocab, H}, 0.1f);
    add(m + "norm.weight", {H}, 0.1f, normMean);
    if (s.multimodal) add("vision_tower.vision_model.post_layernorm.weight", {8}, 0.1f); // not loaded
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = m + "layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {H}, 0.1f, normMean);
        add(p + "post_attention_layernorm.weight", {H}, 0.1f, normMean);
        if (s.gemma()) {
            add(p + "pre_feedforward_layernorm.weight", {H}, 0.1f, normMean);
            add(p + "post_feedforward_layernorm.weight", {H}, 0.1f, normMean);
        }
        add(p + "self_attn.q_proj.weight", {q, H}, 0.2f);
        add(p + "self_attn.k_proj.weight", {kv, H}, 0.2f);
        add(p + "self_attn.v_proj.weight", {kv, H}, 0.2f);
        add(p + "self_attn.o_proj.weight", {H, q}, 0.1f);
        if (s.qkvBias()) {
            add(p + "self_attn.q_proj.bias", {q}, 0.5f);
            add(p + "self_attn.k_proj.bias", {kv}, 0.5f);
            add(p + "self_attn.v_proj.bias", {kv}, 0.5f);
        }
        if (s.oBias()) add(p + "self_attn.o_proj.bias", {H}, 0.5f);
        if (s.qkNorm()) {
            add(p + "self_attn.q_norm.weight", {s.headDim}, 0.3f, normMean);
            add(p + "self_attn.k_norm.weight", {s.headDim}, 0.3f, normMean);
        }
        if (s.sparse(l)) {
            const bool mixtral = s.arch == "mixtral";
            const int64_t M = mixtral ? I : s.moeInter, S = s.sharedInter;
            const std::string moe = p + (mixtral && !s.fusedExperts ? "block_sparse_moe." : "mlp.");
            // Gate scale large enough that routing differs across tokens.
            add(moe + "gate.weight", {s.experts, H}, 0.6f);
            if (s.fusedExperts) {
                add(moe + "experts.gate_up_proj", {s.experts, 2 * M, H}, 0.1f);
                add(moe + "experts.down_proj", {s.experts, H, M}, 0.1f);
            } else {
                for (int e = 0; e < s.experts; ++e) {
                    const std::string x = moe + "experts." + std::to_string(e) + ".";
                    add(x + (mixtral ? "w1.weight" : "gate_proj.weight"), {M, H}, 0.1f);
                    add(x + (mixtral ? "w2.weight" : "down_proj.weight"), {H, M}, 0.1f);
                    add(x + (mixtral ? "w3.weight" : "up_proj.weight"), {M, H}, 0.1f);
                }
            }
            if (S > 0) {
                add(moe + "shared_expert.gate_proj.weight", {S, H}, 0.1f);
                add(moe + "shared_expert.up_proj.weight", {S, H}, 0.1f);
                add(moe + "shared_expert.down_proj.weight", {H, S}, 0.1f);
                add(moe + "shared_expert_gate.weight", {1, H}, 0.3f);
            }
        } else {
            add(p + "mlp.gate_proj.weight", {I, H}, 0.1f);
            add(p + "mlp.up_proj.weight", {I, H}, 0.1f);
            add(p + "mlp.down_proj.weight", {H, I}, 0.1f);
        }
    }
    if (s.phi3()) {
        // Phi-3's checkpoints stack the rows: qkv_proj = [q; k; v], gate_up_proj = [gate; up].
        auto fuse = [&](const std::string& to, const std::vector<std::string>& from) {
            HostTensor f = tensors.at(from.front());
            f.shape[0] = 0;
            f.bytes.clear();
            for (const auto& n : from) {
                const HostTensor& t = tensors.at(n);
                f.shape[0] += t.shape[0];
                f.bytes.insert(f.bytes.end(), t.bytes.begin(), t.bytes.end());
                tensors.erase(n);
            }
            tensors[to] = std::move(f);
        };
        for (int l = 0; l < s.layers; ++l) {
            const std::string p = m + "layers." + std::to_string(l) + ".";
            fuse(p + "self_attn.qkv_proj.weight",
                 {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
            fuse(p + "mlp.gate_up_proj.weight", {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
        }
    }
    std::vector<TensorToWrite> out;
    for (auto& [name, t] : tensors) out.push_back({name, t.dtype, t.shape, t.bytes});
    writeSafetensors(dir / "model.safetensors", out);

    const char* archName = s.arch == "qwen2"     ? "Qwen2ForCausalLM"
                         : s.arch == "mistral" ? "MistralForCausalLM"
                         : s.arch == "mixtral" ? "MixtralForCausalLM"
                         : s.arch == "qwen2_moe" ? "Qwen2MoeForCausalLM"
                         : s.arch == "qwen3_moe" ? "Qwen3MoeForCausalLM"
                         : s.arch == "qwen3"     ? "Qwen3ForCausalLM"
                         : s.arch == "gemma2"    ? "Gemma2ForCausalLM"
                         : s.arch == "gemma3"    ? (s.multimodal ? "Gemma3ForConditionalGeneration" : "Gemma3ForCausalLM")
                         : s.arch == "phi3"      ? "Phi3ForCausalLM"
                                               : "LlamaForCausalLM";
    json c = {{"architectures", {archName}}, {"model_type", s.arch}, {"hidden_size", s.hidden},
              {"intermediate_size", s.inter}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kvHeads}, {"head_dim", s.headDim}, {"vocab_size", s.vocab},
              {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-6}, {"rope_theta", ropeTheta(s)},
              {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"}, {"bos_token_id", 1}, {"eos_token_id", 2}};
    if (s.arch == "mistral" || s.arch == "mixtral") c["sliding_window"] = s.window > 0 ? json(s.window) : json(nullptr);
    if (s.gemma()) {
        c.erase("hidden_act");
        c["hidden_activation"] = "gelu_pytorch_tanh";
        c["query_pre_attn_scalar"] = s.queryPreAttnScalar > 0 ? s.queryPreAttnScalar : double(s.headDim);
        c["attn_logit_softcapping"] = s.attnSoftcap > 0 ? json(s.attnSoftcap) : json(nullptr);
        c["final_logit_softcapping"] = s.finalSoftcap > 0 ? json(s.finalSoftcap) : json(nullptr);
        c["sliding_window"] = s.window > 0 ? s.window : 4096;
        std::vector<std::string> types;
        for (int l = 0; l < s.layers; ++l) types.push_back(s.slides(l) ? "sliding_attention" : "full_attention");
        if (s.window > 0) c["layer_types"] = types;
        else c["layer_types"] = std::vector<std::string>(size_t(s.layers), "full_attention");
        if (s.arch == "gemma3") {
            c["model_type"] = "gemma3_text";
            c["rope_local_base_freq"] = s.ropeLocalTheta;
            const json global = s.ropeLinearFactor > 0
                                    ? json{{"rope_type", "linear"}, {"factor", s.ropeLinearFactor}, {"rope_theta", ropeTheta(s)}}
                                    : json{{"rope_type", "default"}, {"rope_theta", ropeTheta(s)}};
            if (s.ropeParameters) {
                c.erase("rope_theta");
                c.erase("rope_local_base_freq");
                c["rope_parameters"] = {{"full_attention", global},
                                        {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", s.ropeLocalTheta}}}};
            } else if (s.ropeLinearFactor > 0) {
                c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.ropeLinearFactor}};
            }
        }
    }
    if (s.phi3()) {
        c["sliding_window"] = s.window > 0 ? json(s.window) : json(nullptr);
        c["partial_rotary_factor"] = s.partialRotary;
        if (s.longropeOriginal > 0) {
            std::mt19937 frng(seed + 17);
            std::uniform_real_distribution<double> u(0.0, 1.0);
            std::vector<double> shortF, longF;
            const int n = s.rotaryDim() / 2;
            for (int i = 0; i < n; ++i) {
                shortF.push_back(1.0 + 0.2 * u(frng));
                longF.push_back(1.0 + 6.0 * i / std::max(1, n - 1) * (0.5 + u(frng)));
            }
            c["original_max_position_embeddings"] = s.longropeOriginal;
            c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", shortF}, {"long_factor", longF}};
        }
    }
    if (s.arch == "mixtral") {
        c["num_local_experts"] = s.experts;
        c["num_experts_per_tok"] = s.topK;
    }
    if (s.qwenMoe()) {
        c["num_experts"] = s.experts;
        c["num_experts_per_tok"] = s.topK;
        c["moe_intermediate_size"] = s.moeInter;
        c["shared_expert_intermediate_size"] = s.sharedInter;
        c["decoder_sparse_step"] = s.sparseStep;
        c["mlp_only_layers"] = s.mlpOnly;
        c["norm_topk_prob"] = s.normTopk;
    }
    if (s.arch == "qwen3_moe") c.erase("shared_expert_intermediate_size"); // Qwen3-MoE has no shared expert
    if (s.multimodal) {
        json text = c;
        text.erase("architectures");
        c = {{"architectures", {"Gemma3ForConditionalGeneration"}}, {"model_type", "gemma3"}, {"text_config", text},
             {"vision_config", {{"model_type", "siglip_vision_model"}}}, {"bos_token_id", 1}, {"eos_token_id", 2}};
    }
    if (s.arch == "llama" || s.arch == "qwen3" || s.arch == "qwen3_moe") c["attention_bias"] = s.attentionBias;
    if ((s.qkvBias() || s.qkNorm()) && !s.gemma()) {
        // Qwen2 and Qwen3 slide on the layers from max_window_layers on: all of them.
        const bool slides = s.window > 0 && (s.arch == "qwen2" || s.arch == "qwen3");
        c["use_sliding_window"] = slides;
        c["sliding_window"] = slides ? s.window : 4096;
        if (slides) c["max_window_layers"] = 0;
    }
    std::ofstream(dir / "config.json") << c.dump(2);
}

// A layer's MLP on one token's MLP input (post-attention norm output).
// Called for t = 0, 1, ... in order within each layer.
using MlpFn = std::function<std::vector<double>(int layer, int t, const std::vector<double>& x)>;

// One expert's SwiGLU projections, gate and up [I, H] and down [H, I], from
// either layout. The fused one as Transformers 5 uses it: gate, up =
// linear(x, gate_up_proj[e]).chunk(2) (the first I rows are the gate), then
// linear(h, down_proj[e]); per expert, Mixtral's w1/w3/w2 or the Qwen names.
struct ExpertWeights {
    std::vector<float> gate, up, down;
    std::vector<float> upBias, downBias; // Phi-2's fc1 / fc2 biases (no gate); else empty
};
inline ExpertWeights expertWeights(const WeightStore& store, const std::string& moe, const Spec& s, int e, int I) {
    ExpertWeights w;
    if (s.fusedExperts) {
        const auto gu = toFloat32(store.require(moe + "experts.gate_up_proj"));
        const auto dn = toFloat32(store.require(moe + "experts.down_proj"));
        const size_t block = size_t(I) * size_t(s.hidden);
        w.gate.assign(gu.begin() + long(2 * block * e), gu.begin() + long(2 * block * e + block));
        w.up.assign(gu.begin() + long(2 * block * e + block), gu.begin() + long(2 * block * (e + 1)));
        w.down.assign(dn.begin() + long(block * e), dn.begin() + long(block * (e + 1)));
        return w;
    }
    const bool mixtral = s.arch == "mixtral";
    const std::string x = moe + "experts." + std::to_string(e) + ".";
    w.gate = toFloat32(store.require(x + (mixtral ? "w1.weight" : "gate_proj.weight")));
    w.up = toFloat32(store.require(x + (mixtral ? "w3.weight" : "up_proj.weight")));
    w.down = toFloat32(store.require(x + (mixtral ? "w2.weight" : "down_proj.weight")));
    return w;
}

// A native Mixtral MoE block (either layout) as Transformers computes it:
// every chosen expert's SwiGLU output mixed by its top-k weight.
inline MlpFn mixtralMlp(const std::filesystem::path& dir, const Spec& s) {
    auto store = std::shared_ptr<WeightStore>(WeightStore::openFolder(dir).release());
    return [store, s](int layer, int, const std::vector<double>& x) {
        const int H = s.hidden, I = s.inter;
        const std::string p = "model.layers." + std::to_string(layer) + ".";
        const std::string moe = p + (s.fusedExperts ? "mlp." : "block_sparse_moe.");
        const auto gate = toFloat32(store->require(moe + "gate.weight"));
        const auto w = topKWeights(linear(gate, x, s.experts, H), s.topK, true);
        std::vector<double> out(size_t(H), 0.0);
        for (int e = 0; e < s.experts; ++e) {
            if (w[size_t(e)] == 0) continue;
            const ExpertWeights ew = expertWeights(*store, moe, s, e, I);
            const auto y = swiglu(ew.gate, ew.up, ew.down, x, H, I);
            for (int i = 0; i < H; ++i) out[size_t(i)] += w[size_t(e)] * y[size_t(i)];
        }
        return out;
    };
}

// A Qwen2-MoE (or Qwen3-MoE: no shared expert) sparse block (either layout)
// as Transformers computes it: the top-k experts (renormalised only with
// norm_topk_prob) plus sigmoid(shared_gate·x)·shared(x).
inline MlpFn qwen2MoeMlp(const std::filesystem::path& dir, const Spec& s) {
    auto store = std::shared_ptr<WeightStore>(WeightStore::openFolder(dir).release());
    return [store, s](int layer, int, const std::vector<double>& x) {
        const int H = s.hidden, M = s.moeInter, S = s.sharedInter;
        const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
        auto W = [&](const std::string& n) { return toFloat32(store->require(p + n)); };
        if (!s.sparse(layer)) return swiglu(W("gate_proj.weight"), W("up_proj.weight"), W("down_proj.weight"), x, H, s.inter);
        const auto w = topKWeights(linear(W("gate.weight"), x, s.experts, H), s.topK, s.normTopk);
        std::vector<double> out(size_t(H), 0.0);
        for (int e = 0; e < s.experts; ++e) {
            if (w[size_t(e)] == 0) continue;
            const ExpertWeights ew = expertWeights(*store, p, s, e, M);
            const auto y = swiglu(ew.gate, ew.up, ew.down, x, H, M);
            for (int i = 0; i < H; ++i) out[size_t(i)] += w[size_t(e)] * y[size_t(i)];
        }
        if (S > 0) {
            const double g = sigmoid(linear(W("shared_expert_gate.weight"), x, 1, H)[0]);
            const auto y = swiglu(W("shared_expert.gate_proj.weight"), W("shared_expert.up_proj.weight"),
                                  W("shared_expert.down_proj.weight"), x, H, S);
            for (int i = 0; i < H; ++i) out[size_t(i)] += g * y[size_t(i)];
        }
        return out;
    };
}

// Transformers' modeling_phi (PhiForCausalLM), transcribed: per layer
// h = input_layernorm(x); x += dense(attention(h)) + fc2(gelu_new(fc1(h)))
// (`mlp`, when given, replaces the fc1/fc2 MLP on h); q and k rotated on
// their first rotaryDim dimensions (rotate_half within them); logits =
// lm_head(final_layernorm(x)) with its bias.
inline std::vector<float> phiReferenceLogits(const std::filesystem::path& dir, const Spec& s,
                                             const std::vector<int32_t>& ids, const MlpFn& mlp) {
    auto store = WeightStore::openFolder(dir);
    auto W = [&](const std::string& n) { return toFloat32(store->require(n)); };
    const int H = s.hidden, I = s.inter, D = s.headDim, T = int(ids.size()), R = s.rotaryDim();
    const double eps = 1e-5;
    const auto embed = W("model.embed_tokens.weight");
    std::vector<std::vector<double>> x(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t)
        x[size_t(t)].assign(embed.begin() + long(ids[size_t(t)]) * H, embed.begin() + long(ids[size_t(t)] + 1) * H);
    const std::vector<float> invFreq = ropeInvFreq(10000.0, R);
    const AttentionShape shape{s.heads, s.kvHeads, D, 0, 1.0 / std::sqrt(double(D))};
    const int qDim = shape.qDim(), kvDim = shape.kvDim();
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const auto nw = W(p + "input_layernorm.weight"), nb = W(p + "input_layernorm.bias");
        const auto wq = W(p + "self_attn.q_proj.weight"), wk = W(p + "self_attn.k_proj.weight"),
                   wv = W(p + "self_attn.v_proj.weight"), wo = W(p + "self_attn.dense.weight");
        const auto bq = W(p + "self_attn.q_proj.bias"), bk = W(p + "self_attn.k_proj.bias"),
                   bv = W(p + "self_attn.v_proj.bias"), bo = W(p + "self_attn.dense.bias");
        std::vector<float> w1, b1, w2, b2;
        if (!mlp) w1 = W(p + "mlp.fc1.weight"), b1 = W(p + "mlp.fc1.bias"), w2 = W(p + "mlp.fc2.weight"), b2 = W(p + "mlp.fc2.bias");
        std::vector<std::vector<double>> hn(static_cast<size_t>(T));
        std::vector<double> Q(size_t(T) * qDim), K(size_t(T) * kvDim), V(size_t(T) * kvDim);
        for (int t = 0; t < T; ++t) {
            hn[size_t(t)] = layernorm(x[size_t(t)], nw, nb, eps);
            const auto q = linear(wq, hn[size_t(t)], qDim, H, &bq), k = linear(wk, hn[size_t(t)], kvDim, H, &bk),
                       v = linear(wv, hn[size_t(t)], kvDim, H, &bv);
            double* qt = Q.data() + size_t(t) * qDim;
            double* kt = K.data() + size_t(t) * kvDim;
            std::copy(q.begin(), q.end(), qt);
            std::copy(k.begin(), k.end(), kt);
            std::copy(v.begin(), v.end(), V.data() + size_t(t) * kvDim);
            const RopeAngles angles = ropeAngles(invFreq, t);
            for (int hh = 0; hh < s.heads; ++hh) rotateHalf(qt + size_t(hh) * D, R, angles.cos.data(), angles.sin.data());
            for (int hh = 0; hh < s.kvHeads; ++hh) rotateHalf(kt + size_t(hh) * D, R, angles.cos.data(), angles.sin.data());
        }
        const auto attn = attention(shape, Q.data(), K.data(), V.data(), 0, T);
        for (int t = 0; t < T; ++t) {
            const auto o = linear(wo.data(), attn.data() + size_t(t) * qDim, H, qDim, bo.data());
            const auto f = mlp ? mlp(l, t, hn[size_t(t)]) : geluMlp(w1, b1, w2, b2, hn[size_t(t)], H, I);
            for (int i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)] + f[size_t(i)];
        }
    }
    const auto head = W("lm_head.weight"), headBias = W("lm_head.bias");
    const auto fw = W("model.final_layernorm.weight"), fb = W("model.final_layernorm.bias");
    std::vector<float> logits;
    for (int t = 0; t < T; ++t) {
        const auto y = linear(head, layernorm(x[size_t(t)], fw, fb, eps), s.vocab, H, &headBias);
        logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
}

// The Transformers forward pass, transcribed directly (double accumulation).
// `mlp` replaces the layers' dense MLPs when given.
inline std::vector<float> referenceLogits(const std::filesystem::path& dir, const Spec& s, const std::vector<int32_t>& ids,
                                          const MlpFn& mlp = {}) {
    if (s.phi2()) return phiReferenceLogits(dir, s, ids, mlp);
    auto store = WeightStore::openFolder(dir);
    const int H = s.hidden, I = s.inter, D = s.headDim, nh = s.heads, nkv = s.kvHeads, T = int(ids.size());
    // Phi-3's fused tensors, sliced here by rows (q, k, v; gate, up) as its modeling code does.
    auto rowsOf = [&](const std::string& fused, int64_t from, int64_t count) {
        const auto all = toFloat32(store->require(fused));
        return std::vector<float>(all.begin() + from * H, all.begin() + (from + count) * H);
    };
    auto W = [&](const std::string& n) {
        if (s.phi3()) {
            const int64_t qd = int64_t(nh) * D, kvd = int64_t(nkv) * D;
            const auto cut = n.rfind("self_attn.");
            const auto mlpAt = n.rfind("mlp.");
            if (cut != std::string::npos && n.ends_with("_proj.weight") && n.compare(cut, 16, "self_attn.o_proj") != 0) {
                const std::string fused = n.substr(0, cut) + "self_attn.qkv_proj.weight";
                if (n.ends_with("q_proj.weight")) return rowsOf(fused, 0, qd);
                if (n.ends_with("k_proj.weight")) return rowsOf(fused, qd, kvd);
                return rowsOf(fused, qd + kvd, kvd);
            }
            if (mlpAt != std::string::npos && (n.ends_with("gate_proj.weight") || n.ends_with("up_proj.weight"))) {
                const std::string fused = n.substr(0, mlpAt) + "mlp.gate_up_proj.weight";
                return rowsOf(fused, n.ends_with("gate_proj.weight") ? 0 : I, I);
            }
        }
        return toFloat32(store->require(n));
    };
    const double eps = 1e-6, theta = ropeTheta(s);
    const MlpFn moeMlp = mlp                     ? MlpFn{}
                         : s.arch == "mixtral"   ? mixtralMlp(dir, s)
                         : s.qwenMoe()           ? qwen2MoeMlp(dir, s)
                                                 : MlpFn{};
    const bool gemma = s.gemma();
    // Gemma's RMSNorm scales by (1 + w), computed in float32.
    auto N = [&](const std::string& n) {
        auto w = W(n);
        if (gemma)
            for (float& x : w) x = 1.0f + x;
        return w;
    };
    const std::string m = s.prefix();
    auto embed = W(m + "embed_tokens.weight");
    // Gemma: embeddings times sqrt(hidden) (float32 here: the models are float32 or the scale is exact).
    const double embedScale = gemma ? double(std::sqrt(float(H))) : 1.0;
    std::vector<std::vector<double>> h(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t) {
        h[size_t(t)].assign(embed.begin() + long(ids[size_t(t)]) * H, embed.begin() + long(ids[size_t(t)] + 1) * H);
        for (double& x : h[size_t(t)]) x *= embedScale;
    }
    std::vector<float> globalFreq = ropeInvFreq(theta, D);
    const std::vector<float> localFreq = ropeInvFreq(s.ropeLocalTheta, D);
    if (s.ropeLinearFactor > 0)
        for (float& f : globalFreq) f = float(double(f) / s.ropeLinearFactor);
    // Phi-3: RoPE on the first rotaryDim dimensions of each head
    // (q_rot = q[..., :rotary_dim], rotate_half within it, the rest passed
    // through); longrope: inv_freq / short_factor, or / long_factor for a
    // sequence longer than original_max_position_embeddings (as in generation
    // one token at a time: token t's sequence is t + 1 long), cos and sin
    // times sqrt(1 + ln(max / original) / ln(original)).
    const int R = s.phi3() ? s.rotaryDim() : D;
    std::vector<float> longFreq;
    double ropeScale = 1;
    if (s.phi3()) {
        globalFreq = ropeInvFreq(theta, R);
        if (s.longropeOriginal > 0) {
            json cfg;
            std::ifstream(dir / "config.json") >> cfg;
            const auto shortF = cfg["rope_scaling"]["short_factor"].get<std::vector<double>>();
            const auto longF = cfg["rope_scaling"]["long_factor"].get<std::vector<double>>();
            longFreq = globalFreq;
            for (size_t i = 0; i < globalFreq.size(); ++i) {
                longFreq[i] = float(double(globalFreq[i]) / longF[i]);
                globalFreq[i] = float(double(globalFreq[i]) / shortF[i]);
            }
            const double factor = 256.0 / s.longropeOriginal;
            ropeScale = factor <= 1 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(double(s.longropeOriginal)));
        }
    }
    const double scale = 1.0 / std::sqrt(gemma && s.queryPreAttnScalar > 0 ? s.queryPreAttnScalar : double(D));
    const AttentionShape globalShape{nh, nkv, D, gemma ? 0 : s.window, scale, gemma ? s.attnSoftcap : 0.0};
    const int qDim = globalShape.qDim(), kvDim = globalShape.kvDim();
    for (int l = 0; l < s.layers; ++l) {
        AttentionShape shape = globalShape;
        if (gemma && s.slides(l)) shape.window = s.window;
        // Gemma 3: sliding layers rotate with rope_local_base_freq.
        const std::vector<float>& invFreq = s.arch == "gemma3" && s.slides(l) ? localFreq : globalFreq;
        const std::string p = m + "layers." + std::to_string(l) + ".";
        auto wq = W(p + "self_attn.q_proj.weight"), wk = W(p + "self_attn.k_proj.weight"),
             wv = W(p + "self_attn.v_proj.weight"), wo = W(p + "self_attn.o_proj.weight");
        auto n1 = N(p + "input_layernorm.weight"), n2 = N(p + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"));
        std::vector<float> postAttn, postMlp;
        if (gemma) postAttn = N(p + "post_attention_layernorm.weight"), postMlp = N(p + "post_feedforward_layernorm.weight");
        std::vector<float> bq, bk, bv, qn, kn;
        if (s.qkvBias()) bq = W(p + "self_attn.q_proj.bias"), bk = W(p + "self_attn.k_proj.bias"), bv = W(p + "self_attn.v_proj.bias");
        if (s.qkNorm()) qn = N(p + "self_attn.q_norm.weight"), kn = N(p + "self_attn.k_norm.weight");
        // Every token's q, k and v, rows of qDim and kvDim (k and v: the KV cache from position 0).
        std::vector<double> Q(size_t(T) * qDim), K(size_t(T) * kvDim), V(size_t(T) * kvDim);
        for (int t = 0; t < T; ++t) {
            const auto x = rmsnorm(h[size_t(t)], n1, eps);
            const auto q = linear(wq, x, qDim, H, s.qkvBias() ? &bq : nullptr);
            const auto k = linear(wk, x, kvDim, H, s.qkvBias() ? &bk : nullptr);
            const auto v = linear(wv, x, kvDim, H, s.qkvBias() ? &bv : nullptr);
            double* qt = Q.data() + size_t(t) * qDim;
            double* kt = K.data() + size_t(t) * kvDim;
            std::copy(q.begin(), q.end(), qt);
            std::copy(k.begin(), k.end(), kt);
            std::copy(v.begin(), v.end(), V.data() + size_t(t) * kvDim);
            // Qwen3: RMSNorm over each head of q and k, before RoPE.
            if (s.qkNorm()) {
                for (int hh = 0; hh < nh; ++hh) rmsnorm(qt + size_t(hh) * D, qt + size_t(hh) * D, D, qn.data(), eps);
                for (int hh = 0; hh < nkv; ++hh) rmsnorm(kt + size_t(hh) * D, kt + size_t(hh) * D, D, kn.data(), eps);
            }
            const bool longF = !longFreq.empty() && t + 1 > s.longropeOriginal;
            RopeAngles angles = ropeAngles(longF ? longFreq : invFreq, t);
            for (double& x : angles.cos) x *= ropeScale;
            for (double& x : angles.sin) x *= ropeScale;
            for (int hh = 0; hh < nh; ++hh) rotateHalf(qt + size_t(hh) * D, R, angles.cos.data(), angles.sin.data());
            for (int hh = 0; hh < nkv; ++hh) rotateHalf(kt + size_t(hh) * D, R, angles.cos.data(), angles.sin.data());
        }
        const auto attn = attention(shape, Q.data(), K.data(), V.data(), 0, T);
        std::vector<float> bo;
        if (s.oBias()) bo = W(p + "self_attn.o_proj.bias");
        for (int t = 0; t < T; ++t) {
            auto o = linear(wo.data(), attn.data() + size_t(t) * qDim, H, qDim, s.oBias() ? bo.data() : nullptr);
            if (gemma) o = rmsnorm(o, postAttn, eps); // Gemma: the attention output normalised before the residual add
            for (int i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += o[size_t(i)];
        }
        const MlpFn& layerMlp = mlp ? mlp : moeMlp;
        std::vector<float> wg, wu, wd; // the dense MLP, read only when no other MLP runs
        if (!layerMlp) wg = W(p + "mlp.gate_proj.weight"), wu = W(p + "mlp.up_proj.weight"), wd = W(p + "mlp.down_proj.weight");
        for (int t = 0; t < T; ++t) {
            auto x = rmsnorm(h[size_t(t)], n2, eps);
            auto d = layerMlp ? layerMlp(l, t, x) : swiglu(wg, wu, wd, x, H, I, gemma);
            if (gemma) d = rmsnorm(d, postMlp, eps);
            for (int i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += d[size_t(i)];
        }
    }
    auto head = s.tied ? embed : W("lm_head.weight");
    auto fn = N(m + "norm.weight");
    std::vector<float> logits;
    for (int t = 0; t < T; ++t) {
        auto y = linear(head, rmsnorm(h[size_t(t)], fn, eps), s.vocab, H);
        if (gemma && s.finalSoftcap > 0)
            for (double& v : y) v = softcap(v, s.finalSoftcap);
        logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
}

// The engine side: `prefill` tokens in one forward (batches of the session's
// maxBatch), then one token at a time; from `replyFrom` on the tokens are a
// reply (sequence routing). Returns every token's logits.
inline std::vector<float> prefillThenDecode(Session& session, const std::vector<int32_t>& ids, size_t prefill,
                                            size_t replyFrom = SIZE_MAX) {
    std::vector<float> got;
    session.forward(std::span<const int32_t>(ids.data(), prefill), &got);
    for (size_t t = prefill; t < ids.size(); ++t) {
        session.setReply(t >= replyFrom);
        auto l = session.forward(std::span<const int32_t>(&ids[t], 1));
        got.insert(got.end(), l.begin(), l.end());
    }
    session.setReply(false);
    return got;
}

} // namespace moe::test::ref
