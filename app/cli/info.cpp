// moe-cli info: a model folder's facts from its config and headers (no weights read).
#include "cli_common.h"

#include "moe/bench.h"
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"
#include "moe/tokenizer.h"

#include <iostream>

namespace moe::cli {
namespace {

uint64_t folderBytes(const std::filesystem::path& dir) {
    uint64_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.is_regular_file()) n += e.file_size();
    return n;
}

json modelFacts(const ModelConfig& c, const std::filesystem::path& dir, uint64_t params, const std::string& dtype) {
    return {{"path", dir.string()}, {"architecture", c.architecture}, {"model_type", c.modelType},
            {"parameters", params}, {"layers", c.numLayers}, {"hidden_size", c.hiddenSize},
            {"intermediate_size", c.intermediateSize}, {"attention_heads", c.numHeads},
            {"kv_heads", c.numKvHeads}, {"head_dim", c.headDim}, {"vocab_size", c.vocabSize},
            {"max_position_embeddings", c.maxPositions}, {"rope_theta", c.ropeTheta},
            {"rms_norm_eps", c.rmsNormEps}, {"sliding_window", c.slidingWindow},
            {"tie_word_embeddings", c.tieWordEmbeddings}, {"attention_bias", c.attentionBias},
            {"dtype", dtype}, {"size_on_disk", folderBytes(dir)}};
}

int runInfo(const std::filesystem::path& dir, bool asJson) {
    auto config = ModelConfig::load(dir);
    auto store = WeightStore::openFolder(dir);
    uint64_t params = 0;
    std::string dtype;
    for (const auto& name : store->names()) {
        const auto* t = store->find(name);
        params += uint64_t(t->numel());
        if (dtype.empty() && name.find("embed_tokens") != std::string::npos) dtype = dtypeName(t->dtype);
    }
    json facts = modelFacts(config, dir, params, dtype);
    try {
        auto tok = Tokenizer::load(dir);
        facts["tokenizer"] = tok->kind();
        facts["tokenizer_vocab"] = tok->vocabSize();
    } catch (const Error& e) {
        facts["tokenizer"] = std::string("unavailable: ") + e.what();
    }
    facts["chat_template"] = !ChatTemplate::fromModelDir(dir).isFallback();
    if (config.isMoe()) {
        facts["experts"] = config.numExperts;
        facts["experts_per_token"] = config.expertsPerToken;
        facts["active_parameters"] = bench::activeParameters(config, params);
    }
    if (asJson) {
        std::cout << facts.dump(2) << "\n";
        return 0;
    }
    std::cout << "model         " << dir.string() << "\n"
              << "architecture  " << config.architecture << "\n"
              << "parameters    " << params << "\n"
              << "layers        " << config.numLayers << "\n"
              << "hidden size   " << config.hiddenSize << " (intermediate " << config.intermediateSize << ")\n"
              << "attention     " << config.numHeads << " heads, " << config.numKvHeads << " KV heads, head_dim "
              << config.headDim << (config.slidingWindow ? ", sliding window " + std::to_string(config.slidingWindow) : "")
              << "\n"
              << "vocabulary    " << config.vocabSize << "\n"
              << "context       " << config.maxPositions << " (rope theta " << config.ropeTheta << ")\n"
              << "dtype         " << dtype << "\n"
              << "size on disk  " << mib(folderBytes(dir)) << "\n"
              << "tokenizer     " << facts["tokenizer"].get<std::string>() << "\n"
              << "chat template " << (facts["chat_template"].get<bool>() ? "yes" : "no (plain fallback)") << "\n";
    if (config.isMoe())
        std::cout << "experts       " << config.numExperts << " per layer, top-" << config.expertsPerToken
                  << " per token (" << (config.normTopkProb ? "renormalised" : "not renormalised") << ")\n"
                  << "active params " << facts["active_parameters"].get<uint64_t>() << " of " << params
                  << " per token\n";
    return 0;
}

} // namespace

Command addInfoCommand(CLI::App& app) {
    struct Args {
        std::filesystem::path model;
        bool asJson = false;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = app.add_subcommand("info", "Print a model's facts");
    cmd->add_option("--model,-m", a->model, "Model folder (config.json + safetensors + tokenizer)")->required();
    cmd->add_flag("--json", a->asJson, "Machine-readable output");
    return {cmd, [a] { return runInfo(a->model, a->asJson); }};
}

} // namespace moe::cli
