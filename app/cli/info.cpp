// moe-cli info: a model folder's facts from its config and headers (no weights read).
#include "cli_common.h"

#include "moe/bench.h"
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/gguf.h"
#include "moe/gguf_model.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"
#include "moe/tokenizer.h"

#include <algorithm>
#include <iostream>
#include <map>

namespace moe::cli {
namespace {

uint64_t folderBytes(const std::filesystem::path& dir) {
    if (std::filesystem::is_regular_file(dir)) return std::filesystem::file_size(dir);
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
            {"rms_norm_eps", c.normEps}, {"sliding_window", c.slidingWindow},
            {"tie_word_embeddings", c.tieWordEmbeddings}, {"attention_bias", c.attentionBias},
            {"dtype", dtype}, {"size_on_disk", folderBytes(dir)}};
}

int runInfo(const std::filesystem::path& dir, bool asJson) {
    auto config = ModelConfig::load(dir);
    auto store = openModelWeights(dir);
    uint64_t params = 0;
    // The dtypes that hold the weights, most bytes first ("q4_k + q6_k + f32" for a Q4_K_M file).
    std::map<std::string, uint64_t> bytesByDtype;
    for (const auto& name : store->names()) {
        const auto* t = store->find(name);
        params += uint64_t(t->numel());
        bytesByDtype[dtypeName(t->dtype)] += t->nbytes;
    }
    std::vector<std::pair<uint64_t, std::string>> byBytes;
    for (const auto& [name, bytes] : bytesByDtype) byBytes.emplace_back(bytes, name);
    std::sort(byBytes.rbegin(), byBytes.rend());
    std::string dtype;
    for (const auto& [bytes, name] : byBytes) dtype += (dtype.empty() ? "" : " + ") + name;
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

// A GGUF file's facts from its header (no tensor data read).
int runGgufInfo(const std::filesystem::path& file, bool asJson) {
    const auto g = GgufFile::open(file);
    const std::string arch = g->getString("general.architecture").value_or("");
    auto archInteger = [&](const std::string& key) -> json {
        const auto v = g->getInteger(arch + "." + key);
        return v ? json(*v) : json(nullptr);
    };
    uint64_t params = 0, dataBytes = 0;
    std::map<std::string, int> types;
    for (const GgufTensor& t : g->tensors()) {
        params += uint64_t(t.numel());
        dataBytes += t.nbytes;
        ++types[ggmlTypeName(t.ggmlType)];
    }
    const auto tokens = g->find("tokenizer.ggml.tokens");
    json facts = {{"path", file.string()},
                  {"format", "gguf"},
                  {"gguf_version", g->version()},
                  {"architecture", arch},
                  {"name", g->getString("general.name").value_or("")},
                  {"parameters", params},
                  {"tensors", g->tensors().size()},
                  {"tensor_types", types},
                  {"bits_per_weight", params ? 8.0 * double(dataBytes) / double(params) : 0.0},
                  {"layers", archInteger("block_count")},
                  {"hidden_size", archInteger("embedding_length")},
                  {"intermediate_size", archInteger("feed_forward_length")},
                  {"attention_heads", archInteger("attention.head_count")},
                  {"kv_heads", archInteger("attention.head_count_kv")},
                  {"context_length", archInteger("context_length")},
                  {"experts", archInteger("expert_count")},
                  {"experts_per_token", archInteger("expert_used_count")},
                  {"tokenizer", g->getString("tokenizer.ggml.model").value_or("")},
                  {"tokenizer_vocab", tokens ? tokens->size() : 0},
                  {"chat_template", g->find("tokenizer.chat_template") != nullptr},
                  {"size_on_disk", std::filesystem::file_size(file)}};
    // Runnable when the engine maps every tensor of the file onto its architecture.
    try {
        (void)ggufWeightStore(g, ggufModelConfig(*g));
        facts["runnable"] = true;
    } catch (const Error& e) {
        facts["runnable"] = false;
        facts["not_runnable_because"] = e.what();
    }
    if (asJson) {
        std::cout << facts.dump(2) << "\n";
        return 0;
    }
    std::cout << "model         " << file.string() << " (GGUF v" << g->version() << ")\n"
              << "architecture  " << arch << "\n"
              << "parameters    " << params << " in " << g->tensors().size() << " tensors, "
              << facts["bits_per_weight"].get<double>() << " bits per weight\n"
              << "tensor types  " << json(types).dump() << "\n"
              << "tokenizer     " << facts["tokenizer"].get<std::string>() << " (" << facts["tokenizer_vocab"] << " tokens)\n"
              << "chat template " << (facts["chat_template"].get<bool>() ? "yes" : "no") << "\n"
              << "size on disk  " << mib(std::filesystem::file_size(file)) << "\n"
              << "runnable      "
              << (facts["runnable"].get<bool>() ? std::string("yes")
                                                : "no: " + facts["not_runnable_because"].get<std::string>())
              << "\n";
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
    cmd->add_option("--model,-m", a->model, "Model folder (config.json + safetensors + tokenizer) or a GGUF file (header facts)")->required();
    cmd->add_flag("--json", a->asJson, "Machine-readable output");
    return {cmd, [a] {
                std::error_code ec;
                return isGgufPath(a->model) && std::filesystem::is_regular_file(a->model, ec)
                           ? runGgufInfo(a->model, a->asJson)
                           : runInfo(a->model, a->asJson);
            }};
}

} // namespace moe::cli
