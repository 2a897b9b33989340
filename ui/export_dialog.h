#pragma once
// "Export…" for a built MoE: format (Mixtral / Qwen2-MoE checkpoint folder, or
// one GGUF file for llama.cpp, Ollama and LM Studio), dtype or quant type,
// shard size and output, then moe::exportMoe / moe::exportMoeGguf on a worker
// thread with a progress bar and Cancel. A GGUF export's size is planned (on a
// worker thread) and shown before anything is written; afterwards the dialog
// offers to open the folder and shows the commands that run the file. The
// engine writes under a temporary name and renames at the end, so a cancelled
// or failed export leaves nothing behind.
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
    QPushButton* openFolderButton() const { return openFolder_; }
    // "expected size: …" of a GGUF export, planned without writing.
    QString expectedSizeText() const;
    bool isSizing() const { return sizeThread_ != nullptr; }

signals:
    void exported(const QString& folder); // finished, folder complete
    void cancelled();
    void failed(const QString& message);

protected:
    void reject() override; // Escape / Close: cancels a running export first

private:
    void setRunning(bool running);
    void showStatus(const QString& text);
    bool isGguf() const;
    void formatChanged();
    void updateExpectedSize();

    moe::Selector selector_;
    QComboBox* format_;
    QComboBox* dtype_;
    QLineEdit* shardSize_;
    QLineEdit* output_;
    QPushButton* browse_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* expectedSize_;
    QPushButton* openFolder_;
    QThread* sizeThread_ = nullptr;
    bool sizePending_ = false;
    QPushButton* exportButton_;
    QPushButton* cancelButton_;
    QThread* thread_ = nullptr;
    std::atomic<bool> cancel_{false};
    bool running_ = false;
};

} // namespace moe::ui
