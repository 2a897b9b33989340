#pragma once
// What the CLI, the app's chat and the server run: a dense model, a native
// MoE checkpoint or a built MoE (a selector with its gates), with its
// tokenizer, chat template and way of routing a prompt. One type, so that
// every front end opens, routes and reports models the same way.
#include "moe/chat_template.h"
#include "moe/expert_cache.h"
#include "moe/moe_model.h"
#include "moe/routing.h"
#include "moe/scoring.h"
#include "moe/session.h"
#include "moe/tokenizer.h"
#include "moe/vk.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace moe {

enum class ModelKind { Dense, NativeMoe, BuiltMoe };
const char* toString(ModelKind); // "dense", "native_moe", "built_moe"

struct OpenOptions {
    // Keep at most this many bytes of expert weights on the device (0 = all
    // resident). A MoE loads under it: experts are mapped, not uploaded. A
    // dense model has nothing to page and ignores it.
    uint64_t expertBudget = 0;
    std::optional<RoutingMode> routing; // built MoEs: overrides the selector's
    LoadProgress progress;
    // Quantize 16/32-bit weights on load (base and fine-tuned experts); for a
    // built MoE it overrides the selector's `quantize`.
    std::optional<QuantizeScheme> quantize;
};

// Tokens each expert slot received in one MoE layer.
struct LayerUsage {
    int layer = 0;
    std::vector<uint32_t> tokens;
};

// The expert cache's counts over some forwarded tokens (budget 0: no budget).
struct ExpertCacheFigures {
    ExpertCacheStats stats;
    uint64_t tokens = 0;        // tokens forwarded while counting
    uint64_t pageableBytes = 0; // every routed expert's own weights
    double hitRate() const {
        const uint64_t uses = stats.hits + stats.misses;
        return uses ? double(stats.hits) / double(uses) : 0.0;
    }
    double perToken(uint64_t count) const { return tokens ? double(count) / double(tokens) : 0.0; }
};
// The figures of `model`'s expert cache now, over `tokens` forwarded tokens.
ExpertCacheFigures expertCacheFigures(Model& model, uint64_t tokens);

class RunnableModel {
public:
    // A model folder, or a selector file (.toml, .yaml, .yml) of a built MoE.
    static std::unique_ptr<RunnableModel> open(vk::Context& ctx, const std::filesystem::path& path,
                                               const OpenOptions& options = {});
    static std::unique_ptr<RunnableModel> openModel(vk::Context& ctx, const std::filesystem::path& dir,
                                                    const OpenOptions& options = {});
    static std::unique_ptr<RunnableModel> openSelector(vk::Context& ctx, const std::filesystem::path& selector,
                                                       const OpenOptions& options = {});
    // A MoE built in this process (no reload).
    static std::unique_ptr<RunnableModel> fromBuilt(std::unique_ptr<MoeModel> moe);
    ~RunnableModel();

    ModelKind kind() const { return kind_; }
    bool isMoe() const { return kind_ != ModelKind::Dense; }
    Model& model() { return moe_ ? moe_->model() : *model_; }
    const Model& model() const { return moe_ ? moe_->model() : *model_; }
    const Tokenizer& tokenizer() const { return moe_ ? moe_->tokenizer() : *tokenizer_; }
    const ChatTemplate& chatTemplate() const { return moe_ ? moe_->chatTemplate() : chatTemplate_; }
    // The model folder whose config, tokenizer and template it uses (a built MoE's base).
    const std::filesystem::path& modelDir() const { return dir_; }
    // What was opened: the folder, or the selector file.
    const std::filesystem::path& source() const { return source_; }
    MoeModel* builtMoe() { return moe_.get(); }
    const MoeModel* builtMoe() const { return moe_.get(); }

    // Built MoEs route prompts in a mode (token, running, sequence, likelihood);
    // native MoEs always route per token.
    std::optional<RoutingMode> routing() const;
    void setRouting(RoutingMode mode); // throws unless a built MoE
    // Likelihood routing's candidate slots (empty unless a built MoE in that mode).
    std::vector<int> likelihoodSlots() const;
    // Names of the slots of a MoE layer's usage row: a built MoE's experts and
    // base slot, a native MoE's "expert 0".. (empty for a dense model).
    std::vector<std::string> slotNames() const;
    // Top-k and experts per MoE layer (0 for a dense model).
    int expertsPerToken() const;
    int expertsPerLayer() const;
    // Layers with routed experts, ascending.
    std::vector<int> moeLayers() const;

    // Forwards a prompt the model's way: a built MoE in likelihood mode picks
    // and pins an expert first (returned; slot -1 otherwise).
    LikelihoodPick forwardPrompt(Session& session, std::span<const int32_t> tokens,
                                 std::vector<float>* allLogits = nullptr);
    // Tokens each slot received per MoE layer of `session` since the last reset.
    std::vector<LayerUsage> expertUsage(const Session& session) const;

    // Experts under a device memory budget (0 = every expert resident).
    // Throws when the model has no routed experts to page.
    void setExpertBudget(uint64_t bytes);
    ExpertCacheFigures expertCache(uint64_t tokens) { return expertCacheFigures(model(), tokens); }

private:
    RunnableModel() = default;
    ModelKind kind_ = ModelKind::Dense;
    std::unique_ptr<Model> model_; // dense and native MoE
    std::unique_ptr<Tokenizer> tokenizer_;
    ChatTemplate chatTemplate_;
    std::unique_ptr<MoeModel> moe_; // built MoE
    std::filesystem::path dir_, source_;
};

} // namespace moe
