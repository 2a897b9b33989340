#include "models_page.h"

#include "app_paths.h"
#include "model_library.h"

#include "moe/model_stores.h"

#include <QDir>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QStyle>
#include <QTableView>
#include <QVBoxLayout>

namespace moe::ui {

ModelsPage::ModelsPage(ModelLibrary* library, QWidget* parent)
    : QWidget(parent), library_(library), proxy_(new QSortFilterProxyModel(this)), table_(new QTableView),
      summary_(new QLabel), details_(new QLabel), chatButton_(new QPushButton(tr("Chat with it"))),
      removeButton_(new QPushButton(tr("Remove folder"))) {
    auto* addButton = new QPushButton(style()->standardIcon(QStyle::SP_DirOpenIcon), tr("Add folder…"));
    auto* rescanButton = new QPushButton(style()->standardIcon(QStyle::SP_BrowserReload), tr("Rescan"));
    chatButton_->setIcon(style()->standardIcon(QStyle::SP_MediaPlay));
    removeButton_->setIcon(style()->standardIcon(QStyle::SP_TrashIcon));
    addButton->setToolTip(tr("Add a model folder, or a folder of model folders and .gguf files"));
    removeButton_->setToolTip(tr("Forget a folder you added (nothing is deleted on disk)"));

    auto* toolbar = new QHBoxLayout;
    toolbar->addWidget(addButton);
    toolbar->addWidget(rescanButton);
    toolbar->addWidget(removeButton_);
    toolbar->addStretch(1);
    toolbar->addWidget(summary_);
    toolbar->addWidget(chatButton_);

    proxy_->setSourceModel(library_);
    proxy_->setSortRole(ModelLibrary::SortRole);
    table_->setModel(proxy_);
    table_->setSortingEnabled(true);
    table_->sortByColumn(-1, Qt::AscendingOrder); // scan order: demo, cache, added
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::SingleSelection);
    table_->setAlternatingRowColors(true);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->verticalHeader()->setVisible(false);
    table_->horizontalHeader()->setStretchLastSection(true);
    table_->setWordWrap(false);

    details_->setWordWrap(true);
    details_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    details_->setFrameShape(QFrame::StyledPanel);
    details_->setMargin(8);
    details_->setMinimumHeight(70);
    details_->setAlignment(Qt::AlignTop | Qt::AlignLeft);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(toolbar);
    layout->addWidget(table_, 1);
    layout->addWidget(details_);

    connect(addButton, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Add a model folder"),
                                                              lastFolder_.isEmpty() ? QDir::homePath() : lastFolder_);
        if (dir.isEmpty()) return;
        lastFolder_ = QFileInfo(dir).absolutePath();
        addFolder(dir);
    });
    connect(rescanButton, &QPushButton::clicked, this, &ModelsPage::rescan);
    connect(removeButton_, &QPushButton::clicked, this, [this] {
        if (const ModelEntry* e = selectedEntry())
            for (const QString& folder : userFolders_)
                if (e->path == folder || e->path.startsWith(folder + QLatin1Char('/'))) {
                    removeFolder(folder);
                    return;
                }
    });
    connect(chatButton_, &QPushButton::clicked, this, [this] {
        if (const ModelEntry* e = selectedEntry(); e && e->isChatLoadable()) emit chatRequested(e->path);
    });
    connect(table_, &QTableView::doubleClicked, chatButton_, &QPushButton::click);
    connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this, &ModelsPage::showDetails);
    connect(library_, &ModelLibrary::scanStarted, this, [this] {
        summary_->setText(tr("Scanning…"));
        emit statusMessage(tr("Scanning model folders…"));
    });
    connect(library_, &ModelLibrary::scanFinished, this, [this](int models, int errors) {
        table_->resizeColumnsToContents();
        summary_->setText(errors ? tr("%1 models, %2 with errors").arg(models).arg(errors) : tr("%1 models").arg(models));
        emit statusMessage(summary_->text());
        if (!table_->selectionModel()->hasSelection() && proxy_->rowCount() > 0) table_->selectRow(0);
        // An error is worth showing even when another row is selected.
        for (const ModelEntry& e : library_->entries())
            if (!e.isValid()) {
                selectPath(e.path);
                break;
            }
        showDetails();
    });
    showDetails();
}

QVector<ModelSource> ModelsPage::sources() const {
    QVector<ModelSource> list;
    if (const QString demo = demoModelsDir(); !demo.isEmpty()) list.push_back({demo, ModelSourceType::Demo});
    for (const QString& hub : huggingFaceCacheDirs()) list.push_back({hub, ModelSourceType::HuggingFaceCache});
    for (const QString& folder : userFolders_) list.push_back({folder, ModelSourceType::UserFolder});
    // The models other apps keep (the hub caches are already listed above).
    for (const moe::StoreRoot& root : moe::modelStoreRoots()) {
        const QString path = QString::fromStdString(root.path.string());
        switch (root.store) {
        case moe::ModelStore::LmStudio: list.push_back({path, ModelSourceType::LmStudio}); break;
        case moe::ModelStore::Gpt4All: list.push_back({path, ModelSourceType::Gpt4All}); break;
        case moe::ModelStore::Ollama: list.push_back({path, ModelSourceType::Ollama}); break;
        default: break;
        }
    }
    return list;
}

void ModelsPage::addFolder(const QString& path) {
    const QString clean = QDir::cleanPath(QFileInfo(path).absoluteFilePath());
    if (!userFolders_.contains(clean)) userFolders_ << clean;
    saveSettings();
    rescan();
}

void ModelsPage::removeFolder(const QString& path) {
    userFolders_.removeAll(path);
    saveSettings();
    rescan();
}

void ModelsPage::rescan() { library_->scan(sources()); }

void ModelsPage::selectPath(const QString& path) {
    const int row = library_->rowOfPath(path);
    if (row < 0) return;
    table_->selectRow(proxy_->mapFromSource(library_->index(row, 0)).row());
}

const ModelEntry* ModelsPage::selectedEntry() const {
    const QModelIndexList rows = table_->selectionModel()->selectedRows();
    if (rows.isEmpty()) return nullptr;
    return library_->entry(proxy_->mapToSource(rows.first()).row());
}

void ModelsPage::showDetails() {
    const ModelEntry* e = selectedEntry();
    chatButton_->setEnabled(e && e->isChatLoadable());
    bool userAdded = false;
    if (e)
        for (const QString& folder : userFolders_) userAdded |= e->path == folder || e->path.startsWith(folder + QLatin1Char('/'));
    removeButton_->setEnabled(userAdded);
    if (!e) {
        details_->setText(library_->isScanning() ? tr("Scanning…")
                                                 : tr("No model selected. Add a folder with Hugging Face models "
                                                      "(config.json + *.safetensors), GGUF files or LoRA adapters."));
        details_->setStyleSheet(QString());
        return;
    }
    const QString from = isAppStore(e->source) ? tr(" (from %1)").arg(sourceName(e->source)) : QString();
    const QString manifest = e->storeSource.isEmpty() ? QString() : tr("<br>manifest: %1").arg(e->storeSource.toHtmlEscaped());
    if (!e->isValid()) {
        QString text = tr("<b>%1</b>%2 cannot be used:<br>%3").arg(e->name.toHtmlEscaped(), from, e->error.toHtmlEscaped());
        // What the header said, when it could be read (another app's model of an architecture the engine lacks).
        if (!e->architecture.isEmpty())
            text += tr("<br>%1 · %2 parameters · %3 · %4 on disk")
                        .arg(e->architecture.toHtmlEscaped(), QLocale().toString(e->parameters), e->dtype.toHtmlEscaped(),
                             humanBytes(e->sizeOnDisk));
        details_->setText(text + manifest);
        details_->setStyleSheet(QStringLiteral("color: #c02020;"));
        return;
    }
    details_->setStyleSheet(QString());
    QString text = tr("<b>%1</b>%2 — %3, %4<br>%5%6")
                       .arg(e->name.toHtmlEscaped(), from, kindName(e->kind), e->architecture.toHtmlEscaped(),
                            e->path.toHtmlEscaped(), manifest);
    text += tr("<br>%1 parameters · %2 · %3 on disk").arg(QLocale().toString(e->parameters), e->dtype, humanBytes(e->sizeOnDisk));
    if (e->layers > 0)
        text += tr(" · %1 layers · hidden %2 · intermediate %3 · vocabulary %4")
                    .arg(e->layers).arg(e->hiddenSize).arg(e->intermediateSize).arg(e->vocabSize);
    if (e->kind == ModelKind::NativeMoe) text += tr("<br>%1 experts per layer, top-%2 routing").arg(e->experts).arg(e->topK);
    if (!e->baseModel.isEmpty()) text += tr("<br>base: %1").arg(QFileInfo(e->baseModel).fileName().toHtmlEscaped());
    else if (e->kind == ModelKind::LoraAdapter)
        text += tr("<br>base (not in the library): %1").arg(e->adapterBase.toHtmlEscaped());
    details_->setText(text);
}

void ModelsPage::loadSettings() {
    QSettings settings;
    userFolders_ = settings.value(QStringLiteral("models/folders")).toStringList();
    lastFolder_ = settings.value(QStringLiteral("models/lastFolder")).toString();
}

void ModelsPage::saveSettings() const {
    QSettings settings;
    settings.setValue(QStringLiteral("models/folders"), userFolders_);
    settings.setValue(QStringLiteral("models/lastFolder"), lastFolder_);
}

} // namespace moe::ui
