// GGUF export: a plan of tensors under llama.cpp's names (each made, encoded
// and written one at a time), the metadata llama.cpp reads for the
// architecture (key names and defaults as llama-arch.cpp and the converter's
// set_gguf_parameters), the tokenizer (gguf_vocab.cpp) and an Ollama Modelfile.
#include "moe/gguf_export.h"

#include "gguf_vocab.h"
#include "json_input.h"
#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/expert_loader.h"
#include "moe/gate_training.h"
#include "moe/gguf_model.h"
#include "moe/moe_export_refusal.h"
#include "moe/gguf_writer.h"
#include "moe/model_config.h"
#include "moe/moe_model.h"
#include "moe/ollama_modelfile.h"
#include "moe/quantize_on_load.h"
#include "moe/validate.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>

namespace moe {

namespace fs = std::filesystem;

const char* toString(GgufFileType t) {
    switch (t) {
    case GgufFileType::F32: return "f32";
    case GgufFileType::F16: return "f16";
    case GgufFileType::BF16: return "bf16";
    case GgufFileType::Q8_0: return "q8_0";
    case GgufFileType::Q4_K_M: return "q4_k_m";
    case GgufFileType::Q5_K_M: return "q5_k_m";
    case GgufFileType::Q6_K: return "q6_k";
    }
    return "?";
}

bool parseGgufFileType(const std::string& s, GgufFileType& out) {
    for (GgufFileType t : {GgufFileType::F32, GgufFileType::F16, GgufFileType::BF16, GgufFileType::Q8_0,
                           GgufFileType::Q4_K_M, GgufFileType::Q5_K_M, GgufFileType::Q6_K})
        if (s == toString(t)) {
            out = t;
            return true;
        }
    return false;
}

const char* ggufFileTypeNames() { return "f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k"; }

namespace {

// llama.cpp's llama_ftype numbers (general.file_type).
uint32_t ftypeNumber(GgufFileType t) {
    switch (t) {
    case GgufFileType::F32: return 0;
    case GgufFileType::F16: return 1;
    case GgufFileType::BF16: return 32;
    case GgufFileType::Q8_0: return 7;
    case GgufFileType::Q4_K_M: return 15;
    case GgufFileType::Q5_K_M: return 17;
    case GgufFileType::Q6_K: return 18;
    }
    return 0;
}

QuantizeScheme schemeOf(GgufFileType t) {
    switch (t) {
    case GgufFileType::Q8_0: return QuantizeScheme::Q8_0;
    case GgufFileType::Q4_K_M: return QuantizeScheme::Q4_K;
    case GgufFileType::Q5_K_M: return QuantizeScheme::Q5_K;
    case GgufFileType::Q6_K: return QuantizeScheme::Q6_K;
    default: return QuantizeScheme::None;
    }
}

DType floatDType(GgufFileType t) {
    return t == GgufFileType::F32 ? DType::F32 : t == GgufFileType::BF16 ? DType::BF16 : DType::F16;
}

using Values = std::function<std::vector<float>()>;

// One piece of a tensor (stacked experts are one part per expert): a mapped
// source tensor read as it is, streamed in row chunks whose source pages are
// dropped once written; or values made whole (reordered q/k rows, a LoRA
// expert, a router), whose sources `release` drops afterwards.
struct Part {
    std::shared_ptr<const WeightStore> store;
    std::string tensor;                   // mapped: the source tensor's name
    std::vector<int64_t> expectedShape;   // checked when read (empty: any)
    Values values;                        // or computed
    std::function<void()> release;
};

Part mappedPart(std::shared_ptr<const WeightStore> store, std::string tensor, std::vector<int64_t> expectedShape = {}) {
    return {std::move(store), std::move(tensor), std::move(expectedShape), {}, {}};
}
Part computedPart(Values values, std::function<void()> release = {}) {
    return {nullptr, {}, {}, std::move(values), std::move(release)};
}

// Drops the source pages of a store's tensor (when it is mapped).
void releaseTensor(const WeightStore& store, const std::string& name) {
    if (const TensorView* t = store.find(name); t && t->file) t->file->releasePages(t->data, t->nbytes);
}

// One tensor of the file, encoded part by part when written. `keep`: the
// source's type as it is (an already quantized source).
struct Planned {
    std::string name;
    std::vector<int64_t> shape;
    DType type = DType::F32;
    std::vector<Part> parts;
    bool keep = false;
    uint64_t numel() const {
        uint64_t n = 1;
        for (int64_t d : shape) n *= uint64_t(d);
        return n;
    }
};

std::vector<std::byte> encode(const std::vector<float>& v, DType type, int64_t cols, const std::string& name) {
    if (const auto q = quantTypeOf(type)) {
        TensorView t;
        t.name = name;
        t.dtype = DType::F32;
        t.shape = {int64_t(v.size()) / cols, cols};
        t.data = reinterpret_cast<const std::byte*>(v.data());
        t.nbytes = v.size() * 4;
        return quantizeTensor(t, type).bytes;
    }
    std::vector<std::byte> out(v.size() * dtypeSize(type));
    for (size_t i = 0; i < v.size(); ++i) {
        if (type == DType::F32) {
            std::memcpy(out.data() + i * 4, &v[i], 4);
        } else {
            const uint16_t h = type == DType::BF16 ? floatToBf16(v[i]) : floatToF16(v[i]);
            std::memcpy(out.data() + i * 2, &h, 2);
        }
    }
    return out;
}

// llama.cpp's `llama` rotates adjacent pairs; Hugging Face checkpoints rotate
// halves. Rows of q/k (weights or biases) from the Hugging Face order to the
// converter's.
std::vector<float> interleaveRows(const std::vector<float>& v, int heads, int headDim) {
    const auto from = ggufUninterleavedRows(heads, headDim); // HF row r comes from GGUF row from[r]
    const size_t cols = v.size() / from.size();
    std::vector<float> out(v.size());
    for (size_t r = 0; r < from.size(); ++r)
        std::memcpy(out.data() + size_t(from[r]) * cols, v.data() + r * cols, cols * 4);
    return out;
}

std::optional<WeightRole> roleOf(const std::string& ggufName) {
    static const std::pair<const char*, WeightRole> kRoles[] = {
        {"attn_q.weight", WeightRole::AttentionQ},       {"attn_k.weight", WeightRole::AttentionK},
        {"attn_v.weight", WeightRole::AttentionV},       {"attn_output.weight", WeightRole::AttentionOutput},
        {"ffn_gate", WeightRole::FfnGate},               {"ffn_up", WeightRole::FfnUp},
        {"ffn_down", WeightRole::FfnDown},
    };
    if (ggufName == "token_embd.weight") return WeightRole::Embedding;
    if (ggufName == "output.weight") return WeightRole::Output;
    if (ggufName.find("ffn_gate_inp") != std::string::npos) return std::nullopt; // routers stay F32
    for (const auto& [suffix, role] : kRoles)
        if (ggufName.find(std::string(".") + suffix) != std::string::npos) return role;
    return std::nullopt;
}

int layerOf(const std::string& ggufName) {
    if (ggufName.rfind("blk.", 0) != 0) return 0;
    return std::atoi(ggufName.c_str() + 4);
}

struct Plan {
    std::string arch;           // general.architecture
    std::vector<Planned> tensors;
    std::vector<std::string> warnings;
    int experts = 0, expertsPerToken = 0;
    bool keepQuantized = false; // already quantized source tensors are written as they are
};

// The dtype each tensor is written in: vectors and routers F32 (as the
// converter and llama-quantize keep them), matrices the file type or its
// quantization mix.
void chooseTypes(Plan& plan, const ModelConfig& c, GgufFileType type) {
    const bool tied = std::none_of(plan.tensors.begin(), plan.tensors.end(),
                                   [](const Planned& t) { return t.name == "output.weight"; });
    for (Planned& t : plan.tensors) {
        if (t.keep) continue; // kept as the source has it
        const auto role = roleOf(t.name);
        if (t.shape.size() < 2 || !role) {
            t.type = DType::F32;
            continue;
        }
        if (schemeOf(type) == QuantizeScheme::None) {
            t.type = floatDType(type);
            continue;
        }
        WeightPlace place;
        place.role = *role;
        place.layer = layerOf(t.name);
        place.layers = c.numLayers;
        place.tiedEmbedding = tied;
        place.experts = plan.experts;
        t.type = quantizedDType(schemeOf(type), place, DType::F16, t.shape.back());
    }
}

// RoPE: the engine's inverse frequencies as rope_freqs factors when they are
// not the plain base^(-2i/d) (Llama 3 and linear scaling).
std::optional<std::vector<float>> ropeFactors(const ModelConfig& c) {
    const int half = c.headDim / 2;
    if (c.ropeInvFreq.size() != size_t(half)) return std::nullopt;
    std::vector<float> factors(static_cast<size_t>(half));
    bool plain = true;
    for (int i = 0; i < half; ++i) {
        const double base = 1.0 / std::pow(double(c.ropeTheta), 2.0 * i / c.headDim);
        factors[size_t(i)] = float(base / c.ropeInvFreq[size_t(i)]);
        plain = plain && std::abs(factors[size_t(i)] - 1.0f) < 1e-6f;
    }
    if (plain) return std::nullopt;
    return factors;
}

// The tensors every architecture shares: embedding, final norm, head, and
// per layer everything outside the MLP (or with it, `withMlp`).
void planCommon(Plan& plan, const ModelConfig& c, std::shared_ptr<const WeightStore> store, bool interleaveQk,
                bool withMlp) {
    auto add = [&](const std::string& gguf, const std::string& hf) {
        const TensorView& t = store->require(hf);
        Planned p{gguf, t.shape, t.dtype, {}, false};
        const bool qk = interleaveQk && (hf.find("q_proj.") != std::string::npos || hf.find("k_proj.") != std::string::npos);
        if (!qk) {
            p.keep = plan.keepQuantized && isQuantized(t.dtype);
            p.parts.push_back(mappedPart(store, hf));
        } else {
            const int heads = hf.find("q_proj.") != std::string::npos ? c.numHeads : c.numKvHeads;
            p.parts.push_back(computedPart(
                [store, hf, heads, d = c.headDim] { return interleaveRows(toFloat32(store->require(hf)), heads, d); },
                [store, hf] { releaseTensor(*store, hf); }));
        }
        plan.tensors.push_back(std::move(p));
    };
    add("token_embd.weight", "model.embed_tokens.weight");
    add("output_norm.weight", "model.norm.weight");
    if (store->find("lm_head.weight") && !c.tieWordEmbeddings) add("output.weight", "lm_head.weight");
    if (auto factors = ropeFactors(c)) {
        if (plan.arch != "llama")
            throw Error(c.dir.string() + ": RoPE scaling: GGUF " + plan.arch + " cannot hold this model's RoPE frequencies");
        plan.tensors.push_back({"rope_freqs.weight", {int64_t(factors->size())}, DType::F32,
                                {computedPart([f = *factors] { return f; })}, false});
    }
    for (int l = 0; l < c.numLayers; ++l) {
        const std::string prefix = "model.layers." + std::to_string(l) + ".";
        for (const std::string& name : store->names()) {
            if (name.rfind(prefix, 0) != 0) continue;
            const std::string rest = name.substr(prefix.size());
            const std::string gguf = ggufLayerTensorName(rest);
            const bool mlp = rest.rfind("mlp.", 0) == 0 || rest.rfind("block_sparse_moe.", 0) == 0;
            if (mlp && (!withMlp || gguf.empty())) continue; // experts and routers: planned by the caller
            if (gguf.empty())
                throw Error(store->folder().string() + ": tensor " + name + ": GGUF export has no llama.cpp name for it");
            add("blk." + std::to_string(l) + "." + gguf, name);
        }
    }
}

// A layer's stacked experts: [E, rows, cols] from one float part per expert.
void planExperts(Plan& plan, int layer, const std::string& which, std::vector<int64_t> shape, std::vector<Part> parts) {
    plan.tensors.push_back({"blk." + std::to_string(layer) + ".ffn_" + which + "_exps.weight",
                            {int64_t(parts.size()), shape[0], shape[1]}, DType::F32, std::move(parts), false});
}

// The architecture keys llama.cpp reads.
void addArchitectureKeys(GgufWriter& w, const ModelConfig& c, const Plan& plan) {
    const std::string a = plan.arch;
    w.setU32(a + ".block_count", uint32_t(c.numLayers));
    w.setU32(a + ".context_length", uint32_t(c.maxPositions));
    w.setU32(a + ".embedding_length", uint32_t(c.hiddenSize));
    w.setU32(a + ".feed_forward_length", uint32_t(c.intermediateSize));
    w.setU32(a + ".attention.head_count", uint32_t(c.numHeads));
    w.setU32(a + ".attention.head_count_kv", uint32_t(c.numKvHeads));
    w.setF32(a + ".rope.freq_base", c.ropeTheta);
    w.setF32(a + ".attention.layer_norm_rms_epsilon", c.normEps);
    w.setU32(a + ".attention.key_length", uint32_t(c.headDim));
    w.setU32(a + ".attention.value_length", uint32_t(c.headDim));
    w.setU32(a + ".vocab_size", uint32_t(c.vocabSize));
    w.setU32(a + ".rope.dimension_count", uint32_t(c.headDim));
    if (c.slidingWindow > 0) w.setU32(a + ".attention.sliding_window", uint32_t(c.slidingWindow));
    if (plan.experts > 0) {
        w.setU32(a + ".expert_count", uint32_t(plan.experts));
        w.setU32(a + ".expert_used_count", uint32_t(plan.expertsPerToken));
    }
    if (a == "qwen2moe" || a == "qwen3moe") w.setU32(a + ".expert_feed_forward_length", uint32_t(c.expertIntermediateSize()));
    if (a == "qwen2moe") w.setU32(a + ".expert_shared_feed_forward_length", uint32_t(c.sharedExpertIntermediateSize));
}

// Checks the engine's model can be written faithfully as `arch`.
void checkExpressible(const ModelConfig& c, const std::string& arch) {
    const double plainScale = 1.0 / std::sqrt(double(c.headDim));
    if (std::abs(c.attentionScale - plainScale) > 1e-6 * plainScale)
        throw Error(c.dir.string() + ": the attention scale is not 1/sqrt(head_dim), which GGUF " + arch + " cannot hold");
    if (c.outputBias && arch != "llama")
        throw Error(c.dir.string() + ": an o_proj bias, which GGUF " + arch + " has not");
}

std::string slidingWindowWarning(const std::string& arch, int window) {
    return "llama.cpp's `" + arch + "` attends over the whole context, not the model's sliding window of " +
           std::to_string(window) + " tokens: replies differ past that length";
}

std::string archFor(const ModelConfig& c) {
    switch (c.arch) {
    case Arch::Llama:
    case Arch::Mistral:
    case Arch::Mixtral: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Qwen2Moe: return "qwen2moe";
    case Arch::Qwen3Moe: return "qwen3moe";
    default: break;
    }
    throw Error(c.dir.string() + ": GGUF export does not write " + c.architecture + " models yet");
}

std::optional<double> jsonNumber(const nlohmann::json& j, const char* key) {
    if (j.is_object() && j.contains(key) && j[key].is_number()) return j[key].get<double>();
    return std::nullopt;
}

// A mapped source tensor written as `t.type`, a chunk of rows at a time,
// each chunk's source pages dropped once written: the export's memory is a
// chunk, not the tensor, and not the mapped files read so far.
void writeMapped(const TensorView& src, const Planned& t, const GgufWriter::TensorSink& put) {
    constexpr size_t kChunkBytes = size_t(16) << 20;
    auto release = [&](const std::byte* p, size_t n) {
        if (src.file) src.file->releasePages(p, n);
    };
    if (src.dtype == t.type) { // as it is
        for (size_t at = 0; at < src.nbytes; at += kChunkBytes) {
            const size_t n = std::min(kChunkBytes, src.nbytes - at);
            put({src.data + at, n});
            release(src.data + at, n);
        }
        return;
    }
    const int64_t cols = src.shape.empty() ? 1 : src.shape.back();
    const size_t rows = cols > 0 ? size_t(src.numel() / cols) : 0;
    const size_t srcRow = rows ? src.nbytes / rows : 0;
    const size_t perChunk = std::max<size_t>(1, kChunkBytes / 4 / size_t(std::max<int64_t>(cols, 1)));
    for (size_t r = 0; r < rows; r += perChunk) {
        TensorView rowsView = src;
        const size_t n = std::min(perChunk, rows - r);
        rowsView.shape = {int64_t(n), cols};
        rowsView.data = src.data + r * srcRow;
        rowsView.nbytes = n * srcRow;
        const bool direct = quantTypeOf(t.type) && !isQuantized(src.dtype) &&
                            (src.dtype == DType::F32 || src.dtype == DType::F16 || src.dtype == DType::BF16);
        const auto bytes = direct ? quantizeTensor(rowsView, t.type).bytes : encode(toFloat32(rowsView), t.type, cols, t.name);
        put(bytes);
        release(rowsView.data, rowsView.nbytes);
    }
}

// Writes the plan: metadata, tokenizer, tensors, Modelfile.
GgufExportReport writePlan(Plan& plan, const ModelConfig& c, const GgufExportOptions& o,
                           const std::function<void(GgufWriter&)>& addKeys,
                           const std::function<void(const GgufExportProgress&)>& onProgress,
                           const std::atomic<bool>* cancel) {
    GgufExportReport rep;
    if (o.out.empty()) throw Error("export: no output file given");
    const fs::path out = fs::absolute(o.out).lexically_normal();
    std::error_code ec;
    if (!o.dryRun && fs::exists(out, ec)) throw Error(out.string() + ": already exists; choose a new file name");
    rep.out = out;
    rep.architecture = plan.arch;
    rep.experts = plan.experts;
    rep.expertsPerToken = plan.expertsPerToken;
    rep.warnings = plan.warnings;
    checkExpressible(c, plan.arch);
    chooseTypes(plan, c, o.type);

    GgufWriter w;
    w.setString("general.architecture", plan.arch);
    w.setString("general.type", "model");
    w.setString("general.name", o.name.empty() ? out.stem().string() : o.name);
    // Default sampling, as the converter takes it from generation_config.json.
    std::optional<double> temperature, topP;
    std::optional<int> topK;
    if (!c.fromGguf && fs::is_regular_file(c.dir / "generation_config.json")) {
        const auto gen = parseJsonChecked(readTextFile(c.dir / "generation_config.json", kMaxSmallFileBytes),
                                          c.dir / "generation_config.json");
        temperature = jsonNumber(gen, "temperature");
        topP = jsonNumber(gen, "top_p");
        if (auto k = jsonNumber(gen, "top_k"); k && *k >= 1 && *k < 1e6) topK = int(*k);
    } else if (c.fromGguf) {
        const auto src = GgufFile::open(c.dir);
        temperature = src->getNumber("general.sampling.temp");
        topP = src->getNumber("general.sampling.top_p");
        if (auto k = src->getInteger("general.sampling.top_k"); k && *k >= 1 && *k < 1000000) topK = int(*k);
    }
    if (topK) w.setI32("general.sampling.top_k", *topK);
    if (topP) w.setF32("general.sampling.top_p", float(*topP));
    if (temperature) w.setF32("general.sampling.temp", float(*temperature));
    addArchitectureKeys(w, c, plan);
    w.setU32("general.file_type", ftypeNumber(o.type));
    w.setU32("general.quantization_version", 2);
    const GgufVocabFacts vocab = addGgufTokenizer(w, c);
    if (addKeys) addKeys(w);

    for (const Planned& t : plan.tensors) {
        w.addTensor(t.name, t.shape, t.type);
        rep.parameters += t.numel();
        ++rep.tensorTypes[ggmlTypeName(ggmlTypeOf(t.type))];
    }
    rep.tensors = plan.tensors.size();
    rep.bytes = w.fileBytes();
    const fs::path modelfile = out.parent_path() / (out.stem().string() + ".Modelfile");
    if (o.dryRun) return rep;

    fs::create_directories(out.parent_path(), ec);
    size_t done = 0;
    const bool written = w.writeStreamed(
        out,
        [&](size_t i, const GgufWriter::TensorSink& put) {
            const Planned& t = plan.tensors[i];
            for (const Part& part : t.parts) {
                if (part.store) {
                    writeMapped(part.store->require(part.tensor, part.expectedShape), t, put);
                } else {
                    const auto bytes = encode(part.values(), t.type, t.shape.back(), t.name);
                    put(bytes);
                }
                if (part.release) part.release();
            }
            if (onProgress) onProgress({++done, plan.tensors.size(), t.name});
        },
        cancel);
    if (!written) {
        rep.cancelled = true;
        return rep;
    }
    if (o.modelfile) {
        ModelfileInputs m{out.filename().string(), vocab.chatTemplate, vocab.stopTexts, temperature, topP, topK};
        writeFileAtomic(modelfile, ollamaModelfile(m));
        rep.modelfile = modelfile;
    }
    return rep;
}

// A native sparse-MoE layer's router and experts under GGUF names.
void planNativeMoeLayer(Plan& plan, const ModelConfig& c, std::shared_ptr<const WeightStore> store, int l) {
    const std::string layer = "model.layers." + std::to_string(l) + ".";
    const bool mixtral = c.arch == Arch::Mixtral;
    const std::string moe = layer + (mixtral ? "block_sparse_moe." : "mlp.");
    auto vector = [&](const std::string& gguf, const std::string& hf, std::vector<int64_t> shape) {
        plan.tensors.push_back({"blk." + std::to_string(l) + "." + gguf, std::move(shape), DType::F32,
                                {mappedPart(store, hf)}, false});
    };
    vector("ffn_gate_inp.weight", moe + "gate.weight", {c.numExperts, c.hiddenSize});
    const int I = c.expertIntermediateSize(), H = c.hiddenSize;
    for (const auto& [which, hf] : {std::pair{"gate", mixtral ? "w1" : "gate_proj"}, {"up", mixtral ? "w3" : "up_proj"},
                                    {"down", mixtral ? "w2" : "down_proj"}}) {
        std::vector<Part> parts;
        for (int e = 0; e < c.numExperts; ++e)
            parts.push_back(mappedPart(store, moe + "experts." + std::to_string(e) + "." + hf + ".weight"));
        planExperts(plan, l, which, std::string(which) == "down" ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H},
                    std::move(parts));
    }
    if (c.arch == Arch::Qwen2Moe && store->find(moe + "shared_expert_gate.weight"))
        vector("ffn_gate_inp_shexp.weight", moe + "shared_expert_gate.weight", {1, H}); // as the converter writes it
}

} // namespace

GgufExportReport exportModelGguf(const fs::path& model, const GgufExportOptions& o,
                                 const std::function<void(const GgufExportProgress&)>& onProgress,
                                 const std::atomic<bool>* cancel) {
    const ModelConfig c = ModelConfig::load(model);
    auto store = openModelWeights(model);
    Plan plan;
    plan.keepQuantized = schemeOf(o.type) != QuantizeScheme::None;
    plan.arch = archFor(c);
    if (c.slidingWindow > 0) plan.warnings.push_back(slidingWindowWarning(plan.arch, c.slidingWindow));
    // llama.cpp renormalises the top-k weights for llama and qwen3moe and
    // never for qwen2moe (GGUF has no key for it).
    if (c.isMoe() && c.normTopkProb != (plan.arch != "qwen2moe"))
        throw Error(c.dir.string() + ": norm_topk_prob " + (c.normTopkProb ? "true" : "false") + ": llama.cpp's " +
                    plan.arch + (c.normTopkProb ? " never renormalises" : " always renormalises") +
                    " the top-k expert weights, so the export would route differently");
    plan.experts = c.numExperts;
    plan.expertsPerToken = c.expertsPerToken;
    const bool interleave = plan.arch == "llama" && !c.qkRowsInterleaved;
    planCommon(plan, c, store, interleave, /*withMlp=*/true);
    if (c.isMoe())
        for (int l = 0; l < c.numLayers; ++l)
            if (c.isSparseLayer(l)) planNativeMoeLayer(plan, c, store, l);
    if (c.isMoe() && !c.mlpOnlyLayers.empty())
        throw Error(c.dir.string() + ": mlp_only_layers: llama.cpp's " + plan.arch + " has experts in every layer");
    return writePlan(plan, c, o, {}, onProgress, cancel);
}

GgufExportReport exportMoeGguf(const Selector& s, const GgufExportOptions& o,
                               const std::function<void(const GgufExportProgress&)>& onProgress,
                               const std::atomic<bool>* cancel) {
    const SelectionFacts facts = validateSelection(s);
    const ModelConfig& c = facts.base;
    if (c.isMoe()) throw Error(c.dir.string() + ": the base is already a sparse MoE");
    if (c.isGemma())
        throw Error(c.dir.string() + ": the base is " + c.archName() + " (" + c.architecture +
                    "); llama.cpp's " + (c.arch == Arch::Gemma2 ? "gemma2" : "gemma3") +
                    " architecture has no experts and its MoE architectures have no Gemma layers, so no llama.cpp "
                    "build could run a GGUF of this MoE; none is written. The build runs in MoE Studio itself "
                    "(moe-cli chat, serve, bench)");
    if (const std::string why = moeExportRefusal(c); !why.empty()) throw Error(c.dir.string() + ": " + why);
    if (c.arch != Arch::Llama && c.arch != Arch::Mistral && c.arch != Arch::Qwen2 && c.arch != Arch::Qwen3)
        throw Error(c.dir.string() + ": GGUF export of a MoE built on " + c.architecture + " is not supported yet");
    // Qwen3 bases keep their q/k norms as llama.cpp's qwen3moe, which routes
    // as the built MoE does (softmax, top-k, renormalised).
    const bool qwen3 = c.arch == Arch::Qwen3;
    const fs::path gates = gatesFile(s);
    std::error_code ec;
    if (!fs::exists(gates, ec))
        throw Error(gates.string() + ": no gates here; build the MoE first (moe-cli build " +
                    (s.file.empty() ? std::string("SELECTOR") : s.file.string()) + ")");
    std::map<std::string, std::string> meta;
    const int E = facts.nExperts, H = c.hiddenSize, I = c.intermediateSize;
    const auto gateWeights = loadGates(gates, facts.layers, uint32_t(E), uint32_t(H), &meta);
    for (size_t i = 0; i < gateWeights.size(); ++i)
        if (!gateWeights[i].bias.empty())
            throw Error(gates.string() + ": the gate of layer " + std::to_string(facts.layers[i]) +
                        " has a bias, which llama.cpp's router (ffn_gate_inp, no bias) cannot hold; set gate_bias = "
                        "false in [anymoe.config] of " +
                        (s.file.empty() ? std::string("the selector") : s.file.string()) + " and build again");

    Plan plan;
    plan.keepQuantized = schemeOf(o.type) != QuantizeScheme::None;
    plan.arch = qwen3 ? "qwen3moe" : "llama";
    if (c.slidingWindow > 0) plan.warnings.push_back(slidingWindowWarning(plan.arch, c.slidingWindow));
    plan.experts = E;
    plan.expertsPerToken = std::clamp(s.topK, 1, E);
    RoutingMode routing = s.routing.value_or(RoutingMode::Token);
    if (!s.routing)
        if (auto it = meta.find("routing"); it != meta.end()) parseRoutingMode(it->second, routing);
    if (routing != RoutingMode::Token)
        plan.warnings.push_back(std::string("the MoE was built with ") + toString(routing) +
                                " routing; llama.cpp routes every token on its own gate scores (token routing); "
                                "compare with moe-cli chat --routing token");
    if (c.arch == Arch::Qwen2)
        plan.warnings.push_back("a Qwen2 base is written as llama.cpp's `llama` MoE with q/k/v biases: its qwen2moe "
                                "never renormalises the top-k weights, which the built MoE does");

    auto base = openModelWeights(s.baseModel);
    const bool interleave = plan.arch == "llama" && !c.qkRowsInterleaved;
    planCommon(plan, c, base, interleave, /*withMlp=*/false);

    std::vector<std::shared_ptr<const WeightStore>> expertStores;
    for (const auto& e : facts.experts) expertStores.push_back(openModelWeights(e.dir));
    const MlpNaming naming{s.prefix, s.mlp};
    std::map<int, size_t> gateOf;
    for (size_t i = 0; i < facts.layers.size(); ++i) gateOf[facts.layers[i]] = i;
    const int padded = c.numLayers - int(gateOf.size());
    if (padded > 0) {
        const uint64_t mlpBytes = uint64_t(3) * uint64_t(H) * uint64_t(I);
        std::ostringstream w;
        w << padded << " layer(s) were not chosen; llama.cpp's `" << plan.arch << "` MoE has experts in every layer, so each holds "
          << "the base MLP " << E << " times behind a zero gate (same output; " << (E - 1) * padded << " extra MLP copies, "
          << (uint64_t(E - 1) * uint64_t(padded) * mlpBytes) << " more weights)";
        plan.warnings.push_back(w.str());
    }
    for (int l = 0; l < c.numLayers; ++l) {
        const auto g = gateOf.find(l);
        const bool routed = g != gateOf.end();
        std::vector<float> router = routed ? gateWeights[g->second].weight : std::vector<float>(size_t(E) * H, 0.0f);
        plan.tensors.push_back({"blk." + std::to_string(l) + ".ffn_gate_inp.weight", {E, H}, DType::F32,
                                {computedPart([router] { return router; })}, false});
        for (const auto& [which, proj] : {std::pair{"gate", "gate_proj"}, {"up", "up_proj"}, {"down", "down_proj"}}) {
            std::vector<Part> parts;
            const std::vector<int64_t> shape = std::string(which) == "down" ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H};
            const std::string tensor = naming.tensor(l, proj);
            for (int e = 0; e < E; ++e) {
                const int expert = s.includeBase ? e - 1 : e;
                const ExpertFacts* f = routed && expert >= 0 ? &facts.experts[size_t(expert)] : nullptr;
                if (!f) {
                    parts.push_back(mappedPart(base, tensor, shape));
                } else if (f->type != ExpertType::LoraAdapter) {
                    parts.push_back(mappedPart(expertStores[size_t(expert)], tensor, shape));
                } else {
                    const ExpertSource src{f->dir, true, f->loraRank, f->loraAlpha, f->loraTargets};
                    parts.push_back(computedPart(
                        [store = expertStores[size_t(expert)], base, src, naming, l, proj = std::string(proj), H, I] {
                            return expertProjection(*store, src, *base, naming, l, proj, H, I);
                        },
                        [base, tensor] { releaseTensor(*base, tensor); }));
                }
            }
            planExperts(plan, l, which, shape, std::move(parts));
        }
    }

    auto addKeys = [&](GgufWriter& w) {
        std::vector<std::string> names;
        if (s.includeBase) names.push_back("base");
        for (const auto& e : facts.experts) names.push_back(e.name);
        std::vector<int32_t> layers(facts.layers.begin(), facts.layers.end());
        w.setString("moe_studio.base_model", s.modelId);
        w.setStrings("moe_studio.experts", names);
        w.setI32s("moe_studio.layers", layers);
        w.setString("moe_studio.gate_mode", toString(s.gateMode));
        w.setString("moe_studio.routing", toString(routing));
        w.setBool("moe_studio.include_base", s.includeBase);
        if (auto it = meta.find("validation_accuracy"); it != meta.end() && !it->second.empty())
            w.setString("moe_studio.validation_accuracy", it->second);
    };
    return writePlan(plan, c, o, addKeys, onProgress, cancel);
}

} // namespace moe
