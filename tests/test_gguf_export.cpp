// GGUF export, checked against llama.cpp rather than against ourselves:
// - dense and native-MoE models exported to F32 GGUF equal llama.cpp's own
//   converter's files (.testdata/gguf, made by make-test-ggufs.sh): every key
//   the converter writes, with its type and value, and every tensor byte for
//   byte (an F32 export copies the weights; the Q/K interleave, expert
//   stacking and tokenizer tables are where mistakes would show);
// - built MoEs (fine-tuned experts in every layer; LoRA experts on a layer
//   subset; fine-tuned experts on a layer subset of a Qwen3 base, written as
//   qwen3moe) exported to F32 run in llama.cpp (the llama-reference tool over
//   its prebuilt libraries) with the same greedy tokens as the built MoE,
//   and load back in the engine with the built MoE's logits (NMSE < 1e-9:
//   same weights, same kernels);
// - Q8_0 and Q4_K_M exports: llama.cpp's perplexity ratio to the F32 export
//   matches the engine's on the same files within 0.2% (the bound;
//   measured about 0.02%);
// - cancel leaves nothing, an existing file is refused, biased gates are
//   refused, a dry run's size is the written file's, the Modelfile is there.
#include "moe/builder.h"
#include "moe/gguf.h"
#include "moe/gguf_export.h"
#include "moe/model.h"
#include "moe/moe_model.h"
#include "moe/safetensors.h"
#include "moe/sampler.h"
#include "moe/scoring.h"
#include "moe/session.h"
#include "moe/tokenizer.h"
#include "reference_ops.h"
#include "test_paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

using namespace moe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool requireData() {
    const char* v = std::getenv("MOE_REQUIRE_TESTDATA");
    return v && *v && std::string(v) != "0";
}

std::string quoted(const fs::path& p) { return "\"" + p.string() + "\""; }

std::string llamaReference() {
#ifdef MOE_LLAMA_REFERENCE
    return MOE_LLAMA_REFERENCE;
#else
    return {};
#endif
}

// llama-reference's JSON answer, or a null value (the failure is reported).
json runLlamaCpp(const QStringList& args) {
    QProcess p;
    p.start(QString::fromStdString(llamaReference()), args);
    if (!p.waitForFinished(300000) || p.exitCode() != 0) {
        qWarning("llama-reference %s failed: %s", qPrintable(args.join(' ')), p.readAllStandardError().constData());
        return json();
    }
    return json::parse(p.readAllStandardOutput().toStdString());
}

std::string ids(const std::vector<int32_t>& v) {
    std::string s;
    for (int32_t i : v) s += (s.empty() ? "" : ",") + std::to_string(i);
    return s;
}

std::vector<int32_t> greedy(Model& m, const std::vector<int32_t>& prompt, size_t n) {
    Session s(m);
    std::vector<int32_t> out;
    auto logits = s.forward(prompt);
    for (size_t i = 0; i < n; ++i) {
        const int32_t next = argmax(logits);
        out.push_back(next);
        if (i + 1 < n) logits = s.forward(std::span<const int32_t>(&next, 1));
    }
    return out;
}

// A value's comparable form: scalars as text, arrays element by element.
std::string valueText(const GgufValue& v) {
    std::ostringstream s;
    s << toString(v.type) << ":";
    if (v.type == GgufType::Array) {
        s << toString(v.elementType) << "[" << v.size() << "]";
        for (auto i : v.ints) s << i << ",";
        for (auto r : v.reals) s << float(r) << ",";
        for (const auto& t : v.strings) s << t.size() << ":" << t << ",";
    } else if (v.type == GgufType::String) {
        s << v.s;
    } else if (v.type == GgufType::F32 || v.type == GgufType::F64) {
        s << float(v.f);
    } else {
        s << v.i;
    }
    return s.str();
}

#define SKIP_OR_FAIL(what)              \
    do {                                \
        if (requireData()) QFAIL(what); \
        QSKIP(what);                    \
    } while (0)

} // namespace

class TestGgufExport : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir tmp;
    fs::path models, gguf;
    int counter = 0;

    fs::path out(const std::string& name) const { return fs::path(tmp.path().toStdString()) / name; }

    fs::path writeSelector(const std::vector<std::string>& experts, const std::string& anymoe, const std::string& config) {
        const fs::path dir = out("sel-" + std::to_string(++counter));
        fs::create_directories(dir);
        std::string list;
        for (const auto& e : experts) list += (list.empty() ? "" : ", ") + quoted(models / e);
        std::ofstream(dir / "selector.toml") << "[model]\nmodel_id = " << quoted(models / "base")
                                             << "\n\n[anymoe]\ndataset_json = " << quoted(models / "amoe.json")
                                             << "\nmodel_ids = [" << list << "]\n" << anymoe
                                             << "\n[anymoe.config]\nepochs = 2\nrouting = \"token\"\n" << config;
        return dir / "selector.toml";
    }

    // Every key of llama.cpp's conversion is in ours with the same type and
    // value (but the descriptive ones); every tensor is the same bytes.
    void compareWithConverter(const fs::path& ours, const fs::path& theirs) {
        const auto a = GgufFile::open(ours), b = GgufFile::open(theirs);
        static const std::set<std::string> kDescriptive = {"general.name", "general.size_label",
                                                           "tokenizer.ggml.add_sep_token"};
        for (const auto& [key, value] : b->metadata()) {
            if (kDescriptive.count(key)) continue;
            const GgufValue* mine = a->find(key);
            QVERIFY2(mine, (theirs.filename().string() + ": key " + key + " missing in the export").c_str());
            QVERIFY2(valueText(*mine) == valueText(value),
                     (theirs.filename().string() + ": key " + key + " differs").c_str());
        }
        QCOMPARE(a->tensors().size(), b->tensors().size());
        for (const GgufTensor& t : b->tensors()) {
            const GgufTensor* mine = a->findTensor(t.name);
            QVERIFY2(mine, (t.name + " missing").c_str());
            QVERIFY2(mine->ggmlType == t.ggmlType && mine->shape == t.shape, t.name.c_str());
            QVERIFY2(mine->nbytes == t.nbytes && std::memcmp(mine->data, t.data, t.nbytes) == 0,
                     (theirs.filename().string() + ": tensor " + t.name + " differs").c_str());
        }
    }

    // The built MoE's greedy tokens equal llama.cpp's on its F32 export, and
    // the export loads back with the built MoE's logits.
    void checkBuiltMoeInLlamaCpp(const Selector& s, const fs::path& file) {
        auto moe = MoeModel::load(*ctx, s);
        moe->setRouting(RoutingMode::Token);
        const std::vector<std::string> prompts = {
            "def parse(path):\n    return open(path).read()\n",
            "Permission is hereby granted, free of charge, to any person obtaining a copy",
            "The kernel schedules processes on each CPU and the"};
        auto back = Model::load(*ctx, file);
        for (const auto& text : prompts) {
            const auto prompt = moe->tokenizer().encode(text);
            const auto want = greedy(moe->model(), prompt, 16);
            const json got = runLlamaCpp({"greedy", QString::fromStdString(file.string()), "--ids",
                                          QString::fromStdString(ids(prompt)), "--n", "16"});
            QVERIFY(got.is_object());
            QCOMPARE(got["ids"].get<std::vector<int32_t>>(), want);

            Session a(moe->model(), 128, 8), b(*back, 128, 8);
            std::vector<float> wantLogits, gotLogits;
            a.forward(prompt, &wantLogits);
            b.forward(prompt, &gotLogits);
            const double e = test::nmse(gotLogits, wantLogits);
            QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        }
    }

private slots:
    void initTestCase() {
        models = fs::absolute(test::modelsDir()).lexically_normal();
        gguf = fs::absolute(test::testDataDir() / "gguf");
        if (!fs::is_regular_file(models / "base" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("shared models not found in " + models.string())));
        ctx = std::make_unique<vk::Context>();
    }
    void cleanupTestCase() { ctx.reset(); }

    void modelsMatchLlamaCppConverter() {
        if (!fs::is_regular_file(gguf / "base-f32.gguf")) SKIP_OR_FAIL("no llama.cpp conversions in .testdata/gguf");
        const std::vector<std::pair<fs::path, std::string>> cases = {
            {models / "base", "base-f32.gguf"},
            {gguf / "random-qwen2", "random-qwen2-f32.gguf"},
            {gguf / "random-mixtral", "random-mixtral-f32.gguf"},
            {gguf / "random-qwen2moe", "random-qwen2moe-f32.gguf"},
            {gguf / "random-qwen3moe", "random-qwen3moe-f32.gguf"},
            {gguf / "random-qwen3", "random-qwen3-f32.gguf"},
        };
        for (const auto& [model, converted] : cases) {
            GgufExportOptions o;
            o.out = out("conv-" + converted);
            o.type = GgufFileType::F32;
            o.modelfile = false;
            exportModelGguf(model, o);
            compareWithConverter(o.out, gguf / converted);
        }
        // F16: the same rounding as the converter's.
        GgufExportOptions o;
        o.out = out("conv-base-f16.gguf");
        o.type = GgufFileType::F16;
        o.modelfile = false;
        exportModelGguf(models / "base", o);
        compareWithConverter(o.out, gguf / "base-f16.gguf");
        // A GGUF source re-exported keeps its tokenizer and weights.
        o.out = out("conv-again-f16.gguf");
        exportModelGguf(gguf / "base-f16.gguf", o);
        compareWithConverter(o.out, gguf / "base-f16.gguf");
    }

    void builtMoeRunsInLlamaCpp() {
        if (llamaReference().empty()) SKIP_OR_FAIL("llama-reference was not built (no llama.cpp libraries)");
        const Selector s = loadSelector(writeSelector({"expert-code", "expert-legal", "expert-tech"}, "", "gate_bias = false\n"));
        QVERIFY(buildMoe(*ctx, s).moe);

        GgufExportOptions o;
        o.out = out("moe-f32.gguf");
        o.type = GgufFileType::F32;
        // Cancelled: nothing is left behind.
        const std::atomic<bool> cancel{true};
        QVERIFY(exportMoeGguf(s, o, {}, &cancel).cancelled);
        QVERIFY(!fs::exists(o.out));
        for (const auto& entry : fs::directory_iterator(o.out.parent_path()))
            QVERIFY2(entry.path().filename().string().find(".tmp-") == std::string::npos, entry.path().c_str());
        GgufExportOptions dry = o;
        dry.dryRun = true;
        const uint64_t planned = exportMoeGguf(s, dry).bytes;
        size_t progressed = 0;
        const auto rep = exportMoeGguf(s, o, [&](const GgufExportProgress& p) { progressed = p.done; });
        QCOMPARE(rep.experts, 3);
        QCOMPARE(rep.expertsPerToken, 2);
        QCOMPARE(progressed, rep.tensors);
        QCOMPARE(uint64_t(fs::file_size(o.out)), rep.bytes);
        QCOMPARE(planned, rep.bytes);
        QVERIFY(test::errorMessage([&] { exportMoeGguf(s, o); }).find("already exists") != std::string::npos);

        // Metadata llama.cpp needs for a llama MoE, with their types, and ours.
        const auto file = GgufFile::open(o.out);
        QCOMPARE(file->getString("general.architecture").value_or(""), std::string("llama"));
        for (const char* key : {"llama.block_count", "llama.context_length", "llama.embedding_length",
                                "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                                "llama.expert_count", "llama.expert_used_count", "llama.rope.dimension_count"})
            QVERIFY2(file->find(key) && file->find(key)->type == GgufType::U32, key);
        QVERIFY(file->find("llama.attention.layer_norm_rms_epsilon")->type == GgufType::F32);
        QCOMPARE(file->getInteger("llama.expert_count").value_or(0), int64_t(3));
        QVERIFY(file->getString("tokenizer.chat_template").has_value());
        QCOMPARE(file->find("moe_studio.experts")->strings.size(), size_t(3));
        QCOMPARE(file->getString("moe_studio.routing").value_or(""), std::string("token"));
        const json info = runLlamaCpp({"info", QString::fromStdString(o.out.string())});
        QVERIFY(info.is_object());

        // The Modelfile beside it.
        std::ifstream mf(rep.modelfile);
        const std::string modelfile((std::istreambuf_iterator<char>(mf)), {});
        QVERIFY2(modelfile.find("FROM ./moe-f32.gguf\n") != std::string::npos, modelfile.c_str());
        QVERIFY(modelfile.find("PARAMETER stop \"</s>\"") != std::string::npos);
        QVERIFY(modelfile.find("TEMPLATE \"\"\"") != std::string::npos && modelfile.find("[INST]") != std::string::npos);

        checkBuiltMoeInLlamaCpp(s, o.out);

        // Quantized exports: llama.cpp's perplexity ratio to F32 is the engine's.
        std::ifstream in(models / "eval" / "code.txt", std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        const fs::path textFile = models / "eval" / "code.txt";
        auto perplexities = [&](const fs::path& f) {
            const json theirs = runLlamaCpp({"perplexity", QString::fromStdString(f.string()), "--file",
                                             QString::fromStdString(textFile.string()), "--window", "128",
                                             "--max-windows", "6"});
            auto m = Model::load(*ctx, f);
            const auto tokenizer = Tokenizer::load(f);
            PerplexityOptions opt;
            opt.window = 128;
            opt.maxWindows = 6;
            Session session(*m, opt.window + 1, opt.window + 1);
            const double ours = perplexity(session, *tokenizer, text, opt).perplexity;
            return std::pair{ours, theirs.is_object() ? theirs.value("perplexity", 0.0) : 0.0};
        };
        const auto [oursF32, theirsF32] = perplexities(o.out);
        QVERIFY(theirsF32 > 0);
        QVERIFY2(std::abs(oursF32 / theirsF32 - 1) < 1e-4, qPrintable(QString("F32 %1 vs %2").arg(oursF32).arg(theirsF32)));
        for (GgufFileType type : {GgufFileType::Q8_0, GgufFileType::Q4_K_M}) {
            GgufExportOptions q = o;
            q.out = out(std::string("moe-") + toString(type) + ".gguf");
            q.type = type;
            q.modelfile = false;
            const auto qrep = exportMoeGguf(s, q);
            QVERIFY(qrep.bytes < rep.bytes / 2);
            const auto [ours, theirs] = perplexities(q.out);
            const double ourRatio = ours / oursF32, theirRatio = theirs / theirsF32;
            qInfo("%s: perplexity %.4f (llama.cpp %.4f), ratio to F32 %.5f (llama.cpp %.5f), %llu bytes", toString(type),
                  ours, theirs, ourRatio, theirRatio, static_cast<unsigned long long>(qrep.bytes));
            QVERIFY2(std::abs(ourRatio / theirRatio - 1) < 0.002,
                     qPrintable(QString("%1: ratios %2 and %3").arg(toString(type)).arg(ourRatio).arg(theirRatio)));
        }
    }

    // A MoE built on a random Qwen3 base (q/k norms, tied head) from random
    // fine-tunes of its shape, on a layer subset: written as llama.cpp's
    // qwen3moe (q/k norms kept, Q/K not permuted, the unchosen layer's base
    // MLP as every expert), it runs in llama.cpp with the built MoE's greedy
    // tokens and loads back with its logits.
    void qwen3BaseMoeRunsInLlamaCpp() {
        if (llamaReference().empty()) SKIP_OR_FAIL("llama-reference was not built (no llama.cpp libraries)");
#ifndef MOE_MAKE_RANDOM_MODEL
        QSKIP("make-random-model not built");
#else
        const fs::path root = out("qwen3-moe");
        auto make = [&](const std::string& name, int seed) {
            QProcess p;
            p.start(MOE_MAKE_RANDOM_MODEL,
                    {"--arch", "qwen3", "--hidden", "128", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--head-dim",
                     "32", "--intermediate", "256", "--tie-embeddings", "--vocab", "4096", "--dtype", "f32", "--max-pos",
                     "512", "--init-std", "0.05", "--seed", QString::number(seed), "--tokenizer-from",
                     QString::fromStdString((models / "base").string()), "--out", QString::fromStdString((root / name).string())});
            return p.waitForFinished(120000) && p.exitCode() == 0;
        };
        QVERIFY(make("base", 31));
        for (int e = 0; e < 3; ++e) QVERIFY(make("expert" + std::to_string(e), 40 + e));
        std::ofstream(root / "selector.toml")
            << "[model]\nmodel_id = " << quoted(root / "base") << "\n\n[anymoe]\ndataset_json = "
            << quoted(models / "amoe.json") << "\nmodel_ids = [" << quoted(root / "expert0") << ", "
            << quoted(root / "expert1") << ", " << quoted(root / "expert2")
            << "]\nlayers = [0, 2]\n\n[anymoe.config]\nepochs = 2\nrouting = \"token\"\ngate_bias = false\n";
        const Selector s = loadSelector(root / "selector.toml");
        QVERIFY(buildMoe(*ctx, s).moe);

        GgufExportOptions o;
        o.out = out("qwen3-moe-f32.gguf");
        o.type = GgufFileType::F32;
        const auto rep = exportMoeGguf(s, o);
        QCOMPARE(rep.architecture, std::string("qwen3moe"));
        QVERIFY2(!rep.warnings.empty() && rep.warnings.back().find("`qwen3moe` MoE has experts in every layer") != std::string::npos,
                 rep.warnings.empty() ? "no warning" : rep.warnings.back().c_str());
        const auto file = GgufFile::open(o.out);
        QCOMPARE(file->getString("general.architecture").value_or(""), std::string("qwen3moe"));
        for (const char* key : {"qwen3moe.block_count", "qwen3moe.expert_count", "qwen3moe.expert_used_count",
                                "qwen3moe.expert_feed_forward_length", "qwen3moe.attention.key_length"})
            QVERIFY2(file->find(key) && file->find(key)->type == GgufType::U32, key);
        QCOMPARE(file->getInteger("qwen3moe.expert_feed_forward_length").value_or(0), int64_t(256));
        QCOMPARE(file->getInteger("qwen3moe.attention.key_length").value_or(0), int64_t(32));
        for (int l = 0; l < 3; ++l)
            for (const char* t : {"attn_q_norm.weight", "attn_k_norm.weight", "ffn_gate_inp.weight", "ffn_down_exps.weight"})
                QVERIFY2(file->findTensor("blk." + std::to_string(l) + "." + t), t);
        QVERIFY(!file->findTensor("output.weight")); // tied, as the base
        // Q is the base's as it is: qwen3moe rotates halves, as Hugging Face does.
        const auto base = WeightStore::openFolder(root / "base");
        const TensorView& q = base->require("model.layers.1.self_attn.q_proj.weight");
        const GgufTensor* gq = file->findTensor("blk.1.attn_q.weight");
        QVERIFY(gq && gq->nbytes == q.nbytes && std::memcmp(gq->data, q.data, q.nbytes) == 0);
        checkBuiltMoeInLlamaCpp(s, o.out);
#endif
    }

    // A native MoE whose routing llama.cpp's architecture cannot reproduce is refused.
    void nativeMoeRoutingMismatchIsRefused() {
#ifndef MOE_MAKE_RANDOM_MODEL
        QSKIP("make-random-model not built");
#else
        const fs::path dir = out("qwen3moe-no-norm");
        QProcess p;
        p.start(MOE_MAKE_RANDOM_MODEL, {"--arch", "qwen3_moe", "--hidden", "64", "--layers", "1", "--heads", "2",
                                        "--kv-heads", "1", "--head-dim", "32", "--intermediate", "128", "--experts", "4",
                                        "--top-k", "2", "--moe-intermediate", "64", "--no-norm-topk", "--vocab", "4096",
                                        "--tokenizer-from", QString::fromStdString((models / "base").string()), "--out",
                                        QString::fromStdString(dir.string())});
        QVERIFY(p.waitForFinished(120000) && p.exitCode() == 0);
        GgufExportOptions o;
        o.out = out("qwen3moe-no-norm.gguf");
        const std::string e = test::errorMessage([&] { exportModelGguf(dir, o); });
        QVERIFY2(e.find("norm_topk_prob false") != std::string::npos && e.find("qwen3moe always renormalises") != std::string::npos,
                 e.c_str());
        QVERIFY(!fs::exists(o.out));
#endif
    }

    void loraLayerSubsetRunsInLlamaCpp() {
        if (llamaReference().empty()) SKIP_OR_FAIL("llama-reference was not built (no llama.cpp libraries)");
        const Selector s =
            loadSelector(writeSelector({"lora-code", "lora-legal", "lora-tech"}, "layers = [1, 3]\n",
                                        "gate_bias = false\n[anymoe.config.expert_type.lora_adapter]\n"));
        QVERIFY(buildMoe(*ctx, s).moe);
        GgufExportOptions o;
        o.out = out("lora-subset-f32.gguf");
        o.type = GgufFileType::F32;
        const auto rep = exportMoeGguf(s, o);
        QVERIFY2(!rep.warnings.empty() && rep.warnings.back().find("not chosen") != std::string::npos,
                 rep.warnings.empty() ? "no warning" : rep.warnings.back().c_str());
        QCOMPARE(GgufFile::open(o.out)->find("moe_studio.layers")->ints, (std::vector<int64_t>{1, 3}));
        checkBuiltMoeInLlamaCpp(s, o.out);
    }

    // Byte-level BPE vocabularies (Qwen3's, Llama 3's tokenizer.json) written
    // as tokenizer.ggml.model gpt2: llama.cpp tokenizes the export as our
    // tokenizer.json tokenizer does (llama.cpp picks its pre-tokenizer by the
    // tokenizer.ggml.pre name the export chose).
    void bytePairVocabularyTokenizesAsLlamaCpp() {
        if (llamaReference().empty()) SKIP_OR_FAIL("llama-reference was not built (no llama.cpp libraries)");
#ifndef MOE_MAKE_RANDOM_MODEL
        QSKIP("make-random-model not built");
#else
        const std::vector<std::string> texts = {"Hello world, it's 12345 tokens!", "  two spaces\n\tand tabs\n\n",
                                                "UTF-8: na\xc3\xafve caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x9a\x80",
                                                "<|im_start|>user\nWe've a'll DON'T<|im_end|>"};
        for (const char* vocab : {"qwen3", "llama3"}) {
            const fs::path source = test::testDataDir() / vocab;
            if (!fs::is_regular_file(source / "tokenizer.json")) SKIP_OR_FAIL("no .testdata tokenizer.json vocabularies");
            const fs::path dir = out(std::string("bpe-") + vocab);
            QProcess make;
            make.start(MOE_MAKE_RANDOM_MODEL, {"--arch", "qwen2", "--hidden", "32", "--layers", "1", "--heads", "2",
                                               "--kv-heads", "1", "--intermediate", "64", "--vocab", vocab == std::string("qwen3") ? "151936" : "128256",
                                               "--dtype", "f16", "--tokenizer-from", QString::fromStdString(source.string()),
                                               "--out", QString::fromStdString(dir.string())});
            QVERIFY(make.waitForFinished(120000) && make.exitCode() == 0);
            GgufExportOptions o;
            o.out = out(std::string("bpe-") + vocab + ".gguf");
            o.modelfile = false;
            exportModelGguf(dir, o);
            QCOMPARE(GgufFile::open(o.out)->getString("tokenizer.ggml.model").value_or(""), std::string("gpt2"));
            const auto ours = Tokenizer::load(dir);
            for (const auto& text : texts) {
                const json theirs = runLlamaCpp({"tokenize", QString::fromStdString(o.out.string()), "--text",
                                                 QString::fromStdString(text), "--parse-special"});
                QVERIFY(theirs.is_object());
                QCOMPARE(theirs["ids"].get<std::vector<int32_t>>(), ours->encode(text, false, true));
            }
        }
#endif
    }

    void refusals() {
        const Selector s = loadSelector(writeSelector({"expert-code", "expert-legal", "expert-tech"}, "", "gate_bias = true\n"));
        QVERIFY(buildMoe(*ctx, s).moe);
        GgufExportOptions o;
        o.out = out("biased.gguf");
        QVERIFY(test::errorMessage([&] { exportMoeGguf(s, o); }).find("has a bias") != std::string::npos);
        QVERIFY(!fs::exists(o.out));
        const Selector unbuilt = loadSelector(writeSelector({"expert-code", "expert-legal", "expert-tech"}, "", "gate_bias = false\n"));
        QVERIFY(test::errorMessage([&] { exportMoeGguf(unbuilt, o); }).find("build the MoE first") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestGgufExport)
#include "test_gguf_export.moc"
