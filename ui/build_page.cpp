#include "build_page.h"

#include <QDir>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QStyle>
#include <QVBoxLayout>

namespace moe::ui {

BuildPage::BuildPage(QWidget* parent) : QWidget(parent) {
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
    newButton->setMinimumHeight(36);
    openButton->setMinimumHeight(36);

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(newButton);
    buttons->addWidget(openButton);
    buttons->addStretch(1);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(32, 24, 32, 24);
    layout->addWidget(title);
    layout->addWidget(text);
    layout->addSpacing(12);
    layout->addLayout(buttons);
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
}

} // namespace moe::ui
