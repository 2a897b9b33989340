// moe-cli generate: one prompt (raw, or wrapped in the chat template), streamed.
#include "cli_common.h"

#include "moe/chat_prompt.h"
#include "moe/error.h"
#include "moe/generate.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct GenerateArgs {
    ModelOptions model;
    std::string prompt, system, thinking;
    int maxTokens = 128;
    bool chat = false, asJson = false;
    uint32_t context = 0;
    std::vector<std::string> stops;
    SamplingParams sampling;
    DeviceOptions device;
};

int runGenerate(const GenerateArgs& a) {
    vk::Context ctx(a.device.context());
    auto run = a.model.open(ctx);
    const Tokenizer& tok = run->tokenizer();
    std::vector<int32_t> prompt;
    if (!a.thinking.empty() && !a.chat) throw Error("--thinking needs --chat (it is a chat-template switch)");
    if (a.chat) {
        std::vector<ChatMessage> messages;
        if (!a.system.empty()) messages.push_back({"system", a.system});
        messages.push_back({"user", a.prompt});
        prompt = encodeChat(run->chatTemplate(), tok, messages, true, thinkingKwargs(a.thinking));
    } else {
        prompt = tok.encode(a.prompt, true, false);
    }
    if (prompt.empty()) throw Error("the prompt encodes to no tokens");
    Session session(run->model(), a.context);
    GenerateOptions opts;
    opts.maxTokens = a.maxTokens;
    opts.stopStrings = a.stops;
    opts.sampling = a.sampling;
    LikelihoodPick pick;
    opts.prefill = [&](Session& s, std::span<const int32_t> tokens) {
        pick = run->forwardPrompt(s, tokens);
        return s.lastLogits();
    };
    session.resetExpertUsage();
    auto result = generate(session, tok, prompt, opts, [&](const std::string& piece) {
        if (!a.asJson) std::cout << piece << std::flush;
        return true;
    });
    const Model& model = run->model();
    const json cache = expertCacheJson(model, run->expertCache(uint64_t(result.promptTokens) + result.tokens.size()));
    if (a.asJson) {
        json out = {{"prompt_tokens", result.promptTokens}, {"prompt_ids", prompt}, {"token_ids", result.tokens},
                    {"text", result.text}, {"stop_reason", result.stopReason},
                    {"prompt_tokens_per_second", result.promptTokensPerSecond()},
                    {"decode_tokens_per_second", result.decodeTokensPerSecond()}, {"device", ctx.info().name}};
        if (const json usage = expertUsageJson(run->expertUsage(session)); !usage.empty()) out["expert_usage"] = usage;
        if (run->builtMoe()) {
            out["routing"] = toString(*run->routing());
            if (pick.slot >= 0) out["likelihood"] = likelihoodJson(*run, pick);
        }
        if (model.expertBudget()) out["expert_cache"] = cache;
        std::cout << out.dump() << "\n";
    } else {
        std::cout << "\n";
        if (pick.slot >= 0) std::fprintf(stderr, "likelihood routing: %s\n", likelihoodJson(*run, pick).dump().c_str());
        std::fprintf(stderr, "\nprompt: %d tokens, %.1f tokens/s | generation: %zu tokens, %.1f tokens/s (%s) | %s\n",
                     result.promptTokens, result.promptTokensPerSecond(), result.tokens.size(),
                     result.decodeTokensPerSecond(), result.stopReason.c_str(), ctx.info().name.c_str());
        if (model.expertBudget()) std::fprintf(stderr, "expert cache: %s\n", cache.dump().c_str());
    }
    return 0;
}

} // namespace

Command addGenerateCommand(CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    auto* cmd = app.add_subcommand("generate", "Generate text from a prompt, streamed as it is produced");
    a->model.add(cmd, true, true);
    cmd->add_option("--prompt,-p", a->prompt, "Prompt text")->required();
    cmd->add_option("-n,--max-tokens", a->maxTokens, "Most tokens to generate")->capture_default_str();
    cmd->add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template");
    cmd->add_option("--system", a->system, "System message (with --chat)");
    addThinkingOption(cmd, a->thinking);
    cmd->add_option("--stop", a->stops, "Stop string (repeatable)");
    cmd->add_option("--ctx", a->context, "Context length (default: the model's, at most 4096)");
    cmd->add_flag("--json", a->asJson, "Print one JSON object with the token ids and text");
    addSampling(cmd, a->sampling);
    a->device.add(cmd);
    return {cmd, [a] { return runGenerate(*a); }};
}

} // namespace moe::cli
