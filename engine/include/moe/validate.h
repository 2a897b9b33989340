#pragma once
// Validation of a selection before any heavy work: every file a build needs
// is opened (config.json, safetensors headers only, adapter_config.json, the
// dataset) and checked against the base model, and every problem is reported
// at once.
#include "moe/dataset.h"
#include "moe/model_config.h"
#include "moe/selector.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moe {

struct ExpertFacts {
    std::filesystem::path dir;
    ExpertType type = ExpertType::FineTuned;
    std::string name;                     // the id as written in the selector
    int loraRank = 0;                     // from adapter_config.json (LoRA)
    double loraAlpha = 0;
    std::vector<std::string> loraTargets; // the MLP projections the build uses
    // Bytes of the chosen layers' MLP tensors (fine-tuned) or LoRA A/B tensors.
    uint64_t addedBytes = 0;
};

struct SelectionFacts {
    ModelConfig base;
    std::vector<ExpertFacts> experts;
    std::vector<int> layers;          // resolved: sorted, all layers when the selector names none
    int nExperts = 0;                 // experts.size() + includeBase
    std::vector<DatasetRow> dataset;  // when the selector names one
    uint64_t expertBytes = 0;         // sum of experts' addedBytes
    std::vector<std::string> warnings; // not fatal (e.g. an expert without labelled rows)
};

// Checks everything and throws one moe::Error listing every problem found
// (one line each, naming the file and the field/tensor/row), or returns the
// facts. `cancel` is polled between files (moe::Cancelled).
SelectionFacts validateSelection(const Selector& s, const std::atomic<bool>* cancel = nullptr);

// Live per-expert check for the UI: empty string = compatible, else the
// reason. Detects a fine-tuned model (config.json + safetensors) or a LoRA
// adapter (adapter_config.json + adapter_model.safetensors) and checks it
// against the base with the default tensor names (model.layers.N.mlp) over
// all layers.
std::string checkExpertCompatibility(const ModelConfig& base, const std::filesystem::path& expertDir,
                                     ExpertType* detectedType = nullptr);

} // namespace moe
