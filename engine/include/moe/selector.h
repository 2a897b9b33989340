#pragma once
// The MoE selector: what to build (base model, experts, layers) and how to
// route (gate mode, training settings). Stored as a TOML file compatible with
// mistral.rs AnyMoE selectors: a real AnyMoE file loads unchanged, and the
// files we write load in mistral.rs too (it ignores our extra keys).
//
//   [model]                       # mistral.rs: the base model
//   kind = "plain"                # optional; only "plain" is accepted
//   model_id = "../base"          # folder (relative to this file) or HF id org/name
//   arch = "llama"                # informational
//
//   [anymoe]
//   dataset_json = "amoe.json"    # {"rows":[{"prompt","expert","image_urls"?}]}
//   prefix = "model.layers"
//   mlp = "mlp"
//   model_ids = ["../expert-code", "../expert-legal"]
//   layers = [2, 3]               # any subset, any order; absent = all layers
//
//   [anymoe.config]               # AnyMoE keys ...
//   hidden_size = 256             # optional for us (checked against the base)
//   lr = 1e-3                     # epochs = 100, batch_size = 4
//   expert_type = "fine_tuned"    # or the table below
//   gate_model_id = "gates"       # where gates are saved (training) or loaded from
//   training = true
//   loss_csv_path = "loss.csv"
//   top_k = 2                     # ... and ours (see README "Selector reference")
//   gate_mode = "trained"         # trained | hidden | cheap_embed | random
//   routing = "token"             # token | running | sequence | likelihood; absent = pick on validation
//   routing_halflife = 0.0
//   gate_bias = true
//   include_base = false          # the base MLP as expert 0 (AnyMoE's convention)
//   validation_split = 0.1
//   seed = 0
//   use_chat_template = true
//   merge_lora = false
//   anymoe_loss_header = false
//   export_dtype = "bfloat16"     # bfloat16 | float16 | float32; absent = the base's dtype
//   export_architecture = "mixtral"
//
//   [anymoe.config.expert_type.lora_adapter]   # LoRA experts; each key optional
//   rank = 8                      #   (absent = read from adapter_config.json)
//   alpha = 16
//   target_modules = ["gate_proj", "up_proj", "down_proj"]
//
//   [anymoe.config.base_expert]   # prompts for the base as an expert (include_base)
//   positive_prompts = ["..."]
//
//   [[anymoe.config.experts]]     # one per model_ids entry, same order
//   model_id = "../expert-code"   # optional; must match model_ids[i] when given
//   positive_prompts = ["def f(x):"]
//   negative_prompts = []
//
// mistral.rs runtime options (top-level tokenizer_json; [model] dtype,
// topology, organization, from_uqff, write_uqff, imatrix, calibration_file,
// max_seq_len, max_batch_size, hf_cache_path) are accepted and kept verbatim
// so that such files load and save unchanged; they do not affect a build.
#include "moe/quant.h"
#include "moe/routing.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace moe {

enum class ExpertType { FineTuned, LoraAdapter };
enum class GateMode { Trained, Hidden, CheapEmbed, Random };

const char* toString(GateMode);    // "trained", "hidden", "cheap_embed", "random"
const char* toString(ExpertType);  // "fine_tuned", "lora_adapter"
// The inverse; false when `s` names none of them.
bool parseGateMode(const std::string& s, GateMode& out);
bool parseExpertType(const std::string& s, ExpertType& out);

struct ExpertPrompts {
    std::vector<std::string> positive, negative;
    bool operator==(const ExpertPrompts&) const = default;
};

struct Selector {
    std::filesystem::path file;                 // where it was read from (empty if built in memory)
    std::string modelId;                        // as written
    std::filesystem::path baseModel;            // resolved folder
    std::string arch;                           // [model] arch, informational
    std::filesystem::path datasetJson;          // resolved; empty allowed when gate_mode != trained
    std::string prefix = "model.layers", mlp = "mlp";
    std::vector<std::string> expertIds;         // as written
    std::vector<std::filesystem::path> experts; // resolved folders
    std::vector<int> layers;                    // as written (any order, any subset); empty = all
    int hiddenSize = 0;                         // 0 = not given (taken from the base)
    double lr = 1e-3;
    int epochs = 100;
    int batchSize = 4;
    ExpertType expertType = ExpertType::FineTuned;
    int loraRank = 0;                           // 0/empty = read adapter_config.json
    double loraAlpha = 0;
    std::vector<std::string> loraTargets;
    std::filesystem::path gateModelId;          // resolved; empty = none
    bool training = true;
    std::filesystem::path lossCsvPath;          // resolved; empty = none
    // Our keys (in [anymoe.config]):
    int topK = 2;
    GateMode gateMode = GateMode::Trained;
    std::optional<RoutingMode> routing;         // absent = pick the best on validation prompts after the build
    double routingHalflife = 0;                 // tokens; 0 = plain running mean
    bool gateBias = true;
    bool includeBase = false;
    std::vector<ExpertPrompts> expertPrompts;   // per expert (same order as experts), may be empty
    ExpertPrompts basePrompts;                  // the base as expert 0 (include_base with hidden/cheap_embed)
    double validationSplit = 0.1;
    uint64_t seed = 0;                          // TOML integers are signed: at most 2^63 - 1
    bool useChatTemplate = true;
    bool mergeLora = false;
    bool anymoeLossHeader = false;              // loss CSV header in AnyMoE's "Step, Gating layer 0, ..." form
    std::string exportDtype;                    // checkpoint dtype (mergekit `dtype`); empty = the base's
    std::string exportArchitecture;             // mergekit `architecture`, informational
    QuantizeScheme quantize = QuantizeScheme::None; // base and fine-tuned experts quantized on load
    // mistral.rs runtime options kept verbatim: ("model.dtype", "\"auto\""),
    // ("tokenizer_json", "\"t.json\""); the value is its TOML text.
    std::vector<std::pair<std::string, std::string>> mistralrsOptions;

    bool operator==(const Selector&) const = default;
};

// Throws moe::Error "<file>:<line>: <key>: ..." on any problem (TOML syntax
// errors give <file>:<line>:<column>). Base and expert folders must exist.
Selector loadSelector(const std::filesystem::path& file);
// Writes atomically. Ids are kept as written when they still resolve to the
// same folder from the new file's folder; other paths are written relative to
// it where possible. Loading the result gives back an equal Selector (`file`
// aside).
void saveSelector(const Selector& s, const std::filesystem::path& file);
// A selector file of either kind: loadSelector for .toml, a mergekit-moe
// config (loadMergekitConfig) for .yaml/.yml.
Selector loadSelectorAny(const std::filesystem::path& file);
// A model folder: `id` as a path (relative to `relativeTo`), or a Hugging Face
// id "org/name" in the local hub cache ($HF_HUB_CACHE, $HF_HOME/hub,
// ~/.cache/huggingface/hub; snapshot named by refs/main). Throws moe::Error
// naming the id and every place looked at.
std::filesystem::path resolveModelId(const std::string& id, const std::filesystem::path& relativeTo);

} // namespace moe
