#pragma once
// Tiny random Llama-family models written as Hugging Face folders, and a plain
// CPU transcription of the Transformers forward pass to check the engine
// against (double accumulation). Shared by the architecture and MoE tests.
#include "moe/safetensors.h"

#include <nlohmann/json.hpp>

#include <cmath>
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
    std::string arch; // "llama", "mistral", "qwen2"
    int hidden, inter, layers, heads, kvHeads, headDim, vocab;
    int window = 0;
    bool tied = false;
    DType dtype = DType::F32;
};

struct HostTensor {
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
        t.shape = shape;
        size_t n = 1;
        for (auto d : shape) n *= size_t(d);
        t.bytes.resize(n * dtypeSize(s.dtype));
        for (size_t i = 0; i < n; ++i) {
            const float v = offset + scale * normal(rng);
            if (s.dtype == DType::F32) std::memcpy(t.bytes.data() + i * 4, &v, 4);
            else {
                const uint16_t h = s.dtype == DType::F16 ? floatToF16(v) : floatToBf16(v);
                std::memcpy(t.bytes.data() + i * 2, &h, 2);
            }
        }
        tensors[name] = std::move(t);
    };
    const int64_t H = s.hidden, I = s.inter, q = int64_t(s.heads) * s.headDim, kv = int64_t(s.kvHeads) * s.headDim;
    add("model.embed_tokens.weight", {s.vocab, H}, 0.5f);
    if (!s.tied) add("lm_head.weight", {s.vocab, H}, 0.1f);
    add("model.norm.weight", {H}, 0.1f, 1.0f);
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
        add(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
        add(p + "self_attn.q_proj.weight", {q, H}, 0.2f);
        add(p + "self_attn.k_proj.weight", {kv, H}, 0.2f);
        add(p + "self_attn.v_proj.weight", {kv, H}, 0.2f);
        add(p + "self_attn.o_proj.weight", {H, q}, 0.1f);
        if (s.arch == "qwen2") {
            add(p + "self_attn.q_proj.bias", {q}, 0.5f);
            add(p + "self_attn.k_proj.bias", {kv}, 0.5f);
            add(p + "self_attn.v_proj.bias", {kv}, 0.5f);
        }
        add(p + "mlp.gate_proj.weight", {I, H}, 0.1f);
        add(p + "mlp.up_proj.weight", {I, H}, 0.1f);
        add(p + "mlp.down_proj.weight", {H, I}, 0.1f);
    }
    std::vector<TensorToWrite> out;
    for (auto& [name, t] : tensors) out.push_back({name, s.dtype, t.shape, t.bytes});
    writeSafetensors(dir / "model.safetensors", out);

    const char* archName = s.arch == "qwen2" ? "Qwen2ForCausalLM" : s.arch == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM";
    json c = {{"architectures", {archName}}, {"model_type", s.arch}, {"hidden_size", s.hidden},
              {"intermediate_size", s.inter}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kvHeads}, {"head_dim", s.headDim}, {"vocab_size", s.vocab},
              {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-6}, {"rope_theta", s.arch == "qwen2" ? 1e6 : 1e4},
              {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"}, {"bos_token_id", 1}, {"eos_token_id", 2}};
    if (s.arch == "mistral") c["sliding_window"] = s.window;
    if (s.arch == "qwen2") {
        c["use_sliding_window"] = false;
        c["sliding_window"] = 4096;
    }
    std::ofstream(dir / "config.json") << c.dump(2);
}

// A layer's MLP on one token's MLP input (post-attention norm output).
// Called for t = 0, 1, ... in order within each layer.
using MlpFn = std::function<std::vector<double>(int layer, int t, const std::vector<double>& x)>;

inline std::vector<double> linear(const std::vector<float>& w, const std::vector<double>& x, int rows, int cols) {
    std::vector<double> y(size_t(rows), 0.0);
    for (int r = 0; r < rows; ++r)
        for (int k = 0; k < cols; ++k) y[size_t(r)] += double(w[size_t(r) * cols + k]) * x[size_t(k)];
    return y;
}

// SwiGLU MLP: down(silu(gate·x) * (up·x)).
inline std::vector<double> swiglu(const std::vector<float>& wg, const std::vector<float>& wu, const std::vector<float>& wd,
                                  const std::vector<double>& x, int H, int I) {
    auto g = linear(wg, x, I, H), u = linear(wu, x, I, H);
    for (int i = 0; i < I; ++i) g[size_t(i)] = g[size_t(i)] / (1 + std::exp(-g[size_t(i)])) * u[size_t(i)];
    return linear(wd, g, H, I);
}

// The Transformers forward pass, transcribed directly (double accumulation).
// `mlp` replaces the layers' dense MLPs when given.
inline std::vector<float> referenceLogits(const std::filesystem::path& dir, const Spec& s, const std::vector<int32_t>& ids,
                                          const MlpFn& mlp = {}) {
    auto store = WeightStore::openFolder(dir);
    auto W = [&](const std::string& n) { return toFloat32(store->require(n)); };
    const int H = s.hidden, I = s.inter, D = s.headDim, nh = s.heads, nkv = s.kvHeads, T = int(ids.size());
    const double eps = 1e-6, theta = s.arch == "qwen2" ? 1e6 : 1e4;
    auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& w) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
        return y;
    };
    auto embed = W("model.embed_tokens.weight");
    std::vector<std::vector<double>> h(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t) h[size_t(t)].assign(embed.begin() + long(ids[size_t(t)]) * H, embed.begin() + long(ids[size_t(t)] + 1) * H);
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        auto wq = W(p + "self_attn.q_proj.weight"), wk = W(p + "self_attn.k_proj.weight"),
             wv = W(p + "self_attn.v_proj.weight"), wo = W(p + "self_attn.o_proj.weight");
        auto n1 = W(p + "input_layernorm.weight"), n2 = W(p + "post_attention_layernorm.weight");
        std::vector<std::vector<double>> Q(static_cast<size_t>(T)), K(static_cast<size_t>(T)), V(static_cast<size_t>(T));
        for (int t = 0; t < T; ++t) {
            auto x = rmsnorm(h[size_t(t)], n1);
            Q[size_t(t)] = linear(wq, x, nh * D, H);
            K[size_t(t)] = linear(wk, x, nkv * D, H);
            V[size_t(t)] = linear(wv, x, nkv * D, H);
            if (s.arch == "qwen2") {
                auto bq = W(p + "self_attn.q_proj.bias"), bk = W(p + "self_attn.k_proj.bias"), bv = W(p + "self_attn.v_proj.bias");
                for (size_t i = 0; i < Q[size_t(t)].size(); ++i) Q[size_t(t)][i] += bq[i];
                for (size_t i = 0; i < K[size_t(t)].size(); ++i) { K[size_t(t)][i] += bk[i]; V[size_t(t)][i] += bv[i]; }
            }
            // rotate_half RoPE.
            auto rope = [&](std::vector<double>& v, int heads) {
                for (int hh = 0; hh < heads; ++hh)
                    for (int i = 0; i < D / 2; ++i) {
                        const float invFreq = float(1.0 / std::pow(theta, double(2 * i) / D));
                        const double a = double(float(t) * invFreq);
                        const double c = std::cos(a), sn = std::sin(a);
                        double& x1 = v[size_t(hh * D + i)];
                        double& x2 = v[size_t(hh * D + i + D / 2)];
                        const double r1 = x1 * c - x2 * sn, r2 = x2 * c + x1 * sn;
                        x1 = r1;
                        x2 = r2;
                    }
            };
            rope(Q[size_t(t)], nh);
            rope(K[size_t(t)], nkv);
        }
        for (int t = 0; t < T; ++t) {
            std::vector<double> attn(size_t(nh * D), 0.0);
            for (int hh = 0; hh < nh; ++hh) {
                const int g = hh / (nh / nkv);
                const int lo = s.window > 0 ? std::max(0, t - s.window + 1) : 0;
                std::vector<double> sc;
                double mx = -1e300;
                for (int j = lo; j <= t; ++j) {
                    double d = 0;
                    for (int e = 0; e < D; ++e) d += Q[size_t(t)][size_t(hh * D + e)] * K[size_t(j)][size_t(g * D + e)];
                    sc.push_back(d / std::sqrt(double(D)));
                    mx = std::max(mx, sc.back());
                }
                double sum = 0;
                for (double& v : sc) sum += v = std::exp(v - mx);
                for (int j = lo; j <= t; ++j)
                    for (int e = 0; e < D; ++e)
                        attn[size_t(hh * D + e)] += sc[size_t(j - lo)] / sum * V[size_t(j)][size_t(g * D + e)];
            }
            auto o = linear(wo, attn, H, nh * D);
            for (int i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += o[size_t(i)];
        }
        auto wg = W(p + "mlp.gate_proj.weight"), wu = W(p + "mlp.up_proj.weight"), wd = W(p + "mlp.down_proj.weight");
        for (int t = 0; t < T; ++t) {
            auto x = rmsnorm(h[size_t(t)], n2);
            auto d = mlp ? mlp(l, t, x) : swiglu(wg, wu, wd, x, H, I);
            for (int i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += d[size_t(i)];
        }
    }
    auto head = s.tied ? embed : W("lm_head.weight");
    auto fn = W("model.norm.weight");
    std::vector<float> logits;
    for (int t = 0; t < T; ++t) {
        auto y = linear(head, rmsnorm(h[size_t(t)], fn), s.vocab, H);
        logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
}

} // namespace moe::test::ref
