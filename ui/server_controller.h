#pragma once
// The app's "Local server": moe_server's OpenAI-compatible HTTP server over a
// model of the library or a built MoE. ServerWorker lives on its own QThread:
// it loads the model there (with progress, cancellable) and owns the server,
// whose HTTP threads report each request through queued signals. The
// ServerController keeps the state on the UI thread, which never waits on
// either: start and stop are queued calls, cancel is an atomic.
#include <QDateTime>
#include <QObject>
#include <QString>
#include <QThread>
#include <QVector>

#include <atomic>
#include <memory>

namespace moe {
class RunnableModel;
namespace vk { class Context; }
namespace server { class OpenAiServer; }
} // namespace moe

namespace moe::ui {

struct ServerSettings {
    QString host = QStringLiteral("127.0.0.1");
    int port = 8080;
    QString apiKey;    // empty: no key asked for; never logged, never saved
    QString modelPath; // a model folder or .gguf file, or a built MoE's selector (.toml/.yaml)
    int parallel = 4;  // conversations served at once
};

// One line of the request log: no key, no message text.
struct ServerLogEntry {
    QDateTime time; // when the answer was done
    QString method, path;
    int status = 0;
    int promptTokens = 0, completionTokens = 0;
    double seconds = 0;
    bool started = false; // counted in flight (requestStarted came first)
};

class ServerWorker : public QObject {
    Q_OBJECT
public:
    explicit ServerWorker(QObject* parent = nullptr);
    ~ServerWorker() override; // stops the server, then frees the model and the device

    // Thread-safe: a load with this ticket or an older one stops at its next tensor.
    // Thread-safe: a load for `ticket` or an older one stops at its next tensor or rows.
    void cancel(quint64 ticket) {
        cancelled_.store(ticket);
        loadCancel_.store(true);
    }

public slots:
    void start(quint64 ticket, const moe::ui::ServerSettings& settings);
    void stop();

signals:
    void loadProgress(quint64 ticket, int done, int total);
    void started(quint64 ticket, const QString& address, const QString& modelName);
    void startFailed(quint64 ticket, const QString& error);
    void cancelled(quint64 ticket);
    void stopped();
    // From the server's HTTP threads (queued to the UI thread).
    void requestStarted();
    void requestFinished(const moe::ui::ServerLogEntry& entry);

private:
    void release();

    std::atomic<quint64> cancelled_{0};
    std::atomic<bool> loadCancel_{false}; // the engine's flag for the load running now
    std::unique_ptr<moe::vk::Context> context_;
    std::unique_ptr<moe::RunnableModel> model_;
    std::unique_ptr<moe::server::OpenAiServer> server_;
};

class ServerController : public QObject {
    Q_OBJECT
public:
    enum class State { Stopped, Starting, Running, Stopping };

    explicit ServerController(QObject* parent = nullptr);
    ~ServerController() override; // cancels a load, stops the server and waits for the worker

    // False (with errorOccurred) unless stopped, or when the settings are wrong.
    bool start(const ServerSettings& settings);
    // Cancels a load, or stops a running server (the port is free once stateChanged(Stopped)).
    void stop();

    State state() const { return state_; }
    bool isRunning() const { return state_ == State::Running; }
    QString address() const { return address_; } // http://host:port/v1 while running
    QString modelName() const { return modelName_; } // the id /v1/models lists
    int requestsInFlight() const { return inFlight_; }
    const QVector<ServerLogEntry>& log() const { return log_; }
    QString lastError() const { return error_; }
    static constexpr int kMaxLogEntries = 500;

signals:
    void stateChanged(moe::ui::ServerController::State state);
    void loadProgress(int done, int total);
    void requestsInFlightChanged(int count);
    void requestLogged(const moe::ui::ServerLogEntry& entry);
    void errorOccurred(const QString& message);

private:
    void setState(State s);

    QThread thread_;
    ServerWorker* worker_ = nullptr; // lives on thread_
    State state_ = State::Stopped;
    quint64 ticket_ = 0;
    QString address_, modelName_, error_;
    int inFlight_ = 0;
    QVector<ServerLogEntry> log_;
};

} // namespace moe::ui

Q_DECLARE_METATYPE(moe::ui::ServerSettings)
Q_DECLARE_METATYPE(moe::ui::ServerLogEntry)
