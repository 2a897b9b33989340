#pragma once
// Live gate-training curves: one loss line per MoE layer plus their mean,
// validation accuracy on the right axis, progress with ETA, CSV/PNG/PDF
// export and a routing confusion matrix. The trainer feeds it through
// addStep / addEpochValidation / setConfusion; replots are throttled so
// thousands of steps stay smooth.
#include <QElapsedTimer>
#include <QStringList>
#include <QVector>
#include <QWidget>

class QCheckBox;
class QCPColorMap;
class QCPColorScale;
class QCPGraph;
class QCustomPlot;
class QLabel;
class QProgressBar;
class QPushButton;
class QTimer;

namespace moe::ui {

class TrainingView : public QWidget {
    Q_OBJECT
public:
    explicit TrainingView(QWidget* parent = nullptr);

    void setLayerNames(const QStringList& names);
    // Planned totals for the progress bar and ETA (0 = unknown).
    void setPlan(int totalSteps, int totalEpochs);
    void addStep(int step, int epoch, const QVector<double>& layerLoss, double mean);
    void addEpochValidation(int epoch, int step, double accuracy);
    // rows = the label's expert, columns = the routed expert.
    void setConfusion(const QVector<QVector<int>>& counts, const QStringList& expertNames);
    void clear();
    // Whether Stop can be pressed (a run is going, also before its first step).
    void setStopEnabled(bool on);

    void setSmoothing(bool on);
    bool smoothing() const { return smoothing_; }
    void setLogScale(bool on);
    bool logScale() const { return logScale_; }
    void setSmoothingFactor(double beta); // EMA: shown = beta·shown + (1−beta)·raw, default 0.9

    // What is plotted, as CSV: step, epoch, one column per layer, mean,
    // validation accuracy (empty on steps without one). Written atomically.
    bool exportCsv(const QString& path, QString* error = nullptr) const;
    QString csvText() const;
    // PNG or PDF by the file's suffix.
    bool savePlot(const QString& path, int width = 1200, int height = 700);

    QCustomPlot* lossPlot() const { return plot_; }
    QCustomPlot* confusionPlot() const { return confusionPlot_; }
    int layerCount() const { return int(layerGraphs_.size()); }
    QCPGraph* layerGraph(int layer) const { return layerGraphs_.value(layer); }
    QCPGraph* meanGraph() const { return meanGraph_; }
    QCPGraph* validationGraph() const { return validationGraph_; }
    int stepCount() const { return int(steps_.size()); }
    int replotCount() const { return replots_; }

signals:
    void stopRequested();

public slots:
    void exportCsvInteractive();
    void savePlotInteractive();

private:
    void ensureLayers(int n);
    void rebuildGraphs();
    void scheduleReplot();
    void replotNow();
    void updateProgress();
    double shown(double raw, double& ema, bool first) const;

    QCustomPlot* plot_;
    QCustomPlot* confusionPlot_;
    QCPColorMap* confusionMap_ = nullptr;
    QCPColorScale* confusionScale_ = nullptr;
    QVector<QCPGraph*> layerGraphs_;
    QCPGraph* meanGraph_ = nullptr;
    QCPGraph* validationGraph_ = nullptr;
    QCheckBox* smoothingBox_;
    QCheckBox* logScaleBox_;
    QProgressBar* progress_;
    QLabel* progressLabel_;
    QPushButton* stopButton_;
    QTimer* replotTimer_;

    QStringList layerNames_;
    struct Step {
        int step, epoch;
        QVector<double> layerLoss;
        double mean;
    };
    QVector<Step> steps_;
    struct Validation {
        int epoch, step;
        double accuracy;
    };
    QVector<Validation> validations_;
    QVector<double> layerEma_;
    double meanEma_ = 0;
    bool smoothing_ = false;
    bool logScale_ = false;
    double beta_ = 0.9;
    int totalSteps_ = 0, totalEpochs_ = 0;
    QElapsedTimer elapsed_;
    int replots_ = 0;
};

} // namespace moe::ui
