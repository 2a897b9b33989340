// Reads a Hugging Face config.json (+ generation_config.json) for the Llama
// family: Llama, Mistral, Qwen2 and Qwen3 share one decoder layout and differ
// only in biases, q/k norms, sliding window and defaults; Mixtral, Qwen2-MoE and Qwen3-MoE add
// sparse MoE layers, with the keys and defaults of Transformers' config classes.
#include "moe/model_config.h"

#include "json_input.h"
#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/gguf_model.h"
#include "moe/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

namespace moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct SupportedArch {
    const char* architecture;
    const char* modelType;
    Arch arch;
};
constexpr SupportedArch kSupported[] = {
    {"LlamaForCausalLM", "llama", Arch::Llama},
    {"MistralForCausalLM", "mistral", Arch::Mistral},
    {"Qwen2ForCausalLM", "qwen2", Arch::Qwen2},
    {"Qwen3ForCausalLM", "qwen3", Arch::Qwen3},
    {"MixtralForCausalLM", "mixtral", Arch::Mixtral},
    {"Qwen2MoeForCausalLM", "qwen2_moe", Arch::Qwen2Moe},
    {"Qwen3MoeForCausalLM", "qwen3_moe", Arch::Qwen3Moe},
    {"Gemma2ForCausalLM", "gemma2", Arch::Gemma2},
    {"Gemma3ForCausalLM", "gemma3_text", Arch::Gemma3},
    // The language model of a Gemma 3 vision checkpoint (text_config); the
    // vision tower is not loaded.
    {"Gemma3ForConditionalGeneration", "gemma3", Arch::Gemma3},
    // Phi-3, Phi-3.5-mini and Phi-4-mini: fused qkv_proj and gate_up_proj
    // (split into the usual tensors when the weights are opened).
    {"Phi3ForCausalLM", "phi3", Arch::Phi3},
    // Phi-2 (and the dense layers Phixtral's MoEs are made of): LayerNorm with
    // biases, parallel attention and MLP, fc1 -> gelu_new -> fc2, partial
    // rotary. Its dense / fc1 / fc2 / final_layernorm tensors are renamed to
    // the engine's names when the weights are opened.
    {"PhiForCausalLM", "phi", Arch::Phi2},
};

std::string supportedList(bool modelTypes) {
    std::string s;
    for (const auto& a : kSupported) s += (s.empty() ? "" : ", ") + std::string(modelTypes ? a.modelType : a.architecture);
    return s;
}

json readJson(const fs::path& path) {
    const std::string text = readTextFile(path, kMaxSmallFileBytes);
    try {
        return parseJsonChecked(text, path);
    } catch (const json::exception& e) {
        throw Error(path.string() + ": not valid JSON: " + e.what());
    }
}

// Upper bounds of the fields that size allocations (tables, caches, one
// buffer per layer or expert), far above any released model, so that a
// hostile config.json cannot make the loader allocate without end before the
// tensors are checked. 0 = no bound.
int64_t sizeBound(const std::string& field) {
    static const std::pair<const char*, int64_t> kBounds[] = {
        {"vocab_size", int64_t(1) << 24},
        {"hidden_size", int64_t(1) << 17},
        {"intermediate_size", int64_t(1) << 20},
        {"moe_intermediate_size", int64_t(1) << 20},
        {"shared_expert_intermediate_size", int64_t(1) << 20},
        {"num_hidden_layers", 1024},
        {"num_attention_heads", 1024},
        {"num_key_value_heads", 1024},
        {"head_dim", 4096},
        {"max_position_embeddings", int64_t(1) << 24},
        {"original_max_position_embeddings", int64_t(1) << 24},
        {"sliding_window", int64_t(1) << 24},
        {"num_local_experts", 1024},
        {"num_experts", 1024},
        {"num_experts_per_tok", 1024},
        {"decoder_sparse_step", 1024},
        {"max_window_layers", 1024},
    };
    for (const auto& [name, most] : kBounds)
        if (field == name) return most;
    return 0;
}

// Typed access to one JSON object; every complaint names the file and field.
// Fields that are absent or null count as "not given" (configs use both).
class FieldReader {
public:
    FieldReader(fs::path file, const json& object, std::string prefix = {})
        : file_(std::move(file)), object_(object), prefix_(std::move(prefix)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw Error(file_.string() + ": field " + prefix_ + field + ": " + what);
    }

    const json* find(const std::string& field) const {
        const auto it = object_.find(field);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }
    bool has(const std::string& field) const { return find(field) != nullptr; }

    int positiveInt(const std::string& field) const {
        const json* v = find(field);
        if (!v) fail(field, "missing");
        return positiveIntValue(field, *v);
    }
    int positiveInt(const std::string& field, int fallback) const {
        const json* v = find(field);
        return v ? positiveIntValue(field, *v) : fallback;
    }

    int nonNegativeInt(const std::string& field, int fallback) const {
        const json* v = find(field);
        if (!v) return fallback;
        if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > INT_MAX)
            fail(field, "must be a non-negative integer, got " + jsonSnippet(*v));
        checkUpperBound(field, v->get<int64_t>());
        return v->get<int>();
    }

    double positiveNumber(const std::string& field) const {
        const json* v = find(field);
        if (!v) fail(field, "missing");
        return positiveNumberValue(field, *v);
    }
    double positiveNumber(const std::string& field, double fallback) const {
        const json* v = find(field);
        return v ? positiveNumberValue(field, *v) : fallback;
    }

    bool boolean(const std::string& field, bool fallback) const {
        const json* v = find(field);
        if (!v) return fallback;
        if (!v->is_boolean()) fail(field, "must be true or false, got " + jsonSnippet(*v));
        return v->get<bool>();
    }

    std::string string(const std::string& field) const {
        const json* v = find(field);
        if (!v) return {};
        if (!v->is_string()) fail(field, "must be a string, got " + jsonSnippet(*v));
        return v->get<std::string>();
    }

    // A token id field: an integer, a list of integers, or null.
    std::vector<int> tokenIds(const std::string& field) const {
        std::vector<int> ids;
        const json* v = find(field);
        if (!v) return ids;
        auto add = [&](const json& item) {
            if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<int64_t>() > INT_MAX)
                fail(field, "must be a token id or a list of token ids, got " + jsonSnippet(*v));
            ids.push_back(item.get<int>());
        };
        if (v->is_array())
            for (const auto& item : *v) add(item);
        else
            add(*v);
        return ids;
    }

private:
    int positiveIntValue(const std::string& field, const json& v) const {
        if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > INT_MAX)
            fail(field, "must be a positive integer, got " + jsonSnippet(v));
        checkUpperBound(field, v.get<int64_t>());
        return v.get<int>();
    }
    void checkUpperBound(const std::string& field, int64_t value) const {
        if (const int64_t most = sizeBound(field); most > 0 && value > most)
            fail(field, std::to_string(value) + " is larger than any model has (at most " + std::to_string(most) + ")");
    }
    double positiveNumberValue(const std::string& field, const json& v) const {
        if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
            fail(field, "must be a positive number, got " + jsonSnippet(v));
        return v.get<double>();
    }

    fs::path file_;
    const json& object_;
    std::string prefix_;
};

Arch detectArch(const FieldReader& cfg, std::string& architecture, std::string& modelType) {
    modelType = cfg.string("model_type");
    if (const json* archs = cfg.find("architectures")) {
        if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
            cfg.fail("architectures", "must be a non-empty list of names, got " + jsonSnippet(*archs));
        architecture = (*archs)[0].get<std::string>();
        for (const auto& a : kSupported)
            if (architecture == a.architecture) return a.arch;
        cfg.fail("architectures", "\"" + architecture + "\" is not supported (supported: " + supportedList(false) + ")");
    }
    if (modelType.empty())
        cfg.fail("architectures", "missing, and no model_type either (supported: " + supportedList(false) + ")");
    for (const auto& a : kSupported) {
        if (modelType == a.modelType) {
            architecture = a.architecture;
            return a.arch;
        }
    }
    cfg.fail("model_type", "\"" + modelType + "\" is not supported (supported: " + supportedList(true) + ")");
}

// RoPE parameters. Transformers 5 writes one object, rope_parameters
// {rope_type, rope_theta, factor, ...}; older configs a top-level rope_theta and
// rope_scaling {type or rope_type, factor, ...}. As in Transformers 5
// (PreTrainedConfig.convert_rope_params_to_dict), rope_scaling wins over
// rope_parameters, a rope_theta inside the object over the top-level one, and
// the architecture's default theta comes last.
struct Rope {
    double theta = 10000;
    std::vector<float> invFreq;
    std::vector<float> longInvFreq; // longrope only
    int originalMax = 0;
    double attnFactor = 1;
};

// The rotary width of a head: head_dim * partial_rotary_factor (Transformers:
// int(head_dim * factor)); Phi-3 only, elsewhere the factor must be 1.
int readRotaryDim(const FieldReader& cfg, int headDim, bool partialAllowed) {
    const json* rp = cfg.find("rope_parameters");
    const bool inParams = rp && rp->is_object() && rp->contains("partial_rotary_factor") && !(*rp)["partial_rotary_factor"].is_null();
    const std::string field = inParams ? "rope_parameters.partial_rotary_factor" : "partial_rotary_factor";
    const json* v = inParams ? &(*rp)["partial_rotary_factor"] : cfg.find("partial_rotary_factor");
    if (!v) return headDim;
    if (!v->is_number() || !(v->get<double>() > 0) || !(v->get<double>() <= 1))
        cfg.fail(field, "must be a number in (0, 1], got " + jsonSnippet(*v));
    const double factor = v->get<double>();
    if (factor == 1.0) return headDim;
    if (!partialAllowed) cfg.fail(field, "only 1 (RoPE over the whole head) is supported for this architecture");
    const int dim = static_cast<int>(headDim * factor);
    if (dim <= 0 || dim % 2 != 0)
        cfg.fail(field, jsonSnippet(*v) + " gives a rotary width of " + std::to_string(dim) + " of head_dim " +
                            std::to_string(headDim) + "; it must be even and positive (RoPE rotates pairs)");
    return dim;
}

// A longrope factor list (short_factor / long_factor): one positive number per rotated pair.
std::vector<double> readFactorList(const FieldReader& rs, const std::string& field, int count) {
    const json* v = rs.find(field);
    if (!v) rs.fail(field, "missing (longrope needs " + std::to_string(count) + " factors)");
    if (!v->is_array() || v->size() != size_t(count))
        rs.fail(field, "must be a list of " + std::to_string(count) + " numbers (rotary width / 2), got " + jsonSnippet(*v));
    std::vector<double> out;
    for (const auto& x : *v) {
        if (!x.is_number() || !(x.get<double>() > 0) || !std::isfinite(x.get<double>()))
            rs.fail(field, "entries must be positive numbers, got " + jsonSnippet(x));
        out.push_back(x.get<double>());
    }
    return out;
}

// inv_freq[i] = 1 / theta^(2i / headDim), then the scaling. Computed in double
// and rounded once; Transformers computes in float32, which differs by at most
// an ulp or so.
// `given`: read this object (named `givenField`) instead, as for Gemma 3's
// per-layer-type rope_parameters.
// headDim here is the rotary width (rotaryDim()).
Rope readRope(const FieldReader& cfg, const fs::path& file, int headDim, double defaultTheta,
              const json* given = nullptr, const std::string& givenField = {}, bool longropeAllowed = false) {
    const json* object = given ? given : cfg.find("rope_scaling");
    std::string objectField = given ? givenField : "rope_scaling";
    if (!object) {
        object = cfg.find("rope_parameters");
        objectField = "rope_parameters";
    }
    if (object && !object->is_object())
        cfg.fail(objectField, "must be an object or null, got " + jsonSnippet(*object));
    const json empty = json::object();
    const FieldReader rs(file, object ? *object : empty, objectField + ".");

    Rope rope;
    rope.theta = rs.has("rope_theta") ? rs.positiveNumber("rope_theta") : cfg.positiveNumber("rope_theta", defaultTheta);

    const int half = headDim / 2;
    std::vector<double> invFreq(half);
    for (int i = 0; i < half; ++i) invFreq[i] = 1.0 / std::pow(rope.theta, 2.0 * i / headDim);

    // Newer objects say "rope_type", older ones "type"; Transformers 5 fills in
    // "default" when rope_parameters names none.
    const std::string typeField = rs.has("rope_type") ? "rope_type" : "type";
    std::string type = rs.string(typeField);
    if (type.empty() && object && objectField == "rope_scaling") rs.fail("rope_type", "missing");
    if (type.empty()) type = "default";
    if (type == "default") {
        // plain RoPE
    } else if (type == "linear") {
        const double factor = rs.positiveNumber("factor");
        for (double& f : invFreq) f /= factor;
    } else if (type == "llama3") {
        // Llama 3.1: keep high frequencies (short wavelengths), divide low
        // frequencies by `factor`, and blend linearly (in 1/wavelength)
        // between the two bands.
        const double factor = rs.positiveNumber("factor");
        const double lowFreqFactor = rs.positiveNumber("low_freq_factor");
        const double highFreqFactor = rs.positiveNumber("high_freq_factor");
        const double originalContext = rs.positiveInt("original_max_position_embeddings");
        if (!(highFreqFactor > lowFreqFactor)) rs.fail("high_freq_factor", "must be greater than low_freq_factor");
        const double lowFreqWavelen = originalContext / lowFreqFactor;
        const double highFreqWavelen = originalContext / highFreqFactor;
        for (double& f : invFreq) {
            const double wavelen = 2.0 * std::numbers::pi / f;
            if (wavelen < highFreqWavelen) continue;
            if (wavelen > lowFreqWavelen) {
                f /= factor;
                continue;
            }
            const double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
            f = (1.0 - smooth) * f / factor + smooth * f;
        }
    } else if (type == "longrope" && longropeAllowed) {
        // Transformers' _compute_longrope_parameters: inv_freq / ext_factor,
        // short factors up to original_max_position_embeddings, long beyond;
        // the attention factor from max / original positions when not given.
        const int originalMax = rs.has("original_max_position_embeddings")
                                    ? rs.positiveInt("original_max_position_embeddings")
                                    : cfg.positiveInt("original_max_position_embeddings");
        const std::vector<double> shortF = readFactorList(rs, "short_factor", half);
        const std::vector<double> longF = readFactorList(rs, "long_factor", half);
        double attnFactor = 0;
        if (rs.has("attention_factor")) {
            attnFactor = rs.positiveNumber("attention_factor");
        } else {
            const double factor = double(cfg.positiveInt("max_position_embeddings")) / originalMax;
            attnFactor = factor <= 1 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(double(originalMax)));
        }
        rope.originalMax = originalMax;
        rope.attnFactor = attnFactor;
        rope.longInvFreq.resize(size_t(half));
        for (int i = 0; i < half; ++i) {
            rope.longInvFreq[size_t(i)] = static_cast<float>(invFreq[size_t(i)] / longF[size_t(i)]);
            invFreq[size_t(i)] /= shortF[size_t(i)];
        }
    } else {
        rs.fail(typeField, "\"" + type + "\" is not supported (supported: default, linear, llama3" +
                               std::string(longropeAllowed ? ", longrope" : "") + ", or null)");
    }
    rope.invFreq.assign(invFreq.begin(), invFreq.end());
    return rope;
}

// Values Transformers' config classes use for keys a config.json leaves out
// (configuration_<arch>.py). Only the MoE architectures differ from the
// engine's general defaults; for the dense ones max_position_embeddings stays
// required and num_key_value_heads defaults to the attention heads.
struct ArchDefaults {
    double ropeTheta = 10000;
    double normEps = 1e-6;
    int kvHeads = 0;      // 0: num_attention_heads
    int maxPositions = 0; // 0: required
    int headDim = 0;      // 0: hidden_size / num_attention_heads
    int experts = 0, expertsPerToken = 0, moeIntermediate = 0, sharedIntermediate = 0;
};

ArchDefaults archDefaults(Arch arch) {
    ArchDefaults d;
    switch (arch) {
    case Arch::Qwen3:
        d.kvHeads = 32;
        d.maxPositions = 32768;
        d.headDim = 128;
        break;
    case Arch::Mixtral:
        d.ropeTheta = 1e6; // MixtralConfig.default_theta
        d.normEps = 1e-5;
        d.kvHeads = 8;
        d.maxPositions = 4096 * 32;
        d.experts = 8;
        d.expertsPerToken = 2;
        break;
    case Arch::Qwen2Moe:
        d.kvHeads = 16;
        d.maxPositions = 32768;
        d.experts = 60;
        d.expertsPerToken = 4;
        d.moeIntermediate = 1408;
        d.sharedIntermediate = 5632;
        break;
    case Arch::Qwen3Moe:
        d.kvHeads = 4;
        d.maxPositions = 32768;
        d.experts = 128;
        d.expertsPerToken = 8;
        d.moeIntermediate = 768;
        break;
    case Arch::Gemma2: // Gemma2Config (head_dim is required: see readGemmaFields)
        d.kvHeads = 4;
        d.maxPositions = 8192;
        break;
    case Arch::Phi3: // Phi3Config
        d.normEps = 1e-5;
        d.maxPositions = 4096;
        break;
    case Arch::Phi2: // PhiConfig
        d.normEps = 1e-5;
        d.maxPositions = 2048;
        break;
    case Arch::Gemma3: // Gemma3TextConfig
        d.kvHeads = 4;
        d.maxPositions = 131072;
        d.ropeTheta = 1e6;
        break;
    default:
        break;
    }
    return d;
}

// The expert count. Mixtral and Qwen3-MoE map num_experts onto
// num_local_experts (attribute_map), so either key may hold it; Qwen2-MoE
// reads num_experts only.
void readExpertCount(const FieldReader& cfg, ModelConfig& c, std::vector<std::string> keys, int fallback) {
    const std::string* given = nullptr;
    for (const auto& key : keys) {
        if (!cfg.has(key)) continue;
        const int n = cfg.positiveInt(key);
        if (given && n != c.numExperts)
            cfg.fail(key, std::to_string(n) + " disagrees with " + *given + " " + std::to_string(c.numExperts));
        if (!given) {
            given = &key;
            c.numExperts = n;
        }
    }
    c.numExpertsField = given ? *given : keys.front() + " (not given: Transformers' default " + std::to_string(fallback) + ")";
    if (!given) c.numExperts = fallback;
    c.expertsPerToken = cfg.positiveInt("num_experts_per_tok", archDefaults(c.arch).expertsPerToken);
    if (c.expertsPerToken > c.numExperts)
        cfg.fail("num_experts_per_tok", std::to_string(c.expertsPerToken) + " is more than " +
                                            (given ? *given : keys.front()) + " " + std::to_string(c.numExperts));
}

// Qwen2-MoE and Qwen3-MoE: experts, top-k, expert width and which layers are sparse.
void readQwenMoeFields(const FieldReader& cfg, ModelConfig& c) {
    const ArchDefaults d = archDefaults(c.arch);
    if (c.arch == Arch::Qwen3Moe)
        readExpertCount(cfg, c, {"num_experts", "num_local_experts"}, d.experts);
    else
        readExpertCount(cfg, c, {"num_experts"}, d.experts);
    c.normTopkProb = cfg.boolean("norm_topk_prob", false);
    c.moeIntermediateSize = cfg.positiveInt("moe_intermediate_size", d.moeIntermediate);
    c.decoderSparseStep = cfg.positiveInt("decoder_sparse_step", 1);
    if (const json* only = cfg.find("mlp_only_layers")) {
        if (!only->is_array()) cfg.fail("mlp_only_layers", "must be a list of layer indices, got " + jsonSnippet(*only));
        for (const auto& v : *only) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.numLayers)
                cfg.fail("mlp_only_layers", "must list layers 0 to " + std::to_string(c.numLayers - 1) + ", got " +
                                                jsonSnippet(v));
            c.mlpOnlyLayers.push_back(v.get<int>());
        }
    }
}

// One window for the whole model: the layers that slide must be all or none.
void setUniformWindow(const FieldReader& cfg, ModelConfig& c, int window, const std::vector<bool>& sliding,
                      const std::string& field) {
    const auto count = std::count(sliding.begin(), sliding.end(), true);
    if (window == 0 || count == 0) {
        c.slidingWindow = 0;
        return;
    }
    if (count != static_cast<long>(sliding.size()))
        cfg.fail(field, "sliding window on " + std::to_string(count) + " of " + std::to_string(sliding.size()) +
                            " layers is not supported (only all or none)");
    c.slidingWindow = window;
}

// Entries of layer_types, one per layer: true where a layer slides.
std::vector<bool> readLayerTypes(const FieldReader& cfg, const ModelConfig& c) {
    const json* types = cfg.find("layer_types");
    if (!types->is_array() || types->size() != size_t(c.numLayers))
        cfg.fail("layer_types", "must list " + std::to_string(c.numLayers) + " layer types, got " + jsonSnippet(*types));
    std::vector<bool> sliding(types->size());
    for (size_t i = 0; i < types->size(); ++i) {
        const json& t = (*types)[i];
        if (t != "sliding_attention" && t != "full_attention")
            cfg.fail("layer_types", "entries must be \"full_attention\" or \"sliding_attention\", got " + jsonSnippet(t));
        sliding[i] = t == "sliding_attention";
    }
    return sliding;
}

// Qwen2-MoE (Transformers 5): layer_types when given, else layers i even and
// below max_window_layers slide, all only with use_sliding_window.
void readQwen2MoeSlidingWindow(const FieldReader& cfg, ModelConfig& c) {
    const bool use = cfg.boolean("use_sliding_window", false);
    const int window = use ? cfg.positiveInt("sliding_window", 4096) : 0;
    if (cfg.has("layer_types")) {
        setUniformWindow(cfg, c, window, readLayerTypes(cfg, c), "layer_types");
        return;
    }
    std::vector<bool> sliding(size_t(c.numLayers), false);
    const int windowLayers = cfg.nonNegativeInt("max_window_layers", 28);
    for (int i = 0; i < c.numLayers; ++i) sliding[size_t(i)] = use && i % 2 == 0 && i < windowLayers;
    setUniformWindow(cfg, c, window, sliding, "max_window_layers");
}

// Qwen3 (Qwen3Config.__post_init__): layer_types when given, else the
// layers from max_window_layers on slide, all only with use_sliding_window.
void readQwen3SlidingWindow(const FieldReader& cfg, ModelConfig& c) {
    const bool use = cfg.boolean("use_sliding_window", false);
    const int window = use ? cfg.positiveInt("sliding_window", 4096) : 0;
    if (cfg.has("layer_types")) {
        setUniformWindow(cfg, c, window, readLayerTypes(cfg, c), "layer_types");
        return;
    }
    const int windowFrom = cfg.nonNegativeInt("max_window_layers", 28);
    std::vector<bool> sliding(size_t(c.numLayers));
    for (int i = 0; i < c.numLayers; ++i) sliding[size_t(i)] = use && i >= windowFrom;
    setUniformWindow(cfg, c, window, sliding, "max_window_layers");
}

// Qwen2's sliding window: all layers or none.
void readQwenSlidingWindow(const FieldReader& cfg, ModelConfig& c) {
    if (cfg.boolean("use_sliding_window", false)) {
        c.slidingWindow = cfg.positiveInt("sliding_window");
        // Layers from max_window_layers on use the window, earlier ones
        // full attention; only "all" or "none" fits one slidingWindow.
        const int windowFrom = cfg.nonNegativeInt("max_window_layers", 0);
        if (windowFrom >= c.numLayers)
            c.slidingWindow = 0;
        else if (windowFrom > 0)
            cfg.fail("max_window_layers", "sliding window on only some layers (from layer " +
                                              std::to_string(windowFrom) + " of " + std::to_string(c.numLayers) +
                                              ") is not supported");
    }
}


// A soft-capping value: absent = Transformers' default, null = none, else a
// positive number (0 would divide by zero in cap * tanh(x / cap)).
float readSoftcap(const FieldReader& cfg, const std::string& field, double fallback) {
    const json* v = cfg.find(field);
    if (!v) return cfg.has(field) || fallback == 0 ? 0.0f : static_cast<float>(fallback);
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>()))
        cfg.fail(field, "must be a positive number or null (no soft-capping), got " + jsonSnippet(*v));
    return static_cast<float>(v->get<double>());
}

// Gemma 2 and 3 (Gemma2Config, Gemma3TextConfig): GeGLU, (1 + w) norms,
// four norms per layer, scaled embeddings, query_pre_attn_scalar, and
// sliding layers alternating with global ones.
void readGemmaFields(const FieldReader& cfg, const fs::path& file, ModelConfig& c) {
    const std::string act = cfg.has("hidden_activation") ? cfg.string("hidden_activation") : "gelu_pytorch_tanh";
    if (act != "gelu_pytorch_tanh")
        cfg.fail("hidden_activation", "\"" + act + "\" is not supported (only gelu_pytorch_tanh)");
    c.hiddenAct = Activation::GeluTanh;
    c.normOffset = 1.0f;
    c.postNorms = true;
    c.tieWordEmbeddings = cfg.boolean("tie_word_embeddings", true);
    if (cfg.boolean("attention_bias", false)) cfg.fail("attention_bias", "true is not supported");
    // Transformers: scaling = query_pre_attn_scalar ** -0.5.
    const double qpas = cfg.positiveNumber("query_pre_attn_scalar", 256);
    c.attentionScale = static_cast<float>(1.0 / std::sqrt(qpas));
    const bool gemma2 = c.arch == Arch::Gemma2;
    c.attnSoftcap = readSoftcap(cfg, "attn_logit_softcapping", gemma2 ? 50.0 : 0.0);
    c.finalSoftcap = readSoftcap(cfg, "final_logit_softcapping", gemma2 ? 30.0 : 0.0);
    c.qkNorm = !gemma2;
    c.slidingWindow = cfg.positiveInt("sliding_window", 4096);
    if (cfg.has("layer_types")) {
        c.slidingLayers = readLayerTypes(cfg, c);
    } else {
        // Gemma 2: even layers slide; Gemma 3: all but every
        // sliding_window_pattern-th ("sliding" when (i + 1) % pattern != 0).
        const int pattern = gemma2 ? 2 : cfg.positiveInt("sliding_window_pattern", cfg.positiveInt("_sliding_window_pattern", 6));
        c.slidingLayers.resize(size_t(c.numLayers));
        for (int i = 0; i < c.numLayers; ++i) c.slidingLayers[size_t(i)] = (i + 1) % pattern != 0;
    }
    if (!gemma2) {
        // Sliding layers rotate with rope_local_base_freq and no scaling;
        // Transformers 5 writes rope_parameters per layer type instead.
        const json* params = cfg.has("rope_scaling") ? nullptr : cfg.find("rope_parameters");
        if (params && params->is_object() && params->contains("full_attention")) {
            const Rope global = readRope(cfg, file, c.headDim, 1e6, &(*params)["full_attention"], "rope_parameters.full_attention");
            c.ropeTheta = static_cast<float>(global.theta);
            c.ropeInvFreq = global.invFreq;
            if (params->contains("sliding_attention")) {
                const Rope sliding = readRope(cfg, file, c.headDim, 10000.0, &(*params)["sliding_attention"],
                                              "rope_parameters.sliding_attention");
                c.ropeLocalTheta = static_cast<float>(sliding.theta);
                c.ropeLocalInvFreq = sliding.invFreq;
                return;
            }
        }
        c.ropeLocalTheta = static_cast<float>(cfg.positiveNumber("rope_local_base_freq", 10000.0));
        const int half = c.headDim / 2;
        c.ropeLocalInvFreq.resize(size_t(half));
        for (int i = 0; i < half; ++i)
            c.ropeLocalInvFreq[size_t(i)] = static_cast<float>(1.0 / std::pow(double(c.ropeLocalTheta), 2.0 * i / c.headDim));
    }
}

} // namespace

ModelConfig ModelConfig::load(const fs::path& dir) {
    if (isGgufPath(dir)) return ggufModelConfig(*GgufFile::open(dir));
    std::error_code ec;
    const fs::path file = dir / "config.json";
    if (!fs::is_regular_file(file, ec)) {
        if (!fs::is_directory(dir, ec)) throw Error(dir.string() + ": folder does not exist");
        throw Error(dir.string() + ": no config.json in this folder");
    }
    const json root = readJson(file);
    if (!root.is_object()) throw Error(file.string() + ": not a JSON object");
    const FieldReader top(file, root);

    ModelConfig c;
    c.dir = dir;
    c.arch = detectArch(top, c.architecture, c.modelType);
    // Gemma 3 vision checkpoints keep the language model's fields in text_config.
    const bool nested = c.architecture == "Gemma3ForConditionalGeneration";
    const json* text = nested ? top.find("text_config") : nullptr;
    if (nested && (!text || !text->is_object())) top.fail("text_config", "missing (the language model's settings)");
    const FieldReader cfg(file, nested ? *text : root, nested ? "text_config." : "");
    if (nested) c.weightPrefix = "language_model.model.";

    if (c.arch == Arch::Phi2) {
        // PhiConfig's default; NewGELUActivation is the tanh approximation.
        const std::string act = cfg.has("hidden_act") ? cfg.string("hidden_act") : "gelu_new";
        if (act != "gelu_new") cfg.fail("hidden_act", "\"" + act + "\" is not supported for Phi-2 (only gelu_new)");
    } else if (!c.isGemma()) {
        const std::string act = cfg.string("hidden_act");
        if (!act.empty() && act != "silu") cfg.fail("hidden_act", "\"" + act + "\" is not supported (only silu)");
    } else if (!cfg.has("head_dim")) {
        // Gemma's head_dim (256 in the released models) is not hidden / heads.
        cfg.fail("head_dim", "missing (Gemma's head size is not hidden_size / num_attention_heads; give it)");
    }

    c.vocabSize = cfg.positiveInt("vocab_size");
    c.hiddenSize = cfg.positiveInt("hidden_size");
    c.intermediateSize = cfg.positiveInt("intermediate_size");
    c.numLayers = cfg.positiveInt("num_hidden_layers");
    c.numHeads = cfg.positiveInt("num_attention_heads");
    const ArchDefaults defaults = archDefaults(c.arch);
    c.numKvHeads = cfg.positiveInt("num_key_value_heads", defaults.kvHeads > 0 ? defaults.kvHeads : c.numHeads);
    if (c.numHeads % c.numKvHeads != 0)
        cfg.fail("num_key_value_heads", std::to_string(c.numKvHeads) + " does not divide num_attention_heads " +
                                            std::to_string(c.numHeads));
    if (!cfg.has("head_dim") && defaults.headDim == 0 && c.hiddenSize % c.numHeads != 0)
        cfg.fail("head_dim", "missing, and hidden_size " + std::to_string(c.hiddenSize) +
                                 " is not divisible by num_attention_heads " + std::to_string(c.numHeads));
    // head_dim may differ from hidden_size / heads (e.g. Mistral NeMo, Qwen3);
    // RoPE rotates pairs, so it must be even.
    c.headDim = cfg.positiveInt("head_dim", defaults.headDim > 0 ? defaults.headDim : c.hiddenSize / c.numHeads);
    if (c.headDim % 2 != 0) cfg.fail("head_dim", std::to_string(c.headDim) + " must be even for rotary embeddings");
    c.maxPositions = defaults.maxPositions > 0 ? cfg.positiveInt("max_position_embeddings", defaults.maxPositions)
                                               : cfg.positiveInt("max_position_embeddings");
    c.normEps = static_cast<float>(cfg.positiveNumber(c.arch == Arch::Phi2 ? "layer_norm_eps" : "rms_norm_eps", defaults.normEps));
    c.ropeDim = readRotaryDim(cfg, c.headDim, c.arch == Arch::Phi3 || c.arch == Arch::Phi2);
    const Rope rope = readRope(cfg, file, c.ropeDim, defaults.ropeTheta, nullptr, {}, c.arch == Arch::Phi3);
    c.ropeTheta = static_cast<float>(rope.theta);
    c.ropeInvFreq = rope.invFreq;
    c.ropeLongInvFreq = rope.longInvFreq;
    c.ropeOriginalMax = rope.originalMax;
    c.ropeAttnFactor = static_cast<float>(rope.attnFactor);
    c.attentionScale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.headDim)));

    switch (c.arch) {
    case Arch::Llama:
        // Llama's attention_bias puts biases on q, k, v and o.
        c.attentionBias = c.outputBias = cfg.boolean("attention_bias", false);
        // Transformers' Llama also has mlp_bias; the engine has no MLP biases.
        if (cfg.boolean("mlp_bias", false)) cfg.fail("mlp_bias", "true is not supported");
        break;
    case Arch::Mistral:
        if (cfg.has("sliding_window")) c.slidingWindow = cfg.positiveInt("sliding_window");
        break;
    case Arch::Mixtral:
        // Mistral attention; every layer's MLP is a sparse MoE block whose
        // top-k softmax weights are always renormalised.
        if (cfg.has("sliding_window")) c.slidingWindow = cfg.positiveInt("sliding_window");
        readExpertCount(cfg, c, {"num_local_experts", "num_experts"}, defaults.experts);
        c.normTopkProb = true;
        break;
    case Arch::Qwen3:
        // Qwen2's layout with Qwen3 attention: attention_bias on q, k, v and
        // o, per-head q/k norms; layers from max_window_layers on slide.
        c.attentionBias = c.outputBias = cfg.boolean("attention_bias", false);
        c.qkNorm = true;
        readQwen3SlidingWindow(cfg, c);
        break;
    case Arch::Qwen3Moe:
        readQwenMoeFields(cfg, c);
        // Qwen3 attention: attention_bias on q, k, v and o, per-head q/k norms,
        // and the window (use_sliding_window) on every layer.
        c.attentionBias = c.outputBias = cfg.boolean("attention_bias", false);
        c.qkNorm = true;
        if (cfg.boolean("use_sliding_window", false)) c.slidingWindow = cfg.positiveInt("sliding_window", 4096);
        break;
    case Arch::Qwen2Moe:
        readQwenMoeFields(cfg, c);
        c.sharedExpertIntermediateSize = cfg.nonNegativeInt("shared_expert_intermediate_size", defaults.sharedIntermediate);
        c.attentionBias = cfg.boolean("qkv_bias", true); // q/k/v only
        readQwen2MoeSlidingWindow(cfg, c);
        break;
    case Arch::Qwen2:
        c.attentionBias = true; // Qwen2 always has q/k/v biases
        readQwenSlidingWindow(cfg, c);
        break;
    case Arch::Gemma2:
    case Arch::Gemma3:
        break; // below, after the shared fields
    case Arch::Phi3:
        // Phi3Config: no biases, the window (when given) on every layer.
        if (cfg.has("sliding_window")) c.slidingWindow = cfg.positiveInt("sliding_window");
        break;
    case Arch::Phi2:
        // PhiConfig: biases on q, k, v, dense (o), fc1, fc2 and lm_head.
        if (cfg.boolean("qk_layernorm", false))
            cfg.fail("qk_layernorm", "true is not supported (LayerNorm of q and k per head)");
        c.normKind = NormKind::Layer;
        c.parallelResidual = true;
        c.gatedMlp = false;
        c.hiddenAct = Activation::GeluTanh;
        c.attentionBias = c.outputBias = c.mlpBias = c.lmHeadBias = true;
        break;
    }

    c.tieWordEmbeddings = cfg.boolean("tie_word_embeddings", false);
    c.torchDtype = cfg.has("torch_dtype") ? cfg.string("torch_dtype") : cfg.string("dtype");
    if (c.torchDtype.empty()) c.torchDtype = top.has("torch_dtype") ? top.string("torch_dtype") : top.string("dtype");
    if (c.isGemma()) {
        readGemmaFields(cfg, file, c);
        // Transformers scales by sqrt(hidden) cast to the hidden states' dtype.
        const float scale = std::sqrt(float(c.hiddenSize));
        c.embedScale = c.torchDtype == "bfloat16" ? bf16ToFloat(floatToBf16(scale))
                     : c.torchDtype == "float16"  ? f16ToFloat(floatToF16(scale))
                                                  : scale;
    }
    c.bosTokenIds = cfg.tokenIds("bos_token_id");
    c.eosTokenIds = cfg.tokenIds("eos_token_id");
    if (nested && c.bosTokenIds.empty()) c.bosTokenIds = top.tokenIds("bos_token_id");
    if (nested && c.eosTokenIds.empty()) c.eosTokenIds = top.tokenIds("eos_token_id");

    // generation_config.json often lists extra end tokens (e.g. <|im_end|> and
    // <|endoftext|>); generation stops on any of them.
    const fs::path genFile = dir / "generation_config.json";
    if (fs::is_regular_file(genFile, ec)) {
        const json gen = readJson(genFile);
        if (!gen.is_object()) throw Error(genFile.string() + ": not a JSON object");
        const FieldReader genReader(genFile, gen);
        for (int id : genReader.tokenIds("eos_token_id"))
            if (std::find(c.eosTokenIds.begin(), c.eosTokenIds.end(), id) == c.eosTokenIds.end())
                c.eosTokenIds.push_back(id);
        if (c.bosTokenIds.empty()) c.bosTokenIds = genReader.tokenIds("bos_token_id");
    }
    return c;
}

std::vector<std::string> ModelConfig::mlpProjections() const {
    if (!gatedMlp) return {"up_proj", "down_proj"};
    return {"gate_proj", "up_proj", "down_proj"};
}

bool ModelConfig::isSparseLayer(int layer) const {
    if (numExperts == 0) return false;
    if (std::find(mlpOnlyLayers.begin(), mlpOnlyLayers.end(), layer) != mlpOnlyLayers.end()) return false;
    return (layer + 1) % decoderSparseStep == 0;
}

std::string ModelConfig::archName() const {
    switch (arch) {
    case Arch::Llama: return "Llama";
    case Arch::Mistral: return "Mistral";
    case Arch::Qwen2: return "Qwen2";
    case Arch::Qwen3: return "Qwen3";
    case Arch::Mixtral: return "Mixtral";
    case Arch::Qwen2Moe: return "Qwen2-MoE";
    case Arch::Qwen3Moe: return "Qwen3-MoE";
    case Arch::Gemma2: return "Gemma 2";
    case Arch::Gemma3: return "Gemma 3";
    case Arch::Phi3: return "Phi-3";
    case Arch::Phi2: return "Phi-2";
    }
    return "?";
}

} // namespace moe
