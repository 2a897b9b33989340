// A MoE built on a tiny random base of each architecture, from random
// fine-tunes of it (all layers) and from LoRA adapters (a layer subset): the
// engine's sparse logits, prefill then decode, against the CPU transcription
// of the base (tests/reference_model.h) whose MLPs are replaced by the dense
// mixture the routing describes (softmax of the gate over the MLP input,
// top-2, renormalised; each chosen expert's MLP). Then gates trained on the
// demo dataset, route-eval and perplexity on the Qwen3, Gemma 2 and Phi-3
// bases. Phi-3's fused gate_up_proj (LoRA on it too) is sliced by the test
// itself, not by the engine's loader. Phi-2's experts are ungated MLPs with
// biases (fc1 -> gelu_new -> fc2; a fine-tune's own biases, a LoRA expert the
// base's), read under their released names.
//
// Tolerance: as in test_architectures (float32 against double on the same
// weights, NMSE < 1e-9); a wrong expert, weight or activation gives > 1e-4.
#include "moe/builder.h"
#include "moe/dataset.h"
#include "moe/gate_training.h"
#include "moe/moe_model.h"
#include "moe/scoring.h"
#include "moe/validate.h"
#include "reference_model.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

using namespace moe;
using namespace moe::test::ref;
namespace fs = std::filesystem;

namespace {

constexpr int kVocab = 4096; // the demo base's tokenizer

Spec specOf(const std::string& arch) {
    Spec s{arch, 48, 80, 2, 4, 2, 16, kVocab};
    if (arch == "qwen3") s.tied = true;
    if (arch == "gemma2" || arch == "gemma3") {
        // Layer 0 sliding (window 8 of the 13 tokens), layer 1 global;
        // Gemma 2's caps low enough to bend the scores and logits.
        s.tied = true;
        s.window = 8;
        s.slidingPattern = 2;
        s.queryPreAttnScalar = 24;
        if (arch == "gemma2") s.attnSoftcap = 5, s.finalSoftcap = 8;
    }
    if (arch == "phi2") {
        // PhiConfig: head_dim = hidden / heads (64 / 4); phi-2's 0.4 of each
        // head rotated (16 * 0.4 -> 6); GQA 2 to cover num_key_value_heads.
        s.hidden = 64;
        s.inter = 96;
        s.partialRotary = 0.4;
    }
    if (arch == "phi3") {
        // Phi-4-mini's shape in small: tied, 3/4 of each head rotated,
        // LongRoPE switching to the long factors within the 13 tokens.
        s.tied = true;
        s.partialRotary = 0.75;
        s.longropeOriginal = 8;
    }
    return s;
}

// A layer's dense MLP weights (gate, up, down) from a folder; Phi-3's fused
// gate_up_proj sliced here by rows (gate first).
ExpertWeights denseMlp(const WeightStore& store, const Spec& s, int layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
    ExpertWeights w;
    if (s.phi2()) {
        w.up = toFloat32(store.require(p + "fc1.weight"));
        w.upBias = toFloat32(store.require(p + "fc1.bias"));
        w.down = toFloat32(store.require(p + "fc2.weight"));
        w.downBias = toFloat32(store.require(p + "fc2.bias"));
        return w;
    }
    if (s.phi3()) {
        const auto gu = toFloat32(store.require(p + "gate_up_proj.weight"));
        const size_t half = size_t(s.inter) * size_t(s.hidden);
        w.gate.assign(gu.begin(), gu.begin() + long(half));
        w.up.assign(gu.begin() + long(half), gu.end());
    } else {
        w.gate = toFloat32(store.require(p + "gate_proj.weight"));
        w.up = toFloat32(store.require(p + "up_proj.weight"));
    }
    w.down = toFloat32(store.require(p + "down_proj.weight"));
    return w;
}

// One expert's MLP on x: SwiGLU (GeGLU for Gemma), or Phi-2's fc2(gelu_new(fc1 x)).
std::vector<double> runMlp(const ExpertWeights& w, const std::vector<double>& x, const Spec& s) {
    if (s.phi2()) return geluMlp(w.up, w.upBias, w.down, w.downBias, x, s.hidden, s.inter);
    return swiglu(w.gate, w.up, w.down, x, s.hidden, s.inter, s.gemma());
}

// The demo base's tokenizer in a random model's folder (the MoE loads one).
void copyTokenizer(const fs::path& dir) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
        const fs::path src = test::modelsDir() / "base" / name;
        if (fs::exists(src)) fs::copy_file(src, dir / name, fs::copy_options::overwrite_existing);
    }
}

// A PEFT LoRA adapter of gate, up and down on `layers`, rank r, random A and B.
void writeLora(const fs::path& dir, const Spec& s, const std::vector<int>& layers, int r, float alpha, uint32_t seed) {
    fs::create_directories(dir);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.2f);
    std::vector<std::vector<std::byte>> storage;
    std::vector<TensorToWrite> out;
    auto add = [&](const std::string& name, int64_t rows, int64_t cols) {
        std::vector<float> v(size_t(rows * cols));
        for (float& x : v) x = normal(rng);
        storage.emplace_back(v.size() * 4);
        std::memcpy(storage.back().data(), v.data(), v.size() * 4);
        out.push_back({name, DType::F32, {rows, cols}, storage.back()});
    };
    // Phi-3: the adapter targets the fused gate_up_proj (B of 2 * inter rows).
    // Phi-2: fc1 and fc2, and attention's q_proj and dense too, which the MoE
    // leaves out (only the MLP part of an adapter makes experts).
    const std::vector<const char*> projs = s.phi3()   ? std::vector<const char*>{"gate_up_proj", "down_proj"}
                                         : s.phi2() ? std::vector<const char*>{"fc1", "fc2", "q_proj", "dense"}
                                                    : std::vector<const char*>{"gate_proj", "up_proj", "down_proj"};
    for (int l : layers)
        for (const char* proj : projs) {
            const std::string name = proj;
            const bool attention = name == "q_proj" || name == "dense";
            const bool down = proj[0] == 'd' || name == "fc2";
            const int64_t in = attention ? s.hidden : down ? s.inter : s.hidden;
            const int64_t outDim = attention ? s.hidden : down ? s.hidden : name == "gate_up_proj" ? 2 * s.inter : s.inter;
            const std::string p = "base_model.model.model.layers." + std::to_string(l) + (attention ? ".self_attn." : ".mlp.") + proj + ".";
            add(p + "lora_A.weight", r, in);
            add(p + "lora_B.weight", outDim, r);
        }
    writeSafetensors(dir / "adapter_model.safetensors", out);
    const nlohmann::json cfg = {{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", alpha},
                                {"target_modules", projs},
                                {"base_model_name_or_path", "../base"}, {"bias", "none"}, {"fan_in_fan_out", false},
                                {"use_rslora", false}, {"use_dora", false}, {"task_type", "CAUSAL_LM"}};
    std::ofstream(dir / "adapter_config.json") << cfg.dump(1);
}

// One expert's dense MLP weights for a layer: a fine-tune's own, or the base's plus (alpha / r) B A.
ExpertWeights expertMlp(const fs::path& base, const fs::path& expert, bool lora, const Spec& s, int layer, int r,
                        float alpha) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
    auto store = WeightStore::openFolder(lora ? base : expert);
    ExpertWeights w = denseMlp(*store, s, layer);
    if (!lora) return w;
    auto ad = WeightStore::openFile(expert / "adapter_model.safetensors");
    const double scale = double(alpha) / r;
    auto apply = [&](std::vector<float>& m, const char* proj, int rows, int cols) {
        const std::string q = "base_model.model." + p + proj + ".";
        if (!ad->find(q + "lora_A.weight")) return;
        const auto A = toFloat32(ad->require(q + "lora_A.weight")), B = toFloat32(ad->require(q + "lora_B.weight"));
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) {
                double d = 0;
                for (int k = 0; k < r; ++k) d += double(B[size_t(i * r + k)]) * A[size_t(k * cols + j)];
                m[size_t(i * cols + j)] += float(scale * d);
            }
    };
    if (s.phi2()) {
        apply(w.up, "fc1", s.inter, s.hidden);
        apply(w.down, "fc2", s.hidden, s.inter);
        return w;
    }
    if (s.phi3()) {
        // W_gate_up + (alpha / r) B A over the fused rows, then split.
        std::vector<float> gu = w.gate;
        gu.insert(gu.end(), w.up.begin(), w.up.end());
        apply(gu, "gate_up_proj", 2 * s.inter, s.hidden);
        const size_t half = size_t(s.inter) * size_t(s.hidden);
        w.gate.assign(gu.begin(), gu.begin() + long(half));
        w.up.assign(gu.begin() + long(half), gu.end());
    } else {
        apply(w.gate, "gate_proj", s.inter, s.hidden);
        apply(w.up, "up_proj", s.inter, s.hidden);
    }
    apply(w.down, "down_proj", s.hidden, s.inter);
    return w;
}

} // namespace

class TestArchitectureBuilds : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;

private slots:
    void initTestCase() { ctx = std::make_unique<vk::Context>(); }
    void cleanupTestCase() { ctx.reset(); }

    void sparseLogitsEqualDenseMixture_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<bool>("lora");
        for (const char* arch : {"llama", "qwen3", "gemma2", "gemma3", "phi3", "phi2"})
            for (bool lora : {false, true})
                QTest::newRow(qPrintable(QString("%1 %2").arg(arch, lora ? "LoRA experts, layer 1" : "fine-tuned experts")))
                    << QString(arch) << lora;
    }

    void sparseLogitsEqualDenseMixture() {
        QFETCH(QString, arch);
        QFETCH(bool, lora);
        const Spec s = specOf(arch.toStdString());
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const fs::path base = root / "base";
        fs::create_directories(base);
        writeModel(base, s, 1);
        copyTokenizer(base);
        const int rank = 4;
        const float alpha = 8;
        const std::vector<int> loraLayers{1};
        Selector sel;
        sel.modelId = base.string();
        sel.baseModel = base;
        for (int e = 0; e < 3; ++e) {
            const fs::path d = root / ("expert" + std::to_string(e));
            fs::create_directories(d);
            if (lora) {
                writeLora(d, s, loraLayers, rank, alpha, 30 + e);
            } else {
                writeModel(d, s, 20 + e); // a "fine-tune": every weight differs, the MoE takes the MLPs
                copyTokenizer(d);
            }
            sel.expertIds.push_back(d.string());
            sel.experts.push_back(d);
        }
        sel.expertType = lora ? ExpertType::LoraAdapter : ExpertType::FineTuned;
        sel.gateMode = GateMode::Random;
        sel.training = false;
        sel.topK = 2;
        sel.routing = RoutingMode::Token;
        if (lora) sel.layers = loraLayers;
        const SelectionFacts facts = validateSelection(sel);
        if (lora && s.phi2()) {
            // The adapters' q_proj and dense factors are named as left out.
            bool warned = false;
            for (const auto& w : facts.warnings) warned |= w.find("not MLP projections") != std::string::npos;
            QVERIFY(warned);
        }
        std::vector<GateWeights> gates;
        for (size_t l = 0; l < facts.layers.size(); ++l)
            gates.push_back(randomGate(3, uint32_t(s.hidden), 5 + l, false));
        auto moe = MoeModel::load(*ctx, sel, facts, gates, nullptr);

        std::vector<int32_t> ids;
        std::mt19937 rng(4);
        for (int i = 0; i < 13; ++i) ids.push_back(int32_t(rng() % kVocab));
        Session session(moe->model(), 64, 8);
        const auto got = prefillThenDecode(session, ids, 9);
        // Gemma and Phi-2 under an expert budget too: the paged step (a submit
        // per MoE layer's routing) with Gemma's post-feed-forward norm, and
        // with Phi-2's MLP reading the layer's one input norm.
        std::vector<float> paged;
        if (s.gemma() || s.phi2()) {
            moe->model().setExpertBudget(1);
            Session pagedSession(moe->model(), 64, 8);
            paged = prefillThenDecode(pagedSession, ids, 9);
        }

        // The dense mixture on the CPU.
        std::map<std::pair<int, int>, ExpertWeights> weights;
        for (int l : facts.layers)
            for (int e = 0; e < 3; ++e) weights[{l, e}] = expertMlp(base, sel.experts[size_t(e)], lora, s, l, rank, alpha);
        auto baseStore = std::shared_ptr<WeightStore>(WeightStore::openFolder(base).release());
        const MlpFn mixture = [&](int layer, int, const std::vector<double>& x) {
            const auto it = std::find(facts.layers.begin(), facts.layers.end(), layer);
            if (it == facts.layers.end()) {
                return runMlp(denseMlp(*baseStore, s, layer), x, s);
            }
            const GateWeights& g = gates[size_t(it - facts.layers.begin())];
            const auto w = topKWeights(linear(g.weight, x, 3, s.hidden), 2, true);
            std::vector<double> y(size_t(s.hidden), 0.0);
            for (int e = 0; e < 3; ++e) {
                if (w[size_t(e)] == 0) continue;
                const ExpertWeights& ew = weights[{layer, e}];
                const auto d = runMlp(ew, x, s);
                for (int i = 0; i < s.hidden; ++i) y[size_t(i)] += w[size_t(e)] * d[size_t(i)];
            }
            return y;
        };
        const auto want = referenceLogits(base, s, ids, mixture);
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("%s: NMSE %.3g", qPrintable(QTest::currentDataTag()), e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        if (!paged.empty()) {
            const double ep = test::nmse(paged, want);
            qInfo("  under an expert budget: NMSE %.3g", ep);
            QVERIFY2(ep < 1e-9, qPrintable(QString("paged NMSE %1").arg(ep)));
        }
    }

    // Gates trained on the demo dataset over a random Qwen3 (Gemma 2) base
    // with random fine-tunes: training runs and lowers the loss, route-eval
    // and perplexity run on the built MoE.
    void trainedGatesRouteEvalAndPerplexity_data() {
        QTest::addColumn<QString>("arch");
        QTest::newRow("qwen3") << "qwen3";
        QTest::newRow("gemma2") << "gemma2";
        QTest::newRow("phi3") << "phi3";
        QTest::newRow("phi2") << "phi2";
    }
    void trainedGatesRouteEvalAndPerplexity() {
        QFETCH(QString, arch);
        const Spec s = specOf(arch.toStdString());
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const fs::path base = root / "base";
        fs::create_directories(base);
        writeModel(base, s, 1);
        copyTokenizer(base);
        Selector sel;
        sel.file = root / "moe.toml";
        sel.modelId = base.string();
        sel.baseModel = base;
        sel.datasetJson = test::modelsDir() / "amoe.json";
        for (int e = 0; e < 3; ++e) {
            const fs::path d = root / ("expert" + std::to_string(e));
            fs::create_directories(d);
            writeModel(d, s, 20 + e);
            copyTokenizer(d);
            sel.expertIds.push_back(d.string());
            sel.experts.push_back(d);
        }
        sel.expertType = ExpertType::FineTuned;
        sel.epochs = 4;
        sel.batchSize = 8;
        sel.topK = 2;
        BuildResult b = buildMoe(*ctx, sel);
        QVERIFY(b.moe);
        QVERIFY(b.report.trainSteps > 0);
        double first = 0, last = 0;
        int nFirst = 0, nLast = 0;
        for (const auto& r : b.report.history) {
            for (double v : r.loss) QVERIFY(std::isfinite(v));
            if (r.epoch == 1) first += r.loss[0], ++nFirst;
            if (r.epoch == sel.epochs) last += r.loss[0], ++nLast;
        }
        qInfo("layer 0 loss: epoch 1 %.4f, epoch %d %.4f", first / nFirst, sel.epochs, last / nLast);
        QVERIFY(last / nLast < first / nFirst);

        auto capture = Model::load(*ctx, base);
        Session captureSession(*capture);
        const auto rows = loadDataset(test::modelsDir() / "amoe.json");
        const auto acc = evaluateRouting(captureSession, b.moe->tokenizer(), b.moe->chatTemplate(), rows,
                                         b.moe->layers(), b.moe->gates(), b.moe->expertCount(), RoutingMode::Token, 0,
                                         sel.useChatTemplate);
        QCOMPARE(acc.size(), size_t(s.layers));
        for (const auto& a : acc) QVERIFY(a.token >= 0 && a.token <= 1);

        Session session(b.moe->model(), 129, 129);
        PerplexityOptions opt;
        opt.window = 128;
        opt.maxWindows = 2;
        const auto ppl = perplexity(session, b.moe->tokenizer(), "The quick brown fox jumps over the lazy dog. " "Permission is hereby granted, free of charge, to any person obtaining a copy of this software.", opt);
        qInfo("perplexity %.1f over %zu tokens", ppl.perplexity, ppl.tokens);
        QVERIFY(std::isfinite(ppl.perplexity) && ppl.perplexity > 1 && ppl.tokens > 0);
    }
};

QTEST_GUILESS_MAIN(TestArchitectureBuilds)
#include "test_architecture_builds.moc"
