// moe-cli models: the models already on this machine (the Hugging Face cache,
// LM Studio, GPT4All, Ollama, and --dir folders) with their facts and whether
// the engine runs them; the listing itself is the engine's (moe/model_stores.h).
#include "cli_common.h"

#include "moe/model_stores.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

std::string count(uint64_t n) {
    char buf[32];
    if (n >= 1000000000ull) std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
    else if (n >= 1000000ull) std::snprintf(buf, sizeof buf, "%.1fM", double(n) / 1e6);
    else if (n >= 1000ull) std::snprintf(buf, sizeof buf, "%.1fK", double(n) / 1e3);
    else std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
    return buf;
}

json modelJson(const StoreModel& m) {
    json j = {{"name", m.name},
              {"store", storeId(m.store)},
              {"path", m.path.string()},
              {"source", m.source.string()},
              {"format", m.format},
              {"architecture", m.architecture},
              {"parameters", m.parameters},
              {"quant", m.quant},
              {"size_on_disk", m.sizeOnDisk},
              {"layers", m.layers},
              {"hidden_size", m.hiddenSize},
              {"intermediate_size", m.intermediateSize},
              {"vocab_size", m.vocabSize},
              {"context_length", m.contextLength},
              {"experts", m.experts},
              {"experts_per_token", m.expertsPerToken},
              {"runnable", m.runnable}};
    if (!m.error.empty()) j["not_runnable_because"] = m.error;
    return j;
}

int runModels(const std::vector<std::filesystem::path>& dirs, bool asJson) {
    const std::vector<StoreModel> models = scanModelStores(dirs);
    if (asJson) {
        json out = json::array();
        for (const StoreModel& m : models) out.push_back(modelJson(m));
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    if (models.empty()) {
        std::cout << "no models found (looked in the Hugging Face cache, ~/.lmstudio/models, ~/.cache/lm-studio/models, "
                     "~/.local/share/nomic.ai/GPT4All, $OLLAMA_MODELS and ~/.ollama/models)\n";
        return 0;
    }
    std::printf("%-44s %-18s %-10s %8s %-9s %10s  %s\n", "NAME", "STORE", "ARCH", "PARAMS", "QUANT", "SIZE", "RUNS");
    for (const StoreModel& m : models)
        std::printf("%-44s %-18s %-10s %8s %-9s %10s  %s\n", m.name.c_str(), storeLabel(m.store), m.architecture.c_str(),
                    m.parameters ? count(m.parameters).c_str() : "-", m.quant.c_str(),
                    m.sizeOnDisk ? mib(m.sizeOnDisk).c_str() : "-", m.runnable ? "yes" : ("no: " + m.error).c_str());
    return 0;
}

} // namespace

Command addModelsCommand(CLI::App& app) {
    struct Args {
        std::vector<std::filesystem::path> dirs;
        bool asJson = false;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = app.add_subcommand("models", "List the models on this machine: the Hugging Face cache, LM Studio, GPT4All, Ollama");
    cmd->add_option("--dir", a->dirs, "Also list this folder (a model folder, a .gguf file, or a folder of them), as the app's added folders");
    cmd->add_flag("--json", a->asJson, "Machine-readable output");
    return {cmd, [a] { return runModels(a->dirs, a->asJson); }};
}

} // namespace moe::cli
