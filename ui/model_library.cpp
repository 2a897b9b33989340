#include "model_library.h"

#include <QApplication>
#include <QBrush>
#include <QDir>
#include <QPalette>
#include <QStyle>
#include <QtConcurrent/QtConcurrentRun>

namespace moe::ui {

ModelLibrary::ModelLibrary(QObject* parent) : QAbstractTableModel(parent) {}
ModelLibrary::~ModelLibrary() = default;

int ModelLibrary::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(entries_.size()); }
int ModelLibrary::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

const ModelEntry* ModelLibrary::entry(int row) const {
    return row >= 0 && row < entries_.size() ? &entries_[row] : nullptr;
}

int ModelLibrary::rowOfPath(const QString& path) const {
    const QString wanted = QDir::cleanPath(path);
    for (int i = 0; i < entries_.size(); ++i)
        if (QDir::cleanPath(entries_[i].path) == wanted) return i;
    return -1;
}

QVariant ModelLibrary::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
    case Name: return tr("Name");
    case Kind: return tr("Kind");
    case Architecture: return tr("Architecture");
    case Parameters: return tr("Parameters");
    case Layers: return tr("Layers");
    case Hidden: return tr("Hidden");
    case DType: return tr("Dtype");
    case Size: return tr("Size");
    case Experts: return tr("Experts (top-k)");
    case Source: return tr("Source");
    case Location: return tr("Location / status");
    }
    return {};
}

QVariant ModelLibrary::data(const QModelIndex& index, int role) const {
    const ModelEntry* e = entry(index.row());
    if (!e) return {};
    if (role == EntryRole) return QVariant::fromValue(*e);
    if (role == PathRole) return e->path;
    if (role == SortRole) {
        switch (index.column()) {
        case Parameters: return e->parameters;
        case Layers: return e->layers;
        case Hidden: return e->hiddenSize;
        case Size: return e->sizeOnDisk;
        case Experts: return e->experts;
        default: return data(index, Qt::DisplayRole);
        }
    }
    const bool invalid = !e->isValid();
    if (role == Qt::ForegroundRole && invalid) return QBrush(QColor(0xc0, 0x20, 0x20));
    if (role == Qt::ToolTipRole) {
        const QString where = e->storeSource.isEmpty() ? e->path : tr("%1\nmanifest %2").arg(e->path, e->storeSource);
        return invalid ? e->error : where;
    }
    if (role == Qt::TextAlignmentRole && index.column() >= Parameters && index.column() <= Size)
        return int(Qt::AlignRight | Qt::AlignVCenter);
    if (role == Qt::DecorationRole && index.column() == Name) {
        QStyle* style = QApplication::style();
        if (invalid) return style->standardIcon(QStyle::SP_MessageBoxWarning);
        if (e->kind == ModelKind::LoraAdapter || e->gguf) return style->standardIcon(QStyle::SP_FileIcon);
        return style->standardIcon(QStyle::SP_DirIcon);
    }
    if (role != Qt::DisplayRole) return {};
    const auto intOrDash = [](int v) { return v > 0 ? QString::number(v) : QStringLiteral("–"); };
    switch (index.column()) {
    case Name: return e->name;
    case Kind: return kindName(e->kind);
    case Architecture: return e->architecture;
    case Parameters: return e->parameters > 0 ? humanCount(e->parameters) : QStringLiteral("–");
    case Layers: return intOrDash(e->layers);
    case Hidden: return intOrDash(e->hiddenSize);
    case DType: return e->dtype;
    case Size: return e->sizeOnDisk > 0 ? humanBytes(e->sizeOnDisk) : QStringLiteral("–");
    case Experts:
        return e->kind == ModelKind::NativeMoe ? QStringLiteral("%1 (top-%2)").arg(e->experts).arg(e->topK)
                                                : QStringLiteral("–");
    case Source: return sourceName(e->source);
    case Location: return invalid ? e->error : e->path;
    }
    return {};
}

void ModelLibrary::scan(const QVector<ModelSource>& sources) {
    const quint64 generation = ++generation_;
    latest_->store(generation);
    scanning_ = true;
    emit scanStarted();
    auto* watcher = new QFutureWatcher<QVector<ModelEntry>>(this);
    connect(watcher, &QFutureWatcher<QVector<ModelEntry>>::finished, this, [this, watcher, generation] {
        takeResult(generation, watcher->result());
        watcher->deleteLater();
    });
    watcher->setFuture(QtConcurrent::run([sources, latest = latest_, generation] {
        return scanModelSources(sources, [&] { return latest->load() != generation; });
    }));
}

void ModelLibrary::takeResult(quint64 generation, QVector<ModelEntry> result) {
    if (generation != generation_) return; // a newer scan was started
    beginResetModel();
    entries_ = std::move(result);
    endResetModel();
    scanning_ = false;
    int errors = 0;
    for (const auto& e : entries_) errors += e.isValid() ? 0 : 1;
    emit scanFinished(int(entries_.size()) - errors, errors);
}

} // namespace moe::ui
