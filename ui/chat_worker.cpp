#include "chat_worker.h"

#include "moe/mergekit.h"
#include "moe/builder.h"

#include "moe/chat_prompt.h"
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/generate.h"
#include "moe/model.h"
#include "moe/tokenizer.h"
#include "moe/vk.h"

#include <QElapsedTimer>
#include <QFileInfo>

#include <algorithm>

namespace moe::ui {

BuiltMoe::~BuiltMoe() { moe.reset(); }

ChatWorker::ChatWorker(QObject* parent) : QObject(parent) {}

moe::Model& ChatWorker::model() const { return moe_ ? moe_->moe->model() : *model_; }
const moe::Tokenizer& ChatWorker::tokenizer() const { return moe_ ? moe_->moe->tokenizer() : *tokenizer_; }
const moe::ChatTemplate& ChatWorker::chatTemplate() const { return moe_ ? moe_->moe->chatTemplate() : *template_; }

namespace {
QVector<QVector<int>> toQt(const std::vector<std::vector<uint32_t>>& usage) {
    QVector<QVector<int>> out;
    for (const auto& layer : usage) {
        QVector<int> row;
        for (uint32_t n : layer) row.push_back(int(n));
        out.push_back(row);
    }
    return out;
}
} // namespace

// The session and model hold device buffers: release them before the context.
ChatWorker::~ChatWorker() { unloadModel(); }

void ChatWorker::unloadModel() {
    session_.reset();
    moe_.reset();
    model_.reset();
    tokenizer_.reset();
    template_.reset();
    cached_.clear();
    modelPath_.clear();
}

quint64 ChatWorker::applyExpertBudget() {
    if (!session_) return 0;
    moe::Model& m = model();
    if (m.pageableExpertBytes() == 0) return 0; // a dense model: nothing to page
    if (m.expertBudget() != expertBudget_) m.setExpertBudget(expertBudget_);
    return m.expertBudget();
}

void ChatWorker::setExpertBudget(quint64 bytes) {
    expertBudget_ = bytes;
    emit expertBudgetApplied(applyExpertBudget());
}

void ChatWorker::loadModel(const QString& path) {
    emit modelLoading(path);
    unloadModel();
    QElapsedTimer timer;
    timer.start();
    try {
        if (!context_) context_ = std::make_shared<moe::vk::Context>();
        const std::filesystem::path file = path.toStdString();
        if (path.endsWith(QStringLiteral(".toml"), Qt::CaseInsensitive)) {
            auto built = std::make_shared<BuiltMoe>();
            built->context = context_;
            // Under the budget from the start: the device never holds every expert.
            built->moe = moe::MoeModel::load(*context_, moe::loadSelectorAny(file), expertBudget_);
            built->name = QFileInfo(path).completeBaseName();
            session_ = std::make_unique<moe::Session>(built->moe->model());
            moe_ = std::move(built);
        } else {
            auto tokenizer = moe::Tokenizer::load(file);
            auto chatTemplate = std::make_unique<moe::ChatTemplate>(moe::ChatTemplate::fromModelDir(file));
            auto model = moe::Model::load(*context_, file, {}, expertBudget_);
            session_ = std::make_unique<moe::Session>(*model);
            model_ = std::move(model);
            tokenizer_ = std::move(tokenizer);
            template_ = std::move(chatTemplate);
        }
        finishLoad(path, moe_ ? moe_->name : QFileInfo(path).fileName(), timer.elapsed() / 1000.0);
    } catch (const std::exception& e) {
        unloadModel();
        emit modelLoadFailed(path, QString::fromStdString(e.what()));
    }
}

void ChatWorker::useBuiltMoe(std::shared_ptr<BuiltMoe> built) {
    const QString path = QStringLiteral("moe:%1").arg(built ? built->name : QString());
    emit modelLoading(path);
    unloadModel();
    if (!built || !built->moe) {
        emit modelLoadFailed(path, tr("The MoE was not built (cancelled or failed)."));
        return;
    }
    try {
        session_ = std::make_unique<moe::Session>(built->moe->model());
        moe_ = std::move(built);
        finishLoad(path, moe_->name, 0);
    } catch (const std::exception& e) {
        unloadModel();
        emit modelLoadFailed(path, QString::fromStdString(e.what()));
    }
}

void ChatWorker::finishLoad(const QString& path, const QString& name, double seconds) {
    modelPath_ = path;
    moe::Model& m = model();
    LoadedModelInfo info;
    info.path = path;
    info.name = name;
    info.architecture = QString::fromStdString(m.config().architecture);
    info.device = QString::fromStdString((moe_ ? *moe_->context : *context_).info().name);
    info.parameters = qint64(m.parameterCount());
    info.layers = m.config().numLayers;
    info.contextLength = int(session_->maxContext());
    info.chatTemplate = !chatTemplate().isFallback();
    info.loadSeconds = seconds;
    info.expertBudget = applyExpertBudget();
    info.expertBytes = model().pageableExpertBytes();
    if (moe_) {
        const moe::MoeModel& mm = *moe_->moe;
        for (int l : mm.layers()) info.moeLayers.push_back(l);
        info.expertsPerLayer = int(mm.expertCount());
        for (const auto& n : mm.slotNames()) info.expertNames.push_back(QString::fromStdString(n));
        info.routing = QString::fromLatin1(moe::toString(mm.routing()));
        info.topK = std::min(mm.selector().topK, int(mm.expertCount()));
        info.architecture += tr(" + MoE (%1 experts, top-%2)").arg(info.expertsPerLayer).arg(info.topK);
    }
    emit modelLoaded(info);
}

void ChatWorker::generateReply(quint64 requestId, const QVector<ChatTurn>& conversation,
                               const GenerationSettings& settings) {
    stop_.store(false);
    if (!session_) {
        emit replyFailed(requestId, tr("No model is loaded."));
        return;
    }
    QElapsedTimer timer;
    timer.start();
    try {
        std::vector<moe::ChatMessage> messages;
        for (const ChatTurn& t : conversation) messages.push_back({t.role.toStdString(), t.content.toStdString()});

        // Leave room for the reply; drop the oldest exchanges (never the
        // system prompt or the last message) until the prompt fits.
        const int contextLength = int(session_->maxContext());
        const int maxTokens = std::clamp(settings.maxTokens, 1, std::max(1, contextLength - 8));
        ReplyStats stats;
        std::vector<int32_t> tokens = moe::encodeChat(chatTemplate(), tokenizer(), messages);
        const size_t firstDroppable = !messages.empty() && messages.front().role == "system" ? 1 : 0;
        while (int(tokens.size()) + maxTokens > contextLength && messages.size() > firstDroppable + 1) {
            messages.erase(messages.begin() + long(firstDroppable));
            // Templates such as Llama-2's insist on user/assistant alternation starting with user.
            if (messages.size() > firstDroppable + 1 && messages[firstDroppable].role == "assistant")
                messages.erase(messages.begin() + long(firstDroppable));
            stats.droppedMessages = int(conversation.size() - messages.size());
            tokens = moe::encodeChat(chatTemplate(), tokenizer(), messages);
        }
        if (int(tokens.size()) >= contextLength)
            throw moe::Error("the message is " + std::to_string(tokens.size()) + " tokens long; the model's context holds " +
                             std::to_string(contextLength));

        // Reuse the KV cache for the common prefix; at least one token is
        // forwarded so that the last position's logits are fresh.
        size_t reuse = 0;
        const size_t limit = std::min<size_t>(cached_.size(), session_->position());
        while (reuse < limit && reuse < tokens.size() && cached_[reuse] == tokens[reuse]) ++reuse;
        if (reuse == tokens.size()) --reuse;
        session_->truncate(uint32_t(reuse));
        cached_.resize(reuse);
        stats.promptTokens = int(tokens.size());
        stats.reusedTokens = int(reuse);

        moe::GenerateOptions options;
        options.maxTokens = std::min(maxTokens, contextLength - int(tokens.size()));
        options.sampling.temperature = float(settings.temperature);
        options.sampling.topP = float(settings.topP);
        options.sampling.topK = settings.topK;
        options.sampling.presencePenalty = float(settings.presencePenalty);
        options.sampling.repetitionPenalty = float(settings.repetitionPenalty);
        options.sampling.seed = settings.seed;

        const std::vector<int32_t> prompt(tokens.begin() + long(reuse), tokens.end());
        model().resetExpertCacheStats(); // this reply's figures
        moe::TurnRouting pick;
        if (moe_) {
            // Route the prompt the MoE's way, then count only the reply's tokens.
            auto prefill = moe::routedPrefill(*moe_->moe, &pick);
            options.prefill = [this, prefill](moe::Session& s, std::span<const int32_t> t) {
                auto logits = prefill(s, t);
                moe::resetExpertUsage(*moe_->moe, s);
                return logits;
            };
        }
        bool first = true;
        QElapsedTimer sinceUsage;
        sinceUsage.start();
        auto result = moe::generate(*session_, tokenizer(), prompt, options, [&](const std::string& piece) {
            if (piece.empty()) return !stop_.load();
            if (first) {
                stats.secondsToFirstToken = timer.nsecsElapsed() / 1e9;
                first = false;
            }
            emit replyChunk(requestId, QString::fromStdString(piece));
            // A few small readbacks per second keep the usage chart live.
            if (moe_ && sinceUsage.elapsed() >= 100) {
                emit expertUsageUpdated(requestId, toQt(moe::expertUsage(*moe_->moe, *session_)));
                sinceUsage.restart();
            }
            return !stop_.load();
        });
        if (moe_) {
            stats.expertUsage = toQt(moe::expertUsage(*moe_->moe, *session_));
            stats.routedTokens = result.decodeSteps;
            if (pick.slot >= 0) {
                const auto names = moe_->moe->slotNames();
                stats.likelihoodPick = QString::fromStdString(names.at(size_t(pick.slot)));
                const std::vector<int>& candidates = pick.candidates;
                for (size_t i = 0; i < candidates.size(); ++i) {
                    stats.likelihoodSlots.push_back(QString::fromStdString(names.at(size_t(candidates[i]))));
                    stats.likelihoodLoss.push_back(pick.loss[i]);
                }
            }
        }
        if (const uint64_t budget = model().expertBudget()) {
            const moe::ExpertCacheStats c = model().expertCacheStats();
            ExpertCacheFigures& f = stats.expertCache;
            f.budgetBytes = budget;
            f.hits = c.hits;
            f.misses = c.misses;
            f.evictions = c.evictions;
            f.bytesUploaded = c.bytesUploaded;
            f.tokens = int(prompt.size()) + result.decodeSteps;
        }
        cached_ = tokens;
        cached_.insert(cached_.end(), result.tokens.begin(), result.tokens.end());
        cached_.resize(std::min<size_t>(cached_.size(), session_->position()));

        stats.generatedTokens = int(result.tokens.size());
        stats.tokensPerSecond = result.decodeTokensPerSecond();
        stats.stopReason = QString::fromStdString(result.stopReason);
        if (first) stats.secondsToFirstToken = timer.nsecsElapsed() / 1e9;
        emit replyFinished(requestId, stats);
    } catch (const std::exception& e) {
        // The session may hold a half-forwarded batch: start the next request from scratch.
        session_->reset();
        cached_.clear();
        emit replyFailed(requestId, QString::fromStdString(e.what()));
    }
}

} // namespace moe::ui
