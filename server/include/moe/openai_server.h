#pragma once
// A local OpenAI-compatible HTTP server over one RunnableModel: /health,
// /v1/models, /v1/chat/completions and /v1/completions, streamed (server-sent
// events) or not. Each of `parallel` slots holds its own ChatSession (KV
// cache, position, sampler): a request takes a free slot or waits for one,
// and a client that goes away mid-stream frees its slot at the next token.
// The slots' decode steps run together (one pass over the weights for every
// slot that is replying), and a prompt goes in chunks between them. Qt-free;
// the engine stays free of HTTP.
#include "moe/runnable_model.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace moe::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;            // 0: any free port (see OpenAiServer::port)
    std::string apiKey;         // non-empty: /v1/* need "Authorization: Bearer <key>"
    int parallel = 4;           // slots: conversations served at once
    uint32_t context = 0;       // per slot; 0 = the model's, at most 4096
    std::string modelName;      // the id /v1/models lists; empty = the model file or folder's name
    size_t maxBodyBytes = 4u << 20; // larger request bodies get 413
};

struct ServerStatus {
    int slots = 0;
    int busy = 0;               // slots replying now
    int queued = 0;             // requests waiting for a slot
    uint64_t served = 0;        // completion requests answered (any status)
};

// One line per request and per start/stop; never the key or message text.
using ServerLog = std::function<void(const std::string&)>;

// One answered HTTP request, for an app's request log: never the key, never
// any message or reply text.
struct RequestRecord {
    std::string method, path;
    int status = 0;
    int promptTokens = 0, completionTokens = 0; // completions; 0 for the other endpoints
    double seconds = 0;  // from its headers to its last byte (0 when httplib refused it before routing)
    int inFlight = 0;    // requests still in flight once this one is done
    bool started = false; // requestStarted was called for it (not for one httplib refused before routing)
};

// Called on the server's threads (keep them short: queue the news to a UI
// thread). inFlight counts the requests between their headers and their last byte.
struct ServerEvents {
    std::function<void(int inFlight)> requestStarted;
    std::function<void(const RequestRecord&)> requestFinished;
};

class OpenAiServer {
public:
    // Creates the slots (their KV caches) at once; throws moe::Error on bad options.
    OpenAiServer(RunnableModel& model, ServerOptions options, ServerLog log = {});
    ~OpenAiServer(); // stops and waits for the server thread

    // Binds host:port; returns the port. Throws moe::Error when it cannot.
    int bind();
    // Serves until stop() (after bind(); blocks).
    void serve();
    // bind(), then serve() on a thread of its own.
    int start();
    // Stops listening; requests in progress are cancelled at their next token.
    void stop();

    int port() const;
    const std::string& modelName() const;
    std::string address() const; // http://host:port
    ServerStatus status() const;
    // Requests being answered now (any endpoint, streams until their last byte).
    int inFlight() const;
    // Before bind()/start(): what an app hears of each request.
    void setEvents(ServerEvents events);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace moe::server
