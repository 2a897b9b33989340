#pragma once
// Reads one layer of an expert onto the device: a fine-tuned expert's MLP
// projections (only that layer's tensors are touched in the memory-mapped
// files), or a LoRA adapter's A and B matrices, kept low-rank (B scaled by
// alpha/r once, at load) or, on request, merged into dense copies.
#include "moe/quantize_on_load.h"
#include "moe/routed_mlp.h"
#include "moe/safetensors.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace moe {

struct ExpertSource {
    std::filesystem::path dir;
    bool lora = false;
    int rank = 0;       // LoRA r
    double alpha = 0;   // LoRA alpha
    std::vector<std::string> targets; // LoRA target modules (gate_proj, up_proj, down_proj)
};

struct MlpNaming {
    std::string prefix = "model.layers"; // decoder layers
    std::string mlp = "mlp";             // MLP module inside a layer
    std::string tensor(int layer, const std::string& proj) const {
        return prefix + "." + std::to_string(layer) + "." + mlp + "." + proj + ".weight";
    }
};

// The LoRA tensor of `proj` ("gate_proj"...) and `which` ("lora_A"/"lora_B")
// in a PEFT adapter, or null (accepts PEFT's ".default" infix).
const TensorView* findLoraTensor(const WeightStore& adapter, const MlpNaming& naming, int layer,
                                 const std::string& proj, const std::string& which);

// A LoRA adapter's factors for one projection on the host: A [rank, in],
// B [out, rank] already scaled by alpha/r. Empty when the projection is not a target.
struct HostLora {
    std::vector<float> a, b;
    uint32_t rank = 0, in = 0, out = 0;
};
std::optional<HostLora> loadLoraFactors(const WeightStore& expert, const ExpertSource& source, const MlpNaming& naming,
                                        int layer, const std::string& proj, int hidden, int intermediate);

// One projection ("gate_proj", "up_proj", "down_proj") of an expert's layer
// as dense float32 on the host: a fine-tuned expert's tensor, or the base's
// with the LoRA delta merged in (W + alpha/r·B·A). Used by exports.
std::vector<float> expertProjection(const WeightStore& expert, const ExpertSource& source, const WeightStore& base,
                                    const MlpNaming& naming, int layer, const std::string& proj, int hidden,
                                    int intermediate);

// `base` is the base model's weights (LoRA merging reads them). With
// `pagedOut`, a fine-tuned expert's projections are only mapped
// (DeviceMatrix::mapped): an expert budget uploads them when routed to.
// The MLP the experts replace: its widths, whether it has a gate_proj
// (else up -> act -> down, Phi-2) and up / down biases (a fine-tuned
// expert's own are loaded; a LoRA expert keeps the base's).
struct ExpertShape {
    int hidden = 0, intermediate = 0;
    bool gated = true;
    bool biases = false;
};
ExpertMlp loadExpertLayer(vk::Context& ctx, const WeightStore& expert, const ExpertSource& source,
                          const WeightStore& base, const MlpNaming& naming, int layer, const ExpertShape& shape,
                          bool mergeLora, bool pagedOut = false, QuantizeScheme quantize = QuantizeScheme::None,
                          int numLayers = 1);

} // namespace moe
