// Validation of a selection before any heavy work: configs, safetensors
// headers (memory-mapped, no tensor data read), adapter configs and the
// dataset, every problem collected into one report.
#include "moe/validate.h"

#include "moe/atomic_file.h"
#include "json_input.h"
#include "moe/error.h"
#include "moe/gguf_model.h"
#include "moe/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <set>

namespace moe {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool isMlpProjection(const ModelConfig& base, const std::string& name) {
    const auto projections = base.mlpProjections();
    return std::find(projections.begin(), projections.end(), name) != projections.end();
}

// A module name as the engine calls it: Phi-2's fc1 / fc2 / dense are
// up_proj / down_proj / o_proj (its tensors are renamed so when opened).
std::string engineModuleName(const ModelConfig& base, const std::string& name) {
    if (base.arch != Arch::Phi2) return name;
    return name == "fc1" ? "up_proj" : name == "fc2" ? "down_proj" : name == "dense" ? "o_proj" : name;
}

std::string joinList(const std::vector<std::string>& items, const char* sep = ", ") {
    std::string s;
    for (const auto& i : items) s += (s.empty() ? "" : sep) + i;
    return s;
}

std::string shapeText(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

bool isFloatDType(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// [out, in] of an MLP projection's weight in HF layout.
std::vector<int64_t> projectionShape(const ModelConfig& base, const std::string& proj) {
    if (proj == "down_proj") return {base.hiddenSize, base.intermediateSize};
    return {base.intermediateSize, base.hiddenSize};
}

std::string mlpTensorName(const std::string& prefix, int layer, const std::string& mlp, const std::string& proj) {
    return prefix + "." + std::to_string(layer) + "." + mlp + "." + proj;
}

// What one expert folder turned out to be, and what is wrong with it.
struct Inspection {
    ExpertFacts facts;
    bool detected = false; // the type could be told at all
    std::vector<std::string> problems;
    std::vector<std::string> warnings;
};

struct TensorNaming {
    std::string prefix = "model.layers";
    std::string mlp = "mlp";
};

void inspectFineTuned(const ModelConfig& base, const fs::path& dir, const std::vector<int>& layers,
                      const TensorNaming& naming, Inspection& out) {
    const fs::path configFile = isGgufPath(dir) ? dir : dir / "config.json";
    ModelConfig cfg;
    try {
        cfg = ModelConfig::load(dir);
    } catch (const Error& e) {
        out.problems.push_back(e.what());
        return;
    }
    const fs::path baseConfig = base.fromGguf ? base.dir : base.dir / "config.json";
    auto differs = [&](const char* field, const std::string& mine, const std::string& theirs) {
        if (mine != theirs)
            out.problems.push_back(configFile.string() + ": " + field + " " + mine + " differs from the base's " +
                                   theirs + " (" + baseConfig.string() + ")");
    };
    differs("architectures", cfg.architecture, base.architecture);
    differs("hidden_size", std::to_string(cfg.hiddenSize), std::to_string(base.hiddenSize));
    differs("intermediate_size", std::to_string(cfg.intermediateSize), std::to_string(base.intermediateSize));
    differs("num_hidden_layers", std::to_string(cfg.numLayers), std::to_string(base.numLayers));
    differs("vocab_size", std::to_string(cfg.vocabSize), std::to_string(base.vocabSize));
    if (!out.problems.empty()) return; // tensor shapes would only repeat the same mismatch

    std::shared_ptr<const WeightStore> store;
    try {
        store = openModelWeights(dir);
    } catch (const Error& e) {
        out.problems.push_back(e.what());
        return;
    }
    for (int layer : layers)
        for (const std::string& proj : base.mlpProjections()) {
            const std::string name = mlpTensorName(naming.prefix, layer, naming.mlp, proj) + ".weight";
            try {
                const TensorView& t = store->require(name, projectionShape(base, proj));
                if (!isFloatDType(t.dtype) && !isQuantized(t.dtype))
                    out.problems.push_back(t.file->path().string() + ": tensor " + name + ": dtype " +
                                           dtypeName(t.dtype) + " is not supported (F32, F16, BF16 or a GGUF block type)");
                out.facts.addedBytes += t.nbytes;
            } catch (const Error& e) {
                out.problems.push_back(e.what());
            }
        }
}

// A LoRA tensor name split into the module it adapts and A or B. PEFT writes
// "base_model.model.<module>.lora_A.weight"; older or multi-adapter saves
// put the adapter name in: "<module>.lora_A.default.weight".
bool splitLoraName(const std::string& name, std::string& module, char& which) {
    std::string n = name;
    const std::string peftPrefix = "base_model.model.";
    if (n.rfind(peftPrefix, 0) == 0) n = n.substr(peftPrefix.size());
    for (char ab : {'A', 'B'}) {
        const std::string marker = std::string(".lora_") + ab + ".";
        const size_t p = n.find(marker);
        if (p == std::string::npos) continue;
        const std::string rest = n.substr(p + marker.size());
        if (rest != "weight" && !(rest.size() > 7 && rest.ends_with(".weight") &&
                                  rest.find('.') == rest.size() - 7))
            return false;
        module = n.substr(0, p);
        which = ab;
        return true;
    }
    return false;
}

void inspectLora(const ModelConfig& base, const fs::path& dir, const std::vector<int>& layers,
                 const TensorNaming& naming, const Selector* selector, Inspection& out) {
    const fs::path configFile = dir / "adapter_config.json";
    json cfg;
    try {
        cfg = parseJsonChecked(readTextFile(configFile, kMaxSmallFileBytes), configFile);
    } catch (const json::parse_error& e) {
        out.problems.push_back(configFile.string() + ": not valid JSON: " + e.what());
        return;
    } catch (const Error& e) {
        out.problems.push_back(e.what());
        return;
    }
    if (!cfg.is_object()) {
        out.problems.push_back(configFile.string() + ": not a JSON object");
        return;
    }
    auto problem = [&](const std::string& field, const std::string& what) {
        out.problems.push_back(configFile.string() + ": " + field + ": " + what);
    };
    if (auto it = cfg.find("peft_type"); it != cfg.end() && !(it->is_string() && *it == "LORA"))
        problem("peft_type", jsonSnippet(*it) + " is not supported (only LORA)");

    const auto r = cfg.find("r");
    if (r == cfg.end() || !r->is_number_integer() || r->get<int64_t>() < 1 || r->get<int64_t>() > 1 << 20)
        problem("r", r == cfg.end() ? "missing" : jsonSnippet(*r) + " is not a positive integer");
    else
        out.facts.loraRank = r->get<int>();
    const auto alpha = cfg.find("lora_alpha");
    if (alpha == cfg.end() || !alpha->is_number() || !(alpha->get<double>() > 0))
        problem("lora_alpha", alpha == cfg.end() ? "missing" : jsonSnippet(*alpha) + " is not a positive number");
    else
        out.facts.loraAlpha = alpha->get<double>();

    // Features that change the arithmetic W + alpha/r * B A: refused rather
    // than silently computed wrong.
    auto refuseTrue = [&](const char* field, const char* why) {
        if (auto it = cfg.find(field); it != cfg.end() && it->is_boolean() && it->get<bool>())
            problem(field, std::string("true is not supported (") + why + ")");
    };
    refuseTrue("use_dora", "DoRA rescales the merged weight");
    refuseTrue("use_rslora", "rank-stabilised scaling alpha/sqrt(r)");
    refuseTrue("fan_in_fan_out", "transposed weights");
    for (const char* field : {"rank_pattern", "alpha_pattern"})
        if (auto it = cfg.find(field); it != cfg.end() && it->is_object() && !it->empty())
            problem(field, "per-module ranks or alphas are not supported");
    if (auto it = cfg.find("bias"); it != cfg.end() && it->is_string() && *it != "none")
        problem("bias", jsonSnippet(*it) + " is not supported (only \"none\")");

    std::vector<std::string> adapterTargets;
    const auto targets = cfg.find("target_modules");
    if (targets == cfg.end() || targets->is_null()) {
        problem("target_modules", "missing");
    } else if (targets->is_string()) {
        problem("target_modules", "a regular expression (" + jsonSnippet(*targets) + ") is not supported; list the modules");
    } else if (!targets->is_array()) {
        problem("target_modules", "expected a list of module names, got " + jsonSnippet(*targets));
    } else {
        for (const auto& t : *targets) {
            if (!t.is_string()) continue;
            // Phi-3's fused gate_up_proj adapts both projections (its B split at load).
            if (t == "gate_up_proj") {
                adapterTargets.push_back("gate_proj");
                adapterTargets.push_back("up_proj");
            } else {
                adapterTargets.push_back(engineModuleName(base, t.get<std::string>()));
            }
        }
    }

    // The projections the build uses: the selector's when given, else the
    // adapter's MLP targets.
    std::vector<std::string> chosen;
    if (selector && !selector->loraTargets.empty()) {
        for (const auto& given : selector->loraTargets) {
            const std::string t = engineModuleName(base, given);
            if (!isMlpProjection(base, t)) {
                out.problems.push_back("selector anymoe.config.expert_type.lora_adapter.target_modules: " + given +
                                       " is not an MLP projection (" + joinList(base.mlpProjections()) + ")");
            } else if (std::find(adapterTargets.begin(), adapterTargets.end(), t) == adapterTargets.end() &&
                       !adapterTargets.empty()) {
                problem("target_modules", "does not include " + t + ", which the selector's target_modules names");
            } else {
                chosen.push_back(t);
            }
        }
    } else {
        std::vector<std::string> ignored;
        for (const auto& t : adapterTargets) (isMlpProjection(base, t) ? chosen : ignored).push_back(t);
        if (!ignored.empty())
            out.warnings.push_back(configFile.string() + ": target_modules " + joinList(ignored) +
                                   " are not MLP projections; only the MLP part of this adapter is used");
        if (chosen.empty() && !adapterTargets.empty())
            problem("target_modules", joinList(adapterTargets) +
                                          ": none is an MLP projection (" + joinList(base.mlpProjections()) + ")");
    }
    out.facts.loraTargets = chosen;

    if (selector) {
        const std::string sel = "selector anymoe.config.expert_type.lora_adapter";
        if (selector->loraRank > 0 && out.facts.loraRank > 0 && selector->loraRank != out.facts.loraRank)
            out.problems.push_back(sel + ".rank " + std::to_string(selector->loraRank) + " differs from r " +
                                   std::to_string(out.facts.loraRank) + " in " + configFile.string());
        if (selector->loraAlpha > 0 && out.facts.loraAlpha > 0 &&
            std::abs(selector->loraAlpha - out.facts.loraAlpha) > 1e-9 * out.facts.loraAlpha) {
            char buf[96];
            std::snprintf(buf, sizeof buf, ".alpha %g differs from lora_alpha %g in ", selector->loraAlpha,
                          out.facts.loraAlpha);
            out.problems.push_back(sel + buf + configFile.string());
        }
    }

    const fs::path weights = dir / "adapter_model.safetensors";
    std::error_code ec;
    if (!fs::is_regular_file(weights, ec)) {
        out.problems.push_back(weights.string() + ": missing" +
                               (fs::exists(dir / "adapter_model.bin", ec)
                                    ? std::string(" (adapter_model.bin is a pickle; convert it to safetensors)")
                                    : std::string()));
        return;
    }
    std::unique_ptr<WeightStore> store;
    try {
        store = WeightStore::openFile(weights);
        useEngineLoraNames(*store);
    } catch (const Error& e) {
        out.problems.push_back(e.what());
        return;
    }
    std::map<std::pair<std::string, char>, const TensorView*> lora;
    for (const std::string& name : store->names()) {
        std::string module;
        char which = 0;
        if (splitLoraName(name, module, which)) lora[{module, which}] = store->find(name);
    }
    const int rank = out.facts.loraRank;
    for (int layer : layers)
        for (const auto& proj : chosen) {
            const std::string module = mlpTensorName(naming.prefix, layer, naming.mlp, proj);
            const auto shape = projectionShape(base, proj); // [out, in]
            for (char which : {'A', 'B'}) {
                const auto it = lora.find({module, which});
                const std::string expectedName = "base_model.model." + module + ".lora_" + which + ".weight";
                if (it == lora.end()) {
                    out.problems.push_back(weights.string() + ": tensor " + expectedName + " missing (layer " +
                                           std::to_string(layer) + ", " + proj + ")");
                    continue;
                }
                const TensorView& t = *it->second;
                if (rank > 0) {
                    const std::vector<int64_t> expected =
                        which == 'A' ? std::vector<int64_t>{rank, shape[1]} : std::vector<int64_t>{shape[0], rank};
                    if (t.shape != expected)
                        out.problems.push_back(weights.string() + ": tensor " + t.name + " has shape " +
                                               t.shapeString() + ", expected " + shapeText(expected) + " (r " +
                                               std::to_string(rank) + ", " + (which == 'A' ? "[r, in]" : "[out, r]") +
                                               ")");
                }
                if (!isFloatDType(t.dtype))
                    out.problems.push_back(weights.string() + ": tensor " + t.name + ": dtype " + dtypeName(t.dtype) +
                                           " is not supported (F32, F16, BF16)");
                out.facts.addedBytes += t.nbytes;
            }
        }
}

Inspection inspectExpert(const ModelConfig& base, const fs::path& dir, const std::vector<int>& layers,
                         const TensorNaming& naming, const Selector* selector) {
    Inspection out;
    out.facts.dir = dir;
    std::error_code ec;
    if (isGgufPath(dir)) {
        out.detected = true;
        out.facts.type = ExpertType::FineTuned;
        inspectFineTuned(base, dir, layers, naming, out);
        return out;
    }
    if (!fs::is_directory(dir, ec)) {
        out.problems.push_back(dir.string() + ": folder does not exist");
        return out;
    }
    if (fs::is_regular_file(dir / "adapter_config.json", ec)) {
        out.detected = true;
        out.facts.type = ExpertType::LoraAdapter;
        inspectLora(base, dir, layers, naming, selector, out);
    } else if (fs::is_regular_file(dir / "config.json", ec)) {
        out.detected = true;
        out.facts.type = ExpertType::FineTuned;
        inspectFineTuned(base, dir, layers, naming, out);
    } else {
        out.problems.push_back(dir.string() +
                               ": neither a model (no config.json) nor a LoRA adapter (no adapter_config.json)");
    }
    return out;
}

} // namespace

std::string checkExpertCompatibility(const ModelConfig& base, const fs::path& expertDir, ExpertType* detectedType) {
    std::vector<int> all(base.numLayers);
    std::iota(all.begin(), all.end(), 0);
    const Inspection in = inspectExpert(base, expertDir, all, TensorNaming{}, nullptr);
    if (detectedType && in.detected) *detectedType = in.facts.type;
    return joinList(in.problems, "; ");
}

SelectionFacts validateSelection(const Selector& s, const std::atomic<bool>* cancel) {
    const std::string selectorName = s.file.empty() ? std::string("selector") : s.file.string();
    // Outside the try blocks below, which collect moe::Error as problems.
    auto checkCancel = [&] { throwIfCancelled(cancel, "validating " + selectorName); };
    checkCancel();
    std::vector<std::string> problems;
    SelectionFacts facts;
    auto report = [&]() {
        if (problems.empty()) return;
        std::string message = selectorName + ": " + std::to_string(problems.size()) +
                              (problems.size() == 1 ? " problem:" : " problems:");
        for (const auto& p : problems) message += "\n  " + p;
        throw Error(message);
    };

    // The base first: everything else is measured against it.
    try {
        facts.base = ModelConfig::load(s.baseModel);
    } catch (const Error& e) {
        problems.push_back(std::string("base model: ") + e.what());
        report();
    }
    const ModelConfig& base = facts.base;
    const fs::path baseConfig = base.fromGguf ? base.dir : base.dir / "config.json";

    if (s.hiddenSize > 0 && s.hiddenSize != base.hiddenSize)
        problems.push_back("anymoe.config.hidden_size " + std::to_string(s.hiddenSize) +
                           " differs from the base's hidden_size " + std::to_string(base.hiddenSize) + " (" +
                           baseConfig.string() + ")");

    // Layers: the selector's, sorted; all when it names none.
    if (s.layers.empty()) {
        facts.layers.resize(base.numLayers);
        std::iota(facts.layers.begin(), facts.layers.end(), 0);
    } else {
        std::set<int> seen;
        for (int l : s.layers) {
            if (l < 0 || l >= base.numLayers)
                problems.push_back("anymoe.layers: layer " + std::to_string(l) + " does not exist (the base has " +
                                   std::to_string(base.numLayers) + " layers, 0-" + std::to_string(base.numLayers - 1) +
                                   ")");
            else if (!seen.insert(l).second)
                problems.push_back("anymoe.layers: layer " + std::to_string(l) + " is listed twice");
        }
        facts.layers.assign(seen.begin(), seen.end());
    }

    // The base must have the MLP tensors under prefix/mlp, or every expert
    // would report the same missing names.
    const TensorNaming naming{s.prefix, s.mlp};
    if (!facts.layers.empty()) {
        try {
            const auto store = openModelWeights(base.dir);
            const std::string name = mlpTensorName(s.prefix, facts.layers.front(), s.mlp, "up_proj") + ".weight";
            if (!store->find(name))
                problems.push_back(base.dir.string() + ": no tensor " + name +
                                   " in the base: check anymoe.prefix \"" + s.prefix + "\" and anymoe.mlp \"" + s.mlp +
                                   "\"");
        } catch (const Error& e) {
            problems.push_back(std::string("base model: ") + e.what());
        }
    }

    // Experts.
    if (s.experts.empty()) problems.push_back("anymoe.model_ids: no experts");
    std::vector<std::string> fineTuned, lora;
    std::set<fs::path> seenDirs;
    for (size_t i = 0; i < s.experts.size(); ++i) {
        checkCancel();
        Inspection in = inspectExpert(base, s.experts[i], facts.layers, naming, &s);
        in.facts.name = i < s.expertIds.size() ? s.expertIds[i] : s.experts[i].filename().string();
        if (in.detected) (in.facts.type == ExpertType::FineTuned ? fineTuned : lora).push_back(in.facts.name);
        for (auto& p : in.problems) problems.push_back("expert " + in.facts.name + ": " + p);
        for (auto& w : in.warnings) facts.warnings.push_back("expert " + in.facts.name + ": " + w);
        if (!seenDirs.insert(s.experts[i]).second)
            facts.warnings.push_back("expert " + in.facts.name + " is listed twice: both copies compute the same output");
        facts.expertBytes += in.facts.addedBytes;
        facts.experts.push_back(std::move(in.facts));
    }
    if (!fineTuned.empty() && !lora.empty()) {
        problems.push_back("experts mix fine-tuned models (" + joinList(fineTuned) + ") and LoRA adapters (" +
                           joinList(lora) + "): all experts must be one type");
    } else if (s.expertType == ExpertType::FineTuned && !lora.empty()) {
        problems.push_back("anymoe.config.expert_type is fine_tuned, but " + joinList(lora) +
                           (lora.size() == 1 ? " is a LoRA adapter" : " are LoRA adapters") +
                           ": set [anymoe.config.expert_type.lora_adapter]");
    } else if (s.expertType == ExpertType::LoraAdapter && !fineTuned.empty()) {
        problems.push_back("anymoe.config.expert_type is lora_adapter, but " + joinList(fineTuned) +
                           (fineTuned.size() == 1 ? " is a fine-tuned model" : " are fine-tuned models") +
                           ": set expert_type = \"fine_tuned\"");
    }
    if (s.mergeLora && s.expertType == ExpertType::FineTuned)
        facts.warnings.push_back("anymoe.config.merge_lora is ignored: the experts are fine-tuned models");

    facts.nExperts = int(s.experts.size()) + (s.includeBase ? 1 : 0);
    if (facts.nExperts < 2)
        problems.push_back("a MoE needs at least 2 experts; there is " + std::to_string(facts.nExperts) +
                           (s.includeBase ? "" : " (include_base = true adds the base as one)"));
    if (s.topK > facts.nExperts)
        problems.push_back("anymoe.config.top_k " + std::to_string(s.topK) + " exceeds the " +
                           std::to_string(facts.nExperts) + " experts");

    // Dataset: labels within [0, nExperts).
    const bool needsDataset = s.gateMode == GateMode::Trained && s.training;
    if (s.datasetJson.empty()) {
        if (needsDataset) problems.push_back("anymoe.dataset_json: missing: training gates needs a dataset");
    } else {
        checkCancel();
        try {
            facts.dataset = loadDataset(s.datasetJson);
        } catch (const Error& e) {
            problems.push_back(e.what());
        }
        std::vector<int> rowsPerExpert(std::max(facts.nExperts, 0), 0);
        std::vector<std::string> badLabels;
        size_t badCount = 0, withImages = 0;
        for (size_t i = 0; i < facts.dataset.size(); ++i) {
            const DatasetRow& row = facts.dataset[i];
            if (!row.imageUrls.empty()) ++withImages;
            if (row.expert >= 0 && row.expert < facts.nExperts) {
                ++rowsPerExpert[row.expert];
                continue;
            }
            if (++badCount <= 5)
                badLabels.push_back(s.datasetJson.string() + ": rows[" + std::to_string(i) + "].expert: label " +
                                    std::to_string(row.expert) + " is out of range: " +
                                    std::to_string(facts.nExperts) + " experts (labels 0-" +
                                    std::to_string(facts.nExperts - 1) + ")" +
                                    (s.includeBase ? "" : "; AnyMoE counts the base as expert 0: set include_base = true if "
                                                          "this dataset does"));
        }
        problems.insert(problems.end(), badLabels.begin(), badLabels.end());
        if (badCount > badLabels.size())
            problems.push_back(s.datasetJson.string() + ": ... and " + std::to_string(badCount - badLabels.size()) +
                               " more rows with out-of-range labels");
        if (!facts.dataset.empty() && needsDataset)
            for (int e = 0; e < facts.nExperts; ++e)
                if (rowsPerExpert[e] == 0) {
                    // Label e is the base when include_base, else expert e (shifted by one with the base).
                    const size_t expert = size_t(e) - (s.includeBase ? 1 : 0);
                    const std::string who = s.includeBase && e == 0 ? std::string("the base")
                                            : expert < s.expertIds.size() ? s.expertIds[expert]
                                                                          : std::string("expert");
                    facts.warnings.push_back(s.datasetJson.string() + ": no rows labelled " + std::to_string(e) +
                                             " (" + who + "): its gate column learns only to stay off");
                }
        if (withImages > 0)
            facts.warnings.push_back(s.datasetJson.string() + ": " + std::to_string(withImages) +
                                     " rows have image_urls, which are ignored (text-only models)");
    }

    // Training-free gates need prompts per expert.
    if (s.gateMode == GateMode::Hidden || s.gateMode == GateMode::CheapEmbed) {
        const std::string mode = toString(s.gateMode);
        if (!s.expertPrompts.empty() && s.expertPrompts.size() != s.experts.size())
            problems.push_back("anymoe.config.experts: " + std::to_string(s.expertPrompts.size()) +
                               " entries for " + std::to_string(s.experts.size()) + " experts");
        for (size_t i = 0; i < s.experts.size(); ++i)
            if (i >= s.expertPrompts.size() || s.expertPrompts[i].positive.empty())
                problems.push_back("anymoe.config.experts[" + std::to_string(i) + "] (" +
                                   (i < s.expertIds.size() ? s.expertIds[i] : s.experts[i].string()) +
                                   "): no positive_prompts; gate_mode \"" + mode + "\" needs them");
        if (s.includeBase && s.basePrompts.positive.empty())
            problems.push_back("anymoe.config.base_expert: no positive_prompts; gate_mode \"" + mode +
                               "\" with include_base needs them for the base");
        if (s.expertPrompts.size() > 1 &&
            std::all_of(s.expertPrompts.begin() + 1, s.expertPrompts.end(),
                        [&](const ExpertPrompts& p) { return p == s.expertPrompts.front(); }))
            problems.push_back("anymoe.config.experts: every expert has the same prompts, so every gate row "
                               "would be the same");
    }

    // Pretrained gates.
    if (s.gateMode == GateMode::Trained && !s.training) {
        std::error_code ec;
        if (s.gateModelId.empty()) {
            problems.push_back("anymoe.config.gate_model_id: missing: training = false loads the gates from it");
        } else if (!fs::is_directory(s.gateModelId, ec)) {
            problems.push_back("anymoe.config.gate_model_id: " + s.gateModelId.string() + ": folder does not exist");
        } else {
            fs::path gateFile = s.gateModelId / "gate.safetensors";
            if (!fs::is_regular_file(gateFile, ec)) {
                gateFile.clear();
                for (const auto& e : fs::directory_iterator(s.gateModelId, ec))
                    if (e.is_regular_file() && e.path().extension() == ".safetensors") {
                        gateFile = e.path();
                        break;
                    }
            }
            if (gateFile.empty())
                problems.push_back("anymoe.config.gate_model_id: " + s.gateModelId.string() +
                                   ": no gate.safetensors (or other .safetensors file) in this folder");
            else
                try {
                    SafetensorsFile header(gateFile);
                    if (header.tensors().empty()) problems.push_back(gateFile.string() + ": holds no tensors");
                } catch (const Error& e) {
                    problems.push_back(e.what());
                }
        }
    }
    if (!s.routing && facts.dataset.empty())
        facts.warnings.push_back("anymoe.config.routing is not set and there is no dataset to pick it on "
                                 "validation prompts");

    report();
    return facts;
}

} // namespace moe
