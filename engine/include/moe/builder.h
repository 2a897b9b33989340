#pragma once
// Building an MoE from a selector: validate, capture the base model's MLP
// inputs over the labelled prompts, train (or compute) one gate per chosen
// layer, write the gates and the loss CSV, install the routed layers and pick
// the routing mode. Also the runnable MoE itself (MoeModel) and routing
// evaluation on any labelled dataset.
#include "moe/chat_template.h"
#include "moe/gate_training.h"
#include "moe/model.h"
#include "moe/routed_mlp.h"
#include "moe/selector.h"
#include "moe/tokenizer.h"
#include "moe/validate.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace moe {

// A prompt as the model sees it, and which of its tokens are the prompt's
// own text (chat-template tokens around it are not).
struct PromptTokens {
    std::vector<int32_t> ids;
    size_t contentBegin = 0, contentEnd = 0;
};
PromptTokens tokenizePrompt(const Tokenizer& tok, const ChatTemplate& tmpl, const std::string& prompt, bool useTemplate);

// The base model's MLP input at `layers` for the content tokens of each row.
struct CaptureProgress {
    std::function<bool(size_t done, size_t total)> onPrompt; // false = cancel
};
GateSamples captureSamples(Session& session, const Tokenizer& tok, const ChatTemplate& tmpl,
                           const std::vector<DatasetRow>& rows, const std::vector<int>& layers, bool useTemplate,
                           const CaptureProgress& progress = {});

// Splits rows into training and validation, per label, with the seed.
void splitRows(const std::vector<DatasetRow>& rows, double validationFraction, uint64_t seed,
               std::vector<DatasetRow>& train, std::vector<DatasetRow>& validation);

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
    static std::unique_ptr<MoeModel> load(vk::Context& ctx, const Selector& s, const SelectionFacts& facts,
                                          const std::vector<GateWeights>& gates, std::unique_ptr<Model> base = nullptr,
                                          uint64_t expertBudget = 0);
    // Loads gates from gatesFile(s); throws when the MoE was not built yet.
    static std::unique_ptr<MoeModel> load(vk::Context& ctx, const Selector& s, uint64_t expertBudget = 0);

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

// Forwards a prompt or user turn in the MoE's routing mode: likelihood
// routing picks (and pins) an expert for it first; the others just forward.
// Returns the pick (slot -1 when the mode is not likelihood).
struct TurnRouting {
    int slot = -1;
    std::vector<int> candidates;
    std::vector<double> loss;
};
TurnRouting forwardPrompt(MoeModel& moe, Session& session, std::span<const int32_t> tokens,
                          std::vector<float>* allLogits = nullptr);

// Generation's prefill hook (GenerateOptions::prefill) that forwards each
// prompt with forwardPrompt; `pick`, when given, receives the turn's routing.
// The hook refers to `moe`, which must outlive it.
std::function<std::span<const float>(Session&, std::span<const int32_t>)> routedPrefill(MoeModel& moe,
                                                                                       TurnRouting* pick = nullptr);

// Tokens each slot (the experts, then the base slot) received per MoE layer of
// `session` since the last reset, in moe.layers() order. Each routed token
// counts once per expert it went to (top_k times, one time when pinned).
std::vector<std::vector<uint32_t>> expertUsage(const MoeModel& moe, const Session& session);
void resetExpertUsage(const MoeModel& moe, Session& session);

struct LayerAccuracy {
    int layer = 0;
    float token = 0, prompt = 0;
    std::vector<std::vector<int>> confusion; // [label][predicted], per prompt
};

struct BuildProgress {
    std::string stage;   // "validate", "capture", "train", "gates", "routing", "experts"
    size_t done = 0, total = 0;
    const GateTrainProgress* training = nullptr; // during "train"
};

struct BuildReport {
    std::vector<LayerAccuracy> layers; // validation accuracy per layer (token routing)
    RoutingMode routing = RoutingMode::Token;
    bool routingChosen = false;                     // picked on the validation prompts
    std::map<std::string, double> validationLoss;   // per routing mode: next-token loss on validation prompts
    std::filesystem::path gates, lossCsv;
    std::vector<LossRow> history;
    size_t captureTokens = 0;
    double captureSeconds = 0, trainSeconds = 0, seconds = 0;
    int trainSteps = 0;
    bool cancelled = false;
    std::vector<std::string> warnings;
    uint64_t expertBytes = 0;
};

struct BuildResult {
    BuildReport report;
    std::unique_ptr<MoeModel> moe; // null when cancelled
};

BuildResult buildMoe(vk::Context& ctx, const Selector& s, const std::function<void(const BuildProgress&)>& onProgress = {},
                     const std::atomic<bool>* cancel = nullptr);

// Routing accuracy of gates on a labelled dataset, on the base model's
// captured MLP inputs, in `mode` (token, running: mean of the probabilities
// so far; sequence and likelihood are judged per prompt like running).
std::vector<LayerAccuracy> evaluateRouting(Session& baseSession, const Tokenizer& tok, const ChatTemplate& tmpl,
                                           const std::vector<DatasetRow>& rows, const std::vector<int>& layers,
                                           const std::vector<GateWeights>& gates, uint32_t nExperts, RoutingMode mode,
                                           double halflife, bool useTemplate);

} // namespace moe
