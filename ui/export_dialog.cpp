// Engine headers come before any Qt header (Qt's `slots` keyword is a macro).
#include "moe/error.h"
#include "moe/export.h"
#include "moe/gguf_export.h"

#include "export_dialog.h"

#include <QComboBox>
#include <QDesktopServices>
#include <QSignalBlocker>
#include <QUrl>
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
      expectedSize_(new QLabel), openFolder_(new QPushButton(tr("Open folder"))),
      exportButton_(new QPushButton(tr("Export"))), cancelButton_(new QPushButton(tr("Close"))) {
    setWindowTitle(tr("Export the MoE"));
    format_->addItem(tr("Mixtral (MixtralForCausalLM)"), QStringLiteral("mixtral"));
    format_->addItem(tr("Qwen2-MoE (Qwen2MoeForCausalLM; unrouted layers stay dense)"), QStringLiteral("qwen2_moe"));
    format_->addItem(tr("Qwen3-MoE (Qwen3MoeForCausalLM; Qwen3 bases; unrouted layers stay dense)"),
                     QStringLiteral("qwen3_moe"));
    format_->addItem(tr("GGUF (llama.cpp, Ollama, LM Studio)"), QStringLiteral("gguf"));
    // The base's own format first (Qwen3 bases export as Qwen3-MoE only).
    try {
        const int index = format_->findData(QString::fromUtf8(moe::toString(moe::defaultExportFormat(selector))));
        if (index >= 0) format_->setCurrentIndex(index);
    } catch (const std::exception&) {
        // An unreadable base is reported when the export starts.
    }
    openFolder_->setVisible(false);
    expectedSize_->setVisible(false);
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
    form->addRow(tr("Output"), outputRow);
    form->addRow(QString(), expectedSize_);

    auto* buttons = new QDialogButtonBox;
    buttons->addButton(openFolder_, QDialogButtonBox::ActionRole);
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
                                                    ? (isGguf() ? QStringLiteral("moe.gguf") : QStringLiteral("moe-hf"))
                                                    : QFileInfo(output_->text()).fileName()));
    });
    connect(format_, &QComboBox::currentIndexChanged, this, &ExportDialog::formatChanged);
    connect(dtype_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateExpectedSize);
    connect(openFolder_, &QPushButton::clicked, this, [this] {
        QDesktopServices::openUrl(QUrl::fromLocalFile(QFileInfo(output_->text().trimmed()).absolutePath()));
    });
    formatChanged();
    connect(exportButton_, &QPushButton::clicked, this, &ExportDialog::startExport);
    connect(cancelButton_, &QPushButton::clicked, this, &ExportDialog::reject);
}

ExportDialog::~ExportDialog() {
    cancel_.store(true);
    if (thread_) thread_->wait();
    if (sizeThread_) sizeThread_->wait();
}

bool ExportDialog::isGguf() const { return format_->currentData().toString() == QLatin1String("gguf"); }

QString ExportDialog::expectedSizeText() const { return expectedSize_->text(); }

// The dtype choices and the output's form follow the format.
void ExportDialog::formatChanged() {
    const bool gguf = isGguf();
    if (dtype_->count() > 0 && gguf == (dtype_->findData(QStringLiteral("q4_k_m")) >= 0)) return; // same kind of export
    const QSignalBlocker block(dtype_);
    dtype_->clear();
    if (gguf) {
        for (const char* t : {"f16", "bf16", "f32", "q8_0", "q6_k", "q5_k_m", "q4_k_m"})
            dtype_->addItem(QString::fromLatin1(t), QString::fromLatin1(t));
        dtype_->setCurrentIndex(dtype_->findData(QStringLiteral("q4_k_m")));
    } else {
        const QString selectorDtype = QString::fromStdString(selector_.exportDtype);
        dtype_->addItem(selectorDtype.isEmpty() ? tr("as the base model")
                                                : tr("selector's export_dtype (%1)").arg(selectorDtype),
                        QString());
        for (const char* t : {"bf16", "f16", "f32"}) dtype_->addItem(QString::fromLatin1(t), QString::fromLatin1(t));
    }
    shardSize_->setEnabled(!gguf);
    // The output's form follows: "NAME-hf" folder or "NAME.gguf" file.
    QString outText = output_->text();
    if (gguf && outText.endsWith(QLatin1String("-hf"))) outText = outText.chopped(3) + QStringLiteral(".gguf");
    else if (!gguf && outText.endsWith(QLatin1String(".gguf"))) outText = outText.chopped(5) + QStringLiteral("-hf");
    output_->setText(outText);
    showStatus(gguf ? tr("Writes one GGUF file, quantized as chosen, with an Ollama Modelfile beside it: llama.cpp, "
                         "Ollama and LM Studio run it as a Mixtral-style MoE. The file appears only when complete.")
                    : tr("Writes a standard Hugging Face MoE checkpoint (config.json, safetensors shards with an "
                         "index, tokenizer, model card) that Transformers, vLLM, SGLang, TGI and llama.cpp "
                         "(after GGUF conversion) load. The folder appears only when complete."));
    openFolder_->setVisible(false);
    updateExpectedSize();
}

// Plans the GGUF export on a worker thread (validation and the gates' file
// are read) and shows its size; a change while one runs plans again after it.
void ExportDialog::updateExpectedSize() {
    expectedSize_->setVisible(isGguf());
    if (!isGguf()) return;
    if (sizeThread_) {
        sizePending_ = true;
        return;
    }
    moe::GgufExportOptions options;
    if (!moe::parseGgufFileType(dtype_->currentData().toString().toStdString(), options.type)) return;
    options.out = "expected-size.gguf";
    options.dryRun = true;
    expectedSize_->setText(tr("expected size: computing…"));
    auto text = std::make_shared<QString>();
    const moe::Selector selector = selector_;
    sizeThread_ = QThread::create([selector, options, text] {
        try {
            const auto r = moe::exportMoeGguf(selector, options);
            QString types;
            for (const auto& [type, count] : r.tensorTypes)
                types += (types.isEmpty() ? QString() : QStringLiteral(", ")) + QString::fromStdString(type) +
                         QStringLiteral(" ") + QString::number(count);
            *text = tr("expected size: %1 MB (%2 tensors: %3)").arg(double(r.bytes) / 1e6, 0, 'f', 1).arg(r.tensors).arg(types);
        } catch (const std::exception& e) {
            *text = tr("cannot export as GGUF: %1").arg(QString::fromStdString(e.what()));
        }
    });
    sizeThread_->setObjectName(QStringLiteral("moe-export-size"));
    connect(sizeThread_, &QThread::finished, this, [this, text] {
        sizeThread_->deleteLater();
        sizeThread_ = nullptr;
        expectedSize_->setText(*text);
        if (sizePending_) {
            sizePending_ = false;
            updateExpectedSize();
        }
    });
    sizeThread_->start();
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
    const bool gguf = isGguf();
    moe::ExportOptions options;
    moe::GgufExportOptions ggufOptions;
    try {
        if (gguf) {
            if (!moe::parseGgufFileType(dtype_->currentData().toString().toStdString(), ggufOptions.type))
                throw moe::Error("unknown GGUF type");
        } else {
            if (!moe::parseExportFormat(format_->currentData().toString().toStdString(), options.format))
                throw moe::Error("unknown format");
            options.dtype = dtype_->currentData().toString().toStdString();
            const std::string shardSize = shardSize_->text().trimmed().toStdString();
            try {
                options.shardBytes = moe::parseByteSize(shardSize);
            } catch (const moe::Error& e) {
                throw moe::Error(std::string("shard size ") + e.what());
            }
        }
    } catch (const std::exception& e) {
        showStatus(tr("<b>Cannot export:</b> %1").arg(QString::fromStdString(e.what()).toHtmlEscaped()));
        emit failed(QString::fromStdString(e.what()));
        return false;
    }
    const QString out = output_->text().trimmed();
    if (out.isEmpty()) {
        showStatus(tr("<b>Cannot export:</b> choose an output %1.").arg(gguf ? tr("file") : tr("folder")));
        emit failed(tr("no output"));
        return false;
    }
    options.out = ggufOptions.out = QDir::cleanPath(QFileInfo(out).absoluteFilePath()).toStdString();

    cancel_.store(false);
    setRunning(true);
    openFolder_->setVisible(false);
    progress_->setRange(0, 0); // busy until the first progress report
    showStatus(tr("Exporting to %1…").arg(QString::fromStdString(options.out.string()).toHtmlEscaped()));
    if (thread_) thread_->wait(); // the last one has ended already (running_ was false)
    delete thread_;

    struct Outcome {
        moe::ExportReport report;
        moe::GgufExportReport gguf;
        QString error;
    };
    auto outcome = std::make_shared<Outcome>();
    const moe::Selector selector = selector_;
    thread_ = QThread::create([this, selector, options, ggufOptions, gguf, outcome] {
        // Progress is queued to the UI thread: this lambda never touches widgets.
        auto report = [this](size_t doneCount, size_t totalCount, bool tensors) {
            const int done = int(doneCount), total = int(totalCount);
            QMetaObject::invokeMethod(this, [this, done, total, tensors] {
                if (!running_) return;
                progress_->setRange(0, std::max(total, 1));
                progress_->setValue(done);
                progress_->setFormat(tensors ? tr("tensor %v of %m") : tr("%p %"));
            }, Qt::QueuedConnection);
        };
        try {
            if (gguf)
                outcome->gguf = moe::exportMoeGguf(
                    selector, ggufOptions, [&](const moe::GgufExportProgress& p) { report(p.done, p.total, true); },
                    &cancel_);
            else
                outcome->report = moe::exportMoe(
                    selector, options,
                    [&](const moe::ExportProgress& p) { report(p.done, p.total, p.stage == "tensors"); }, &cancel_);
        } catch (const std::exception& e) {
            outcome->error = QString::fromStdString(e.what());
        }
    });
    thread_->setObjectName(QStringLiteral("moe-export"));
    connect(thread_, &QThread::finished, this, [this, outcome, gguf] {
        setRunning(false);
        if (!outcome->error.isEmpty()) {
            progress_->setRange(0, 1);
            progress_->setValue(0);
            showStatus(tr("<b>The export failed:</b> %1")
                           .arg(outcome->error.toHtmlEscaped().replace(QLatin1Char('\n'), QStringLiteral("<br>"))));
            emit failed(outcome->error);
            return;
        }
        if (gguf ? outcome->gguf.cancelled : outcome->report.cancelled) {
            progress_->setRange(0, 1);
            progress_->setValue(0);
            showStatus(tr("Cancelled: nothing was written."));
            emit cancelled();
            return;
        }
        progress_->setRange(0, 1);
        progress_->setValue(1);
        const auto& r = outcome->report;
        const auto& g = outcome->gguf;
        const QString where = QString::fromStdString(gguf ? g.out.string() : r.out.string());
        QString text = tr("Exported %1 experts (top-%2), %3 tensors, %4 MB to <b>%5</b>.")
                           .arg(gguf ? g.experts : r.experts)
                           .arg(gguf ? g.expertsPerToken : r.expertsPerToken)
                           .arg(gguf ? g.tensors : r.tensors)
                           .arg(double(gguf ? g.bytes : r.bytes) / 1e6, 0, 'f', 1)
                           .arg(where.toHtmlEscaped());
        for (const auto& w : gguf ? g.warnings : r.warnings)
            text += QStringLiteral("<br>⚠ ") + QString::fromStdString(w).toHtmlEscaped();
        if (gguf) {
            const QString stem = QFileInfo(where).completeBaseName();
            text += tr("<br><br>Run it:<br><tt>ollama create %1 -f %2</tt><br>LM Studio: copy it into "
                       "<tt>~/.lmstudio/models/moe-studio/%1/</tt><br><tt>llama-server -m %3</tt>")
                        .arg(stem.toHtmlEscaped(), QString::fromStdString(g.modelfile.string()).toHtmlEscaped(),
                             where.toHtmlEscaped());
        }
        showStatus(text);
        openFolder_->setVisible(true);
        emit exported(where);
    });
    thread_->start();
    return true;
}

} // namespace moe::ui
