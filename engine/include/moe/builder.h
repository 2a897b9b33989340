#pragma once
// Building an MoE from a selector: validate, capture the base model's MLP
// inputs over the labelled prompts, train (or compute) one gate per chosen
// layer, write the gates and the loss CSV, install the routed layers and pick
// the routing mode; routing evaluation on any labelled dataset. The MoE that
// results is a MoeModel (moe_model.h).
#include "moe/chat_template.h"
#include "moe/moe_model.h"
#include "moe/gate_training.h"
#include "moe/session.h"
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

// `cancel` stops the build at its next check; set during training, the
// gates trained so far are saved (beside the last complete ones) and still
// installed, as the user asked for them. `abandon` (the app closing) stops
// that install too: the gates are saved, no MoE is returned. Either way the
// report says cancelled.
BuildResult buildMoe(vk::Context& ctx, const Selector& s, const std::function<void(const BuildProgress&)>& onProgress = {},
                     const std::atomic<bool>* cancel = nullptr, const std::atomic<bool>* abandon = nullptr);

// Routing accuracy of gates on a labelled dataset, on the base model's
// captured MLP inputs, in `mode` (token, running: mean of the probabilities
// so far; sequence and likelihood are judged per prompt like running).
std::vector<LayerAccuracy> evaluateRouting(Session& baseSession, const Tokenizer& tok, const ChatTemplate& tmpl,
                                           const std::vector<DatasetRow>& rows, const std::vector<int>& layers,
                                           const std::vector<GateWeights>& gates, uint32_t nExperts, RoutingMode mode,
                                           double halflife, bool useTemplate);

} // namespace moe
