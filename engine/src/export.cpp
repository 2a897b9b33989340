#include "moe/export.h"

#include "moe/atomic_file.h"
#include "moe/builder.h"
#include "json_input.h"
#include "moe/error.h"
#include "moe/expert_loader.h"
#include "moe/gate_training.h"
#include "moe/moe_export_refusal.h"
#include "moe/safetensors.h"
#include "moe/validate.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

namespace moe {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* toString(ExportFormat f) {
    switch (f) {
    case ExportFormat::Mixtral: return "mixtral";
    case ExportFormat::Qwen2Moe: return "qwen2_moe";
    case ExportFormat::Qwen3Moe: return "qwen3_moe";
    }
    return "mixtral";
}

bool parseExportFormat(const std::string& s, ExportFormat& out) {
    if (s == "mixtral") out = ExportFormat::Mixtral;
    else if (s == "qwen2_moe") out = ExportFormat::Qwen2Moe;
    else if (s == "qwen3_moe") out = ExportFormat::Qwen3Moe;
    else return false;
    return true;
}

ExportFormat defaultExportFormat(const Selector& s) {
    return ModelConfig::load(s.baseModel).arch == Arch::Qwen3 ? ExportFormat::Qwen3Moe : ExportFormat::Mixtral;
}

namespace {

DType parseDType(const std::string& s, const std::string& what) {
    if (s == "bf16" || s == "bfloat16") return DType::BF16;
    if (s == "f16" || s == "float16") return DType::F16;
    if (s == "f32" || s == "float32") return DType::F32;
    throw Error(what + " \"" + s + "\": expected bf16, f16 or f32");
}

const char* torchDtype(DType d) { return d == DType::BF16 ? "bfloat16" : d == DType::F16 ? "float16" : "float32"; }

std::vector<std::byte> encode(const std::vector<float>& v, DType dtype) {
    std::vector<std::byte> out(v.size() * dtypeSize(dtype));
    for (size_t i = 0; i < v.size(); ++i) {
        if (dtype == DType::F32) {
            std::memcpy(out.data() + i * 4, &v[i], 4);
        } else {
            const uint16_t h = dtype == DType::BF16 ? floatToBf16(v[i]) : floatToF16(v[i]);
            std::memcpy(out.data() + i * 2, &h, 2);
        }
    }
    return out;
}

// One tensor of the checkpoint; its values are made when its shard is written.
struct PlannedTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::function<std::vector<float>()> values;
    uint64_t numel() const {
        uint64_t n = 1;
        for (int64_t d : shape) n *= uint64_t(d);
        return n;
    }
};

std::string shardName(size_t index, size_t count) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
    return name;
}

// The format's name as its model card and messages say it.
const char* formatTitle(ExportFormat f) {
    switch (f) {
    case ExportFormat::Mixtral: return "Mixtral";
    case ExportFormat::Qwen2Moe: return "Qwen2-MoE";
    case ExportFormat::Qwen3Moe: return "Qwen3-MoE";
    }
    return "Mixtral";
}

std::string percent(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f%%", v * 100);
    return b;
}

} // namespace

ExportReport exportMoe(const Selector& s, const ExportOptions& options,
                       const std::function<void(const ExportProgress&)>& onProgress, const std::atomic<bool>* cancel) {
    ExportReport rep;
    rep.out = options.out;
    if (options.out.empty()) throw Error("export: no output folder given");
    std::error_code ec;
    if (fs::exists(options.out, ec) && !(fs::is_directory(options.out, ec) && fs::is_empty(options.out, ec)))
        throw Error(options.out.string() + ": already exists and is not an empty folder; choose a new one");
    if (options.shardBytes == 0) throw Error("export: the shard size must be positive");

    const SelectionFacts facts = validateSelection(s);
    const ModelConfig& c = facts.base;
    if (c.isGemma())
        throw Error(c.dir.string() + "/config.json: the base is " + c.archName() + " (" + c.architecture +
                    "), and no standard sparse-MoE checkpoint format exists for Gemma: Mixtral and Qwen2-MoE have "
                    "neither its (1 + w) norms, its norms after attention and MLP, GeGLU, scaled embeddings nor "
                    "soft-capping, so any file written would be another model. The build runs in MoE Studio "
                    "itself (moe-cli chat, serve, bench)");
    if (const std::string why = moeExportRefusal(c); !why.empty()) throw Error(c.dir.string() + "/config.json: " + why);
    // Qwen2-MoE and Qwen3-MoE name their tensors alike and keep unchosen layers dense.
    const bool qwen = options.format != ExportFormat::Mixtral;
    const bool qwen3 = options.format == ExportFormat::Qwen3Moe;
    const std::string title = formatTitle(options.format);
    if (qwen3 && c.arch != Arch::Qwen3)
        throw Error(c.dir.string() + "/config.json: the base is " + c.archName() + " (" + c.architecture +
                    "); qwen3_moe (Qwen3MoeForCausalLM) takes a Qwen3 base, whose attention normalises each head's "
                    "q and k, and would change any other; export it as mixtral or qwen2_moe");
    if (!qwen3 && c.arch == Arch::Qwen3)
        throw Error(c.dir.string() + "/config.json: the base (" + c.architecture +
                    ") normalises each head's q and k, which " + title +
                    " does not; export it as qwen3_moe (Qwen3MoeForCausalLM), which keeps them");
    const fs::path gates = gatesFile(s);
    if (!fs::exists(gates, ec))
        throw Error(gates.string() + ": no gates here; build the MoE first (moe-cli build " +
                    (s.file.empty() ? std::string("SELECTOR") : s.file.string()) + ")");
    std::map<std::string, std::string> meta;
    const auto gateWeights = loadGates(gates, facts.layers, uint32_t(facts.nExperts), uint32_t(c.hiddenSize), &meta);
    for (size_t i = 0; i < gateWeights.size(); ++i)
        if (!gateWeights[i].bias.empty())
            throw Error(gates.string() + ": the gate of layer " + std::to_string(facts.layers[i]) +
                        " has a bias, which the router of a Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint (a linear layer "
                        "without bias) cannot hold; set "
                        "gate_bias = false in [anymoe.config] of " +
                        (s.file.empty() ? std::string("the selector") : s.file.string()) + " and build again");
    if (c.outputBias && !qwen3)
        throw Error(c.dir.string() + "/config.json: the base (" + c.architecture +
                    ") has attention_bias, whose o_proj bias neither Mixtral nor Qwen2-MoE has");
    if (c.qkNorm && !qwen3)
        throw Error(c.dir.string() + "/config.json: the base (" + c.architecture +
                    ") normalises each head's q and k, which neither Mixtral nor Qwen2-MoE does; exporting it would "
                    "change the model");
    if (c.attentionBias && !qwen)
        throw Error(c.dir.string() + "/config.json: the base (" + c.architecture +
                    ") has q/k/v biases, which Mixtral has not; export it as qwen2_moe");
    if (c.isMoe()) throw Error(c.dir.string() + ": the base is already a sparse MoE");

    RoutingMode routing = s.routing.value_or(RoutingMode::Token);
    if (!s.routing)
        if (auto it = meta.find("routing"); it != meta.end()) parseRoutingMode(it->second, routing);
    if (routing != RoutingMode::Token)
        rep.warnings.push_back(std::string("the MoE was built with ") + toString(routing) +
                               " routing; " + title + " routes every token on its own gate scores (token routing), so "
                               "the exported model picks experts per token instead of " +
                               (routing == RoutingMode::Running    ? "by the running mean of the scores so far"
                                : routing == RoutingMode::Sequence ? "once per prompt"
                                                                   : "by the prompt's likelihood under each expert") +
                               "; compare with moe-cli chat --routing token");

    const DType dtype = !options.dtype.empty()  ? parseDType(options.dtype, "--dtype")
                        : !s.exportDtype.empty() ? parseDType(s.exportDtype, "export_dtype")
                                                 : [&] {
                                                       auto st = WeightStore::openFolder(s.baseModel);
                                                       return st->require("model.embed_tokens.weight").dtype;
                                                   }();

    auto base = std::shared_ptr<WeightStore>(WeightStore::openFolder(s.baseModel));
    std::vector<std::shared_ptr<WeightStore>> expertStores;
    for (const auto& e : facts.experts) expertStores.push_back(std::shared_ptr<WeightStore>(WeightStore::openFolder(e.dir)));
    const MlpNaming naming{s.prefix, s.mlp};
    const int E = facts.nExperts, H = c.hiddenSize, I = c.intermediateSize;
    const int topK = std::clamp(s.topK, 1, E);
    rep.experts = E;
    rep.expertsPerToken = topK;

    // Which layer is routed, and by which gate.
    std::map<int, size_t> gateOf;
    for (size_t i = 0; i < facts.layers.size(); ++i) gateOf[facts.layers[i]] = i;
    if (int(facts.layers.size()) < c.numLayers && !qwen)
        rep.warnings.push_back(std::to_string(c.numLayers - int(facts.layers.size())) +
                               " layer(s) were not chosen; Mixtral has experts in every layer, so each of them holds "
                               "the base MLP " + std::to_string(E) + " times behind a zero gate (same output, " +
                               std::to_string(E - 1) + " extra MLP copies per layer on disk)");

    // The plan: every base tensor but the chosen prefix's MLPs, then per layer the router and experts.
    std::vector<PlannedTensor> plan;
    std::set<std::string> mlpNames;
    // Qwen2-MoE keeps the layers not chosen dense (mlp_only_layers); Mixtral cannot.
    for (int l = 0; l < c.numLayers; ++l)
        if (!qwen || gateOf.count(l))
            for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) mlpNames.insert(naming.tensor(l, proj));
    for (const auto& name : base->names()) {
        if (mlpNames.count(name)) continue;
        const TensorView& t = base->require(name);
        plan.push_back({name, t.shape, [base, name] { return toFloat32(base->require(name)); }});
    }
    if (options.format == ExportFormat::Qwen2Moe && !c.attentionBias) {
        // Qwen2 attention always has q/k/v biases: zeros keep the base's attention.
        const int64_t q = int64_t(c.numHeads) * c.headDim, kv = int64_t(c.numKvHeads) * c.headDim;
        for (int l = 0; l < c.numLayers; ++l)
            for (const auto& [proj, n] : {std::pair{"q_proj", q}, {"k_proj", kv}, {"v_proj", kv}})
                plan.push_back({"model.layers." + std::to_string(l) + ".self_attn." + proj + ".bias", {n},
                                [n = n] { return std::vector<float>(size_t(n), 0.0f); }});
    }
    for (int l = 0; l < c.numLayers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + (qwen ? ".mlp." : ".block_sparse_moe.");
        const auto g = gateOf.find(l);
        const bool routed = g != gateOf.end();
        if (qwen && !routed) continue;
        if (options.format == ExportFormat::Qwen2Moe) {
            // Qwen2-MoE always has a shared expert: one of width 1 with zero
            // weights adds exactly 0 (silu(0)·0), whatever its gate says.
            const std::vector<std::pair<std::string, std::vector<int64_t>>> shared = {
                {"shared_expert.gate_proj.weight", {1, H}}, {"shared_expert.up_proj.weight", {1, H}},
                {"shared_expert.down_proj.weight", {H, 1}}, {"shared_expert_gate.weight", {1, H}}};
            for (const auto& [name, shape] : shared)
                plan.push_back({p + name, shape, [H] { return std::vector<float>(size_t(H), 0.0f); }});
        }
        std::vector<float> router = routed ? gateWeights[g->second].weight : std::vector<float>(size_t(E) * H, 0.0f);
        plan.push_back({p + "gate.weight", {E, H}, [router] { return router; }});
        for (int e = 0; e < E; ++e) {
            // Slot e: the base when include_base makes it expert 0, else the selector's expert.
            const int expert = s.includeBase ? e - 1 : e;
            const bool isBase = !routed || expert < 0;
            for (const auto& [mixtralName, proj] : {std::pair{"w1", "gate_proj"}, {"w2", "down_proj"}, {"w3", "up_proj"}}) {
                const std::string w = qwen ? proj : mixtralName;
                const std::vector<int64_t> shape =
                    std::string(proj) == "down_proj" ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H};
                std::function<std::vector<float>()> values;
                if (isBase) {
                    values = [base, naming, l, proj = std::string(proj), shape] {
                        return toFloat32(base->require(naming.tensor(l, proj), shape));
                    };
                } else {
                    const ExpertFacts& f = facts.experts[size_t(expert)];
                    const ExpertSource src{f.dir, f.type == ExpertType::LoraAdapter, f.loraRank, f.loraAlpha, f.loraTargets};
                    values = [store = expertStores[size_t(expert)], base, src, naming, l, proj = std::string(proj), H, I] {
                        return expertProjection(*store, src, *base, naming, l, proj, H, I);
                    };
                }
                plan.push_back({p + "experts." + std::to_string(e) + "." + w + ".weight", shape, std::move(values)});
            }
        }
    }

    // Shards: consecutive tensors up to shardBytes each.
    std::vector<size_t> shardOf(plan.size());
    size_t shards = 0;
    uint64_t filled = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        const uint64_t bytes = plan[i].numel() * dtypeSize(dtype);
        if (i == 0 || (filled > 0 && filled + bytes > options.shardBytes)) {
            ++shards;
            filled = 0;
        }
        shardOf[i] = shards - 1;
        filled += bytes;
    }

    // Everything goes into a temporary sibling folder, renamed at the end.
    const fs::path out = fs::absolute(options.out).lexically_normal();
    // An export killed before its rename left its folder: removed here.
    const std::string tmpPrefix = "." + out.filename().string() + ".tmp-";
    removeStaleTemporaries(out.parent_path(), tmpPrefix);
    const fs::path tmp = out.parent_path() / (tmpPrefix + std::to_string(::getpid()));
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
    struct Cleanup {
        fs::path dir;
        bool keep = false;
        ~Cleanup() {
            std::error_code e;
            if (!keep) fs::remove_all(dir, e);
        }
    } cleanup{tmp};

    // Each shard's tensors are made, encoded and written one at a time, so
    // the export holds one tensor in memory, not a whole shard.
    struct Cancelled {};
    ojson weightMap = ojson::object();
    size_t done = 0;
    for (size_t shard = 0; shard < shards; ++shard) {
        std::vector<size_t> members;
        std::vector<TensorLayout> layouts;
        const std::string file = shardName(shard, shards);
        for (size_t i = 0; i < plan.size(); ++i) {
            if (shardOf[i] != shard) continue;
            members.push_back(i);
            layouts.push_back({plan[i].name, dtype, plan[i].shape});
        }
        std::vector<std::byte> current;
        try {
            writeSafetensorsStreamed(
                tmp / file, layouts,
                [&](size_t k) -> std::span<const std::byte> {
                    if (cancel && cancel->load()) throw Cancelled{};
                    const PlannedTensor& t = plan[members[k]];
                    current = encode(t.values(), dtype);
                    weightMap[t.name] = file;
                    rep.bytes += current.size();
                    rep.parameters += t.numel();
                    if (onProgress) onProgress({"tensors", ++done, plan.size()});
                    return current;
                },
                {{"format", "pt"}});
        } catch (const Cancelled&) {
            rep.cancelled = true;
            return rep;
        }
        rep.files.push_back(file);
    }
    rep.tensors = plan.size();
    ojson index;
    index["metadata"] = {{"total_size", rep.bytes}};
    index["weight_map"] = weightMap;
    writeFileAtomic(tmp / "model.safetensors.index.json", index.dump(2) + "\n");
    rep.files.push_back("model.safetensors.index.json");

    // config.json: the base's, as the format's class.
    const std::string configText = readTextFile(c.dir / "config.json");
    checkJsonDepth(configText, c.dir / "config.json");
    ojson config = ojson::parse(configText);
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp", "use_sliding_window", "max_window_layers",
                            "layer_types"})
        config.erase(key);
    // Keys the base may leave to its own defaults, which differ in the MoE
    // classes (Mixtral: rope_theta 1e6, rms_norm_eps 1e-5, 8 KV heads), are
    // written out. RoPE goes in the form every Transformers version reads
    // (rope_theta + rope_scaling; version 5 also reads rope_parameters).
    config["head_dim"] = c.headDim;
    config["num_key_value_heads"] = c.numKvHeads;
    config["rope_theta"] = double(c.ropeTheta);
    if (!config.contains("rms_norm_eps") || config["rms_norm_eps"].is_null()) config["rms_norm_eps"] = 1e-6;
    if ((!config.contains("rope_scaling") || config["rope_scaling"].is_null()) && config.contains("rope_parameters") &&
        config["rope_parameters"].is_object() && config["rope_parameters"].value("rope_type", "default") != "default")
        config["rope_scaling"] = config["rope_parameters"];
    config["num_experts_per_tok"] = topK;
    config["output_router_logits"] = false;
    if (qwen) {
        // Both: experts of the base MLP's width, every layer a candidate
        // (decoder_sparse_step 1), the layers not chosen dense.
        config["num_experts"] = E;
        config["moe_intermediate_size"] = I;
        config["decoder_sparse_step"] = 1;
        ojson dense = ojson::array();
        for (int l = 0; l < c.numLayers; ++l)
            if (!gateOf.count(l)) dense.push_back(l);
        config["mlp_only_layers"] = dense;
        config["norm_topk_prob"] = true; // the built MoE renormalises its top-k weights (both default to false)
        config["router_aux_loss_coef"] = 0.001;
    }
    if (options.format == ExportFormat::Qwen2Moe) {
        config["architectures"] = {"Qwen2MoeForCausalLM"};
        config["model_type"] = "qwen2_moe";
        config["use_sliding_window"] = c.slidingWindow > 0;
        config["sliding_window"] = c.slidingWindow > 0 ? c.slidingWindow : c.maxPositions;
        config["max_window_layers"] = c.slidingWindow > 0 ? 0 : c.numLayers;
        // Transformers 5 takes each layer's attention from layer_types (and
        // would otherwise slide only on even layers below max_window_layers).
        config["layer_types"] = std::vector<std::string>(
            size_t(c.numLayers), c.slidingWindow > 0 ? "sliding_attention" : "full_attention");
        config["qkv_bias"] = true;
        config["shared_expert_intermediate_size"] = 1; // zero weights, see the tensors
    } else if (qwen3) {
        config["architectures"] = {"Qwen3MoeForCausalLM"};
        config["model_type"] = "qwen3_moe";
        // Qwen3-MoE has Qwen3's attention (q/k norms, the base's tensors as
        // they are); attention_bias puts biases on q, k, v and o in both.
        config["attention_bias"] = c.attentionBias;
        config["max_position_embeddings"] = c.maxPositions; // the defaults agree today; explicit all the same
        // Its window, when on, covers every layer (the base's is all or none).
        config["use_sliding_window"] = c.slidingWindow > 0;
        config["sliding_window"] = c.slidingWindow > 0 ? ojson(c.slidingWindow) : ojson(nullptr);
        config["max_window_layers"] = c.slidingWindow > 0 ? 0 : c.numLayers;
    } else {
        config["architectures"] = {"MixtralForCausalLM"};
        config["model_type"] = "mixtral";
        config["sliding_window"] = c.slidingWindow > 0 ? ojson(c.slidingWindow) : ojson(nullptr);
        config["num_local_experts"] = E;
        config["router_aux_loss_coef"] = 0.02;
        config["router_jitter_noise"] = 0.0;
    }
    config["torch_dtype"] = torchDtype(dtype);
    if (config.contains("dtype")) config["dtype"] = torchDtype(dtype); // Transformers 5's name for it
    writeFileAtomic(tmp / "config.json", config.dump(2) + "\n");
    rep.files.push_back("config.json");

    // generation_config.json: the base's, else its bos/eos.
    if (fs::is_regular_file(c.dir / "generation_config.json")) {
        writeFileAtomic(tmp / "generation_config.json", readTextFile(c.dir / "generation_config.json"));
    } else {
        ojson gen;
        if (!c.bosTokenIds.empty()) gen["bos_token_id"] = c.bosTokenIds.size() == 1 ? ojson(c.bosTokenIds[0]) : ojson(c.bosTokenIds);
        if (!c.eosTokenIds.empty()) gen["eos_token_id"] = c.eosTokenIds.size() == 1 ? ojson(c.eosTokenIds[0]) : ojson(c.eosTokenIds);
        writeFileAtomic(tmp / "generation_config.json", gen.dump(2) + "\n");
    }
    rep.files.push_back("generation_config.json");

    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja"}) {
        if (!fs::is_regular_file(c.dir / name)) continue;
        writeFileAtomic(tmp / name, readTextFile(c.dir / name));
        rep.files.push_back(name);
    }

    // README.md: a model card saying what was built and how well the gates route.
    std::ostringstream card;
    card << "---\nbase_model: " << s.modelId << "\ntags:\n- moe\n- " << toString(options.format)
         << "\n- moe-studio\n---\n\n"
         << "# " << out.filename().string() << "\n\n"
         << "A " << title << "-format sparse Mixture-of-Experts built with MoE Studio from the base model `" << s.modelId
         << "` (" << c.architecture << ").\n\n"
         << "| | |\n|---|---|\n"
         << "| experts per layer | " << E << " |\n| experts per token | " << topK << " |\n"
         << "| layers | " << c.numLayers << " (routed: ";
    for (size_t i = 0; i < facts.layers.size(); ++i) card << (i ? ", " : "") << facts.layers[i];
    card << ") |\n| gate mode | " << toString(s.gateMode) << " |\n| routing when built | " << toString(routing)
         << " (exported: token, softmax → top-" << topK << " → renormalised) |\n| dtype | " << torchDtype(dtype)
         << " |\n| parameters | " << rep.parameters << " |\n\n## Experts\n\n";
    int slot = 0;
    if (s.includeBase) card << "- expert " << slot++ << ": the base model's MLP\n";
    for (const auto& e : facts.experts)
        card << "- expert " << slot++ << ": `" << e.name << "` ("
             << (e.type == ExpertType::LoraAdapter ? "LoRA adapter r " + std::to_string(e.loraRank) + ", merged"
                                                   : std::string("fine-tuned"))
             << ")\n";
    if (auto it = meta.find("validation_accuracy"); it != meta.end() && !it->second.empty()) {
        card << "\n## Gate validation accuracy (token routing)\n\n| layer | per token | per prompt |\n|---|---|---|\n";
        std::istringstream items(it->second);
        for (std::string item; std::getline(items, item, ',');) {
            int layer = 0;
            double tokenAcc = 0, promptAcc = 0;
            if (std::sscanf(item.c_str(), "%d:%lf/%lf", &layer, &tokenAcc, &promptAcc) == 3)
                card << "| " << layer << " | " << percent(tokenAcc) << " | " << percent(promptAcc) << " |\n";
        }
    }
    if (!rep.warnings.empty()) {
        card << "\n## Notes\n\n";
        for (const auto& w : rep.warnings) card << "- " << w << "\n";
    }
    writeFileAtomic(tmp / "README.md", card.str());
    rep.files.push_back("README.md");
    if (onProgress) onProgress({"files", 1, 1});

    if (cancel && cancel->load()) {
        rep.cancelled = true;
        return rep;
    }
    if (fs::exists(out, ec)) fs::remove(out); // an empty folder (checked above)
    fs::rename(tmp, out);
    cleanup.keep = true;
    return rep;
}

} // namespace moe
