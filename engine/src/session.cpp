#include "moe/session.h"

#include "moe/error.h"
#include "moe/routed_mlp.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moe {

namespace {
constexpr uint32_t kFloat = sizeof(float);
// An optional weight (a bias) as the ops take it: null when the model has none.
const vk::Buffer* bias(const vk::Buffer& b) { return b.valid() ? &b : nullptr; }
} // namespace

float Session::embedScale() const { return model_.config().embedScale > 0 ? model_.config().embedScale : 1.0f; }

Session::Session(Model& model, uint32_t maxContext, uint32_t maxBatch) : model_(model), ctx_(model.context()) {
    const ModelConfig& c = model.config();
    maxContext_ = maxContext ? maxContext : std::min<uint32_t>(uint32_t(c.maxPositions > 0 ? c.maxPositions : 4096), 4096u);
    maxBatch_ = std::max<uint32_t>(1, std::min(maxBatch, maxContext_));
    attn_ = {uint32_t(c.numHeads), uint32_t(c.numKvHeads), uint32_t(c.headDim), uint32_t(c.slidingWindow),
             c.attentionScale > 0 ? c.attentionScale : 1.0f / std::sqrt(float(c.headDim)), c.attnSoftcap};
    const uint64_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    const uint64_t qDim = uint64_t(c.numHeads) * c.headDim, kvDim = uint64_t(c.numKvHeads) * c.headDim;
    uint32_t inter = 0;
    for (const auto& L : model.layers_)
        if (L.mlp) inter = std::max(inter, L.mlp->scratchWidth());
    logitRows_ = uint32_t(std::max<uint64_t>(1, std::min<uint64_t>(maxBatch_, ctx_.maxStorageRange() / (V * kFloat))));

    auto dev = [&](uint64_t floats) { return vk::Buffer(ctx_, floats * kFloat, vk::MemoryUse::Device); };
    step_ = vk::Buffer(ctx_, sizeof(ops::StepHeader) + maxBatch_ * sizeof(int32_t), vk::MemoryUse::Upload);
    x_ = dev(maxBatch_ * H);
    xn_ = dev(maxBatch_ * H);
    qkv_ = dev(maxBatch_ * (qDim + 2 * kvDim));
    q_ = dev(maxBatch_ * qDim);
    attnOut_ = dev(maxBatch_ * qDim);
    gate_ = dev(maxBatch_ * inter);
    up_ = dev(maxBatch_ * inter);
    hidden_ = dev(maxBatch_ * inter);
    logits_ = vk::Buffer(ctx_, uint64_t(logitRows_) * V * kFloat, vk::MemoryUse::Readback);
    if (c.postNorms) mlpOut_ = dev(maxBatch_ * H);
    for (int l = 0; l < c.numLayers; ++l) {
        kCache_.push_back(dev(uint64_t(maxContext_) * kvDim));
        vCache_.push_back(dev(uint64_t(maxContext_) * kvDim));
    }
    for (auto* b : {&x_, &xn_, &qkv_, &q_, &attnOut_, &gate_, &up_, &hidden_})
        if (b->size() > ctx_.maxStorageRange())
            throw Error("a batch of " + std::to_string(maxBatch_) + " tokens needs activations larger than the "
                        "device's storage-buffer range; use a smaller batch");
    if (kCache_.empty() || kCache_[0].size() > ctx_.maxStorageRange())
        throw Error("a context of " + std::to_string(maxContext_) + " tokens needs a KV cache per layer larger than "
                    "the device's storage-buffer range; use a shorter context");

    // RoPE table as Transformers computes it: angle = float(pos) * inv_freq in
    // float32, then cos/sin of that angle.
    const uint32_t half = uint32_t(c.headDim) / 2;
    auto ropeTable = [&](const std::vector<float>& invFreq) {
        if (invFreq.size() != half) throw Error("internal: RoPE frequencies do not match head_dim");
        std::vector<float> table(size_t(maxContext_) * half * 2);
        for (uint32_t p = 0; p < maxContext_; ++p)
            for (uint32_t i = 0; i < half; ++i) {
                const float angle = float(p) * invFreq[i];
                table[size_t(p) * half + i] = float(std::cos(double(angle)));
                table[size_t(maxContext_) * half + size_t(p) * half + i] = float(std::sin(double(angle)));
            }
        return uploadFloats(ctx_, table);
    };
    ropeTable_ = ropeTable(c.ropeInvFreq);
    if (!c.ropeLocalInvFreq.empty()) ropeLocalTable_ = ropeTable(c.ropeLocalInvFreq);
    recordedRevision_ = ~model.revision(); // states are created by the first forward()
}

Session::~Session() = default;

void Session::truncate(uint32_t pos) { pos_ = std::min(pos_, pos); }

void Session::setCaptureLayers(std::vector<int> layers) {
    for (int l : layers)
        if (l < 0 || l >= model_.config().numLayers)
            throw Error("capture layer " + std::to_string(l) + " does not exist (the model has " +
                        std::to_string(model_.config().numLayers) + ")");
    captureLayers_ = std::move(layers);
    captureBuffers_.clear();
    for (size_t i = 0; i < captureLayers_.size(); ++i)
        captureBuffers_.emplace_back(ctx_, uint64_t(maxBatch_) * uint32_t(model_.config().hiddenSize) * kFloat,
                                     vk::MemoryUse::Readback);
    captured_.assign(captureLayers_.size(), {});
    decode_.reset();
    prefill_.reset();
}

ops::AttentionShape Session::layerAttention(size_t l) const {
    ops::AttentionShape s = attn_;
    s.window = uint32_t(model_.config().layerWindow(int(l)));
    return s;
}

const vk::Buffer& Session::ropeTable(size_t l) const {
    return model_.config().localRope(int(l)) ? ropeLocalTable_ : ropeTable_;
}

MlpStep Session::mlpStep(size_t l, uint32_t n) {
    // With post-norms the block adds into mlpOut_, normalised into x_ afterwards.
    MlpStep step{&xn_, mlpOut_.valid() ? &mlpOut_ : &x_, {&gate_, &up_, &hidden_}, &step_, mlpStates_[l].get(), n};
    step.act = model_.config().hiddenAct;
    return step;
}

void Session::recordMlpPrologue(vk::Recorder& rec, uint32_t n) {
    if (!mlpOut_.valid()) return;
    rec.fill(vk::BufferView(mlpOut_, 0, uint64_t(n) * uint32_t(model_.config().hiddenSize) * kFloat), 0);
    rec.barrier();
}

void Session::recordMlpEpilogue(vk::Recorder& rec, size_t l, uint32_t n) {
    if (!mlpOut_.valid()) return;
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize);
    ops::rmsnorm(ctx_, rec, {&mlpOut_, 0, H}, model_.layers_[l].postMlpNorm, {&x_, 0, H}, n, H, c.rmsNormEps, 1, true);
    rec.barrier();
}

void Session::recordLayer(vk::Recorder& rec, size_t l, uint32_t n) {
    recordAttention(rec, l, n);
    const MlpBlock& mlp = *model_.layers_[l].mlp;
    MlpStep step = mlpStep(l, n);
    const bool captured = std::find(captureLayers_.begin(), captureLayers_.end(), int(l)) != captureLayers_.end();
    if (mlp.foldsInputNorm(step) && !captured) {
        step.input = &x_;
        step.inputNorm = {&model_.layers_[l].mlpNorm, model_.config().rmsNormEps};
    } else {
        recordMlpNorm(rec, l, n);
    }
    recordMlpPrologue(rec, n);
    mlp.record(ctx_, rec, step);
    recordMlpEpilogue(rec, l, n);
}

void Session::recordQkvThenRope(vk::Recorder& rec, size_t l, uint32_t n, const ops::Act& in, const ops::InputNorm* inNorm) {
    const ModelConfig& c = model_.config();
    const LayerWeights& L = model_.layers_[l];
    const uint32_t qDim = attn_.nHeads * attn_.headDim, kvDim = attn_.nKvHeads * attn_.headDim;
    const auto kernel = ops::MatmulKernel::Auto;
    // q, k and v side by side in qkv_: one row of qDim + 2 kvDim per token.
    const uint32_t qkvDim = qDim + 2 * kvDim;
    const ops::Act q{&qkv_, 0, qkvDim}, k{&qkv_, qDim, qkvDim}, v{&qkv_, qDim + kvDim, qkvDim};
    if (L.qkv.rows) {
        ops::matmul(ctx_, rec, L.qkv, in, q, n, {.bias = bias(L.qkvBias), .kernel = kernel, .norm = inNorm});
    } else {
        ops::matmul(ctx_, rec, L.q, in, q, n, {.bias = bias(L.qBias), .kernel = kernel, .norm = inNorm});
        ops::matmul(ctx_, rec, L.k, in, k, n, {.bias = bias(L.kBias), .kernel = kernel, .norm = inNorm});
        ops::matmul(ctx_, rec, L.v, in, v, n, {.bias = bias(L.vBias), .kernel = kernel, .norm = inNorm});
    }
    rec.barrier();
    if (L.qNorm.valid()) {
        // Qwen3: each head's q and k RMS-normalised before RoPE, in place (the
        // rmsnorm shader reads a row fully before writing it).
        const uint32_t D = attn_.headDim;
        ops::rmsnorm(ctx_, rec, q, L.qNorm, q, n * attn_.nHeads, D, c.rmsNormEps, attn_.nHeads);
        ops::rmsnorm(ctx_, rec, k, L.kNorm, k, n * attn_.nKvHeads, D, c.rmsNormEps, attn_.nKvHeads);
        rec.barrier();
    }
    ops::ropeStore(ctx_, rec, attn_, step_, q, k, v, q_, kCache_[l], vCache_[l], ropeTable(l), maxContext_, n);
}

void Session::recordAttention(vk::Recorder& rec, size_t l, uint32_t n) {
    const ModelConfig& c = model_.config();
    const LayerWeights& L = model_.layers_[l];
    const uint32_t H = uint32_t(c.hiddenSize);
    const uint32_t qDim = attn_.nHeads * attn_.headDim;

    // The input norm: folded into the QKV matvec, or a pass of its own.
    const ops::InputNorm norm{&L.attnNorm, c.rmsNormEps};
    const bool fold = ops::foldsInputNorm(n);
    if (!fold) {
        ops::rmsnorm(ctx_, rec, {&x_, 0, H}, L.attnNorm, {&xn_, 0, H}, n, H, c.rmsNormEps);
        rec.barrier();
    }
    const ops::Act in{fold ? &x_ : &xn_, 0, H};
    const ops::InputNorm* inNorm = fold ? &norm : nullptr;
    // Decode of the usual layout: RoPE in the QKV projection's epilogue.
    if (L.qkv.rows && !L.qNorm.valid() && ops::qkvRopeFits(ctx_, L.qkv, n)) {
        ops::qkvRope(ctx_, rec, attn_, L.qkv, in, bias(L.qkvBias), inNorm, step_, q_, kCache_[l], vCache_[l],
                     ropeTable(l), maxContext_, n);
    } else {
        recordQkvThenRope(rec, l, n, in, inNorm);
    }
    rec.barrier();
    ops::attention(ctx_, rec, layerAttention(l), step_, q_, kCache_[l], vCache_[l], attnOut_, n);
    rec.barrier();
    if (!L.postAttnNorm.valid()) {
        ops::matmul(ctx_, rec, L.o, {&attnOut_, 0, qDim}, {&x_, 0, H}, n, {.bias = bias(L.oBias), .accumulate = true});
        rec.barrier();
        return;
    }
    // Gemma: x += post_attention_layernorm(o_proj(attention)); xn_ is free again here.
    ops::matmul(ctx_, rec, L.o, {&attnOut_, 0, qDim}, {&xn_, 0, H}, n, {.bias = bias(L.oBias)});
    rec.barrier();
    ops::rmsnorm(ctx_, rec, {&xn_, 0, H}, L.postAttnNorm, {&x_, 0, H}, n, H, c.rmsNormEps, 1, true);
    rec.barrier();
}

void Session::recordMlpNorm(vk::Recorder& rec, size_t l, uint32_t n) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize);
    ops::rmsnorm(ctx_, rec, {&x_, 0, H}, model_.layers_[l].mlpNorm, {&xn_, 0, H}, n, H, c.rmsNormEps);
    rec.barrier();
    for (size_t i = 0; i < captureLayers_.size(); ++i)
        if (captureLayers_[i] == int(l)) rec.copy(xn_.handle(), 0, captureBuffers_[i].handle(), 0, uint64_t(n) * H * kFloat);
}

void Session::runPagedStep(uint32_t n, bool allRows) {
    size_t used = 0;
    uint32_t dispatches = 0, barriers = 0;
    auto nextSegment = [&]() -> vk::Recorder& {
        if (used == segments_.size()) segments_.push_back(std::make_unique<vk::Recorder>(ctx_));
        vk::Recorder& r = *segments_[used++];
        r.begin();
        // Orders this submit's reads after the previous submit's writes.
        r.barrier();
        return r;
    };
    auto submit = [&](vk::Recorder& r) {
        r.end();
        r.submitAndWait();
        dispatches += r.dispatchCount();
        barriers += r.barrierCount();
    };
    vk::Recorder* rec = &nextSegment();
    ops::embed(ctx_, *rec, model_.embed_, step_, x_, n, embedScale());
    rec->barrier();
    for (size_t l = 0; l < model_.layers_.size(); ++l) {
        RoutedMlp* routed = model_.routedPart(l);
        if (!routed) {
            recordLayer(*rec, l, n);
            continue;
        }
        recordAttention(*rec, l, n);
        recordMlpNorm(*rec, l, n);
        const MlpStep step = mlpStep(l, n);
        auto* shared = dynamic_cast<SharedExpertMoe*>(model_.layers_[l].mlp.get());
        MlpStep routedStep = step;
        if (shared) routedStep.state = &SharedExpertMoe::routedState(*step.state);
        recordMlpPrologue(*rec, n);
        routed->recordRouting(ctx_, *rec, routedStep);
        // The usage counters grow by each slot's tokens of this step.
        const std::vector<uint32_t> before = RoutedMlp::usage(*routedStep.state);
        submit(*rec);
        std::vector<uint32_t> tokensPerSlot = RoutedMlp::usage(*routedStep.state);
        for (size_t s = 0; s < tokensPerSlot.size(); ++s) tokensPerSlot[s] -= before[s];
        model_.requireExperts(l, *routed, tokensPerSlot);
        rec = &nextSegment();
        routed->recordExperts(ctx_, *rec, routedStep, &tokensPerSlot);
        if (shared) shared->recordShared(ctx_, *rec, step);
        recordMlpEpilogue(*rec, l, n);
    }
    recordHead(*rec, n, allRows);
    submit(*rec);
    model_.cache_->policy.decay();
    lastDispatches_ = dispatches;
    lastBarriers_ = barriers;
}

void Session::recordStep(vk::Recorder& rec, uint32_t n, bool allRows) {
    rec.begin();
    ops::embed(ctx_, rec, model_.embed_, step_, x_, n, embedScale());
    rec.barrier();
    for (size_t l = 0; l < model_.layers_.size(); ++l) recordLayer(rec, l, n);
    recordHead(rec, n, allRows);
    rec.end();
}

void Session::recordHead(vk::Recorder& rec, uint32_t n, bool allRows) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    const uint32_t rows = allRows ? n : 1;
    const uint32_t firstRow = allRows ? 0 : n - 1;
    const ops::InputNorm norm{&model_.finalNorm_, c.rmsNormEps};
    if (ops::foldsInputNorm(rows)) {
        ops::matmul(ctx_, rec, *model_.lmHead_, {&x_, firstRow * H, H}, {&logits_, 0, V}, rows, {.norm = &norm});
    } else {
        ops::rmsnorm(ctx_, rec, {&x_, firstRow * H, H}, model_.finalNorm_, {&xn_, 0, H}, rows, H, c.rmsNormEps);
        rec.barrier();
        ops::matmul(ctx_, rec, *model_.lmHead_, {&xn_, 0, H}, {&logits_, 0, V}, rows);
    }
    if (c.finalSoftcap > 0) {
        rec.barrier();
        ops::softcap(ctx_, rec, logits_, 0, rows * V, c.finalSoftcap);
    }
}

std::vector<std::pair<int, std::vector<uint32_t>>> Session::expertUsage() const {
    std::vector<std::pair<int, std::vector<uint32_t>>> out;
    for (int l = 0; l < model_.config().numLayers; ++l) {
        MlpState* state = mlpState(l);
        auto counts = model_.mlp(l).expertUsage(state);
        if (!counts.empty()) out.emplace_back(l, std::move(counts));
    }
    return out;
}

void Session::resetExpertUsage() {
    for (int l = 0; l < model_.config().numLayers; ++l) model_.mlp(l).resetExpertUsage(mlpState(l));
}

MlpState* Session::mlpState(int layer) const {
    const_cast<Session*>(this)->syncWithModel();
    return mlpStates_.at(size_t(layer)).get();
}

// Blocks replaced since the last step: drop recorded commands, make new states.
void Session::syncWithModel() {
    if (recordedRevision_ == model_.revision()) return;
    decode_.reset();
    prefill_.reset();
    const ModelConfig& c = model_.config();
    mlpStates_.clear();
    for (int l = 0; l < c.numLayers; ++l) {
        if (!model_.layers_[size_t(l)].mlp) throw Error("internal: layer " + std::to_string(l) + " has no MLP");
        if (uint64_t(model_.mlp(l).scratchWidth()) * maxBatch_ * kFloat > gate_.size())
            throw Error("layer " + std::to_string(l) + "'s MLP is wider than the session was created for");
        mlpStates_.push_back(model_.mlp(l).createState(ctx_, maxContext_, maxBatch_));
    }
    recordedRevision_ = model_.revision();
}

void Session::writeStep(std::span<const int32_t> tokens) {
    ops::StepHeader h;
    h.pos0 = pos_;
    h.nTokens = uint32_t(tokens.size());
    h.routeFlags = reply_ ? 1u : 0u;
    h.routePin = pinSlot_ >= 0 ? uint32_t(pinSlot_) + 1u : 0u;
    step_.upload(&h, sizeof h);
    step_.upload(tokens.data(), tokens.size_bytes(), sizeof h);
}

std::span<const float> Session::forward(std::span<const int32_t> tokens, std::vector<float>* allLogits) {
    const ModelConfig& c = model_.config();
    if (tokens.empty()) throw Error("forward() needs at least one token");
    for (int32_t t : tokens)
        if (t < 0 || t >= c.vocabSize)
            throw Error("token id " + std::to_string(t) + " is outside the vocabulary (size " +
                        std::to_string(c.vocabSize) + ")");
    if (pos_ + tokens.size() > maxContext_)
        throw Error("the context is full: " + std::to_string(pos_) + " + " + std::to_string(tokens.size()) +
                    " tokens exceed the session's " + std::to_string(maxContext_));
    syncWithModel();
    model_.syncExpertCache();
    for (auto& v : captured_) v.clear();
    const uint32_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    const bool wantAll = allLogits != nullptr;
    const uint32_t batchLimit = wantAll ? std::min(maxBatch_, logitRows_) : maxBatch_;

    uint32_t lastRows = 0;
    for (size_t done = 0; done < tokens.size();) {
        const uint32_t n = uint32_t(std::min<size_t>(batchLimit, tokens.size() - done));
        writeStep(tokens.subspan(done, n));
        vk::Recorder* rec = nullptr;
        if (model_.cache_) {
            runPagedStep(n, wantAll);
        } else if (n == 1 && !wantAll) {
            if (!decode_) {
                decode_ = std::make_unique<vk::Recorder>(ctx_);
                recordStep(*decode_, 1, false);
            }
            rec = decode_.get();
        } else {
            if (!prefill_ || prefillRecordedFor_ != n || prefillAllRows_ != wantAll) {
                if (!prefill_) prefill_ = std::make_unique<vk::Recorder>(ctx_);
                recordStep(*prefill_, n, wantAll);
                prefillRecordedFor_ = n;
                prefillAllRows_ = wantAll;
            }
            rec = prefill_.get();
        }
        if (rec) {
            rec->submitAndWait();
            lastDispatches_ = rec->dispatchCount();
            lastBarriers_ = rec->barrierCount();
        }
        for (size_t i = 0; i < captureBuffers_.size(); ++i) {
            auto& out = captured_[i];
            const size_t old = out.size();
            out.resize(old + size_t(n) * H);
            captureBuffers_[i].download(out.data() + old, uint64_t(n) * H * kFloat);
        }
        lastRows = wantAll ? n : 1;
        if (wantAll) {
            const size_t old = allLogits->size();
            allLogits->resize(old + size_t(n) * V);
            logits_.download(allLogits->data() + old, uint64_t(n) * V * kFloat);
        }
        pos_ += n;
        done += n;
    }
    lastLogits_.resize(V);
    logits_.download(lastLogits_.data(), uint64_t(V) * kFloat, uint64_t(lastRows - 1) * V * kFloat);
    return lastLogits_;
}

} // namespace moe
