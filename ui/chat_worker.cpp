#include "chat_worker.h"

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

ChatWorker::ChatWorker(QObject* parent) : QObject(parent) {}

// The session and model hold device buffers: release them before the context.
ChatWorker::~ChatWorker() { unloadModel(); }

void ChatWorker::unloadModel() {
    session_.reset();
    model_.reset();
    tokenizer_.reset();
    template_.reset();
    cached_.clear();
    modelPath_.clear();
}

void ChatWorker::loadModel(const QString& path) {
    emit modelLoading(path);
    unloadModel();
    QElapsedTimer timer;
    timer.start();
    try {
        if (!context_) context_ = std::make_unique<moe::vk::Context>();
        const std::filesystem::path dir = path.toStdString();
        auto tokenizer = moe::Tokenizer::load(dir);
        auto chatTemplate = std::make_unique<moe::ChatTemplate>(moe::ChatTemplate::fromModelDir(dir));
        auto model = moe::Model::load(*context_, dir);
        session_ = std::make_unique<moe::Session>(*model);
        model_ = std::move(model);
        tokenizer_ = std::move(tokenizer);
        template_ = std::move(chatTemplate);
        modelPath_ = path;

        LoadedModelInfo info;
        info.path = path;
        info.name = QFileInfo(path).fileName();
        info.architecture = QString::fromStdString(model_->config().architecture);
        info.device = QString::fromStdString(context_->info().name);
        info.parameters = qint64(model_->parameterCount());
        info.layers = model_->config().numLayers;
        info.contextLength = int(session_->maxContext());
        info.chatTemplate = !template_->isFallback();
        info.loadSeconds = timer.elapsed() / 1000.0;
        emit modelLoaded(info);
    } catch (const std::exception& e) {
        unloadModel();
        emit modelLoadFailed(path, QString::fromStdString(e.what()));
    }
}

void ChatWorker::generateReply(quint64 requestId, const QVector<ChatTurn>& conversation,
                               const GenerationSettings& settings) {
    stop_.store(false);
    if (!model_) {
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
        std::vector<int32_t> tokens = moe::encodeChat(*template_, *tokenizer_, messages);
        const size_t firstDroppable = !messages.empty() && messages.front().role == "system" ? 1 : 0;
        while (int(tokens.size()) + maxTokens > contextLength && messages.size() > firstDroppable + 1) {
            messages.erase(messages.begin() + long(firstDroppable));
            // Templates such as Llama-2's insist on user/assistant alternation starting with user.
            if (messages.size() > firstDroppable + 1 && messages[firstDroppable].role == "assistant")
                messages.erase(messages.begin() + long(firstDroppable));
            stats.droppedMessages = int(conversation.size() - messages.size());
            tokens = moe::encodeChat(*template_, *tokenizer_, messages);
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
        bool first = true;
        auto result = moe::generate(*session_, *tokenizer_, prompt, options, [&](const std::string& piece) {
            if (piece.empty()) return !stop_.load();
            if (first) {
                stats.secondsToFirstToken = timer.nsecsElapsed() / 1e9;
                first = false;
            }
            emit replyChunk(requestId, QString::fromStdString(piece));
            return !stop_.load();
        });
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
