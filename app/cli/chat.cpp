// moe-cli chat: a conversation in the terminal, one ChatSession (the same
// rendering, KV-cache reuse and routing as the app's chat and the server).
#include "cli_common.h"

#include "moe/chat_session.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct ChatArgs {
    ModelOptions model;
    std::string system, thinking;
    int maxTokens = 256;
    uint32_t context = 0;
    SamplingParams sampling;
    DeviceOptions device;
};

int runChat(const ChatArgs& a) {
    vk::Context ctx(a.device.context());
    auto run = a.model.open(ctx);
    ChatSession chat(*run, a.context);
    std::vector<ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    ReplyOptions options;
    options.maxTokens = a.maxTokens;
    options.sampling = a.sampling;
    options.templateKwargs = thinkingKwargs(a.thinking);
    std::fprintf(stderr, "chat with %s (empty line or Ctrl-D ends)\n", run->source().c_str());
    std::string line;
    while (std::fprintf(stderr, "> "), std::getline(std::cin, line) && !line.empty()) {
        messages.push_back({"user", line});
        const ChatReply reply = chat.reply(messages, options, [](const std::string& piece) {
            std::cout << piece << std::flush;
            return true;
        });
        std::cout << "\n";
        if (reply.likelihood.slot >= 0)
            std::fprintf(stderr, "[likelihood routing: %s]\n", likelihoodJson(*run, reply.likelihood).dump().c_str());
        if (const json usage = expertUsageJson(reply.expertUsage); !usage.empty())
            std::fprintf(stderr, "[expert usage: %s]\n", usage.dump().c_str());
        if (run->model().expertBudget())
            std::fprintf(stderr, "[expert cache: %s]\n", expertCacheJson(run->model(), reply.expertCache).dump().c_str());
        messages.push_back({"assistant", reply.generation.text});
    }
    return 0;
}

} // namespace

Command addChatCommand(CLI::App& app) {
    auto a = std::make_shared<ChatArgs>();
    auto* cmd = app.add_subcommand("chat", "Chat in the terminal with a model or a built MoE, streamed");
    a->model.add(cmd, true, true);
    cmd->add_option("--system", a->system, "System message");
    cmd->add_option("-n,--max-tokens", a->maxTokens, "Most tokens per reply")->capture_default_str();
    cmd->add_option("--ctx", a->context, "Context length");
    addThinkingOption(cmd, a->thinking);
    addSampling(cmd, a->sampling);
    a->device.add(cmd);
    return {cmd, [a] { return runChat(*a); }};
}

} // namespace moe::cli
