#include "training_view.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QSplitter>
#include <QStyle>
#include <QTimer>
#include <QVBoxLayout>

#include <cmath>

namespace moe::ui {
namespace {

constexpr int kReplotIntervalMs = 50;

QColor layerColor(int i) {
    static const QColor palette[] = {QColor(0x3b, 0x82, 0xf6), QColor(0xf5, 0x9e, 0x0b), QColor(0x10, 0xb9, 0x81),
                                     QColor(0xef, 0x44, 0x44), QColor(0x8b, 0x5c, 0xf6), QColor(0x06, 0xb6, 0xd4),
                                     QColor(0xec, 0x48, 0x99), QColor(0x84, 0xcc, 0x16)};
    return palette[i % int(std::size(palette))];
}

// Shortest text that reads back as the same double: the CSV holds exactly what was plotted.
QString exact(double v) { return QString::number(v, 'g', QLocale::FloatingPointShortest); }

QString clock(qint64 seconds) {
    return QStringLiteral("%1:%2:%3")
        .arg(seconds / 3600)
        .arg((seconds / 60) % 60, 2, 10, QLatin1Char('0'))
        .arg(seconds % 60, 2, 10, QLatin1Char('0'));
}

} // namespace

TrainingView::TrainingView(QWidget* parent)
    : QWidget(parent), plot_(new QCustomPlot), confusionPlot_(new QCustomPlot),
      smoothingBox_(new QCheckBox(tr("Smooth (EMA)"))), logScaleBox_(new QCheckBox(tr("Log scale"))),
      progress_(new QProgressBar), progressLabel_(new QLabel), stopButton_(new QPushButton(tr("Stop"))),
      replotTimer_(new QTimer(this)) {
    plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plot_->xAxis->setLabel(tr("step"));
    plot_->yAxis->setLabel(tr("gate loss (cross-entropy)"));
    plot_->yAxis2->setVisible(true);
    plot_->yAxis2->setLabel(tr("validation routing accuracy"));
    plot_->yAxis2->setRange(0, 1.05);
    plot_->legend->setVisible(true);
    plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    plot_->setMinimumHeight(280);

    meanGraph_ = plot_->addGraph(plot_->xAxis, plot_->yAxis);
    meanGraph_->setName(tr("mean"));
    meanGraph_->setPen(QPen(Qt::black, 2.5));
    validationGraph_ = plot_->addGraph(plot_->xAxis, plot_->yAxis2);
    validationGraph_->setName(tr("validation accuracy"));
    validationGraph_->setPen(QPen(QColor(0x16, 0xa3, 0x4a), 1.5, Qt::DashLine));
    validationGraph_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 7));

    confusionPlot_->setMinimumHeight(170); // fits with the results below it in an 800 px window
    confusionPlot_->xAxis->setLabel(tr("routed to"));
    confusionPlot_->yAxis->setLabel(tr("label"));
    confusionMap_ = new QCPColorMap(confusionPlot_->xAxis, confusionPlot_->yAxis);
    confusionScale_ = new QCPColorScale(confusionPlot_);
    confusionPlot_->plotLayout()->addElement(0, 1, confusionScale_);
    confusionScale_->setLabel(tr("prompts"));
    confusionMap_->setColorScale(confusionScale_);
    // Jet, not Thermal: Thermal's top end is white, so the best cells vanished into the background.
    confusionMap_->setGradient(QCPColorGradient::gpJet);
    confusionMap_->setInterpolate(false);
    confusionPlot_->setVisible(false);

    auto* exportButton = new QPushButton(style()->standardIcon(QStyle::SP_DialogSaveButton), tr("Export CSV…"));
    auto* saveButton = new QPushButton(style()->standardIcon(QStyle::SP_DriveFDIcon), tr("Save plot…"));
    stopButton_->setIcon(style()->standardIcon(QStyle::SP_MediaStop));
    stopButton_->setEnabled(false);

    auto* controls = new QHBoxLayout;
    controls->addWidget(smoothingBox_);
    controls->addWidget(logScaleBox_);
    controls->addStretch(1);
    controls->addWidget(exportButton);
    controls->addWidget(saveButton);

    auto* progressRow = new QHBoxLayout;
    progressRow->addWidget(progress_, 1);
    progressRow->addWidget(stopButton_);
    progress_->setTextVisible(true);
    progress_->setFormat(tr("waiting for the first step"));
    progress_->setValue(0);

    auto* splitter = new QSplitter(Qt::Vertical);
    splitter->addWidget(plot_);
    splitter->addWidget(confusionPlot_);
    splitter->setStretchFactor(0, 3);
    splitter->setStretchFactor(1, 2);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(controls);
    layout->addWidget(splitter, 1);
    layout->addLayout(progressRow);
    layout->addWidget(progressLabel_);

    replotTimer_->setSingleShot(true);
    replotTimer_->setInterval(kReplotIntervalMs);
    connect(replotTimer_, &QTimer::timeout, this, &TrainingView::replotNow);
    connect(smoothingBox_, &QCheckBox::toggled, this, &TrainingView::setSmoothing);
    connect(logScaleBox_, &QCheckBox::toggled, this, &TrainingView::setLogScale);
    connect(exportButton, &QPushButton::clicked, this, &TrainingView::exportCsvInteractive);
    connect(saveButton, &QPushButton::clicked, this, &TrainingView::savePlotInteractive);
    connect(stopButton_, &QPushButton::clicked, this, [this] {
        stopButton_->setEnabled(false);
        emit stopRequested();
    });
    updateProgress();
}

void TrainingView::setLayerNames(const QStringList& names) {
    layerNames_ = names;
    ensureLayers(int(names.size()));
    for (int i = 0; i < layerGraphs_.size(); ++i)
        layerGraphs_[i]->setName(i < names.size() ? names[i] : tr("layer %1").arg(i));
    scheduleReplot();
}

void TrainingView::setPlan(int totalSteps, int totalEpochs) {
    totalSteps_ = totalSteps;
    totalEpochs_ = totalEpochs;
    updateProgress();
}

void TrainingView::ensureLayers(int n) {
    while (layerGraphs_.size() < n) {
        const int i = int(layerGraphs_.size());
        auto* g = plot_->addGraph(plot_->xAxis, plot_->yAxis);
        g->setName(i < layerNames_.size() ? layerNames_[i] : tr("layer %1").arg(i));
        g->setPen(QPen(layerColor(i), 1.2));
        layerGraphs_.push_back(g);
        layerEma_.push_back(0);
    }
}

double TrainingView::shown(double raw, double& ema, bool first) const {
    if (!smoothing_) return raw;
    // Bias-free start: the first point is itself.
    ema = first ? raw : beta_ * ema + (1 - beta_) * raw;
    return ema;
}

void TrainingView::addStep(int step, int epoch, const QVector<double>& layerLoss, double mean) {
    if (steps_.isEmpty()) {
        elapsed_.start();
        stopButton_->setEnabled(true);
    }
    ensureLayers(int(layerLoss.size()));
    const bool first = steps_.isEmpty();
    steps_.push_back({step, epoch, layerLoss, mean});
    for (int i = 0; i < layerLoss.size(); ++i) layerGraphs_[i]->addData(step, shown(layerLoss[i], layerEma_[i], first));
    meanGraph_->addData(step, shown(mean, meanEma_, first));
    scheduleReplot();
}

void TrainingView::addEpochValidation(int epoch, int step, double accuracy) {
    validations_.push_back({epoch, step, accuracy});
    validationGraph_->addData(step, accuracy);
    scheduleReplot();
}

void TrainingView::rebuildGraphs() {
    for (auto* g : layerGraphs_) g->data()->clear();
    meanGraph_->data()->clear();
    bool first = true;
    for (const Step& s : steps_) {
        for (int i = 0; i < s.layerLoss.size(); ++i) layerGraphs_[i]->addData(s.step, shown(s.layerLoss[i], layerEma_[i], first));
        meanGraph_->addData(s.step, shown(s.mean, meanEma_, first));
        first = false;
    }
    scheduleReplot();
}

void TrainingView::setSmoothing(bool on) {
    if (smoothingBox_->isChecked() != on) smoothingBox_->setChecked(on); // re-enters through toggled
    if (smoothing_ == on) return;
    smoothing_ = on;
    rebuildGraphs();
}

void TrainingView::setSmoothingFactor(double beta) {
    beta_ = std::clamp(beta, 0.0, 0.999);
    if (smoothing_) rebuildGraphs();
}

void TrainingView::setLogScale(bool on) {
    if (logScaleBox_->isChecked() != on) logScaleBox_->setChecked(on);
    if (logScale_ == on) return;
    logScale_ = on;
    if (on) {
        plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
        plot_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    } else {
        plot_->yAxis->setScaleType(QCPAxis::stLinear);
        plot_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    }
    scheduleReplot();
}

void TrainingView::setConfusion(const QVector<QVector<int>>& counts, const QStringList& expertNames) {
    const int n = int(counts.size());
    confusionPlot_->setVisible(n > 0);
    if (n == 0) return;
    int cols = 0;
    for (const auto& row : counts) cols = std::max(cols, int(row.size()));
    confusionMap_->data()->setSize(cols, n);
    confusionMap_->data()->setRange(QCPRange(0, cols - 1), QCPRange(0, n - 1));
    int maxCount = 0;
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < cols; ++c) {
            const int v = c < counts[r].size() ? counts[r][c] : 0;
            confusionMap_->data()->setCell(c, r, v);
            maxCount = std::max(maxCount, v);
        }
    confusionMap_->setDataRange(QCPRange(0, std::max(1, maxCount)));
    QSharedPointer<QCPAxisTickerText> xTicks(new QCPAxisTickerText), yTicks(new QCPAxisTickerText);
    for (int i = 0; i < std::max(n, cols); ++i) {
        const QString name = i < expertNames.size() ? expertNames[i] : QString::number(i);
        if (i < cols) xTicks->addTick(i, name);
        if (i < n) yTicks->addTick(i, name);
    }
    confusionPlot_->xAxis->setTicker(xTicks);
    confusionPlot_->yAxis->setTicker(yTicks);
    confusionPlot_->xAxis->setRange(-0.5, cols - 0.5);
    // First label on top: a reversed axis (QCPRange itself keeps lower < upper).
    confusionPlot_->yAxis->setRangeReversed(true);
    confusionPlot_->yAxis->setRange(-0.5, n - 0.5);
    confusionPlot_->replot(QCustomPlot::rpQueuedReplot); // with the next event-loop pass, not inside the caller
}

void TrainingView::setStopEnabled(bool on) { stopButton_->setEnabled(on); }

void TrainingView::clear() {
    steps_.clear();
    validations_.clear();
    for (auto* g : layerGraphs_) plot_->removeGraph(g);
    layerGraphs_.clear();
    layerEma_.clear();
    meanGraph_->data()->clear();
    validationGraph_->data()->clear();
    confusionPlot_->setVisible(false);
    stopButton_->setEnabled(false);
    ensureLayers(int(layerNames_.size()));
    updateProgress();
    scheduleReplot();
}

void TrainingView::scheduleReplot() {
    if (!replotTimer_->isActive()) replotTimer_->start();
}

void TrainingView::replotNow() {
    bool found = false;
    QCPRange keys = meanGraph_->getKeyRange(found);
    if (found) plot_->xAxis->setRange(keys.lower, std::max(keys.upper, keys.lower + 1));
    bool any = false;
    QCPRange values;
    for (QCPGraph* g : layerGraphs_ + QVector<QCPGraph*>{meanGraph_}) {
        bool ok = false;
        const QCPRange r = g->getValueRange(ok, QCP::sdBoth, QCPRange());
        if (!ok) continue;
        values = any ? QCPRange(std::min(values.lower, r.lower), std::max(values.upper, r.upper)) : r;
        any = true;
    }
    if (any) {
        if (logScale_) values.lower = std::max(values.lower, 1e-6);
        const double pad = logScale_ ? 0 : (values.upper - values.lower) * 0.05;
        plot_->yAxis->setRange(values.lower - pad, values.upper + pad + (values.upper == values.lower ? 1e-3 : 0));
        if (logScale_) plot_->yAxis->setRange(values.lower * 0.9, values.upper * 1.1);
    }
    plot_->replot(QCustomPlot::rpQueuedReplot);
    ++replots_;
    updateProgress();
}

void TrainingView::updateProgress() {
    if (steps_.isEmpty()) {
        progress_->setRange(0, std::max(1, totalSteps_));
        progress_->setValue(0);
        progressLabel_->setText(tr("No training run yet."));
        return;
    }
    const Step& last = steps_.last();
    const double seconds = elapsed_.elapsed() / 1000.0;
    const double rate = seconds > 0 ? steps_.size() / seconds : 0;
    QString text = tr("Epoch %1%2 · step %3%4 · elapsed %5 · %6 steps/s")
                       .arg(last.epoch)
                       .arg(totalEpochs_ > 0 ? QStringLiteral("/%1").arg(totalEpochs_) : QString())
                       .arg(last.step)
                       .arg(totalSteps_ > 0 ? QStringLiteral("/%1").arg(totalSteps_) : QString())
                       .arg(clock(qint64(seconds)))
                       .arg(rate, 0, 'f', 1);
    if (totalSteps_ > 0 && rate > 0) {
        const int left = std::max(0, totalSteps_ - last.step);
        text += tr(" · ETA %1").arg(clock(qint64(left / rate)));
        progress_->setRange(0, totalSteps_);
        progress_->setValue(std::min(last.step, totalSteps_));
        progress_->setFormat(QStringLiteral("%p%"));
    } else {
        progress_->setRange(0, 0); // unknown total: busy indicator
    }
    progressLabel_->setText(text);
}

QString TrainingView::csvText() const {
    QString out = QStringLiteral("step,epoch");
    for (int i = 0; i < layerGraphs_.size(); ++i) {
        QString name = layerGraphs_[i]->name();
        name.replace(QLatin1Char('"'), QStringLiteral("\"\""));
        out += QStringLiteral(",\"%1\"").arg(name);
    }
    out += QStringLiteral(",mean,validation_accuracy\n");
    // The plotted values: the graphs' data (smoothed when smoothing is on).
    for (int row = 0; row < steps_.size(); ++row) {
        const Step& s = steps_[row];
        out += QStringLiteral("%1,%2").arg(s.step).arg(s.epoch);
        for (QCPGraph* g : layerGraphs_) {
            const auto data = g->data();
            out += QLatin1Char(',');
            // Layer lists can be shorter on early steps; graphs are keyed by step.
            auto it = data->findBegin(s.step, false);
            if (it != data->constEnd() && it->key == s.step) out += exact(it->value);
        }
        auto mean = meanGraph_->data()->findBegin(s.step, false);
        out += QLatin1Char(',') + (mean != meanGraph_->data()->constEnd() ? exact(mean->value) : QString());
        out += QLatin1Char(',');
        for (const Validation& v : validations_)
            if (v.step == s.step) out += exact(v.accuracy);
        out += QLatin1Char('\n');
    }
    return out;
}

bool TrainingView::exportCsv(const QString& path, QString* error) const {
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly | QIODevice::Text)) {
        if (error) *error = QStringLiteral("%1: %2").arg(path, file.errorString());
        return false;
    }
    file.write(csvText().toUtf8());
    if (!file.commit()) {
        if (error) *error = QStringLiteral("%1: %2").arg(path, file.errorString());
        return false;
    }
    return true;
}

bool TrainingView::savePlot(const QString& path, int width, int height) {
    if (path.endsWith(QStringLiteral(".pdf"), Qt::CaseInsensitive)) return plot_->savePdf(path, width, height);
    return plot_->savePng(path, width, height);
}

void TrainingView::exportCsvInteractive() {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export CSV"), QStringLiteral("gate-training.csv"),
                                                      tr("CSV files (*.csv)"));
    if (path.isEmpty()) return;
    QString error;
    if (!exportCsv(path, &error)) QMessageBox::warning(this, tr("Export CSV"), error);
}

void TrainingView::savePlotInteractive() {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save plot"), QStringLiteral("gate-training.png"),
                                                      tr("PNG image (*.png);;PDF document (*.pdf)"));
    if (path.isEmpty()) return;
    if (!savePlot(path)) QMessageBox::warning(this, tr("Save plot"), tr("Could not write %1").arg(path));
}

} // namespace moe::ui
