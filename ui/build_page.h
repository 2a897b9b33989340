#pragma once
// The MoE builder's page: "New MoE…" and "Open selector…" open the build wizard;
// "Export…" writes a built MoE (a selector whose gates exist) as a checkpoint.
#include <QWidget>

class QLabel;

namespace moe::ui {

class ExportDialog;

class BuildPage : public QWidget {
    Q_OBJECT
public:
    explicit BuildPage(QWidget* parent = nullptr);

    // Opens the Export dialog for the selector at `path` (non-modal, deleted
    // on close); null, with the reason shown on the page, when the selector
    // does not load or was not built yet.
    ExportDialog* openExportDialog(const QString& path);
    QString messageText() const;

signals:
    void newMoeRequested();
    void openSelectorRequested(const QString& path);

private:
    QLabel* message_;
};

} // namespace moe::ui
