#pragma once
// Bars of how many tokens each expert received in each MoE layer of the last
// reply. The chat shows it only for models with MoE layers; the MoE engine
// feeds it through ReplyStats::expertUsage.
#include <QStringList>
#include <QVector>
#include <QWidget>

class QCustomPlot;

namespace moe::ui {

class ExpertUsageView : public QWidget {
    Q_OBJECT
public:
    explicit ExpertUsageView(QWidget* parent = nullptr);

    // usage[layer][expert] = tokens routed there; `layerNames` label the x
    // axis (default "L0", "L1", …), `expertNames` the legend.
    void setUsage(const QVector<QVector<int>>& usage, const QStringList& expertNames = {},
                  const QStringList& layerNames = {});
    void clear();
    const QVector<QVector<int>>& usage() const { return usage_; }
    QCustomPlot* plot() const { return plot_; }

private:
    QCustomPlot* plot_;
    QVector<QVector<int>> usage_;
};

} // namespace moe::ui
