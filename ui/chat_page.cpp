#include "chat_page.h"

#include "expert_usage_view.h"
#include "model_library.h"
#include "model_scanner.h"

#include "moe/error.h"
#include "moe/export.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QStyle>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>
#include <optional>

namespace moe::ui {

void ChatInput::keyPressEvent(QKeyEvent* event) {
    const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
    if (enter && !(event->modifiers() & Qt::ShiftModifier)) {
        emit submitted();
        return;
    }
    QPlainTextEdit::keyPressEvent(event);
}

MessageWidget::MessageWidget(const ChatEntry& entry, QWidget* parent)
    : QFrame(parent), role_(entry.role), body_(new QLabel), footer_(new QLabel) {
    const bool user = entry.role == QLatin1String("user");
    setObjectName(user ? QStringLiteral("userMessage") : QStringLiteral("assistantMessage"));
    setFrameShape(QFrame::StyledPanel);
    setStyleSheet(user ? QStringLiteral("#userMessage { background: palette(alternate-base); border-radius: 8px; }")
                       : QStringLiteral("#assistantMessage { background: palette(base); border-radius: 8px; }"));
    auto* header = new QHBoxLayout;
    auto* who = new QLabel(user ? tr("<b>You</b>") : tr("<b>Assistant</b>"));
    auto* when = new QLabel(entry.time.isValid() ? entry.time.toString(QStringLiteral("HH:mm")) : QString());
    when->setStyleSheet(QStringLiteral("color: palette(mid);"));
    auto* copy = new QToolButton;
    copy->setIcon(style()->standardIcon(QStyle::SP_FileDialogContentsView));
    copy->setToolTip(tr("Copy this message"));
    copy->setAutoRaise(true);
    connect(copy, &QToolButton::clicked, this, [this] { QApplication::clipboard()->setText(content_); });
    header->addWidget(who);
    header->addWidget(when);
    header->addStretch(1);
    header->addWidget(copy);

    body_->setWordWrap(true);
    body_->setTextInteractionFlags(Qt::TextBrowserInteraction);
    body_->setOpenExternalLinks(true);
    body_->setTextFormat(user ? Qt::PlainText : Qt::MarkdownText);
    footer_->setStyleSheet(QStringLiteral("color: palette(mid); font-size: small;"));
    footer_->setVisible(false);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(12, 8, 12, 8);
    layout->setSpacing(4);
    layout->addLayout(header);
    layout->addWidget(body_);
    layout->addWidget(footer_);
    setContent(entry.content, false);
}

void MessageWidget::setContent(const QString& markdown, bool streaming) {
    content_ = markdown;
    // A cursor while streaming; a reply stopped before any text says so.
    if (streaming) body_->setText(markdown + QStringLiteral(" ▍"));
    else body_->setText(markdown.isEmpty() && role_ == QLatin1String("assistant") ? tr("*(no text)*") : markdown);
}

void MessageWidget::setFooter(const QString& text) {
    footer_->setText(text);
    footer_->setVisible(!text.isEmpty());
}

namespace {

QString replyFooter(const ChatEntry& m) {
    if (m.role != QLatin1String("assistant") || m.tokens <= 0) return {};
    QString text = QObject::tr("%1 tokens · %2 tokens/s · first token after %3 s")
                       .arg(m.tokens)
                       .arg(m.tokensPerSecond, 0, 'f', 1)
                       .arg(m.secondsToFirstToken, 0, 'f', 2);
    if (m.stopReason == QLatin1String("cancelled")) text += QObject::tr(" · stopped");
    else if (m.stopReason == QLatin1String("length")) text += QObject::tr(" · token limit reached");
    else if (m.stopReason == QLatin1String("context")) text += QObject::tr(" · context full");
    return text;
}

QDoubleSpinBox* doubleBox(double min, double max, double step, int decimals) {
    auto* box = new QDoubleSpinBox;
    box->setRange(min, max);
    box->setSingleStep(step);
    box->setDecimals(decimals);
    return box;
}

QSpinBox* intBox(int min, int max) {
    auto* box = new QSpinBox;
    box->setRange(min, max);
    return box;
}

} // namespace

ChatPage::ChatPage(ChatController* controller, ModelLibrary* library, QWidget* parent)
    : QWidget(parent), controller_(controller), library_(library), conversations_(new QListWidget),
      scroll_(new QScrollArea), messagesHost_(new QWidget), messagesLayout_(new QVBoxLayout(messagesHost_)),
      emptyHint_(new QLabel), input_(new ChatInput), sendButton_(new QPushButton(tr("Send"))),
      stopButton_(new QPushButton(tr("Stop"))), regenerateButton_(new QPushButton(tr("Regenerate"))),
      newChatButton_(new QPushButton(tr("New chat"))), modelBox_(new QComboBox), modelStatus_(new QLabel),
      systemPrompt_(new QPlainTextEdit), temperature_(doubleBox(0, 2, 0.05, 2)), topP_(doubleBox(0.05, 1, 0.05, 2)),
      topK_(intBox(0, 1000)), maxTokens_(intBox(1, 32768)), presencePenalty_(doubleBox(-2, 2, 0.1, 2)),
      repetitionPenalty_(doubleBox(1, 2, 0.05, 2)), seed_(intBox(0, 2147483647)),
      thinking_(new QComboBox), firstTokenLabel_(new QLabel(tr("–"))),
      tokensPerSecondLabel_(new QLabel(tr("–"))), replyTokensLabel_(new QLabel(tr("–"))), promptLabel_(new QLabel(tr("–"))),
      expertUsageBox_(new QGroupBox(tr("Expert usage (last reply)"))), expertUsage_(new ExpertUsageView), routingLabel_(new QLabel),
      expertBudget_(new QLineEdit), expertBudgetHint_(new QLabel), quantize_(new QComboBox),
      expertCacheBox_(new QGroupBox(tr("Expert cache (last reply)"))), cacheHits_(new QLabel), cacheMisses_(new QLabel),
      cacheHitRate_(new QLabel), cacheUploaded_(new QLabel), errorLabel_(new QLabel), streamTimer_(new QTimer(this)) {
    // Left: saved conversations.
    auto* left = new QWidget;
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->setContentsMargins(0, 0, 0, 0);
    newChatButton_->setIcon(style()->standardIcon(QStyle::SP_FileIcon));
    leftLayout->addWidget(newChatButton_);
    leftLayout->addWidget(new QLabel(tr("Conversations")));
    leftLayout->addWidget(conversations_, 1);
    conversations_->setToolTip(tr("Saved conversations: click one to reopen it"));

    // Middle: messages + input.
    messagesLayout_->setContentsMargins(8, 8, 8, 8);
    messagesLayout_->setSpacing(10);
    emptyHint_->setText(tr("Choose a model on the right, then type a message below.\n"
                           "Enter sends, Shift+Enter starts a new line."));
    emptyHint_->setAlignment(Qt::AlignCenter);
    emptyHint_->setStyleSheet(QStringLiteral("color: palette(mid); padding: 40px;"));
    messagesLayout_->addWidget(emptyHint_);
    messagesLayout_->addStretch(1);
    scroll_->setWidget(messagesHost_);
    scroll_->setWidgetResizable(true);
    scroll_->setFrameShape(QFrame::NoFrame);

    input_->setPlaceholderText(tr("Message the model… (Enter sends, Shift+Enter for a new line)"));
    input_->setFixedHeight(72);
    sendButton_->setIcon(style()->standardIcon(QStyle::SP_ArrowRight));
    sendButton_->setDefault(true);
    stopButton_->setIcon(style()->standardIcon(QStyle::SP_MediaStop));
    regenerateButton_->setIcon(style()->standardIcon(QStyle::SP_BrowserReload));
    errorLabel_->setWordWrap(true);
    errorLabel_->setStyleSheet(QStringLiteral("color: #c02020;"));
    errorLabel_->setVisible(false);
    errorLabel_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(regenerateButton_);
    buttons->addStretch(1);
    buttons->addWidget(stopButton_);
    buttons->addWidget(sendButton_);

    auto* middle = new QWidget;
    auto* middleLayout = new QVBoxLayout(middle);
    middleLayout->setContentsMargins(0, 0, 0, 0);
    middleLayout->addWidget(scroll_, 1);
    middleLayout->addWidget(errorLabel_);
    middleLayout->addWidget(input_);
    middleLayout->addLayout(buttons);

    // Right: model, system prompt, sampling, figures.
    auto* panel = new QWidget;
    buildSidePanel(panel);
    auto* panelScroll = new QScrollArea;
    panelScroll->setWidget(panel);
    panelScroll->setWidgetResizable(true);
    panelScroll->setFrameShape(QFrame::NoFrame);
    panelScroll->setMinimumWidth(270);

    auto* splitter = new QSplitter;
    splitter->addWidget(left);
    splitter->addWidget(middle);
    splitter->addWidget(panelScroll);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setStretchFactor(2, 0);
    splitter->setSizes({200, 640, 290});
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(splitter);

    // Streaming text is re-rendered as Markdown at most every 40 ms.
    streamTimer_->setSingleShot(true);
    streamTimer_->setInterval(40);
    connect(streamTimer_, &QTimer::timeout, this, &ChatPage::flushStreaming);

    connect(input_, &ChatInput::submitted, sendButton_, &QPushButton::click);
    connect(sendButton_, &QPushButton::clicked, this, [this] {
        readSettingsFromPanel();
        if (controller_->send(input_->toPlainText())) input_->clear();
    });
    // Stop ends a reply, or a model load (which frees what it had uploaded).
    connect(stopButton_, &QPushButton::clicked, this, [this] {
        if (controller_->isModelLoading()) controller_->cancelLoad();
        else controller_->stop();
    });
    connect(regenerateButton_, &QPushButton::clicked, this, [this] {
        readSettingsFromPanel();
        controller_->regenerate();
    });
    connect(newChatButton_, &QPushButton::clicked, controller_, &ChatController::newChat);
    connect(conversations_, &QListWidget::itemClicked, this, [this](QListWidgetItem* item) {
        controller_->openConversation(item->data(Qt::UserRole).toString());
    });
    connect(modelBox_, &QComboBox::activated, this, [this](int index) {
        const QString path = modelBox_->itemData(index).toString();
        if (!path.isEmpty() && path != controller_->modelInfo().path) controller_->loadModel(path);
    });

    connect(controller_, &ChatController::modelLoadStarted, this, [this](const QString& path) {
        modelStatus_->setText(tr("Loading %1…").arg(QFileInfo(path).fileName()));
        updateButtons();
    });
    connect(controller_, &ChatController::modelLoaded, this, [this](const LoadedModelInfo& info) {
        modelStatus_->setText(tr("%1 · %2 · %3 layers · context %4\n%5 · loaded in %6 s%7")
                                  .arg(info.name, info.architecture)
                                  .arg(info.layers)
                                  .arg(info.contextLength)
                                  .arg(info.device)
                                  .arg(info.loadSeconds, 0, 'f', 2)
                                  .arg(info.chatTemplate ? QString() : tr("\nno chat template: plain \"role: text\" lines")));
        if (!info.quantize.isEmpty())
            modelStatus_->setText(modelStatus_->text() + tr("\nquantized on load: %1 · %2 of weights on the device")
                                                             .arg(info.quantize, humanBytes(qint64(info.deviceBytes))));
        expertUsageBox_->setVisible(!info.moeLayers.isEmpty());
        expertUsage_->clear();
        routingLabel_->setVisible(!info.moeLayers.isEmpty());
        routingLabel_->setText(info.moeLayers.isEmpty() ? QString() : tr("Routing: %1, top-%2").arg(info.routing).arg(info.topK));
        expertCacheBox_->setVisible(false);
        showExpertBudgetHint();
        // A MoE built in this session is listed too, so the box shows what runs.
        if (info.path.startsWith(QStringLiteral("moe:")) && modelBox_->findData(info.path) < 0)
            modelBox_->addItem(tr("%1 (built MoE)").arg(info.name), info.path);
        errorLabel_->setVisible(false);
        const int row = modelBox_->findData(info.path);
        if (row >= 0) modelBox_->setCurrentIndex(row);
        emit statusMessage(tr("Model %1 ready on %2").arg(info.name, info.device));
        updateButtons();
    });
    connect(controller_, &ChatController::modelLoadFailed, this, [this](const QString& path, const QString& error) {
        modelStatus_->setText(tr("Could not load %1").arg(QFileInfo(path).fileName()));
        errorLabel_->setText(error);
        errorLabel_->setVisible(true);
        updateButtons();
    });
    connect(controller_, &ChatController::modelLoadCancelled, this, [this](const QString& path) {
        modelStatus_->setText(tr("Loading %1 stopped").arg(QFileInfo(path).fileName()));
        updateButtons();
    });
    connect(controller_, &ChatController::conversationReset, this, &ChatPage::rebuildMessages);
    connect(controller_, &ChatController::messageAdded, this, &ChatPage::appendMessage);
    connect(controller_, &ChatController::replyUpdated, this, [this](int index, const QString& text) {
        streamingIndex_ = index;
        streamingText_ = text;
        if (!streamTimer_->isActive()) streamTimer_->start();
    });
    connect(controller_, &ChatController::replyFinished, this, [this](int index, const ReplyStats& stats) {
        streamTimer_->stop();
        streamingIndex_ = -1;
        if (index < messages_.size()) {
            const ChatEntry& m = controller_->conversation().messages[index];
            messages_[index]->setContent(m.content, false);
            messages_[index]->setFooter(replyFooter(m));
        }
        showReplyStats(stats);
        scrollToBottom();
    });
    connect(controller_, &ChatController::generatingChanged, this, [this](bool) { updateButtons(); });
    connect(controller_, &ChatController::conversationListChanged, this, &ChatPage::refreshConversations);
    connect(controller_, &ChatController::errorOccurred, this, [this](const QString& message) {
        errorLabel_->setText(message);
        errorLabel_->setVisible(true);
    });
    connect(library_, &ModelLibrary::scanFinished, this, &ChatPage::refreshModels);

    expertUsageBox_->setVisible(false);
    refreshModels();
    refreshConversations();
    rebuildMessages();
    updateButtons();
}

void ChatPage::buildSidePanel(QWidget* panel) {
    auto* layout = new QVBoxLayout(panel);
    layout->setContentsMargins(4, 0, 4, 0);

    auto* modelGroup = new QGroupBox(tr("Model"));
    auto* modelLayout = new QVBoxLayout(modelGroup);
    modelBox_->setPlaceholderText(tr("Choose a model…"));
    modelBox_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    modelStatus_->setWordWrap(true);
    modelStatus_->setText(tr("No model loaded."));
    modelStatus_->setStyleSheet(QStringLiteral("color: palette(mid);"));
    modelLayout->addWidget(modelBox_);
    modelLayout->addWidget(modelStatus_);
    // Experts under a memory budget: the engine keeps this much expert weight
    // on the device and uploads the rest from the memory-mapped checkpoint
    // when routing asks for it.
    auto* budgetRow = new QHBoxLayout;
    auto* budgetLabel = new QLabel(tr("Expert budget"));
    budgetLabel->setBuddy(expertBudget_);
    expertBudget_->setPlaceholderText(tr("off (all experts on the device)"));
    expertBudget_->setToolTip(tr("Keep at most this much expert weight on the device (512MB, 2GB); the rest stays "
                                 "memory-mapped on the host and is uploaded when routing asks for it. The least "
                                 "frequently used experts make room. Replies are the same with any budget."));
    expertBudget_->setClearButtonEnabled(true);
    budgetRow->addWidget(budgetLabel);
    budgetRow->addWidget(expertBudget_, 1);
    modelLayout->addLayout(budgetRow);
    expertBudgetHint_->setWordWrap(true);
    expertBudgetHint_->setStyleSheet(QStringLiteral("color: palette(mid);"));
    modelLayout->addWidget(expertBudgetHint_);
    // Quantize on load: the engine quantizes 16/32-bit weights on the worker
    // thread while the model loads.
    auto* quantizeRow = new QHBoxLayout;
    auto* quantizeLabel = new QLabel(tr("Quantize on load"));
    quantizeLabel->setBuddy(quantize_);
    quantize_->setObjectName(QStringLiteral("quantizeOnLoad"));
    quantize_->addItem(tr("Off"), QString());
    quantize_->addItem(tr("Q8_0"), QStringLiteral("q8_0"));
    quantize_->addItem(tr("Q4_K (Q4_K_M mix)"), QStringLiteral("q4_k"));
    quantize_->addItem(tr("Q4_0"), QStringLiteral("q4_0"));
    quantize_->setToolTip(tr("Quantize the model's 16/32-bit weights while it loads: less device memory and faster "
                             "decoding for a little accuracy. Q4_K uses llama.cpp's Q4_K_M mix (Q6_K for the output "
                             "head and some V and FFN-down matrices). Weights already quantized in a GGUF file stay as "
                             "they are; Off leaves a built MoE's selector to its own quantize key. Applies to models "
                             "loaded after the change: choose the model again to reload it."));
    quantizeRow->addWidget(quantizeLabel);
    quantizeRow->addWidget(quantize_, 1);
    modelLayout->addLayout(quantizeRow);
    connect(quantize_, &QComboBox::currentIndexChanged, this, &ChatPage::applyQuantizeChoice);
    connect(expertBudget_, &QLineEdit::editingFinished, this, &ChatPage::applyExpertBudgetText);
    connect(controller_, &ChatController::expertBudgetApplied, this, &ChatPage::showExpertBudgetHint);
    layout->addWidget(modelGroup);

    auto* systemGroup = new QGroupBox(tr("System prompt"));
    auto* systemLayout = new QVBoxLayout(systemGroup);
    systemPrompt_->setPlaceholderText(tr("Optional instructions for the assistant"));
    systemPrompt_->setMaximumHeight(80);
    systemLayout->addWidget(systemPrompt_);
    layout->addWidget(systemGroup);

    auto* samplingGroup = new QGroupBox(tr("Sampling"));
    auto* form = new QFormLayout(samplingGroup);
    temperature_->setToolTip(tr("0 = always the most likely token"));
    topK_->setSpecialValueText(tr("off"));
    seed_->setSpecialValueText(tr("random"));
    form->addRow(tr("Temperature"), temperature_);
    form->addRow(tr("Top-p"), topP_);
    form->addRow(tr("Top-k"), topK_);
    form->addRow(tr("Max tokens"), maxTokens_);
    form->addRow(tr("Presence penalty"), presencePenalty_);
    form->addRow(tr("Repetition penalty"), repetitionPenalty_);
    form->addRow(tr("Seed"), seed_);
    thinking_->setObjectName(QStringLiteral("thinking"));
    thinking_->addItem(tr("Template default"), QString());
    thinking_->addItem(tr("On"), QStringLiteral("on"));
    thinking_->addItem(tr("Off"), QStringLiteral("off"));
    thinking_->setToolTip(tr("The chat template's enable_thinking switch: Qwen3 thinks (<think>…</think>) before "
                             "answering unless it is off. Templates without the switch ignore it."));
    form->addRow(tr("Thinking"), thinking_);
    layout->addWidget(samplingGroup);

    auto* statsGroup = new QGroupBox(tr("Last reply"));
    auto* stats = new QFormLayout(statsGroup);
    stats->addRow(tr("First token"), firstTokenLabel_);
    stats->addRow(tr("Speed"), tokensPerSecondLabel_);
    stats->addRow(tr("Tokens"), replyTokensLabel_);
    stats->addRow(tr("Prompt"), promptLabel_);
    layout->addWidget(statsGroup);

    auto* usageLayout = new QVBoxLayout(expertUsageBox_);
    routingLabel_->setWordWrap(true);
    usageLayout->addWidget(routingLabel_);
    usageLayout->addWidget(expertUsage_);
    connect(controller_, &ChatController::expertUsageUpdated, this, [this](const QVector<QVector<int>>& usage) {
        showExpertUsage(usage);
    });
    layout->addWidget(expertUsageBox_);

    auto* cache = new QFormLayout(expertCacheBox_);
    cacheHits_->setObjectName(QStringLiteral("expertCacheHits"));
    cacheMisses_->setObjectName(QStringLiteral("expertCacheMisses"));
    cacheHitRate_->setObjectName(QStringLiteral("expertCacheHitRate"));
    cacheUploaded_->setObjectName(QStringLiteral("expertCacheUploaded"));
    cache->addRow(tr("Hits"), cacheHits_);
    cache->addRow(tr("Misses"), cacheMisses_);
    cache->addRow(tr("Hit rate"), cacheHitRate_);
    cache->addRow(tr("Uploaded"), cacheUploaded_);
    expertCacheBox_->setToolTip(tr("Expert uses during the last reply whose weights were on the device (hits) or "
                                   "had to be uploaded first (misses)"));
    expertCacheBox_->setVisible(false);
    layout->addWidget(expertCacheBox_);
    layout->addStretch(1);

    const GenerationSettings defaults;
    temperature_->setValue(defaults.temperature);
    topP_->setValue(defaults.topP);
    topK_->setValue(defaults.topK);
    maxTokens_->setValue(defaults.maxTokens);
    presencePenalty_->setValue(defaults.presencePenalty);
    repetitionPenalty_->setValue(defaults.repetitionPenalty);
    seed_->setValue(int(defaults.seed));
}

void ChatPage::applySettings(const GenerationSettings& s) {
    temperature_->setValue(s.temperature);
    topP_->setValue(s.topP);
    topK_->setValue(s.topK);
    maxTokens_->setValue(s.maxTokens);
    presencePenalty_->setValue(s.presencePenalty);
    repetitionPenalty_->setValue(s.repetitionPenalty);
    seed_->setValue(int(s.seed));
    thinking_->setCurrentIndex(std::max(0, thinking_->findData(s.thinking)));
    readSettingsFromPanel();
}

void ChatPage::readSettingsFromPanel() {
    GenerationSettings& s = controller_->settings();
    s.temperature = temperature_->value();
    s.topP = topP_->value();
    s.topK = topK_->value();
    s.maxTokens = maxTokens_->value();
    s.presencePenalty = presencePenalty_->value();
    s.repetitionPenalty = repetitionPenalty_->value();
    s.seed = quint64(seed_->value());
    s.thinking = thinking_->currentData().toString();
    controller_->setSystemPrompt(systemPrompt_->toPlainText());
}

void ChatPage::loadSettings() {
    QSettings settings;
    settings.beginGroup(QStringLiteral("chat"));
    const GenerationSettings d;
    temperature_->setValue(settings.value(QStringLiteral("temperature"), d.temperature).toDouble());
    topP_->setValue(settings.value(QStringLiteral("topP"), d.topP).toDouble());
    topK_->setValue(settings.value(QStringLiteral("topK"), d.topK).toInt());
    maxTokens_->setValue(settings.value(QStringLiteral("maxTokens"), d.maxTokens).toInt());
    presencePenalty_->setValue(settings.value(QStringLiteral("presencePenalty"), d.presencePenalty).toDouble());
    repetitionPenalty_->setValue(settings.value(QStringLiteral("repetitionPenalty"), d.repetitionPenalty).toDouble());
    seed_->setValue(settings.value(QStringLiteral("seed"), 0).toInt());
    thinking_->setCurrentIndex(std::max(0, thinking_->findData(settings.value(QStringLiteral("thinking")).toString())));
    systemPrompt_->setPlainText(settings.value(QStringLiteral("systemPrompt")).toString());
    expertBudget_->setText(settings.value(QStringLiteral("expertBudget")).toString());
    quantize_->setCurrentIndex(std::max(0, quantize_->findData(settings.value(QStringLiteral("quantize")).toString())));
    pendingModel_ = settings.value(QStringLiteral("model")).toString();
    settings.endGroup();
    readSettingsFromPanel();
    applyExpertBudgetText(); // before the last session's model loads
    applyQuantizeChoice();
    refreshModels();
}

void ChatPage::saveSettings() const {
    QSettings settings;
    settings.beginGroup(QStringLiteral("chat"));
    settings.setValue(QStringLiteral("temperature"), temperature_->value());
    settings.setValue(QStringLiteral("topP"), topP_->value());
    settings.setValue(QStringLiteral("topK"), topK_->value());
    settings.setValue(QStringLiteral("maxTokens"), maxTokens_->value());
    settings.setValue(QStringLiteral("presencePenalty"), presencePenalty_->value());
    settings.setValue(QStringLiteral("repetitionPenalty"), repetitionPenalty_->value());
    settings.setValue(QStringLiteral("seed"), seed_->value());
    settings.setValue(QStringLiteral("thinking"), thinking_->currentData().toString());
    settings.setValue(QStringLiteral("systemPrompt"), systemPrompt_->toPlainText());
    settings.setValue(QStringLiteral("expertBudget"), expertBudget_->text().trimmed());
    settings.setValue(QStringLiteral("quantize"), quantize_->currentData().toString());
    if (controller_->isModelLoaded()) settings.setValue(QStringLiteral("model"), controller_->modelInfo().path);
    settings.endGroup();
}

void ChatPage::chooseModel(const QString& path) {
    const int row = modelBox_->findData(path);
    if (row >= 0) modelBox_->setCurrentIndex(row);
    readSettingsFromPanel();
    controller_->loadModel(path);
}

void ChatPage::refreshModels() {
    const QString current = controller_->isModelLoaded() ? controller_->modelInfo().path : modelBox_->currentData().toString();
    modelBox_->clear();
    for (const ModelEntry& e : library_->entries())
        if (e.isChatLoadable())
            modelBox_->addItem(style()->standardIcon(e.gguf ? QStyle::SP_FileIcon : QStyle::SP_DirIcon), QStringLiteral("%1  (%2)").arg(e.name, kindName(e.kind)),
                               e.path);
    const int row = modelBox_->findData(current);
    modelBox_->setCurrentIndex(row);
    // The model of the last session loads once the library lists it.
    if (!pendingModel_.isEmpty() && !controller_->isModelLoaded() && !controller_->isModelLoading()) {
        const int pending = modelBox_->findData(pendingModel_);
        if (pending >= 0) {
            pendingModel_.clear();
            chooseModel(modelBox_->itemData(pending).toString());
        }
    }
}

void ChatPage::refreshConversations() {
    conversations_->clear();
    for (const ConversationSummary& s : controller_->store().list()) {
        auto* item = new QListWidgetItem(style()->standardIcon(QStyle::SP_FileDialogDetailedView), s.title);
        item->setData(Qt::UserRole, s.id);
        item->setToolTip(tr("%1 messages · %2").arg(s.messages).arg(QLocale().toString(s.updated, QLocale::ShortFormat)));
        conversations_->addItem(item);
        if (s.id == controller_->conversation().id) item->setSelected(true);
    }
}

void ChatPage::rebuildMessages() {
    streamTimer_->stop();
    for (MessageWidget* w : messages_) w->deleteLater();
    messages_.clear();
    const auto& list = controller_->conversation().messages;
    for (int i = 0; i < list.size(); ++i) appendMessage(i);
    emptyHint_->setVisible(list.isEmpty());
    systemPrompt_->setPlainText(controller_->conversation().systemPrompt);
    refreshConversations();
}

void ChatPage::appendMessage(int index) {
    const ChatEntry& m = controller_->conversation().messages[index];
    auto* w = new MessageWidget(m, messagesHost_);
    w->setFooter(replyFooter(m));
    // Before the stretch at the end.
    messagesLayout_->insertWidget(messagesLayout_->count() - 1, w);
    messages_.push_back(w);
    emptyHint_->setVisible(false);
    scrollToBottom();
}

void ChatPage::flushStreaming() {
    if (streamingIndex_ >= 0 && streamingIndex_ < messages_.size()) {
        messages_[streamingIndex_]->setContent(streamingText_, true);
        scrollToBottom();
    }
}

void ChatPage::scrollToBottom() {
    QTimer::singleShot(0, this, [this] { scroll_->verticalScrollBar()->setValue(scroll_->verticalScrollBar()->maximum()); });
}

void ChatPage::showReplyStats(const ReplyStats& stats) {
    firstTokenLabel_->setText(tr("%1 s").arg(stats.secondsToFirstToken, 0, 'f', 3));
    tokensPerSecondLabel_->setText(tr("%1 tokens/s").arg(stats.tokensPerSecond, 0, 'f', 1));
    replyTokensLabel_->setText(tr("%1 (%2)").arg(stats.generatedTokens).arg(stats.stopReason));
    QString prompt = tr("%1 tokens, %2 reused").arg(stats.promptTokens).arg(stats.reusedTokens);
    if (stats.droppedMessages > 0) prompt += tr("\n%1 oldest messages left out to fit").arg(stats.droppedMessages);
    promptLabel_->setText(prompt);
    if (!stats.expertUsage.isEmpty()) showExpertUsage(stats.expertUsage);
    showExpertCache(stats.expertCache);
    const LoadedModelInfo& info = controller_->modelInfo();
    if (!info.moeLayers.isEmpty()) {
        QString text = tr("Routing: %1, top-%2").arg(info.routing).arg(info.topK);
        if (!stats.likelihoodPick.isEmpty()) {
            text += tr("\nPicked %1 for the prompt; prompt loss:").arg(stats.likelihoodPick);
            for (int i = 0; i < stats.likelihoodSlots.size(); ++i)
                text += QStringLiteral("\n  %1  %2").arg(stats.likelihoodSlots[i]).arg(stats.likelihoodLoss.value(i), 0, 'f', 3);
        }
        routingLabel_->setText(text);
    }
}

void ChatPage::showExpertUsage(const QVector<QVector<int>>& usage) {
    const LoadedModelInfo& info = controller_->modelInfo();
    QStringList layers;
    for (int l : info.moeLayers) layers << tr("L%1").arg(l);
    expertUsage_->setUsage(usage, info.expertNames, layers);
}

void ChatPage::applyExpertBudgetText() {
    const QString text = expertBudget_->text().trimmed();
    quint64 bytes = 0;
    if (!text.isEmpty()) {
        try {
            bytes = moe::parseByteSize(text.toStdString());
        } catch (const moe::Error&) {
            errorLabel_->setText(tr("Expert budget \"%1\": give a size such as 512MB or 2GB, or leave it empty for "
                                    "every expert on the device.").arg(text));
            errorLabel_->setVisible(true);
            return;
        }
    }
    if (bytes == controller_->expertBudget()) return;
    controller_->setExpertBudget(bytes);
}

void ChatPage::applyQuantizeChoice() {
    const QString name = quantize_->currentData().toString();
    std::optional<moe::QuantizeScheme> scheme;
    if (!name.isEmpty()) scheme = moe::parseQuantizeScheme(name.toStdString());
    if (scheme == controller_->quantize()) return;
    controller_->setQuantize(scheme);
}

void ChatPage::showExpertBudgetHint() {
    const LoadedModelInfo& info = controller_->modelInfo();
    if (!controller_->isModelLoaded() || info.expertBytes == 0) {
        expertBudgetHint_->setText(controller_->isModelLoaded() ? tr("This model has no routed experts.") : QString());
        return;
    }
    const QString total = humanBytes(qint64(info.expertBytes));
    expertBudgetHint_->setText(info.expertBudget
                                   ? tr("%1 of %2 of experts on the device at most").arg(humanBytes(qint64(info.expertBudget)), total)
                                   : tr("Experts: %1, all on the device").arg(total));
}

void ChatPage::showExpertCache(const ExpertCacheFigures& f) {
    expertCacheBox_->setVisible(f.budgetBytes > 0);
    if (f.budgetBytes == 0) return;
    cacheHits_->setText(QString::number(f.hits));
    cacheMisses_->setText(tr("%1 (%2 evictions)").arg(f.misses).arg(f.evictions));
    cacheHitRate_->setText(tr("%1 %").arg(100.0 * f.hitRate(), 0, 'f', 1));
    cacheUploaded_->setText(tr("%1 per token (%2 tokens)")
                                .arg(humanBytes(qint64(f.bytesUploadedPerToken() + 0.5)))
                                .arg(f.tokens));
}

void ChatPage::updateButtons() {
    const bool generating = controller_->isGenerating();
    const bool ready = controller_->isModelLoaded();
    sendButton_->setEnabled(ready && !generating);
    stopButton_->setEnabled(generating || controller_->isModelLoading());
    regenerateButton_->setEnabled(ready && !generating && !controller_->conversation().messages.isEmpty());
    modelBox_->setEnabled(!generating);
}

QString ChatPage::statusText() const { return modelStatus_->text(); }

} // namespace moe::ui
