#include "main_window.h"

#include "build_controller.h"
#include "build_page.h"
#include "build_wizard.h"
#include "chat_controller.h"
#include "chat_page.h"
#include "model_library.h"
#include "models_page.h"
#include "server_controller.h"
#include "server_page.h"
#include "training_page.h"
#include "training_view.h"

#include "moe/mergekit.h"
#include "moe/selector.h"

#include "moe/vk.h"

#include <QCloseEvent>
#include <QFutureWatcher>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QStyle>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

// Resources of a static library are registered by hand, outside any namespace.
static void initMoeUiResources() { Q_INIT_RESOURCE(moe_studio); }

namespace moe::ui {

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent), library_(new ModelLibrary(this)), chat_(new ChatController(this)),
      sidebar_(new QListWidget), stack_(new QStackedWidget), modelsPage_(new ModelsPage(library_)),
      buildPage_(new BuildPage), build_(new BuildController(this)), trainingPage_(new TrainingPage(build_)), chatPage_(new ChatPage(chat_, library_)),
      server_(new ServerController(this)), serverPage_(new ServerPage(server_, library_, build_)),
      deviceLabel_(new QLabel(tr("Vulkan: probing…"))) {
    initMoeUiResources();
    setWindowTitle(tr("MoE Studio"));
    setWindowIcon(QIcon(QStringLiteral(":/icons/moe-studio.png")));

    struct Entry {
        QString name;
        QStyle::StandardPixmap icon;
        QWidget* page;
    };
    const Entry entries[] = {{tr("Models"), QStyle::SP_DriveHDIcon, modelsPage_},
                             {tr("Build"), QStyle::SP_FileDialogNewFolder, buildPage_},
                             {tr("Training"), QStyle::SP_ComputerIcon, trainingPage_},
                             {tr("Chat"), QStyle::SP_MessageBoxQuestion, chatPage_},
                             {tr("Local server"), QStyle::SP_DriveNetIcon, serverPage_}};
    for (const Entry& e : entries) {
        auto* item = new QListWidgetItem(style()->standardIcon(e.icon), e.name);
        sidebar_->addItem(item);
        stack_->addWidget(e.page);
    }
    sidebar_->setIconSize(QSize(24, 24));
    sidebar_->setFixedWidth(150);
    sidebar_->setFrameShape(QFrame::NoFrame);
    sidebar_->setStyleSheet(QStringLiteral("QListWidget { background: palette(window); font-size: 11pt; }"
                                           "QListWidget::item { padding: 10px 6px; border-radius: 6px; }"
                                           "QListWidget::item:selected { background: palette(highlight);"
                                           " color: palette(highlighted-text); }"));
    connect(sidebar_, &QListWidget::currentRowChanged, stack_, &QStackedWidget::setCurrentIndex);

    auto* central = new QWidget;
    auto* layout = new QHBoxLayout(central);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(sidebar_);
    layout->addWidget(stack_, 1);
    setCentralWidget(central);
    statusBar()->addPermanentWidget(deviceLabel_);
    resize(1280, 800);

    connect(modelsPage_, &ModelsPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 5000); });
    connect(chatPage_, &ChatPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 5000); });
    connect(server_, &ServerController::errorOccurred, this, [this](const QString& message) {
        statusBar()->showMessage(tr("Local server: %1").arg(message.section(QLatin1Char('\n'), 0, 0)), 10000);
    });
    connect(modelsPage_, &ModelsPage::chatRequested, this, [this](const QString& path) {
        showPage(Chat);
        chatPage_->chooseModel(path);
    });
    connect(buildPage_, &BuildPage::newMoeRequested, this, [this] { openWizard(); });
    connect(buildPage_, &BuildPage::openSelectorRequested, this, [this](const QString& path) { openWizard(path); });
    connect(trainingPage_, &TrainingPage::chatRequested, this, [this] {
        if (!build_->builtMoe()) return;
        showPage(Chat);
        chat_->useBuiltMoe(build_->builtMoe());
    });
    connect(build_, &BuildController::failed, this, [this](const QString& message) {
        statusBar()->showMessage(tr("Build failed: %1").arg(message.section(QLatin1Char('\n'), 0, 0)), 10000);
    });
    connect(build_, &BuildController::finished, this, [this](bool cancelled) {
        statusBar()->showMessage(cancelled ? tr("Build stopped; the gates trained so far are kept.") : tr("MoE built."), 8000);
    });
    showPage(Models);
}

MainWindow::~MainWindow() = default;

TrainingView* MainWindow::trainingView() const { return trainingPage_->view(); }

BuildWizard* MainWindow::openWizard(const QString& selectorPath) {
    if (wizard_) wizard_->deleteLater();
    wizard_ = new BuildWizard(library_, this);
    wizard_->setAttribute(Qt::WA_DeleteOnClose);
    connect(wizard_, &QObject::destroyed, this, [this, w = wizard_] {
        if (wizard_ == w) wizard_ = nullptr;
    });
    connect(wizard_, &BuildWizard::buildRequested, this, [this](const moe::Selector& s) {
        showPage(Training);
        build_->start(s);
    });
    if (!selectorPath.isEmpty()) {
        QString error;
        if (!wizard_->openSelector(selectorPath, &error))
            statusBar()->showMessage(tr("Cannot open %1: %2").arg(selectorPath, error.section(QLatin1Char('\n'), 0, 0)), 10000);
    }
    showPage(Build);
    wizard_->show();
    return wizard_;
}

bool MainWindow::buildFromSelector(const QString& path) {
    try {
        const moe::Selector selector = moe::loadSelectorAny(path.toStdString());
        showPage(Training);
        return build_->start(selector);
    } catch (const std::exception& e) {
        const QString message = QString::fromStdString(e.what());
        statusBar()->showMessage(tr("Cannot open %1: %2").arg(path, message.section(QLatin1Char('\n'), 0, 0)), 10000);
        emit build_->failed(message);
        showPage(Training);
        return false;
    }
}

QWidget* MainWindow::page(Page page) const { return stack_->widget(int(page)); }

void MainWindow::showPage(Page page) { sidebar_->setCurrentRow(int(page)); }

MainWindow::Page MainWindow::currentPage() const { return Page(stack_->currentIndex()); }

void MainWindow::start() {
    QSettings settings;
    if (const QByteArray geometry = settings.value(QStringLiteral("window/geometry")).toByteArray(); !geometry.isEmpty())
        restoreGeometry(geometry);
    showPage(Page(std::clamp(settings.value(QStringLiteral("window/page"), int(Models)).toInt(), 0, int(Server))));
    modelsPage_->loadSettings();
    chatPage_->loadSettings();
    serverPage_->loadSettings();
    modelsPage_->rescan();
    probeDevice();
}

void MainWindow::probeDevice() {
    auto* watcher = new QFutureWatcher<QString>(this);
    connect(watcher, &QFutureWatcher<QString>::finished, this, [this, watcher] {
        deviceName_ = watcher->result();
        deviceLabel_->setText(tr("Vulkan: %1").arg(deviceName_));
        watcher->deleteLater();
        emit deviceProbed(deviceName_);
    });
    // The device the engine picks (MOE_VK_DEVICE or its best), as the chat will use it.
    watcher->setFuture(QtConcurrent::run([]() -> QString {
        try {
            moe::vk::Context context;
            const auto& info = context.info();
            return QStringLiteral("%1 (%2)").arg(QString::fromStdString(info.name), QString::fromStdString(info.type));
        } catch (const std::exception& e) {
            return tr("no device: %1").arg(QString::fromStdString(e.what()));
        }
    }));
}

void MainWindow::saveSettings() const {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/page"), int(currentPage()));
    modelsPage_->saveSettings();
    chatPage_->saveSettings();
    serverPage_->saveSettings();
}

void MainWindow::closeEvent(QCloseEvent* event) {
    saveSettings();
    chat_->stop();
    chat_->cancelLoad();
    build_->abandon();
    server_->stop();
    event->accept();
}

} // namespace moe::ui
