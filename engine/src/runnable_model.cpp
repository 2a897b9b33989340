#include "moe/runnable_model.h"

#include "moe/gguf_model.h"

#include "moe/error.h"

#include <algorithm>
#include <cctype>

namespace moe {

const char* toString(ModelKind k) {
    switch (k) {
    case ModelKind::Dense: return "dense";
    case ModelKind::NativeMoe: return "native_moe";
    case ModelKind::BuiltMoe: return "built_moe";
    }
    return "?";
}

RunnableModel::~RunnableModel() = default;

std::unique_ptr<RunnableModel> RunnableModel::open(vk::Context& ctx, const std::filesystem::path& path,
                                                   const OpenOptions& options) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec) || isGgufPath(path)) return openModel(ctx, path, options);
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (ext == ".toml" || ext == ".yaml" || ext == ".yml") return openSelector(ctx, path, options);
    throw Error(path.string() + ": not a model folder, a .gguf file or a selector (.toml, .yaml, .yml)");
}

std::unique_ptr<RunnableModel> RunnableModel::openModel(vk::Context& ctx, const std::filesystem::path& dir,
                                                        const OpenOptions& options) {
    if (options.routing) throw Error("routing modes apply to built MoEs (a selector), not to " + dir.string());
    std::unique_ptr<RunnableModel> r(new RunnableModel());
    r->tokenizer_ = Tokenizer::load(dir);
    r->chatTemplate_ = ChatTemplate::fromModelDir(dir);
    r->model_ = Model::load(ctx, dir, options.progress, options.expertBudget,
                            options.quantize.value_or(QuantizeScheme::None));
    r->kind_ = r->model_->config().isMoe() ? ModelKind::NativeMoe : ModelKind::Dense;
    r->dir_ = r->source_ = dir;
    if (options.expertBudget && r->isMoe()) r->setExpertBudget(options.expertBudget);
    return r;
}

std::unique_ptr<RunnableModel> RunnableModel::openSelector(vk::Context& ctx, const std::filesystem::path& selector,
                                                           const OpenOptions& options) {
    Selector s = loadSelectorAny(selector);
    if (options.quantize) s.quantize = *options.quantize;
    auto r = fromBuilt(MoeModel::load(ctx, s, options.expertBudget, options.progress));
    r->source_ = selector;
    if (options.routing) r->setRouting(*options.routing);
    if (options.expertBudget) r->setExpertBudget(options.expertBudget);
    return r;
}

std::unique_ptr<RunnableModel> RunnableModel::fromBuilt(std::unique_ptr<MoeModel> moe) {
    if (!moe) throw Error("internal: no MoE to run");
    std::unique_ptr<RunnableModel> r(new RunnableModel());
    r->dir_ = r->source_ = moe->selector().baseModel;
    r->moe_ = std::move(moe);
    r->kind_ = ModelKind::BuiltMoe;
    return r;
}

std::optional<RoutingMode> RunnableModel::routing() const {
    if (moe_) return moe_->routing();
    if (kind_ == ModelKind::NativeMoe) return RoutingMode::Token;
    return std::nullopt;
}

void RunnableModel::setRouting(RoutingMode mode) {
    if (!moe_) throw Error("routing modes apply to built MoEs (a selector), not to " + source_.string());
    moe_->setRouting(mode);
}

std::vector<int> RunnableModel::likelihoodSlots() const {
    if (!moe_ || moe_->routing() != RoutingMode::Likelihood) return {};
    return moe_->likelihoodSlots();
}

std::vector<std::string> RunnableModel::slotNames() const {
    if (moe_) return moe_->slotNames();
    std::vector<std::string> names;
    if (kind_ == ModelKind::NativeMoe)
        for (int e = 0; e < model_->config().numExperts; ++e) names.push_back("expert " + std::to_string(e));
    return names;
}

int RunnableModel::expertsPerToken() const {
    if (moe_) return std::min(moe_->selector().topK, int(moe_->expertCount()));
    return kind_ == ModelKind::NativeMoe ? model_->config().expertsPerToken : 0;
}

int RunnableModel::expertsPerLayer() const {
    if (moe_) return int(moe_->expertCount());
    return kind_ == ModelKind::NativeMoe ? model_->config().numExperts : 0;
}

std::vector<int> RunnableModel::moeLayers() const {
    if (moe_) {
        std::vector<int> layers = moe_->layers();
        std::sort(layers.begin(), layers.end());
        return layers;
    }
    std::vector<int> layers;
    if (kind_ == ModelKind::NativeMoe)
        for (int l = 0; l < model_->config().numLayers; ++l)
            if (model_->config().isSparseLayer(l)) layers.push_back(l);
    return layers;
}

LikelihoodPick RunnableModel::forwardPrompt(Session& session, std::span<const int32_t> tokens,
                                            std::vector<float>* allLogits) {
    if (moe_) return moe_->forwardPrompt(session, tokens, allLogits);
    session.setReply(false);
    session.forward(tokens, allLogits);
    return {};
}

std::vector<LayerUsage> RunnableModel::expertUsage(const Session& session) const {
    std::vector<LayerUsage> out;
    for (auto& [layer, tokens] : session.expertUsage()) out.push_back({layer, std::move(tokens)});
    return out;
}

void RunnableModel::setExpertBudget(uint64_t bytes) {
    Model& m = model();
    if (bytes == 0) {
        if (m.expertBudget()) m.setExpertBudget(0);
        return;
    }
    if (m.pageableExpertBytes() == 0)
        throw Error(source_.string() + ": the model has no routed experts to keep under an expert budget");
    if (m.expertBudget() != bytes) m.setExpertBudget(bytes);
}

ExpertCacheFigures expertCacheFigures(Model& model, uint64_t tokens) {
    return {model.expertCacheStats(), tokens, model.pageableExpertBytes()};
}

} // namespace moe
