#include "studio_app.h"

#include "app_paths.h"
#include "build_controller.h"
#include "build_wizard.h"
#include "training_page.h"
#include "chat_controller.h"
#include "chat_page.h"
#include "main_window.h"
#include "model_library.h"
#include "server_controller.h"
#include "server_page.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QElapsedTimer>
#include <QComboBox>
#include <QFileInfo>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QEventLoop>
#include <QTimer>

#include <cstdio>

namespace moe::ui {
namespace {

// Runs the event loop until `done()` or the timeout; returns done().
template <class Done> bool waitUntil(Done done, int timeoutMs) {
    QElapsedTimer timer;
    timer.start();
    while (!done() && timer.elapsed() < timeoutMs) {
        QEventLoop loop;
        QTimer::singleShot(20, &loop, &QEventLoop::quit);
        loop.exec();
    }
    return done();
}

int selfTest(MainWindow& window) {
    if (!waitUntil([&] { return !window.library()->isScanning(); }, 60000)) {
        std::fprintf(stderr, "self-test: the model scan did not finish within 60 s\n");
        return 1;
    }
    waitUntil([&] { return !window.deviceName().isEmpty(); }, 30000);
    std::printf("self-test: window \"%s\" open, Vulkan device: %s\n", qPrintable(window.windowTitle()),
                qPrintable(window.deviceName().isEmpty() ? QStringLiteral("(no answer)") : window.deviceName()));
    const QString demo = demoModelsDir();
    std::printf("self-test: demo models from %s\n", demo.isEmpty() ? "(none found)" : qPrintable(demo));
    int valid = 0;
    for (const ModelEntry& e : window.library()->entries()) {
        std::printf("self-test: model %-14s %-12s %s\n", qPrintable(e.name), qPrintable(kindName(e.kind)),
                    qPrintable(e.isValid() ? e.path : e.error));
        valid += e.isValid() ? 1 : 0;
    }
    std::printf("self-test: %d models listed\n", valid);
    return 0;
}

bool grabTo(QWidget& window, const QString& dir, const QString& name) {
    QApplication::processEvents();
    const QString path = QDir(dir).filePath(name + QStringLiteral(".png"));
    const bool ok = window.grab().save(path);
    std::printf("screenshot: %s %s\n", qPrintable(path), ok ? "saved" : "FAILED");
    return ok;
}

int screenshots(MainWindow& window, const QString& dir, const QString& prompt) {
    QDir().mkpath(dir);
    window.resize(1280, 800);
    if (!waitUntil([&] { return !window.library()->isScanning() && !window.deviceName().isEmpty(); }, 60000)) return 1;
    window.showPage(MainWindow::Models);
    bool ok = grabTo(window, dir, QStringLiteral("models"));
    window.showPage(MainWindow::Build);
    ok &= grabTo(window, dir, QStringLiteral("build"));
    // With the demo experts: the wizard filled with a small MoE, its training, and a chat with it.
    const QString demo = demoModelsDir();
    const bool demoMoe = !demo.isEmpty() && QFileInfo::exists(demo + QStringLiteral("/amoe.json")) &&
                         QFileInfo::exists(demo + QStringLiteral("/expert-tech/config.json"));
    ChatController* chat = window.chat();
    if (demoMoe) {
        BuildWizard* wizard = window.openWizard();
        wizard->basePathEdit()->setText(demo + QStringLiteral("/base"));
        emit wizard->basePathEdit()->editingFinished();
        for (const char* e : {"expert-code", "expert-legal", "expert-tech"}) wizard->addExpert(demo + QLatin1Char('/') + QLatin1String(e));
        wizard->selectLayerRange(2, 3);
        wizard->loadDatasetFile(demo + QStringLiteral("/amoe.json"));
        wizard->routingBox()->setCurrentIndex(wizard->routingBox()->findText(QStringLiteral("token")));
        wizard->epochsBox()->setValue(20);
        wizard->next();
        waitUntil([] { return false; }, 300);
        ok &= grabTo(*wizard, dir, QStringLiteral("wizard"));
        while (wizard->currentId() != BuildWizard::TrainingPage) wizard->next();
        waitUntil([] { return false; }, 300);
        ok &= grabTo(*wizard, dir, QStringLiteral("wizard-training"));
        wizard->button(QWizard::FinishButton)->click();
        waitUntil([&] { return !window.builder()->isRunning(); }, 600000);
        waitUntil([] { return false; }, 500); // the last replot and the heatmap
        ok &= grabTo(window, dir, QStringLiteral("training"));
        if (window.builder()->builtMoe()) {
            window.trainingPage()->chatButton()->click();
            waitUntil([&] { return chat->isModelLoaded(); }, 120000);
        }
    } else {
        window.showPage(MainWindow::Training);
        ok &= grabTo(window, dir, QStringLiteral("training"));
    }

    // A short real chat with the MoE, else with the first base model.
    window.showPage(MainWindow::Chat);
    QString base;
    if (!chat->isModelLoaded())
        for (const ModelEntry& e : window.library()->entries())
            if (e.kind == ModelKind::Base) {
                base = e.path;
                break;
            }
    if (!base.isEmpty()) {
        window.chatPage()->chooseModel(base);
        if (!waitUntil([&] { return chat->isModelLoaded() || !chat->isModelLoading(); }, 120000) || !chat->isModelLoaded()) {
            std::fprintf(stderr, "screenshot: %s did not load\n", qPrintable(base));
            return 1;
        }
    }
    if (chat->isModelLoaded()) {
        GenerationSettings settings; // the settings of packaging/run-demo.sh
        settings.temperature = 0.7;
        settings.topK = 40;
        settings.repetitionPenalty = 1.2;
        settings.maxTokens = 64;
        settings.seed = 7;
        window.chatPage()->applySettings(settings);
        chat->send(prompt);
        waitUntil([&] { return !chat->isGenerating(); }, 120000);
        waitUntil([] { return false; }, 200); // let the last Markdown render and scroll settle
    }
    ok &= grabTo(window, dir, QStringLiteral("chat"));

    // The Local server running with the first base model on the default port
    // (8080; if something holds it, the picture shows the page's error).
    window.showPage(MainWindow::Server);
    ServerPage* serverPage = window.serverPage();
    for (const ModelEntry& e : window.library()->entries())
        if (e.kind == ModelKind::Base && serverPage->chooseModel(e.path)) break;
    serverPage->switchButton()->click();
    ServerController* server = window.server();
    waitUntil([&] { return server->state() != ServerController::State::Starting; }, 120000);
    waitUntil([] { return false; }, 200);
    ok &= grabTo(window, dir, QStringLiteral("server"));
    server->stop();
    waitUntil([&] { return server->state() == ServerController::State::Stopped; }, 30000);
    return ok ? 0 : 1;
}

} // namespace

int runStudio(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("moe-studio"));
    QApplication::setApplicationDisplayName(QStringLiteral("MoE Studio"));
    QApplication::setOrganizationName(QStringLiteral("moe-studio"));
    QApplication::setApplicationVersion(QStringLiteral(MOE_STUDIO_VERSION));
    QApplication::setDesktopFileName(QStringLiteral("moe-studio"));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Build Mixture-of-Experts models from the models you have, and chat with them."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption selfTestOption(QStringLiteral("self-test"),
                                            QStringLiteral("Open the main window, list the models, exit (0 = fine)."));
    const QCommandLineOption screenshotOption(QStringLiteral("screenshot"),
                                              QStringLiteral("Save PNGs of the main pages into <dir> and exit."),
                                              QStringLiteral("dir"));
    const QCommandLineOption promptOption(QStringLiteral("screenshot-prompt"),
                                          QStringLiteral("The chat message sent for --screenshot."), QStringLiteral("text"),
                                          QStringLiteral("The licensee shall"));
    parser.addOption(selfTestOption);
    parser.addOption(screenshotOption);
    parser.addOption(promptOption);
    parser.addPositionalArgument(QStringLiteral("selector"), QStringLiteral("A selector (.toml) to build."), QStringLiteral("[selector.toml]"));
    parser.process(app);

    MainWindow window;
    window.show();
    window.start();
    if (parser.isSet(selfTestOption)) return selfTest(window);
    if (parser.isSet(screenshotOption))
        return screenshots(window, parser.value(screenshotOption), parser.value(promptOption));
    for (const QString& arg : parser.positionalArguments())
        if (arg.endsWith(QStringLiteral(".toml"), Qt::CaseInsensitive) ||
            arg.endsWith(QStringLiteral(".yaml"), Qt::CaseInsensitive) ||
            arg.endsWith(QStringLiteral(".yml"), Qt::CaseInsensitive)) { // a mergekit-moe config opens too
            window.openWizard(arg);
            break;
        }
    return app.exec();
}

} // namespace moe::ui
