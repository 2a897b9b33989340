#include "moe/session.h"

#include "moe/error.h"
#include "moe/routed_mlp.h"
#include "op_tuning.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace moe {

namespace {
constexpr uint32_t kFloat = sizeof(float);
// An optional weight (a bias) as the ops take it: null when the model has none.
const vk::Buffer* bias(const vk::Buffer& b) { return b.valid() ? &b : nullptr; }
using Clock = std::chrono::steady_clock;
} // namespace

// One forward step asked for by a session: a chunk of its prompt, or one
// decode token that may run beside other sequences' tokens.
struct StepJob {
    Session* session = nullptr;
    std::span<const int32_t> tokens;
    bool decode = false;                  // one token, last logits only: batchable
    bool firstChunk = true;               // the first step of a forward(): captures start afresh
    std::vector<float>* allLogits = nullptr;
    Clock::time_point queued;
    bool done = false;
    std::exception_ptr error;
};

// The device state of every sequence of a group of sessions, and the queue
// their steps take turns in. A thread whose step is queued runs the front of
// the queue when no step is running: the front prompt chunk alone, or every
// queued decode token together (after waiting up to a short window for the
// other decoding sequences' next tokens).
struct Session::Shared {
    Shared(Model& model, uint32_t maxContext, uint32_t maxBatch, uint32_t maxSequences);

    Model& model_;
    vk::Context& ctx_;
    uint32_t maxContext_ = 0;
    uint32_t maxBatch_ = 0;
    uint32_t maxSequences_ = 1;
    uint32_t logitRows_ = 0; // rows of logits one submit can hold
    ops::AttentionShape attn_;
    vk::Buffer step_, x_, xn_, qkv_, q_, attnOut_, gate_, up_, hidden_, logits_, ropeTable_;
    vk::Buffer ropeLocalTable_; // Gemma 3's sliding layers' RoPE; else empty
    vk::Buffer mlpOut_;         // the MLP's output before its post-norm (Gemma); else empty
    std::vector<vk::Buffer> kCache_, vCache_;
    std::vector<int> captureLayers_;
    std::vector<vk::Buffer> captureBuffers_;
    std::vector<std::vector<float>> captured_;
    std::unique_ptr<vk::Recorder> decode_;  // one sequence's one-token step, recorded once
    std::unique_ptr<vk::Recorder> prefill_; // re-recorded per batch size
    std::map<uint32_t, std::unique_ptr<vk::Recorder>> batched_; // n sequences' tokens, one each
    std::vector<std::unique_ptr<vk::Recorder>> segments_;       // paged steps, re-recorded every step
    uint32_t prefillRecordedFor_ = 0;
    uint64_t recordedRevision_ = 0;
    bool prefillAllRows_ = false;
    bool oneSequence_ = true; // the step being recorded holds one sequence's consecutive tokens
    std::vector<std::unique_ptr<MlpState>> mlpStates_;
    uint32_t lastDispatches_ = 0, lastBarriers_ = 0, lastSequences_ = 0;
    Session::StepFigures figures_;

    // Sequences and the step queue, under mu_.
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<bool> taken_;
    std::vector<bool> decoding_; // its last step was a decode token and its reply goes on
    std::deque<StepJob*> queue_;
    bool running_ = false;
    std::chrono::microseconds batchWindow_{2000};

    uint32_t takeSequence();
    void releaseSequence(uint32_t seq);
    // Queues `job` and returns once it has run (on this thread or another).
    void submit(StepJob& job);
    // Runs while no step is running; fn(…) on the idle state.
    template <class F>
    auto whenIdle(F&& fn) {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return !running_; });
        return fn();
    }

    void run(const std::vector<StepJob*>& jobs);
    void writeStep(const std::vector<StepJob*>& jobs);
    void recordStep(vk::Recorder& rec, uint32_t nTokens, bool allRows);
    void recordLayer(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    void recordHead(vk::Recorder& rec, uint32_t nTokens, bool allRows);
    void recordAttention(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    void recordQkvThenRope(vk::Recorder& rec, size_t layer, uint32_t nTokens, const ops::Act& in,
                           const ops::InputNorm* inNorm);
    void recordMlpNorm(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    // out = norm(x) of `rows` rows of hidden: RMSNorm, or LayerNorm with `bias`.
    void recordNorm(vk::Recorder& rec, const ops::Act& x, const vk::Buffer& weight, const vk::Buffer& bias,
                    const ops::Act& out, uint32_t rows);
    // Whether projections take the input norm folded in:
    // RMSNorm only, and never where the MLP reads the attention's norm (parallel residual).
    bool foldsNorm() const;
    MlpStep mlpStep(size_t layer, uint32_t nTokens);
    float embedScale() const;
    // Before a layer's MLP block: clears mlpOut_ where the block adds into it (Gemma).
    void recordMlpPrologue(vk::Recorder& rec, uint32_t nTokens);
    // After it: x_ += post_feedforward_layernorm(mlpOut_) (Gemma); else nothing.
    void recordMlpEpilogue(vk::Recorder& rec, size_t layer, uint32_t nTokens);
    // The attention of layer l (its window) and its RoPE table.
    ops::AttentionShape layerAttention(size_t layer) const;
    const vk::Buffer& ropeTable(size_t layer) const;
    void runPagedStep(uint32_t nTokens, bool allRows);
    void syncWithModel();
};

Session::Shared::Shared(Model& model, uint32_t maxContext, uint32_t maxBatch, uint32_t maxSequences)
    : model_(model), ctx_(model.context()) {
    const ModelConfig& c = model.config();
    maxContext_ = maxContext ? maxContext : std::min<uint32_t>(uint32_t(c.maxPositions > 0 ? c.maxPositions : 4096), 4096u);
    maxSequences_ = std::max<uint32_t>(1, maxSequences);
    maxBatch_ = std::max<uint32_t>(1, std::min(maxBatch, maxContext_));
    maxBatch_ = std::max(maxBatch_, maxSequences_);
    attn_ = {uint32_t(c.numHeads), uint32_t(c.numKvHeads), uint32_t(c.headDim), uint32_t(c.slidingWindow),
             c.attentionScale > 0 ? c.attentionScale : 1.0f / std::sqrt(float(c.headDim)), c.attnSoftcap,
             uint32_t(c.rotaryDim())};
    const uint64_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    const uint64_t qDim = uint64_t(c.numHeads) * c.headDim, kvDim = uint64_t(c.numKvHeads) * c.headDim;
    uint32_t inter = 0;
    for (const auto& L : model.layers_)
        if (L.mlp) inter = std::max(inter, L.mlp->scratchWidth());
    logitRows_ = uint32_t(std::max<uint64_t>(1, std::min<uint64_t>(maxBatch_, ctx_.maxStorageRange() / (V * kFloat))));

    auto dev = [&](uint64_t floats) { return vk::Buffer(ctx_, floats * kFloat, vk::MemoryUse::Device); };
    step_ = vk::Buffer(ctx_, ops::stepBufferBytes(maxBatch_), vk::MemoryUse::Upload);
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
    for (auto* b : {&x_, &xn_, &qkv_, &q_, &attnOut_, &gate_, &up_, &hidden_})
        if (b->size() > ctx_.maxStorageRange())
            throw Error("a batch of " + std::to_string(maxBatch_) + " tokens needs activations larger than the "
                        "device's storage-buffer range; use a smaller batch");
    const uint64_t cacheBytes = uint64_t(maxSequences_) * maxContext_ * kvDim * kFloat;
    if (cacheBytes > ctx_.maxStorageRange())
        throw Error("a context of " + std::to_string(maxContext_) + " tokens for " + std::to_string(maxSequences_) +
                    " sequences needs a KV cache per layer larger than the device's storage-buffer range; use a "
                    "shorter context or fewer sequences");
    for (int l = 0; l < c.numLayers; ++l) {
        kCache_.push_back(dev(uint64_t(maxSequences_) * maxContext_ * kvDim));
        vCache_.push_back(dev(uint64_t(maxSequences_) * maxContext_ * kvDim));
    }

    // RoPE table as Transformers computes it: angle = float(pos) * inv_freq in
    // float32, then cos/sin of that angle; rotaryDim/2 columns. LongRoPE:
    // positions from original_max_position_embeddings on take the long
    // factors' frequencies (Transformers switches once the sequence is longer),
    // and cos/sin are scaled by the attention factor.
    const uint32_t half = uint32_t(c.rotaryDim()) / 2;
    auto ropeTable = [&](const std::vector<float>& invFreq, const std::vector<float>& longInvFreq) {
        if (invFreq.size() != half || (!longInvFreq.empty() && longInvFreq.size() != half))
            throw Error("internal: RoPE frequencies do not match the rotary width");
        std::vector<float> table(size_t(maxContext_) * half * 2);
        const double scale = longInvFreq.empty() ? 1.0 : double(c.ropeAttnFactor);
        for (uint32_t p = 0; p < maxContext_; ++p) {
            const bool longF = !longInvFreq.empty() && p >= uint32_t(c.ropeOriginalMax);
            const std::vector<float>& f = longF ? longInvFreq : invFreq;
            for (uint32_t i = 0; i < half; ++i) {
                const float angle = float(p) * f[i];
                table[size_t(p) * half + i] = float(std::cos(double(angle)) * scale);
                table[size_t(maxContext_) * half + size_t(p) * half + i] = float(std::sin(double(angle)) * scale);
            }
        }
        return uploadFloats(ctx_, table);
    };
    ropeTable_ = ropeTable(c.ropeInvFreq, c.ropeLongInvFreq);
    if (!c.ropeLocalInvFreq.empty()) ropeLocalTable_ = ropeTable(c.ropeLocalInvFreq, {});
    recordedRevision_ = ~model.revision(); // states are created by the first step
    taken_.assign(maxSequences_, false);
    decoding_.assign(maxSequences_, false);
    batchWindow_ = std::chrono::microseconds(tuning::envCount("MOE_BATCH_WAIT_US", 2000u));
}

uint32_t Session::Shared::takeSequence() {
    std::lock_guard lk(mu_);
    for (uint32_t s = 0; s < maxSequences_; ++s)
        if (!taken_[s]) {
            taken_[s] = true;
            decoding_[s] = false;
            return s;
        }
    throw Error("all " + std::to_string(maxSequences_) + " sequences of the session are in use");
}

void Session::Shared::releaseSequence(uint32_t seq) {
    {
        std::lock_guard lk(mu_);
        taken_[seq] = false;
        decoding_[seq] = false;
    }
    cv_.notify_all();
}

void Session::Shared::submit(StepJob& job) {
    std::unique_lock lk(mu_);
    job.queued = Clock::now();
    decoding_[job.session->seq_] = job.decode;
    queue_.push_back(&job);
    cv_.notify_all();
    while (!job.done) {
        if (running_ || queue_.empty()) {
            cv_.wait(lk);
            continue;
        }
        std::vector<StepJob*> batch;
        StepJob* front = queue_.front();
        if (!front->decode) {
            batch.push_back(front);
        } else {
            const size_t limit = std::min(maxBatch_, logitRows_);
            for (StepJob* j : queue_)
                if (j->decode && batch.size() < limit) batch.push_back(j);
            // Sequences decoding without a step queued yet are sampling their
            // next token: wait a little for them, so that they step together.
            size_t decoders = 0;
            for (uint32_t s = 0; s < maxSequences_; ++s) decoders += taken_[s] && decoding_[s];
            const auto deadline = front->queued + batchWindow_;
            if (batch.size() < std::min(decoders, limit) && Clock::now() < deadline) {
                cv_.wait_until(lk, deadline);
                continue;
            }
        }
        for (StepJob* j : batch) queue_.erase(std::find(queue_.begin(), queue_.end(), j));
        running_ = true;
        lk.unlock();
        std::exception_ptr error;
        try {
            run(batch);
        } catch (...) {
            error = std::current_exception();
        }
        lk.lock();
        running_ = false;
        for (StepJob* j : batch) {
            j->error = error;
            j->done = true;
        }
        cv_.notify_all();
    }
    if (job.error) std::rethrow_exception(job.error);
}

void Session::Shared::writeStep(const std::vector<StepJob*>& jobs) {
    std::vector<ops::StepToken> tokens;
    for (const StepJob* j : jobs) {
        const Session& s = *j->session;
        const uint32_t flags = ops::routeFlags(s.reply_, s.pinSlot_);
        for (size_t i = 0; i < j->tokens.size(); ++i)
            tokens.push_back({j->tokens[i], s.pos_ + uint32_t(i), s.seq_, flags});
    }
    ops::StepHeader h;
    h.nTokens = uint32_t(tokens.size());
    h.seqRows = maxContext_;
    step_.upload(&h, sizeof h);
    step_.upload(tokens.data(), tokens.size() * sizeof(ops::StepToken), sizeof h);
}

// One step: a prompt chunk of one sequence, or one decode token of each of
// `jobs`' sequences. Runs with no other step running.
void Session::Shared::run(const std::vector<StepJob*>& jobs) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    syncWithModel();
    model_.syncExpertCache();
    if (jobs[0]->firstChunk)
        for (auto& v : captured_) v.clear();
    writeStep(jobs);
    const bool batched = jobs.size() > 1;
    const uint32_t n = batched ? uint32_t(jobs.size()) : uint32_t(jobs[0]->tokens.size());
    const bool wantAll = batched || jobs[0]->allLogits;
    oneSequence_ = !batched;
    // Where sequences step together, every decode-sized step (one sequence's
    // token, or one each of several) takes the same kernel, so that a reply
    // does not depend on its company (ops::KernelScope).
    std::optional<ops::KernelScope> sameKernel;
    if (maxSequences_ > 1 && (batched || n == 1)) {
        const LayerWeights& first = model_.layers_.front();
        sameKernel.emplace(tuning::batchDecodeKernel(ctx_, isQuantized(first.qkv.rows ? first.qkv.dtype : first.q.dtype)));
    }
    vk::Recorder* rec = nullptr;
    if (model_.cache_) {
        runPagedStep(n, wantAll);
    } else if (n == 1 && !wantAll) {
        if (!decode_) {
            decode_ = std::make_unique<vk::Recorder>(ctx_);
            recordStep(*decode_, 1, false);
        }
        rec = decode_.get();
    } else if (batched) {
        auto& r = batched_[n];
        if (!r) {
            r = std::make_unique<vk::Recorder>(ctx_);
            recordStep(*r, n, true);
        }
        rec = r.get();
    } else {
        if (!prefill_ || prefillRecordedFor_ != n || prefillAllRows_ != wantAll) {
            if (!prefill_) prefill_ = std::make_unique<vk::Recorder>(ctx_);
            recordStep(*prefill_, n, wantAll);
            prefillRecordedFor_ = n;
            prefillAllRows_ = wantAll;
        }
        rec = prefill_.get();
    }
    oneSequence_ = true;
    if (rec) {
        rec->submitAndWait();
        lastDispatches_ = rec->dispatchCount();
        lastBarriers_ = rec->barrierCount();
    }
    lastSequences_ = uint32_t(jobs.size());
    ++figures_.steps;
    if (jobs[0]->decode) {
        ++figures_.decodeSteps;
        figures_.decodeTokens += jobs.size();
    }
    for (size_t i = 0; i < captureBuffers_.size(); ++i) {
        auto& out = captured_[i];
        const size_t old = out.size();
        out.resize(old + size_t(n) * H);
        captureBuffers_[i].download(out.data() + old, uint64_t(n) * H * kFloat);
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
        StepJob& j = *jobs[i];
        Session& s = *j.session;
        const uint32_t rows = uint32_t(j.tokens.size());
        // Row of this job's last token among the logits read back.
        const uint64_t lastRow = batched ? i : (wantAll ? rows - 1 : 0);
        if (j.allLogits) {
            const size_t old = j.allLogits->size();
            j.allLogits->resize(old + size_t(rows) * V);
            logits_.download(j.allLogits->data() + old, uint64_t(rows) * V * kFloat, batched ? i * V * kFloat : 0);
        }
        s.lastLogits_.resize(V);
        logits_.download(s.lastLogits_.data(), uint64_t(V) * kFloat, lastRow * V * kFloat);
        s.pos_ += rows;
    }
}

float Session::Shared::embedScale() const {
    return model_.config().embedScale > 0 ? model_.config().embedScale : 1.0f;
}

ops::AttentionShape Session::Shared::layerAttention(size_t l) const {
    ops::AttentionShape s = attn_;
    s.window = uint32_t(model_.config().layerWindow(int(l)));
    return s;
}

const vk::Buffer& Session::Shared::ropeTable(size_t l) const {
    return model_.config().localRope(int(l)) ? ropeLocalTable_ : ropeTable_;
}

MlpStep Session::Shared::mlpStep(size_t l, uint32_t n) {
    // With post-norms the block adds into mlpOut_, normalised into x_ afterwards.
    MlpStep step{&xn_, mlpOut_.valid() ? &mlpOut_ : &x_, {&gate_, &up_, &hidden_}, &step_, mlpStates_[l].get(), n};
    step.act = model_.config().hiddenAct;
    return step;
}

void Session::Shared::recordMlpPrologue(vk::Recorder& rec, uint32_t n) {
    if (!mlpOut_.valid()) return;
    rec.fill(vk::BufferView(mlpOut_, 0, uint64_t(n) * uint32_t(model_.config().hiddenSize) * kFloat), 0);
    rec.barrier();
}

void Session::Shared::recordMlpEpilogue(vk::Recorder& rec, size_t l, uint32_t n) {
    if (!mlpOut_.valid()) return;
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize);
    ops::rmsnorm(ctx_, rec, {&mlpOut_, 0, H}, model_.layers_[l].postMlpNorm, {&x_, 0, H}, n, H, c.normEps, 1, true);
    rec.barrier();
}

void Session::Shared::recordNorm(vk::Recorder& rec, const ops::Act& x, const vk::Buffer& weight, const vk::Buffer& bias,
                                 const ops::Act& out, uint32_t rows) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize);
    if (c.normKind == NormKind::Layer) ops::layernorm(ctx_, rec, x, weight, bias, out, rows, H, c.normEps);
    else ops::rmsnorm(ctx_, rec, x, weight, out, rows, H, c.normEps);
}

bool Session::Shared::foldsNorm() const {
    const ModelConfig& c = model_.config();
    return c.normKind == NormKind::Rms && !c.parallelResidual && ops::foldsInputNorm();
}

void Session::Shared::recordLayer(vk::Recorder& rec, size_t l, uint32_t n) {
    recordAttention(rec, l, n);
    const MlpBlock& mlp = *model_.layers_[l].mlp;
    MlpStep step = mlpStep(l, n);
    const bool captured = std::find(captureLayers_.begin(), captureLayers_.end(), int(l)) != captureLayers_.end();
    if (mlp.foldsInputNorm(step) && !captured && foldsNorm()) {
        step.input = &x_;
        step.inputNorm = {&model_.layers_[l].mlpNorm, model_.config().normEps};
    } else {
        recordMlpNorm(rec, l, n);
    }
    recordMlpPrologue(rec, n);
    mlp.record(ctx_, rec, step);
    recordMlpEpilogue(rec, l, n);
}

void Session::Shared::recordQkvThenRope(vk::Recorder& rec, size_t l, uint32_t n, const ops::Act& in,
                                        const ops::InputNorm* inNorm) {
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
        ops::rmsnorm(ctx_, rec, q, L.qNorm, q, n * attn_.nHeads, D, c.normEps, attn_.nHeads);
        ops::rmsnorm(ctx_, rec, k, L.kNorm, k, n * attn_.nKvHeads, D, c.normEps, attn_.nKvHeads);
        rec.barrier();
    }
    ops::ropeStore(ctx_, rec, attn_, step_, q, k, v, q_, kCache_[l], vCache_[l], ropeTable(l), maxContext_, n);
}

void Session::Shared::recordAttention(vk::Recorder& rec, size_t l, uint32_t n) {
    const ModelConfig& c = model_.config();
    const LayerWeights& L = model_.layers_[l];
    const uint32_t H = uint32_t(c.hiddenSize);
    const uint32_t qDim = attn_.nHeads * attn_.headDim;

    // The input norm: folded into the QKV matvec, or a pass of its own.
    const ops::InputNorm norm{&L.attnNorm, c.normEps};
    const bool fold = foldsNorm();
    if (!fold) {
        recordNorm(rec, {&x_, 0, H}, L.attnNorm, L.attnNormBias, {&xn_, 0, H}, n);
        rec.barrier();
    }
    const ops::Act in{fold ? &x_ : &xn_, 0, H};
    const ops::InputNorm* inNorm = fold ? &norm : nullptr;
    // Decode of the usual layout: RoPE in the QKV projection's epilogue.
    // Partial rotary (Phi-3) takes the separate pass.
    if (L.qkv.rows && !L.qNorm.valid() && attn_.rotaryDim() == attn_.headDim && ops::qkvRopeFits(ctx_, L.qkv, n)) {
        ops::qkvRope(ctx_, rec, attn_, L.qkv, in, bias(L.qkvBias), inNorm, step_, q_, kCache_[l], vCache_[l],
                     ropeTable(l), maxContext_, n);
    } else {
        recordQkvThenRope(rec, l, n, in, inNorm);
    }
    rec.barrier();
    ops::attention(ctx_, rec, layerAttention(l), step_, q_, kCache_[l], vCache_[l], attnOut_, n, oneSequence_);
    rec.barrier();
    if (!L.postAttnNorm.valid()) {
        ops::matmul(ctx_, rec, L.o, {&attnOut_, 0, qDim}, {&x_, 0, H}, n, {.bias = bias(L.oBias), .accumulate = true});
        rec.barrier();
        return;
    }
    // Gemma: x += post_attention_layernorm(o_proj(attention)); xn_ is free again here.
    ops::matmul(ctx_, rec, L.o, {&attnOut_, 0, qDim}, {&xn_, 0, H}, n, {.bias = bias(L.oBias)});
    rec.barrier();
    ops::rmsnorm(ctx_, rec, {&xn_, 0, H}, L.postAttnNorm, {&x_, 0, H}, n, H, c.normEps, 1, true);
    rec.barrier();
}

void Session::Shared::recordMlpNorm(vk::Recorder& rec, size_t l, uint32_t n) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize);
    // Parallel residual: xn_ still holds the layer's input norm, which the
    // attention read and the MLP reads too.
    if (!c.parallelResidual) {
        recordNorm(rec, {&x_, 0, H}, model_.layers_[l].mlpNorm, {}, {&xn_, 0, H}, n);
        rec.barrier();
    }
    for (size_t i = 0; i < captureLayers_.size(); ++i)
        if (captureLayers_[i] == int(l)) rec.copy(xn_.handle(), 0, captureBuffers_[i].handle(), 0, uint64_t(n) * H * kFloat);
}

void Session::Shared::runPagedStep(uint32_t n, bool allRows) {
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

void Session::Shared::recordStep(vk::Recorder& rec, uint32_t n, bool allRows) {
    rec.begin();
    ops::embed(ctx_, rec, model_.embed_, step_, x_, n, embedScale());
    rec.barrier();
    for (size_t l = 0; l < model_.layers_.size(); ++l) recordLayer(rec, l, n);
    recordHead(rec, n, allRows);
    rec.end();
}

void Session::Shared::recordHead(vk::Recorder& rec, uint32_t n, bool allRows) {
    const ModelConfig& c = model_.config();
    const uint32_t H = uint32_t(c.hiddenSize), V = uint32_t(c.vocabSize);
    const uint32_t rows = allRows ? n : 1;
    const uint32_t firstRow = allRows ? 0 : n - 1;
    const ops::InputNorm norm{&model_.finalNorm_, c.normEps};
    const vk::Buffer* headBias = bias(model_.lmHeadBias_);
    if (c.normKind == NormKind::Rms && ops::foldsInputNorm()) {
        ops::matmul(ctx_, rec, *model_.lmHead_, {&x_, firstRow * H, H}, {&logits_, 0, V}, rows,
                    {.bias = headBias, .norm = &norm});
    } else {
        recordNorm(rec, {&x_, firstRow * H, H}, model_.finalNorm_, model_.finalNormBias_, {&xn_, 0, H}, rows);
        rec.barrier();
        ops::matmul(ctx_, rec, *model_.lmHead_, {&xn_, 0, H}, {&logits_, 0, V}, rows, {.bias = headBias});
    }
    if (c.finalSoftcap > 0) {
        rec.barrier();
        ops::softcap(ctx_, rec, logits_, 0, rows * V, c.finalSoftcap);
    }
}

// Blocks replaced since the last step: drop recorded commands, make new states.
void Session::Shared::syncWithModel() {
    if (recordedRevision_ == model_.revision()) return;
    decode_.reset();
    prefill_.reset();
    batched_.clear();
    const ModelConfig& c = model_.config();
    mlpStates_.clear();
    for (int l = 0; l < c.numLayers; ++l) {
        if (!model_.layers_[size_t(l)].mlp) throw Error("internal: layer " + std::to_string(l) + " has no MLP");
        if (uint64_t(model_.mlp(l).scratchWidth()) * maxBatch_ * kFloat > gate_.size())
            throw Error("layer " + std::to_string(l) + "'s MLP is wider than the session was created for");
        mlpStates_.push_back(model_.mlp(l).createState(ctx_, {maxContext_, maxBatch_, maxSequences_}));
    }
    recordedRevision_ = model_.revision();
}

// ---------------------------------------------------------------- Session

Session::Session(Model& model, uint32_t maxContext, uint32_t maxBatch, uint32_t maxSequences)
    : shared_(std::make_shared<Shared>(model, maxContext, maxBatch, maxSequences)) {
    seq_ = shared_->takeSequence();
}

Session::Session(Session& other) : shared_(other.shared_) { seq_ = shared_->takeSequence(); }

Session::~Session() { shared_->releaseSequence(seq_); }

Model& Session::model() const { return shared_->model_; }
uint32_t Session::maxContext() const { return shared_->maxContext_; }

void Session::truncate(uint32_t pos) {
    pos_ = std::min(pos_, pos);
    finishDecoding();
}

void Session::finishDecoding() {
    {
        std::lock_guard lk(shared_->mu_);
        shared_->decoding_[seq_] = false;
    }
    shared_->cv_.notify_all();
}

void Session::setCaptureLayers(std::vector<int> layers) {
    Shared& sh = *shared_;
    sh.whenIdle([&] {
        for (int l : layers)
            if (l < 0 || l >= sh.model_.config().numLayers)
                throw Error("capture layer " + std::to_string(l) + " does not exist (the model has " +
                            std::to_string(sh.model_.config().numLayers) + ")");
        sh.captureLayers_ = std::move(layers);
        sh.captureBuffers_.clear();
        for (size_t i = 0; i < sh.captureLayers_.size(); ++i)
            sh.captureBuffers_.emplace_back(sh.ctx_,
                                            uint64_t(sh.maxBatch_) * uint32_t(sh.model_.config().hiddenSize) * kFloat,
                                            vk::MemoryUse::Readback);
        sh.captured_.assign(sh.captureLayers_.size(), {});
        sh.decode_.reset();
        sh.prefill_.reset();
        sh.batched_.clear();
    });
}

const std::vector<float>& Session::captured(size_t i) const { return shared_->captured_.at(i); }

std::vector<std::pair<int, std::vector<uint32_t>>> Session::expertUsage() const {
    Shared& sh = *shared_;
    return sh.whenIdle([&] {
        sh.syncWithModel();
        std::vector<std::pair<int, std::vector<uint32_t>>> out;
        for (int l = 0; l < sh.model_.config().numLayers; ++l) {
            auto counts = sh.model_.mlp(l).expertUsage(sh.mlpStates_.at(size_t(l)).get(), int(seq_));
            if (!counts.empty()) out.emplace_back(l, std::move(counts));
        }
        return out;
    });
}

void Session::resetExpertUsage() {
    Shared& sh = *shared_;
    sh.whenIdle([&] {
        sh.syncWithModel();
        for (int l = 0; l < sh.model_.config().numLayers; ++l)
            sh.model_.mlp(l).resetExpertUsage(sh.mlpStates_.at(size_t(l)).get(), int(seq_));
    });
}

MlpState* Session::mlpState(int layer) const {
    Shared& sh = *shared_;
    return sh.whenIdle([&] {
        sh.syncWithModel();
        return sh.mlpStates_.at(size_t(layer)).get();
    });
}

uint32_t Session::lastDispatches() const { return shared_->lastDispatches_; }
uint32_t Session::lastBarriers() const { return shared_->lastBarriers_; }
uint32_t Session::lastStepSequences() const { return shared_->lastSequences_; }
Session::StepFigures Session::stepFigures() const {
    return shared_->whenIdle([&] { return shared_->figures_; });
}

std::span<const float> Session::forward(std::span<const int32_t> tokens, std::vector<float>* allLogits) {
    Shared& sh = *shared_;
    const ModelConfig& c = sh.model_.config();
    if (tokens.empty()) throw Error("forward() needs at least one token");
    for (int32_t t : tokens)
        if (t < 0 || t >= c.vocabSize)
            throw Error("token id " + std::to_string(t) + " is outside the vocabulary (size " +
                        std::to_string(c.vocabSize) + ")");
    if (pos_ + tokens.size() > sh.maxContext_)
        throw Error("the context is full: " + std::to_string(pos_) + " + " + std::to_string(tokens.size()) +
                    " tokens exceed the session's " + std::to_string(sh.maxContext_));
    const bool wantAll = allLogits != nullptr;
    const uint32_t batchLimit = wantAll ? std::min(sh.maxBatch_, sh.logitRows_) : sh.maxBatch_;
    // A prompt goes in chunks, each a step of its own, so that the other
    // sequences' decode steps run between them.
    for (size_t done = 0; done < tokens.size();) {
        const size_t n = std::min<size_t>(batchLimit, tokens.size() - done);
        StepJob job;
        job.session = this;
        job.tokens = tokens.subspan(done, n);
        job.decode = tokens.size() == 1 && !wantAll;
        job.allLogits = allLogits;
        job.firstChunk = done == 0;
        sh.submit(job);
        done += n;
    }
    return lastLogits_;
}

} // namespace moe
