#include "server_controller.h"

// Qt's `slots` keyword macro would rewrite the server's ServerStatus::slots.
#pragma push_macro("slots")
#undef slots
#include "moe/openai_server.h"
#pragma pop_macro("slots")
#include "moe/error.h"
#include "moe/runnable_model.h"
#include "moe/vk.h"

namespace moe::ui {

ServerWorker::ServerWorker(QObject* parent) : QObject(parent) {}

ServerWorker::~ServerWorker() { release(); }

void ServerWorker::release() {
    if (server_) server_->stop(); // joins the HTTP thread: the port is free after it
    server_.reset();
    model_.reset();
    context_.reset();
}

void ServerWorker::start(quint64 ticket, const ServerSettings& settings) {
    release();
    try {
        if (settings.modelPath.isEmpty()) throw std::runtime_error("Choose a model to serve.");
        // Cleared before the ticket is read, so a cancel racing with this start still sets it.
        loadCancel_.store(false);
        if (cancelled_.load() >= ticket) loadCancel_.store(true);
        moe::throwIfCancelled(&loadCancel_, "loading the model");
        context_ = std::make_unique<moe::vk::Context>();
        moe::OpenOptions options;
        options.progress.cancel = &loadCancel_;
        options.progress.onTensor = [this, ticket](size_t done, size_t total) { emit loadProgress(ticket, int(done), int(total)); };
        model_ = moe::RunnableModel::open(*context_, settings.modelPath.toStdString(), options);
        moe::throwIfCancelled(&loadCancel_, "loading the model");

        moe::server::ServerOptions o;
        o.host = settings.host.toStdString();
        o.port = settings.port;
        o.apiKey = settings.apiKey.toStdString();
        o.parallel = settings.parallel;
        server_ = std::make_unique<moe::server::OpenAiServer>(*model_, o);
        // Signals emitted here from the HTTP threads reach the controller queued.
        moe::server::ServerEvents events;
        events.requestStarted = [this](int) { emit requestStarted(); };
        events.requestFinished = [this](const moe::server::RequestRecord& r) {
            ServerLogEntry e;
            e.time = QDateTime::currentDateTime();
            e.method = QString::fromStdString(r.method);
            e.path = QString::fromStdString(r.path);
            e.status = r.status;
            e.promptTokens = r.promptTokens;
            e.completionTokens = r.completionTokens;
            e.seconds = r.seconds;
            e.started = r.started;
            emit requestFinished(e);
        };
        server_->setEvents(std::move(events));
        server_->start();
        emit started(ticket, QString::fromStdString(server_->address()) + QStringLiteral("/v1"),
                     QString::fromStdString(server_->modelName()));
    } catch (const moe::Cancelled&) {
        release();
        emit cancelled(ticket);
    } catch (const std::exception& e) {
        release();
        emit startFailed(ticket, QString::fromStdString(e.what()));
    }
}

void ServerWorker::stop() {
    release();
    emit stopped();
}

ServerController::ServerController(QObject* parent) : QObject(parent) {
    qRegisterMetaType<moe::ui::ServerSettings>();
    qRegisterMetaType<moe::ui::ServerLogEntry>();
    qRegisterMetaType<moe::ui::ServerController::State>();

    thread_.setObjectName(QStringLiteral("moe-server"));
    worker_ = new ServerWorker;
    worker_->moveToThread(&thread_);
    connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
    connect(worker_, &ServerWorker::loadProgress, this, [this](quint64 ticket, int done, int total) {
        if (ticket == ticket_ && state_ == State::Starting) emit loadProgress(done, total);
    });
    connect(worker_, &ServerWorker::started, this, [this](quint64 ticket, const QString& address, const QString& name) {
        if (ticket != ticket_) return;
        address_ = address;
        modelName_ = name;
        setState(State::Running);
    });
    connect(worker_, &ServerWorker::startFailed, this, [this](quint64 ticket, const QString& error) {
        if (ticket != ticket_) return;
        error_ = error;
        setState(State::Stopped);
        emit errorOccurred(error);
    });
    connect(worker_, &ServerWorker::cancelled, this, [this](quint64 ticket) {
        if (ticket == ticket_) setState(State::Stopped);
    });
    connect(worker_, &ServerWorker::stopped, this, [this] {
        if (state_ == State::Stopping) setState(State::Stopped);
    });
    connect(worker_, &ServerWorker::requestStarted, this, [this] {
        ++inFlight_;
        emit requestsInFlightChanged(inFlight_);
    });
    connect(worker_, &ServerWorker::requestFinished, this, [this](const ServerLogEntry& e) {
        log_.push_back(e);
        if (log_.size() > kMaxLogEntries) log_.remove(0, log_.size() - kMaxLogEntries);
        emit requestLogged(e);
        if (e.started && inFlight_ > 0) {
            --inFlight_;
            emit requestsInFlightChanged(inFlight_);
        }
    });
    thread_.start();
}

ServerController::~ServerController() {
    worker_->cancel(ticket_);
    QMetaObject::invokeMethod(worker_, &ServerWorker::stop, Qt::QueuedConnection);
    thread_.quit();
    thread_.wait();
}

bool ServerController::start(const ServerSettings& settings) {
    auto fail = [this](const QString& message) {
        error_ = message;
        emit errorOccurred(message);
        return false;
    };
    if (state_ != State::Stopped) return fail(tr("The server is already running; stop it first."));
    if (settings.host.trimmed().isEmpty()) return fail(tr("Host: give an address to listen on, such as 127.0.0.1."));
    if (settings.port < 1 || settings.port > 65535) return fail(tr("Port: give 1 to 65535."));
    if (settings.modelPath.isEmpty()) return fail(tr("Choose a model to serve."));
    error_.clear();
    address_.clear();
    modelName_.clear();
    const quint64 ticket = ++ticket_;
    setState(State::Starting);
    QMetaObject::invokeMethod(worker_, [w = worker_, ticket, settings] { w->start(ticket, settings); },
                              Qt::QueuedConnection);
    return true;
}

void ServerController::stop() {
    if (state_ == State::Stopped || state_ == State::Stopping) return;
    worker_->cancel(ticket_); // a load stops at its next tensor; a server is stopped below
    setState(State::Stopping);
    QMetaObject::invokeMethod(worker_, &ServerWorker::stop, Qt::QueuedConnection);
}

void ServerController::setState(State s) {
    if (state_ == s) return;
    state_ = s;
    if (s != State::Running) {
        address_.clear();
        if (s == State::Stopped && inFlight_ != 0) {
            inFlight_ = 0;
            emit requestsInFlightChanged(0);
        }
    }
    emit stateChanged(s);
}

} // namespace moe::ui
