#pragma once
// MoE Studio's main window: a sidebar (Models, Build, Training, Chat, Local
// server) over a
// stack of pages, and a status bar with the Vulkan device. Geometry, the
// current page, folders and chat settings are kept in QSettings.
#include <QMainWindow>

class QLabel;
class QListWidget;
class QStackedWidget;

namespace moe::ui {

class BuildController;
class BuildPage;
class BuildWizard;
class ChatController;
class ChatPage;
class ModelLibrary;
class ModelsPage;
class ServerController;
class ServerPage;
class TrainingPage;
class TrainingView;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum Page { Models = 0, Build, Training, Chat, Server };

    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    // Restores settings, then starts the model scan and the device probe
    // (both on worker threads).
    void start();
    void showPage(Page page);
    Page currentPage() const;

    ModelLibrary* library() const { return library_; }
    ChatController* chat() const { return chat_; }
    ModelsPage* modelsPage() const { return modelsPage_; }
    ChatPage* chatPage() const { return chatPage_; }
    BuildPage* buildPage() const { return buildPage_; }
    TrainingView* trainingView() const;
    TrainingPage* trainingPage() const { return trainingPage_; }
    BuildController* builder() const { return build_; }
    ServerController* server() const { return server_; }
    ServerPage* serverPage() const { return serverPage_; }
    // Loads a selector and starts its build on the Training page; false (with
    // the reason in the status bar and on the Training page) when it does not load.
    bool buildFromSelector(const QString& path);
    // Opens the build wizard, empty or filled from a TOML selector (false with
    // the reason in the status bar when the file does not load). Finish builds.
    BuildWizard* openWizard(const QString& selectorPath = {});
    BuildWizard* wizard() const { return wizard_; }
    QWidget* page(Page page) const;
    QString deviceName() const { return deviceName_; }

signals:
    void deviceProbed(const QString& description);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void saveSettings() const;
    void probeDevice();

    ModelLibrary* library_;
    ChatController* chat_;
    QListWidget* sidebar_;
    QStackedWidget* stack_;
    ModelsPage* modelsPage_;
    BuildPage* buildPage_;
    BuildController* build_;
    BuildWizard* wizard_ = nullptr;
    TrainingPage* trainingPage_;
    ChatPage* chatPage_;
    ServerController* server_;
    ServerPage* serverPage_;
    QLabel* deviceLabel_;
    QString deviceName_;
};

} // namespace moe::ui
