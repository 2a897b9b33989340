#pragma once
// The MoE builder's page. The builder (selector, gate training, routed experts)
// is not part of this version yet: the page says so, and its two buttons emit
// the signals the builder's wizard will be connected to.
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
