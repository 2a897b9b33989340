#pragma once
// The engine side of the chat: owns the Vulkan context, the model and one
// moe::ChatSession (the same conversation logic as moe-cli chat and the
// server), and lives on its own QThread. Every call into
// the engine happens there; results come back as queued signals. Only
// requestStop() is called from other threads (it sets an atomic flag).
#include <QObject>
#include <QString>
#include <QStringList>
#include <QVector>

#include "moe/quant.h"

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

namespace moe {
class ChatSession;
struct OpenOptions;
class RunnableModel;
namespace vk { class Context; }
} // namespace moe

namespace moe::ui {

// A built MoE and the Vulkan context its buffers live on, handed from the
// build to the chat. Members are destroyed in reverse order: the model first.
struct BuiltMoe {
    std::shared_ptr<moe::vk::Context> context;
    std::unique_ptr<moe::RunnableModel> model; // a moe::ModelKind::BuiltMoe
    QString name; // shown in the chat's model list
    ~BuiltMoe();
};

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
    // The chat template's enable_thinking: "" = the template's default, "on", "off".
    QString thinking;
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
    QStringList expertNames; // the slots of expertUsage rows (experts, then the base slot)
    QString routing;         // token / running / sequence / likelihood
    int topK = 0;
    double loadSeconds = 0;
    // Routed experts' own weights (built and native MoEs): what an expert
    // budget keeps partly on the device; 0 = nothing to page.
    quint64 expertBytes = 0;
    quint64 expertBudget = 0; // the budget in force; 0 = every expert resident
    // The scheme the engine quantized the weights with on load ("q8_0",
    // "q4_k", ...; empty = none), read back from the loaded model.
    QString quantize;
    quint64 deviceBytes = 0; // the model's weights on the device
};

// The expert cache over one reply, when an expert budget is in force.
struct ExpertCacheFigures {
    quint64 budgetBytes = 0; // 0 = no budget: the figures below are unused
    quint64 hits = 0, misses = 0, evictions = 0, bytesUploaded = 0;
    int tokens = 0; // tokens forwarded for the reply (the prompt not in the cache, then each decode step)
    double hitRate() const { return hits + misses ? double(hits) / double(hits + misses) : 0.0; }
    double bytesUploadedPerToken() const { return tokens ? double(bytesUploaded) / tokens : 0.0; }
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
    // Usage counts the reply tokens forwarded through the MoE (not the prompt's).
    QVector<QVector<int>> expertUsage;
    int routedTokens = 0; // tokens the usage counts: each adds top_k per layer (1 when pinned)
    // Likelihood routing: the slot picked for the prompt, and each candidate's prompt loss.
    QString likelihoodPick;
    QStringList likelihoodSlots;
    QVector<double> likelihoodLoss;
    ExpertCacheFigures expertCache;
};

class ChatWorker : public QObject {
    Q_OBJECT
public:
    explicit ChatWorker(QObject* parent = nullptr);
    ~ChatWorker() override;

    // Thread-safe: the running generation stops at its next token.
    void requestStop() { stop_.store(true); }
    // Thread-safe: the load of `ticket` or an older one stops at its next
    // tensor or rows (modelLoadCancelled), freeing what it had uploaded.
    void cancelLoads(quint64 ticket) {
        loadsCancelled_.store(ticket);
        loadCancel_.store(true);
    }

    // What loadModel passes to moe::RunnableModel::openModel / openSelector.
    moe::OpenOptions openOptions() const;
    std::optional<moe::QuantizeScheme> quantize() const { return quantize_; }

public slots:
    // A model folder, or a selector (.toml) whose MoE was built (gates saved).
    // `ticket` orders loads for cancelLoads (0 = not cancellable by ticket).
    void loadModel(const QString& path, quint64 ticket = 0);
    // Chats with a MoE built in this process (no reload).
    void useBuiltMoe(std::shared_ptr<moe::ui::BuiltMoe> built);
    void unloadModel();
    // Experts under a memory budget (bytes; 0 = none): applied to the loaded
    // model, if it has routed experts, and to every model loaded later.
    void setExpertBudget(quint64 bytes);
    // Quantize 16/32-bit weights on load (nullopt = as stored; for a selector,
    // its own `quantize` key): applies to the models loaded after the call.
    void setQuantize(std::optional<moe::QuantizeScheme> scheme) { quantize_ = scheme; }
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
    void modelLoadCancelled(const QString& path, quint64 ticket);
    // The budget in force on the loaded model after setExpertBudget (0 = none).
    void expertBudgetApplied(quint64 bytes);
    void replyChunk(quint64 requestId, const QString& text);
    // While a MoE streams: usage[layer][slot] so far in this reply.
    void expertUsageUpdated(quint64 requestId, const QVector<QVector<int>>& usage);
    void replyFinished(quint64 requestId, const moe::ui::ReplyStats& stats);
    void replyFailed(quint64 requestId, const QString& error);

private:
    std::atomic<bool> stop_{false};
    std::atomic<quint64> loadsCancelled_{0};
    std::atomic<bool> loadCancel_{false}; // the engine's flag for the load running now
    void finishLoad(const QString& path, const QString& name, double seconds);

    std::shared_ptr<moe::vk::Context> context_;
    // The model chatted with: one opened here (owned_) or a MoE handed over by
    // the build (built_); chat_ holds its KV cache.
    std::unique_ptr<moe::RunnableModel> owned_;
    std::shared_ptr<BuiltMoe> built_;
    moe::RunnableModel* model_ = nullptr;
    std::unique_ptr<moe::ChatSession> chat_;
    QString modelPath_;
    quint64 expertBudget_ = 0;
    std::optional<moe::QuantizeScheme> quantize_;
    // Applies expertBudget_ to the loaded model; returns the budget in force.
    quint64 applyExpertBudget();
};

} // namespace moe::ui

Q_DECLARE_METATYPE(moe::ui::ChatTurn)
Q_DECLARE_METATYPE(moe::ui::GenerationSettings)
Q_DECLARE_METATYPE(moe::ui::LoadedModelInfo)
Q_DECLARE_METATYPE(moe::ui::ReplyStats)
Q_DECLARE_METATYPE(std::shared_ptr<moe::ui::BuiltMoe>)
