#include "moe/moe_model.h"

#include "moe/error.h"
#include "moe/expert_loader.h"
#include "moe/gguf_model.h"
#include "moe/routed_mlp.h"

#include <algorithm>
#include <map>

namespace moe {
namespace {

// A layer's routing for the MoE's mode.
RoutingOptions routingOptions(const Selector& s, RoutingMode mode) {
    RoutingOptions o;
    o.topK = uint32_t(std::max(1, s.topK));
    o.halflife = float(s.routingHalflife);
    o.mode = mode;
    if (mode == RoutingMode::Likelihood) {
        // A pinned candidate decides; unpinned tokens route as running.
        o.mode = RoutingMode::Running;
        o.baseSlot = !s.includeBase;
    }
    return o;
}

} // namespace

std::filesystem::path gatesFolder(const Selector& s) {
    if (!s.gateModelId.empty()) return s.gateModelId;
    std::filesystem::path base = s.file.empty() ? std::filesystem::current_path() / "moe" : s.file;
    return base.parent_path() / (base.stem().string() + ".gates");
}

std::filesystem::path gatesFile(const Selector& s) { return gatesFolder(s) / "gate.safetensors"; }


std::unique_ptr<MoeModel> MoeModel::load(vk::Context& ctx, const Selector& s, const SelectionFacts& facts,
                                         const std::vector<GateWeights>& gates, std::unique_ptr<Model> base,
                                         uint64_t expertBudget, const LoadProgress& progress) {
    progress.throwIfCancelled();
    std::unique_ptr<MoeModel> m(new MoeModel());
    m->selector_ = s;
    m->facts_ = facts;
    m->gates_ = gates;
    if (s.quantize != QuantizeScheme::None && expertBudget > 0)
        throw Error("quantize and an expert budget do not go together yet (a paged expert uploads again from its "
                    "file; use quantized GGUF experts instead)");
    m->model_ = base ? std::move(base) : Model::load(ctx, s.baseModel, progress, 0, s.quantize);
    m->tokenizer_ = Tokenizer::load(s.baseModel);
    m->chatTemplate_ = ChatTemplate::fromModelDir(s.baseModel);
    if (gates.size() != facts.layers.size())
        throw Error("internal: " + std::to_string(gates.size()) + " gates for " + std::to_string(facts.layers.size()) +
                    " layers");
    const ModelConfig& c = facts.base;
    MlpNaming naming{s.prefix, s.mlp};
    // Shared with the experts: under a memory budget they upload from these mappings again.
    std::vector<std::shared_ptr<const WeightStore>> stores;
    for (const auto& e : facts.experts) stores.push_back(openModelWeights(e.dir));
    m->routing_ = s.routing.value_or(RoutingMode::Token);
    const RoutingOptions routing = routingOptions(s, m->routing_);
    for (size_t li = 0; li < facts.layers.size(); ++li) {
        const int layer = facts.layers[li];
        std::vector<ExpertMlp> experts;
        if (s.includeBase) experts.emplace_back();
        for (size_t e = 0; e < facts.experts.size(); ++e) {
            progress.throwIfCancelled();
            const ExpertFacts& f = facts.experts[e];
            ExpertSource src{f.dir, f.type == ExpertType::LoraAdapter, f.loraRank, f.loraAlpha, f.loraTargets};
            const ExpertShape shape{c.hiddenSize, c.intermediateSize, c.gatedMlp, c.mlpBias};
            experts.push_back(loadExpertLayer(ctx, *stores[e], src, m->model_->weights(), naming, layer, shape,
                                              s.mergeLora, expertBudget > 0, s.quantize, c.numLayers));
            experts.back().mappedWeights = stores[e];
        }
        std::unique_ptr<MlpBlock> old = m->model_->takeMlp(layer);
        std::unique_ptr<DenseMlp> base(dynamic_cast<DenseMlp*>(old.get()));
        if (!base) throw Error("layer " + std::to_string(layer) + " is already an MoE layer");
        old.release();
        m->model_->setMlp(layer, std::make_unique<RoutedMlp>(ctx, std::move(base), std::move(experts),
                                                             gates[li].weight, gates[li].bias, routing));
    }
    if (expertBudget > 0) m->model_->setExpertBudget(expertBudget);
    return m;
}

std::unique_ptr<MoeModel> MoeModel::load(vk::Context& ctx, const Selector& s, uint64_t expertBudget,
                                         const LoadProgress& progress) {
    SelectionFacts facts = validateSelection(s, progress.cancel);
    const auto file = gatesFile(s);
    if (!std::filesystem::exists(file))
        throw Error(file.string() + ": no gates here; build the MoE first (moe-cli build " +
                    (s.file.empty() ? std::string("SELECTOR") : s.file.string()) + ")");
    std::map<std::string, std::string> meta;
    auto gates = loadGates(file, facts.layers, uint32_t(facts.nExperts), uint32_t(facts.base.hiddenSize), &meta);
    Selector sel = s;
    if (!sel.routing)
        if (auto it = meta.find("routing"); it != meta.end()) {
            RoutingMode m;
            if (parseRoutingMode(it->second, m)) sel.routing = m;
        }
    return load(ctx, sel, facts, gates, nullptr, expertBudget, progress);
}

std::vector<std::string> MoeModel::slotNames() const {
    std::vector<std::string> names;
    if (selector_.includeBase) names.push_back("base");
    for (const auto& e : facts_.experts) names.push_back(e.dir.filename().string());
    names.push_back("base");
    return names;
}

void MoeModel::setRouting(RoutingMode mode) {
    routing_ = mode;
    const RoutingOptions o = routingOptions(selector_, mode);
    for (int l : facts_.layers) dynamic_cast<RoutedMlp&>(model_->mlp(l)).setRouting(o);
    model_->invalidate();
}

std::vector<int> MoeModel::likelihoodSlots() const {
    std::vector<int> slots;
    for (int e = 0; e < facts_.nExperts; ++e) slots.push_back(e);
    if (!selector_.includeBase) slots.push_back(facts_.nExperts); // the base slot
    return slots;
}

uint64_t MoeModel::expertBytes() const {
    uint64_t n = 0;
    for (int l : facts_.layers) n += dynamic_cast<const RoutedMlp&>(model_->mlp(l)).addedBytes();
    return n;
}

LikelihoodPick MoeModel::forwardPrompt(Session& session, std::span<const int32_t> tokens,
                                      std::vector<float>* allLogits) {
    session.setReply(false);
    if (routing_ == RoutingMode::Likelihood) return forwardWithLikelihood(session, tokens, likelihoodSlots(), allLogits);
    session.setPinnedSlot(-1);
    session.forward(tokens, allLogits);
    return {};
}

} // namespace moe
