// moe-cli serve: a local OpenAI-compatible server (moe_server) over a model
// or a built MoE (quantized on load with --quantize), until the process is stopped.
#include "cli_common.h"

#include "moe/openai_server.h"

#include <csignal>
#include <cstdio>

namespace moe::cli {
namespace {

struct ServeArgs {
    ModelOptions model;
    server::ServerOptions server;
    DeviceOptions device;
};

int runServe(const ServeArgs& a) {
    // A client that closes its connection must not end the process.
    std::signal(SIGPIPE, SIG_IGN);
    vk::Context ctx(a.device.context());
    auto run = a.model.open(ctx);
    if (const QuantizeScheme q = run->model().quantizeScheme(); q != QuantizeScheme::None)
        std::fprintf(stderr, "weights quantized on load: %s (%s on the device)\n", toString(q),
                     mib(run->model().deviceBytes()).c_str());
    server::OpenAiServer srv(*run, a.server, [](const std::string& line) {
        std::fprintf(stderr, "serve: %s\n", line.c_str());
        std::fflush(stderr);
    });
    srv.bind();
    std::fprintf(stderr, "listening on %s (model \"%s\")\n", srv.address().c_str(), srv.modelName().c_str());
    std::fflush(stderr);
    srv.serve();
    return 0;
}

} // namespace

Command addServeCommand(CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    auto* cmd = app.add_subcommand("serve", "Serve a model or a built MoE over an OpenAI-compatible HTTP API");
    a->model.add(cmd, true, true);
    cmd->add_option("--host", a->server.host, "Address to listen on (another than loopback exposes the model)")
        ->capture_default_str();
    cmd->add_option("--port", a->server.port, "Port (0 = any free one, printed)")->capture_default_str()->check(
        CLI::Range(0, 65535));
    cmd->add_option("--api-key", a->server.apiKey, "Require \"Authorization: Bearer KEY\" on /v1/*");
    cmd->add_option("--parallel", a->server.parallel, "Conversations served at once, each with its own KV cache")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("--ctx", a->server.context, "Context length per conversation (0 = the model's, at most 4096)");
    cmd->add_option("--model-name", a->server.modelName, "Model id to serve under (default: the model's name)");
    a->device.add(cmd);
    return {cmd, [a] { return runServe(*a); }};
}

} // namespace moe::cli
