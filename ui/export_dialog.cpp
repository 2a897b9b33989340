// Engine headers come before any Qt header (Qt's `slots` keyword is a macro).
#include "moe/error.h"
#include "moe/export.h"

#include "export_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QVBoxLayout>

namespace moe::ui {

ExportDialog::ExportDialog(const moe::Selector& selector, QWidget* parent)
    : QDialog(parent), selector_(selector), format_(new QComboBox), dtype_(new QComboBox), shardSize_(new QLineEdit),
      output_(new QLineEdit), browse_(new QPushButton(tr("Browse…"))), progress_(new QProgressBar), status_(new QLabel),
      exportButton_(new QPushButton(tr("Export"))), cancelButton_(new QPushButton(tr("Close"))) {
    setWindowTitle(tr("Export the MoE"));
    format_->addItem(tr("Mixtral (MixtralForCausalLM)"), QStringLiteral("mixtral"));
    format_->addItem(tr("Qwen2-MoE (Qwen2MoeForCausalLM; unrouted layers stay dense)"), QStringLiteral("qwen2_moe"));
    const QString selectorDtype = QString::fromStdString(selector.exportDtype);
    dtype_->addItem(selectorDtype.isEmpty() ? tr("as the base model") : tr("selector's export_dtype (%1)").arg(selectorDtype),
                    QString());
    dtype_->addItem(QStringLiteral("bf16"), QStringLiteral("bf16"));
    dtype_->addItem(QStringLiteral("f16"), QStringLiteral("f16"));
    dtype_->addItem(QStringLiteral("f32"), QStringLiteral("f32"));
    shardSize_->setText(QStringLiteral("5GB"));
    shardSize_->setToolTip(tr("Largest safetensors file, e.g. 5GB, 500MB, 2GiB"));
    // Default: "<selector stem>-hf" beside the selector.
    if (!selector.file.empty()) {
        const QFileInfo info(QString::fromStdString(selector.file.string()));
        output_->setText(QDir(info.absolutePath()).filePath(info.completeBaseName() + QStringLiteral("-hf")));
    }
    progress_->setRange(0, 1);
    progress_->setValue(0);
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    status_->setText(tr("Writes a standard Hugging Face MoE checkpoint (config.json, safetensors shards with an "
                        "index, tokenizer, model card) that Transformers, vLLM, SGLang, TGI and llama.cpp "
                        "(after GGUF conversion) load. The folder appears only when complete."));

    auto* outputRow = new QHBoxLayout;
    outputRow->addWidget(output_, 1);
    outputRow->addWidget(browse_);
    auto* form = new QFormLayout;
    form->addRow(tr("Format"), format_);
    form->addRow(tr("Weights"), dtype_);
    form->addRow(tr("Shard size"), shardSize_);
    form->addRow(tr("Output folder"), outputRow);

    auto* buttons = new QDialogButtonBox;
    buttons->addButton(exportButton_, QDialogButtonBox::AcceptRole);
    buttons->addButton(cancelButton_, QDialogButtonBox::RejectRole);
    exportButton_->setDefault(true);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(form);
    layout->addWidget(progress_);
    layout->addWidget(status_);
    layout->addWidget(buttons);
    setMinimumWidth(560);

    connect(browse_, &QPushButton::clicked, this, [this] {
        const QString start = output_->text().isEmpty() ? QDir::homePath() : QFileInfo(output_->text()).absolutePath();
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder to create the export in"), start);
        if (!dir.isEmpty())
            output_->setText(QDir(dir).filePath(QFileInfo(output_->text()).fileName().isEmpty()
                                                    ? QStringLiteral("moe-hf")
                                                    : QFileInfo(output_->text()).fileName()));
    });
    connect(exportButton_, &QPushButton::clicked, this, &ExportDialog::startExport);
    connect(cancelButton_, &QPushButton::clicked, this, &ExportDialog::reject);
}

ExportDialog::~ExportDialog() {
    cancel_.store(true);
    if (thread_) thread_->wait();
}

QString ExportDialog::statusText() const { return status_->text(); }

void ExportDialog::showStatus(const QString& text) { status_->setText(text); }

void ExportDialog::setRunning(bool running) {
    running_ = running;
    for (QWidget* w : {static_cast<QWidget*>(format_), static_cast<QWidget*>(dtype_), static_cast<QWidget*>(shardSize_),
                       static_cast<QWidget*>(output_), static_cast<QWidget*>(browse_), static_cast<QWidget*>(exportButton_)})
        w->setEnabled(!running);
    cancelButton_->setText(running ? tr("Cancel") : tr("Close"));
}

void ExportDialog::cancelExport() {
    if (!running_) return;
    cancel_.store(true);
    showStatus(tr("Cancelling…"));
}

void ExportDialog::reject() {
    if (running_) {
        cancelExport(); // the dialog stays until the worker has cleaned up
        return;
    }
    QDialog::reject();
}

bool ExportDialog::startExport() {
    if (running_) return false;
    moe::ExportOptions options;
    try {
        if (!moe::parseExportFormat(format_->currentData().toString().toStdString(), options.format))
            throw moe::Error("unknown format");
        options.dtype = dtype_->currentData().toString().toStdString();
        const std::string shardSize = shardSize_->text().trimmed().toStdString();
        try {
            options.shardBytes = moe::parseByteSize(shardSize);
        } catch (const moe::Error& e) {
            throw moe::Error(std::string("shard size ") + e.what());
        }
    } catch (const std::exception& e) {
        showStatus(tr("<b>Cannot export:</b> %1").arg(QString::fromStdString(e.what()).toHtmlEscaped()));
        emit failed(QString::fromStdString(e.what()));
        return false;
    }
    const QString out = output_->text().trimmed();
    if (out.isEmpty()) {
        showStatus(tr("<b>Cannot export:</b> choose an output folder."));
        emit failed(tr("no output folder"));
        return false;
    }
    options.out = QDir::cleanPath(QFileInfo(out).absoluteFilePath()).toStdString();

    cancel_.store(false);
    setRunning(true);
    progress_->setRange(0, 0); // busy until the first progress report
    showStatus(tr("Exporting to %1…").arg(QString::fromStdString(options.out.string()).toHtmlEscaped()));
    if (thread_) thread_->wait(); // the last one has ended already (running_ was false)
    delete thread_;

    struct Outcome {
        moe::ExportReport report;
        QString error;
    };
    auto outcome = std::make_shared<Outcome>();
    const moe::Selector selector = selector_;
    thread_ = QThread::create([this, selector, options, outcome] {
        // Progress is queued to the UI thread: this lambda never touches widgets.
        auto onProgress = [this](const moe::ExportProgress& p) {
            const int done = int(p.done), total = int(p.total);
            const QString stage = QString::fromStdString(p.stage);
            QMetaObject::invokeMethod(this, [this, done, total, stage] {
                if (!running_) return;
                progress_->setRange(0, std::max(total, 1));
                progress_->setValue(done);
                progress_->setFormat(stage == QLatin1String("tensors") ? tr("tensor %v of %m") : tr("%p %"));
            }, Qt::QueuedConnection);
        };
        try {
            outcome->report = moe::exportMoe(selector, options, onProgress, &cancel_);
        } catch (const std::exception& e) {
            outcome->error = QString::fromStdString(e.what());
        }
    });
    thread_->setObjectName(QStringLiteral("moe-export"));
    connect(thread_, &QThread::finished, this, [this, outcome] {
        setRunning(false);
        if (!outcome->error.isEmpty()) {
            progress_->setRange(0, 1);
            progress_->setValue(0);
            showStatus(tr("<b>The export failed:</b> %1")
                           .arg(outcome->error.toHtmlEscaped().replace(QLatin1Char('\n'), QStringLiteral("<br>"))));
            emit failed(outcome->error);
            return;
        }
        const moe::ExportReport& r = outcome->report;
        if (r.cancelled) {
            progress_->setRange(0, 1);
            progress_->setValue(0);
            showStatus(tr("Cancelled: nothing was written."));
            emit cancelled();
            return;
        }
        progress_->setRange(0, 1);
        progress_->setValue(1);
        const QString folder = QString::fromStdString(r.out.string());
        QString text = tr("Exported %1 experts (top-%2), %3 tensors, %4 MB to <b>%5</b>.")
                           .arg(r.experts)
                           .arg(r.expertsPerToken)
                           .arg(r.tensors)
                           .arg(double(r.bytes) / 1e6, 0, 'f', 1)
                           .arg(folder.toHtmlEscaped());
        for (const auto& w : r.warnings) text += QStringLiteral("<br>⚠ ") + QString::fromStdString(w).toHtmlEscaped();
        showStatus(text);
        emit exported(folder);
    });
    thread_->start();
    return true;
}

} // namespace moe::ui
