// moe-cli perplexity: a model's perplexity over a text file, in windows.
#include "cli_common.h"

#include "moe/atomic_file.h"
#include "moe/scoring.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct PerplexityArgs {
    ModelOptions model;
    std::filesystem::path file;
    uint32_t window = 256;
    uint32_t promptTokens = 0;
    size_t maxWindows = 0;
    bool asJson = false;
    DeviceOptions device;
};

int runPerplexity(const PerplexityArgs& a) {
    auto t0 = Clock::now();
    vk::Context ctx(a.device.context());
    auto run = a.model.open(ctx);
    const std::string text = readTextFile(a.file);
    Session session(run->model(), a.window + 1, a.window + 1);
    PerplexityOptions opt;
    opt.window = a.window;
    opt.maxWindows = a.maxWindows;
    opt.promptTokens = a.promptTokens;
    opt.likelihoodSlots = run->likelihoodSlots();
    opt.progress = [&](size_t w, size_t n) {
        if (!a.asJson) std::fprintf(stderr, "\rwindow %zu/%zu", w + 1, n);
        return true;
    };
    const auto r = perplexity(session, run->tokenizer(), text, opt);
    if (!a.asJson) std::fprintf(stderr, "\n");
    json out = {{"perplexity", r.perplexity}, {"loss", r.loss}, {"tokens", r.tokens}, {"windows", r.windows},
                {"file", a.file.string()}, {"seconds", secondsSince(t0)}};
    if (run->builtMoe()) out["routing"] = toString(*run->routing());
    if (!r.picks.empty()) {
        json picks = json::array();
        const auto names = run->slotNames();
        for (int p : r.picks) picks.push_back(names.at(size_t(p)));
        out["picks"] = picks;
    }
    if (a.asJson) std::cout << out.dump() << "\n";
    else
        std::printf("perplexity %.4f (loss %.4f nats/token over %zu tokens in %zu windows)\n", r.perplexity, r.loss,
                    r.tokens, r.windows);
    return 0;
}

} // namespace

Command addPerplexityCommand(CLI::App& app) {
    auto a = std::make_shared<PerplexityArgs>();
    auto* cmd = app.add_subcommand("perplexity", "Perplexity of a model over a text file, in windows");
    a->model.add(cmd, true, false);
    cmd->add_option("--max-windows", a->maxWindows, "Score only the first N windows (0 = all)")->capture_default_str();
    cmd->add_option("--file,-f", a->file, "UTF-8 text file")->required()->check(CLI::ExistingFile);
    cmd->add_option("--window", a->window, "Tokens per window")->capture_default_str();
    cmd->add_option("--prompt-tokens", a->promptTokens,
                    "The first P tokens of each window are the prompt (they decide sequence and likelihood "
                    "routing) and are not scored")->capture_default_str();
    cmd->add_flag("--json", a->asJson, "Print one JSON object");
    a->device.add(cmd);
    return {cmd, [a] { return runPerplexity(*a); }};
}

} // namespace moe::cli
