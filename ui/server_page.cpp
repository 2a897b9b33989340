#include "server_page.h"

#include "build_controller.h"
#include "model_library.h"
#include "model_scanner.h"

#include <QComboBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStyle>
#include <QTableWidget>
#include <QVBoxLayout>

namespace moe::ui {

namespace {
enum LogColumn { Time, Method, Path, Status, Tokens, Seconds, LogColumns };
} // namespace

ServerPage::ServerPage(ServerController* controller, ModelLibrary* library, BuildController* builder, QWidget* parent)
    : QWidget(parent), controller_(controller), library_(library), builder_(builder), switch_(new QPushButton),
      host_(new QLineEdit(QStringLiteral("127.0.0.1"))), port_(new QSpinBox), apiKey_(new QLineEdit),
      modelBox_(new QComboBox), parallel_(new QSpinBox), state_(new QLabel), address_(new QLabel),
      inFlight_(new QLabel), error_(new QLabel), progress_(new QProgressBar), logTable_(new QTableWidget(0, LogColumns)) {
    auto* layout = new QVBoxLayout(this);

    auto* title = new QLabel(tr("<h2>Local server</h2>An OpenAI-compatible API (<tt>/v1/models</tt>, "
                                "<tt>/v1/chat/completions</tt>, <tt>/v1/completions</tt>) for editors, agents and "
                                "scripts that talk to LM Studio or llama.cpp."));
    title->setWordWrap(true);
    layout->addWidget(title);

    auto* settingsBox = new QGroupBox(tr("Server"));
    auto* form = new QFormLayout(settingsBox);
    switch_->setCheckable(true);
    switch_->setMinimumWidth(140);
    auto* switchRow = new QHBoxLayout;
    switchRow->addWidget(switch_);
    switchRow->addStretch(1);
    form->addRow(tr("Serve"), switchRow);
    modelBox_->setPlaceholderText(tr("Choose a model…"));
    modelBox_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    form->addRow(tr("Model"), modelBox_);
    host_->setToolTip(tr("127.0.0.1 serves this machine only; another address exposes the model to the network."));
    form->addRow(tr("Host"), host_);
    port_->setRange(1, 65535);
    port_->setValue(8080);
    form->addRow(tr("Port"), port_);
    apiKey_->setEchoMode(QLineEdit::Password);
    apiKey_->setPlaceholderText(tr("optional: clients then send \"Authorization: Bearer KEY\""));
    apiKey_->setClearButtonEnabled(true);
    form->addRow(tr("API key"), apiKey_);
    parallel_->setRange(1, 64);
    parallel_->setValue(4);
    parallel_->setToolTip(tr("Conversations served at once, each with its own KV cache."));
    form->addRow(tr("Parallel"), parallel_);
    layout->addWidget(settingsBox);

    auto* statusBox = new QGroupBox(tr("Status"));
    auto* status = new QFormLayout(statusBox);
    status->addRow(tr("State"), state_);
    progress_->setVisible(false);
    status->addRow(progress_);
    address_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    status->addRow(tr("Address"), address_);
    status->addRow(tr("In flight"), inFlight_);
    error_->setWordWrap(true);
    error_->setStyleSheet(QStringLiteral("color: #c02020;"));
    error_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    error_->setVisible(false);
    status->addRow(error_);
    layout->addWidget(statusBox);

    logTable_->setHorizontalHeaderLabels({tr("Time"), tr("Method"), tr("Path"), tr("Status"), tr("Tokens"), tr("Seconds")});
    logTable_->horizontalHeader()->setSectionResizeMode(Path, QHeaderView::Stretch);
    logTable_->verticalHeader()->setVisible(false);
    logTable_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    logTable_->setSelectionBehavior(QAbstractItemView::SelectRows);
    layout->addWidget(new QLabel(tr("Requests")));
    layout->addWidget(logTable_, 1);

    connect(switch_, &QPushButton::toggled, this, &ServerPage::onSwitch);
    connect(controller_, &ServerController::stateChanged, this, &ServerPage::showState);
    connect(controller_, &ServerController::loadProgress, this, [this](int done, int total) {
        progress_->setRange(0, std::max(total, 1));
        progress_->setValue(done);
    });
    connect(controller_, &ServerController::requestsInFlightChanged, this,
            [this](int n) { inFlight_->setText(QString::number(n)); });
    connect(controller_, &ServerController::requestLogged, this, &ServerPage::appendLog);
    connect(controller_, &ServerController::errorOccurred, this, [this](const QString& message) {
        error_->setText(message);
        error_->setVisible(true);
    });
    connect(library_, &ModelLibrary::scanFinished, this, &ServerPage::refreshModels);
    if (builder_) connect(builder_, &BuildController::finished, this, &ServerPage::refreshModels);

    refreshModels();
    showState(controller_->state());
}

ServerSettings ServerPage::settings() const {
    ServerSettings s;
    s.host = host_->text().trimmed();
    s.port = port_->value();
    s.apiKey = apiKey_->text();
    s.modelPath = modelBox_->currentData().toString();
    s.parallel = parallel_->value();
    return s;
}

void ServerPage::onSwitch(bool on) {
    const ServerController::State s = controller_->state();
    if (on && s == ServerController::State::Stopped) {
        if (!controller_->start(settings())) showState(controller_->state()); // puts the switch back off
    } else if (!on && (s == ServerController::State::Starting || s == ServerController::State::Running)) {
        controller_->stop();
    }
}

void ServerPage::showState(ServerController::State state) {
    using State = ServerController::State;
    const bool on = state == State::Starting || state == State::Running;
    {
        const QSignalBlocker block(switch_);
        switch_->setChecked(on);
    }
    switch_->setText(on ? tr("On — stop") : tr("Off — start"));
    switch_->setEnabled(state != State::Stopping);
    for (QWidget* w : std::initializer_list<QWidget*>{host_, port_, apiKey_, modelBox_, parallel_})
        w->setEnabled(state == State::Stopped);
    progress_->setVisible(state == State::Starting);
    if (state == State::Starting) error_->setVisible(false); // a new start: the last error is history
    if (state == State::Starting) progress_->setRange(0, 0); // busy until the first tensor
    switch (state) {
    case State::Stopped: state_->setText(tr("Stopped")); break;
    case State::Starting: state_->setText(tr("Loading %1…").arg(modelBox_->currentText())); break;
    case State::Running: state_->setText(tr("Serving \"%1\"").arg(controller_->modelName())); break;
    case State::Stopping: state_->setText(tr("Stopping…")); break;
    }
    address_->setText(state == State::Running ? controller_->address() : tr("—"));
    inFlight_->setText(QString::number(controller_->requestsInFlight()));
}

void ServerPage::appendLog(const ServerLogEntry& e) {
    // Newest on top; as many rows as the controller keeps.
    logTable_->insertRow(0);
    const QString cells[LogColumns] = {
        e.time.toString(QStringLiteral("HH:mm:ss")),
        e.method,
        e.path,
        QString::number(e.status),
        e.promptTokens || e.completionTokens ? tr("%1 + %2").arg(e.promptTokens).arg(e.completionTokens) : QString(),
        QString::number(e.seconds, 'f', 2)};
    for (int c = 0; c < LogColumns; ++c) {
        auto* item = new QTableWidgetItem(cells[c]);
        if (c == Status && e.status >= 400) item->setForeground(QColor(0xc0, 0x20, 0x20));
        logTable_->setItem(0, c, item);
    }
    while (logTable_->rowCount() > ServerController::kMaxLogEntries) logTable_->removeRow(logTable_->rowCount() - 1);
}

QString ServerPage::statusText() const {
    QString text = state_->text();
    if (!address_->text().isEmpty()) text += QStringLiteral(" | ") + address_->text();
    if (error_->isVisible()) text += QStringLiteral(" | ") + error_->text();
    return text;
}

bool ServerPage::chooseModel(const QString& path) {
    const int row = modelBox_->findData(path);
    if (row < 0) return false;
    modelBox_->setCurrentIndex(row);
    pendingModel_.clear();
    return true;
}

void ServerPage::refreshModels() {
    const QString current = modelBox_->currentData().toString();
    modelBox_->clear();
    for (const ModelEntry& e : library_->entries())
        if (e.isChatLoadable() || e.kind == ModelKind::NativeMoe)
            modelBox_->addItem(style()->standardIcon(e.gguf ? QStyle::SP_FileIcon : QStyle::SP_DirIcon),
                               QStringLiteral("%1  (%2)").arg(e.name, kindName(e.kind)), e.path);
    // The MoE built in this session, reopened from its selector and saved
    // gates: the server gets its own copy, apart from the chat's.
    if (builder_ && builder_->builtMoe() && !builder_->selector().file.empty()) {
        const QString selector = QString::fromStdString(builder_->selector().file.string());
        modelBox_->addItem(style()->standardIcon(QStyle::SP_FileDialogNewFolder),
                           tr("%1  (built MoE)").arg(QFileInfo(selector).completeBaseName()), selector);
    }
    const int row = modelBox_->findData(current);
    if (row >= 0) modelBox_->setCurrentIndex(row);
    if (!pendingModel_.isEmpty() && chooseModel(pendingModel_)) pendingModel_.clear();
}

void ServerPage::loadSettings() {
    QSettings settings;
    settings.beginGroup(QStringLiteral("server"));
    host_->setText(settings.value(QStringLiteral("host"), QStringLiteral("127.0.0.1")).toString());
    port_->setValue(settings.value(QStringLiteral("port"), 8080).toInt());
    parallel_->setValue(settings.value(QStringLiteral("parallel"), 4).toInt());
    const QString model = settings.value(QStringLiteral("model")).toString();
    settings.endGroup();
    if (!model.isEmpty() && !chooseModel(model)) pendingModel_ = model;
}

// The API key is not saved: it would sit in plain text in the settings file.
void ServerPage::saveSettings() const {
    QSettings settings;
    settings.beginGroup(QStringLiteral("server"));
    settings.setValue(QStringLiteral("host"), host_->text().trimmed());
    settings.setValue(QStringLiteral("port"), port_->value());
    settings.setValue(QStringLiteral("parallel"), parallel_->value());
    settings.setValue(QStringLiteral("model"), modelBox_->currentData().toString());
    settings.endGroup();
}

} // namespace moe::ui
