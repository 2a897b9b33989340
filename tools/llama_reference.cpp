// llama-reference: llama.cpp, called through its public C API (llama.h,
// gguf.h), as the independent reference for our GGUF loader, quantized
// inference, tokenizer and perplexity. Built only when the prebuilt llama.cpp
// libraries and headers are in MOE_LLAMA_CPP_DIR (packaging/fetch-test-data.sh
// puts them in .testdata/llama.cpp). Runs on llama.cpp's CPU backend only.
// Every subcommand prints one JSON object to stdout; llama.cpp's own log goes
// to stderr, warnings and errors only unless LLAMA_REFERENCE_VERBOSE is set.
#include <ggml-backend.h>
#include <ggml.h>
#include <gguf.h>
#include <llama.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef MOE_LLAMA_CPP_LIBDIR
#error "MOE_LLAMA_CPP_LIBDIR must name the folder with libllama and the libggml-cpu-*.so backends"
#endif

using json = nlohmann::ordered_json;

namespace {

constexpr const char* kUsage = R"(usage: llama-reference COMMAND ...

  info MODEL.gguf                         architecture, file type and every tensor's type and shape
  quantize IN.gguf OUT.gguf TYPE          TYPE: q8_0 q4_0 q4_k_m q5_k_m q6_k (llama_model_quantize)
  logits MODEL.gguf --ids 1,2,3 [--last-only] [--top K]
                                          logits of every position (no BOS added)
  greedy MODEL.gguf --ids 1,2,3 --n N     the N argmax next ids (no EOS stop, no sampling) and
                                          each step's top-1 minus top-2 logit margin
  tokenize MODEL.gguf --text T [--add-special] [--parse-special]
  perplexity MODEL.gguf --file TEXT --window W [--max-windows K]
                                          the windowing and scoring of `moe-cli perplexity`
  bench MODEL.gguf --prompt-tokens P --gen-tokens G [--parallel N]
                                          with N: N sequences, each prompt decoded alone, then
                                          one batch of N tokens (one per sequence) per step, as
                                          llama-server --parallel N decodes

Runs llama.cpp's CPU backend with nproc threads (LLAMA_REFERENCE_THREADS
overrides), an F32 KV cache and flash attention off. JSON on stdout; set LLAMA_REFERENCE_VERBOSE=1 for llama.cpp's log.
)";

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

bool gVerbose = false;

void logCallback(ggml_log_level level, const char* text, void*) {
    static ggml_log_level last = GGML_LOG_LEVEL_INFO;
    if (level != GGML_LOG_LEVEL_CONT) last = level;
    if (gVerbose || last >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

// nproc, or LLAMA_REFERENCE_THREADS.
int threadCount() {
    if (const char* env = std::getenv("LLAMA_REFERENCE_THREADS")) {
        const int n = std::atoi(env);
        if (n > 0) return n;
    }
    return int(std::max(1u, std::thread::hardware_concurrency()));
}

// A float written with the 9 significant digits that round-trip it, so the
// JSON stays short (nlohmann would print the widened double's 17 digits).
double shortFloat(float f) {
    if (!std::isfinite(f)) return double(f);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", double(f));
    return std::strtod(buf, nullptr);
}

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options; // --name value
    std::vector<std::string> flags;             // --name
    bool has(const std::string& f) const { return std::find(flags.begin(), flags.end(), f) != flags.end(); }
    std::string get(const std::string& name) const {
        auto it = options.find(name);
        if (it == options.end()) fail("missing " + name);
        return it->second;
    }
    long getInt(const std::string& name, long fallback = -1) const {
        auto it = options.find(name);
        if (it == options.end()) {
            if (fallback < 0) fail("missing " + name);
            return fallback;
        }
        char* end = nullptr;
        const long v = std::strtol(it->second.c_str(), &end, 10);
        if (!end || *end || v < 0) fail(name + " needs a non-negative integer, got \"" + it->second + "\"");
        return v;
    }
};

Args parseArgs(int argc, char** argv, int from, const std::vector<std::string>& flagNames) {
    Args a;
    for (int i = from; i < argc; ++i) {
        const std::string s = argv[i];
        if (s.rfind("--", 0) == 0) {
            if (std::find(flagNames.begin(), flagNames.end(), s) != flagNames.end()) {
                a.flags.push_back(s);
            } else {
                if (i + 1 >= argc) fail(s + " needs a value");
                a.options[s] = argv[++i];
            }
        } else {
            a.positional.push_back(s);
        }
    }
    return a;
}

std::vector<llama_token> parseIds(const std::string& s) {
    std::vector<llama_token> ids;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty()) continue;
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (!end || *end || v < 0) fail("--ids needs comma-separated token ids, got \"" + s + "\"");
        ids.push_back(llama_token(v));
    }
    if (ids.empty()) fail("--ids is empty");
    return ids;
}

struct ModelDeleter {
    void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
    void operator()(llama_context* c) const { llama_free(c); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

ModelPtr loadModel(const std::string& path, bool vocabOnly = false) {
    static ggml_backend_dev_t noDevices[] = {nullptr}; // no offload devices: the CPU backend alone
    llama_model_params p = llama_model_default_params();
    p.devices = noDevices;
    p.n_gpu_layers = 0;
    p.vocab_only = vocabOnly;
    llama_model* m = llama_model_load_from_file(path.c_str(), p);
    if (!m) fail("llama.cpp could not load " + path);
    return ModelPtr(m);
}

ContextPtr makeContext(llama_model* model, uint32_t nCtx, uint32_t nBatch, uint32_t nSeq = 1) {
    llama_context_params p = llama_context_default_params();
    p.n_ctx = nCtx;
    p.n_batch = nBatch;
    p.n_ubatch = nBatch;
    p.n_seq_max = nSeq;
    p.n_threads = threadCount();
    p.n_threads_batch = threadCount();
    p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    p.type_k = GGML_TYPE_F32;
    p.type_v = GGML_TYPE_F32;
    p.offload_kqv = false;
    p.op_offload = false;
    p.no_perf = true;
    llama_context* c = llama_init_from_model(model, p);
    if (!c) fail("llama.cpp could not create a context");
    return ContextPtr(c);
}

int32_t vocabSize(const llama_model* model) { return llama_vocab_n_tokens(llama_model_get_vocab(model)); }

// Decodes `tokens` at positions start.. in one batch (one ubatch: nBatch of
// the context must hold them); outputs logits for every position when
// allOutputs, else for the last.
void decode(llama_context* ctx, const std::vector<llama_token>& tokens, llama_pos start, bool allOutputs,
            llama_seq_id seq = 0) {
    llama_batch batch = llama_batch_init(int32_t(tokens.size()), 0, 1);
    batch.n_tokens = int32_t(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        batch.token[i] = tokens[i];
        batch.pos[i] = start + llama_pos(i);
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = seq;
        batch.logits[i] = allOutputs || i + 1 == tokens.size();
    }
    const int32_t rc = llama_decode(ctx, batch);
    llama_batch_free(batch);
    if (rc != 0) fail("llama_decode failed with " + std::to_string(rc));
}

llama_token argmax(const float* row, int32_t n) {
    return llama_token(std::max_element(row, row + n) - row); // the first of equal maxima
}

std::string typeName(ggml_type t) { return ggml_type_name(t); }

// ---------------------------------------------------------------- info

json cmdInfo(const Args& a) {
    if (a.positional.size() != 1) fail("info needs MODEL.gguf");
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* g = gguf_init_from_file(a.positional[0].c_str(), params);
    if (!g) fail("not a GGUF file: " + a.positional[0]);
    json out;
    const int64_t archKey = gguf_find_key(g, "general.architecture");
    out["architecture"] = archKey >= 0 ? gguf_get_val_str(g, archKey) : "";
    const int64_t ftypeKey = gguf_find_key(g, "general.file_type");
    if (ftypeKey >= 0) {
        const auto ft = llama_ftype(gguf_get_val_u32(g, ftypeKey));
        out["file_type"] = llama_ftype_name(ft);
    }
    json counts = json::object();
    json tensors = json::array();
    std::map<std::string, int> countMap;
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        const ggml_type t = gguf_get_tensor_type(g, i);
        const int64_t* ne = gguf_get_tensor_ne(g, i);
        json shape = json::array();
        int dims = GGML_MAX_DIMS;
        while (dims > 1 && ne[dims - 1] == 1) --dims;
        for (int d = 0; d < dims; ++d) shape.push_back(ne[d]);
        tensors.push_back({{"name", gguf_get_tensor_name(g, i)}, {"type", typeName(t)}, {"ne", shape}});
        ++countMap[typeName(t)];
    }
    for (const auto& [k, v] : countMap) counts[k] = v;
    out["type_counts"] = counts;
    out["tensors"] = tensors;
    gguf_free(g);
    return out;
}

// ---------------------------------------------------------------- quantize

json cmdQuantize(const Args& a) {
    if (a.positional.size() != 3) fail("quantize needs IN.gguf OUT.gguf TYPE");
    static const std::map<std::string, llama_ftype> types = {
        {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
        {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},
    };
    const auto it = types.find(a.positional[2]);
    if (it == types.end()) fail("TYPE must be q8_0, q4_0, q4_k_m, q5_k_m or q6_k, got \"" + a.positional[2] + "\"");
    llama_model_quantize_params p = llama_model_quantize_default_params();
    p.nthread = threadCount();
    p.ftype = it->second;
    if (llama_model_quantize(a.positional[0].c_str(), a.positional[1].c_str(), &p) != 0)
        fail("llama_model_quantize failed");
    Args infoArgs;
    infoArgs.positional = {a.positional[1]};
    json info = cmdInfo(infoArgs);
    return {{"input", a.positional[0]},
            {"output", a.positional[1]},
            {"ftype", llama_ftype_name(it->second)},
            {"type_counts", info["type_counts"]}};
}

// ---------------------------------------------------------------- logits, greedy

json cmdLogits(const Args& a) {
    if (a.positional.size() != 1) fail("logits needs MODEL.gguf");
    const auto ids = parseIds(a.get("--ids"));
    const bool lastOnly = a.has("--last-only");
    const long topK = a.getInt("--top", 0);
    auto model = loadModel(a.positional[0]);
    const int32_t nVocab = vocabSize(model.get());
    auto ctx = makeContext(model.get(), uint32_t(ids.size()), uint32_t(ids.size()));
    decode(ctx.get(), ids, 0, true);
    json rows = json::array();
    json tops = json::array();
    for (size_t i = 0; i < ids.size(); ++i) {
        const float* row = llama_get_logits_ith(ctx.get(), int32_t(i));
        if (!row) fail("no logits for position " + std::to_string(i));
        if (!lastOnly || i + 1 == ids.size()) {
            json r = json::array();
            for (int32_t v = 0; v < nVocab; ++v) r.push_back(shortFloat(row[v]));
            rows.push_back(std::move(r));
        }
        if (topK > 0) {
            std::vector<int32_t> order(static_cast<size_t>(nVocab));
            for (int32_t v = 0; v < nVocab; ++v) order[size_t(v)] = v;
            const long k = std::min<long>(topK, nVocab);
            std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t x, int32_t y) {
                return row[x] > row[y] || (row[x] == row[y] && x < y);
            });
            tops.push_back(std::vector<int32_t>(order.begin(), order.begin() + k));
        }
    }
    json out = {{"n_vocab", nVocab}, {"ids", ids}};
    if (topK > 0) out["top"] = tops;
    out[lastOnly ? "last_logits" : "logits"] = lastOnly ? rows.at(0) : rows;
    return out;
}

json cmdGreedy(const Args& a) {
    if (a.positional.size() != 1) fail("greedy needs MODEL.gguf");
    auto ids = parseIds(a.get("--ids"));
    const long n = a.getInt("--n");
    auto model = loadModel(a.positional[0]);
    const int32_t nVocab = vocabSize(model.get());
    auto ctx = makeContext(model.get(), uint32_t(ids.size() + size_t(n)), uint32_t(ids.size()));
    decode(ctx.get(), ids, 0, false);
    std::vector<llama_token> out;
    json margins = json::array(); // top-1 minus top-2 logit at each step: how firm each pick is
    llama_pos pos = llama_pos(ids.size());
    for (long i = 0; i < n; ++i) {
        const float* row = llama_get_logits_ith(ctx.get(), -1);
        const llama_token next = argmax(row, nVocab);
        float second = -INFINITY;
        for (int32_t v = 0; v < nVocab; ++v)
            if (v != next) second = std::max(second, row[v]);
        out.push_back(next);
        margins.push_back(shortFloat(row[next] - second));
        if (i + 1 < n) decode(ctx.get(), {next}, pos++, false);
    }
    return {{"prompt", ids},
            {"ids", out},
            {"margins", margins},
            {"eos", llama_vocab_eos(llama_model_get_vocab(model.get()))}};
}

// ---------------------------------------------------------------- tokenize

std::vector<llama_token> tokenize(const llama_vocab* vocab, const std::string& text, bool addSpecial,
                                  bool parseSpecial) {
    std::vector<llama_token> ids(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), addSpecial,
                               parseSpecial);
    if (n < 0) {
        if (n == INT32_MIN) fail("tokenization overflow");
        ids.resize(size_t(-n));
        n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), addSpecial,
                           parseSpecial);
        if (n < 0) fail("llama_tokenize failed");
    }
    ids.resize(size_t(n));
    return ids;
}

json cmdTokenize(const Args& a) {
    if (a.positional.size() != 1) fail("tokenize needs MODEL.gguf");
    auto model = loadModel(a.positional[0], /*vocabOnly=*/true);
    const auto ids = tokenize(llama_model_get_vocab(model.get()), a.get("--text"), a.has("--add-special"),
                              a.has("--parse-special"));
    return {{"ids", ids}};
}

// ---------------------------------------------------------------- perplexity

std::string readFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("cannot read " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// The rules of moe::perplexity (engine/src/scoring.cpp) with promptTokens 0:
// the whole text is tokenized once without special tokens and without
// parsing them; it is cut into consecutive, non-overlapping windows of W
// tokens (the last may be shorter), at most K of them; each window is a fresh
// sequence [BOS] + window and every window token is scored by the row before
// it; the loss is the mean over all scored tokens in nats. A model without BOS
// has nothing to predict the first token from, so each window is skipped (as
// moe::perplexity does).
json cmdPerplexity(const Args& a) {
    if (a.positional.size() != 1) fail("perplexity needs MODEL.gguf");
    const std::string text = readFile(a.get("--file"));
    const long window = a.getInt("--window", 256);
    const long maxWindows = a.getInt("--max-windows", 0);
    if (window < 2) fail("the perplexity window must hold at least 2 tokens");
    auto model = loadModel(a.positional[0]);
    const llama_vocab* vocab = llama_model_get_vocab(model.get());
    const int32_t nVocab = vocabSize(model.get());
    const llama_token bos = llama_vocab_bos(vocab);
    const auto ids = tokenize(vocab, text, false, false);
    size_t windows = (ids.size() + size_t(window) - 1) / size_t(window);
    if (maxWindows > 0) windows = std::min(windows, size_t(maxWindows));
    auto ctx = makeContext(model.get(), uint32_t(window + 1), uint32_t(window + 1));
    double total = 0;
    size_t scored = 0, used = 0;
    for (size_t w = 0; w < windows; ++w) {
        const size_t from = w * size_t(window), to = std::min(ids.size(), from + size_t(window));
        if (bos == LLAMA_TOKEN_NULL) continue;
        std::vector<llama_token> seq;
        seq.push_back(bos);
        seq.insert(seq.end(), ids.begin() + long(from), ids.begin() + long(to));
        llama_memory_clear(llama_get_memory(ctx.get()), true);
        // The last token is never a predictor; leave it out as moe::perplexity does.
        std::vector<llama_token> input(seq.begin(), seq.end() - 1);
        decode(ctx.get(), input, 0, true);
        for (size_t i = 0; i + 1 < seq.size(); ++i) {
            const float* row = llama_get_logits_ith(ctx.get(), int32_t(i));
            double mx = row[0];
            for (int32_t v = 1; v < nVocab; ++v) mx = std::max(mx, double(row[v]));
            double sum = 0;
            for (int32_t v = 0; v < nVocab; ++v) sum += std::exp(double(row[v]) - mx);
            total += mx + std::log(sum) - double(row[seq[i + 1]]);
        }
        scored += seq.size() - 1;
        ++used;
    }
    const double loss = scored ? total / double(scored) : 0;
    return {{"perplexity", std::exp(loss)}, {"loss", loss},  {"tokens", scored},
            {"windows", used},              {"window", window}, {"text_tokens", ids.size()}};
}

// ---------------------------------------------------------------- bench

// N sequences decoding together: one batch per step holds each sequence's
// next token at its own position, every row's logits out.
json benchParallel(llama_model* model, long prompt, long gen, long parallel) {
    using Clock = std::chrono::steady_clock;
    const int32_t nVocab = vocabSize(model);
    const uint32_t perSeq = uint32_t(prompt + gen + 1);
    auto ctx = makeContext(model, perSeq * uint32_t(parallel), uint32_t(std::max(prompt, parallel)), uint32_t(parallel));
    std::vector<std::vector<llama_token>> prompts(static_cast<size_t>(parallel));
    for (size_t s = 0; s < prompts.size(); ++s)
        for (long i = 0; i < prompt; ++i) prompts[s].push_back(llama_token((size_t(i) * 7919 + 13 + s * 101) % size_t(nVocab)));
    auto run = [&](long steps, double* prefillSeconds, double* decodeSeconds) {
        llama_memory_clear(llama_get_memory(ctx.get()), true);
        std::vector<llama_token> next(prompts.size());
        const auto t0 = Clock::now();
        for (size_t s = 0; s < prompts.size(); ++s) {
            decode(ctx.get(), prompts[s], 0, false, llama_seq_id(s));
            next[s] = argmax(llama_get_logits_ith(ctx.get(), -1), nVocab);
        }
        const auto t1 = Clock::now();
        llama_batch batch = llama_batch_init(int32_t(parallel), 0, 1);
        for (long step = 0; step < steps; ++step) {
            batch.n_tokens = int32_t(parallel);
            for (long s = 0; s < parallel; ++s) {
                batch.token[s] = next[size_t(s)];
                batch.pos[s] = llama_pos(prompt + step);
                batch.n_seq_id[s] = 1;
                batch.seq_id[s][0] = llama_seq_id(s);
                batch.logits[s] = true;
            }
            if (llama_decode(ctx.get(), batch) != 0) {
                llama_batch_free(batch);
                fail("llama_decode failed on a batch of " + std::to_string(parallel) + " sequences");
            }
            for (long s = 0; s < parallel; ++s) next[size_t(s)] = argmax(llama_get_logits_ith(ctx.get(), int32_t(s)), nVocab);
        }
        llama_batch_free(batch);
        llama_synchronize(ctx.get());
        if (prefillSeconds) *prefillSeconds = std::chrono::duration<double>(t1 - t0).count();
        if (decodeSeconds) *decodeSeconds = std::chrono::duration<double>(Clock::now() - t1).count();
    };
    run(2, nullptr, nullptr); // warm-up
    double prefill = 0, decodeSec = 0;
    run(gen, &prefill, &decodeSec);
    return {{"prompt_tokens", prompt},
            {"gen_tokens", gen},
            {"parallel", parallel},
            {"threads", threadCount()},
            {"prefill_seconds", prefill},
            {"decode_seconds", decodeSec},
            {"aggregate_decode_tokens_per_second", gen > 0 ? double(gen * parallel) / decodeSec : 0.0}};
}

json cmdBench(const Args& a) {
    if (a.positional.size() != 1) fail("bench needs MODEL.gguf");
    const long prompt = a.getInt("--prompt-tokens");
    const long gen = a.getInt("--gen-tokens");
    const long parallel = a.getInt("--parallel", 0);
    if (prompt < 1) fail("--prompt-tokens must be at least 1");
    if (parallel < 0 || parallel > 64) fail("--parallel must be 1 to 64");
    using Clock = std::chrono::steady_clock;
    auto model = loadModel(a.positional[0]);
    if (parallel > 0) return benchParallel(model.get(), prompt, gen, parallel);
    const int32_t nVocab = vocabSize(model.get());
    auto ctx = makeContext(model.get(), uint32_t(prompt + gen + 1), uint32_t(prompt));
    std::vector<llama_token> ids(static_cast<size_t>(prompt));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = llama_token((i * 7919 + 13) % size_t(nVocab));
    // Warm-up (first-use allocations, thread pool), then a clean cache.
    decode(ctx.get(), ids, 0, false);
    decode(ctx.get(), {ids[0]}, llama_pos(prompt), false);
    llama_memory_clear(llama_get_memory(ctx.get()), true);

    const auto t0 = Clock::now();
    decode(ctx.get(), ids, 0, false);
    llama_synchronize(ctx.get());
    const double prefill = std::chrono::duration<double>(Clock::now() - t0).count();
    llama_token next = argmax(llama_get_logits_ith(ctx.get(), -1), nVocab);
    const auto t1 = Clock::now();
    for (long i = 0; i < gen; ++i) {
        decode(ctx.get(), {next}, llama_pos(prompt + i), false);
        next = argmax(llama_get_logits_ith(ctx.get(), -1), nVocab);
    }
    llama_synchronize(ctx.get());
    const double decodeSec = std::chrono::duration<double>(Clock::now() - t1).count();
    return {{"prompt_tokens", prompt},
            {"gen_tokens", gen},
            {"threads", threadCount()},
            {"prefill_seconds", prefill},
            {"decode_seconds", decodeSec},
            {"prefill_tokens_per_second", double(prompt) / prefill},
            {"decode_tokens_per_second", gen > 0 ? double(gen) / decodeSec : 0.0}};
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    gVerbose = std::getenv("LLAMA_REFERENCE_VERBOSE") != nullptr;
    llama_log_set(logCallback, nullptr);
    const std::string cmd = argv[1];
    try {
        json out;
        if (cmd == "info" || cmd == "quantize") {
            const Args a = parseArgs(argc, argv, 2, {});
            out = cmd == "info" ? cmdInfo(a) : (ggml_backend_load_all_from_path(MOE_LLAMA_CPP_LIBDIR), cmdQuantize(a));
        } else {
            // The CPU backend variants (libggml-cpu-<cpu>.so) are loaded from the
            // library folder; ggml picks the best one this CPU supports.
            ggml_backend_load_all_from_path(MOE_LLAMA_CPP_LIBDIR);
            llama_backend_init();
            if (ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU) == nullptr)
                fail(std::string("no CPU backend found in ") + MOE_LLAMA_CPP_LIBDIR);
            const Args a = parseArgs(argc, argv, 2, {"--add-special", "--parse-special", "--last-only"});
            if (cmd == "logits") out = cmdLogits(a);
            else if (cmd == "greedy") out = cmdGreedy(a);
            else if (cmd == "tokenize") out = cmdTokenize(a);
            else if (cmd == "perplexity") out = cmdPerplexity(a);
            else if (cmd == "bench") out = cmdBench(a);
            else {
                std::fputs(kUsage, stderr);
                return 2;
            }
            llama_backend_free();
        }
        std::cout << out.dump() << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "llama-reference %s: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
