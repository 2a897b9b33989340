// Engine headers come before any Qt header (Qt's `slots` keyword is a macro).
#include "moe/builder.h"
#include "moe/mergekit.h"

#include "build_page.h"

#include "export_dialog.h"

#include <QDir>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QStyle>
#include <QVBoxLayout>

namespace moe::ui {

BuildPage::BuildPage(QWidget* parent) : QWidget(parent), message_(new QLabel) {
    auto* title = new QLabel(tr("<h2>Build a Mixture of Experts</h2>"));
    auto* text = new QLabel(
        tr("Combine a base model with fine-tuned experts or LoRA adapters from your library, train a router per "
           "layer, and chat with the result.<br><br>"
           "<b>New MoE…</b> walks through base, experts, layers, routing and training; <b>Open selector…</b> "
           "fills the same pages from a TOML selector (mistral.rs AnyMoE format). Training runs on the "
           "Training page."));
    text->setWordWrap(true);
    text->setMaximumWidth(640);
    auto* newButton = new QPushButton(style()->standardIcon(QStyle::SP_FileDialogNewFolder), tr("New MoE…"));
    auto* openButton = new QPushButton(style()->standardIcon(QStyle::SP_DialogOpenButton), tr("Open selector…"));
    auto* exportButton = new QPushButton(style()->standardIcon(QStyle::SP_DialogSaveButton), tr("Export…"));
    exportButton->setToolTip(tr("Write a built MoE (choose its selector) as a Hugging Face Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint"));
    newButton->setMinimumHeight(36);
    openButton->setMinimumHeight(36);
    exportButton->setMinimumHeight(36);
    message_->setWordWrap(true);
    message_->setMaximumWidth(640);

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(newButton);
    buttons->addWidget(openButton);
    buttons->addWidget(exportButton);
    buttons->addStretch(1);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(32, 24, 32, 24);
    layout->addWidget(title);
    layout->addWidget(text);
    layout->addSpacing(12);
    layout->addLayout(buttons);
    layout->addWidget(message_);
    layout->addStretch(1);

    connect(newButton, &QPushButton::clicked, this, &BuildPage::newMoeRequested);
    connect(openButton, &QPushButton::clicked, this, [this] {
        QSettings settings;
        const QString last = settings.value(QStringLiteral("build/lastFolder"), QDir::homePath()).toString();
        const QString path = QFileDialog::getOpenFileName(this, tr("Open a selector"), last,
                                                          tr("Selectors (*.toml *.json *.yaml *.yml);;All files (*)"));
        if (path.isEmpty()) return;
        settings.setValue(QStringLiteral("build/lastFolder"), QFileInfo(path).absolutePath());
        emit openSelectorRequested(path);
    });
    connect(exportButton, &QPushButton::clicked, this, [this] {
        QSettings settings;
        const QString last = settings.value(QStringLiteral("build/lastFolder"), QDir::homePath()).toString();
        const QString path = QFileDialog::getOpenFileName(this, tr("Export a built MoE: choose its selector"), last,
                                                          tr("Selectors (*.toml *.yaml *.yml);;All files (*)"));
        if (path.isEmpty()) return;
        settings.setValue(QStringLiteral("build/lastFolder"), QFileInfo(path).absolutePath());
        openExportDialog(path);
    });
}

QString BuildPage::messageText() const { return message_->text(); }

ExportDialog* BuildPage::openExportDialog(const QString& path) {
    message_->clear();
    moe::Selector selector;
    try {
        selector = moe::loadSelectorAny(path.toStdString());
    } catch (const std::exception& e) {
        message_->setText(tr("<b>Cannot export:</b> %1").arg(QString::fromStdString(e.what()).toHtmlEscaped()));
        return nullptr;
    }
    std::error_code ec;
    if (const std::filesystem::path gates = moe::gatesFile(selector); !std::filesystem::is_regular_file(gates, ec)) {
        message_->setText(tr("<b>Cannot export:</b> %1 has no gates yet (%2); build it first (Open selector…).")
                              .arg(path.toHtmlEscaped(), QString::fromStdString(gates.string()).toHtmlEscaped()));
        return nullptr;
    }
    auto* dialog = new ExportDialog(selector, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->open();
    return dialog;
}

} // namespace moe::ui
