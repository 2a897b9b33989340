#include "moe/routed_mlp.h"

#include "moe/error.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

namespace moe {
namespace {

constexpr uint32_t kFloat = sizeof(float);

struct RoutedState : MlpState {
    ops::RouteParams params;
    vk::Buffer logits, route, state, usage;
    vk::Buffer loraGate, loraUp, loraDown; // A·x per slot, [maxBatch, rank]
};

} // namespace

uint64_t ExpertMlp::bytes() const {
    uint64_t n = gate.bytes() + up.bytes() + down.bytes() + upBias.size() + downBias.size();
    for (const auto* d : {&loraGate, &loraUp, &loraDown})
        if (*d) n += (*d)->a.bytes() + (*d)->b.bytes();
    return n;
}

RoutedMlp::RoutedMlp(vk::Context& ctx, std::unique_ptr<DenseMlp> base, std::vector<ExpertMlp> experts,
                     const std::vector<float>& gateWeight, const std::vector<float>& gateBias, RoutingOptions routing)
    : base_(std::move(base)), experts_(std::move(experts)), routing_(routing) {
    if (!base_) throw Error("internal: a routed MLP needs the layer's base MLP");
    const uint32_t E = uint32_t(experts_.size());
    const uint32_t H = base_->up().cols, I = base_->up().rows;
    if (E == 0 || E > 159) throw Error("an MoE layer holds 1 to 159 experts, not " + std::to_string(E));
    if (gateWeight.size() != size_t(E) * H)
        throw Error("the gate has " + std::to_string(gateWeight.size()) + " weights; " + std::to_string(E) +
                    " experts × hidden " + std::to_string(H) + " need " + std::to_string(size_t(E) * H));
    if (!gateBias.empty() && gateBias.size() != E)
        throw Error("the gate bias has " + std::to_string(gateBias.size()) + " values for " + std::to_string(E) +
                    " experts");
    auto check = [&](const DeviceMatrix& m, uint32_t rows, uint32_t cols, const char* what, uint32_t e) {
        if (m.rows && (m.rows != rows || m.cols != cols))
            throw Error("expert " + std::to_string(e) + "'s " + what + " is [" + std::to_string(m.rows) + ", " +
                        std::to_string(m.cols) + "], the base's is [" + std::to_string(rows) + ", " +
                        std::to_string(cols) + "]");
    };
    for (uint32_t e = 0; e < E; ++e) {
        const ExpertMlp& x = experts_[e];
        if (x.gate.rows && !base_->gated()) throw Error("expert " + std::to_string(e) + " has a gate_proj; the base's MLP has none");
        check(x.gate, I, H, "gate_proj", e);
        check(x.up, I, H, "up_proj", e);
        check(x.down, H, I, "down_proj", e);
        for (const auto* d : {&x.loraGate, &x.loraUp, &x.loraDown})
            if (*d) loraRank_ = std::max(loraRank_, (*d)->a.rows);
    }
    routing_.topK = std::clamp<uint32_t>(routing_.topK, 1, E);
    gate_ = DeviceMatrix::fromHost(ctx, DType::F32, E, H, gateWeight.data());
    if (!gateBias.empty()) gateBias_ = uploadFloats(ctx, gateBias);
    stackExperts(ctx);
}

void RoutedMlp::stackExperts(vk::Context& ctx) {
    using Projection = DeviceMatrix ExpertMlp::*;
    const Projection projections[] = {&ExpertMlp::gate, &ExpertMlp::up, &ExpertMlp::down};
    DeviceMatrix* baseMatrices[] = {&base_->gate_, &base_->up_, &base_->down_};
    const uint32_t E = expertCount();
    // The stacked pass is gated (ops::stackedExperts) and has no biases.
    if (!base_->gated() || base_->upBias().valid() || base_->downBias().valid()) return;
    for (const ExpertMlp& x : experts_)
        if (x.hasLora()) return;
    // When no expert is the base, the base MLP is stacked too, as slot E (the
    // slot likelihood routing pins tokens to).
    bool baseIsAnExpert = false;
    for (const ExpertMlp& x : experts_) baseIsAnExpert |= !x.gate.rows || !x.up.rows || !x.down.rows;
    const uint32_t S = baseIsAnExpert ? E : E + 1;
    // Slot e's matrix of a projection: the expert's own, or the base's.
    auto source = [&](uint32_t e, size_t p) -> DeviceMatrix& {
        if (e == E) return *baseMatrices[p];
        DeviceMatrix& own = experts_[e].*projections[p];
        return own.rows ? own : *baseMatrices[p];
    };
    // Views are bound at expert offsets, which must meet the binding alignments.
    const uint64_t align = std::max<uint64_t>({16, ctx.info().minStorageBufferOffsetAlignment,
                                               ctx.info().minTexelBufferOffsetAlignment});
    for (size_t p = 0; p < std::size(projections); ++p) {
        uint32_t baseSlots = 0;
        for (uint32_t e = 0; e < S; ++e) {
            const DeviceMatrix& m = source(e, p);
            const bool isBase = &m == baseMatrices[p];
            baseSlots += isBase;
            // Own matrices are paged in again from their files once unstacked.
            if (m.chunks.size() != 1 || !m.chunks[0].buffer.valid() || (!isBase && !m.mappedSource) || baseSlots > 1)
                return;
            const uint64_t rowBytes = m.rowBytes();
            if (uint64_t(m.rows) * rowBytes % align != 0 || DeviceMatrix::rowsPerChunk(ctx, rowBytes) < m.rows) return;
        }
    }
    auto stack = std::make_unique<ExpertStack>();
    stack->slotCount = S;
    // Runs of slots whose gate, up and down dtypes agree share a group.
    auto dtypes = [&](uint32_t e) {
        return std::tuple(source(e, 0).dtype, source(e, 1).dtype, source(e, 2).dtype);
    };
    for (uint32_t first = 0; first < S;) {
        uint32_t end = first + 1;
        while (end < S && dtypes(end) == dtypes(first)) ++end;
        ExpertStack::Group& group = stack->groups.emplace_back();
        group.firstSlot = first;
        group.slotCount = end - first;
        first = end;
    }
    // Every copy of the layer in one submit; the experts' own buffers are
    // freed once it has run.
    vk::Recorder copies(ctx);
    copies.begin();
    std::vector<vk::Buffer> copied;
    for (ExpertStack::Group& group : stack->groups) {
        DeviceMatrix* stacked[] = {&group.gate, &group.up, &group.down};
        for (size_t p = 0; p < std::size(projections); ++p) {
            const DeviceMatrix& first = source(group.firstSlot, p);
            DeviceMatrix& out = *stacked[p];
            out.dtype = first.dtype;
            out.rows = group.slotCount * first.rows;
            out.cols = first.cols;
            out.colsPadded = first.colsPadded;
            const uint64_t rowBytes = first.rowBytes();
            const uint64_t expertBytes = uint64_t(first.rows) * rowBytes;
            const uint32_t perChunk = DeviceMatrix::rowsPerChunk(ctx, rowBytes) / first.rows;
            for (uint32_t e0 = 0; e0 < group.slotCount; e0 += perChunk) {
                DeviceMatrix::Chunk c;
                c.firstRow = e0 * first.rows;
                c.rowCount = std::min(perChunk, group.slotCount - e0) * first.rows;
                c.buffer = vk::Buffer(ctx, uint64_t(c.rowCount) * rowBytes, vk::MemoryUse::Device);
                out.chunks.push_back(std::move(c));
            }
            // The chunks are all made: their buffers no longer move, so views can point at them.
            for (uint32_t e = 0; e < group.slotCount; ++e) {
                DeviceMatrix::Chunk& own = source(group.firstSlot + e, p).chunks[0];
                const vk::Buffer& dst = out.chunks[e / perChunk].buffer;
                const uint64_t offset = (e % perChunk) * expertBytes;
                copies.copy(own.buffer.handle(), 0, dst.handle(), offset, expertBytes);
                copied.push_back(std::move(own.buffer));
                own.viewOf = &dst;
                own.viewOffset = offset;
                own.viewBytes = expertBytes;
            }
        }
    }
    copies.end();
    copies.submitAndWait();
    stack_ = std::move(stack);
}

void RoutedMlp::unstackExperts(vk::Context& ctx) {
    if (!stack_) return;
    auto unview = [](DeviceMatrix& m) {
        for (auto& c : m.chunks) c.viewOf = nullptr, c.viewOffset = c.viewBytes = 0;
    };
    // The base is never paged: it gets its bytes back from the stack.
    for (DeviceMatrix* m : {&base_->gate_, &base_->up_, &base_->down_}) {
        for (auto& c : m->chunks) {
            if (!c.viewOf) continue;
            c.buffer = vk::Buffer(ctx, c.viewBytes, vk::MemoryUse::Device);
            ctx.copyBuffer(c.viewOf->handle(), c.viewOffset, c.buffer.handle(), 0, c.viewBytes);
        }
        unview(*m);
    }
    for (ExpertMlp& x : experts_)
        for (DeviceMatrix* m : {&x.gate, &x.up, &x.down}) unview(*m);
    stack_.reset();
}

uint64_t RoutedMlp::addedBytes() const {
    uint64_t n = gate_.bytes() + gateBias_.size();
    for (const auto& e : experts_) n += e.bytes();
    return n;
}

uint64_t RoutedMlp::deviceBytes() const { return base_->deviceBytes() + addedBytes(); }

std::unique_ptr<MlpState> RoutedMlp::createState(vk::Context& ctx, const MlpStateShape& shape) const {
    const uint32_t maxBatch = shape.maxBatch;
    auto s = std::make_unique<RoutedState>();
    s->params.experts = expertCount();
    s->params.maxBatch = maxBatch;
    s->params.maxContext = shape.maxContext;
    s->params.sequences = std::max<uint32_t>(1, shape.sequences);
    s->logits = vk::Buffer(ctx, uint64_t(maxBatch) * expertCount() * kFloat, vk::MemoryUse::Device);
    s->route = vk::Buffer(ctx, ops::routeBufferBytes(s->params), vk::MemoryUse::Device);
    s->state = vk::Buffer(ctx, ops::routeStateBytes(s->params), vk::MemoryUse::Device);
    s->usage = vk::Buffer(ctx, uint64_t(s->params.sequences) * (expertCount() + 1) * sizeof(uint32_t),
                          vk::MemoryUse::Readback);
    s->usage.fillZero();
    if (loraRank_) {
        for (auto* b : {&s->loraGate, &s->loraUp, &s->loraDown})
            *b = vk::Buffer(ctx, uint64_t(maxBatch) * loraRank_ * kFloat, vk::MemoryUse::Device);
    }
    return s;
}

std::vector<uint32_t> RoutedMlp::usage(const MlpState& state, int sequence) {
    const auto& s = dynamic_cast<const RoutedState&>(state);
    const size_t slots = s.params.experts + 1;
    std::vector<uint32_t> all(slots * s.params.sequences);
    s.usage.download(all.data(), all.size() * sizeof(uint32_t));
    if (sequence >= 0) {
        if (uint32_t(sequence) >= s.params.sequences) throw Error("internal: usage of a sequence the state does not hold");
        return {all.begin() + long(size_t(sequence) * slots), all.begin() + long(size_t(sequence + 1) * slots)};
    }
    std::vector<uint32_t> counts(slots);
    for (size_t i = 0; i < all.size(); ++i) counts[i % slots] += all[i];
    return counts;
}

void RoutedMlp::resetUsage(MlpState& state, int sequence) {
    auto& s = dynamic_cast<RoutedState&>(state);
    if (sequence < 0) return s.usage.fillZero();
    if (uint32_t(sequence) >= s.params.sequences) throw Error("internal: usage of a sequence the state does not hold");
    const std::vector<uint32_t> zeros(s.params.experts + 1);
    s.usage.upload(zeros.data(), zeros.size() * sizeof(uint32_t), uint64_t(sequence) * zeros.size() * sizeof(uint32_t));
}

namespace {
// Every device matrix an expert owns, in a fixed order.
template <class Expert, class F>
void forEachMatrix(Expert& x, F&& f) {
    for (auto* m : {&x.gate, &x.up, &x.down})
        if (m->rows) f(*m);
    for (auto* d : {&x.loraGate, &x.loraUp, &x.loraDown})
        if (*d) {
            f((*d)->a);
            f((*d)->b);
        }
}
} // namespace

bool RoutedMlp::ownsWeights(uint32_t e) const {
    bool owns = false;
    forEachMatrix(experts_.at(e), [&](const DeviceMatrix&) { owns = true; });
    return owns;
}

bool RoutedMlp::isResident(uint32_t e) const { return !paged() || !ownsWeights(e) || resident_.at(e); }

uint64_t RoutedMlp::expertBytes(uint32_t e) const { return paged() ? residentBytes_.at(e) : experts_.at(e).bytes(); }

uint64_t RoutedMlp::hostCopyBytes() const {
    uint64_t n = 0;
    for (const auto& expert : hostCopies_)
        for (const auto& chunk : expert) n += chunk.size();
    return n;
}

void RoutedMlp::pageOutExperts(vk::Context& ctx) {
    if (paged()) {
        for (uint32_t e = 0; e < expertCount(); ++e) evict(e);
        return;
    }
    // Stacked experts are read from their files again when paged in.
    unstackExperts(ctx);
    const uint32_t E = expertCount();
    hostCopies_.assign(E, {});
    residentBytes_.assign(E, 0);
    resident_.assign(E, false);
    for (uint32_t e = 0; e < E; ++e) {
        forEachMatrix(experts_[e], [&](DeviceMatrix& m) {
            residentBytes_[e] += m.residentBytes(); // also for experts loaded paged out (DeviceMatrix::mapped)
            for (auto& c : m.chunks) {
                // LoRA factors (converted to float32, B scaled by alpha/r at
                // load) and merged LoRA weights differ from their files' bytes:
                // the one case that needs a host copy.
                if (!m.mappedSource) {
                    std::vector<std::byte> bytes(c.buffer.size());
                    c.buffer.download(bytes.data(), bytes.size());
                    hostCopies_[e].push_back(std::move(bytes));
                }
                c.buffer = vk::Buffer(); // frees the device memory
            }
        });
    }
    paged_ = true;
}

uint64_t RoutedMlp::makeResident(vk::Context& ctx, uint32_t e) {
    if (isResident(e)) return 0;
    size_t copy = 0;
    forEachMatrix(experts_.at(e), [&](DeviceMatrix& m) {
        if (m.mappedSource) {
            m.uploadFromMapping(ctx);
            return;
        }
        for (auto& c : m.chunks) {
            const auto& bytes = hostCopies_[e].at(copy++);
            c.buffer = vk::Buffer(ctx, bytes.size(), vk::MemoryUse::Device);
            c.buffer.upload(bytes.data(), bytes.size());
        }
    });
    resident_[e] = true;
    return residentBytes_[e];
}

void RoutedMlp::evict(uint32_t e) {
    if (!paged() || !ownsWeights(e)) return;
    forEachMatrix(experts_.at(e), [&](DeviceMatrix& m) {
        for (auto& c : m.chunks) c.buffer = vk::Buffer();
    });
    resident_[e] = false;
}

bool RoutedMlp::runsStacked(const MlpStep& step) const {
    if (!stack_ || (routing_.baseSlot && stack_->slotCount == expertCount())) return false;
    if (ops::chooseKernel(step.nTokens) != ops::MatmulKernel::Vector) return false;
    const auto* st = dynamic_cast<const RoutedState*>(step.state);
    return st && step.nTokens * routing_.topK <= st->params.maxBatch;
}

bool RoutedMlp::foldsInputNorm(const MlpStep& step) const { return runsStacked(step) && ops::foldsInputNorm(); }

void RoutedMlp::record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    recordRouting(ctx, rec, step);
    recordExperts(ctx, rec, step);
}

void RoutedMlp::recordRouting(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    if (!step.state) throw Error("internal: a routed MLP records with its session state");
    auto& st = dynamic_cast<RoutedState&>(*step.state);
    const uint32_t n = step.nTokens, E = expertCount(), H = base_->up().cols;
    const ops::Act in{step.input, 0, H};

    // Gate logits, then routing on the device.
    const ops::InputNorm* norm = step.inputNorm.weight ? &step.inputNorm : nullptr;
    ops::matmul(ctx, rec, gate_, in, {&st.logits, 0, E}, n, {.bias = gateBias_.valid() ? &gateBias_ : nullptr, .norm = norm});
    rec.barrier();
    ops::RouteParams rp = st.params;
    rp.topK = routing_.topK;
    rp.mode = routing_.mode;
    rp.decay = routing_.halflife > 0 ? float(std::exp2(-1.0 / routing_.halflife)) : 1.0f;
    rp.renormalise = routing_.renormalise || routing_.mode != RoutingMode::Token ? 1u : 0u;
    ops::routeTokens(ctx, rec, rp, *step.step, st.logits, st.route, st.state, st.usage);
    rec.barrier();
}

void RoutedMlp::recordExperts(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step,
                              const std::vector<uint32_t>* tokensPerSlot) const {
    if (!step.state) throw Error("internal: a routed MLP records with its session state");
    auto& st = dynamic_cast<RoutedState&>(*step.state);
    const uint32_t n = step.nTokens, E = expertCount(), H = base_->up().cols, I = base_->up().rows;
    const ops::Act in{step.input, 0, H};

    const uint32_t slots = E + 1;
    const MlpScratch& sc = step.scratch;
    // Few tokens: all chosen experts at once from the stacked projections.
    if (runsStacked(step)) {
        const ops::ExpertSlot route{&st.route, 0, slots, st.params.maxBatch};
        const ops::InputNorm* norm = step.inputNorm.weight ? &step.inputNorm : nullptr;
        std::vector<ops::StackedExperts> stacks;
        for (const ExpertStack::Group& g : stack_->groups)
            stacks.push_back({&g.gate, &g.up, &g.down, g.slotCount, g.firstSlot});
        ops::stackedExperts(ctx, rec, stacks, route, routing_.topK, in, {sc.hidden, 0, I}, {step.residual, 0, H}, n, norm,
                            step.act);
        rec.barrier();
        return;
    }
    if (step.inputNorm.weight) throw Error("internal: only the stacked experts fold the input norm");
    // Each slot computes only its own tokens: gather the inputs, scatter the
    // weighted outputs into the residual. Slots run one after the other
    // because a token's experts all add into its residual row.
    const ExpertMlp baseExpert;
    const uint32_t lastSlot = routing_.baseSlot ? E : E - 1;
    for (uint32_t s = 0; s <= lastSlot; ++s) {
        if (s < E && !isResident(s)) continue;
        if (tokensPerSlot && s < tokensPerSlot->size() && (*tokensPerSlot)[s] == 0) continue;
        const ExpertMlp& x = s < E ? experts_[s] : baseExpert;
        const DeviceMatrix& gate = x.gate.rows ? x.gate : base_->gate();
        const DeviceMatrix& up = x.up.rows ? x.up : base_->up();
        const DeviceMatrix& down = x.down.rows ? x.down : base_->down();
        const ops::ExpertSlot gather{&st.route, s, slots, st.params.maxBatch, true, false};
        const ops::ExpertSlot scatter{&st.route, s, slots, st.params.maxBatch, false, true};
        const ops::Act h{sc.hidden, 0, I};
        const bool gateUpLora = x.loraGate || x.loraUp;
        // An ungated expert's biases: its own (fine-tuned), else the base's.
        const vk::Buffer& upBias = x.upBias.valid() ? x.upBias : base_->upBias();
        const vk::Buffer& downBias = x.downBias.valid() ? x.downBias : base_->downBias();
        const vk::Buffer* downBiasOrNull = downBias.valid() ? &downBias : nullptr;
        if (!base_->gated()) {
            // up -> act -> down (Phi-2): the up projection (plus its LoRA delta) into h, activated in place.
            ops::matmul(ctx, rec, up, in, h, n, {.bias = upBias.valid() ? &upBias : nullptr, .expert = &gather});
            if (x.loraUp) {
                const uint32_t r = loraRank_;
                ops::matmul(ctx, rec, x.loraUp->a, in, {&st.loraUp, 0, r}, n, {.expert = &gather});
                rec.barrier();
                ops::matmul(ctx, rec, x.loraUp->b, {&st.loraUp, 0, r}, h, n, {.accumulate = true});
            }
            rec.barrier();
            ops::activate(ctx, rec, *sc.hidden, n * I, step.act);
        } else if (!gateUpLora) {
            ops::matmulGated(ctx, rec, gate, up, in, h, n, {.expert = &gather, .act = step.act});
        } else {
            ops::matmul(ctx, rec, gate, in, {sc.gate, 0, I}, n, {.expert = &gather});
            ops::matmul(ctx, rec, up, in, {sc.up, 0, I}, n, {.expert = &gather});
            const uint32_t r = loraRank_;
            if (x.loraGate)
                ops::matmul(ctx, rec, x.loraGate->a, in, {&st.loraGate, 0, r}, n, {.expert = &gather});
            if (x.loraUp)
                ops::matmul(ctx, rec, x.loraUp->a, in, {&st.loraUp, 0, r}, n, {.expert = &gather});
            if (gateUpLora) {
                rec.barrier();
                if (x.loraGate)
                    ops::matmul(ctx, rec, x.loraGate->b, {&st.loraGate, 0, r}, {sc.gate, 0, I}, n, {.accumulate = true});
                if (x.loraUp)
                    ops::matmul(ctx, rec, x.loraUp->b, {&st.loraUp, 0, r}, {sc.up, 0, I}, n, {.accumulate = true});
            }
            rec.barrier();
            ops::siluMul(ctx, rec, *sc.gate, *sc.up, *sc.hidden, n * I, step.act);
        }
        rec.barrier();
        ops::matmul(ctx, rec, down, h, {step.residual, 0, H}, n,
                    {.bias = downBiasOrNull, .accumulate = true, .expert = &scatter});
        if (x.loraDown) {
            const uint32_t r = loraRank_;
            ops::matmul(ctx, rec, x.loraDown->a, h, {&st.loraDown, 0, r}, n);
            rec.barrier();
            ops::matmul(ctx, rec, x.loraDown->b, {&st.loraDown, 0, r}, {step.residual, 0, H}, n, {.accumulate = true, .expert = &scatter});
        }
        rec.barrier();
    }
}

// ---------------------------------------------------------------- SharedExpertMoe

namespace {
struct SharedState : MlpState {
    std::unique_ptr<MlpState> routed;
    vk::Buffer gateScore; // [maxBatch] shared_gate · x
};
} // namespace

SharedExpertMoe::SharedExpertMoe(vk::Context& ctx, std::unique_ptr<RoutedMlp> routed, std::unique_ptr<DenseMlp> shared,
                                 const std::vector<float>& sharedGate)
    : routed_(std::move(routed)), shared_(std::move(shared)) {
    if (!routed_ || !shared_) throw Error("internal: a shared-expert MoE needs its routed part and its shared expert");
    const uint32_t H = routed_->base().gate().cols;
    if (shared_->gate().cols != H)
        throw Error("the shared expert's input width " + std::to_string(shared_->gate().cols) + " is not hidden " +
                    std::to_string(H));
    if (sharedGate.size() != H)
        throw Error("the shared expert gate has " + std::to_string(sharedGate.size()) + " weights for hidden " +
                    std::to_string(H));
    sharedGate_ = DeviceMatrix::fromHost(ctx, DType::F32, 1, H, sharedGate.data());
}

uint64_t SharedExpertMoe::deviceBytes() const {
    return routed_->deviceBytes() + shared_->deviceBytes() + sharedGate_.bytes();
}

uint32_t SharedExpertMoe::scratchWidth() const { return std::max(routed_->scratchWidth(), shared_->scratchWidth()); }

std::vector<uint32_t> SharedExpertMoe::expertUsage(const MlpState* state, int sequence) const {
    return state ? routed_->expertUsage(dynamic_cast<const SharedState&>(*state).routed.get(), sequence)
                 : std::vector<uint32_t>{};
}

void SharedExpertMoe::resetExpertUsage(MlpState* state, int sequence) const {
    if (state) routed_->resetExpertUsage(dynamic_cast<SharedState&>(*state).routed.get(), sequence);
}

std::unique_ptr<MlpState> SharedExpertMoe::createState(vk::Context& ctx, const MlpStateShape& shape) const {
    auto s = std::make_unique<SharedState>();
    s->routed = routed_->createState(ctx, shape);
    s->gateScore = vk::Buffer(ctx, uint64_t(shape.maxBatch) * kFloat, vk::MemoryUse::Device);
    return s;
}

MlpState& SharedExpertMoe::routedState(MlpState& state) { return *dynamic_cast<SharedState&>(state).routed; }

void SharedExpertMoe::record(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    if (!step.state) throw Error("internal: a shared-expert MoE records with its session state");
    auto& st = dynamic_cast<SharedState&>(*step.state);
    MlpStep routedStep = step;
    routedStep.state = st.routed.get();
    routed_->record(ctx, rec, routedStep); // ends with a barrier
    recordShared(ctx, rec, step);
}

void SharedExpertMoe::recordShared(vk::Context& ctx, vk::Recorder& rec, const MlpStep& step) const {
    auto& st = dynamic_cast<SharedState&>(*step.state);
    const uint32_t n = step.nTokens, H = shared_->gate().cols, I = shared_->gate().rows;
    const ops::Act in{step.input, 0, H};
    const ops::Act h{step.scratch.hidden, 0, I};
    ops::matmul(ctx, rec, sharedGate_, in, {&st.gateScore, 0, 1}, n);
    ops::matmulGated(ctx, rec, shared_->gate(), shared_->up(), in, h, n, {.act = step.act});
    rec.barrier();
    ops::sigmoidScaleRows(ctx, rec, st.gateScore, *step.scratch.hidden, n, I);
    rec.barrier();
    ops::matmul(ctx, rec, shared_->down(), h, {step.residual, 0, H}, n, {.accumulate = true});
    rec.barrier();
}

} // namespace moe
