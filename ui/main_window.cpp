#include "main_window.h"

#include "build_page.h"
#include "chat_controller.h"
#include "chat_page.h"
#include "model_library.h"
#include "models_page.h"
#include "training_view.h"

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
      buildPage_(new BuildPage), trainingView_(new TrainingView), chatPage_(new ChatPage(chat_, library_)),
      deviceLabel_(new QLabel(tr("Vulkan: probing…"))) {
    initMoeUiResources();
    setWindowTitle(tr("MoE Studio"));
    setWindowIcon(QIcon(QStringLiteral(":/icons/moe-studio.png")));

    // Training: the widget is ready; the gate trainer that feeds it comes with the builder.
    auto* trainingPage = new QWidget;
    auto* trainingLayout = new QVBoxLayout(trainingPage);
    auto* trainingNote = new QLabel(tr("Gate training runs from the MoE builder (not in this version yet). "
                                       "Its loss curves, validation accuracy and routing confusion matrix appear here."));
    trainingNote->setWordWrap(true);
    trainingNote->setStyleSheet(QStringLiteral("color: palette(mid);"));
    trainingLayout->addWidget(trainingNote);
    trainingLayout->addWidget(trainingView_, 1);

    struct Entry {
        QString name;
        QStyle::StandardPixmap icon;
        QWidget* page;
    };
    const Entry entries[] = {{tr("Models"), QStyle::SP_DriveHDIcon, modelsPage_},
                             {tr("Build"), QStyle::SP_FileDialogNewFolder, buildPage_},
                             {tr("Training"), QStyle::SP_ComputerIcon, trainingPage},
                             {tr("Chat"), QStyle::SP_MessageBoxQuestion, chatPage_}};
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
    connect(modelsPage_, &ModelsPage::chatRequested, this, [this](const QString& path) {
        showPage(Chat);
        chatPage_->chooseModel(path);
    });
    connect(buildPage_, &BuildPage::newMoeRequested, this, [this] {
        statusBar()->showMessage(tr("The MoE builder wizard is not available in this version yet."), 8000);
    });
    connect(buildPage_, &BuildPage::openSelectorRequested, this, [this](const QString& path) {
        statusBar()->showMessage(tr("Opening selectors comes with the MoE builder (%1 not opened).").arg(path), 8000);
    });
    showPage(Models);
}

MainWindow::~MainWindow() = default;

QWidget* MainWindow::page(Page page) const { return stack_->widget(int(page)); }

void MainWindow::showPage(Page page) { sidebar_->setCurrentRow(int(page)); }

MainWindow::Page MainWindow::currentPage() const { return Page(stack_->currentIndex()); }

void MainWindow::start() {
    QSettings settings;
    if (const QByteArray geometry = settings.value(QStringLiteral("window/geometry")).toByteArray(); !geometry.isEmpty())
        restoreGeometry(geometry);
    showPage(Page(std::clamp(settings.value(QStringLiteral("window/page"), int(Models)).toInt(), 0, int(Chat))));
    modelsPage_->loadSettings();
    chatPage_->loadSettings();
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
}

void MainWindow::closeEvent(QCloseEvent* event) {
    saveSettings();
    chat_->stop();
    event->accept();
}

} // namespace moe::ui
