// Engine headers with members named `slots` come before any Qt header (Qt's
// `slots` keyword is a macro).
#include "moe/builder.h"
#include "moe/runnable_model.h"

#include "training_page.h"

#include "build_controller.h"
#include "export_dialog.h"
#include "training_view.h"

#include <QComboBox>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QStyle>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>

namespace moe::ui {

namespace {
QString stageName(const QString& stage) {
    if (stage == QLatin1String("validate")) return TrainingPage::tr("Checking the selection");
    if (stage == QLatin1String("capture")) return TrainingPage::tr("Capturing the base model's MLP inputs");
    if (stage == QLatin1String("train")) return TrainingPage::tr("Training the gates");
    if (stage == QLatin1String("gates")) return TrainingPage::tr("Computing the gates");
    if (stage == QLatin1String("routing")) return TrainingPage::tr("Choosing the routing mode on the validation prompts");
    if (stage == QLatin1String("experts")) return TrainingPage::tr("Loading the experts");
    return stage;
}
} // namespace

TrainingPage::TrainingPage(BuildController* controller, QWidget* parent)
    : QWidget(parent), controller_(controller), view_(new TrainingView), stage_(new QLabel),
      accuracyTable_(new QTableWidget(0, 3)), confusionLayer_(new QComboBox), routingSummary_(new QLabel),
      chatButton_(new QPushButton(tr("Chat with this MoE"))), exportButton_(new QPushButton(tr("Export…"))), results_(new QGroupBox(tr("Routing on the validation prompts"))) {
    stage_->setWordWrap(true);
    stage_->setText(tr("No build yet: start one from the Build page (New MoE… or Open selector…). "
                       "Loss curves, validation accuracy and the routing confusion matrix appear here."));
    accuracyTable_->setHorizontalHeaderLabels({tr("Layer"), tr("Token accuracy"), tr("Prompt accuracy")});
    accuracyTable_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    accuracyTable_->verticalHeader()->setVisible(false);
    accuracyTable_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    accuracyTable_->setMaximumHeight(110);
    routingSummary_->setWordWrap(true);
    chatButton_->setIcon(style()->standardIcon(QStyle::SP_MessageBoxQuestion));
    chatButton_->setEnabled(false);
    exportButton_->setIcon(style()->standardIcon(QStyle::SP_DialogSaveButton));
    exportButton_->setToolTip(tr("Write the MoE as a Hugging Face Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint"));
    exportButton_->setEnabled(false);

    auto* resultsLayout = new QHBoxLayout(results_);
    resultsLayout->addWidget(accuracyTable_, 2);
    auto* side = new QVBoxLayout;
    auto* confusionRow = new QHBoxLayout;
    confusionRow->addWidget(new QLabel(tr("Confusion matrix of")));
    confusionRow->addWidget(confusionLayer_, 1);
    side->addLayout(confusionRow);
    side->addWidget(routingSummary_);
    side->addStretch(1);
    side->addWidget(chatButton_);
    side->addWidget(exportButton_);
    resultsLayout->addLayout(side, 1);
    results_->setVisible(false);

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(stage_);
    layout->addWidget(view_, 1);
    layout->addWidget(results_);

    connect(view_, &TrainingView::stopRequested, controller_, &BuildController::stop);
    connect(chatButton_, &QPushButton::clicked, this, &TrainingPage::chatRequested);
    connect(exportButton_, &QPushButton::clicked, this, &TrainingPage::openExportDialog);
    connect(confusionLayer_, &QComboBox::currentIndexChanged, this, &TrainingPage::showConfusion);
    connect(controller_, &BuildController::started, this, [this](const QStringList& layers) {
        view_->clear();
        view_->setLayerNames(layers);
        view_->setPlan(0, controller_->selector().epochs);
        view_->setStopEnabled(true);
        results_->setVisible(false);
        chatButton_->setEnabled(false);
        exportButton_->setEnabled(false);
        stage_->setText(stageName(QStringLiteral("validate")) + QStringLiteral("…"));
    });
    connect(controller_, &BuildController::stageChanged, this, [this](const QString& stage, int done, int total) {
        QString text = stageName(stage);
        if (total > 1) text += tr(" (%1 of %2)").arg(done).arg(total);
        stage_->setText(text + QStringLiteral("…"));
    });
    connect(controller_, &BuildController::stepTrained, this,
            [this](int step, int totalSteps, int epoch, int epochs, const QVector<double>& loss, double mean) {
                if (step == 1) {
                    view_->setPlan(totalSteps, epochs);
                    stage_->setText(stageName(QStringLiteral("train")) + QStringLiteral("…"));
                }
                view_->addStep(step, epoch, loss, mean);
            });
    connect(controller_, &BuildController::epochValidated, view_, &TrainingView::addEpochValidation);
    connect(controller_, &BuildController::finished, this, &TrainingPage::showResults);
    connect(controller_, &BuildController::failed, this, [this](const QString& message) {
        view_->setStopEnabled(controller_->isRunning());
        stage_->setText(tr("<b>The build failed:</b> %1").arg(message.toHtmlEscaped().replace(QLatin1Char('\n'), QStringLiteral("<br>"))));
    });
}

QString TrainingPage::stageText() const { return stage_->text(); }

void TrainingPage::showResults(bool cancelled) {
    view_->setStopEnabled(false);
    const moe::BuildReport* report = controller_->report();
    if (!report) return;
    QString text = cancelled ? tr("Stopped after %1 steps: the gates trained so far are kept.").arg(report->trainSteps)
                             : tr("Built in %1 s (%2 training steps).").arg(report->seconds, 0, 'f', 1).arg(report->trainSteps);
    if (!report->gates.empty()) text += tr(" Gates: %1").arg(QString::fromStdString(report->gates.string()));
    for (const auto& w : report->warnings) text += QStringLiteral("\n⚠ ") + QString::fromStdString(w);
    stage_->setText(text);

    accuracyTable_->setRowCount(int(report->layers.size()));
    confusionLayer_->blockSignals(true);
    confusionLayer_->clear();
    confusionLayer_->addItem(tr("all layers (sum)"), -1);
    for (int i = 0; i < int(report->layers.size()); ++i) {
        const auto& l = report->layers[size_t(i)];
        accuracyTable_->setItem(i, 0, new QTableWidgetItem(tr("L%1").arg(l.layer)));
        accuracyTable_->setItem(i, 1, new QTableWidgetItem(QStringLiteral("%1 %").arg(100.0 * l.token, 0, 'f', 1)));
        accuracyTable_->setItem(i, 2, new QTableWidgetItem(QStringLiteral("%1 %").arg(100.0 * l.prompt, 0, 'f', 1)));
        confusionLayer_->addItem(tr("layer %1").arg(l.layer), i);
    }
    confusionLayer_->blockSignals(false);

    QString routing = tr("Routing: %1%2").arg(QString::fromLatin1(moe::toString(report->routing)),
                                              report->routingChosen ? tr(" (best on validation)") : QString());
    for (const auto& [mode, loss] : report->validationLoss)
        routing += tr("\n  %1: validation loss %2").arg(QString::fromStdString(mode)).arg(loss, 0, 'f', 4);
    routingSummary_->setText(routing);
    results_->setVisible(true);
    // The heatmap renders on a later pass, so the relayout and the two plots' redraws do not add up in one.
    QTimer::singleShot(0, this, &TrainingPage::showConfusion);
    chatButton_->setEnabled(controller_->builtMoe() != nullptr);
    // Export reads the gates from the selector's gates folder: a build that
    // stopped early has written them too, but only a saved selector finds them.
    exportButton_->setEnabled(controller_->builtMoe() != nullptr && !controller_->selector().file.empty());
}

ExportDialog* TrainingPage::openExportDialog() {
    if (!exportButton_->isEnabled()) return nullptr;
    auto* dialog = new ExportDialog(controller_->selector(), this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->open();
    return dialog;
}

void TrainingPage::showConfusion() {
    const moe::BuildReport* report = controller_->report();
    if (!report || report->layers.empty()) return;
    const int pick = confusionLayer_->currentData().toInt();
    QVector<QVector<int>> counts;
    for (int i = 0; i < int(report->layers.size()); ++i) {
        if (pick >= 0 && i != pick) continue;
        const auto& confusion = report->layers[size_t(i)].confusion;
        if (counts.isEmpty()) counts.resize(int(confusion.size()));
        for (int r = 0; r < int(confusion.size()); ++r) {
            if (counts[r].size() < int(confusion[size_t(r)].size())) counts[r].resize(int(confusion[size_t(r)].size()));
            for (int c = 0; c < int(confusion[size_t(r)].size()); ++c) counts[r][c] += confusion[size_t(r)][size_t(c)];
        }
    }
    QStringList names;
    if (auto built = controller_->builtMoe())
        for (const auto& n : built->model->slotNames()) names << QString::fromStdString(n);
    while (names.size() > counts.size()) names.removeLast();
    view_->setConfusion(counts, names);
}

} // namespace moe::ui
