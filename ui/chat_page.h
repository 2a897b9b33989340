#pragma once
// The chat: saved conversations on the left, the messages (Markdown) in the
// middle with the input box, and the model, system prompt, sampling and reply
// figures on the right. All engine work goes through ChatController.
#include "chat_controller.h"

#include <QPlainTextEdit>
#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QGroupBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QScrollArea;
class QSpinBox;
class QTimer;
class QVBoxLayout;

namespace moe::ui {

class ExpertUsageView;
class ModelLibrary;

// Enter sends, Shift+Enter starts a new line.
class ChatInput : public QPlainTextEdit {
    Q_OBJECT
public:
    using QPlainTextEdit::QPlainTextEdit;
signals:
    void submitted();
protected:
    void keyPressEvent(QKeyEvent* event) override;
};

// One message: role, time, Copy button, and the text (Markdown for replies).
class MessageWidget : public QFrame {
    Q_OBJECT
public:
    MessageWidget(const ChatEntry& entry, QWidget* parent = nullptr);
    void setContent(const QString& markdown, bool streaming);
    void setFooter(const QString& text);
    QString content() const { return content_; }
    QLabel* body() const { return body_; }
private:
    QString role_;
    QString content_;
    QLabel* body_;
    QLabel* footer_;
};

class ChatPage : public QWidget {
    Q_OBJECT
public:
    ChatPage(ChatController* controller, ModelLibrary* library, QWidget* parent = nullptr);

    ChatController* controller() const { return controller_; }
    // Selects `path` in the model box and loads it.
    void chooseModel(const QString& path);
    ChatInput* input() const { return input_; }
    QPushButton* stopButton() const { return stopButton_; }
    ExpertUsageView* expertUsageView() const { return expertUsage_; }
    QLabel* routingLabel() const { return routingLabel_; }
    // Experts under a memory budget: the size typed here ("512MB", empty =
    // off) applies on Enter or leaving the field; the figures of the last
    // reply under a budget show in expertCacheBox().
    QLineEdit* expertBudgetEdit() const { return expertBudget_; }
    QGroupBox* expertCacheBox() const { return expertCacheBox_; }
    // Quantize on load: Off, Q8_0, Q4_K (the Q4_K_M mix), Q4_0 (data: the
    // scheme's name, empty for Off). Applies to the models loaded after a change.
    QComboBox* quantizeBox() const { return quantize_; }
    QVector<MessageWidget*> messageWidgets() const { return messages_; }
    QString statusText() const;

    // Shows `settings` in the side panel and uses them from the next reply on.
    void applySettings(const GenerationSettings& settings);
    void loadSettings();
    void saveSettings() const;

signals:
    void statusMessage(const QString& text);

private:
    void buildSidePanel(QWidget* panel);
    void refreshModels();
    void refreshConversations();
    void rebuildMessages();
    void appendMessage(int index);
    void updateButtons();
    void showReplyStats(const ReplyStats& stats);
    void showExpertUsage(const QVector<QVector<int>>& usage);
    void showExpertCache(const ExpertCacheFigures& figures);
    void applyExpertBudgetText();
    void showExpertBudgetHint();
    void applyQuantizeChoice();
    void flushStreaming();
    void scrollToBottom();
    void readSettingsFromPanel();

    ChatController* controller_;
    ModelLibrary* library_;
    QListWidget* conversations_;
    QScrollArea* scroll_;
    QWidget* messagesHost_;
    QVBoxLayout* messagesLayout_;
    QVector<MessageWidget*> messages_;
    QLabel* emptyHint_;
    ChatInput* input_;
    QPushButton* sendButton_;
    QPushButton* stopButton_;
    QPushButton* regenerateButton_;
    QPushButton* newChatButton_;
    QComboBox* modelBox_;
    QLabel* modelStatus_;
    QPlainTextEdit* systemPrompt_;
    QDoubleSpinBox* temperature_;
    QDoubleSpinBox* topP_;
    QSpinBox* topK_;
    QSpinBox* maxTokens_;
    QDoubleSpinBox* presencePenalty_;
    QDoubleSpinBox* repetitionPenalty_;
    QSpinBox* seed_;
    QComboBox* thinking_; // the chat template's enable_thinking (Qwen3)
    QLabel* firstTokenLabel_;
    QLabel* tokensPerSecondLabel_;
    QLabel* replyTokensLabel_;
    QLabel* promptLabel_;
    QWidget* expertUsageBox_;
    ExpertUsageView* expertUsage_;
    QLabel* routingLabel_; // MoE routing mode; likelihood picks with each candidate's prompt loss
    QLineEdit* expertBudget_;
    QLabel* expertBudgetHint_; // the model's expert bytes and the budget in force
    QComboBox* quantize_;
    QGroupBox* expertCacheBox_;
    QLabel* cacheHits_;
    QLabel* cacheMisses_;
    QLabel* cacheHitRate_;
    QLabel* cacheUploaded_;
    QLabel* errorLabel_;
    QTimer* streamTimer_;
    int streamingIndex_ = -1;
    QString streamingText_;
    QString pendingModel_;
};

} // namespace moe::ui
