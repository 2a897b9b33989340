#pragma once
// The MoE builder's page: "New MoE…" and "Open selector…" open the build wizard.
#include <QWidget>

namespace moe::ui {

class BuildPage : public QWidget {
    Q_OBJECT
public:
    explicit BuildPage(QWidget* parent = nullptr);

signals:
    void newMoeRequested();
    void openSelectorRequested(const QString& path);
};

} // namespace moe::ui
