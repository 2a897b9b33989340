#pragma once
// A built MoE, ready to generate or score: the base model with routed layers
// (its experts' chosen layers and the trained or computed gates) installed,
// its tokenizer and chat template, and its routing mode.
#include "moe/chat_template.h"
#include "moe/gate_training.h"
#include "moe/routing.h"
#include "moe/scoring.h"
#include "moe/selector.h"
#include "moe/session.h"
#include "moe/tokenizer.h"
#include "moe/validate.h"

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace moe {

// Where a selector's gates live: gate_model_id, else "<selector stem>.gates/" beside it.
std::filesystem::path gatesFolder(const Selector& s);
std::filesystem::path gatesFile(const Selector& s);

// A base model with routed layers installed, ready to generate or score.
class MoeModel {
public:
    // Loads the base, the chosen layers of every expert and the gates.
    // `base`: the dense base model when the caller has it loaded already
    // (the build's capture model), else it is loaded from the selector.
    // `expertBudget` > 0: the MoE runs under that expert budget from the
    // start (Model::setExpertBudget), fine-tuned experts mapped, not uploaded.
    // `progress`: the base's tensors tick; its cancel flag is also polled
    // before every expert layer (moe::Cancelled).
    static std::unique_ptr<MoeModel> load(vk::Context& ctx, const Selector& s, const SelectionFacts& facts,
                                          const std::vector<GateWeights>& gates, std::unique_ptr<Model> base = nullptr,
                                          uint64_t expertBudget = 0, const LoadProgress& progress = {});
    // Loads gates from gatesFile(s); throws when the MoE was not built yet.
    static std::unique_ptr<MoeModel> load(vk::Context& ctx, const Selector& s, uint64_t expertBudget = 0,
                                          const LoadProgress& progress = {});

    Model& model() { return *model_; }
    const Model& model() const { return *model_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const ChatTemplate& chatTemplate() const { return chatTemplate_; }
    const Selector& selector() const { return selector_; }
    const SelectionFacts& facts() const { return facts_; }
    const std::vector<int>& layers() const { return facts_.layers; }
    const std::vector<GateWeights>& gates() const { return gates_; }
    uint32_t expertCount() const { return uint32_t(facts_.nExperts); }
    // Slot names: the experts (the base first when include_base), then "base".
    std::vector<std::string> slotNames() const;

    RoutingMode routing() const { return routing_; }
    void setRouting(RoutingMode mode);
    // Likelihood routing's candidates: every expert slot, plus the base slot
    // unless the base is already expert 0.
    std::vector<int> likelihoodSlots() const;
    // Forwards a prompt or user turn in the MoE's routing mode: likelihood
    // routing picks (and pins) an expert for it first; the other modes just
    // forward. Returns the pick (slot -1 when the mode is not likelihood).
    LikelihoodPick forwardPrompt(Session& session, std::span<const int32_t> tokens,
                                 std::vector<float>* allLogits = nullptr);
    uint64_t expertBytes() const;

private:
    MoeModel() = default;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tokenizer_;
    ChatTemplate chatTemplate_;
    Selector selector_;
    SelectionFacts facts_;
    std::vector<GateWeights> gates_;
    RoutingMode routing_ = RoutingMode::Token;
};

} // namespace moe
