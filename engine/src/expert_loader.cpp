#include "moe/expert_loader.h"

#include "moe/error.h"

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

ExpertMlp loadExpertLayer(vk::Context& ctx, const WeightStore& expert, const ExpertSource& source,
                          const WeightStore& base, const MlpNaming& naming, int layer, int hidden, int intermediate,
                          bool mergeLora) {
    const int64_t H = hidden, I = intermediate;
    ExpertMlp e;
    if (!source.lora) {
        e.gate = DeviceMatrix::upload(ctx, expert.require(naming.tensor(layer, "gate_proj"), {I, H}));
        e.up = DeviceMatrix::upload(ctx, expert.require(naming.tensor(layer, "up_proj"), {I, H}));
        e.down = DeviceMatrix::upload(ctx, expert.require(naming.tensor(layer, "down_proj"), {H, I}));
        return e;
    }
    if (source.rank <= 0) throw Error(source.dir.string() + ": LoRA rank must be positive");
    const float scale = float(source.alpha / source.rank);
    for (const std::string proj : kProjections) {
        if (std::find(source.targets.begin(), source.targets.end(), proj) == source.targets.end()) continue;
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
        const std::vector<float> av = toFloat32(*a);
        std::vector<float> bv = toFloat32(*b);
        for (float& v : bv) v *= scale;
        if (mergeLora) {
            // W + (alpha/r)·B·A as a dense float32 copy.
            std::vector<float> w = toFloat32(base.require(naming.tensor(layer, proj), {out, in}));
            for (int64_t o = 0; o < out; ++o)
                for (int64_t k = 0; k < r; ++k) {
                    const float bk = bv[size_t(o * r + k)];
                    for (int64_t i = 0; i < in; ++i) w[size_t(o * in + i)] += bk * av[size_t(k * in + i)];
                }
            DeviceMatrix m = DeviceMatrix::fromHost(ctx, DType::F32, uint32_t(out), uint32_t(in), w.data());
            (proj == "gate_proj" ? e.gate : proj == "up_proj" ? e.up : e.down) = std::move(m);
        } else {
            LoraDelta d{DeviceMatrix::fromHost(ctx, DType::F32, uint32_t(r), uint32_t(in), av.data()),
                        DeviceMatrix::fromHost(ctx, DType::F32, uint32_t(out), uint32_t(r), bv.data())};
            (proj == "gate_proj" ? e.loraGate : proj == "up_proj" ? e.loraUp : e.loraDown) = std::move(d);
        }
    }
    return e;
}

} // namespace moe
