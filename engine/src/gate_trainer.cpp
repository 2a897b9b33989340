#include "gate_trainer.h"

#include "moe/error.h"
#include "moe/ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moe::detail {
namespace {

// Push constants of the gate shaders (layouts in shaders/gate_*.comp).
struct ForwardPush {
    uint32_t Kp4, rowBase, rowCount, flags;
};
struct GradPush {
    uint32_t E, Kp, rowBase, rowCount, layer, flags;
};
struct AdamPush {
    uint32_t count, decayCount;
    float beta1, beta2, eps, weightDecay;
};
constexpr uint32_t kFlagTrain = 1, kFlagFirstChunk = 2, kFlagAccumulate = 4;
constexpr uint32_t kGroup = 64; // local size of gate_grad and adamw

uint64_t floatBytes(uint64_t n) { return n * sizeof(float); }

} // namespace

std::vector<float> packGateParams(const GateWeights& g, uint32_t Kp) {
    std::vector<float> p(size_t(g.nExperts) * Kp + g.nExperts, 0.0f);
    for (uint32_t e = 0; e < g.nExperts; ++e)
        std::copy_n(g.weight.begin() + size_t(e) * g.hidden, g.hidden, p.begin() + size_t(e) * Kp);
    if (!g.bias.empty()) std::copy(g.bias.begin(), g.bias.end(), p.begin() + size_t(g.nExperts) * Kp);
    return p;
}

namespace {

std::vector<float> download(const vk::Buffer& b, size_t n) {
    std::vector<float> v(n);
    b.download(v.data(), floatBytes(n));
    return v;
}

} // namespace

uint32_t paddedHidden(uint32_t hidden) { return (std::max(hidden, 1u) + 7) / 8 * 8; }

GateFeatureMatrix GateFeatureMatrix::upload(vk::Context& ctx, const float* data, uint32_t rows, uint32_t hidden,
                                            uint64_t maxChunkBytes) {
    GateFeatureMatrix m;
    m.rows = rows;
    m.hidden = hidden;
    m.hiddenPadded = paddedHidden(hidden);
    const uint64_t rowBytes = floatBytes(m.hiddenPadded);
    uint32_t perChunk = DeviceMatrix::rowsPerChunk(ctx, rowBytes);
    if (maxChunkBytes) perChunk = std::min<uint32_t>(perChunk, std::max<uint64_t>(1, maxChunkBytes / rowBytes));
    // DeviceMatrix pads rows to 8 floats exactly as the gate shaders expect;
    // one slice per chunk keeps each slice within a single binding.
    for (uint32_t first = 0; first < rows; first += perChunk) {
        const uint32_t n = std::min(perChunk, rows - first);
        DeviceMatrix slice = DeviceMatrix::fromHost(ctx, DType::F32, n, hidden, data + size_t(first) * hidden);
        if (slice.chunks.size() != 1 || slice.colsPadded != m.hiddenPadded)
            throw Error("internal: feature slice did not upload as one padded chunk");
        m.chunks.push_back({std::move(slice.chunks.front().buffer), first, n});
    }
    return m;
}

void recordGateForward(vk::Context& ctx, vk::Recorder& rec, const GateFeatureMatrix& features, uint32_t nExperts,
                       const vk::Buffer& params, const vk::Buffer& step, uint32_t maxTokens, bool train,
                       const vk::Buffer& labels, const vk::Buffer& probs, const vk::Buffer& tokenLoss,
                       const vk::Buffer& dlogits) {
    const uint32_t tokensPerGroup = ctx.subgroupsPerWorkgroup(); // one subgroup per token
    const auto& pipe = ctx.pipeline(ShaderId::gate_forward, 7, sizeof(ForwardPush),
                                    {ctx.subgroupSize() * tokensPerGroup, nExperts});
    for (const auto& c : features.chunks) {
        ForwardPush p{features.hiddenPadded / 4, c.firstRow, c.rowCount, train ? kFlagTrain : 0u};
        rec.dispatchFlat(pipe, {c.buffer, params, step, labels, probs, tokenLoss, dlogits}, &p, sizeof p,
                         (maxTokens + tokensPerGroup - 1) / tokensPerGroup);
    }
}

struct GateTrainer::Layer {
    GateFeatureMatrix features;
    vk::Buffer params, grads, m, v;  // [E * Kp + E] each
    vk::Buffer probs, tokenLoss, dlogits; // per batch token
    GateFeatureMatrix valFeatures;
    vk::Buffer valProbs;
};

GateTrainer::GateTrainer(vk::Context& ctx, const GateSamples& train, uint32_t nExperts, const GateTrainOptions& opt,
                         const std::vector<GateWeights>& init, uint32_t maxBatchTokens, uint64_t maxChunkBytes)
    : ctx_(ctx), nExperts_(nExperts), hidden_(train.hidden), hiddenPadded_(paddedHidden(train.hidden)),
      maxBatchTokens_(std::max(maxBatchTokens, 1u)), tokenCount_(uint32_t(train.tokenCount())),
      maxChunkBytes_(maxChunkBytes), opt_(opt) {
    const uint64_t paramCount = uint64_t(nExperts_) * hiddenPadded_ + nExperts_;
    stepBuffer_ = vk::Buffer(ctx, sizeof(GateStepHeader) + uint64_t(maxBatchTokens_) * 4, vk::MemoryUse::Upload);
    labels_ = vk::Buffer(ctx, uint64_t(tokenCount_) * 4, vk::MemoryUse::Device);
    labels_.upload(train.labels.data(), uint64_t(tokenCount_) * 4);
    lossOut_ = vk::Buffer(ctx, floatBytes(train.features.size()), vk::MemoryUse::Readback);
    for (size_t l = 0; l < train.features.size(); ++l) {
        auto layer = std::make_unique<Layer>();
        layer->features = GateFeatureMatrix::upload(ctx, train.features[l].data(), tokenCount_, hidden_, maxChunkBytes_);
        const std::vector<float> packed = packGateParams(init[l], hiddenPadded_);
        layer->params = uploadFloats(ctx, packed);
        layer->grads = vk::Buffer(ctx, floatBytes(paramCount), vk::MemoryUse::Device);
        layer->m = vk::Buffer(ctx, floatBytes(paramCount), vk::MemoryUse::Device);
        layer->v = vk::Buffer(ctx, floatBytes(paramCount), vk::MemoryUse::Device);
        layer->grads.fillZero();
        layer->m.fillZero();
        layer->v.fillZero();
        layer->probs = vk::Buffer(ctx, floatBytes(uint64_t(maxBatchTokens_) * nExperts_), vk::MemoryUse::Device);
        layer->tokenLoss = vk::Buffer(ctx, floatBytes(maxBatchTokens_), vk::MemoryUse::Device);
        layer->dlogits = vk::Buffer(ctx, floatBytes(uint64_t(maxBatchTokens_) * nExperts_), vk::MemoryUse::Device);
        layers_.push_back(std::move(layer));
    }
    recordTraining();
}

GateTrainer::~GateTrainer() = default;

void GateTrainer::recordTraining() {
    trainRec_ = std::make_unique<vk::Recorder>(ctx_);
    vk::Recorder& rec = *trainRec_;
    rec.begin();
    // The previous submit's AdamW writes come earlier in submission order.
    rec.barrier();
    for (auto& l : layers_)
        recordGateForward(ctx_, rec, l->features, nExperts_, l->params, stepBuffer_, maxBatchTokens_, true, labels_,
                          l->probs, l->tokenLoss, l->dlogits);
    rec.barrier();
    const auto& grad = ctx_.pipeline(ShaderId::gate_grad, 6, sizeof(GradPush));
    const uint64_t wCount = uint64_t(nExperts_) * hiddenPadded_;
    size_t maxChunks = 0;
    for (auto& l : layers_) maxChunks = std::max(maxChunks, l->features.chunks.size());
    for (size_t c = 0; c < maxChunks; ++c) {
        if (c > 0) rec.barrier(); // later chunks add to dW
        for (size_t i = 0; i < layers_.size(); ++i) {
            Layer& l = *layers_[i];
            if (c >= l.features.chunks.size()) continue;
            const auto& chunk = l.features.chunks[c];
            const uint32_t flags = c == 0 ? kFlagFirstChunk : kFlagAccumulate;
            GradPush p{nExperts_, hiddenPadded_, chunk.firstRow, chunk.rowCount, uint32_t(i), flags};
            const uint64_t invocations = c == 0 ? wCount + nExperts_ + 1 : wCount;
            rec.dispatchFlat(grad, {chunk.buffer, stepBuffer_, l.dlogits, l.tokenLoss, l.grads, lossOut_}, &p,
                             sizeof p, (invocations + kGroup - 1) / kGroup);
        }
    }
    rec.barrier();
    const auto& adam = ctx_.pipeline(ShaderId::adamw, 5, sizeof(AdamPush));
    // Without a bias the bias slots stay zero: they are left out of the update.
    const uint32_t count = uint32_t(wCount + (opt_.bias ? nExperts_ : 0));
    AdamPush ap{count, uint32_t(wCount), opt_.beta1, opt_.beta2, opt_.eps, opt_.weightDecay};
    for (auto& l : layers_)
        rec.dispatchFlat(adam, {stepBuffer_, l->params, l->grads, l->m, l->v}, &ap, sizeof ap,
                         (count + kGroup - 1) / kGroup);
    rec.end();
}

std::vector<float> GateTrainer::step(const std::vector<uint32_t>& rows) {
    if (rows.empty() || rows.size() > maxBatchTokens_)
        throw Error("internal: gate training batch of " + std::to_string(rows.size()) + " tokens (at most " +
                    std::to_string(maxBatchTokens_) + ")");
    for (uint32_t r : rows)
        if (r >= tokenCount_) throw Error("internal: gate training token index out of range");
    ++steps_;
    GateStepHeader h;
    h.nTokens = uint32_t(rows.size());
    h.adamStep = uint32_t(steps_);
    h.lr = opt_.lr;
    // Bias corrections in double: beta2^t loses digits in float for long runs.
    h.biasCorrection1 = float(1.0 - std::pow(double(opt_.beta1), steps_));
    h.biasCorrection2 = float(1.0 - std::pow(double(opt_.beta2), steps_));
    stepBuffer_.upload(&h, sizeof h);
    stepBuffer_.upload(rows.data(), rows.size() * 4, sizeof h);
    trainRec_->submitAndWait();
    return download(lossOut_, layers_.size());
}

GateWeights GateTrainer::weights(size_t layer) const {
    const Layer& l = *layers_.at(layer);
    const std::vector<float> p = download(l.params, size_t(nExperts_) * hiddenPadded_ + nExperts_);
    GateWeights g;
    g.nExperts = nExperts_;
    g.hidden = hidden_;
    g.weight.resize(size_t(nExperts_) * hidden_);
    for (uint32_t e = 0; e < nExperts_; ++e)
        std::copy_n(p.begin() + size_t(e) * hiddenPadded_, hidden_, g.weight.begin() + size_t(e) * hidden_);
    if (opt_.bias) g.bias.assign(p.begin() + size_t(nExperts_) * hiddenPadded_, p.end());
    return g;
}

std::vector<float> GateTrainer::gradient(size_t layer) const {
    const Layer& l = *layers_.at(layer);
    const std::vector<float> p = download(l.grads, size_t(nExperts_) * hiddenPadded_ + nExperts_);
    std::vector<float> g(size_t(nExperts_) * hidden_);
    for (uint32_t e = 0; e < nExperts_; ++e)
        std::copy_n(p.begin() + size_t(e) * hiddenPadded_, hidden_, g.begin() + size_t(e) * hidden_);
    g.insert(g.end(), p.begin() + size_t(nExperts_) * hiddenPadded_, p.end());
    return g;
}

std::vector<float> GateTrainer::batchProbabilities(size_t layer, size_t n) const {
    return download(layers_.at(layer)->probs, std::min<size_t>(n, maxBatchTokens_) * nExperts_);
}

void GateTrainer::setValidation(const GateSamples& validation) {
    valTokens_ = uint32_t(validation.tokenCount());
    valRec_.reset();
    if (valTokens_ == 0) return;
    valStep_ = vk::Buffer(ctx_, sizeof(GateStepHeader) + uint64_t(valTokens_) * 4, vk::MemoryUse::Upload);
    GateStepHeader h;
    h.nTokens = valTokens_;
    std::vector<uint32_t> rows(valTokens_);
    std::iota(rows.begin(), rows.end(), 0u);
    valStep_.upload(&h, sizeof h);
    valStep_.upload(rows.data(), rows.size() * 4, sizeof h);
    for (size_t l = 0; l < layers_.size(); ++l) {
        Layer& layer = *layers_[l];
        layer.valFeatures =
            GateFeatureMatrix::upload(ctx_, validation.features[l].data(), valTokens_, hidden_, maxChunkBytes_);
        layer.valProbs = vk::Buffer(ctx_, floatBytes(uint64_t(valTokens_) * nExperts_), vk::MemoryUse::Readback);
    }
    valRec_ = std::make_unique<vk::Recorder>(ctx_);
    valRec_->begin();
    valRec_->barrier(); // parameters written by the last training submit
    const vk::Buffer& none = ctx_.placeholderBuffer(); // labels, loss and dlogits are not used for inference
    for (auto& l : layers_)
        recordGateForward(ctx_, *valRec_, l->valFeatures, nExperts_, l->params, valStep_, valTokens_, false, none,
                          l->valProbs, none, none);
    valRec_->end();
}

std::vector<std::vector<float>> GateTrainer::validationProbabilities() {
    std::vector<std::vector<float>> out;
    if (!valRec_) return out;
    valRec_->submitAndWait();
    for (auto& l : layers_) out.push_back(download(l->valProbs, size_t(valTokens_) * nExperts_));
    return out;
}

} // namespace moe::detail
