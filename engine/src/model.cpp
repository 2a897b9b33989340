#include "moe/model.h"

#include "moe/error.h"
#include "moe/gguf_model.h"
#include "moe/routed_mlp.h"
#include "native_moe.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moe {

// ---------------------------------------------------------------- DenseMlp

DenseMlp::DenseMlp(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix down, vk::Buffer upBias, vk::Buffer downBias)
    : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)), upBias_(std::move(upBias)),
      downBias_(std::move(downBias)) {}

uint64_t DenseMlp::deviceBytes() const {
    return gate_.bytes() + up_.bytes() + down_.bytes() + upBias_.size() + downBias_.size();
}

void DenseMlp::record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    const vk::Buffer& input = *step.input;
    const vk::Buffer& residual = *step.residual;
    const MlpScratch& scratch = step.scratch;
    const uint32_t nTokens = step.nTokens;
    const uint32_t hidden = up_.cols, inter = up_.rows;
    const ops::Act in{&input, 0, hidden};
    const ops::Act h{scratch.hidden, 0, inter};
    const vk::Buffer* upBias = upBias_.valid() ? &upBias_ : nullptr;
    const vk::Buffer* downBias = downBias_.valid() ? &downBias_ : nullptr;
    if (gated()) {
        ops::matmulGated(ctx, rec, gate_, up_, in, h, nTokens,
                         {.norm = step.inputNorm.weight ? &step.inputNorm : nullptr, .act = step.act});
    } else {
        if (step.inputNorm.weight) throw Error("internal: an ungated MLP does not fold its input norm");
        ops::matmul(ctx, rec, up_, in, h, nTokens, {.bias = upBias});
        rec.barrier();
        ops::activate(ctx, rec, *scratch.hidden, nTokens * inter, step.act);
    }
    rec.barrier();
    ops::matmul(ctx, rec, down_, h, {&residual, 0, hidden}, nTokens, {.bias = downBias, .accumulate = true});
    rec.barrier();
}

// ---------------------------------------------------------------- Model

std::unique_ptr<Model> Model::load(vk::Context& ctx, const std::filesystem::path& dir, const LoadProgress& progress,
                                   uint64_t expertBudget, QuantizeScheme quantize) {
    progress.throwIfCancelled();
    std::unique_ptr<Model> m(new Model(ctx));
    m->quantize_ = quantize;
    m->config_ = ModelConfig::load(dir);
    m->store_ = openModelWeights(dir);
    const ModelConfig& c = m->config_;
    const WeightStore& w = *m->store_;
    const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
    const int64_t qDim = int64_t(c.numHeads) * c.headDim, kvDim = int64_t(c.numKvHeads) * c.headDim;

    size_t total = 3;
    for (int l = 0; l < c.numLayers; ++l)
        total += (c.isSparseLayer(l) ? 7 : 9) + (c.attentionBias ? 3 : 0) + (c.outputBias ? 1 : 0) + (c.qkNorm ? 2 : 0) +
                 (c.postNorms ? 2 : 0) + (c.gatedMlp ? 0 : -1) + (c.mlpBias ? 2 : 0) + (c.parallelResidual ? -1 : 0) +
                 (c.normKind == NormKind::Layer ? 1 : 0);
    total += (c.lmHeadBias ? 1 : 0) + (c.normKind == NormKind::Layer ? 1 : 0);
    size_t done = 0;
    // Every tensor ticks once it is on the device; the cancel flag is polled
    // there and before each tensor is read (a tensor is the longest step).
    auto tick = [&] {
        if (progress.onTensor) progress.onTensor(++done, total);
        progress.throwIfCancelled();
    };
    // GGUF `llama` files hold q and k rows in llama.cpp's interleaved RoPE
    // order; uploading them in Hugging Face order keeps one RoPE kernel.
    DeviceMatrix::RowOrder qOrder, kOrder;
    if (c.qkRowsInterleaved) {
        qOrder = ggufUninterleavedRows(c.numHeads, c.headDim);
        kOrder = ggufUninterleavedRows(c.numKvHeads, c.headDim);
    }
    auto reorder = [](std::vector<float> v, const DeviceMatrix::RowOrder& order) {
        if (order.empty()) return v;
        std::vector<float> out(v.size());
        for (size_t r = 0; r < order.size(); ++r) out[r] = v[order[r]];
        return out;
    };
    if (quantize != QuantizeScheme::None && expertBudget > 0 && c.isMoe())
        throw Error(dir.string() + ": quantizing on load and an expert budget do not go together yet (a paged expert "
                                   "uploads again from its file; use a quantized GGUF file instead)");
    auto place = [&](WeightRole role, int layer) {
        return WeightPlace{role, layer, c.numLayers, c.tieWordEmbeddings, c.numExperts};
    };
    auto matrix = [&](const std::string& name, std::vector<int64_t> shape, const WeightPlace& where,
                      const DeviceMatrix::RowOrder& order = {}) {
        progress.throwIfCancelled();
        const TensorView& t = w.require(name, shape);
        m->parameters_ += uint64_t(t.numel());
        DeviceMatrix d = uploadWeight(ctx, t, quantize, where, order, progress.cancel);
        tick();
        return d;
    };
    auto vector = [&](const std::string& name, int64_t n, const DeviceMatrix::RowOrder& order = {}) {
        const TensorView& t = w.require(name, {n});
        m->parameters_ += uint64_t(t.numel());
        vk::Buffer b = order.empty() ? uploadAsFloat32(ctx, t) : uploadFloats(ctx, reorder(toFloat32(t), order));
        tick();
        return b;
    };
    // A norm's weights; Gemma's (1 + w) added here in float32, as its RMSNorm does.
    auto norm = [&](const std::string& name, int64_t n) {
        if (c.normOffset == 0) return vector(name, n);
        const TensorView& t = w.require(name, {n});
        m->parameters_ += uint64_t(t.numel());
        std::vector<float> v = toFloat32(t);
        for (float& x : v) x += c.normOffset;
        tick();
        return uploadFloats(ctx, v);
    };
    // A vision checkpoint's language model: language_model.model.* (as
    // released) or model.language_model.* (as Transformers 5 saves it).
    std::string prefix = c.weightPrefix;
    if (prefix != "model." && !w.find(prefix + "embed_tokens.weight") && w.find("model.language_model.embed_tokens.weight"))
        prefix = "model.language_model.";
    m->config_.weightPrefix = prefix;

    m->embed_ = matrix(prefix + "embed_tokens.weight", {V, H}, place(WeightRole::Embedding, 0));
    if (const TensorView* head = w.find("lm_head.weight"); head && !c.tieWordEmbeddings) {
        m->lmHeadOwn_ = matrix("lm_head.weight", {V, H}, place(WeightRole::Output, 0));
        m->lmHead_ = &m->lmHeadOwn_;
    } else if (c.tieWordEmbeddings) {
        m->lmHead_ = &m->embed_;
        tick();
    } else {
        w.require("lm_head.weight", {V, H}); // throws, naming the folder and tensor
    }
    if (c.lmHeadBias) m->lmHeadBias_ = vector("lm_head.bias", V);
    m->finalNorm_ = norm(prefix + "norm.weight", H);
    if (c.normKind == NormKind::Layer) m->finalNormBias_ = vector(prefix + "norm.bias", H);

    m->layers_.resize(size_t(c.numLayers));
    for (int l = 0; l < c.numLayers; ++l) {
        const std::string p = prefix + "layers." + std::to_string(l) + ".";
        LayerWeights& L = m->layers_[size_t(l)];
        L.attnNorm = norm(p + "input_layernorm.weight", H);
        if (c.normKind == NormKind::Layer) L.attnNormBias = vector(p + "input_layernorm.bias", H);
        const TensorView& tq = w.require(p + "self_attn.q_proj.weight", {qDim, H});
        const TensorView& tk = w.require(p + "self_attn.k_proj.weight", {kvDim, H});
        const TensorView& tv = w.require(p + "self_attn.v_proj.weight", {kvDim, H});
        const DType dq = quantizedDType(quantize, place(WeightRole::AttentionQ, l), tq.dtype, H);
        const DType dk = quantizedDType(quantize, place(WeightRole::AttentionK, l), tk.dtype, H);
        const DType dv = quantizedDType(quantize, place(WeightRole::AttentionV, l), tv.dtype, H);
        if (dq == dk && dq == dv) {
            progress.throwIfCancelled();
            m->parameters_ += uint64_t(tq.numel() + tk.numel() + tv.numel());
            if (dq != tq.dtype || dq != tk.dtype || dq != tv.dtype) {
                const HostTensor q = quantizeTensor(tq, dq, progress.cancel), k = quantizeTensor(tk, dq, progress.cancel),
                                 v = quantizeTensor(tv, dq, progress.cancel);
                L.qkv = DeviceMatrix::uploadStacked(ctx, {&q.view, &k.view, &v.view}, {qOrder, kOrder, {}});
            } else {
                L.qkv = DeviceMatrix::uploadStacked(ctx, {&tq, &tk, &tv}, {qOrder, kOrder, {}});
            }
            for (int i = 0; i < 3; ++i) tick();
            if (c.attentionBias) {
                std::vector<float> bias;
                for (const char* name : {"q_proj", "k_proj", "v_proj"}) {
                    const TensorView& b = w.require(p + "self_attn." + name + ".bias", {name[0] == 'q' ? qDim : kvDim});
                    m->parameters_ += uint64_t(b.numel());
                    const auto values = reorder(toFloat32(b), name[0] == 'q' ? qOrder : name[0] == 'k' ? kOrder
                                                                                                       : DeviceMatrix::RowOrder{});
                    bias.insert(bias.end(), values.begin(), values.end());
                    tick();
                }
                L.qkvBias = uploadFloats(ctx, bias);
            }
        } else {
            L.q = matrix(p + "self_attn.q_proj.weight", {qDim, H}, place(WeightRole::AttentionQ, l), qOrder);
            L.k = matrix(p + "self_attn.k_proj.weight", {kvDim, H}, place(WeightRole::AttentionK, l), kOrder);
            L.v = matrix(p + "self_attn.v_proj.weight", {kvDim, H}, place(WeightRole::AttentionV, l));
            if (c.attentionBias) {
                L.qBias = vector(p + "self_attn.q_proj.bias", qDim, qOrder);
                L.kBias = vector(p + "self_attn.k_proj.bias", kvDim, kOrder);
                L.vBias = vector(p + "self_attn.v_proj.bias", kvDim);
            }
        }
        L.o = matrix(p + "self_attn.o_proj.weight", {H, qDim}, place(WeightRole::AttentionOutput, l));
        if (c.outputBias) L.oBias = vector(p + "self_attn.o_proj.bias", H);
        if (c.qkNorm) {
            L.qNorm = norm(p + "self_attn.q_norm.weight", c.headDim);
            L.kNorm = norm(p + "self_attn.k_norm.weight", c.headDim);
        }
        if (c.postNorms) {
            // Gemma: post_attention_layernorm follows attention; the MLP has a norm before and after.
            L.postAttnNorm = norm(p + "post_attention_layernorm.weight", H);
            L.mlpNorm = norm(p + "pre_feedforward_layernorm.weight", H);
            L.postMlpNorm = norm(p + "post_feedforward_layernorm.weight", H);
        } else if (!c.parallelResidual) {
            L.mlpNorm = vector(p + "post_attention_layernorm.weight", H);
        }
        if (c.isSparseLayer(l)) {
            L.mlp = loadSparseMoe(ctx, c, m->store_, p, m->parameters_, expertBudget > 0, quantize, l, progress.cancel);
            tick();
            continue;
        }
        DeviceMatrix gate;
        if (c.gatedMlp) gate = matrix(p + "mlp.gate_proj.weight", {I, H}, place(WeightRole::FfnGate, l));
        auto up = matrix(p + "mlp.up_proj.weight", {I, H}, place(WeightRole::FfnUp, l));
        auto down = matrix(p + "mlp.down_proj.weight", {H, I}, place(WeightRole::FfnDown, l));
        vk::Buffer upBias, downBias;
        if (c.mlpBias) upBias = vector(p + "mlp.up_proj.bias", I), downBias = vector(p + "mlp.down_proj.bias", H);
        L.mlp = std::make_unique<DenseMlp>(std::move(gate), std::move(up), std::move(down), std::move(upBias),
                                           std::move(downBias));
    }
    if (expertBudget > 0 && c.isMoe()) m->setExpertBudget(expertBudget);
    return m;
}

uint64_t Model::deviceBytes() const {
    uint64_t n = embed_.bytes() + lmHeadOwn_.bytes() + finalNorm_.size() + finalNormBias_.size() + lmHeadBias_.size();
    for (const auto& L : layers_)
        n += L.attnNorm.size() + L.attnNormBias.size() + L.mlpNorm.size() + L.qkv.bytes() + L.q.bytes() + L.k.bytes() + L.v.bytes() +
             L.o.bytes() + L.qkvBias.size() + L.qBias.size() + L.kBias.size() + L.vBias.size() + L.oBias.size() +
             L.qNorm.size() + L.kNorm.size() + L.postAttnNorm.size() + L.postMlpNorm.size() + (L.mlp ? L.mlp->deviceBytes() : 0);
    return n;
}

std::unique_ptr<MlpBlock> Model::takeMlp(int layer) {
    if (layer < 0 || layer >= int(layers_.size()))
        throw Error("layer " + std::to_string(layer) + " does not exist (the model has " +
                    std::to_string(layers_.size()) + ")");
    ++revision_;
    return std::move(layers_[size_t(layer)].mlp);
}

std::unique_ptr<MlpBlock> Model::setMlp(int layer, std::unique_ptr<MlpBlock> block) {
    if (layer < 0 || layer >= int(layers_.size()))
        throw Error("layer " + std::to_string(layer) + " does not exist (the model has " +
                    std::to_string(layers_.size()) + ")");
    if (!block) throw Error("internal: setMlp needs a block");
    std::swap(layers_[size_t(layer)].mlp, block);
    ++revision_;
    return block;
}

} // namespace moe
