#pragma once
// Runs moe::buildMoe on a worker thread. The engine's progress callback is
// turned into queued signals (the UI thread never waits on the build); stop()
// sets the cancel flag, and the build keeps the gates trained so far and
// installs them; abandon() (the window closing) stops that install as well.
#include "chat_worker.h"

#include "moe/selector.h"

#include <QObject>
#include <QThread>
#include <QStringList>
#include <QVector>

#include <atomic>
#include <memory>

namespace moe {
struct BuildReport;
}

namespace moe::ui {

class BuildController : public QObject {
    Q_OBJECT
public:
    explicit BuildController(QObject* parent = nullptr);
    ~BuildController() override; // abandons a running build and waits for it

    // False (with failed) when a build is already running.
    bool start(const moe::Selector& selector);
    void stop();
    void abandon();
    bool isRunning() const { return running_; }

    const moe::Selector& selector() const { return selector_; }
    // The last finished build (null before one, or when it failed).
    const moe::BuildReport* report() const { return report_.get(); }
    std::shared_ptr<BuiltMoe> builtMoe() const { return built_; }
    // "L2", "L3", … for the selector's layers, as plotted.
    QStringList layerNames() const { return layerNames_; }

signals:
    void started(const QStringList& layerNames);
    // stage: "validate", "capture", "train", "gates", "routing", "experts".
    void stageChanged(const QString& stage, int done, int total);
    void stepTrained(int step, int totalSteps, int epoch, int epochs, const QVector<double>& layerLoss, double mean);
    void epochValidated(int epoch, int step, double accuracy);
    void finished(bool cancelled);
    void failed(const QString& message);

private:
    QThread* thread_ = nullptr; // the running build's own thread (at a lower CPU priority)
    std::atomic<bool> cancel_{false};
    std::atomic<bool> abandon_{false};
    bool running_ = false;
    moe::Selector selector_;
    QStringList layerNames_;
    std::shared_ptr<moe::BuildReport> report_;
    std::shared_ptr<BuiltMoe> built_;
    QString error_;
};

} // namespace moe::ui
