#include "moe/expert_loader.h"

#include "moe/error.h"

#include <algorithm>

namespace moe {
namespace {

const char* const kProjections[] = {"gate_proj", "up_proj", "down_proj"};

std::string loraName(const MlpNaming& naming, int layer, const std::string& proj, const std::string& which,
                     bool defaultInfix) {
    return "base_model.model." + naming.prefix + "." + std::to_string(layer) + "." + naming.mlp + "." + proj + "." +
           which + (defaultInfix ? ".default" : "") + ".weight";
}

} // namespace

const TensorView* findLoraTensor(const WeightStore& adapter, const MlpNaming& naming, int layer,
                                 const std::string& proj, const std::string& which) {
    if (const TensorView* t = adapter.find(loraName(naming, layer, proj, which, false))) return t;
    return adapter.find(loraName(naming, layer, proj, which, true));
}

std::optional<HostLora> loadLoraFactors(const WeightStore& expert, const ExpertSource& source, const MlpNaming& naming,
                                        int layer, const std::string& proj, int hidden, int intermediate) {
    if (std::find(source.targets.begin(), source.targets.end(), proj) == source.targets.end()) return std::nullopt;
    if (source.rank <= 0) throw Error(source.dir.string() + ": LoRA rank must be positive");
    const int64_t H = hidden, I = intermediate;
    const int64_t in = proj == "down_proj" ? I : H, out = proj == "down_proj" ? H : I;
    const TensorView* a = findLoraTensor(expert, naming, layer, proj, "lora_A");
    const TensorView* b = findLoraTensor(expert, naming, layer, proj, "lora_B");
    const std::string where = source.dir.string() + ": ";
    if (!a || !b)
        throw Error(where + "the adapter has no " + std::string(!a ? "lora_A" : "lora_B") + " tensor for layer " +
                    std::to_string(layer) + " " + proj + " (expected " +
                    loraName(naming, layer, proj, !a ? "lora_A" : "lora_B", false) + ")");
    const int64_t r = source.rank;
    if (a->shape != std::vector<int64_t>{r, in} || b->shape != std::vector<int64_t>{out, r})
        throw Error(where + a->name + " is " + a->shapeString() + " and " + b->name + " is " + b->shapeString() +
                    "; rank " + std::to_string(r) + " needs [" + std::to_string(r) + ", " + std::to_string(in) +
                    "] and [" + std::to_string(out) + ", " + std::to_string(r) + "]");
    HostLora l{toFloat32(*a), toFloat32(*b), uint32_t(r), uint32_t(in), uint32_t(out)};
    const float scale = float(source.alpha / source.rank);
    for (float& v : l.b) v *= scale;
    return l;
}

std::vector<float> expertProjection(const WeightStore& expert, const ExpertSource& source, const WeightStore& base,
                                    const MlpNaming& naming, int layer, const std::string& proj, int hidden,
                                    int intermediate) {
    const int64_t H = hidden, I = intermediate;
    const std::vector<int64_t> shape = proj == "down_proj" ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H};
    if (!source.lora) return toFloat32(expert.require(naming.tensor(layer, proj), shape));
    std::vector<float> w = toFloat32(base.require(naming.tensor(layer, proj), shape));
    if (auto l = loadLoraFactors(expert, source, naming, layer, proj, hidden, intermediate)) {
        // W + (alpha/r)·B·A (B already scaled).
        const int64_t r = l->rank, in = l->in, out = l->out;
        for (int64_t o = 0; o < out; ++o)
            for (int64_t k = 0; k < r; ++k) {
                const float bk = l->b[size_t(o * r + k)];
                for (int64_t i = 0; i < in; ++i) w[size_t(o * in + i)] += bk * l->a[size_t(k * in + i)];
            }
    }
    return w;
}

ExpertMlp loadExpertLayer(vk::Context& ctx, const WeightStore& expert, const ExpertSource& source,
                          const WeightStore& base, const MlpNaming& naming, int layer, const ExpertShape& shape,
                          bool mergeLora, bool pagedOut, QuantizeScheme quantize, int numLayers) {
    const int hidden = shape.hidden, intermediate = shape.intermediate;
    const int64_t H = hidden, I = intermediate;
    ExpertMlp e;
    if (!source.lora) {
        auto matrix = [&](const char* proj, int64_t rows, int64_t cols, WeightRole role) {
            const TensorView& t = expert.require(naming.tensor(layer, proj), {rows, cols});
            return pagedOut ? DeviceMatrix::mapped(ctx, t)
                            : uploadWeight(ctx, t, quantize, WeightPlace{role, layer, numLayers, false, 0});
        };
        if (shape.gated) e.gate = matrix("gate_proj", I, H, WeightRole::FfnGate);
        e.up = matrix("up_proj", I, H, WeightRole::FfnUp);
        e.down = matrix("down_proj", H, I, WeightRole::FfnDown);
        if (shape.biases) {
            // naming.tensor names the weight; the bias sits beside it.
            auto bias = [&](const char* proj, int64_t n) {
                std::string name = naming.tensor(layer, proj);
                name.replace(name.size() - std::string("weight").size(), std::string::npos, "bias");
                return uploadAsFloat32(ctx, expert.require(name, {n}));
            };
            e.upBias = bias("up_proj", I);
            e.downBias = bias("down_proj", H);
        }
        return e;
    }
    if (source.rank <= 0) throw Error(source.dir.string() + ": LoRA rank must be positive");
    for (const std::string proj : kProjections) {
        if (proj == "gate_proj" && !shape.gated) continue;
        auto& dense = proj == "gate_proj" ? e.gate : proj == "up_proj" ? e.up : e.down;
        auto& delta = proj == "gate_proj" ? e.loraGate : proj == "up_proj" ? e.loraUp : e.loraDown;
        if (mergeLora) {
            if (std::find(source.targets.begin(), source.targets.end(), proj) == source.targets.end()) continue;
            const std::vector<float> w = expertProjection(expert, source, base, naming, layer, proj, hidden, intermediate);
            const bool down = proj == "down_proj";
            dense = DeviceMatrix::fromHost(ctx, DType::F32, uint32_t(down ? H : I), uint32_t(down ? I : H), w.data());
        } else if (auto l = loadLoraFactors(expert, source, naming, layer, proj, hidden, intermediate)) {
            delta = LoraDelta{DeviceMatrix::fromHost(ctx, DType::F32, l->rank, l->in, l->a.data()),
                              DeviceMatrix::fromHost(ctx, DType::F32, l->out, l->rank, l->b.data())};
        }
    }
    return e;
}

} // namespace moe
