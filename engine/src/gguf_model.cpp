// GGUF models: llama.cpp's metadata keys and tensor names mapped onto the
// engine's ModelConfig and the Hugging Face tensor names the loaders read.
// Key names, defaults and per-architecture rules follow llama.cpp's loader
// (llama-arch.cpp, llama-model.cpp, src/models/<arch>.cpp).
#include "moe/gguf_model.h"

#include "moe/error.h"
#include "moe/quant.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace moe {

namespace fs = std::filesystem;

namespace {

struct GgufArch {
    const char* name;          // general.architecture
    Arch arch;                 // dense form (llama with experts becomes Mixtral)
    const char* architecture;  // the Transformers class of the same model
};
constexpr GgufArch kArchs[] = {
    {"llama", Arch::Llama, "LlamaForCausalLM"},
    {"qwen2", Arch::Qwen2, "Qwen2ForCausalLM"},
    {"qwen3", Arch::Qwen3, "Qwen3ForCausalLM"},
    {"qwen2moe", Arch::Qwen2Moe, "Qwen2MoeForCausalLM"},
    {"qwen3moe", Arch::Qwen3Moe, "Qwen3MoeForCausalLM"},
    {"gemma2", Arch::Gemma2, "Gemma2ForCausalLM"},
    {"gemma3", Arch::Gemma3, "Gemma3ForCausalLM"},
    {"phi3", Arch::Phi3, "Phi3ForCausalLM"},
    {"phi2", Arch::Phi2, "PhiForCausalLM"},
};

// Typed metadata of one file; every complaint names the file and the key.
class Meta {
public:
    Meta(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw Error(f_.path().string() + ": " + key + ": " + what);
    }
    std::string key(const std::string& suffix) const { return arch_ + "." + suffix; }

    std::optional<int> positive(const std::string& k) const {
        const auto v = f_.getInteger(k);
        if (!v) return std::nullopt;
        if (*v <= 0 || *v > INT_MAX) fail(k, std::to_string(*v) + " must be a positive integer");
        checkBound(k, *v);
        return int(*v);
    }
    // Sizes that size allocations before the tensors are checked have upper
    // bounds far above any released model (those of config.json's fields).
    void checkBound(const std::string& k, int64_t v) const {
        static const std::pair<const char*, int64_t> kBounds[] = {
            {"embedding_length", int64_t(1) << 17}, {"feed_forward_length", int64_t(1) << 20},
            {"expert_feed_forward_length", int64_t(1) << 20}, {"expert_shared_feed_forward_length", int64_t(1) << 20},
            {"block_count", 1024}, {"attention.head_count", 1024}, {"attention.head_count_kv", 1024},
            {"attention.key_length", 4096}, {"attention.value_length", 4096}, {"rope.dimension_count", 4096},
            {"context_length", int64_t(1) << 24}, {"vocab_size", int64_t(1) << 24}, {"expert_count", 1024},
            {"expert_used_count", 1024}, {"attention.sliding_window", int64_t(1) << 24},
        };
        for (const auto& [suffix, most] : kBounds)
            if (k == key(suffix) && v > most)
                fail(k, std::to_string(v) + " is larger than any model has (at most " + std::to_string(most) + ")");
    }
    int positive(const std::string& k, std::optional<int> fallback) const {
        if (auto v = positive(k)) return *v;
        if (fallback) return *fallback;
        fail(k, "missing");
    }
    std::optional<int> nonNegative(const std::string& k) const {
        const auto v = f_.getInteger(k);
        if (!v) return std::nullopt;
        if (*v < 0 || *v > INT_MAX) fail(k, std::to_string(*v) + " must be a non-negative integer");
        checkBound(k, *v);
        return int(*v);
    }
    std::optional<double> positiveNumber(const std::string& k) const {
        const auto v = f_.getNumber(k);
        if (!v) return std::nullopt;
        if (!(*v > 0) || !std::isfinite(*v)) fail(k, std::to_string(*v) + " must be a positive number");
        return *v;
    }
    std::optional<int> tokenId(const std::string& k) const { return nonNegative(k); }

private:
    const GgufFile& f_;
    std::string arch_;
};

std::string supportedArchs() {
    std::string s;
    for (const auto& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.name);
    return s;
}

bool allDigits(const std::string& s) {
    return !s.empty() && s.size() <= 6 && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

std::string blk(int l, const char* name) { return "blk." + std::to_string(l) + "." + name; }

// The first dimension of a tensor (its rows, or experts), or nullopt.
std::optional<int64_t> outerDim(const GgufFile& f, const std::string& name) {
    const GgufTensor* t = f.findTensor(name);
    return t ? std::optional<int64_t>(t->shape.front()) : std::nullopt;
}

// GGUF block tensor name -> Hugging Face name within the layer.
const std::map<std::string, std::string> kLayerNames = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_norm.bias", "input_layernorm.bias"}, // LayerNorm (phi2)
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_up.bias", "mlp.up_proj.bias"}, // phi2's fc1 / fc2 biases
    {"ffn_down.bias", "mlp.down_proj.bias"},
    {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight"},
};

} // namespace

bool isGgufPath(const fs::path& path) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    std::error_code ec;
    if (ext == ".gguf") return !fs::is_directory(path, ec);
    // Ollama's blobs (blobs/sha256-<hex>) are GGUF files without the extension: known by their magic.
    if (!fs::is_regular_file(path, ec)) return false;
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

std::vector<uint32_t> ggufUninterleavedRows(int heads, int headDim) {
    const uint32_t half = uint32_t(headDim) / 2;
    std::vector<uint32_t> order(size_t(heads) * size_t(headDim));
    for (uint32_t h = 0; h < uint32_t(heads); ++h)
        for (uint32_t s = 0; s < 2; ++s)
            for (uint32_t i = 0; i < half; ++i)
                order[h * headDim + s * half + i] = h * headDim + 2 * i + s;
    return order;
}

ModelConfig ggufModelConfig(const GgufFile& f) {
    const std::string file = f.path().string();
    const auto archName = f.getString("general.architecture");
    if (!archName) throw Error(file + ": general.architecture: missing");
    const GgufArch* ga = nullptr;
    for (const auto& a : kArchs)
        if (*archName == a.name) ga = &a;
    if (!ga)
        throw Error(file + ": general.architecture: \"" + *archName + "\" is not supported (supported: " +
                    supportedArchs() + ")");
    const Meta m(f, ga->name);

    ModelConfig c;
    c.dir = f.path();
    c.fromGguf = true;
    c.arch = ga->arch;
    c.architecture = ga->architecture;
    c.modelType = ga->name;
    c.qkRowsInterleaved = c.arch == Arch::Llama; // the converter permutes llama's q and k (LlamaModel.permute)

    const GgufTensor* embd = f.findTensor("token_embd.weight");
    if (!embd) throw Error(file + ": tensor token_embd.weight: missing");
    if (embd->shape.size() != 2) throw Error(file + ": tensor token_embd.weight: not a matrix");
    c.hiddenSize = m.positive(m.key("embedding_length"), std::nullopt);
    if (embd->shape[1] != c.hiddenSize)
        throw Error(file + ": tensor token_embd.weight: rows of " + std::to_string(embd->shape[1]) + ", but " +
                    m.key("embedding_length") + " is " + std::to_string(c.hiddenSize));
    if (embd->shape[0] > INT_MAX) throw Error(file + ": tensor token_embd.weight: too many rows");
    c.vocabSize = int(embd->shape[0]);
    if (auto v = m.positive(m.key("vocab_size")); v && *v != c.vocabSize)
        m.fail(m.key("vocab_size"), std::to_string(*v) + " disagrees with token_embd.weight's " +
                                        std::to_string(c.vocabSize) + " rows");
    c.numLayers = m.positive(m.key("block_count"), std::nullopt);
    c.intermediateSize = m.positive(m.key("feed_forward_length"), std::nullopt);
    c.numHeads = m.positive(m.key("attention.head_count"), std::nullopt);
    c.numKvHeads = m.positive(m.key("attention.head_count_kv"), c.numHeads);
    if (c.numHeads % c.numKvHeads != 0)
        m.fail(m.key("attention.head_count_kv"), std::to_string(c.numKvHeads) + " does not divide " +
                                                     m.key("attention.head_count") + " " + std::to_string(c.numHeads));
    const auto keyLength = m.positive(m.key("attention.key_length"));
    if (!keyLength && c.hiddenSize % c.numHeads != 0)
        m.fail(m.key("attention.key_length"), "missing, and embedding_length is not divisible by head_count");
    c.headDim = keyLength ? *keyLength : c.hiddenSize / c.numHeads;
    if (c.headDim % 2 != 0) m.fail(m.key("attention.key_length"), std::to_string(c.headDim) + " must be even for RoPE");
    if (auto v = m.positive(m.key("attention.value_length")); v && *v != c.headDim)
        m.fail(m.key("attention.value_length"), std::to_string(*v) + " differs from the key length " +
                                                    std::to_string(c.headDim) + " (not supported)");
    if (auto v = m.positive(m.key("rope.dimension_count")); v && *v != c.headDim) {
        // Phi-3's and Phi-2's partial rotary (Phi-4-mini: 96 of 128); elsewhere not supported.
        if ((c.arch != Arch::Phi3 && c.arch != Arch::Phi2) || *v > c.headDim || *v % 2 != 0)
            m.fail(m.key("rope.dimension_count"), "RoPE over " + std::to_string(*v) + " of the head's " +
                                                      std::to_string(c.headDim) + " dimensions is not supported");
        c.ropeDim = *v;
    }
    c.maxPositions = m.positive(m.key("context_length"), std::nullopt);
    // phi2's LayerNorm has its own key (llama.cpp's LLM_KV_ATTENTION_LAYERNORM_EPS).
    const std::string epsKey = m.key(c.arch == Arch::Phi2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon");
    const auto eps = m.positiveNumber(epsKey);
    if (!eps) m.fail(epsKey, "missing");
    c.normEps = float(*eps);
    c.attentionScale = float(1.0 / std::sqrt(double(c.headDim)));
    if (auto s = m.positiveNumber(m.key("attention.scale"))) c.attentionScale = float(*s);

    // RoPE: inv_freq[i] = 1 / base^(2i/d), divided by a linear scaling factor
    // and by rope_freqs[i] (the converter's Llama 3 factors).
    c.ropeTheta = float(m.positiveNumber(m.key("rope.freq_base")).value_or(10000.0));
    const int half = c.headDim / 2, rotHalf = c.rotaryDim() / 2;
    std::vector<double> invFreq(static_cast<size_t>(rotHalf));
    for (int i = 0; i < rotHalf; ++i) invFreq[size_t(i)] = 1.0 / std::pow(double(c.ropeTheta), 2.0 * i / c.rotaryDim());
    const std::string scaling = f.getString(m.key("rope.scaling.type")).value_or("none");
    if (scaling == "linear") {
        const double factor = m.positiveNumber(m.key("rope.scaling.factor")).value_or(1.0);
        for (double& v : invFreq) v /= factor;
    } else if (scaling != "none") {
        m.fail(m.key("rope.scaling.type"), "\"" + scaling + "\" is not supported (none, linear)");
    }
    if (const GgufTensor* t = f.findTensor("rope_freqs.weight")) {
        if (t->dtype != DType::F32 || t->shape != std::vector<int64_t>{rotHalf})
            throw Error(file + ": tensor rope_freqs.weight: must be f32 [" + std::to_string(rotHalf) + "]");
        const float* factors = reinterpret_cast<const float*>(t->data);
        for (int i = 0; i < rotHalf; ++i) {
            if (!(factors[i] > 0) || !std::isfinite(factors[i]))
                throw Error(file + ": tensor rope_freqs.weight: factor " + std::to_string(i) + " is not positive");
            invFreq[size_t(i)] /= factors[i];
        }
    }
    // Phi-3's LongRoPE: rope_factors_short / _long divide the frequencies;
    // llama.cpp picks one set for the whole context (long when the context is
    // longer than rope.scaling.original_context_length), the engine by
    // position as Transformers does when it generates, so the two agree
    // within the original context. cos/sin times rope.scaling.attn_factor.
    const GgufTensor* longF = f.findTensor("rope_factors_long.weight");
    const GgufTensor* shortF = f.findTensor("rope_factors_short.weight");
    if ((longF || shortF) && c.arch != Arch::Phi3)
        throw Error(file + ": tensor " + (longF ? longF : shortF)->name + ": LongRoPE factors in a " + *archName + " model");
    if (longF || shortF) {
        auto factors = [&](const GgufTensor* t, const char* name) {
            if (!t) throw Error(file + ": tensor " + std::string(name) + ": missing (LongRoPE needs both factor sets)");
            if (t->dtype != DType::F32 || t->shape != std::vector<int64_t>{rotHalf})
                throw Error(file + ": tensor " + t->name + ": must be f32 [" + std::to_string(rotHalf) + "]");
            const float* v = reinterpret_cast<const float*>(t->data);
            for (int i = 0; i < rotHalf; ++i)
                if (!(v[i] > 0) || !std::isfinite(v[i]))
                    throw Error(file + ": tensor " + t->name + ": factor " + std::to_string(i) + " is not positive");
            return v;
        };
        const float* lf = factors(longF, "rope_factors_long.weight");
        const float* sf = factors(shortF, "rope_factors_short.weight");
        c.ropeLongInvFreq.resize(size_t(rotHalf));
        for (int i = 0; i < rotHalf; ++i) {
            c.ropeLongInvFreq[size_t(i)] = float(invFreq[size_t(i)] / lf[i]);
            invFreq[size_t(i)] /= sf[i];
        }
        c.ropeOriginalMax = m.positive(m.key("rope.scaling.original_context_length"), std::nullopt);
        c.ropeAttnFactor = float(m.positiveNumber(m.key("rope.scaling.attn_factor")).value_or(1.0));
    }
    c.ropeInvFreq.assign(invFreq.begin(), invFreq.end());

    // What the tensors say: biases, q/k norms, tied output.
    c.attentionBias = f.findTensor(blk(0, "attn_q.bias")) || f.findTensor(blk(0, "attn_qkv.bias"));
    c.outputBias = f.findTensor(blk(0, "attn_output.bias")) != nullptr;
    c.qkNorm = f.findTensor(blk(0, "attn_q_norm.weight")) != nullptr;
    c.tieWordEmbeddings = f.findTensor("output.weight") == nullptr;
    if (c.arch == Arch::Qwen2 && !c.attentionBias) throw Error(file + ": tensor blk.0.attn_q.bias: missing (qwen2 has q/k/v biases)");
    if ((c.arch == Arch::Qwen3 || c.arch == Arch::Qwen3Moe) && !c.qkNorm)
        throw Error(file + ": tensor blk.0.attn_q_norm.weight: missing (" + *archName + " has q/k norms)");

    // llama.cpp runs phi3 without its sliding window (its loader turns it off).
    if (auto w = m.nonNegative(m.key("attention.sliding_window")); w && *w > 0 && c.arch != Arch::Phi3) {
        if (c.arch == Arch::Llama) c.arch = Arch::Mistral;
        c.slidingWindow = *w;
    }
    if (c.arch == Arch::Phi2) {
        // As llama.cpp's phi2 graph: LayerNorm with biases, parallel attention
        // and MLP, ffn_up -> GELU (tanh) -> ffn_down with biases, biased output.
        c.normKind = NormKind::Layer;
        c.parallelResidual = true;
        c.gatedMlp = false;
        c.hiddenAct = Activation::GeluTanh;
        c.mlpBias = true;
        c.lmHeadBias = true;
        for (const char* t : {"attn_norm.bias", "ffn_up.bias", "ffn_down.bias", "attn_output.bias"})
            if (!f.findTensor(blk(0, t))) throw Error(file + ": tensor " + blk(0, t) + ": missing (phi2 has it)");
        if (!c.attentionBias) throw Error(file + ": tensor blk.0.attn_q.bias: missing (phi2 has q/k/v biases)");
        if (!f.findTensor("output.bias")) throw Error(file + ": tensor output.bias: missing (phi2 has it)");
    }
    if (c.isGemma()) {
        // As llama.cpp runs gemma2 / gemma3: the converter stored 1 + w in
        // the norms, GeGLU, post-norms, embeddings times sqrt(n_embd), every
        // 2nd (gemma2) or 6th (gemma3) layer global, Gemma 3's sliding layers
        // on RoPE base 10000, and q scaled by head_dim^-0.5 (n_embd /
        // n_head for the 27B models, which llama.cpp knows by their layers).
        const bool gemma2 = c.arch == Arch::Gemma2;
        c.hiddenAct = Activation::GeluTanh;
        c.postNorms = true;
        c.embedScale = std::sqrt(float(c.hiddenSize));
        if (c.slidingWindow == 0) {
            if (!gemma2) m.fail(m.key("attention.sliding_window"), "missing");
            c.slidingWindow = 4096; // llama.cpp's default for gemma2
        }
        const int pattern = gemma2 ? 2 : 6;
        c.slidingLayers.resize(size_t(c.numLayers));
        for (int i = 0; i < c.numLayers; ++i) c.slidingLayers[size_t(i)] = i % pattern < pattern - 1;
        if (c.numLayers == (gemma2 ? 46 : 62)) c.attentionScale = float(1.0 / std::sqrt(double(c.hiddenSize / c.numHeads)));
        if (gemma2) c.attnSoftcap = float(m.positiveNumber(m.key("attn_logit_softcapping")).value_or(50.0));
        c.finalSoftcap = float(m.positiveNumber(m.key("final_logit_softcapping")).value_or(gemma2 ? 30.0 : 0.0));
        if (!gemma2) {
            c.ropeLocalTheta = 10000.0f;
            c.ropeLocalInvFreq.resize(size_t(half));
            for (int i = 0; i < half; ++i)
                c.ropeLocalInvFreq[size_t(i)] = float(1.0 / std::pow(10000.0, 2.0 * i / c.headDim));
        }
        if (!gemma2 && !c.qkNorm) throw Error(file + ": tensor blk.0.attn_q_norm.weight: missing (gemma3 has q/k norms)");
    }

    // Experts: llama with experts is Mixtral. llama.cpp renormalises the
    // top-k weights for llama and qwen3moe, not for qwen2moe.
    c.numExperts = m.nonNegative(m.key("expert_count")).value_or(0);
    if (c.numExperts > 0) {
        if (c.arch == Arch::Llama || c.arch == Arch::Mistral) {
            c.arch = Arch::Mixtral;
            c.architecture = "MixtralForCausalLM";
        }
        if (c.arch == Arch::Qwen2) m.fail(m.key("expert_count"), "qwen2 has no experts (qwen2moe does)");
        if (c.arch == Arch::Qwen3) m.fail(m.key("expert_count"), "qwen3 has no experts (qwen3moe does)");
        c.numExpertsField = m.key("expert_count");
        c.expertsPerToken = m.positive(m.key("expert_used_count"), std::nullopt);
        if (c.expertsPerToken > c.numExperts)
            m.fail(m.key("expert_used_count"), std::to_string(c.expertsPerToken) + " is more than expert_count " +
                                                   std::to_string(c.numExperts));
        c.normTopkProb = c.arch != Arch::Qwen2Moe;
        if (c.arch != Arch::Mixtral) {
            const auto width = outerDim(f, blk(0, "ffn_gate_exps.weight"));
            c.moeIntermediateSize = m.positive(m.key("expert_feed_forward_length"),
                                               width ? std::optional<int>(int(std::min<int64_t>(*width, INT_MAX))) : std::nullopt);
        }
        if (c.arch == Arch::Qwen2Moe) {
            const auto shared = outerDim(f, blk(0, "ffn_gate_shexp.weight"));
            c.sharedExpertIntermediateSize =
                shared ? m.positive(m.key("expert_shared_feed_forward_length"), int(std::min<int64_t>(*shared, INT_MAX))) : 0;
        }
        // Layers without a router are dense.
        for (int l = 0; l < c.numLayers; ++l)
            if (!f.findTensor(blk(l, "ffn_gate_inp.weight"))) c.mlpOnlyLayers.push_back(l);
    } else if (c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe) {
        m.fail(m.key("expert_count"), "missing (a " + *archName + " model has experts)");
    }

    if (auto id = m.tokenId("tokenizer.ggml.bos_token_id")) c.bosTokenIds = {*id};
    for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
        if (auto id = m.tokenId(k); id && std::find(c.eosTokenIds.begin(), c.eosTokenIds.end(), *id) == c.eosTokenIds.end())
            c.eosTokenIds.push_back(*id);
    for (int id : c.bosTokenIds)
        if (id >= c.vocabSize) m.fail("tokenizer.ggml.bos_token_id", std::to_string(id) + " is past the vocabulary");
    for (int id : c.eosTokenIds)
        if (id >= c.vocabSize) m.fail("tokenizer.ggml.eos_token_id", std::to_string(id) + " is past the vocabulary");
    c.torchDtype = "gguf";
    return c;
}

std::unique_ptr<WeightStore> ggufWeightStore(std::shared_ptr<const GgufFile> file, const ModelConfig& c) {
    const GgufFile& f = *file;
    const std::string where = f.path().string();
    const bool mixtral = c.arch == Arch::Mixtral;
    const std::string moe = mixtral ? "block_sparse_moe." : "mlp.";
    const char* gateProj = mixtral ? "w1.weight" : "gate_proj.weight";
    const char* downProj = mixtral ? "w2.weight" : "down_proj.weight";
    const char* upProj = mixtral ? "w3.weight" : "up_proj.weight";


    std::vector<TensorView> views;
    auto view = [&](const GgufTensor& t, std::string name) {
        // A file opened with GgufOpenOptions::keepUnreadTypes can hold types the engine cannot read.
        if (!t.dtype && !t.quant)
            throw Error(where + ": tensor " + t.name + ": tensor type " + ggmlTypeName(t.ggmlType) +
                        " is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k are)");
        TensorView v;
        v.name = std::move(name);
        v.dtype = t.dtype ? *t.dtype : toDType(*t.quant);
        v.shape = t.shape;
        v.data = t.data;
        v.nbytes = t.nbytes;
        v.file = &f.mapping();
        return v;
    };
    auto unknown = [&](const GgufTensor& t) {
        throw Error(where + ": tensor " + t.name + ": not a tensor of a " + c.modelType +
                    " model the engine runs (an unsupported feature of this file)");
    };

    for (const GgufTensor& t : f.tensors()) {
        if (t.name == "token_embd.weight") views.push_back(view(t, "model.embed_tokens.weight"));
        else if (t.name == "output_norm.weight") views.push_back(view(t, "model.norm.weight"));
        else if (t.name == "output.weight") views.push_back(view(t, "lm_head.weight"));
        else if (t.name == "output_norm.bias" && c.arch == Arch::Phi2) views.push_back(view(t, "model.norm.bias"));
        else if (t.name == "output.bias" && c.arch == Arch::Phi2) views.push_back(view(t, "lm_head.bias"));
        else if (t.name == "rope_freqs.weight") continue; // folded into ModelConfig::ropeInvFreq
        else if (t.name == "rope_factors_long.weight" || t.name == "rope_factors_short.weight") continue; // likewise
        else if (t.name.rfind("blk.", 0) == 0) {
            const size_t dot = t.name.find('.', 4);
            if (dot == std::string::npos) unknown(t);
            const std::string index = t.name.substr(4, dot - 4);
            if (!allDigits(index)) unknown(t);
            const int l = std::stoi(index);
            if (l >= c.numLayers)
                throw Error(where + ": tensor " + t.name + ": layer " + index + ", but " + c.modelType +
                            ".block_count is " + std::to_string(c.numLayers));
            const std::string rest = t.name.substr(dot + 1);
            const std::string layer = "model.layers." + std::to_string(l) + ".";
            if (c.isGemma() && (rest == "ffn_norm.weight" || rest == "post_attention_norm.weight" ||
                                rest == "post_ffw_norm.weight")) {
                // Gemma's four norms: ffn_norm is the pre-feed-forward one.
                views.push_back(view(t, layer + (rest == "ffn_norm.weight"            ? "pre_feedforward_layernorm.weight"
                                                 : rest == "post_attention_norm.weight" ? "post_attention_layernorm.weight"
                                                                                        : "post_feedforward_layernorm.weight")));
            } else if (c.arch == Arch::Phi3 && (rest == "attn_qkv.weight" || rest == "ffn_up.weight")) {
                // Fused as in the checkpoint (qkv rows q, k, v; ffn_up rows gate, up): split below.
                views.push_back(view(t, layer + (rest == "attn_qkv.weight" ? "self_attn.qkv_proj.weight" : "mlp.gate_up_proj.weight")));
            } else if (c.arch == Arch::Phi2 && (rest == "attn_qkv.weight" || rest == "attn_qkv.bias")) {
                // phi2 files converted from the original checkpoints fuse q, k and v (split below).
                views.push_back(view(t, layer + "self_attn.qkv_proj." + rest.substr(rest.find('.') + 1)));
            } else if (auto it = kLayerNames.find(rest); it != kLayerNames.end()) {
                views.push_back(view(t, layer + it->second));
            } else if (rest == "ffn_gate_inp.weight" && c.isMoe()) {
                views.push_back(view(t, layer + moe + "gate.weight"));
            } else if (rest == "ffn_gate_inp_shexp.weight" && c.arch == Arch::Qwen2Moe) {
                TensorView v = view(t, layer + "mlp.shared_expert_gate.weight");
                v.shape = {1, t.shape.back()};
                if (t.shape.size() != 1 && !(t.shape.size() == 2 && t.shape[0] == 1))
                    throw Error(where + ": tensor " + t.name + ": must be a vector of embedding_length weights");
                views.push_back(std::move(v));
            } else if (c.isMoe() && (rest == "ffn_gate_exps.weight" || rest == "ffn_up_exps.weight" ||
                                     rest == "ffn_down_exps.weight")) {
                if (t.shape.size() != 3 || t.shape[0] != c.numExperts)
                    throw Error(where + ": tensor " + t.name + ": must be [" + std::to_string(c.numExperts) +
                                ", rows, columns] (" + c.numExpertsField + " experts)");
                const char* proj = rest[4] == 'g' ? gateProj : rest[4] == 'u' ? upProj : downProj;
                const size_t perExpert = t.nbytes / size_t(c.numExperts);
                for (int e = 0; e < c.numExperts; ++e) {
                    TensorView v = view(t, layer + moe + "experts." + std::to_string(e) + "." + proj);
                    v.shape = {t.shape[1], t.shape[2]};
                    v.data = t.data + size_t(e) * perExpert;
                    v.nbytes = perExpert;
                    views.push_back(std::move(v));
                }
            } else if (c.isMoe() && rest.rfind("ffn_", 0) == 0) {
                // Older llama.cpp files: one tensor per expert, blk.N.ffn_gate.E.weight.
                const size_t d1 = rest.find('.'), d2 = rest.find('.', d1 + 1);
                const std::string kind = rest.substr(0, d1);
                const std::string e = d2 == std::string::npos ? "" : rest.substr(d1 + 1, d2 - d1 - 1);
                if (!allDigits(e) ||
                    rest.substr(d2 + 1) != "weight" || (kind != "ffn_gate" && kind != "ffn_up" && kind != "ffn_down"))
                    unknown(t);
                if (std::stoi(e) >= c.numExperts)
                    throw Error(where + ": tensor " + t.name + ": expert " + e + ", but " + c.numExpertsField + " is " +
                                std::to_string(c.numExperts));
                const char* proj = kind == "ffn_gate" ? gateProj : kind == "ffn_up" ? upProj : downProj;
                views.push_back(view(t, layer + moe + "experts." + std::to_string(std::stoi(e)) + "." + proj));
            } else {
                unknown(t);
            }
        } else {
            unknown(t);
        }
    }
    auto store = WeightStore::fromViews(f.path(), std::move(views), std::move(file));
    useEngineTensorNames(*store, c);
    return store;
}

std::string ggufLayerTensorName(const std::string& hfName) {
    for (const auto& [gguf, hf] : kLayerNames)
        if (hf == hfName) return gguf;
    return {};
}

namespace {
// Phi-2's module names -> the engine's, within a layer.
constexpr std::pair<const char*, const char*> kPhi2Modules[] = {
    {"self_attn.dense.", "self_attn.o_proj."}, {"mlp.fc1.", "mlp.up_proj."}, {"mlp.fc2.", "mlp.down_proj."}};
} // namespace

void useEngineTensorNames(WeightStore& store, const ModelConfig& c) {
    const int64_t qDim = int64_t(c.numHeads) * c.headDim, kvDim = int64_t(c.numKvHeads) * c.headDim;
    if (c.arch == Arch::Phi2) {
        for (int l = 0; l < c.numLayers; ++l) {
            const std::string p = c.weightPrefix + "layers." + std::to_string(l) + ".self_attn.";
            for (const char* kind : {".weight", ".bias"})
                if (store.find(p + "qkv_proj" + kind))
                    store.splitRows(p + "qkv_proj" + kind, {{p + "q_proj" + kind, qDim}, {p + "k_proj" + kind, kvDim},
                                                            {p + "v_proj" + kind, kvDim}});
        }
        auto rename = [&](const std::string& from, const std::string& to) {
            if (store.find(from)) store.rename(from, {to});
        };
        for (const char* kind : {"weight", "bias"}) {
            rename(c.weightPrefix + "final_layernorm." + kind, c.weightPrefix + "norm." + kind);
            for (int l = 0; l < c.numLayers; ++l) {
                const std::string p = c.weightPrefix + "layers." + std::to_string(l) + ".";
                for (const auto& [phi, engine] : kPhi2Modules) rename(p + phi + kind, p + engine + kind);
            }
        }
        return;
    }
    if (c.arch != Arch::Phi3) return;
    const int64_t I = c.intermediateSize;
    for (int l = 0; l < c.numLayers; ++l) {
        const std::string p = c.weightPrefix + "layers." + std::to_string(l) + ".";
        if (store.find(p + "self_attn.qkv_proj.weight"))
            store.splitRows(p + "self_attn.qkv_proj.weight",
                            {{p + "self_attn.q_proj.weight", qDim}, {p + "self_attn.k_proj.weight", kvDim},
                             {p + "self_attn.v_proj.weight", kvDim}});
        if (store.find(p + "mlp.gate_up_proj.weight"))
            store.splitRows(p + "mlp.gate_up_proj.weight", {{p + "mlp.gate_proj.weight", I}, {p + "mlp.up_proj.weight", I}});
    }
}

void useEngineLoraNames(WeightStore& adapter) {
    for (const std::string& name : adapter.names()) {
        for (const auto& [phi, engine] : kPhi2Modules) {
            const size_t at = name.find(std::string(".") + phi + "lora_");
            if (at != std::string::npos)
                adapter.rename(name, {name.substr(0, at + 1) + engine + name.substr(at + 1 + std::string(phi).size())});
        }
        const size_t at = name.find(".gate_up_proj.lora_");
        if (at == std::string::npos) continue;
        const std::string head = name.substr(0, at), tail = name.substr(at + std::string(".gate_up_proj").size());
        const std::string gate = head + ".gate_proj" + tail, up = head + ".up_proj" + tail;
        if (tail.rfind(".lora_A", 0) == 0) {
            adapter.rename(name, {gate, up});
        } else if (tail.rfind(".lora_B", 0) == 0) {
            const TensorView& b = adapter.require(name);
            if (b.shape.size() != 2 || b.shape[0] % 2 != 0)
                throw Error(adapter.folder().string() + ": tensor " + name + " has shape " + b.shapeString() +
                            ", expected [2 * intermediate_size, r] (gate rows, then up rows)");
            const int64_t half = b.shape[0] / 2;
            adapter.splitRows(name, {{gate, half}, {up, half}});
        }
    }
}

std::shared_ptr<const WeightStore> openModelWeights(const fs::path& path) {
    if (!isGgufPath(path)) {
        auto store = WeightStore::openFolder(path);
        std::error_code ec;
        if (fs::is_regular_file(path / "adapter_config.json", ec)) {
            useEngineLoraNames(*store);
            return store;
        }
        if (fs::is_regular_file(path / "config.json", ec)) {
            // Only Phi-3 has fused tensors to split; other folders (and ones
            // whose config the engine does not read) open as they are.
            ModelConfig c;
            try {
                c = ModelConfig::load(path);
            } catch (const Error&) {
                return store;
            }
            useEngineTensorNames(*store, c);
        }
        return store;
    }
    auto file = GgufFile::open(path);
    const ModelConfig config = ggufModelConfig(*file);
    return ggufWeightStore(std::move(file), config);
}

} // namespace moe
