// make-random-model: writes a Hugging Face style model folder (config.json,
// generation_config.json, safetensors, optionally sharded) with random
// weights, for tests and benchmarks of architectures/sizes we have no real
// checkpoint for. The weights are deterministic for a given --seed and do not
// depend on the shard count or the number of threads.
#include "moe/error.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <numbers>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kUsage = R"(usage: make-random-model --out DIR [options]

  --preset NAME            shapes of a released model (other flags override):
                           qwen2-0.5b (Qwen2-0.5B), qwen3-0.6b (Qwen3-0.6B),
                           gemma2-2b (Gemma-2-2B), gemma3-1b (Gemma-3-1B),
                           phi4-mini (Phi-4-mini), phi2 (Phi-2)
  --arch llama|mistral|qwen2|qwen3|mixtral|qwen2_moe|qwen3_moe|gemma2|gemma3|phi3|phi2
  --partial-rotary X       phi3, phi2: partial_rotary_factor (default 1)
  --longrope N             phi3: rope_scaling longrope with random short/long
                           factors, original_max_position_embeddings N
  --experts N              MoE archs: experts per layer (default 8)
  --top-k N                MoE archs: experts per token (default 2)
  --moe-intermediate N     qwen2_moe, qwen3_moe: expert width (default
                           --intermediate, which is the dense layers' width)
  --shared-intermediate N  qwen2_moe: shared expert width (default --intermediate)
  --decoder-sparse-step N  qwen2_moe, qwen3_moe: every Nth layer sparse (default 1)
  --mlp-only-layers L,L    qwen2_moe, qwen3_moe: layers kept dense
  --no-norm-topk           qwen2_moe, qwen3_moe: norm_topk_prob false (default true)
  --fused-experts          MoE archs: the fused layout of Transformers 5
                           (mlp.gate, mlp.experts.gate_up_proj [E, 2I, H] with
                           the gate rows first, mlp.experts.down_proj [E, H, I])
                           instead of one tensor per expert and projection
  --attention-bias         llama, qwen3, qwen3_moe: attention_bias (q/k/v/o biases)
  --init-std X             standard deviation of the matrices (default 0.02)
  --hidden N  --layers N  --heads N  --kv-heads N  --intermediate N  --vocab N
  --head-dim N             default hidden / heads
  --dtype bf16|f16|f32     default bf16
  --seed S                 default 0
  --tie-embeddings         no lm_head.weight; the embedding is reused
  --sliding-window N       mistral / mixtral / qwen2 / qwen3 / gemma2 / gemma3
                           (gemma: default 4096, on the sliding layers only)
  --query-pre-attn-scalar X  gemma2, gemma3: attention scale X^-0.5 (default head dim)
  --attn-softcap X         gemma2: attn_logit_softcapping (default 50; 0 = null)
  --final-softcap X        gemma2, gemma3: final_logit_softcapping (gemma2
                           default 30, gemma3 default null; 0 = null)
  --sliding-window-pattern N  gemma3: every Nth layer global (default 6)
  --max-pos N              max_position_embeddings (default 2048)
  --rope-theta X           default 10000 (qwen2: 1000000)
  --shards N               split into N files with model.safetensors.index.json
  --tokenizer-from DIR     copy tokenizer files (and bos/eos ids) from DIR
)";

struct Options {
    fs::path out;
    std::string preset;
    std::string arch = "llama";
    int hidden = 0, layers = 0, heads = 0, kvHeads = 0, intermediate = 0, vocab = 0, headDim = 0;
    moe::DType dtype = moe::DType::BF16;
    uint64_t seed = 0;
    bool tieEmbeddings = false;
    int slidingWindow = 0;
    int maxPositions = 2048;
    double ropeTheta = 0; // 0 = per-architecture default
    int shards = 1;
    fs::path tokenizerFrom;
    int experts = 8, topK = 2;
    bool fusedExperts = false;
    int moeIntermediate = 0, sharedIntermediate = 0, decoderSparseStep = 1; // qwen2_moe, qwen3_moe
    std::vector<int> mlpOnlyLayers;
    bool normTopk = true;
    bool attentionBias = false;
    float initStd = 0.02f;
    double queryPreAttnScalar = 0;          // gemma: 0 = head dim
    double attnSoftcap = -1, finalSoftcap = -1; // gemma: -1 = the architecture's default, 0 = null
    int slidingPattern = 6;                  // gemma3
    double partialRotary = 1;                // phi3
    int longropeOriginal = 0;                // phi3: 0 = no rope_scaling
    bool gemma() const { return arch == "gemma2" || arch == "gemma3"; }
    bool qwenMoe() const { return arch == "qwen2_moe" || arch == "qwen3_moe"; }
    bool moe() const { return arch == "mixtral" || qwenMoe(); }
    bool sparseLayer(int layer) const {
        if (arch == "mixtral") return true;
        if (!qwenMoe()) return false;
        return std::find(mlpOnlyLayers.begin(), mlpOnlyLayers.end(), layer) == mlpOnlyLayers.end() &&
               (layer + 1) % decoderSparseStep == 0;
    }
};

[[noreturn]] void usageError(const std::string& what) {
    throw std::invalid_argument(what);
}

int parsePositive(const std::string& flag, const std::string& text) {
    try {
        size_t used = 0;
        const long v = std::stol(text, &used);
        if (used == text.size() && v > 0 && v <= INT32_MAX) return static_cast<int>(v);
    } catch (const std::exception&) {
    }
    usageError(flag + " needs a positive integer, got \"" + text + "\"");
}

void applyPreset(Options& o, const std::string& preset) {
    if (preset == "gemma2-2b" || preset == "gemma3-1b") {
        const bool g2 = preset == "gemma2-2b";
        o.arch = g2 ? "gemma2" : "gemma3";
        o.hidden = g2 ? 2304 : 1152;
        o.layers = 26;
        o.heads = g2 ? 8 : 4;
        o.kvHeads = g2 ? 4 : 1;
        o.headDim = 256;
        o.intermediate = g2 ? 9216 : 6912;
        o.vocab = g2 ? 256000 : 262144;
        o.tieEmbeddings = true;
        o.dtype = moe::DType::BF16;
        o.maxPositions = g2 ? 8192 : 32768;
        o.ropeTheta = g2 ? 10000.0 : 1000000.0;
        o.slidingWindow = g2 ? 4096 : 512;
        o.queryPreAttnScalar = 256;
        return;
    }
    if (preset == "phi4-mini") { // microsoft/Phi-4-mini-instruct's config.json
        o.arch = "phi3";
        o.hidden = 3072;
        o.layers = 32;
        o.heads = 24;
        o.kvHeads = 8;
        o.headDim = 128;
        o.intermediate = 8192;
        o.vocab = 200064;
        o.tieEmbeddings = true;
        o.dtype = moe::DType::BF16;
        o.maxPositions = 131072;
        o.ropeTheta = 10000.0;
        o.partialRotary = 0.75;
        o.longropeOriginal = 4096;
        return;
    }
    if (preset == "phi2") { // microsoft/phi-2's config.json
        o.arch = "phi2";
        o.hidden = 2560;
        o.layers = 32;
        o.heads = 32;
        o.kvHeads = 32;
        o.intermediate = 10240;
        o.vocab = 51200;
        o.dtype = moe::DType::F16;
        o.maxPositions = 2048;
        o.ropeTheta = 10000.0;
        o.partialRotary = 0.4;
        return;
    }
    if (preset == "qwen3-0.6b") {
        o.arch = "qwen3";
        o.hidden = 1024;
        o.layers = 28;
        o.heads = 16;
        o.kvHeads = 8;
        o.headDim = 128;
        o.intermediate = 3072;
        o.vocab = 151936;
        o.tieEmbeddings = true;
        o.dtype = moe::DType::BF16;
        o.maxPositions = 40960;
        o.ropeTheta = 1000000.0;
        return;
    }
    if (preset != "qwen2-0.5b") usageError("unknown --preset \"" + preset + "\" (known: qwen2-0.5b, qwen3-0.6b, gemma2-2b, gemma3-1b, phi4-mini, phi2)");
    o.arch = "qwen2";
    o.hidden = 896;
    o.layers = 24;
    o.heads = 14;
    o.kvHeads = 2;
    o.headDim = 64;
    o.intermediate = 4864;
    o.vocab = 151936;
    o.tieEmbeddings = true;
    o.dtype = moe::DType::BF16;
    o.maxPositions = 32768;
    o.ropeTheta = 1000000.0;
}

Options parseArgs(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    Options o;
    // The preset goes first so that explicit flags override it wherever they are.
    for (size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--preset") applyPreset(o, args[i + 1]);

    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& flag = args[i];
        if (flag == "--help" || flag == "-h") {
            std::cout << kUsage;
            std::exit(0);
        }
        if (flag == "--tie-embeddings") {
            o.tieEmbeddings = true;
            continue;
        }
        if (flag == "--no-norm-topk") {
            o.normTopk = false;
            continue;
        }
        if (flag == "--fused-experts") {
            o.fusedExperts = true;
            continue;
        }
        if (flag == "--attention-bias") {
            o.attentionBias = true;
            continue;
        }
        if (i + 1 >= args.size()) usageError(flag + " needs a value");
        const std::string value = args[++i];
        if (flag == "--out") o.out = value;
        else if (flag == "--preset") o.preset = value; // already applied
        else if (flag == "--arch") o.arch = value;
        else if (flag == "--hidden") o.hidden = parsePositive(flag, value);
        else if (flag == "--layers") o.layers = parsePositive(flag, value);
        else if (flag == "--heads") o.heads = parsePositive(flag, value);
        else if (flag == "--kv-heads") o.kvHeads = parsePositive(flag, value);
        else if (flag == "--intermediate") o.intermediate = parsePositive(flag, value);
        else if (flag == "--vocab") o.vocab = parsePositive(flag, value);
        else if (flag == "--head-dim") o.headDim = parsePositive(flag, value);
        else if (flag == "--sliding-window") o.slidingWindow = parsePositive(flag, value);
        else if (flag == "--max-pos") o.maxPositions = parsePositive(flag, value);
        else if (flag == "--shards") o.shards = parsePositive(flag, value);
        else if (flag == "--experts") o.experts = parsePositive(flag, value);
        else if (flag == "--top-k") o.topK = parsePositive(flag, value);
        else if (flag == "--moe-intermediate") o.moeIntermediate = parsePositive(flag, value);
        else if (flag == "--shared-intermediate") o.sharedIntermediate = parsePositive(flag, value);
        else if (flag == "--decoder-sparse-step") o.decoderSparseStep = parsePositive(flag, value);
        else if (flag == "--mlp-only-layers") {
            std::stringstream list(value);
            for (std::string item; std::getline(list, item, ',');) {
                try {
                    size_t used = 0;
                    const int layer = std::stoi(item, &used);
                    if (used != item.size() || layer < 0) throw std::invalid_argument(item);
                    o.mlpOnlyLayers.push_back(layer);
                } catch (const std::exception&) {
                    usageError("--mlp-only-layers needs layer numbers separated by commas, got \"" + value + "\"");
                }
            }
        }
        else if (flag == "--tokenizer-from") o.tokenizerFrom = value;
        else if (flag == "--seed") {
            try {
                size_t used = 0;
                o.seed = std::stoull(value, &used);
                if (used != value.size()) throw std::invalid_argument(value);
            } catch (const std::exception&) {
                usageError("--seed needs a non-negative integer, got \"" + value + "\"");
            }
        } else if (flag == "--init-std") {
            try {
                o.initStd = std::stof(value);
            } catch (const std::exception&) {
                o.initStd = 0;
            }
            if (!(o.initStd > 0)) usageError("--init-std needs a positive number, got \"" + value + "\"");
        } else if (flag == "--query-pre-attn-scalar" || flag == "--attn-softcap" || flag == "--final-softcap") {
            double v = -1;
            try {
                size_t used = 0;
                v = std::stod(value, &used);
                if (used != value.size()) v = -1;
            } catch (const std::exception&) {
            }
            const bool scalar = flag == "--query-pre-attn-scalar";
            if (!(scalar ? v > 0 : v >= 0)) usageError(flag + " needs a " + (scalar ? "positive" : "non-negative") + " number, got \"" + value + "\"");
            (scalar ? o.queryPreAttnScalar : flag == "--attn-softcap" ? o.attnSoftcap : o.finalSoftcap) = v;
        } else if (flag == "--partial-rotary") {
            double v = 0;
            try {
                v = std::stod(value);
            } catch (const std::exception&) {
            }
            if (!(v > 0 && v <= 1)) usageError("--partial-rotary needs a number in (0, 1], got \"" + value + "\"");
            o.partialRotary = v;
        } else if (flag == "--longrope") {
            o.longropeOriginal = parsePositive(flag, value);
        } else if (flag == "--sliding-window-pattern") {
            o.slidingPattern = parsePositive(flag, value);
        } else if (flag == "--rope-theta") {
            try {
                o.ropeTheta = std::stod(value);
            } catch (const std::exception&) {
            }
            if (!(o.ropeTheta > 0)) usageError("--rope-theta needs a positive number, got \"" + value + "\"");
        } else if (flag == "--dtype") {
            if (value == "bf16") o.dtype = moe::DType::BF16;
            else if (value == "f16") o.dtype = moe::DType::F16;
            else if (value == "f32") o.dtype = moe::DType::F32;
            else usageError("--dtype must be bf16, f16 or f32, got \"" + value + "\"");
        } else {
            usageError("unknown option " + flag);
        }
    }

    if (o.out.empty()) usageError("--out DIR is required");
    if (o.arch != "llama" && o.arch != "mistral" && o.arch != "qwen2" && o.arch != "qwen3" && !o.moe() && !o.gemma() &&
        o.arch != "phi3" && o.arch != "phi2")
        usageError("--arch must be llama, mistral, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe, gemma2, gemma3, phi3 or "
                   "phi2, got \"" + o.arch + "\"");
    if (o.arch != "phi3" && o.arch != "phi2" && o.partialRotary != 1) usageError("--partial-rotary needs --arch phi3 or phi2");
    if (o.arch != "phi3" && o.longropeOriginal > 0) usageError("--longrope needs --arch phi3");
    if (o.arch == "phi2" && (o.tieEmbeddings || o.headDim != 0 || o.attentionBias))
        usageError("phi2 has an untied lm_head, head_dim = hidden / heads and biases everywhere already "
                   "(no --tie-embeddings, --head-dim, --attention-bias)");
    if (!o.gemma() && (o.queryPreAttnScalar > 0 || o.attnSoftcap >= 0 || o.finalSoftcap >= 0))
        usageError("--query-pre-attn-scalar, --attn-softcap and --final-softcap need --arch gemma2 or gemma3");
    if (o.arch == "gemma3" && o.attnSoftcap > 0) usageError("--attn-softcap needs --arch gemma2 (Gemma 3 has none)");
    const bool qwenMoeFlags = o.moeIntermediate || o.decoderSparseStep != 1 || !o.mlpOnlyLayers.empty() || !o.normTopk;
    if (qwenMoeFlags && !o.qwenMoe())
        usageError("--moe-intermediate, --decoder-sparse-step, --mlp-only-layers and --no-norm-topk need --arch "
                   "qwen2_moe or qwen3_moe");
    if (o.sharedIntermediate && o.arch != "qwen2_moe") usageError("--shared-intermediate needs --arch qwen2_moe");
    if (o.attentionBias && o.arch != "llama" && o.arch != "qwen3" && o.arch != "qwen3_moe")
        usageError("--attention-bias needs --arch llama, qwen3 or qwen3_moe");
    for (int layer : o.mlpOnlyLayers)
        if (o.layers > 0 && layer >= o.layers) usageError("--mlp-only-layers names layer " + std::to_string(layer) +
                                                          ", but the model has " + std::to_string(o.layers));
    if (o.topK > o.experts) usageError("--top-k must not exceed --experts");
    if (o.fusedExperts && !o.moe()) usageError("--fused-experts needs --arch mixtral, qwen2_moe or qwen3_moe");
    const std::pair<const char*, int> required[] = {{"--hidden", o.hidden},   {"--layers", o.layers},
                                                    {"--heads", o.heads},     {"--intermediate", o.intermediate},
                                                    {"--vocab", o.vocab}};
    for (const auto& [flag, value] : required)
        if (value <= 0) usageError(std::string(flag) + " is required (or use --preset)");
    if (o.kvHeads == 0) o.kvHeads = o.heads;
    if (o.heads % o.kvHeads != 0) usageError("--heads must be a multiple of --kv-heads");
    if (o.headDim == 0) {
        if (o.hidden % o.heads != 0) usageError("--hidden is not divisible by --heads; give --head-dim");
        o.headDim = o.hidden / o.heads;
    }
    if (o.headDim % 2 != 0) usageError("the head dimension must be even");
    if (o.slidingWindow > 0 && o.arch == "llama") usageError("--sliding-window needs another --arch than llama");
    // Mixtral's and Qwen's released models use 1e6 (and Transformers' Mixtral defaults to it).
    if (o.ropeTheta == 0)
        o.ropeTheta = o.arch == "qwen2" || o.arch == "qwen3" || o.moe() || o.arch == "gemma3" ? 1000000.0 : 10000.0;
    if (o.gemma()) {
        if (o.slidingWindow == 0) o.slidingWindow = 4096;
        if (o.queryPreAttnScalar == 0) o.queryPreAttnScalar = o.headDim;
        if (o.attnSoftcap < 0) o.attnSoftcap = o.arch == "gemma2" ? 50.0 : 0.0;
        if (o.finalSoftcap < 0) o.finalSoftcap = o.arch == "gemma2" ? 30.0 : 0.0;
    }
    if (o.moeIntermediate == 0) o.moeIntermediate = o.intermediate;
    if (o.sharedIntermediate == 0) o.sharedIntermediate = o.intermediate;
    return o;
}

// ---------------------------------------------------------------------------
// Random numbers: splitmix64 (tiny, fast, good enough for weights) feeding
// Box-Muller, which yields two normals per 64-bit draw.

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t mixSeed(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t s = a;
    s ^= splitmix64(s) + b;
    s ^= splitmix64(s) + c;
    return splitmix64(s);
}

enum class Init { Matrix, Norm, GemmaNorm, Bias };

struct PlannedTensor {
    std::string name;
    std::vector<int64_t> shape;
    Init init;
    size_t numel() const {
        size_t n = 1;
        for (int64_t d : shape) n *= static_cast<size_t>(d);
        return n;
    }
};

void storeValue(std::byte* out, size_t i, float v, moe::DType dtype) {
    if (dtype == moe::DType::F32) {
        std::memcpy(out + i * 4, &v, 4);
        return;
    }
    const uint16_t h = dtype == moe::DType::BF16 ? moe::floatToBf16(v) : moe::floatToF16(v);
    std::memcpy(out + i * 2, &h, 2);
}

// Fills one tensor's bytes. Work is cut into fixed chunks, each with its own
// seed, so the result is the same whatever the thread count.
std::vector<std::byte> generate(const PlannedTensor& t, size_t tensorIndex, moe::DType dtype, uint64_t seed,
                                float matrixStd) {
    const size_t n = t.numel();
    std::vector<std::byte> bytes(n * moe::dtypeSize(dtype));
    constexpr size_t kChunk = size_t(1) << 18;
    const size_t chunks = (n + kChunk - 1) / kChunk;
    std::atomic<size_t> nextChunk{0};

    auto worker = [&] {
        for (size_t c; (c = nextChunk.fetch_add(1)) < chunks;) {
            uint64_t state = mixSeed(seed, tensorIndex, c);
            const size_t begin = c * kChunk, end = std::min(n, begin + kChunk);
            for (size_t i = begin; i < end; i += 2) {
                const uint64_t r = splitmix64(state);
                // u1 in (0, 1] so the log is finite; u2 in [0, 1).
                const float u1 = float((r >> 40) + 1) * 0x1p-24f;
                const float u2 = float((r >> 8) & 0xffffff) * 0x1p-24f;
                float a, b;
                if (t.init == Init::Norm || t.init == Init::GemmaNorm) { // 1 ± 0.1, uniform; Gemma's w of (1 + w): ± 0.1
                    const float mean = t.init == Init::Norm ? 1.0f : 0.0f;
                    a = mean + 0.2f * (u1 - 0.5f);
                    b = mean + 0.2f * (u2 - 0.5f);
                } else {
                    const float stddev = t.init == Init::Matrix ? matrixStd : 0.01f;
                    const float radius = stddev * std::sqrt(-2.0f * std::log(u1));
                    const float angle = 2.0f * std::numbers::pi_v<float> * u2;
                    a = radius * std::cos(angle);
                    b = radius * std::sin(angle);
                }
                storeValue(bytes.data(), i, a, dtype);
                if (i + 1 < end) storeValue(bytes.data(), i + 1, b, dtype);
            }
        }
    };
    const size_t threadCount = std::min<size_t>({std::max(1u, std::thread::hardware_concurrency()), 16, chunks});
    std::vector<std::thread> threads;
    for (size_t i = 1; i < threadCount; ++i) threads.emplace_back(worker);
    worker();
    for (auto& th : threads) th.join();
    return bytes;
}

std::vector<PlannedTensor> planTensors(const Options& o) {
    const int64_t h = o.hidden, q = int64_t(o.heads) * o.headDim, kv = int64_t(o.kvHeads) * o.headDim;
    const bool qkvBias = o.arch == "qwen2" || o.arch == "qwen2_moe" || o.attentionBias;
    std::vector<PlannedTensor> plan;
    const Init norm = o.gemma() ? Init::GemmaNorm : Init::Norm;
    plan.push_back({"model.embed_tokens.weight", {o.vocab, h}, Init::Matrix});
    if (o.arch == "phi2") { // PhiForCausalLM's names: LayerNorm weight + bias, dense, fc1, fc2, biases everywhere
        for (int l = 0; l < o.layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            plan.push_back({p + "input_layernorm.weight", {h}, norm});
            plan.push_back({p + "input_layernorm.bias", {h}, Init::Bias});
            for (const auto& [name, rows] : {std::pair{"q_proj", q}, {"k_proj", kv}, {"v_proj", kv}}) {
                plan.push_back({p + "self_attn." + name + ".weight", {rows, h}, Init::Matrix});
                plan.push_back({p + "self_attn." + name + ".bias", {rows}, Init::Bias});
            }
            plan.push_back({p + "self_attn.dense.weight", {h, q}, Init::Matrix});
            plan.push_back({p + "self_attn.dense.bias", {h}, Init::Bias});
            plan.push_back({p + "mlp.fc1.weight", {o.intermediate, h}, Init::Matrix});
            plan.push_back({p + "mlp.fc1.bias", {o.intermediate}, Init::Bias});
            plan.push_back({p + "mlp.fc2.weight", {h, o.intermediate}, Init::Matrix});
            plan.push_back({p + "mlp.fc2.bias", {h}, Init::Bias});
        }
        plan.push_back({"model.final_layernorm.weight", {h}, norm});
        plan.push_back({"model.final_layernorm.bias", {h}, Init::Bias});
        plan.push_back({"lm_head.weight", {o.vocab, h}, Init::Matrix});
        plan.push_back({"lm_head.bias", {o.vocab}, Init::Bias});
        return plan;
    }
    for (int l = 0; l < o.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        plan.push_back({p + "input_layernorm.weight", {h}, norm});
        if (o.arch == "phi3") { // fused: qkv_proj rows q, k, v; gate_up_proj rows gate, up
            plan.push_back({p + "self_attn.qkv_proj.weight", {q + 2 * kv, h}, Init::Matrix});
            plan.push_back({p + "self_attn.o_proj.weight", {h, q}, Init::Matrix});
            plan.push_back({p + "post_attention_layernorm.weight", {h}, norm});
            plan.push_back({p + "mlp.gate_up_proj.weight", {2 * int64_t(o.intermediate), h}, Init::Matrix});
            plan.push_back({p + "mlp.down_proj.weight", {h, o.intermediate}, Init::Matrix});
            continue;
        }
        plan.push_back({p + "self_attn.q_proj.weight", {q, h}, Init::Matrix});
        if (qkvBias) plan.push_back({p + "self_attn.q_proj.bias", {q}, Init::Bias});
        plan.push_back({p + "self_attn.k_proj.weight", {kv, h}, Init::Matrix});
        if (qkvBias) plan.push_back({p + "self_attn.k_proj.bias", {kv}, Init::Bias});
        plan.push_back({p + "self_attn.v_proj.weight", {kv, h}, Init::Matrix});
        if (qkvBias) plan.push_back({p + "self_attn.v_proj.bias", {kv}, Init::Bias});
        plan.push_back({p + "self_attn.o_proj.weight", {h, q}, Init::Matrix});
        if (o.attentionBias) plan.push_back({p + "self_attn.o_proj.bias", {h}, Init::Bias});
        if (o.arch == "qwen3" || o.arch == "qwen3_moe" || o.arch == "gemma3") { // per-head RMSNorm of q and k
            plan.push_back({p + "self_attn.q_norm.weight", {o.headDim}, norm});
            plan.push_back({p + "self_attn.k_norm.weight", {o.headDim}, norm});
        }
        plan.push_back({p + "post_attention_layernorm.weight", {h}, norm});
        if (o.gemma()) { // the MLP's own norms before and after it
            plan.push_back({p + "pre_feedforward_layernorm.weight", {h}, norm});
            plan.push_back({p + "post_feedforward_layernorm.weight", {h}, norm});
        }
        const int64_t e = o.experts;
        const int64_t inter = o.arch == "mixtral" ? o.intermediate : o.moeIntermediate;
        if (!o.sparseLayer(l)) {
            plan.push_back({p + "mlp.gate_proj.weight", {o.intermediate, h}, Init::Matrix});
            plan.push_back({p + "mlp.up_proj.weight", {o.intermediate, h}, Init::Matrix});
            plan.push_back({p + "mlp.down_proj.weight", {h, o.intermediate}, Init::Matrix});
            continue;
        }
        // Mixtral's per-expert tensors sit in block_sparse_moe with w1/w2/w3 =
        // gate/down/up; the fused layout and the Qwen MoEs use mlp.
        const std::string moe = p + (o.arch == "mixtral" && !o.fusedExperts ? "block_sparse_moe." : "mlp.");
        plan.push_back({moe + "gate.weight", {e, h}, Init::Matrix});
        if (o.fusedExperts) {
            plan.push_back({moe + "experts.gate_up_proj", {e, 2 * inter, h}, Init::Matrix});
            plan.push_back({moe + "experts.down_proj", {e, h, inter}, Init::Matrix});
        } else {
            const bool mixtral = o.arch == "mixtral";
            for (int x = 0; x < o.experts; ++x) {
                const std::string ep = moe + "experts." + std::to_string(x) + ".";
                plan.push_back({ep + (mixtral ? "w1.weight" : "gate_proj.weight"), {inter, h}, Init::Matrix});
                plan.push_back({ep + (mixtral ? "w2.weight" : "down_proj.weight"), {h, inter}, Init::Matrix});
                plan.push_back({ep + (mixtral ? "w3.weight" : "up_proj.weight"), {inter, h}, Init::Matrix});
            }
        }
        if (o.arch == "qwen2_moe") { // the shared expert and its sigmoid gate
            const int64_t sh = o.sharedIntermediate;
            plan.push_back({moe + "shared_expert.gate_proj.weight", {sh, h}, Init::Matrix});
            plan.push_back({moe + "shared_expert.up_proj.weight", {sh, h}, Init::Matrix});
            plan.push_back({moe + "shared_expert.down_proj.weight", {h, sh}, Init::Matrix});
            plan.push_back({moe + "shared_expert_gate.weight", {1, h}, Init::Matrix});
        }
    }
    plan.push_back({"model.norm.weight", {h}, norm});
    if (!o.tieEmbeddings) plan.push_back({"lm_head.weight", {o.vocab, h}, Init::Matrix});
    return plan;
}

// Text files also go through temp + rename so a reader never sees half a file.
void writeTextFile(const fs::path& path, const std::string& text) {
    const fs::path tmp = fs::path(path) += ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.flush();
        if (!out) throw moe::Error(tmp.string() + ": cannot write");
    }
    fs::rename(tmp, path);
}

std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw moe::Error(path.string() + ": cannot open");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

ojson makeConfig(const Options& o, const ojson& bos, const ojson& eos) {
    const char* architecture = o.arch == "llama" ? "LlamaForCausalLM"
                             : o.arch == "mistral" ? "MistralForCausalLM"
                           : o.arch == "mixtral" ? "MixtralForCausalLM"
                           : o.arch == "qwen2_moe" ? "Qwen2MoeForCausalLM"
                           : o.arch == "qwen3_moe" ? "Qwen3MoeForCausalLM"
                           : o.arch == "qwen3" ? "Qwen3ForCausalLM"
                           : o.arch == "gemma2" ? "Gemma2ForCausalLM"
                           : o.arch == "gemma3" ? "Gemma3ForCausalLM"
                           : o.arch == "phi3" ? "Phi3ForCausalLM"
                           : o.arch == "phi2" ? "PhiForCausalLM"
                                                 : "Qwen2ForCausalLM";
    const char* torchDtype = o.dtype == moe::DType::BF16 ? "bfloat16"
                           : o.dtype == moe::DType::F16  ? "float16"
                                                         : "float32";
    ojson c;
    c["architectures"] = {architecture};
    c["model_type"] = o.arch == "gemma3" ? "gemma3_text" : o.arch == "phi2" ? "phi" : o.arch;
    if (o.arch == "llama") {
        c["attention_bias"] = o.attentionBias;
        c["mlp_bias"] = false;
    }
    c["attention_dropout"] = 0.0;
    c["bos_token_id"] = bos;
    c["eos_token_id"] = eos;
    if (o.gemma()) c["hidden_activation"] = "gelu_pytorch_tanh";
    else c["hidden_act"] = o.arch == "phi2" ? "gelu_new" : "silu";
    c["hidden_size"] = o.hidden;
    if (o.arch != "phi2") c["head_dim"] = o.headDim; // PhiConfig has none: hidden / heads
    c["initializer_range"] = 0.02;
    c["intermediate_size"] = o.intermediate;
    c["max_position_embeddings"] = o.maxPositions;
    c["num_attention_heads"] = o.heads;
    c["num_hidden_layers"] = o.layers;
    c["num_key_value_heads"] = o.kvHeads;
    if (o.arch == "phi2") c["layer_norm_eps"] = 1e-5;
    else c["rms_norm_eps"] = o.arch == "llama" || o.arch == "phi3" ? 1e-5 : 1e-6;
    c["rope_scaling"] = nullptr;
    c["rope_theta"] = o.ropeTheta;
    if (o.arch == "mistral" || o.arch == "mixtral") {
        c["sliding_window"] = o.slidingWindow > 0 ? ojson(o.slidingWindow) : ojson(nullptr);
        if (o.arch == "mixtral") {
            c["num_local_experts"] = o.experts;
            c["num_experts_per_tok"] = o.topK;
            c["router_aux_loss_coef"] = 0.02;
            c["output_router_logits"] = false;
        }
    } else if (o.arch == "qwen2" || o.arch == "qwen3" || o.qwenMoe()) {
        if (o.arch == "qwen3") c["attention_bias"] = o.attentionBias;
        if (o.qwenMoe()) {
            if (o.arch == "qwen3_moe") c["attention_bias"] = o.attentionBias;
            c["num_experts"] = o.experts;
            c["num_experts_per_tok"] = o.topK;
            c["moe_intermediate_size"] = o.moeIntermediate;
            if (o.arch == "qwen2_moe") c["shared_expert_intermediate_size"] = o.sharedIntermediate;
            c["decoder_sparse_step"] = o.decoderSparseStep;
            c["mlp_only_layers"] = o.mlpOnlyLayers;
            c["norm_topk_prob"] = o.normTopk;
            c["router_aux_loss_coef"] = 0.001;
            c["output_router_logits"] = false;
        }
        c["use_sliding_window"] = o.slidingWindow > 0;
        c["sliding_window"] = o.slidingWindow > 0 ? o.slidingWindow : o.maxPositions;
        c["max_window_layers"] = o.slidingWindow > 0 ? 0 : o.layers;
        // Qwen2-MoE in Transformers 5 takes each layer's attention from layer_types.
        if (o.arch == "qwen2_moe")
            c["layer_types"] = std::vector<std::string>(size_t(o.layers), o.slidingWindow > 0 ? "sliding_attention"
                                                                                                : "full_attention");
    }
    if (o.arch == "phi2") {
        c["partial_rotary_factor"] = o.partialRotary;
        c["qk_layernorm"] = false;
        c["resid_pdrop"] = 0.1;
        c["embd_pdrop"] = 0.0;
    }
    if (o.arch == "phi3") {
        c["partial_rotary_factor"] = o.partialRotary;
        c["sliding_window"] = o.slidingWindow > 0 ? ojson(o.slidingWindow) : ojson(nullptr);
        if (o.longropeOriginal > 0) {
            // Random factors (seeded), in the ranges the released models use:
            // short near 1, long growing towards the low frequencies.
            const int n = int(double(o.headDim) * o.partialRotary) / 2;
            uint64_t state = o.seed ^ 0x10e6209eull;
            std::vector<double> shortF, longF;
            for (int i = 0; i < n; ++i) {
                const double u = double(splitmix64(state) >> 11) / double(uint64_t(1) << 53);
                const double w = double(splitmix64(state) >> 11) / double(uint64_t(1) << 53);
                shortF.push_back(1.0 + 0.2 * u);
                longF.push_back(1.0 + (8.0 * i / std::max(1, n - 1)) * (0.5 + w));
            }
            c["original_max_position_embeddings"] = o.longropeOriginal;
            c["rope_scaling"] = {{"type", "longrope"}, {"short_factor", shortF}, {"long_factor", longF}};
        }
    }
    if (o.gemma()) {
        c["attention_bias"] = false;
        c["query_pre_attn_scalar"] = o.queryPreAttnScalar;
        if (o.arch == "gemma2") c["attn_logit_softcapping"] = o.attnSoftcap > 0 ? ojson(o.attnSoftcap) : ojson(nullptr);
        c["final_logit_softcapping"] = o.finalSoftcap > 0 ? ojson(o.finalSoftcap) : ojson(nullptr);
        c["sliding_window"] = o.slidingWindow;
        // Gemma 2: even layers slide; Gemma 3: all but every slidingPattern-th.
        const int pattern = o.arch == "gemma2" ? 2 : o.slidingPattern;
        std::vector<std::string> types;
        for (int l = 0; l < o.layers; ++l) types.push_back((l + 1) % pattern ? "sliding_attention" : "full_attention");
        c["layer_types"] = types;
        if (o.arch == "gemma3") {
            c["sliding_window_pattern"] = o.slidingPattern;
            c["rope_local_base_freq"] = 10000.0;
        }
    }
    c["tie_word_embeddings"] = o.tieEmbeddings;
    c["torch_dtype"] = torchDtype;
    c["use_cache"] = true;
    c["vocab_size"] = o.vocab;
    return c;
}

// Assigns consecutive tensors to at most `shards` files of roughly equal size.
std::vector<int> assignShards(const std::vector<PlannedTensor>& plan, size_t elementSize, int shards, int& used) {
    size_t total = 0;
    for (const auto& t : plan) total += t.numel() * elementSize;
    const size_t target = (total + shards - 1) / shards;
    std::vector<int> shardOf(plan.size());
    int current = 0;
    size_t filled = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        const size_t bytes = plan[i].numel() * elementSize;
        if (filled > 0 && filled + bytes > target && current + 1 < shards) {
            ++current;
            filled = 0;
        }
        shardOf[i] = current;
        filled += bytes;
    }
    used = current + 1;
    return shardOf;
}

std::string shardName(int index, int count) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", index + 1, count);
    return name;
}

// Leftovers of an earlier run with another layout would confuse loaders
// (a stale index wins over model.safetensors), so they go.
void removeStaleWeights(const fs::path& dir, const std::set<std::string>& keep) {
    static const std::regex weightFile(R"(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json)");
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (std::regex_match(name, weightFile) && !keep.count(name)) fs::remove(entry.path());
    }
}

int run(const Options& o) {
    const auto start = std::chrono::steady_clock::now();
    fs::create_directories(o.out);

    // Token ids: from the tokenizer's own model when one is copied, else
    // Qwen2's for the Qwen vocabulary, else the Llama convention 1 / 2.
    ojson bos = 1, eos = 2;
    if ((o.arch == "qwen2" || o.arch == "qwen3") && o.vocab > 151645) {
        bos = 151643;
        eos = 151645;
    }
    if (!o.tokenizerFrom.empty()) {
        static const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                                "special_tokens_map.json"};
        int copied = 0;
        for (const char* name : kTokenizerFiles) {
            const fs::path src = o.tokenizerFrom / name;
            if (!fs::is_regular_file(src)) continue;
            // Copy the bytes, not the file: sources may be read-only, and a
            // copied read-only mode would block the next run from overwriting.
            writeTextFile(o.out / name, readFile(src));
            ++copied;
        }
        if (copied == 0) throw moe::Error(o.tokenizerFrom.string() + ": no tokenizer files in this folder");
        const fs::path srcConfig = o.tokenizerFrom / "config.json";
        if (fs::is_regular_file(srcConfig)) {
            const auto cfg = ojson::parse(readFile(srcConfig), nullptr, false);
            if (cfg.is_object() && cfg.contains("bos_token_id")) bos = cfg["bos_token_id"];
            if (cfg.is_object() && cfg.contains("eos_token_id")) eos = cfg["eos_token_id"];
        }
    }

    const auto plan = planTensors(o);
    const size_t elementSize = moe::dtypeSize(o.dtype);
    int shardCount = 1;
    const auto shardOf = assignShards(plan, elementSize, o.shards, shardCount);

    std::set<std::string> keep;
    for (int s = 0; s < shardCount; ++s) keep.insert(shardCount == 1 ? "model.safetensors" : shardName(s, shardCount));
    if (shardCount > 1) keep.insert("model.safetensors.index.json");
    removeStaleWeights(o.out, keep);

    // Tensors are generated and written one at a time: memory holds one tensor.
    const std::map<std::string, std::string> metadata = {{"format", "pt"}};
    ojson weightMap = ojson::object();
    size_t totalBytes = 0, totalParams = 0;
    for (int s = 0; s < shardCount; ++s) {
        std::vector<size_t> members;
        std::vector<moe::TensorLayout> layouts;
        for (size_t i = 0; i < plan.size(); ++i) {
            if (shardOf[i] != s) continue;
            members.push_back(i);
            layouts.push_back({plan[i].name, o.dtype, plan[i].shape});
            totalBytes += plan[i].numel() * elementSize;
            totalParams += plan[i].numel();
        }
        const std::string fileName = shardCount == 1 ? "model.safetensors" : shardName(s, shardCount);
        std::vector<std::byte> current;
        moe::writeSafetensorsStreamed(
            o.out / fileName, layouts,
            [&](size_t k) -> std::span<const std::byte> {
                current = generate(plan[members[k]], members[k], o.dtype, o.seed, o.initStd);
                return current;
            },
            metadata);
        for (const auto& t : layouts) weightMap[t.name] = fileName;
    }
    if (shardCount > 1) {
        ojson index;
        index["metadata"] = {{"total_size", totalBytes}};
        index["weight_map"] = weightMap;
        writeTextFile(o.out / "model.safetensors.index.json", index.dump(2) + "\n");
    }

    writeTextFile(o.out / "config.json", makeConfig(o, bos, eos).dump(2) + "\n");
    ojson generation;
    generation["bos_token_id"] = bos;
    generation["eos_token_id"] = eos;
    writeTextFile(o.out / "generation_config.json", generation.dump(2) + "\n");

    // Read the folder back the way the engine will, so a bad tool run fails here.
    const auto config = moe::ModelConfig::load(o.out);
    const auto store = moe::WeightStore::openFolder(o.out);
    for (const auto& t : plan) store->require(t.name, t.shape);

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %s, %zu tensors, %.1fM parameters, %.1f MB %s in %d file(s), %.1f s\n", o.out.c_str(),
                config.architecture.c_str(), plan.size(), totalParams / 1e6, totalBytes / 1e6,
                moe::dtypeName(o.dtype), shardCount, seconds);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    Options options;
    try {
        options = parseArgs(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "make-random-model: %s\n\n%s", e.what(), kUsage);
        return 2;
    }
    try {
        return run(options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make-random-model: %s\n", e.what());
        return 1;
    }
}
