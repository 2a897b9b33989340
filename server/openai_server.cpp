#include "moe/openai_server.h"

#include "moe/chat_session.h"
#include "moe/error.h"
#include "moe/openai_request.h"

#include <httplib.h>
#include <sys/socket.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>

namespace moe::server {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Model text need not be valid UTF-8 piece by piece: replace, never throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void sendJson(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body), "application/json");
}

const char* finishReason(const std::string& stopReason) {
    return stopReason == "length" || stopReason == "context" ? "length" : "stop";
}

std::string defaultModelName(const RunnableModel& model) {
    std::filesystem::path p = model.source().lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::error_code ec;
    return std::filesystem::is_directory(p, ec) ? p.filename().string() : p.stem().string();
}

// A conversation slot: its own ChatSession (KV cache rows and position) on
// the sequences of one shared Session, so that the slots' decode steps run
// together in one pass over the weights.
struct Slot {
    std::unique_ptr<ChatSession> chat;
    bool busy = false;
};

// The slots, and the requests waiting for one.
class SlotPool {
public:
    SlotPool(RunnableModel& model, int n, uint32_t context) {
        auto first = std::make_unique<Session>(model.model(), context, 256, uint32_t(n));
        for (int i = 1; i < n; ++i)
            slots_.push_back(Slot{std::make_unique<ChatSession>(model, std::make_unique<Session>(*first))});
        slots_.insert(slots_.begin(), Slot{std::make_unique<ChatSession>(model, std::move(first))});
    }
    // Waits for a free slot; null once the server stops.
    Slot* acquire(const std::atomic<bool>& stopping) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++queued_;
        auto freeSlot = [&]() -> Slot* {
            for (Slot& s : slots_)
                if (!s.busy) return &s;
            return nullptr;
        };
        cv_.wait(lock, [&] { return stopping.load() || freeSlot(); });
        --queued_;
        if (stopping.load()) return nullptr;
        Slot* s = freeSlot();
        s->busy = true;
        ++busy_;
        return s;
    }
    void release(Slot* s) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            s->busy = false;
            --busy_;
        }
        cv_.notify_one();
    }
    void wakeAll() {
        { std::lock_guard<std::mutex> lock(mutex_); }
        cv_.notify_all();
    }
    const ChatSession& probe() const { return *slots_.front().chat; }
    ServerStatus status() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return {int(slots_.size()), busy_, queued_, 0};
    }

private:
    std::vector<Slot> slots_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    int busy_ = 0, queued_ = 0;
};

// Holds a slot for one request and gives it back however the request ends.
class Lease {
public:
    Lease(SlotPool& pool, Slot* slot) : pool_(pool), slot_(slot) {}
    ~Lease() { pool_.release(slot_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ChatSession& chat() { return *slot_->chat; }

private:
    SlotPool& pool_;
    Slot* slot_;
};

bool sameKey(const std::string& a, const std::string& b) {
    // Compares every byte whatever the first mismatch, so timing tells nothing.
    unsigned diff = unsigned(a.size() ^ b.size());
    for (size_t i = 0; i < a.size(); ++i) diff |= unsigned(uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0));
    return diff == 0;
}

// The request an httplib worker thread is answering: httplib runs the
// routing, the handler, a stream's content provider and the logger of one
// request on one thread, so the logger finds here when it began and its tokens.
struct RequestTrace {
    Clock::time_point start;
    int promptTokens = 0, completionTokens = 0;
    bool active = false;
};
thread_local RequestTrace currentTrace;

} // namespace

struct OpenAiServer::Impl {
    RunnableModel& model;
    ServerOptions options;
    ServerLog log;
    std::string name;
    int64_t created = 0;
    SlotPool pool;
    httplib::Server http;
    std::thread thread;
    int port = -1;
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> served{0}, nextId{0};
    uint64_t idSalt = 0;
    std::shared_mutex routingMutex; // a request in another routing mode has the model to itself
    ServerEvents events;
    std::atomic<int> inFlight{0};

    Impl(RunnableModel& m, ServerOptions o, ServerLog l)
        : model(m), options(std::move(o)), log(std::move(l)),
          name(options.modelName.empty() ? defaultModelName(m) : options.modelName),
          created(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                      .count()),
          pool(m, options.parallel, options.context), idSalt(std::random_device{}()) {
        routes();
    }

    void say(const std::string& line) const {
        if (log) log(line);
    }

    // Request events for an app (setEvents): begin after the headers, end in the logger.
    void beginTrace() {
        if (currentTrace.active) --inFlight; // one the logger never saw: not in flight any more
        currentTrace = {Clock::now(), 0, 0, true};
        const int n = ++inFlight;
        if (events.requestStarted) events.requestStarted(n);
    }
    void endTrace(const httplib::Request& req, const httplib::Response& res) {
        RequestRecord rec{req.method, req.path, res.status};
        if (currentTrace.active) {
            rec.promptTokens = currentTrace.promptTokens;
            rec.completionTokens = currentTrace.completionTokens;
            rec.seconds = std::chrono::duration<double>(Clock::now() - currentTrace.start).count();
            currentTrace.active = false;
            rec.started = true;
            rec.inFlight = --inFlight;
        } else {
            rec.inFlight = inFlight.load();
        }
        if (events.requestFinished) events.requestFinished(rec);
    }
    static void noteTokens(const ChatReply& reply) {
        currentTrace.promptTokens = reply.promptTokens;
        currentTrace.completionTokens = int(reply.generation.tokens.size());
    }

    std::string newId(const char* prefix) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "%s-%08llx%06llx", prefix, static_cast<unsigned long long>(idSalt & 0xffffffffu),
                      static_cast<unsigned long long>(++nextId));
        return buf;
    }

    json usageJson(const ChatReply& r) const {
        const int completion = int(r.generation.tokens.size());
        return {{"prompt_tokens", r.promptTokens},
                {"completion_tokens", completion},
                {"total_tokens", r.promptTokens + completion}};
    }

    // The MoE extension: routing mode, per-layer expert usage of the reply's
    // routed tokens, and the likelihood pick (null for a dense model).
    json moeJson(const ChatReply& r, std::optional<RoutingMode> mode) const {
        if (!model.isMoe()) return nullptr;
        json usage = json::array();
        for (const auto& u : r.expertUsage) usage.push_back({{"layer", u.layer}, {"tokens", u.tokens}});
        json likelihood = nullptr;
        const auto names = model.slotNames();
        if (r.likelihood.slot >= 0) {
            json losses = json::object();
            for (size_t i = 0; i < r.likelihood.candidates.size(); ++i)
                losses[names.at(size_t(r.likelihood.candidates[i]))] = r.likelihood.loss[i];
            likelihood = {{"pick", names.at(size_t(r.likelihood.slot))},
                          {"slot", r.likelihood.slot},
                          {"prompt_loss", losses}};
        }
        return {{"routing", mode ? json(toString(*mode)) : json(nullptr)},
                {"experts", names},
                {"experts_per_token", model.expertsPerToken()},
                {"routed_tokens", r.generation.decodeSteps},
                {"expert_usage", usage},
                {"likelihood", likelihood}};
    }

    // Runs one request on a slot; `onText` gets the reply's text as it comes.
    ChatReply run(CompletionRequest& r, const std::function<bool(const std::string&)>& onText,
                  std::optional<RoutingMode>& modeUsed) {
        const std::optional<RoutingMode> serverMode = model.routing();
        const bool own = r.routing && r.routing != serverMode;
        std::shared_lock<std::shared_mutex> shared(routingMutex, std::defer_lock);
        std::unique_lock<std::shared_mutex> exclusive(routingMutex, std::defer_lock);
        if (own) exclusive.lock();
        else shared.lock();
        Slot* slot = pool.acquire(stopping);
        if (!slot) throw ApiError(503, "the server is stopping", {}, "unavailable");
        Lease lease(pool, slot);
        struct RestoreRouting {
            RunnableModel& model;
            bool restore;
            RoutingMode mode;
            ~RestoreRouting() {
                if (restore) model.setRouting(mode);
            }
        } restore{model, own, serverMode.value_or(RoutingMode::Token)};
        if (own) model.setRouting(*r.routing);
        modeUsed = model.routing();
        r.reply.cancel = &stopping;
        return r.chat ? lease.chat().reply(r.messages, r.reply, onText) : lease.chat().complete(r.prompt, r.reply, onText);
    }

    json chunk(const std::string& id, bool chat, const json& choice) const {
        return {{"id", id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", name},
                {"choices", json::array({choice})}};
    }

    void completion(const httplib::Request& req, httplib::Response& res, bool chat) {
        const auto t0 = Clock::now();
        auto r = std::make_shared<CompletionRequest>(parseCompletionRequest(req.body, chat));
        if (r->model != name)
            throw ApiError(404, "The model '" + r->model + "' does not exist; this server serves '" + name + "'",
                           "model", "model_not_found");
        if (r->routing && model.kind() != ModelKind::BuiltMoe)
            throw ApiError(400, "'routing': routing modes apply to a built MoE; '" + name + "' is a " +
                                    toString(model.kind()) + " model",
                           "routing", "invalid_value");
        // Refuse what cannot fit before taking a slot or starting a stream.
        try {
            if (chat)
                (void)pool.probe().renderConversation(r->messages, r->reply.maxTokens, nullptr, r->reply.templateKwargs,
                                                      &stopping);
            else (void)pool.probe().encodePrompt(r->prompt);
        } catch (const Cancelled&) {
            throw ApiError(503, "the server is stopping", {}, "unavailable");
        } catch (const PromptTooLong& e) {
            throw ApiError(400, e.what(), chat ? "messages" : "prompt", "context_length_exceeded");
        } catch (const Error& e) {
            throw ApiError(400, e.what(), chat ? "messages" : "prompt", "invalid_value");
        }
        const std::string id = newId(chat ? "chatcmpl" : "cmpl");
        auto logDone = [this, t0, path = req.path](const ChatReply& reply, const char* how) {
            noteTokens(reply);
            char line[200];
            std::snprintf(line, sizeof line, "%s %s: %d prompt (%d reused) + %zu tokens, %s, %.2f s", path.c_str(), how,
                          reply.promptTokens, reply.reusedTokens, reply.generation.tokens.size(),
                          reply.generation.stopReason.c_str(), std::chrono::duration<double>(Clock::now() - t0).count());
            say(line);
        };

        if (!r->stream) {
            std::optional<RoutingMode> mode;
            const ChatReply reply = run(*r, {}, mode);
            const char* finish = finishReason(reply.generation.stopReason);
            json choice = chat ? json{{"index", 0},
                                      {"message", {{"role", "assistant"}, {"content", reply.generation.text}}},
                                      {"finish_reason", finish}}
                               : json{{"index", 0}, {"text", reply.generation.text}, {"logprobs", nullptr},
                                      {"finish_reason", finish}};
            json body = {{"id", id},
                         {"object", chat ? "chat.completion" : "text_completion"},
                         {"created", created},
                         {"model", name},
                         {"choices", json::array({choice})},
                         {"usage", usageJson(reply)}};
            if (json m = moeJson(reply, mode); !m.is_null()) body["moe"] = m;
            sendJson(res, 200, body);
            logDone(reply, "done");
            return;
        }

        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [this, r, id, chat, logDone](size_t, httplib::DataSink& sink) {
            bool open = true;
            auto send = [&](const std::string& data) {
                const std::string event = "data: " + data + "\n\n";
                open = open && sink.is_writable() && sink.write(event.data(), event.size());
                return open;
            };
            auto piece = [&](const std::string& text) {
                return chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                            : json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
            };
            if (chat && !send(dump(chunk(id, true, {{"index", 0},
                                                     {"delta", {{"role", "assistant"}, {"content", ""}}},
                                                     {"finish_reason", nullptr}}))))
                return false;
            try {
                std::optional<RoutingMode> mode;
                const ChatReply reply =
                    run(*r, [&](const std::string& text) { return text.empty() || send(dump(chunk(id, chat, piece(text)))); },
                        mode);
                if (!open) {
                    logDone(reply, "client went away");
                    return false; // the connection is closed: nothing more to say
                }
                const char* finish = finishReason(reply.generation.stopReason);
                json last = chunk(id, chat, chat ? json{{"index", 0}, {"delta", json::object()}, {"finish_reason", finish}}
                                                 : json{{"index", 0}, {"text", ""}, {"logprobs", nullptr},
                                                        {"finish_reason", finish}});
                if (json m = moeJson(reply, mode); !m.is_null()) last["moe"] = m;
                send(dump(last));
                if (r->includeUsage) {
                    json u = chunk(id, chat, nullptr);
                    u["choices"] = json::array();
                    u["usage"] = usageJson(reply);
                    send(dump(u));
                }
                send("[DONE]");
                logDone(reply, "streamed");
            } catch (const ApiError& e) {
                send(dump(e.body()));
            } catch (const std::exception& e) {
                send(dump(ApiError(500, e.what(), {}, "server_error").body()));
            }
            if (!open) return false;
            sink.done();
            return true;
        });
    }

    // Runs a handler, turning its errors into OpenAI-shaped responses.
    httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> fn,
                                     bool counts) {
        return [this, fn = std::move(fn), counts](const httplib::Request& req, httplib::Response& res) {
            if (counts) ++served;
            try {
                fn(req, res);
            } catch (const ApiError& e) {
                sendJson(res, e.status, e.body());
            } catch (const std::exception& e) {
                say(req.path + ": " + e.what());
                sendJson(res, 500, ApiError(500, e.what(), {}, "server_error").body());
            }
        };
    }

    json modelJson() const {
        return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "moe-studio"}};
    }

    void routes() {
        http.new_task_queue = [n = size_t(std::max(32, 4 * options.parallel + 16))] { return new httplib::ThreadPool(n); };
        http.set_payload_max_length(options.maxBodyBytes);
        // SO_REUSEADDR only: httplib's default SO_REUSEPORT lets a second server of
        // the same user bind a port already served (the kernel then splits the
        // connections between them), so a port in use would not be refused.
        http.set_socket_options([](socket_t sock) {
            const int yes = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        });
        http.set_keep_alive_timeout(5);
        http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            beginTrace();
            if (options.apiKey.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
            const std::string auth = req.get_header_value("Authorization");
            if (sameKey(auth, "Bearer " + options.apiKey)) return httplib::Server::HandlerResponse::Unhandled;
            sendJson(res, 401,
                     ApiError(401, auth.empty() ? "this server needs an API key (Authorization: Bearer ...)"
                                                : "the API key is not the one this server was started with",
                              {}, "invalid_api_key")
                         .body());
            return httplib::Server::HandlerResponse::Handled;
        });
        // Errors httplib answers itself (unknown route, body over the limit) get OpenAI's shape too.
        http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            std::string message = "HTTP " + std::to_string(res.status);
            std::string code;
            if (res.status == 404) message = "no such endpoint: " + req.method + " " + req.path, code = "not_found";
            if (res.status == 413)
                message = "the request body is larger than the server's limit of " +
                          std::to_string(options.maxBodyBytes) + " bytes",
                code = "request_too_large";
            sendJson(res, res.status, ApiError(res.status, message, {}, code).body());
            return httplib::Server::HandlerResponse::Handled;
        }));
        http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
            say(req.method + " " + req.path + " " + std::to_string(res.status));
            endTrace(req, res);
        });

        http.Get("/health", guarded([this](const httplib::Request&, httplib::Response& res) {
            const ServerStatus s = status();
            sendJson(res, 200, {{"status", stopping ? "stopping" : "ok"},
                                {"model", name},
                                {"slots_total", s.slots},
                                {"slots_idle", s.slots - s.busy},
                                {"slots_processing", s.busy},
                                {"requests_queued", s.queued},
                                {"requests_served", s.served}});
        }, false));
        http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
            sendJson(res, 200, {{"object", "list"}, {"data", json::array({modelJson()})}});
        }, false));
        http.Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
            if (req.matches[1] != name)
                throw ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist", "model",
                               "model_not_found");
            sendJson(res, 200, modelJson());
        }, false));
        http.Post("/v1/chat/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
            completion(req, res, true);
        }, true));
        http.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
            completion(req, res, false);
        }, true));
    }

    ServerStatus status() const {
        ServerStatus s = pool.status();
        s.served = served.load();
        return s;
    }
};

OpenAiServer::OpenAiServer(RunnableModel& model, ServerOptions options, ServerLog log) {
    if (options.parallel < 1 || options.parallel > 64) throw Error("--parallel: give 1 to 64 slots");
    if (options.port < 0 || options.port > 65535) throw Error("--port: give 0 to 65535");
    if (options.host.empty()) throw Error("--host: give an address to listen on, such as 127.0.0.1");
    impl_ = std::make_unique<Impl>(model, std::move(options), std::move(log));
}

OpenAiServer::~OpenAiServer() { stop(); }

int OpenAiServer::bind() {
    Impl& s = *impl_;
    const int port = s.options.port == 0 ? s.http.bind_to_any_port(s.options.host)
                                         : (s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1);
    if (port <= 0)
        throw Error("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                    " (address in use, or not an address of this machine)");
    s.port = port;
    s.say("serving " + s.name + " on " + address() + " with " + std::to_string(s.options.parallel) + " slots" +
          (s.options.apiKey.empty() ? "" : ", API key required"));
    return port;
}

void OpenAiServer::serve() { impl_->http.listen_after_bind(); }

int OpenAiServer::start() {
    const int p = bind();
    impl_->thread = std::thread([this] { serve(); });
    return p;
}

void OpenAiServer::stop() {
    Impl& s = *impl_;
    if (s.stopping.exchange(true) && !s.thread.joinable()) return;
    s.pool.wakeAll();
    s.http.stop();
    if (s.thread.joinable()) s.thread.join();
    s.say("stopped");
}

int OpenAiServer::port() const { return impl_->port; }
const std::string& OpenAiServer::modelName() const { return impl_->name; }
std::string OpenAiServer::address() const {
    const std::string& h = impl_->options.host;
    return "http://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + std::to_string(impl_->port);
}
ServerStatus OpenAiServer::status() const { return impl_->status(); }
int OpenAiServer::inFlight() const { return impl_->inFlight.load(); }
void OpenAiServer::setEvents(ServerEvents events) { impl_->events = std::move(events); }

} // namespace moe::server
