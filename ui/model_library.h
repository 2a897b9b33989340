#pragma once
// The library of local models as a table model. Scans run on a worker thread
// (QtConcurrent); the table is replaced in one step when a scan finishes.
#include "model_scanner.h"

#include <QAbstractTableModel>
#include <QFutureWatcher>

#include <atomic>
#include <memory>

namespace moe::ui {

class ModelLibrary : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Kind, Architecture, Parameters, Layers, Hidden, DType, Size, Experts, Source, Location, ColumnCount };
    enum Role { EntryRole = Qt::UserRole + 1, PathRole, SortRole /* numbers for the numeric columns */ };

    explicit ModelLibrary(QObject* parent = nullptr);
    ~ModelLibrary() override;

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    // Starts a scan of `sources`; a scan already running is superseded (told
    // to stop, its result dropped). scanFinished() follows on the UI thread.
    void scan(const QVector<ModelSource>& sources);
    bool isScanning() const { return scanning_; }

    const QVector<ModelEntry>& entries() const { return entries_; }
    const ModelEntry* entry(int row) const;
    int rowOfPath(const QString& path) const;

signals:
    void scanStarted();
    void scanFinished(int models, int errors);

private:
    void takeResult(quint64 generation, QVector<ModelEntry> result);

    QVector<ModelEntry> entries_;
    quint64 generation_ = 0;
    // The newest generation, shared with the workers so that a superseded scan stops early.
    std::shared_ptr<std::atomic<quint64>> latest_ = std::make_shared<std::atomic<quint64>>(0);
    bool scanning_ = false;
};

} // namespace moe::ui
