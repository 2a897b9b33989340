#pragma once
// MoE Studio's main window: a sidebar (Models, Build, Training, Chat) over a
// stack of pages, and a status bar with the Vulkan device. Geometry, the
// current page, folders and chat settings are kept in QSettings.
#include <QMainWindow>

class QLabel;
class QListWidget;
class QStackedWidget;

namespace moe::ui {

class BuildPage;
class ChatController;
class ChatPage;
class ModelLibrary;
class ModelsPage;
class TrainingView;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum Page { Models = 0, Build, Training, Chat };

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
    TrainingView* trainingView() const { return trainingView_; }
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
    TrainingView* trainingView_;
    ChatPage* chatPage_;
    QLabel* deviceLabel_;
    QString deviceName_;
};

} // namespace moe::ui
