#pragma once
// The engine side of the chat: owns the Vulkan context, the model, its
// tokenizer and one Session, and lives on its own QThread. Every call into
// the engine happens there; results come back as queued signals. Only
// requestStop() is called from other threads (it sets an atomic flag).
#include <QObject>
#include <QString>
#include <QVector>

#include <atomic>
#include <memory>
#include <vector>

namespace moe {
class ChatTemplate;
class Model;
class Session;
class Tokenizer;
namespace vk { class Context; }
} // namespace moe

namespace moe::ui {

struct ChatTurn {
    QString role; // "system", "user", "assistant"
    QString content;
};

struct GenerationSettings {
    double temperature = 0.7;
    double topP = 0.95;
    int topK = 40;
    int maxTokens = 256;
    double presencePenalty = 0.0;
    double repetitionPenalty = 1.1;
    quint64 seed = 0; // 0 = a new random seed each reply
};

struct LoadedModelInfo {
    QString path;
    QString name;
    QString architecture;
    QString device;     // the Vulkan device the model runs on
    qint64 parameters = 0;
    int layers = 0;
    int contextLength = 0;
    bool chatTemplate = false; // false = the plain "role: text" fallback
    // Layers whose MLP is routed experts (empty for dense models): the seam
    // where the MoE builder's models report their shape.
    QVector<int> moeLayers;
    int expertsPerLayer = 0;
    double loadSeconds = 0;
};

struct ReplyStats {
    int promptTokens = 0;      // tokens of the rendered conversation
    int reusedTokens = 0;      // of those, already in the KV cache (not recomputed)
    int droppedMessages = 0;   // oldest messages left out to fit the context
    int generatedTokens = 0;
    double secondsToFirstToken = 0; // request → first text piece
    double tokensPerSecond = 0;     // decode rate
    QString stopReason;             // "eos", "length", "context", "cancelled", "stop"
    // Per MoE layer × expert: how many tokens were routed there (empty for dense models).
    QVector<QVector<int>> expertUsage;
};

class ChatWorker : public QObject {
    Q_OBJECT
public:
    explicit ChatWorker(QObject* parent = nullptr);
    ~ChatWorker() override;

    // Thread-safe: the running generation stops at its next token.
    void requestStop() { stop_.store(true); }

public slots:
    void loadModel(const QString& path);
    void unloadModel();
    // Renders the whole conversation with the model's chat template and
    // generates the assistant's reply. Tokens already in the KV cache (the
    // common prefix with the last request) are not recomputed: a regenerate
    // truncates the session to the start of the turn.
    void generateReply(quint64 requestId, const QVector<moe::ui::ChatTurn>& conversation,
                       const moe::ui::GenerationSettings& settings);

signals:
    void modelLoading(const QString& path);
    void modelLoaded(const moe::ui::LoadedModelInfo& info);
    void modelLoadFailed(const QString& path, const QString& error);
    void replyChunk(quint64 requestId, const QString& text);
    void replyFinished(quint64 requestId, const moe::ui::ReplyStats& stats);
    void replyFailed(quint64 requestId, const QString& error);

private:
    std::atomic<bool> stop_{false};
    std::unique_ptr<moe::vk::Context> context_;
    std::unique_ptr<moe::Model> model_;
    std::unique_ptr<moe::Tokenizer> tokenizer_;
    std::unique_ptr<moe::ChatTemplate> template_;
    std::unique_ptr<moe::Session> session_;
    std::vector<int32_t> cached_; // the tokens whose keys/values the session holds
    QString modelPath_;
};

} // namespace moe::ui

Q_DECLARE_METATYPE(moe::ui::ChatTurn)
Q_DECLARE_METATYPE(moe::ui::GenerationSettings)
Q_DECLARE_METATYPE(moe::ui::LoadedModelInfo)
Q_DECLARE_METATYPE(moe::ui::ReplyStats)
