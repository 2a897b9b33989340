// Native sparse MoE checkpoints (Mixtral, both tensor layouts) loaded into
// RoutedMlp layers, on tiny random models against the CPU reference forward
// pass (reference_model.h) in which every chosen expert is computed densely
// and mixed with Mixtral's top-k renormalised softmax weights. Also: greedy
// tokens, and load errors naming the file, tensor and config field.
//
// Tolerance as in test_architectures (float32 engine vs double reference,
// NMSE < 1e-9): a token sent to a wrong expert, a swapped w1/w3 or gate/up
// half, or unnormalised weights move the logits by far more (NMSE > 1e-4).
// Gate weights of std 0.6 make exact score ties improbable.
#include "moe/model.h"
#include "moe/routed_mlp.h"
#include "reference_model.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

using namespace moe;
using nlohmann::json;
using namespace moe::test::ref;

namespace {

Spec mixtral(bool fused, DType dtype = DType::F32) {
    Spec s{"mixtral", 40, 56, 2, 4, 2, 10, 97, 6, false, dtype};
    s.experts = 4;
    s.topK = 2;
    s.fusedExperts = fused;
    return s;
}

std::vector<int32_t> randomTokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back(int32_t(rng() % 97));
    return ids;
}

// Rewrites model.safetensors with `edit` applied to its tensors (float32 copies).
void editTensors(const std::filesystem::path& dir,
                 const std::function<void(std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>&)>& edit) {
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
    {
        auto store = WeightStore::openFolder(dir);
        for (const auto& name : store->names()) {
            const TensorView& t = store->require(name);
            tensors[name] = {t.shape, toFloat32(t)};
        }
    }
    edit(tensors);
    std::vector<TensorToWrite> out;
    for (auto& [name, t] : tensors)
        out.push_back({name, DType::F32, t.first, std::as_bytes(std::span<const float>(t.second))});
    writeSafetensors(dir / "model.safetensors", out);
}

} // namespace

class TestNativeMoe : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;

private slots:
    void initTestCase() { ctx = std::make_unique<vk::Context>(); }
    void cleanupTestCase() { ctx.reset(); }

    void mixtralMatchesCpuReference_data() {
        QTest::addColumn<bool>("fused");
        QTest::addColumn<int>("dtype");
        QTest::newRow("per-expert tensors f32") << false << int(DType::F32);
        QTest::newRow("fused gate_up_proj f32") << true << int(DType::F32);
        QTest::newRow("per-expert tensors bf16") << false << int(DType::BF16);
        QTest::newRow("fused gate_up_proj f16") << true << int(DType::F16);
    }

    void mixtralMatchesCpuReference() {
        QFETCH(bool, fused);
        QFETCH(int, dtype);
        const Spec s = mixtral(fused, DType(dtype));
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 31);
        const auto ids = randomTokens(23, 4);
        const auto want = referenceLogits(d, s, ids);

        auto model = Model::load(*ctx, d);
        QCOMPARE(model->config().numExperts, 4);
        QCOMPARE(model->config().expertsPerToken, 2);
        const auto* routed = dynamic_cast<const RoutedMlp*>(&model->mlp(1));
        QVERIFY(routed);
        QCOMPARE(routed->expertCount(), 4u);
        QCOMPARE(routed->routing().topK, 2u);
        // Every weight counted once: attention + norms + embeddings + 4 experts + gate per layer.
        const uint64_t H = 40, I = 56, q = 40, kv = 20, V = 97;
        const uint64_t perLayer = 2 * H + H * q * 2 + H * kv * 2 + 4 * 3 * H * I + 4 * H;
        QCOMPARE(model->parameterCount(), 2 * V * H + H + 2 * perLayer);

        // Prefill 17 tokens in batches of 8, then 6 decode steps.
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 17);
        // Expert usage per MoE layer, as generate --json reports it: top-2 of every token.
        for (const auto& [layer, tokens] : session.expertUsage()) {
            uint32_t sum = 0;
            for (uint32_t t : tokens) sum += t;
            QCOMPARE(sum, uint32_t(2 * ids.size()));
        }
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("mixtral %s: NMSE %.3g", fused ? "fused" : "per-expert", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        // Each token ran exactly top-k experts per layer.
        const auto use = RoutedMlp::usage(*session.mlpState(0));
        uint32_t total = 0;
        for (uint32_t u : use) total += u;
        QCOMPARE(total, uint32_t(ids.size()) * 2u);
    }

    // Qwen2-MoE: q/k/v biases, a shared expert behind a sigmoid gate, top-k
    // not renormalised (norm_topk_prob false) or renormalised, dense layers
    // by decoder_sparse_step and mlp_only_layers.
    void qwen2MoeMatchesCpuReference_data() {
        QTest::addColumn<bool>("normTopk");
        QTest::addColumn<int>("sharedInter");
        QTest::addColumn<int>("sparseStep");
        QTest::addColumn<bool>("mlpOnly");
        QTest::newRow("shared expert, raw top-k, all sparse") << false << 64 << 1 << false;
        QTest::newRow("shared expert, renormalised, every 2nd layer sparse") << true << 48 << 2 << false;
        QTest::newRow("no shared expert, layer 0 dense (mlp_only_layers)") << false << 0 << 1 << true;
    }

    void qwen2MoeMatchesCpuReference() {
        QFETCH(bool, normTopk);
        QFETCH(int, sharedInter);
        QFETCH(int, sparseStep);
        QFETCH(bool, mlpOnly);
        Spec s{"qwen2_moe", 48, 72, 3, 6, 2, 8, 97, 0, true, DType::BF16};
        s.experts = 5;
        s.topK = 2;
        s.moeInter = 24;
        s.sharedInter = sharedInter;
        s.sparseStep = sparseStep;
        if (mlpOnly) s.mlpOnly = {0};
        s.normTopk = normTopk;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 41);
        const auto ids = randomTokens(23, 6);
        const auto want = referenceLogits(d, s, ids);
        auto model = Model::load(*ctx, d);
        QCOMPARE(model->config().normTopkProb, normTopk);
        for (int l = 0; l < 3; ++l) QCOMPARE(model->config().isSparseLayer(l), s.sparse(l));
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 17);
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("qwen2_moe: NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Qwen3-MoE: per-head q/k RMSNorm before RoPE, no q/k/v biases, no shared
    // expert; head_dim from the config (here 4 heads x 16 = 64, not hidden 48),
    // top-k renormalised or not, dense layers by decoder_sparse_step and
    // mlp_only_layers. A skipped or misplaced q/k norm (after RoPE, over the
    // whole q row) changes the attention scores, NMSE far above 1e-9.
    void qwen3MoeMatchesCpuReference_data() {
        QTest::addColumn<bool>("normTopk");
        QTest::addColumn<int>("sparseStep");
        QTest::addColumn<bool>("mlpOnly");
        QTest::newRow("renormalised, all sparse") << true << 1 << false;
        QTest::newRow("raw top-k, every 2nd layer sparse") << false << 2 << false;
        QTest::newRow("renormalised, layer 0 dense (mlp_only_layers)") << true << 1 << true;
    }

    void qwen3MoeMatchesCpuReference() {
        QFETCH(bool, normTopk);
        QFETCH(int, sparseStep);
        QFETCH(bool, mlpOnly);
        Spec s{"qwen3_moe", 48, 72, 3, 4, 2, 16, 97, 0, false, DType::BF16};
        s.experts = 6;
        s.topK = 2;
        s.moeInter = 24;
        s.sparseStep = sparseStep;
        if (mlpOnly) s.mlpOnly = {0};
        s.normTopk = normTopk;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 43);
        const auto ids = randomTokens(23, 8);
        const auto want = referenceLogits(d, s, ids);
        auto model = Model::load(*ctx, d);
        const ModelConfig& c = model->config();
        QCOMPARE(c.arch, Arch::Qwen3Moe);
        QVERIFY(c.qkNorm);
        QVERIFY(!c.attentionBias);
        QCOMPARE(c.headDim, 16);
        QCOMPARE(c.normTopkProb, normTopk);
        for (int l = 0; l < 3; ++l) QCOMPARE(c.isSparseLayer(l), s.sparse(l));
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 17);
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("qwen3_moe: NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    }

    void qwen3MoeMissingQkNormIsNamed() {
        Spec s{"qwen3_moe", 48, 72, 2, 4, 2, 16, 97, 0, false, DType::F32};
        s.experts = 4;
        s.topK = 2;
        s.moeInter = 24;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 5);
        editTensors(d, [](auto& t) { t.erase("model.layers.1.self_attn.k_norm.weight"); });
        EXPECT_ERROR(Model::load(*ctx, d), "model.layers.1.self_attn.k_norm.weight");
    }

    void greedyTokensMatchReference() {
        const Spec s = mixtral(false);
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 7);
        auto model = Model::load(*ctx, d);
        Session session(*model, 64, 8);
        std::vector<int32_t> ids = randomTokens(5, 9);
        auto logits = session.forward(ids);
        for (int step = 0; step < 10; ++step) {
            const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
            ids.push_back(next);
            logits = session.forward(std::span<const int32_t>(&ids.back(), 1));
        }
        // The reference's argmax at every generated position is the token the engine chose.
        const auto want = referenceLogits(d, s, ids);
        for (size_t t = 4; t + 1 < ids.size(); ++t) {
            const auto row = want.begin() + long(t * 97);
            QCOMPARE(int32_t(std::max_element(row, row + 97) - row), ids[t + 1]);
        }
    }

    void expertCountDisagreeingWithTensorsIsNamed() {
        for (bool fused : {false, true}) {
            const Spec s = mixtral(fused);
            QTemporaryDir dir;
            const std::filesystem::path d = dir.path().toStdString();
            writeModel(d, s, 3);
            json c = json::parse(std::ifstream(d / "config.json"));
            c["num_local_experts"] = 5;
            std::ofstream(d / "config.json") << c.dump();
            auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
            QVERIFY2(msg.find("num_local_experts") != std::string::npos && msg.find("gate.weight") != std::string::npos &&
                         msg.find("model.safetensors") != std::string::npos,
                     msg.c_str());
            // Fewer experts in config than on disk: the per-expert layout names the surplus tensor.
            c["num_local_experts"] = 3;
            std::ofstream(d / "config.json") << c.dump();
            msg = test::errorMessage([&] { Model::load(*ctx, d); });
            QVERIFY2(msg.find("num_local_experts") != std::string::npos, msg.c_str());
            // More experts per token than experts.
            c["num_local_experts"] = 4;
            c["num_experts_per_tok"] = 6;
            std::ofstream(d / "config.json") << c.dump();
            msg = test::errorMessage([&] { Model::load(*ctx, d); });
            QVERIFY2(msg.find("num_experts_per_tok") != std::string::npos && msg.find("config.json") != std::string::npos,
                     msg.c_str());
        }
        // Fused layout with fewer experts in the expert tensors than in the gate.
        const Spec s = mixtral(true);
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 3);
        editTensors(d, [](auto& t) {
            auto& gu = t["model.layers.1.mlp.experts.gate_up_proj"];
            gu.first[0] = 3;
            gu.second.resize(gu.second.size() / 4 * 3);
        });
        const auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.1.mlp.experts.gate_up_proj") != std::string::npos &&
                     msg.find("num_local_experts") != std::string::npos,
                 msg.c_str());
    }

    void gateWithWrongShapeIsNamed() {
        const Spec s = mixtral(false);
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 5);
        editTensors(d, [](auto& t) {
            auto& g = t["model.layers.0.block_sparse_moe.gate.weight"];
            g.first = {4, 39}; // hidden 40 expected
            g.second.resize(4 * 39);
        });
        const auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.0.block_sparse_moe.gate.weight") != std::string::npos &&
                     msg.find("model.safetensors") != std::string::npos && msg.find("39") != std::string::npos,
                 msg.c_str());
    }
};

QTEST_GUILESS_MAIN(TestNativeMoe)
#include "test_native_moe.moc"
