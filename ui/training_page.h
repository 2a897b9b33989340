#pragma once
// The Training page: what the build is doing (stage), the live loss plot
// (TrainingView) fed by a BuildController, and after the build the routing
// accuracy per layer, the confusion matrix, "Chat with this MoE" and "Export…".
#include <QWidget>

class QComboBox;
class QLabel;
class QPushButton;
class QTableWidget;

namespace moe::ui {

class BuildController;
class ExportDialog;
class TrainingView;

class TrainingPage : public QWidget {
    Q_OBJECT
public:
    TrainingPage(BuildController* controller, QWidget* parent = nullptr);

    TrainingView* view() const { return view_; }
    QTableWidget* accuracyTable() const { return accuracyTable_; }
    QComboBox* confusionLayerBox() const { return confusionLayer_; }
    QPushButton* chatButton() const { return chatButton_; }
    QPushButton* exportButton() const { return exportButton_; }
    // Opens the Export dialog for the built MoE (non-modal, deleted on close).
    ExportDialog* openExportDialog();
    QString stageText() const;

signals:
    void chatRequested();

private:
    void showResults(bool cancelled);
    void showConfusion();

    BuildController* controller_;
    TrainingView* view_;
    QLabel* stage_;
    QTableWidget* accuracyTable_;
    QComboBox* confusionLayer_;
    QLabel* routingSummary_;
    QPushButton* chatButton_;
    QPushButton* exportButton_;
    QWidget* results_;
};

} // namespace moe::ui
