#include "expert_usage_view.h"

#include <qcustomplot.h>

#include <QVBoxLayout>

namespace moe::ui {

ExpertUsageView::ExpertUsageView(QWidget* parent) : QWidget(parent), plot_(new QCustomPlot(this)) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot_);
    plot_->setMinimumHeight(160);
    plot_->yAxis->setLabel(tr("tokens"));
    plot_->legend->setVisible(true);
    plot_->legend->setFont(QFont(font().family(), 8));
}

void ExpertUsageView::clear() { setUsage({}); }

void ExpertUsageView::setUsage(const QVector<QVector<int>>& usage, const QStringList& expertNames,
                               const QStringList& layerNames) {
    usage_ = usage;
    plot_->clearPlottables();
    int experts = 0;
    for (const auto& layer : usage) experts = std::max(experts, int(layer.size()));
    auto* group = new QCPBarsGroup(plot_);
    static const QColor palette[] = {QColor(0x3b, 0x82, 0xf6), QColor(0xf5, 0x9e, 0x0b), QColor(0x10, 0xb9, 0x81),
                                     QColor(0xef, 0x44, 0x44), QColor(0x8b, 0x5c, 0xf6), QColor(0x06, 0xb6, 0xd4),
                                     QColor(0xec, 0x48, 0x99), QColor(0x84, 0xcc, 0x16)};
    const double width = 0.8 / std::max(1, experts);
    int maxCount = 0;
    for (int e = 0; e < experts; ++e) {
        auto* bars = new QCPBars(plot_->xAxis, plot_->yAxis);
        bars->setName(e < expertNames.size() ? expertNames[e] : tr("expert %1").arg(e));
        const QColor c = palette[e % std::size(palette)];
        bars->setPen(QPen(c.darker(130)));
        bars->setBrush(c);
        bars->setWidth(width);
        bars->setBarsGroup(group);
        for (int l = 0; l < usage.size(); ++l) {
            const int v = e < usage[l].size() ? usage[l][e] : 0;
            bars->addData(l, v);
            maxCount = std::max(maxCount, v);
        }
    }
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    for (int l = 0; l < usage.size(); ++l)
        ticker->addTick(l, l < layerNames.size() ? layerNames[l] : QStringLiteral("L%1").arg(l));
    plot_->xAxis->setTicker(ticker);
    plot_->xAxis->setRange(-0.6, std::max<qsizetype>(1, usage.size()) - 0.4);
    plot_->yAxis->setRange(0, std::max(1, maxCount) * 1.1);
    plot_->replot();
}

} // namespace moe::ui
