#include "build_wizard.h"

#include "app_paths.h"
#include "model_library.h"

#include "moe/mergekit.h"
#include "moe/validate.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <algorithm>
#include <functional>

namespace moe::ui {

namespace {

// A page whose Next/Finish follows a predicate the wizard re-evaluates.
class CheckedPage : public QWizardPage {
public:
    std::function<bool()> complete;
    bool isComplete() const override { return complete ? complete() : true; }
    void recheck() { emit completeChanged(); }
};

CheckedPage* checked(QWizardPage* p) { return static_cast<CheckedPage*>(p); }

QString qs(const std::filesystem::path& p) { return QString::fromStdString(p.string()); }
std::filesystem::path fs(const QString& s) { return std::filesystem::path(s.toStdString()); }

QString errorStyle() { return QStringLiteral("color: #b3261e;"); }

QString ggufFilter() { return QWizard::tr("GGUF model (*.gguf)"); }

QStringList lines(const QPlainTextEdit* edit) {
    QStringList out;
    for (const QString& l : edit->toPlainText().split(QLatin1Char('\n')))
        if (!l.trimmed().isEmpty()) out << l;
    return out;
}

std::vector<std::string> toStd(const QStringList& l) {
    std::vector<std::string> out;
    for (const QString& s : l) out.push_back(s.toStdString());
    return out;
}

QString joined(const std::vector<std::string>& v) {
    QStringList l;
    for (const auto& s : v) l << QString::fromStdString(s);
    return l.join(QLatin1Char('\n'));
}

enum { PathRole = Qt::UserRole, IdRole, TypeRole };

} // namespace

BuildWizard::BuildWizard(ModelLibrary* library, QWidget* parent)
    : QWizard(parent), library_(library), basePath_(new QLineEdit), baseLibrary_(new QComboBox), baseFacts_(new QLabel),
      experts_(new QTableWidget(0, 3)), expertsMessage_(new QLabel), includeBase_(new QCheckBox(tr("Include the base MLP as expert 0"))),
      layerGrid_(new QWidget), rangeFirst_(new QSpinBox), rangeLast_(new QSpinBox), memory_(new QLabel), gateMode_(new QComboBox),
      routing_(new QComboBox), quantize_(new QComboBox), datasetBox_(new QGroupBox(tr("Gate-training dataset"))), datasetPath_(new QLineEdit),
      dataset_(new QTableWidget(0, 2)), datasetMessage_(new QLabel), promptsBox_(new QGroupBox(tr("Prompts per expert"))),
      promptsExpert_(new QComboBox), positive_(new QPlainTextEdit), negative_(new QPlainTextEdit), topK_(new QSpinBox),
      validationSplit_(new QDoubleSpinBox), lr_(new QDoubleSpinBox), epochs_(new QSpinBox), batch_(new QSpinBox),
      seed_(new QSpinBox), summary_(new QLabel), memoryTimer_(new QTimer(this)) {
    memoryTimer_->setSingleShot(true);
    memoryTimer_->setInterval(30);
    connect(memoryTimer_, &QTimer::timeout, this, &BuildWizard::updateMemory);
    setWindowTitle(tr("New MoE"));
    setWizardStyle(QWizard::ModernStyle);
    setOption(QWizard::NoBackButtonOnStartPage);
    setButtonText(QWizard::FinishButton, tr("Build"));
    setPage(BasePage, makeBasePage());
    setPage(ExpertsPage, makeExpertsPage());
    setPage(LayersPage, makeLayersPage());
    setPage(RoutingPage, makeRoutingPage());
    setPage(TrainingPage, makeTrainingPage());
    connect(this, &QWizard::currentIdChanged, this, [this](int id) {
        if (id == TrainingPage) updateSummary();
        if (id == LayersPage) updateMemory();
        if (id == RoutingPage) showPromptsOfExpert(promptsExpert_->currentIndex());
    });
    resize(820, 620);
    setSelector(moe::Selector{});
}

// ------------------------------------------------------------------ pages

QWizardPage* BuildWizard::makeBasePage() {
    auto* page = new CheckedPage;
    page->setTitle(tr("Base model"));
    page->setSubTitle(tr("The model whose attention, embeddings and (optionally) MLP the MoE keeps."));
    auto* browse = new QPushButton(tr("Folder…"));
    auto* browseGguf = new QPushButton(tr("GGUF file…"));
    auto* row = new QHBoxLayout;
    row->addWidget(basePath_, 1);
    row->addWidget(browse);
    row->addWidget(browseGguf);
    baseLibrary_->addItem(tr("From the library…"), QString());
    if (library_)
        for (const ModelEntry& e : library_->entries())
            if (e.kind == ModelKind::Base) baseLibrary_->addItem(e.name, e.path);
    baseFacts_->setWordWrap(true);
    baseFacts_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* form = new QFormLayout(page);
    form->addRow(tr("Library"), baseLibrary_);
    form->addRow(tr("Folder or file"), row);
    form->addRow(baseFacts_);
    page->complete = [this] { return base_.has_value(); };
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Base model folder"), basePath_->text());
        if (!dir.isEmpty()) setBase(dir);
    });
    connect(browseGguf, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getOpenFileName(this, tr("Base model GGUF file"), basePath_->text(), ggufFilter());
        if (!file.isEmpty()) setBase(file);
    });
    connect(baseLibrary_, &QComboBox::activated, this, [this](int i) {
        if (const QString p = baseLibrary_->itemData(i).toString(); !p.isEmpty()) setBase(p);
    });
    connect(basePath_, &QLineEdit::editingFinished, this, [this] { setBase(basePath_->text()); });
    return page;
}

QWizardPage* BuildWizard::makeExpertsPage() {
    auto* page = new CheckedPage;
    page->setTitle(tr("Experts"));
    page->setSubTitle(tr("Fine-tuned models or LoRA adapters of the base (one kind per MoE)."));
    experts_->setHorizontalHeaderLabels({tr("Expert"), tr("Type"), tr("Compatibility")});
    experts_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
    experts_->setSelectionBehavior(QAbstractItemView::SelectRows);
    experts_->setSelectionMode(QAbstractItemView::SingleSelection);
    experts_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    experts_->verticalHeader()->setVisible(false);
    expertsMessage_->setWordWrap(true);
    expertsMessage_->setStyleSheet(errorStyle());
    auto* add = new QPushButton(tr("Add folder…"));
    auto* addGguf = new QPushButton(tr("Add GGUF…"));
    addGguf->setToolTip(tr("A fine-tuned model of the base as a .gguf file"));
    auto* fromLibrary = new QComboBox;
    fromLibrary->addItem(tr("Add from the library…"), QString());
    if (library_)
        for (const ModelEntry& e : library_->entries())
            if (e.kind == ModelKind::Expert || e.kind == ModelKind::LoraAdapter) fromLibrary->addItem(e.name, e.path);
    auto* remove = new QPushButton(tr("Remove"));
    auto* up = new QPushButton(tr("Up"));
    auto* down = new QPushButton(tr("Down"));
    auto* buttons = new QHBoxLayout;
    for (QWidget* w : {static_cast<QWidget*>(add), static_cast<QWidget*>(addGguf), static_cast<QWidget*>(fromLibrary), static_cast<QWidget*>(remove),
                       static_cast<QWidget*>(up), static_cast<QWidget*>(down)})
        buttons->addWidget(w);
    buttons->addStretch(1);
    auto* layout = new QVBoxLayout(page);
    layout->addWidget(experts_, 1);
    layout->addLayout(buttons);
    layout->addWidget(expertsMessage_);
    layout->addWidget(includeBase_);
    page->complete = [this] {
        if (experts_->rowCount() == 0) return false;
        for (int r = 0; r < experts_->rowCount(); ++r)
            if (!experts_->item(r, 2)->data(Qt::UserRole).toBool()) return false;
        return true;
    };
    connect(add, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Expert folder"), basePath_->text());
        if (!dir.isEmpty()) addExpert(dir);
    });
    connect(addGguf, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getOpenFileName(this, tr("Expert GGUF file"), basePath_->text(), ggufFilter());
        if (!file.isEmpty()) addExpert(file);
    });
    connect(fromLibrary, &QComboBox::activated, this, [this, fromLibrary](int i) {
        if (const QString p = fromLibrary->itemData(i).toString(); !p.isEmpty()) addExpert(p);
        fromLibrary->setCurrentIndex(0);
    });
    connect(remove, &QPushButton::clicked, this, [this] { removeExpert(experts_->currentRow()); });
    connect(up, &QPushButton::clicked, this, [this] { moveExpert(experts_->currentRow(), -1); });
    connect(down, &QPushButton::clicked, this, [this] { moveExpert(experts_->currentRow(), +1); });
    connect(includeBase_, &QCheckBox::toggled, this, [this] { showPromptsOfExpert(promptsExpert_->currentIndex()); });
    return page;
}

QWizardPage* BuildWizard::makeLayersPage() {
    auto* page = new CheckedPage;
    page->setTitle(tr("Layers"));
    page->setSubTitle(tr("The layers whose MLP becomes a routed set of experts."));
    auto* quick = new QHBoxLayout;
    const std::pair<QString, QString> picks[] = {{tr("All"), QStringLiteral("all")},
                                                 {tr("None"), QStringLiteral("none")},
                                                 {tr("First half"), QStringLiteral("first_half")},
                                                 {tr("Last half"), QStringLiteral("last_half")},
                                                 {tr("Every other"), QStringLiteral("every_other")}};
    for (const auto& [label, which] : picks) {
        auto* b = new QPushButton(label);
        connect(b, &QPushButton::clicked, this, [this, w = which] { selectLayers(w); });
        quick->addWidget(b);
    }
    auto* range = new QPushButton(tr("Range"));
    quick->addSpacing(12);
    quick->addWidget(rangeFirst_);
    quick->addWidget(new QLabel(tr("to")));
    quick->addWidget(rangeLast_);
    quick->addWidget(range);
    quick->addStretch(1);
    connect(range, &QPushButton::clicked, this, [this] { selectLayerRange(rangeFirst_->value(), rangeLast_->value()); });
    new QGridLayout(layerGrid_);
    auto* layout = new QVBoxLayout(page);
    layout->addLayout(quick);
    layout->addWidget(layerGrid_);
    layout->addStretch(1);
    layout->addWidget(memory_);
    page->complete = [this] {
        return std::any_of(layerBoxes_.begin(), layerBoxes_.end(), [](QCheckBox* b) { return b->isChecked(); });
    };
    return page;
}

QWizardPage* BuildWizard::makeRoutingPage() {
    auto* page = new CheckedPage;
    page->setTitle(tr("Routing"));
    page->setSubTitle(tr("How the gates are made and how tokens are routed."));
    for (auto m : {moe::GateMode::Trained, moe::GateMode::Hidden, moe::GateMode::CheapEmbed, moe::GateMode::Random})
        gateMode_->addItem(QString::fromLatin1(moe::toString(m)), int(m));
    routing_->addItem(tr("best on validation (after training)"), -1);
    for (auto m : {moe::RoutingMode::Token, moe::RoutingMode::Running, moe::RoutingMode::Sequence, moe::RoutingMode::Likelihood})
        routing_->addItem(QString::fromLatin1(moe::toString(m)), int(m));
    quantize_->addItem(tr("Off (weights as stored)"), int(moe::QuantizeScheme::None));
    quantize_->addItem(tr("Q8_0"), int(moe::QuantizeScheme::Q8_0));
    quantize_->addItem(tr("Q4_K (Q4_K_M mix)"), int(moe::QuantizeScheme::Q4_K));
    quantize_->addItem(tr("Q4_0"), int(moe::QuantizeScheme::Q4_0));
    quantize_->setToolTip(tr("Quantize the base's and the fine-tuned experts' 16/32-bit weights when the MoE loads "
                             "(the selector's quantize key). Already quantized GGUF weights stay as they are."));
    topK_->setRange(1, 64);
    validationSplit_->setRange(0, 0.9);
    validationSplit_->setDecimals(3);
    validationSplit_->setSingleStep(0.05);

    // Trained gates: the dataset, previewed and editable.
    auto* browse = new QPushButton(tr("Open…"));
    auto* addRow = new QPushButton(tr("Add row"));
    auto* removeRow = new QPushButton(tr("Remove row"));
    auto* save = new QPushButton(tr("Save dataset"));
    dataset_->setHorizontalHeaderLabels({tr("Prompt"), tr("Expert")});
    dataset_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    dataset_->verticalHeader()->setVisible(false);
    datasetMessage_->setWordWrap(true);
    auto* pathRow = new QHBoxLayout;
    pathRow->addWidget(datasetPath_, 1);
    pathRow->addWidget(browse);
    auto* rowButtons = new QHBoxLayout;
    rowButtons->addWidget(addRow);
    rowButtons->addWidget(removeRow);
    rowButtons->addStretch(1);
    rowButtons->addWidget(save);
    auto* datasetLayout = new QVBoxLayout(datasetBox_);
    datasetLayout->addLayout(pathRow);
    datasetLayout->addWidget(dataset_, 1);
    datasetLayout->addLayout(rowButtons);
    datasetLayout->addWidget(datasetMessage_);

    // hidden / cheap_embed: positive and negative prompts per expert, one per line.
    positive_->setPlaceholderText(tr("Positive prompts, one per line"));
    negative_->setPlaceholderText(tr("Negative prompts, one per line"));
    auto* promptsLayout = new QFormLayout(promptsBox_);
    promptsLayout->addRow(tr("Expert"), promptsExpert_);
    promptsLayout->addRow(tr("Positive"), positive_);
    promptsLayout->addRow(tr("Negative"), negative_);

    auto* form = new QFormLayout;
    form->addRow(tr("Gate"), gateMode_);
    form->addRow(tr("Routing"), routing_);
    form->addRow(tr("Experts per token (top-k)"), topK_);
    form->addRow(tr("Validation split"), validationSplit_);
    form->addRow(tr("Quantize on load"), quantize_);
    auto* layout = new QVBoxLayout(page);
    layout->addLayout(form);
    layout->addWidget(datasetBox_, 1);
    layout->addWidget(promptsBox_, 1);
    page->complete = [this] {
        return gateMode_->currentData().toInt() != int(moe::GateMode::Trained) || dataset_->rowCount() > 0;
    };
    connect(gateMode_, &QComboBox::currentIndexChanged, this, [this, page] {
        updateRoutingVisibility();
        page->recheck();
    });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Dataset"), datasetPath_->text(), tr("AnyMoE dataset (*.json)"));
        if (!f.isEmpty()) loadDatasetFile(f);
    });
    connect(datasetPath_, &QLineEdit::editingFinished, this, [this] { loadDatasetFile(datasetPath_->text()); });
    connect(addRow, &QPushButton::clicked, this, [this, page] {
        const int r = dataset_->rowCount();
        dataset_->insertRow(r);
        dataset_->setItem(r, 0, new QTableWidgetItem);
        dataset_->setItem(r, 1, new QTableWidgetItem(QStringLiteral("0")));
        dataset_->editItem(dataset_->item(r, 0));
        page->recheck();
    });
    connect(removeRow, &QPushButton::clicked, this, [this, page] {
        if (dataset_->currentRow() >= 0) dataset_->removeRow(dataset_->currentRow());
        page->recheck();
    });
    connect(save, &QPushButton::clicked, this, [this] {
        QString path = datasetPath_->text();
        if (path.isEmpty()) path = QFileDialog::getSaveFileName(this, tr("Save dataset"), QString(), tr("AnyMoE dataset (*.json)"));
        if (path.isEmpty()) return;
        QString error;
        if (saveDatasetFile(path, &error)) {
            datasetMessage_->setStyleSheet(QString());
            datasetMessage_->setText(tr("Saved %1 rows to %2").arg(dataset_->rowCount()).arg(path));
        } else {
            datasetMessage_->setStyleSheet(errorStyle());
            datasetMessage_->setText(error);
        }
    });
    connect(promptsExpert_, &QComboBox::currentIndexChanged, this, [this](int i) { showPromptsOfExpert(i); });
    return page;
}

QWizardPage* BuildWizard::makeTrainingPage() {
    auto* page = new CheckedPage;
    page->setTitle(tr("Training"));
    page->setSubTitle(tr("Gate training settings. Build starts it on the Training page."));
    lr_->setDecimals(8);
    lr_->setRange(1e-8, 10);
    lr_->setSingleStep(1e-4);
    epochs_->setRange(1, 100000);
    batch_->setRange(1, 4096);
    seed_->setRange(0, std::numeric_limits<int>::max());
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* save = new QPushButton(tr("Save selector…"));
    auto* form = new QFormLayout;
    form->addRow(tr("Learning rate"), lr_);
    form->addRow(tr("Epochs"), epochs_);
    form->addRow(tr("Batch size (prompts)"), batch_);
    form->addRow(tr("Seed"), seed_);
    auto* layout = new QVBoxLayout(page);
    layout->addLayout(form);
    auto* box = new QGroupBox(tr("Summary"));
    (new QVBoxLayout(box))->addWidget(summary_);
    layout->addWidget(box, 1);
    auto* row = new QHBoxLayout;
    row->addStretch(1);
    row->addWidget(save);
    layout->addLayout(row);
    connect(save, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getSaveFileName(this, tr("Save selector"), qs(extra_.file), tr("Selector (*.toml)"));
        if (path.isEmpty()) return;
        QString error;
        if (!saveSelector(path, &error)) summary_->setText(tr("<span style='color:#b3261e'>%1</span>").arg(error.toHtmlEscaped()));
    });
    return page;
}

// ------------------------------------------------------------------ base and experts

void BuildWizard::setBase(const QString& typed) {
    // Shown and saved without "..": the same folder reads the same after a round trip.
    const QString folder = typed.isEmpty() ? typed : QDir::cleanPath(typed);
    basePath_->setText(folder);
    try {
        base_ = moe::ModelConfig::load(fs(folder));
        baseFacts_->setStyleSheet(QString());
        baseFacts_->setText(tr("%1 · %2 layers · hidden %3 · intermediate %4 · vocabulary %5")
                                .arg(QString::fromStdString(base_->architecture))
                                .arg(base_->numLayers)
                                .arg(base_->hiddenSize)
                                .arg(base_->intermediateSize)
                                .arg(base_->vocabSize));
    } catch (const std::exception& e) {
        base_.reset();
        baseFacts_->setStyleSheet(errorStyle());
        baseFacts_->setText(QString::fromStdString(e.what()));
    }
    checked(page(BasePage))->recheck();
    recheckExperts();
    rebuildLayerBoxes();
}

bool BuildWizard::addExpert(const QString& typed) {
    const QString folder = QDir::cleanPath(typed);
    moe::ExpertType type = moe::ExpertType::FineTuned;
    QString problem;
    if (!base_) problem = tr("choose a valid base model first");
    else problem = QString::fromStdString(moe::checkExpertCompatibility(*base_, fs(folder), &type));
    // One kind per MoE: the builder routes between fine-tuned MLPs or between LoRA deltas, not both.
    for (int r = 0; r < experts_->rowCount(); ++r)
        if (experts_->item(r, 1)->data(TypeRole).toInt() != int(type)) {
            expertsMessage_->setText(tr("%1 is a %2 but the experts are %3: mixing kinds is not supported (one kind per MoE).")
                                         .arg(QFileInfo(folder).fileName(), QString::fromLatin1(moe::toString(type)),
                                              experts_->item(r, 1)->text()));
            return false;
        }
    const int r = experts_->rowCount();
    experts_->insertRow(r);
    auto* name = new QTableWidgetItem(QFileInfo(folder).fileName());
    name->setData(PathRole, folder);
    name->setData(IdRole, folder);
    name->setToolTip(folder);
    experts_->setItem(r, 0, name);
    auto* kind = new QTableWidgetItem(QString::fromLatin1(moe::toString(type)));
    kind->setData(TypeRole, int(type));
    experts_->setItem(r, 1, kind);
    auto* status = new QTableWidgetItem(problem.isEmpty() ? tr("✓ compatible") : problem);
    status->setData(Qt::UserRole, problem.isEmpty());
    status->setForeground(problem.isEmpty() ? QColor(0x1b, 0x7f, 0x3b) : QColor(0xb3, 0x26, 0x1e));
    status->setToolTip(problem);
    experts_->setItem(r, 2, status);
    prompts_.insert(prompts_.begin() + r, moe::ExpertPrompts{});
    expertsMessage_->setText(problem.isEmpty() ? QString() : tr("%1: %2").arg(name->text(), problem));
    checked(page(ExpertsPage))->recheck();
    showPromptsOfExpert(promptsExpert_->currentIndex());
    return problem.isEmpty();
}

void BuildWizard::recheckExperts() {
    std::vector<std::pair<QString, QString>> rows; // path, id
    for (int r = 0; r < experts_->rowCount(); ++r)
        rows.push_back({experts_->item(r, 0)->data(PathRole).toString(), experts_->item(r, 0)->data(IdRole).toString()});
    const auto prompts = prompts_;
    experts_->setRowCount(0);
    prompts_.resize(prompts_.empty() ? 0 : 1); // keep the base's prompts (the last entry)
    if (!prompts.empty()) prompts_[0] = prompts.back();
    for (size_t i = 0; i < rows.size(); ++i) {
        addExpert(rows[i].first);
        if (experts_->rowCount() > int(i)) {
            experts_->item(int(i), 0)->setData(IdRole, rows[i].second);
            if (i + 1 < prompts.size()) prompts_[i] = prompts[i];
        }
    }
}

void BuildWizard::moveExpert(int row, int delta) {
    const int to = row + delta;
    if (row < 0 || to < 0 || row >= experts_->rowCount() || to >= experts_->rowCount()) return;
    for (int c = 0; c < experts_->columnCount(); ++c) {
        QTableWidgetItem* a = experts_->takeItem(row, c);
        QTableWidgetItem* b = experts_->takeItem(to, c);
        experts_->setItem(row, c, b);
        experts_->setItem(to, c, a);
    }
    std::swap(prompts_[size_t(row)], prompts_[size_t(to)]);
    experts_->setCurrentCell(to, 0);
    showPromptsOfExpert(promptsExpert_->currentIndex());
}

void BuildWizard::removeExpert(int row) {
    if (row < 0 || row >= experts_->rowCount()) return;
    experts_->removeRow(row);
    prompts_.erase(prompts_.begin() + row);
    expertsMessage_->clear();
    checked(page(ExpertsPage))->recheck();
    showPromptsOfExpert(0);
}

// ------------------------------------------------------------------ layers

void BuildWizard::rebuildLayerBoxes() {
    QVector<bool> was;
    for (QCheckBox* b : layerBoxes_) was.push_back(b->isChecked());
    qDeleteAll(layerBoxes_);
    layerBoxes_.clear();
    const int n = base_ ? base_->numLayers : 0;
    auto* grid = static_cast<QGridLayout*>(layerGrid_->layout());
    const int columns = 8;
    for (int l = 0; l < n; ++l) {
        auto* box = new QCheckBox(tr("Layer %1").arg(l));
        box->setChecked(l < was.size() ? was[l] : true);
        grid->addWidget(box, l / columns, l % columns);
        connect(box, &QCheckBox::toggled, this, [this] {
            checked(page(LayersPage))->recheck();
            memoryTimer_->start();
        });
        layerBoxes_.push_back(box);
    }
    rangeFirst_->setRange(0, std::max(0, n - 1));
    rangeLast_->setRange(0, std::max(0, n - 1));
    rangeLast_->setValue(std::max(0, n - 1));
    checked(page(LayersPage))->recheck();
}

void BuildWizard::selectLayers(const QString& which) {
    const int n = int(layerBoxes_.size());
    for (int l = 0; l < n; ++l) {
        bool on = which == QLatin1String("all");
        if (which == QLatin1String("first_half")) on = l < n / 2;
        if (which == QLatin1String("last_half")) on = l >= n / 2;
        if (which == QLatin1String("every_other")) on = l % 2 == 1;
        layerBoxes_[l]->setChecked(on);
    }
}

void BuildWizard::selectLayerRange(int first, int last) {
    for (int l = 0; l < int(layerBoxes_.size()); ++l) layerBoxes_[l]->setChecked(l >= first && l <= last);
}

void BuildWizard::updateMemory() {
    // The validator sums the chosen layers' expert tensors from the safetensors headers (no weights read).
    moe::Selector s = selector();
    s.gateMode = moe::GateMode::Random;
    s.datasetJson.clear();
    try {
        const moe::SelectionFacts facts = moe::validateSelection(s);
        memory_->setStyleSheet(QString());
        memory_->setText(tr("The experts add %1 for %2 layers.")
                             .arg(QLocale().formattedDataSize(qint64(facts.expertBytes)))
                             .arg(facts.layers.size()));
    } catch (const std::exception& e) {
        memory_->setStyleSheet(errorStyle());
        memory_->setText(QString::fromStdString(e.what()).section(QLatin1Char('\n'), 0, 0));
    }
}

// ------------------------------------------------------------------ routing

void BuildWizard::updateRoutingVisibility() {
    const auto mode = moe::GateMode(gateMode_->currentData().toInt());
    datasetBox_->setVisible(mode == moe::GateMode::Trained);
    promptsBox_->setVisible(mode == moe::GateMode::Hidden || mode == moe::GateMode::CheapEmbed);
}

bool BuildWizard::loadDatasetFile(const QString& typed) {
    const QString path = typed.isEmpty() ? typed : QDir::cleanPath(typed);
    datasetPath_->setText(path);
    try {
        setDatasetRows(moe::loadDataset(fs(path)));
        datasetMessage_->setStyleSheet(QString());
        datasetMessage_->setText(tr("%1 rows").arg(dataset_->rowCount()));
        checked(page(RoutingPage))->recheck();
        return true;
    } catch (const std::exception& e) {
        dataset_->setRowCount(0);
        datasetMessage_->setStyleSheet(errorStyle());
        datasetMessage_->setText(QString::fromStdString(e.what()));
        checked(page(RoutingPage))->recheck();
        return false;
    }
}

std::vector<moe::DatasetRow> BuildWizard::datasetRows() const {
    std::vector<moe::DatasetRow> rows;
    for (int r = 0; r < dataset_->rowCount(); ++r) {
        moe::DatasetRow row;
        row.prompt = dataset_->item(r, 0) ? dataset_->item(r, 0)->text().toStdString() : std::string();
        bool ok = false;
        row.expert = dataset_->item(r, 1) ? dataset_->item(r, 1)->text().toInt(&ok) : 0;
        if (!ok) row.expert = -1; // refused by the dataset checks with the row named
        const QVariant urls = dataset_->item(r, 0) ? dataset_->item(r, 0)->data(Qt::UserRole) : QVariant();
        for (const QString& u : urls.toStringList()) row.imageUrls.push_back(u.toStdString());
        rows.push_back(std::move(row));
    }
    return rows;
}

void BuildWizard::setDatasetRows(const std::vector<moe::DatasetRow>& rows) {
    dataset_->setRowCount(0);
    dataset_->setRowCount(int(rows.size()));
    for (int r = 0; r < int(rows.size()); ++r) {
        auto* prompt = new QTableWidgetItem(QString::fromStdString(rows[size_t(r)].prompt));
        QStringList urls;
        for (const auto& u : rows[size_t(r)].imageUrls) urls << QString::fromStdString(u);
        if (!urls.isEmpty()) prompt->setData(Qt::UserRole, urls);
        dataset_->setItem(r, 0, prompt);
        dataset_->setItem(r, 1, new QTableWidgetItem(QString::number(rows[size_t(r)].expert)));
    }
}

bool BuildWizard::saveDatasetFile(const QString& path, QString* error) {
    const auto rows = datasetRows();
    for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i].expert < 0 || rows[i].prompt.empty()) {
            if (error) *error = tr("row %1: %2").arg(i).arg(rows[i].prompt.empty() ? tr("the prompt is empty") : tr("the expert must be a number ≥ 0"));
            return false;
        }
    try {
        moe::saveDataset(rows, fs(path));
        datasetPath_->setText(path);
        return true;
    } catch (const std::exception& e) {
        if (error) *error = QString::fromStdString(e.what());
        return false;
    }
}

void BuildWizard::storePromptsOfCurrentExpert() {
    if (promptsShown_ < 0 || promptsShown_ >= int(prompts_.size())) return;
    prompts_[size_t(promptsShown_)].positive = toStd(lines(positive_));
    prompts_[size_t(promptsShown_)].negative = toStd(lines(negative_));
}

void BuildWizard::showPromptsOfExpert(int index) {
    storePromptsOfCurrentExpert();
    // prompts_: one entry per expert row, then the base's.
    prompts_.resize(size_t(experts_->rowCount()) + 1);
    promptsExpert_->blockSignals(true);
    promptsExpert_->clear();
    for (int r = 0; r < experts_->rowCount(); ++r) promptsExpert_->addItem(experts_->item(r, 0)->text());
    if (includeBase_->isChecked()) promptsExpert_->addItem(tr("base (expert 0)"));
    index = std::clamp(index, 0, std::max(0, promptsExpert_->count() - 1));
    promptsExpert_->setCurrentIndex(index);
    promptsExpert_->blockSignals(false);
    promptsShown_ = promptsExpert_->count() == 0 ? -1 : (index < experts_->rowCount() ? index : int(prompts_.size()) - 1);
    const moe::ExpertPrompts none;
    const moe::ExpertPrompts& p = promptsShown_ >= 0 ? prompts_[size_t(promptsShown_)] : none;
    positive_->setPlainText(joined(p.positive));
    negative_->setPlainText(joined(p.negative));
}

// ------------------------------------------------------------------ the selector

void BuildWizard::setSelector(const moe::Selector& s) {
    extra_ = s;
    promptsShown_ = -1;
    experts_->setRowCount(0);
    prompts_.clear();
    if (!s.baseModel.empty()) setBase(qs(s.baseModel));
    else {
        base_.reset();
        basePath_->clear();
        baseFacts_->clear();
        rebuildLayerBoxes();
    }
    for (size_t i = 0; i < s.experts.size(); ++i) {
        addExpert(qs(s.experts[i]));
        if (experts_->rowCount() > int(i) && i < s.expertIds.size())
            experts_->item(int(i), 0)->setData(IdRole, QString::fromStdString(s.expertIds[i]));
    }
    prompts_.resize(s.experts.size() + 1);
    for (size_t i = 0; i < s.expertPrompts.size() && i < s.experts.size(); ++i) prompts_[i] = s.expertPrompts[i];
    prompts_.back() = s.basePrompts;
    promptsShown_ = -1; // the editors hold stale text: do not store it over the selector's prompts
    includeBase_->setChecked(s.includeBase);
    for (int l = 0; l < int(layerBoxes_.size()); ++l)
        layerBoxes_[l]->setChecked(s.layers.empty() || std::find(s.layers.begin(), s.layers.end(), l) != s.layers.end());
    gateMode_->setCurrentIndex(gateMode_->findData(int(s.gateMode)));
    routing_->setCurrentIndex(routing_->findData(s.routing ? int(*s.routing) : -1));
    topK_->setValue(s.topK);
    quantize_->setCurrentIndex(std::max(0, quantize_->findData(int(s.quantize))));
    validationSplit_->setValue(s.validationSplit);
    datasetPath_->setText(qs(s.datasetJson));
    if (!s.datasetJson.empty()) loadDatasetFile(qs(s.datasetJson));
    else {
        dataset_->setRowCount(0);
        datasetMessage_->clear();
    }
    lr_->setValue(s.lr);
    epochs_->setValue(s.epochs);
    batch_->setValue(s.batchSize);
    seed_->setValue(int(std::min<uint64_t>(s.seed, uint64_t(std::numeric_limits<int>::max()))));
    updateRoutingVisibility();
    promptsShown_ = -1;
    showPromptsOfExpert(0);
    updateMemory();
    updateSummary();
    checked(page(RoutingPage))->recheck();
}

moe::Selector BuildWizard::selector() const {
    moe::Selector s = extra_;
    const std::filesystem::path base = fs(basePath_->text());
    if (base != s.baseModel) {
        s.baseModel = base;
        s.modelId = base.string();
    }
    s.experts.clear();
    s.expertIds.clear();
    for (int r = 0; r < experts_->rowCount(); ++r) {
        s.experts.push_back(fs(experts_->item(r, 0)->data(PathRole).toString()));
        s.expertIds.push_back(experts_->item(r, 0)->data(IdRole).toString().toStdString());
    }
    if (experts_->rowCount() > 0) s.expertType = moe::ExpertType(experts_->item(0, 1)->data(TypeRole).toInt());
    s.includeBase = includeBase_->isChecked();

    std::vector<int> layers;
    for (int l = 0; l < int(layerBoxes_.size()); ++l)
        if (layerBoxes_[l]->isChecked()) layers.push_back(l);
    std::vector<int> written = extra_.layers;
    std::sort(written.begin(), written.end());
    if (layers.size() == size_t(layerBoxes_.size()) && extra_.layers.empty()) layers.clear(); // all, as written
    else if (written == layers) layers = extra_.layers;                                      // the file's order
    s.layers = layers;

    s.gateMode = moe::GateMode(gateMode_->currentData().toInt());
    const int routing = routing_->currentData().toInt();
    s.routing = routing < 0 ? std::nullopt : std::optional(moe::RoutingMode(routing));
    s.topK = topK_->value();
    s.quantize = moe::QuantizeScheme(quantize_->currentData().toInt());
    s.validationSplit = validationSplit_->value();
    s.datasetJson = fs(datasetPath_->text());

    // Prompts: the shown editor's text counts even before switching experts.
    auto prompts = prompts_;
    prompts.resize(size_t(experts_->rowCount()) + 1);
    if (promptsShown_ >= 0 && promptsShown_ < int(prompts.size())) {
        prompts[size_t(promptsShown_)].positive = toStd(lines(positive_));
        prompts[size_t(promptsShown_)].negative = toStd(lines(negative_));
    }
    s.basePrompts = prompts.back();
    prompts.pop_back();
    const bool anyPrompts = std::any_of(prompts.begin(), prompts.end(), [](const moe::ExpertPrompts& p) { return !p.positive.empty() || !p.negative.empty(); });
    s.expertPrompts = anyPrompts || !extra_.expertPrompts.empty() ? prompts : std::vector<moe::ExpertPrompts>{};

    s.lr = lr_->value();
    s.epochs = epochs_->value();
    s.batchSize = batch_->value();
    if (uint64_t(seed_->value()) != std::min<uint64_t>(extra_.seed, uint64_t(std::numeric_limits<int>::max())))
        s.seed = uint64_t(seed_->value());
    return s;
}

bool BuildWizard::openSelector(const QString& path, QString* error) {
    try {
        setSelector(moe::loadSelectorAny(fs(path)));
        setWindowTitle(tr("MoE: %1").arg(QFileInfo(path).fileName()));
        return true;
    } catch (const std::exception& e) {
        if (error) *error = QString::fromStdString(e.what());
        return false;
    }
}

bool BuildWizard::saveSelector(const QString& path, QString* error) {
    try {
        moe::Selector s = selector();
        moe::saveSelector(s, fs(path));
        s.file = fs(path);
        extra_ = s;
        updateSummary();
        return true;
    } catch (const std::exception& e) {
        if (error) *error = QString::fromStdString(e.what());
        return false;
    }
}

void BuildWizard::updateSummary() {
    const moe::Selector s = selector();
    QStringList experts;
    for (const auto& e : s.experts) experts << QString::fromStdString(e.filename().string());
    QStringList layers;
    for (int l : s.layers) layers << QString::number(l);
    QString text = tr("<b>Base</b>: %1<br><b>Experts</b> (%2): %3%4<br><b>Layers</b>: %5<br>"
                      "<b>Gate</b>: %6 · <b>routing</b>: %7 · <b>top-k</b>: %8 · <b>validation</b>: %9 · <b>quantize</b>: %10<br>")
                       .arg(qs(s.baseModel).toHtmlEscaped(), QString::fromLatin1(moe::toString(s.expertType)),
                            experts.join(QStringLiteral(", ")).toHtmlEscaped(), s.includeBase ? tr(" + the base as expert 0") : QString(),
                            layers.isEmpty() ? tr("all") : layers.join(QStringLiteral(", ")),
                            QString::fromLatin1(moe::toString(s.gateMode)),
                            s.routing ? QString::fromLatin1(moe::toString(*s.routing)) : tr("best on validation"))
                       .arg(s.topK)
                       .arg(s.validationSplit)
                       .arg(s.quantize == moe::QuantizeScheme::None ? tr("off") : QString::fromLatin1(moe::toString(s.quantize)));
    if (s.gateMode == moe::GateMode::Trained)
        text += tr("<b>Dataset</b>: %1 (%2 rows)<br><b>Training</b>: lr %3, %4 epochs, batch %5, seed %6")
                    .arg(qs(s.datasetJson).toHtmlEscaped())
                    .arg(dataset_->rowCount())
                    .arg(s.lr)
                    .arg(s.epochs)
                    .arg(s.batchSize)
                    .arg(s.seed);
    if (!s.file.empty()) text += tr("<br><b>Selector</b>: %1").arg(qs(s.file).toHtmlEscaped());
    summary_->setText(text);
}

void BuildWizard::done(int result) {
    if (result == QDialog::Accepted) {
        moe::Selector s = selector();
        // Gates of an unsaved selection go to the app's data folder, not the working directory.
        if (s.file.empty() && s.gateModelId.empty()) {
            const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/builds/") +
                                QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss")) + QStringLiteral(".gates");
            QDir().mkpath(dir);
            s.gateModelId = fs(dir);
        }
        emit buildRequested(s);
    }
    QWizard::done(result);
}

} // namespace moe::ui
