#include "moe/model.h"

#include "moe/error.h"
#include "moe/routed_mlp.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moe {

// ---------------------------------------------------------------- DenseMlp

DenseMlp::DenseMlp(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix down)
    : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)) {}

uint64_t DenseMlp::deviceBytes() const { return gate_.bytes() + up_.bytes() + down_.bytes(); }

void DenseMlp::record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    const vk::Buffer& input = *step.input;
    const vk::Buffer& residual = *step.residual;
    const MlpScratch& scratch = step.scratch;
    const uint32_t nTokens = step.nTokens;
    const uint32_t hidden = gate_.cols, inter = gate_.rows;
    const ops::Act in{&input, 0, hidden};
    const ops::Act h{scratch.hidden, 0, inter};
    ops::matmulGated(ctx, rec, gate_, up_, in, h, nTokens, nullptr, step.inputNorm.weight ? &step.inputNorm : nullptr);
    rec.barrier();
    ops::matmul(ctx, rec, down_, h, {&residual, 0, hidden}, nTokens, nullptr, /*accumulate=*/true);
    rec.barrier();
}

// ---------------------------------------------------------------- native MoE

namespace {

// Rows [firstRow, firstRow + rows) of expert `e` in a stacked [E, R, C] tensor,
// as a 2-D view over the same mapped bytes.
TensorView expertSlice(const TensorView& t, int64_t e, int64_t firstRow, int64_t rows) {
    const int64_t cols = t.shape[2];
    const size_t rowBytes = size_t(cols) * dtypeSize(t.dtype);
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

// A native sparse MoE block as a RoutedMlp (the one expert-dispatch path):
// expert 0's projections serve as the block's "base" and expert 0 refers to
// them, so no weights are held twice. Both tensor layouts of Transformers:
// - one tensor per expert and projection, as Transformers 4 wrote them and 5
//   still saves them: Mixtral block_sparse_moe.gate and
//   block_sparse_moe.experts.E.w1/w2/w3 (gate/down/up), Qwen mlp.gate and
//   mlp.experts.E.gate_proj/up_proj/down_proj;
// - fused, Transformers 5's in-memory layout (conversion_mapping.py stacks the
//   experts and concatenates gate and up along dim 1), which some checkpoints
//   store: mlp.gate, mlp.experts.gate_up_proj [E, 2I, H] with the gate rows
//   first, mlp.experts.down_proj [E, H, I].
// With `pagedOut`, experts 1..E-1 are only mapped (an expert budget uploads
// them when routing asks for them).
std::unique_ptr<MlpBlock> loadSparseMoe(vk::Context& ctx, const ModelConfig& c,
                                        const std::shared_ptr<const WeightStore>& store,
                                        const std::string& layerPrefix, uint64_t& parameters, bool pagedOut) {
    const WeightStore& w = *store;
    auto expertMatrix = [&](const TensorView& t, int64_t e) {
        return pagedOut && e > 0 ? DeviceMatrix::mapped(ctx, t) : DeviceMatrix::upload(ctx, t);
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
            gates.push_back(expertMatrix(expertSlice(gateUp, e, 0, I), e));
            ups.push_back(expertMatrix(expertSlice(gateUp, e, I, I), e));
            downs.push_back(expertMatrix(expertSlice(down, e, 0, H), e));
        }
    } else {
        if (const std::string extra = moePrefix + "experts." + std::to_string(E) + "." + gateProj; w.find(extra))
            throw Error(tensorPlace(*w.find(extra)) + " exists, but config.json " + c.numExpertsField + " says " +
                        std::to_string(E) + " experts (0 to " + std::to_string(E - 1) + ")");
        for (int64_t e = 0; e < E; ++e) {
            const std::string p = moePrefix + "experts." + std::to_string(e) + ".";
            auto load = [&](const char* name, int64_t rows, int64_t cols) {
                const TensorView& t = w.require(p + name, {rows, cols});
                parameters += uint64_t(t.numel());
                return expertMatrix(t, e);
            };
            gates.push_back(load(gateProj, I, H));
            downs.push_back(load(downProj, H, I));
            ups.push_back(load(upProj, I, H));
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
    routing.mode = RouteMode::Token;
    routing.renormalise = c.normTopkProb;
    auto routed = std::make_unique<RoutedMlp>(ctx, std::move(base), std::move(experts), gate, std::vector<float>{}, routing);
    if (!qwen || c.sharedExpertIntermediateSize == 0) return routed;

    // Qwen2-MoE's shared expert, weighted per token by sigmoid(shared_expert_gate · x).
    const int64_t S = c.sharedExpertIntermediateSize;
    auto sharedMatrix = [&](const std::string& name, int64_t rows, int64_t cols) {
        const TensorView& t = w.require(moePrefix + name, {rows, cols});
        parameters += uint64_t(t.numel());
        return DeviceMatrix::upload(ctx, t);
    };
    auto sharedGate = sharedMatrix("shared_expert.gate_proj.weight", S, H);
    auto sharedUp = sharedMatrix("shared_expert.up_proj.weight", S, H);
    auto sharedDown = sharedMatrix("shared_expert.down_proj.weight", H, S);
    const TensorView& sharedGateRow = w.require(moePrefix + "shared_expert_gate.weight", {1, H});
    parameters += uint64_t(sharedGateRow.numel());
    return std::make_unique<SharedExpertMoe>(
        ctx, std::move(routed),
        std::make_unique<DenseMlp>(std::move(sharedGate), std::move(sharedUp), std::move(sharedDown)),
        toFloat32(sharedGateRow));
}

} // namespace

// ---------------------------------------------------------------- Model

std::unique_ptr<Model> Model::load(vk::Context& ctx, const std::filesystem::path& dir, const LoadProgress& progress,
                                   uint64_t expertBudget) {
    std::unique_ptr<Model> m(new Model(ctx));
    m->config_ = ModelConfig::load(dir);
    m->store_ = WeightStore::openFolder(dir);
    const ModelConfig& c = m->config_;
    const WeightStore& w = *m->store_;
    const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
    const int64_t qDim = int64_t(c.numHeads) * c.headDim, kvDim = int64_t(c.numKvHeads) * c.headDim;

    size_t total = 3;
    for (int l = 0; l < c.numLayers; ++l)
        total += (c.isSparseLayer(l) ? 7 : 9) + (c.attentionBias ? 3 : 0) + (c.outputBias ? 1 : 0) + (c.qkNorm ? 2 : 0);
    size_t done = 0;
    auto tick = [&] {
        if (progress.onTensor) progress.onTensor(++done, total);
    };
    auto matrix = [&](const std::string& name, std::vector<int64_t> shape) {
        const TensorView& t = w.require(name, shape);
        m->parameters_ += uint64_t(t.numel());
        DeviceMatrix d = DeviceMatrix::upload(ctx, t);
        tick();
        return d;
    };
    auto vector = [&](const std::string& name, int64_t n) {
        const TensorView& t = w.require(name, {n});
        m->parameters_ += uint64_t(t.numel());
        vk::Buffer b = uploadAsFloat32(ctx, t);
        tick();
        return b;
    };

    m->embed_ = matrix("model.embed_tokens.weight", {V, H});
    if (const TensorView* head = w.find("lm_head.weight"); head && !c.tieWordEmbeddings) {
        m->lmHeadOwn_ = matrix("lm_head.weight", {V, H});
        m->lmHead_ = &m->lmHeadOwn_;
    } else if (c.tieWordEmbeddings) {
        m->lmHead_ = &m->embed_;
        tick();
    } else {
        w.require("lm_head.weight", {V, H}); // throws, naming the folder and tensor
    }
    m->finalNorm_ = vector("model.norm.weight", H);

    m->layers_.resize(size_t(c.numLayers));
    for (int l = 0; l < c.numLayers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights& L = m->layers_[size_t(l)];
        L.attnNorm = vector(p + "input_layernorm.weight", H);
        const TensorView& tq = w.require(p + "self_attn.q_proj.weight", {qDim, H});
        const TensorView& tk = w.require(p + "self_attn.k_proj.weight", {kvDim, H});
        const TensorView& tv = w.require(p + "self_attn.v_proj.weight", {kvDim, H});
        if (tq.dtype == tk.dtype && tq.dtype == tv.dtype) {
            m->parameters_ += uint64_t(tq.numel() + tk.numel() + tv.numel());
            L.qkv = DeviceMatrix::uploadStacked(ctx, {&tq, &tk, &tv});
            for (int i = 0; i < 3; ++i) tick();
            if (c.attentionBias) {
                std::vector<float> bias;
                for (const char* name : {"q_proj", "k_proj", "v_proj"}) {
                    const TensorView& b = w.require(p + "self_attn." + name + ".bias", {name[0] == 'q' ? qDim : kvDim});
                    m->parameters_ += uint64_t(b.numel());
                    const auto values = toFloat32(b);
                    bias.insert(bias.end(), values.begin(), values.end());
                    tick();
                }
                L.qkvBias = uploadFloats(ctx, bias);
            }
        } else {
            L.q = matrix(p + "self_attn.q_proj.weight", {qDim, H});
            L.k = matrix(p + "self_attn.k_proj.weight", {kvDim, H});
            L.v = matrix(p + "self_attn.v_proj.weight", {kvDim, H});
            if (c.attentionBias) {
                L.qBias = vector(p + "self_attn.q_proj.bias", qDim);
                L.kBias = vector(p + "self_attn.k_proj.bias", kvDim);
                L.vBias = vector(p + "self_attn.v_proj.bias", kvDim);
            }
        }
        L.o = matrix(p + "self_attn.o_proj.weight", {H, qDim});
        if (c.outputBias) L.oBias = vector(p + "self_attn.o_proj.bias", H);
        if (c.qkNorm) {
            L.qNorm = vector(p + "self_attn.q_norm.weight", c.headDim);
            L.kNorm = vector(p + "self_attn.k_norm.weight", c.headDim);
        }
        L.mlpNorm = vector(p + "post_attention_layernorm.weight", H);
        if (c.isSparseLayer(l)) {
            L.mlp = loadSparseMoe(ctx, c, m->store_, p, m->parameters_, expertBudget > 0);
            tick();
            continue;
        }
        auto gate = matrix(p + "mlp.gate_proj.weight", {I, H});
        auto up = matrix(p + "mlp.up_proj.weight", {I, H});
        auto down = matrix(p + "mlp.down_proj.weight", {H, I});
        L.mlp = std::make_unique<DenseMlp>(std::move(gate), std::move(up), std::move(down));
    }
    if (expertBudget > 0 && c.isMoe()) m->setExpertBudget(expertBudget);
    return m;
}

uint64_t Model::deviceBytes() const {
    uint64_t n = embed_.bytes() + lmHeadOwn_.bytes() + finalNorm_.size();
    for (const auto& L : layers_)
        n += L.attnNorm.size() + L.mlpNorm.size() + L.qkv.bytes() + L.q.bytes() + L.k.bytes() + L.v.bytes() +
             L.o.bytes() + L.qkvBias.size() + L.qBias.size() + L.kBias.size() + L.vBias.size() + L.oBias.size() +
             L.qNorm.size() + L.kNorm.size() + (L.mlp ? L.mlp->deviceBytes() : 0);
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

// ---------------------------------------------------------------- expert budget

RoutedMlp* Model::routedPart(size_t l) {
    MlpBlock* block = layers_.at(l).mlp.get();
    if (auto* r = dynamic_cast<RoutedMlp*>(block)) return r;
    if (auto* s = dynamic_cast<SharedExpertMoe*>(block)) return &s->routed();
    return nullptr;
}

void Model::setExpertBudget(uint64_t bytes, double decay) {
    ++revision_; // recorded steps point at expert buffers that are about to move
    if (bytes == 0) {
        for (size_t l = 0; l < layers_.size(); ++l)
            if (RoutedMlp* r = routedPart(l))
                for (uint32_t e = 0; e < r->expertCount(); ++e) r->makeResident(ctx_, e);
        cache_.reset();
        return;
    }
    cache_.emplace(ExpertCache{LfuExpertPolicy(decay), {}, {}, ~0ull});
    cache_->stats.budgetBytes = bytes;
    syncExpertCache();
}

void Model::resetExpertCacheStats() {
    if (!cache_) return;
    ExpertCacheStats& s = cache_->stats;
    s.hits = s.misses = s.bytesUploaded = s.evictions = 0;
    s.peakResidentBytes = s.residentBytes;
}

uint64_t Model::pageableExpertBytes() {
    uint64_t n = 0;
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l))
            for (uint32_t e = 0; e < r->expertCount(); ++e)
                if (r->ownsWeights(e)) n += r->expertBytes(e);
    return n;
}

uint64_t Model::expertHostCopyBytes() {
    uint64_t n = 0;
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l)) n += r->hostCopyBytes();
    return n;
}

void Model::syncExpertCache() {
    if (!cache_ || cache_->revision == revision_) return;
    // Blocks may have been replaced: start from an empty device set.
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l)) r->pageOutExperts(ctx_);
    cache_->resident.clear();
    cache_->stats.residentBytes = 0;
    cache_->revision = revision_;
}

void Model::requireExperts(size_t layer, RoutedMlp& routed, const std::vector<uint32_t>& tokensPerSlot) {
    ExpertCache& c = *cache_;
    std::set<ExpertKey> keep;
    std::vector<uint32_t> missing;
    uint64_t missingBytes = 0;
    for (uint32_t e = 0; e < routed.expertCount(); ++e) {
        if (tokensPerSlot.at(e) == 0) continue;
        const ExpertKey key{int(layer), e};
        c.policy.touch(key);
        if (!routed.ownsWeights(e)) { // the base MLP: always on the device
            ++c.stats.hits;
            continue;
        }
        keep.insert(key);
        if (routed.isResident(e)) {
            ++c.stats.hits;
        } else {
            ++c.stats.misses;
            missing.push_back(e);
            missingBytes += routed.expertBytes(e);
        }
    }
    while (c.stats.residentBytes + missingBytes > c.stats.budgetBytes) {
        const auto victim = c.policy.victim(c.resident, keep);
        if (!victim) break; // this layer's experts alone exceed the budget
        RoutedMlp& owner = *routedPart(size_t(victim->layer));
        owner.evict(victim->expert);
        c.stats.residentBytes -= owner.expertBytes(victim->expert);
        c.resident.erase(*victim);
        ++c.stats.evictions;
    }
    for (uint32_t e : missing) {
        c.stats.bytesUploaded += routed.makeResident(ctx_, e);
        c.stats.residentBytes += routed.expertBytes(e);
        c.resident.insert({int(layer), e});
    }
    c.stats.peakResidentBytes = std::max(c.stats.peakResidentBytes, c.stats.residentBytes);
}

// ---------------------------------------------------------------- Session

namespace {
constexpr uint32_t kFloat = sizeof(float);
// An optional weight (a bias) as the ops take it: null when the model has none.
const vk::Buffer* bias(const vk::Buffer& b) { return b.valid() ? &b : nullptr; }
} // namespace

Session::Session(Model& model, uint32_t maxContext, uint32_t maxBatch) : model_(model), ctx_(model.context()) {
    const ModelConfig& c = model.config();
    maxContext_ = maxContext ? maxContext : std::min<uint32_t>(uint32_t(c.maxPositions > 0 ? c.maxPositions : 4096), 4096u);
    maxBatch_ = std::max<uint32_t>(1, std::min(maxBatch, maxContext_));
    attn_ = {uint32_t(c.numHeads), uint32_t(c.numKvHeads), uint32_t(c.headDim), uint32_t(c.slidingWindow),
             c.attentionScale > 0 ? c.attentionScale : 1.0f / std::sqrt(float(c.headDim))};
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
    if (c.ropeInvFreq.size() != half) throw Error("internal: RoPE frequencies do not match head_dim");
    std::vector<float> table(size_t(maxContext_) * half * 2);
    for (uint32_t p = 0; p < maxContext_; ++p)
        for (uint32_t i = 0; i < half; ++i) {
            const float angle = float(p) * c.ropeInvFreq[i];
            table[size_t(p) * half + i] = float(std::cos(double(angle)));
            table[size_t(maxContext_) * half + size_t(p) * half + i] = float(std::sin(double(angle)));
        }
    ropeTable_ = uploadFloats(ctx_, table);
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

MlpStep Session::mlpStep(size_t l, uint32_t n) {
    return {&xn_, &x_, {&gate_, &up_, &hidden_}, &step_, mlpStates_[l].get(), n};
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
    mlp.record(ctx_, rec, step);
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
        ops::matmul(ctx_, rec, L.qkv, in, q, n, bias(L.qkvBias), false, kernel, nullptr, inNorm);
    } else {
        ops::matmul(ctx_, rec, L.q, in, q, n, bias(L.qBias), false, kernel, nullptr, inNorm);
        ops::matmul(ctx_, rec, L.k, in, k, n, bias(L.kBias), false, kernel, nullptr, inNorm);
        ops::matmul(ctx_, rec, L.v, in, v, n, bias(L.vBias), false, kernel, nullptr, inNorm);
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
    ops::ropeStore(ctx_, rec, attn_, step_, q, k, v, q_, kCache_[l], vCache_[l], ropeTable_, maxContext_, n);
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
                     ropeTable_, maxContext_, n);
    } else {
        recordQkvThenRope(rec, l, n, in, inNorm);
    }
    rec.barrier();
    ops::attention(ctx_, rec, attn_, step_, q_, kCache_[l], vCache_[l], attnOut_, n);
    rec.barrier();
    ops::matmul(ctx_, rec, L.o, {&attnOut_, 0, qDim}, {&x_, 0, H}, n, bias(L.oBias), /*accumulate=*/true);
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
    ops::embed(ctx_, *rec, model_.embed_, step_, x_, n);
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
    }
    recordHead(*rec, n, allRows);
    submit(*rec);
    model_.cache_->policy.decay();
    lastDispatches_ = dispatches;
    lastBarriers_ = barriers;
}

void Session::recordStep(vk::Recorder& rec, uint32_t n, bool allRows) {
    rec.begin();
    ops::embed(ctx_, rec, model_.embed_, step_, x_, n);
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
        ops::matmul(ctx_, rec, *model_.lmHead_, {&x_, firstRow * H, H}, {&logits_, 0, V}, rows, nullptr, false,
                    ops::MatmulKernel::Auto, nullptr, &norm);
        return;
    }
    ops::rmsnorm(ctx_, rec, {&x_, firstRow * H, H}, model_.finalNorm_, {&xn_, 0, H}, rows, H, c.rmsNormEps);
    rec.barrier();
    ops::matmul(ctx_, rec, *model_.lmHead_, {&xn_, 0, H}, {&logits_, 0, V}, rows);
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
