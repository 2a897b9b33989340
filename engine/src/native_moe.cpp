#include "native_moe.h"

#include "moe/error.h"
#include "moe/routed_mlp.h"

#include "moe/quant.h"

#include <string>

namespace moe {
namespace {

// Rows [firstRow, firstRow + rows) of expert `e` in a stacked [E, R, C] tensor,
// as a 2-D view over the same mapped bytes.
TensorView expertSlice(const TensorView& t, int64_t e, int64_t firstRow, int64_t rows) {
    const int64_t cols = t.shape[2];
    const size_t rowBytes = moe::rowBytes(t.dtype, size_t(cols), t.name);
    TensorView v = t;
    v.name = t.name + "[" + std::to_string(e) + "]";
    v.shape = {rows, cols};
    v.data = t.data + (size_t(e) * size_t(t.shape[1]) + size_t(firstRow)) * rowBytes;
    v.nbytes = size_t(rows) * rowBytes;
    return v;
}

std::string tensorPlace(const TensorView& t) {
    return (t.file ? t.file->path().string() + ": " : std::string()) + "tensor " + t.name;
}

// A stacked expert tensor whose first dimension disagrees with the config's expert count.
void checkExpertCount(const TensorView& t, int64_t E, const ModelConfig& c) {
    if (t.shape.size() == 3 && t.shape[0] != E)
        throw Error(tensorPlace(t) + " has shape " + t.shapeString() + ": " + std::to_string(t.shape[0]) +
                    " experts, but config.json " + c.numExpertsField + " says " + std::to_string(E));
}

} // namespace

std::unique_ptr<MlpBlock> loadSparseMoe(vk::Context& ctx, const ModelConfig& c,
                                        const std::shared_ptr<const WeightStore>& store,
                                        const std::string& layerPrefix, uint64_t& parameters, bool pagedOut,
                                        QuantizeScheme quantize, int layer, const std::atomic<bool>* cancel) {
    const WeightStore& w = *store;
    auto place = [&](WeightRole role) { return WeightPlace{role, layer, c.numLayers, c.tieWordEmbeddings, c.numExperts}; };
    auto expertMatrix = [&](const TensorView& t, int64_t e, WeightRole role) {
        throwIfCancelled(cancel, "loading the model");
        return pagedOut && e > 0 ? DeviceMatrix::mapped(ctx, t) : uploadWeight(ctx, t, quantize, place(role), {}, cancel);
    };
    const int64_t H = c.hiddenSize, I = c.expertIntermediateSize(), E = c.numExperts;
    const bool qwen = c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe;
    const bool fused = w.find(layerPrefix + "mlp.experts.gate_up_proj") || w.find(layerPrefix + "mlp.experts.down_proj");
    const std::string moePrefix = layerPrefix + (fused || qwen ? "mlp." : "block_sparse_moe.");
    const std::string widthKey = qwen ? "moe_intermediate_size" : "intermediate_size";
    // Projection names: Mixtral's w1/w2/w3 are gate/down/up.
    const char* gateProj = qwen ? "gate_proj.weight" : "w1.weight";
    const char* downProj = qwen ? "down_proj.weight" : "w2.weight";
    const char* upProj = qwen ? "up_proj.weight" : "w3.weight";

    // The gate's row count is the expert count the weights were trained with.
    const std::string gateName = moePrefix + "gate.weight";
    const TensorView& gateView = w.require(gateName);
    if (gateView.shape.size() == 2 && gateView.shape[1] == H && gateView.shape[0] != E)
        throw Error(tensorPlace(gateView) + " has shape " + gateView.shapeString() + ": " +
                    std::to_string(gateView.shape[0]) + " experts, but config.json " + c.numExpertsField + " says " +
                    std::to_string(E));
    w.require(gateName, {E, H}); // any other wrong shape: names file, tensor and both shapes
    parameters += uint64_t(gateView.numel());
    const std::vector<float> gate = toFloat32(gateView);

    std::vector<DeviceMatrix> gates, ups, downs;
    if (fused) {
        const TensorView& gateUp = w.require(moePrefix + "experts.gate_up_proj");
        const TensorView& down = w.require(moePrefix + "experts.down_proj");
        checkExpertCount(gateUp, E, c);
        checkExpertCount(down, E, c);
        // [E, H, 2I] / [E, I, H] would be the transposed layout (GPT-OSS style,
        // x @ W); Transformers' Mixtral and Qwen MoEs compute linear(x, W).
        if (gateUp.shape == std::vector<int64_t>{E, H, 2 * I} && H != 2 * I)
            throw Error(tensorPlace(gateUp) + " has shape " + gateUp.shapeString() + ", the transposed fused layout; " +
                        c.architecture + " stores gate_up_proj as [experts, 2 x " + widthKey + ", hidden_size] = [" + std::to_string(E) + ", " + std::to_string(2 * I) + ", " +
                        std::to_string(H) + "]");
        if (gateUp.shape.size() == 3 && gateUp.shape[0] == E && gateUp.shape[2] == H && gateUp.shape[1] != 2 * I)
            throw Error(tensorPlace(gateUp) + " has shape " + gateUp.shapeString() + ": " +
                        std::to_string(gateUp.shape[1]) + " gate and up rows per expert, but config.json " + widthKey + " " +
                        std::to_string(I) + " needs " + std::to_string(2 * I));
        w.require(gateUp.name, {E, 2 * I, H});
        w.require(down.name, {E, H, I});
        parameters += uint64_t(gateUp.numel() + down.numel());
        // Each slice is a view of the mapped file: uploaded (and its pages
        // released) on its own, and uploaded from there again when paged.
        for (int64_t e = 0; e < E; ++e) {
            gates.push_back(expertMatrix(expertSlice(gateUp, e, 0, I), e, WeightRole::FfnGate));
            ups.push_back(expertMatrix(expertSlice(gateUp, e, I, I), e, WeightRole::FfnUp));
            downs.push_back(expertMatrix(expertSlice(down, e, 0, H), e, WeightRole::FfnDown));
        }
    } else {
        if (const std::string extra = moePrefix + "experts." + std::to_string(E) + "." + gateProj; w.find(extra))
            throw Error(tensorPlace(*w.find(extra)) + " exists, but config.json " + c.numExpertsField + " says " +
                        std::to_string(E) + " experts (0 to " + std::to_string(E - 1) + ")");
        for (int64_t e = 0; e < E; ++e) {
            const std::string p = moePrefix + "experts." + std::to_string(e) + ".";
            auto load = [&](const char* name, int64_t rows, int64_t cols, WeightRole role) {
                const TensorView& t = w.require(p + name, {rows, cols});
                parameters += uint64_t(t.numel());
                return expertMatrix(t, e, role);
            };
            gates.push_back(load(gateProj, I, H, WeightRole::FfnGate));
            downs.push_back(load(downProj, H, I, WeightRole::FfnDown));
            ups.push_back(load(upProj, I, H, WeightRole::FfnUp));
        }
    }

    auto base = std::make_unique<DenseMlp>(std::move(gates[0]), std::move(ups[0]), std::move(downs[0]));
    std::vector<ExpertMlp> experts(static_cast<size_t>(E)); // expert 0 = the base's projections
    for (size_t e = 1; e < size_t(E); ++e) {
        experts[e].gate = std::move(gates[e]);
        experts[e].up = std::move(ups[e]);
        experts[e].down = std::move(downs[e]);
        experts[e].mappedWeights = store;
    }
    RoutingOptions routing;
    routing.topK = uint32_t(c.expertsPerToken);
    routing.mode = RoutingMode::Token;
    routing.renormalise = c.normTopkProb;
    auto routed = std::make_unique<RoutedMlp>(ctx, std::move(base), std::move(experts), gate, std::vector<float>{}, routing);
    if (!qwen || c.sharedExpertIntermediateSize == 0) return routed;

    // Qwen2-MoE's shared expert, weighted per token by sigmoid(shared_expert_gate · x).
    const int64_t S = c.sharedExpertIntermediateSize;
    auto sharedMatrix = [&](const std::string& name, int64_t rows, int64_t cols, WeightRole role) {
        throwIfCancelled(cancel, "loading the model");
        const TensorView& t = w.require(moePrefix + name, {rows, cols});
        parameters += uint64_t(t.numel());
        return uploadWeight(ctx, t, quantize, place(role), {}, cancel);
    };
    auto sharedGate = sharedMatrix("shared_expert.gate_proj.weight", S, H, WeightRole::FfnGate);
    auto sharedUp = sharedMatrix("shared_expert.up_proj.weight", S, H, WeightRole::FfnUp);
    auto sharedDown = sharedMatrix("shared_expert.down_proj.weight", H, S, WeightRole::FfnDown);
    const TensorView& sharedGateRow = w.require(moePrefix + "shared_expert_gate.weight", {1, H});
    parameters += uint64_t(sharedGateRow.numel());
    return std::make_unique<SharedExpertMoe>(
        ctx, std::move(routed),
        std::make_unique<DenseMlp>(std::move(sharedGate), std::move(sharedUp), std::move(sharedDown)),
        toFloat32(sharedGateRow));
}

} // namespace moe
