// TrainingView with its own data API: graphs hold what was added, the CSV
// export is exactly what is plotted, smoothing / log scale / throttled replots,
// plot files and the confusion matrix.
#include "expert_usage_view.h"
#include "training_view.h"

#include "ui_test_env.h"

#include <qcustomplot.h>

#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

using namespace moe::ui;

namespace {

struct Added {
    QVector<int> steps, epochs;
    QVector<QVector<double>> loss; // per step: one value per layer
    QVector<double> mean;
};

// 500 steps for 2 layers: decaying losses with a little deterministic noise,
// values with many significant digits so a lossy CSV would show.
Added addSteps(TrainingView& view, int n, int stepsPerEpoch) {
    Added a;
    for (int s = 1; s <= n; ++s) {
        const double l0 = 1.1 * std::exp(-s / 120.0) + 0.01 * std::sin(s * 0.7) + 0.05;
        const double l1 = 0.9 * std::exp(-s / 90.0) + 0.01 * std::cos(s * 1.3) + 0.04;
        const int epoch = (s - 1) / stepsPerEpoch + 1;
        const QVector<double> loss{l0, l1};
        const double mean = (l0 + l1) / 2;
        view.addStep(s, epoch, loss, mean);
        a.steps << s;
        a.epochs << epoch;
        a.loss << loss;
        a.mean << mean;
    }
    return a;
}

QList<QStringList> readCsv(const QString& path) {
    QFile f(path);
    f.open(QIODevice::ReadOnly | QIODevice::Text);
    QList<QStringList> rows;
    for (const QByteArray& line : f.readAll().split('\n'))
        if (!line.isEmpty()) rows << QString::fromUtf8(line).split(',');
    return rows;
}

} // namespace

class TestUiTrainingView : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        moe::test::isolateUiTest(tmp_);
    }

    void graphsHoldWhatWasAdded() {
        TrainingView view;
        view.setLayerNames({"layer 0", "layer 3"});
        view.setPlan(500, 5);
        view.show();
        const Added a = addSteps(view, 500, 100);
        for (int e = 1; e <= 5; ++e) view.addEpochValidation(e, e * 100, 0.5 + 0.09 * e);

        QCOMPARE(view.layerCount(), 2);
        QCOMPARE(view.stepCount(), 500);
        QCOMPARE(view.layerGraph(0)->data()->size(), 500);
        QCOMPARE(view.layerGraph(1)->data()->size(), 500);
        QCOMPARE(view.meanGraph()->data()->size(), 500);
        QCOMPARE(view.validationGraph()->data()->size(), 5);
        QCOMPARE(view.validationGraph()->valueAxis(), view.lossPlot()->yAxis2);
        QCOMPARE(view.layerGraph(1)->name(), QStringLiteral("layer 3"));
        QCOMPARE(view.layerGraph(1)->data()->at(499)->value, a.loss[499][1]);
        QVERIFY(view.lossPlot()->interactions().testFlag(QCP::iRangeDrag));
        QVERIFY(view.lossPlot()->interactions().testFlag(QCP::iRangeZoom));

        // Replots are throttled: 505 additions in a burst, a handful of replots.
        QTRY_VERIFY(view.replotCount() >= 1);
        QTest::qWait(120);
        QVERIFY2(view.replotCount() <= 3, qPrintable(QString::number(view.replotCount())));
    }

    void csvEqualsTheDataAdded() {
        TrainingView view;
        view.setLayerNames({"L0", "L1"});
        const Added a = addSteps(view, 500, 100);
        for (int e = 1; e <= 5; ++e) view.addEpochValidation(e, e * 100, 1.0 / (e + 2));
        const QString path = tmp_.path() + "/loss.csv";
        QString error;
        QVERIFY2(view.exportCsv(path, &error), qPrintable(error));
        const auto rows = readCsv(path);
        QCOMPARE(rows.size(), 501);
        QCOMPARE(rows[0], (QStringList{"step", "epoch", "\"L0\"", "\"L1\"", "mean", "validation_accuracy"}));
        for (int i = 0; i < 500; ++i) {
            const QStringList& r = rows[i + 1];
            QCOMPARE(r.size(), 6);
            QCOMPARE(r[0].toInt(), a.steps[i]);
            QCOMPARE(r[1].toInt(), a.epochs[i]);
            // Shortest round-trip text: the doubles come back bit for bit.
            QCOMPARE(r[2].toDouble(), a.loss[i][0]);
            QCOMPARE(r[3].toDouble(), a.loss[i][1]);
            QCOMPARE(r[4].toDouble(), a.mean[i]);
            if (a.steps[i] % 100 == 0) QCOMPARE(r[5].toDouble(), 1.0 / (a.steps[i] / 100 + 2));
            else QVERIFY(r[5].isEmpty());
        }
    }

    void smoothingIsWhatIsPlottedAndExported() {
        TrainingView view;
        view.setLayerNames({"L0", "L1"});
        const Added a = addSteps(view, 200, 50);
        view.setSmoothing(true);
        QCOMPARE(view.layerGraph(0)->data()->size(), 200);
        // EMA with beta 0.9 computed here independently, started at the first value.
        double ema = a.loss[0][0];
        for (int i = 1; i < 200; ++i) ema = 0.9 * ema + 0.1 * a.loss[i][0];
        QVERIFY(qAbs(view.layerGraph(0)->data()->at(199)->value - ema) < 1e-12);
        const auto rows = readCsv([&] {
            const QString p = tmp_.path() + "/smoothed.csv";
            view.exportCsv(p);
            return p;
        }());
        QVERIFY(qAbs(rows[200][2].toDouble() - ema) < 1e-12);
        // Steps added while smoothing is on continue the same EMA.
        view.addStep(201, 5, {0.5, 0.5}, 0.5);
        QVERIFY(qAbs(view.layerGraph(0)->data()->at(200)->value - (0.9 * ema + 0.1 * 0.5)) < 1e-12);
        view.setSmoothing(false);
        QCOMPARE(view.layerGraph(0)->data()->at(199)->value, a.loss[199][0]);

        view.setLogScale(true);
        QCOMPARE(view.lossPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
        view.setLogScale(false);
        QCOMPARE(view.lossPlot()->yAxis->scaleType(), QCPAxis::stLinear);
    }

    void savesPngAndPdf() {
        TrainingView view;
        view.resize(900, 600);
        addSteps(view, 50, 10);
        const QString png = tmp_.path() + "/plot.png", pdf = tmp_.path() + "/plot.pdf";
        QVERIFY(view.savePlot(png, 800, 500));
        QVERIFY(view.savePlot(pdf, 800, 500));
        QImage image(png);
        QCOMPARE(image.size(), QSize(800, 500));
        QFile f(pdf);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QVERIFY(f.read(5) == "%PDF-");
    }

    void stopButtonEmitsAndConfusionMatrixFills() {
        TrainingView view;
        QSignalSpy stop(&view, &TrainingView::stopRequested);
        auto* button = view.findChild<QPushButton*>(QString(), Qt::FindChildrenRecursively);
        QVERIFY(button);
        QPushButton* stopButton = nullptr;
        for (auto* b : view.findChildren<QPushButton*>()) if (b->text() == "Stop") stopButton = b;
        QVERIFY(stopButton);
        QVERIFY(!stopButton->isEnabled()); // nothing running yet
        view.addStep(1, 1, {1.0}, 1.0);
        QVERIFY(stopButton->isEnabled());
        QTest::mouseClick(stopButton, Qt::LeftButton);
        QCOMPARE(stop.size(), 1);

        view.setConfusion({{30, 2, 0}, {1, 25, 4}, {0, 3, 27}}, {"code", "legal", "tech"});
        QVERIFY(view.confusionPlot()->isVisibleTo(&view));
        auto* map = qobject_cast<QCPColorMap*>(view.confusionPlot()->plottable(0));
        QVERIFY(map);
        QCOMPARE(map->data()->keySize(), 3);
        QCOMPARE(map->data()->valueSize(), 3);
        QCOMPARE(map->data()->cell(1, 2), 3.0); // row "tech" (label 2), routed to "legal" (1)
    }

    // The chat's MoE seam: one bar series per expert, one bar per layer.
    void expertUsageBars() {
        ExpertUsageView view;
        view.setUsage({{5, 0, 3}, {1, 7, 0}}, {"code", "legal", "tech"});
        QCOMPARE(view.plot()->plottableCount(), 3);
        auto* legal = qobject_cast<QCPBars*>(view.plot()->plottable(1));
        QVERIFY(legal);
        QCOMPARE(legal->name(), QStringLiteral("legal"));
        QCOMPARE(legal->data()->size(), 2);
        QCOMPARE(legal->data()->at(1)->value, 7.0);
        view.clear();
        QCOMPARE(view.plot()->plottableCount(), 0);
    }
};

QTEST_MAIN(TestUiTrainingView)
#include "test_ui_training_view.moc"
