// Engine headers with members named `slots` come before any Qt header (Qt's
// `slots` keyword is a macro).
#include "moe/builder.h"
#include "moe/runnable_model.h"

#include "build_controller.h"

#include "moe/vk.h"

#include <QFileInfo>

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <numeric>

namespace moe::ui {

namespace {
// The build (and the Vulkan driver's threads it starts, which inherit it)
// yields the CPU to the UI thread: on a CPU Vulkan device they would otherwise
// compete with it for every core.
void lowerThisThreadsPriority() {
#ifdef __linux__
    setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 10);
#endif
}
} // namespace

BuildController::BuildController(QObject* parent) : QObject(parent) {}

BuildController::~BuildController() {
    abandon();
    if (thread_) thread_->wait();
}

void BuildController::stop() { cancel_.store(true); }

void BuildController::abandon() {
    abandon_.store(true);
    cancel_.store(true);
}

bool BuildController::start(const moe::Selector& selector) {
    if (running_) {
        emit failed(tr("A build is already running: stop it first."));
        return false;
    }
    running_ = true;
    cancel_.store(false);
    abandon_.store(false);
    selector_ = selector;
    report_.reset();
    built_.reset();
    error_.clear();
    layerNames_.clear();
    // The plotted layers are the validated ones (sorted, all when none given);
    // the names are set again from the facts once the build knows them.
    std::vector<int> layers = selector.layers;
    std::sort(layers.begin(), layers.end());
    for (int l : layers) layerNames_ << tr("L%1").arg(l);
    emit started(layerNames_);

    const QString name = selector.file.empty() ? tr("new MoE") : QFileInfo(QString::fromStdString(selector.file.string())).completeBaseName();
    if (thread_) thread_->wait(); // the last one has ended already (running_ was false)
    delete thread_;
    thread_ = QThread::create([this, selector, name] {
        lowerThisThreadsPriority();
        // Every signal is queued to the UI thread: this lambda never touches widgets.
        auto post = [this](auto fn) { QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection); };
        try {
            auto context = std::make_shared<moe::vk::Context>();
            QString lastStage;
            auto onProgress = [&](const moe::BuildProgress& p) {
                if (const moe::GateTrainProgress* t = p.training) {
                    QVector<double> loss(t->loss.begin(), t->loss.end());
                    const int step = t->step, total = t->totalSteps, epoch = t->epoch, epochs = t->epochs;
                    const double mean = t->meanLoss;
                    post([this, step, total, epoch, epochs, loss, mean] { emit stepTrained(step, total, epoch, epochs, loss, mean); });
                    if (t->epochEnd && !t->valAccuracyToken.empty()) {
                        // The same figure as the loss CSV's val_accuracy: mean over layers, per token.
                        const double acc = std::accumulate(t->valAccuracyToken.begin(), t->valAccuracyToken.end(), 0.0) /
                                           double(t->valAccuracyToken.size());
                        post([this, epoch, step, acc] { emit epochValidated(epoch, step, acc); });
                    }
                    return;
                }
                const QString stage = QString::fromStdString(p.stage);
                const int done = int(p.done), total = int(p.total);
                post([this, stage, done, total] { emit stageChanged(stage, done, total); });
            };
            moe::BuildResult result = moe::buildMoe(*context, selector, onProgress, &cancel_, &abandon_);
            auto report = std::make_shared<moe::BuildReport>(std::move(result.report));
            std::shared_ptr<BuiltMoe> built;
            if (result.moe) {
                built = std::make_shared<BuiltMoe>();
                built->context = context;
                built->model = moe::RunnableModel::fromBuilt(std::move(result.moe));
                built->name = name;
            }
            post([this, report, built] {
                report_ = report;
                built_ = built;
            });
        } catch (const std::exception& e) {
            const QString message = QString::fromStdString(e.what());
            post([this, message] { error_ = message; });
        }
    });
    thread_->setObjectName(QStringLiteral("moe-build"));
    connect(thread_, &QThread::finished, this, [this] {
        running_ = false;
        if (!error_.isEmpty()) {
            emit failed(error_);
            return;
        }
        emit finished(report_ && report_->cancelled);
    });
    thread_->start();
    return true;
}

} // namespace moe::ui
