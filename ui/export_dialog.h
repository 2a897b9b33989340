#pragma once
// "Export…" for a built MoE: format, dtype, shard size and output folder, then
// moe::exportMoe on a worker thread with a progress bar and Cancel. The engine
// writes into a temporary folder and renames it at the end, so a cancelled or
// failed export leaves nothing behind.
#include "moe/selector.h"

#include <QDialog>
#include <QThread>

#include <atomic>
#include <memory>

class QComboBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;

namespace moe::ui {

class ExportDialog : public QDialog {
    Q_OBJECT
public:
    // `selector` must name a built MoE (its gates exist); the dialog checks
    // nothing itself, exportMoe's errors are shown as they come.
    explicit ExportDialog(const moe::Selector& selector, QWidget* parent = nullptr);
    ~ExportDialog() override; // cancels a running export and waits for it

    // Starts the export with the current fields; false (message shown) when a
    // field is invalid or an export is running.
    bool startExport();
    void cancelExport();
    bool isRunning() const { return running_; }
    QString statusText() const;

    QComboBox* formatBox() const { return format_; }
    QComboBox* dtypeBox() const { return dtype_; }
    QLineEdit* shardSizeEdit() const { return shardSize_; }
    QLineEdit* outputEdit() const { return output_; }
    QProgressBar* progressBar() const { return progress_; }
    QPushButton* exportButton() const { return exportButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }

signals:
    void exported(const QString& folder); // finished, folder complete
    void cancelled();
    void failed(const QString& message);

protected:
    void reject() override; // Escape / Close: cancels a running export first

private:
    void setRunning(bool running);
    void showStatus(const QString& text);

    moe::Selector selector_;
    QComboBox* format_;
    QComboBox* dtype_;
    QLineEdit* shardSize_;
    QLineEdit* output_;
    QPushButton* browse_;
    QProgressBar* progress_;
    QLabel* status_;
    QPushButton* exportButton_;
    QPushButton* cancelButton_;
    QThread* thread_ = nullptr;
    std::atomic<bool> cancel_{false};
    bool running_ = false;
};

} // namespace moe::ui
