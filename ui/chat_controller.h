#pragma once
// The chat's state on the UI thread: the conversation, the model in use, the
// sampling settings, and a ChatWorker on its own thread that runs the engine.
// The conversation is saved after every message (user, and each finished reply).
#include "chat_worker.h"
#include "conversation.h"

#include <QObject>
#include <QThread>

namespace moe::ui {

class ChatController : public QObject {
    Q_OBJECT
public:
    explicit ChatController(QObject* parent = nullptr);
    ~ChatController() override;

    // Where conversations are saved (default: conversationsDir()).
    void setStorageDir(const QString& dir);
    const ConversationStore& store() const { return store_; }

    void loadModel(const QString& path);
    // Chats with a MoE just built (see BuildController::builtMoe).
    void useBuiltMoe(std::shared_ptr<moe::ui::BuiltMoe> built);
    bool isModelLoaded() const { return modelLoaded_; }
    bool isModelLoading() const { return modelLoading_; }
    const LoadedModelInfo& modelInfo() const { return modelInfo_; }

    GenerationSettings& settings() { return settings_; }
    // Experts under a memory budget (bytes; 0 = every expert on the device):
    // the engine applies it on its thread, to this model and the next ones.
    void setExpertBudget(quint64 bytes);
    quint64 expertBudget() const { return expertBudget_; }
    // Quantize on load (nullopt = off): the engine uses it for the models
    // loaded after the call, not the one loaded now.
    void setQuantize(std::optional<moe::QuantizeScheme> scheme);
    std::optional<moe::QuantizeScheme> quantize() const { return quantize_; }
    // The worker, for tests: read its state only while it is idle.
    const ChatWorker* worker() const { return worker_; }
    void setSystemPrompt(const QString& text) { conversation_.systemPrompt = text; }

    const Conversation& conversation() const { return conversation_; }
    QString conversationPath() const { return store_.pathOf(conversation_.id); }
    bool isGenerating() const { return generating_; }

    // Appends a user message, saves, and starts the reply. False (with
    // errorOccurred) when no model is loaded or a reply is running.
    bool send(const QString& text);
    // Stops the running reply; the partial text is kept and saved.
    void stop();
    // Stops a model load that is running or queued (modelLoadCancelled).
    void cancelLoad();
    // Drops the last assistant reply and generates it again from the turn start.
    bool regenerate();
    void newChat();
    bool openConversation(const QString& id);

signals:
    void modelLoadStarted(const QString& path);
    void modelLoaded(const moe::ui::LoadedModelInfo& info);
    void modelLoadFailed(const QString& path, const QString& error);
    void modelLoadCancelled(const QString& path);
    // The budget the loaded model runs under now (0 = none or no routed experts).
    void expertBudgetApplied(quint64 bytes);
    void conversationReset();                 // a different conversation: redraw it all
    void messageAdded(int index);             // conversation().messages[index] is new
    void replyStarted(int index);             // an empty assistant message at `index`
    void replyUpdated(int index, const QString& textSoFar);
    void replyFinished(int index, const moe::ui::ReplyStats& stats);
    // MoE only: per layer × slot, the reply's tokens routed so far.
    void expertUsageUpdated(const QVector<QVector<int>>& usage);
    void generatingChanged(bool generating);
    void conversationSaved(const QString& path);
    void conversationListChanged();
    void errorOccurred(const QString& message);

private:
    void startReply();
    void save();
    void onChunk(quint64 requestId, const QString& text);
    void onFinished(quint64 requestId, const moe::ui::ReplyStats& stats);
    void onFailed(quint64 requestId, const QString& error);
    void setGenerating(bool on);

    QThread thread_;
    ChatWorker* worker_ = nullptr; // lives on thread_
    ConversationStore store_;
    Conversation conversation_;
    GenerationSettings settings_;
    quint64 expertBudget_ = 0;
    std::optional<moe::QuantizeScheme> quantize_;
    LoadedModelInfo modelInfo_;
    std::shared_ptr<BuiltMoe> builtMoe_; // the last MoE handed over, chosen again by its "moe:" path
    bool modelLoaded_ = false;
    bool modelLoading_ = false;
    bool generating_ = false;
    quint64 requestId_ = 0;
    quint64 loadTicket_ = 0; // the latest load; older ones are cancelled by a newer one
};

} // namespace moe::ui
