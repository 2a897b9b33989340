#include "chat_controller.h"

#include "app_paths.h"

namespace moe::ui {

ChatController::ChatController(QObject* parent)
    : QObject(parent), store_(conversationsDir()), conversation_(Conversation::create()) {
    qRegisterMetaType<moe::ui::ChatTurn>();
    qRegisterMetaType<QVector<moe::ui::ChatTurn>>();
    qRegisterMetaType<moe::ui::GenerationSettings>();
    qRegisterMetaType<moe::ui::LoadedModelInfo>();
    qRegisterMetaType<moe::ui::ReplyStats>();
    qRegisterMetaType<QVector<QVector<int>>>();
    qRegisterMetaType<std::shared_ptr<moe::ui::BuiltMoe>>();

    thread_.setObjectName(QStringLiteral("moe-chat-engine"));
    worker_ = new ChatWorker;
    worker_->moveToThread(&thread_);
    connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
    connect(worker_, &ChatWorker::modelLoaded, this, [this](const LoadedModelInfo& info) {
        modelInfo_ = info;
        modelLoaded_ = true;
        modelLoading_ = false;
        conversation_.modelPath = info.path;
        emit modelLoaded(info);
    });
    connect(worker_, &ChatWorker::modelLoadFailed, this, [this](const QString& path, const QString& error) {
        modelLoaded_ = false;
        modelLoading_ = false;
        emit modelLoadFailed(path, error);
    });
    connect(worker_, &ChatWorker::modelLoadCancelled, this, [this](const QString& path, quint64 ticket) {
        if (ticket != loadTicket_) return; // superseded by a newer load, which is running
        modelLoaded_ = false;
        modelLoading_ = false;
        emit modelLoadCancelled(path);
    });
    connect(worker_, &ChatWorker::expertBudgetApplied, this, [this](quint64 bytes) {
        modelInfo_.expertBudget = bytes;
        emit expertBudgetApplied(bytes);
    });
    connect(worker_, &ChatWorker::replyChunk, this, &ChatController::onChunk);
    connect(worker_, &ChatWorker::expertUsageUpdated, this, [this](quint64 requestId, const QVector<QVector<int>>& usage) {
        if (requestId == requestId_ && generating_) emit expertUsageUpdated(usage);
    });
    connect(worker_, &ChatWorker::replyFinished, this, &ChatController::onFinished);
    connect(worker_, &ChatWorker::replyFailed, this, &ChatController::onFailed);
    thread_.start();
}

ChatController::~ChatController() {
    worker_->requestStop();
    worker_->cancelLoads(loadTicket_);
    thread_.quit();
    thread_.wait();
}

void ChatController::setStorageDir(const QString& dir) { store_ = ConversationStore(dir); }

void ChatController::loadModel(const QString& path) {
    if (path.startsWith(QStringLiteral("moe:")) && builtMoe_) {
        useBuiltMoe(builtMoe_);
        return;
    }
    if (generating_) stop();
    worker_->cancelLoads(loadTicket_); // a newer choice replaces a load still running
    modelLoaded_ = false;
    modelLoading_ = true;
    emit modelLoadStarted(path);
    const quint64 ticket = ++loadTicket_;
    QMetaObject::invokeMethod(worker_, [w = worker_, path, ticket] { w->loadModel(path, ticket); }, Qt::QueuedConnection);
}

void ChatController::cancelLoad() {
    if (modelLoading_) worker_->cancelLoads(loadTicket_);
}

void ChatController::useBuiltMoe(std::shared_ptr<BuiltMoe> built) {
    builtMoe_ = built;
    if (generating_) stop();
    worker_->cancelLoads(loadTicket_);
    ++loadTicket_;
    modelLoaded_ = false;
    modelLoading_ = true;
    emit modelLoadStarted(QStringLiteral("moe:%1").arg(built ? built->name : QString()));
    QMetaObject::invokeMethod(worker_, [w = worker_, built] { w->useBuiltMoe(built); }, Qt::QueuedConnection);
}

void ChatController::setExpertBudget(quint64 bytes) {
    expertBudget_ = bytes;
    // On the engine's thread, after any reply that is running.
    QMetaObject::invokeMethod(worker_, [w = worker_, bytes] { w->setExpertBudget(bytes); }, Qt::QueuedConnection);
}

void ChatController::setQuantize(std::optional<moe::QuantizeScheme> scheme) {
    quantize_ = scheme;
    QMetaObject::invokeMethod(worker_, [w = worker_, scheme] { w->setQuantize(scheme); }, Qt::QueuedConnection);
}

bool ChatController::send(const QString& text) {
    const QString trimmed = text.trimmed();
    if (trimmed.isEmpty()) return false;
    if (generating_) {
        emit errorOccurred(tr("A reply is still being written: stop it first."));
        return false;
    }
    if (!modelLoaded_) {
        emit errorOccurred(modelLoading_ ? tr("The model is still loading.") : tr("Choose a model first."));
        return false;
    }
    ChatEntry m;
    m.role = QStringLiteral("user");
    m.content = trimmed;
    m.time = QDateTime::currentDateTime();
    conversation_.messages.push_back(m);
    if (conversation_.title.isEmpty()) conversation_.title = trimmed.left(60).simplified();
    emit messageAdded(int(conversation_.messages.size()) - 1);
    save();
    startReply();
    return true;
}

void ChatController::startReply() {
    QVector<ChatTurn> turns;
    if (!conversation_.systemPrompt.trimmed().isEmpty())
        turns.push_back({QStringLiteral("system"), conversation_.systemPrompt});
    for (const ChatEntry& m : conversation_.messages) turns.push_back({m.role, m.content});

    ChatEntry reply;
    reply.role = QStringLiteral("assistant");
    reply.time = QDateTime::currentDateTime();
    conversation_.messages.push_back(reply);
    const int index = int(conversation_.messages.size()) - 1;
    emit messageAdded(index);
    emit replyStarted(index);
    setGenerating(true);

    const quint64 id = ++requestId_;
    const GenerationSettings settings = settings_;
    QMetaObject::invokeMethod(worker_, [w = worker_, id, turns, settings] { w->generateReply(id, turns, settings); },
                              Qt::QueuedConnection);
}

void ChatController::stop() {
    if (generating_) worker_->requestStop();
}

bool ChatController::regenerate() {
    if (generating_ || !modelLoaded_) return false;
    auto& messages = conversation_.messages;
    if (messages.isEmpty()) return false;
    if (messages.last().role == QLatin1String("assistant")) messages.removeLast();
    if (messages.isEmpty() || messages.last().role != QLatin1String("user")) return false;
    emit conversationReset();
    startReply();
    return true;
}

void ChatController::newChat() {
    if (generating_) stop();
    const QString system = conversation_.systemPrompt;
    conversation_ = Conversation::create();
    conversation_.systemPrompt = system;
    conversation_.modelPath = modelInfo_.path;
    emit conversationReset();
}

bool ChatController::openConversation(const QString& id) {
    if (generating_) return false;
    QString error;
    auto loaded = store_.load(id, &error);
    if (!loaded) {
        emit errorOccurred(error);
        return false;
    }
    conversation_ = *loaded;
    emit conversationReset();
    return true;
}

void ChatController::onChunk(quint64 requestId, const QString& text) {
    if (requestId != requestId_ || !generating_) return;
    ChatEntry& reply = conversation_.messages.last();
    reply.content += text;
    emit replyUpdated(int(conversation_.messages.size()) - 1, reply.content);
}

void ChatController::onFinished(quint64 requestId, const ReplyStats& stats) {
    if (requestId != requestId_) return;
    ChatEntry& reply = conversation_.messages.last();
    reply.tokens = stats.generatedTokens;
    reply.secondsToFirstToken = stats.secondsToFirstToken;
    reply.tokensPerSecond = stats.tokensPerSecond;
    reply.stopReason = stats.stopReason;
    setGenerating(false);
    save();
    emit replyFinished(int(conversation_.messages.size()) - 1, stats);
}

void ChatController::onFailed(quint64 requestId, const QString& error) {
    if (requestId != requestId_) return;
    // Keep no empty assistant message behind a failed reply.
    if (!conversation_.messages.isEmpty() && conversation_.messages.last().role == QLatin1String("assistant") &&
        conversation_.messages.last().content.isEmpty()) {
        conversation_.messages.removeLast();
        emit conversationReset();
    }
    setGenerating(false);
    save();
    emit errorOccurred(error);
}

void ChatController::setGenerating(bool on) {
    if (generating_ == on) return;
    generating_ = on;
    emit generatingChanged(on);
}

void ChatController::save() {
    conversation_.updated = QDateTime::currentDateTime();
    QString error;
    const QString path = store_.save(conversation_, &error);
    if (path.isEmpty()) {
        emit errorOccurred(tr("Could not save the conversation: %1").arg(error));
        return;
    }
    emit conversationSaved(path);
    emit conversationListChanged();
}

} // namespace moe::ui
