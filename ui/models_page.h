#pragma once
// The model library page: a table of the local models (demo models, the
// Hugging Face cache, folders the user added) with their facts, and the
// selected model's details or error.
#include "model_scanner.h"

#include <QWidget>

class QLabel;
class QPushButton;
class QSortFilterProxyModel;
class QTableView;

namespace moe::ui {

class ModelLibrary;

class ModelsPage : public QWidget {
    Q_OBJECT
public:
    explicit ModelsPage(ModelLibrary* library, QWidget* parent = nullptr);

    // Sources: the demo folder and Hugging Face caches (found automatically)
    // plus the folders the user added (kept in QSettings).
    QVector<ModelSource> sources() const;
    QStringList userFolders() const { return userFolders_; }
    void addFolder(const QString& path);   // adds and rescans
    void removeFolder(const QString& path);
    void rescan();

    QTableView* table() const { return table_; }
    QLabel* detailsLabel() const { return details_; }
    QLabel* summaryLabel() const { return summary_; }
    void selectPath(const QString& path);

    void loadSettings();
    void saveSettings() const;

signals:
    void chatRequested(const QString& modelPath);
    void statusMessage(const QString& text);

private:
    void showDetails();
    const ModelEntry* selectedEntry() const;

    ModelLibrary* library_;
    QSortFilterProxyModel* proxy_;
    QTableView* table_;
    QLabel* summary_;
    QLabel* details_;
    QPushButton* chatButton_;
    QPushButton* removeButton_;
    QStringList userFolders_;
    QString lastFolder_;
};

} // namespace moe::ui
