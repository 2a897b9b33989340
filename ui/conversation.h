#pragma once
// A chat conversation and its JSON file. Files are written atomically
// (QSaveFile) into one folder, one <id>.json per conversation.
#include <QDateTime>
#include <QJsonObject>
#include <QString>
#include <QVector>

#include <optional>

namespace moe::ui {

struct ChatEntry {
    QString role;    // "user", "assistant" (the system prompt is kept apart)
    QString content; // Markdown as written / generated
    QDateTime time;
    // Assistant replies: figures of the generation (0 when unknown).
    int tokens = 0;
    double secondsToFirstToken = 0;
    double tokensPerSecond = 0;
    QString stopReason;
};

struct Conversation {
    QString id;           // file stem, unique
    QString title;        // the first user message, shortened
    QString modelPath;
    QString systemPrompt;
    QDateTime created, updated;
    QVector<ChatEntry> messages;

    static Conversation create(); // new id, timestamps now
    // An id names its file (<id>.json): letters, digits, '-', '_', '.', not
    // starting with '.', at most kMaxIdLength characters.
    static constexpr int kMaxIdLength = 128;
    static bool isValidId(const QString& id);
    QJsonObject toJson() const;
    // Returns nullopt with `error` naming the field on bad input.
    static std::optional<Conversation> fromJson(const QJsonObject& json, QString* error = nullptr);
};

struct ConversationSummary {
    QString id, title, path;
    QDateTime updated;
    int messages = 0;
};

class ConversationStore {
public:
    // Larger files are refused: a conversation is text, kilobytes to megabytes.
    static constexpr qint64 kMaxConversationBytes = qint64(64) << 20;
    explicit ConversationStore(QString dir);
    const QString& dir() const { return dir_; }
    QString pathOf(const QString& id) const;

    // Atomic write; returns the file path, or an empty string with `error`.
    QString save(const Conversation& conversation, QString* error = nullptr) const;
    std::optional<Conversation> load(const QString& id, QString* error = nullptr) const;
    bool remove(const QString& id) const;
    // Newest first; unreadable files are skipped.
    QVector<ConversationSummary> list() const;

private:
    QString dir_;
};

} // namespace moe::ui
