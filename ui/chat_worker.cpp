#include "chat_worker.h"

#include "moe/chat_session.h"
#include "moe/error.h"
#include "moe/runnable_model.h"
#include "moe/vk.h"

#include <QElapsedTimer>
#include <QFileInfo>

#include <algorithm>

namespace moe::ui {

BuiltMoe::~BuiltMoe() { model.reset(); }

ChatWorker::ChatWorker(QObject* parent) : QObject(parent) {}

namespace {
// usage[layer][slot], in the order of the MoE's layers.
QVector<QVector<int>> toQt(const std::vector<moe::LayerUsage>& usage) {
    QVector<QVector<int>> out;
    for (const auto& layer : usage) {
        QVector<int> row;
        for (uint32_t n : layer.tokens) row.push_back(int(n));
        out.push_back(row);
    }
    return out;
}
} // namespace

// The session and model hold device buffers: release them before the context.
ChatWorker::~ChatWorker() { unloadModel(); }

void ChatWorker::unloadModel() {
    chat_.reset();
    model_ = nullptr;
    owned_.reset();
    built_.reset();
    modelPath_.clear();
}

quint64 ChatWorker::applyExpertBudget() {
    if (!model_) return 0;
    moe::Model& m = model_->model();
    if (m.pageableExpertBytes() == 0) return 0; // a dense model: nothing to page
    model_->setExpertBudget(expertBudget_);
    return m.expertBudget();
}

void ChatWorker::setExpertBudget(quint64 bytes) {
    expertBudget_ = bytes;
    emit expertBudgetApplied(applyExpertBudget());
}

moe::OpenOptions ChatWorker::openOptions() const {
    moe::OpenOptions options;
    // Under the budget from the start: the device never holds every expert.
    options.expertBudget = expertBudget_;
    options.quantize = quantize_;
    return options;
}

void ChatWorker::loadModel(const QString& path, quint64 ticket) {
    emit modelLoading(path);
    unloadModel();
    QElapsedTimer timer;
    timer.start();
    try {
        // Cleared before the ticket is read, so a cancel racing with this load still sets it.
        loadCancel_.store(false);
        if (ticket && loadsCancelled_.load() >= ticket) loadCancel_.store(true);
        moe::throwIfCancelled(&loadCancel_, "loading " + path.toStdString());
        if (!context_) context_ = std::make_shared<moe::vk::Context>();
        const std::filesystem::path file = path.toStdString();
        moe::OpenOptions options = openOptions();
        options.progress.cancel = &loadCancel_;
        if (path.endsWith(QStringLiteral(".toml"), Qt::CaseInsensitive))
            owned_ = moe::RunnableModel::openSelector(*context_, file, options);
        else
            owned_ = moe::RunnableModel::openModel(*context_, file, options);
        model_ = owned_.get();
        chat_ = std::make_unique<moe::ChatSession>(*model_);
        const QString name = owned_->builtMoe() ? QFileInfo(path).completeBaseName() : QFileInfo(path).fileName();
        finishLoad(path, name, timer.elapsed() / 1000.0);
    } catch (const moe::Cancelled&) {
        unloadModel();
        emit modelLoadCancelled(path, ticket);
    } catch (const std::exception& e) {
        unloadModel();
        emit modelLoadFailed(path, QString::fromStdString(e.what()));
    }
}

void ChatWorker::useBuiltMoe(std::shared_ptr<BuiltMoe> built) {
    const QString path = QStringLiteral("moe:%1").arg(built ? built->name : QString());
    emit modelLoading(path);
    unloadModel();
    if (!built || !built->model) {
        emit modelLoadFailed(path, tr("The MoE was not built (cancelled or failed)."));
        return;
    }
    try {
        model_ = built->model.get();
        chat_ = std::make_unique<moe::ChatSession>(*model_);
        built_ = std::move(built);
        finishLoad(path, built_->name, 0);
    } catch (const std::exception& e) {
        unloadModel();
        emit modelLoadFailed(path, QString::fromStdString(e.what()));
    }
}

void ChatWorker::finishLoad(const QString& path, const QString& name, double seconds) {
    modelPath_ = path;
    moe::Model& m = model_->model();
    LoadedModelInfo info;
    info.path = path;
    info.name = name;
    info.architecture = QString::fromStdString(m.config().architecture);
    info.device = QString::fromStdString((built_ ? *built_->context : *context_).info().name);
    info.parameters = qint64(m.parameterCount());
    info.layers = m.config().numLayers;
    info.contextLength = int(chat_->maxContext());
    info.chatTemplate = !model_->chatTemplate().isFallback();
    info.loadSeconds = seconds;
    info.expertBudget = applyExpertBudget();
    info.expertBytes = m.pageableExpertBytes();
    if (m.quantizeScheme() != moe::QuantizeScheme::None) info.quantize = QString::fromLatin1(moe::toString(m.quantizeScheme()));
    info.deviceBytes = m.deviceBytes();
    if (const moe::MoeModel* mm = model_->builtMoe()) {
        for (int l : mm->layers()) info.moeLayers.push_back(l);
        info.expertsPerLayer = model_->expertsPerLayer();
        for (const auto& n : model_->slotNames()) info.expertNames.push_back(QString::fromStdString(n));
        info.routing = QString::fromLatin1(moe::toString(mm->routing()));
        info.topK = model_->expertsPerToken();
        info.architecture += tr(" + MoE (%1 experts, top-%2)").arg(info.expertsPerLayer).arg(info.topK);
    }
    emit modelLoaded(info);
}

void ChatWorker::generateReply(quint64 requestId, const QVector<ChatTurn>& conversation,
                               const GenerationSettings& settings) {
    stop_.store(false);
    if (!chat_) {
        emit replyFailed(requestId, tr("No model is loaded."));
        return;
    }
    QElapsedTimer timer;
    timer.start();
    try {
        std::vector<moe::ChatMessage> messages;
        for (const ChatTurn& t : conversation) messages.push_back({t.role.toStdString(), t.content.toStdString()});
        moe::ReplyOptions options;
        options.maxTokens = settings.maxTokens;
        options.sampling.temperature = float(settings.temperature);
        options.sampling.topP = float(settings.topP);
        options.sampling.topK = settings.topK;
        options.sampling.presencePenalty = float(settings.presencePenalty);
        options.sampling.repetitionPenalty = float(settings.repetitionPenalty);
        options.sampling.seed = settings.seed;
        if (!settings.thinking.isEmpty())
            options.templateKwargs["enable_thinking"] = settings.thinking == QLatin1String("on");
        options.cancel = &stop_;

        ReplyStats stats;
        const bool builtMoe = model_->builtMoe() != nullptr;
        bool first = true;
        QElapsedTimer sinceUsage;
        sinceUsage.start();
        const moe::ChatReply reply = chat_->reply(messages, options, [&](const std::string& piece) {
            if (first) {
                stats.secondsToFirstToken = timer.nsecsElapsed() / 1e9;
                first = false;
            }
            emit replyChunk(requestId, QString::fromStdString(piece));
            // A few small readbacks per second keep the usage chart live.
            if (builtMoe && sinceUsage.elapsed() >= 100) {
                emit expertUsageUpdated(requestId, toQt(chat_->expertUsage()));
                sinceUsage.restart();
            }
            return !stop_.load();
        });
        stats.promptTokens = reply.promptTokens;
        stats.reusedTokens = reply.reusedTokens;
        stats.droppedMessages = reply.droppedMessages;
        if (builtMoe) {
            stats.expertUsage = toQt(reply.expertUsage);
            stats.routedTokens = reply.generation.decodeSteps;
            if (reply.likelihood.slot >= 0) {
                const auto names = model_->slotNames();
                stats.likelihoodPick = QString::fromStdString(names.at(size_t(reply.likelihood.slot)));
                for (size_t i = 0; i < reply.likelihood.candidates.size(); ++i) {
                    stats.likelihoodSlots.push_back(
                        QString::fromStdString(names.at(size_t(reply.likelihood.candidates[i]))));
                    stats.likelihoodLoss.push_back(reply.likelihood.loss[i]);
                }
            }
        }
        if (const uint64_t budget = model_->model().expertBudget()) {
            const moe::ExpertCacheStats& c = reply.expertCache.stats;
            ExpertCacheFigures& f = stats.expertCache;
            f.budgetBytes = budget;
            f.hits = c.hits;
            f.misses = c.misses;
            f.evictions = c.evictions;
            f.bytesUploaded = c.bytesUploaded;
            f.tokens = int(reply.expertCache.tokens);
        }
        stats.generatedTokens = int(reply.generation.tokens.size());
        stats.tokensPerSecond = reply.generation.decodeTokensPerSecond();
        stats.stopReason = QString::fromStdString(reply.generation.stopReason);
        if (first) stats.secondsToFirstToken = timer.nsecsElapsed() / 1e9;
        emit replyFinished(requestId, stats);
    } catch (const std::exception& e) {
        emit replyFailed(requestId, QString::fromStdString(e.what()));
    }
}

} // namespace moe::ui
