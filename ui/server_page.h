#pragma once
// The "Local server" page: a switch that starts and stops an OpenAI-compatible
// server (moe_server) over a model of the library or the MoE built in this
// session, its host, port, API key (masked, never saved or logged) and model;
// while it runs, the address, the requests in flight and a log of requests.
// All engine and HTTP work goes through ServerController.
#include "server_controller.h"

#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace moe::ui {

class BuildController;
class ModelLibrary;

class ServerPage : public QWidget {
    Q_OBJECT
public:
    ServerPage(ServerController* controller, ModelLibrary* library, BuildController* builder,
               QWidget* parent = nullptr);

    ServerController* controller() const { return controller_; }
    // Checked = the server should run: checking it starts, unchecking stops or cancels a load.
    QPushButton* switchButton() const { return switch_; }
    QLineEdit* hostEdit() const { return host_; }
    QSpinBox* portBox() const { return port_; }
    QLineEdit* apiKeyEdit() const { return apiKey_; }
    QComboBox* modelBox() const { return modelBox_; } // data: the path served
    QLabel* addressLabel() const { return address_; }
    QLabel* inFlightLabel() const { return inFlight_; }
    QLabel* errorLabel() const { return error_; }
    QProgressBar* progressBar() const { return progress_; }
    QTableWidget* logTable() const { return logTable_; }
    QString statusText() const;
    // Selects `path` in the model box (false when it is not listed).
    bool chooseModel(const QString& path);
    ServerSettings settings() const;

    void loadSettings();
    void saveSettings() const;

private:
    void refreshModels();
    void onSwitch(bool on);
    void showState(ServerController::State state);
    void appendLog(const ServerLogEntry& entry);

    ServerController* controller_;
    ModelLibrary* library_;
    BuildController* builder_;
    QPushButton* switch_;
    QLineEdit* host_;
    QSpinBox* port_;
    QLineEdit* apiKey_;
    QComboBox* modelBox_;
    QSpinBox* parallel_;
    QLabel* state_;
    QLabel* address_;
    QLabel* inFlight_;
    QLabel* error_;
    QProgressBar* progress_;
    QTableWidget* logTable_;
    QString pendingModel_; // from the settings, chosen once the library lists it
};

} // namespace moe::ui
