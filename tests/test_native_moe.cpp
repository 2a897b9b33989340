// Native sparse MoE checkpoints (Mixtral, Qwen2-MoE, Qwen3-MoE; per-expert
// tensors and Transformers 5's fused gate_up_proj / down_proj) loaded into
// RoutedMlp layers, on tiny random models (written by reference_model.h and by
// tools/make-random-model) against the CPU reference forward pass
// (reference_model.h) in which every chosen expert is computed densely and
// mixed with the top-k softmax weights. Also: greedy tokens, the config keys
// and defaults of Transformers' MoE config classes, and load errors naming
// the file, tensor and config field.
//
// Tolerance as in test_architectures (float32 engine vs double reference,
// NMSE < 1e-9): a token sent to a wrong expert, a swapped w1/w3 or gate/up
// half, or unnormalised weights move the logits by far more (NMSE > 1e-4).
// Gate weights of std 0.6 make exact score ties improbable.
#include "moe/session.h"
#include "moe/routed_mlp.h"
#include "reference_model.h"
#include "test_paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
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

// A random model of spec `s` in a temporary folder, random prompt tokens,
// and the CPU reference logits for them.
struct ReferenceCase {
    QTemporaryDir dir;
    std::filesystem::path path;
    std::vector<int32_t> ids;
    std::vector<float> want;
    ReferenceCase(const Spec& s, uint32_t modelSeed, int tokens, uint32_t tokenSeed)
        : path(dir.path().toStdString()), ids(randomTokens(tokens, tokenSeed)) {
        writeModel(path, s, modelSeed);
        want = referenceLogits(path, s, ids);
    }
};

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

// Runs tools/make-random-model; returns its stderr when it fails.
std::string makeRandomModel(const QStringList& args) {
    QProcess p;
    p.start(MOE_MAKE_RANDOM_MODEL, args);
    if (!p.waitForFinished(120000)) return "make-random-model did not finish";
    if (p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0) return {};
    return "make-random-model failed: " + p.readAllStandardError().toStdString();
}

// The engine's greedy continuation of `ids` by `steps` tokens.
std::vector<int32_t> greedyTokens(Session& session, std::vector<int32_t> ids, int steps) {
    auto logits = session.forward(ids);
    for (int step = 0; step < steps; ++step) {
        const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        ids.push_back(next);
        logits = session.forward(std::span<const int32_t>(&ids.back(), 1));
    }
    return ids;
}

// A config.json-only folder for ModelConfig::load.
std::filesystem::path writeConfig(const QTemporaryDir& dir, const std::string& name, const json& config) {
    const std::filesystem::path d = std::filesystem::path(dir.path().toStdString()) / name;
    std::filesystem::create_directories(d);
    std::ofstream(d / "config.json") << config.dump(2);
    return d;
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
        const ReferenceCase reference(s, 31, 23, 4);

        auto model = Model::load(*ctx, reference.path);
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
        const std::vector<float> got = prefillThenDecode(session, reference.ids, 17);
        // Expert usage per MoE layer, as generate --json reports it: top-2 of every token.
        for (const auto& [layer, tokens] : session.expertUsage()) {
            uint32_t sum = 0;
            for (uint32_t t : tokens) sum += t;
            QCOMPARE(sum, uint32_t(2 * reference.ids.size()));
        }
        QCOMPARE(got.size(), reference.want.size());
        const double e = test::nmse(got, reference.want);
        qInfo("mixtral %s: NMSE %.3g", fused ? "fused" : "per-expert", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        // Each token ran exactly top-k experts per layer.
        const auto use = RoutedMlp::usage(*session.mlpState(0));
        uint32_t total = 0;
        for (uint32_t u : use) total += u;
        QCOMPARE(total, uint32_t(reference.ids.size()) * 2u);
    }

    // Decode runs a layer's chosen experts from their stacked projections in
    // two dispatches, however many experts the layer has; the result still
    // matches the CPU reference (expert 0, the base's projections, included).
    void decodeDispatchesIndependentOfExpertCount() {
        std::map<int, uint32_t> decodeDispatches;
        for (int experts : {4, 12}) {
            Spec s = mixtral(false, DType::BF16);
            s.experts = experts;
            const ReferenceCase reference(s, 37, 12, 5);
            auto model = Model::load(*ctx, reference.path);
            QVERIFY(dynamic_cast<const RoutedMlp&>(model->mlp(0)).expertsStacked());
            Session session(*model, 64, 8);
            const std::vector<float> got = prefillThenDecode(session, reference.ids, 8); // 4 decode steps
            decodeDispatches[experts] = session.lastDispatches();
            const double e = test::nmse(got, reference.want);
            QVERIFY2(e < 1e-9, qPrintable(QString("%1 experts: NMSE %2").arg(experts).arg(e)));
        }
        QCOMPARE(decodeDispatches[12], decodeDispatches[4]);
    }

    // Qwen2-MoE: q/k/v biases, a shared expert behind a sigmoid gate, top-k
    // not renormalised (norm_topk_prob false) or renormalised, dense layers
    // by decoder_sparse_step and mlp_only_layers.
    void qwen2MoeMatchesCpuReference_data() {
        QTest::addColumn<bool>("normTopk");
        QTest::addColumn<int>("sharedInter");
        QTest::addColumn<int>("sparseStep");
        QTest::addColumn<bool>("mlpOnly");
        QTest::addColumn<bool>("fused");
        QTest::newRow("shared expert, raw top-k, all sparse") << false << 64 << 1 << false << false;
        QTest::newRow("shared expert, renormalised, every 2nd layer sparse") << true << 48 << 2 << false << false;
        QTest::newRow("no shared expert, layer 0 dense (mlp_only_layers)") << false << 0 << 1 << true << false;
        QTest::newRow("fused gate_up_proj, shared expert, layer 0 dense") << false << 64 << 1 << true << true;
        QTest::newRow("fused gate_up_proj, renormalised, every 2nd layer sparse") << true << 48 << 2 << false << true;
    }

    void qwen2MoeMatchesCpuReference() {
        QFETCH(bool, normTopk);
        QFETCH(int, sharedInter);
        QFETCH(int, sparseStep);
        QFETCH(bool, mlpOnly);
        QFETCH(bool, fused);
        Spec s{"qwen2_moe", 48, 72, 3, 6, 2, 8, 97, 0, true, DType::BF16};
        s.experts = 5;
        s.topK = 2;
        s.moeInter = 24;
        s.sharedInter = sharedInter;
        s.sparseStep = sparseStep;
        if (mlpOnly) s.mlpOnly = {0};
        s.normTopk = normTopk;
        s.fusedExperts = fused;
        const ReferenceCase reference(s, 41, 23, 6);
        auto model = Model::load(*ctx, reference.path);
        QCOMPARE(model->config().normTopkProb, normTopk);
        for (int l = 0; l < 3; ++l) QCOMPARE(model->config().isSparseLayer(l), s.sparse(l));
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, reference.ids, 17);
        QCOMPARE(got.size(), reference.want.size());
        const double e = test::nmse(got, reference.want);
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
        QTest::addColumn<bool>("fused");
        QTest::addColumn<bool>("attentionBias");
        QTest::newRow("renormalised, all sparse") << true << 1 << false << false << false;
        QTest::newRow("raw top-k, every 2nd layer sparse") << false << 2 << false << false << false;
        QTest::newRow("renormalised, layer 0 dense (mlp_only_layers)") << true << 1 << true << false << false;
        QTest::newRow("fused gate_up_proj, renormalised, layer 0 dense") << true << 1 << true << true << false;
        // attention_bias: biases on q, k, v and o (Qwen3Attention).
        QTest::newRow("fused gate_up_proj, attention_bias, every 2nd layer sparse") << false << 2 << false << true << true;
    }

    void qwen3MoeMatchesCpuReference() {
        QFETCH(bool, normTopk);
        QFETCH(int, sparseStep);
        QFETCH(bool, mlpOnly);
        QFETCH(bool, fused);
        QFETCH(bool, attentionBias);
        Spec s{"qwen3_moe", 48, 72, 3, 4, 2, 16, 97, 0, false, DType::BF16};
        s.experts = 6;
        s.topK = 2;
        s.moeInter = 24;
        s.sparseStep = sparseStep;
        if (mlpOnly) s.mlpOnly = {0};
        s.normTopk = normTopk;
        s.fusedExperts = fused;
        s.attentionBias = attentionBias;
        const ReferenceCase reference(s, 43, 23, 8);
        auto model = Model::load(*ctx, reference.path);
        const ModelConfig& c = model->config();
        QCOMPARE(c.arch, Arch::Qwen3Moe);
        QVERIFY(c.qkNorm);
        QCOMPARE(c.attentionBias, attentionBias);
        QCOMPARE(c.outputBias, attentionBias);
        QCOMPARE(c.headDim, 16);
        QCOMPARE(c.normTopkProb, normTopk);
        for (int l = 0; l < 3; ++l) QCOMPARE(c.isSparseLayer(l), s.sparse(l));
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, reference.ids, 17);
        QCOMPARE(got.size(), reference.want.size());
        const double e = test::nmse(got, reference.want);
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
        const std::vector<int32_t> ids = greedyTokens(session, randomTokens(5, 9), 10);
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

    // Every MoE architecture in both tensor layouts as tools/make-random-model
    // writes it, against the CPU reference: logits over prefill and decode,
    // and greedy tokens identical to the reference's argmax.
    void generatedModelsMatchCpuReference_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<bool>("fused");
        QTest::addColumn<int>("sparseStep");
        QTest::addColumn<bool>("mlpOnly");
        QTest::addColumn<bool>("normTopk");
        QTest::addColumn<bool>("attentionBias");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("shards");
        QTest::newRow("mixtral per-expert") << "mixtral" << false << 1 << false << true << false << "f32" << 1;
        QTest::newRow("mixtral fused, bf16, 3 shards") << "mixtral" << true << 1 << false << true << false << "bf16" << 3;
        QTest::newRow("qwen2_moe per-expert, every 2nd layer sparse")
            << "qwen2_moe" << false << 2 << false << true << false << "f32" << 1;
        QTest::newRow("qwen2_moe fused, layer 0 dense, raw top-k, 2 shards")
            << "qwen2_moe" << true << 1 << true << false << false << "f32" << 2;
        QTest::newRow("qwen3_moe per-expert, attention_bias, bf16")
            << "qwen3_moe" << false << 1 << false << true << true << "bf16" << 1;
        QTest::newRow("qwen3_moe fused, raw top-k, every 2nd layer sparse")
            << "qwen3_moe" << true << 2 << false << false << false << "f32" << 1;
    }

    void generatedModelsMatchCpuReference() {
        QFETCH(QString, arch);
        QFETCH(bool, fused);
        QFETCH(int, sparseStep);
        QFETCH(bool, mlpOnly);
        QFETCH(bool, normTopk);
        QFETCH(bool, attentionBias);
        QFETCH(QString, dtype);
        QFETCH(int, shards);
        // head_dim 16 is not hidden / heads (12): it must come from the config.
        Spec s{arch.toStdString(), 48, 40, 3, 4, 2, 16, 97, 0, false, dtype == "bf16" ? DType::BF16 : DType::F32};
        s.experts = 6;
        s.topK = 2;
        s.fusedExperts = fused;
        s.sparseStep = sparseStep;
        if (mlpOnly) s.mlpOnly = {0};
        s.normTopk = normTopk;
        s.attentionBias = attentionBias;
        QTemporaryDir dir;
        const std::filesystem::path d = std::filesystem::path(dir.path().toStdString()) / "model";
        QStringList args = {"--out", QString::fromStdString(d.string()), "--arch", arch, "--hidden", "48",
                            "--layers", "3", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
                            "--intermediate", "40", "--vocab", "97", "--experts", "6", "--top-k", "2",
                            "--dtype", dtype, "--shards", QString::number(shards), "--seed", "11",
                            // Weights large enough that routing and the SwiGLU nonlinearity matter.
                            "--init-std", "0.2"};
        if (s.qwenMoe()) {
            s.moeInter = 24;
            args << "--moe-intermediate" << "24" << "--decoder-sparse-step" << QString::number(sparseStep);
            if (mlpOnly) args << "--mlp-only-layers" << "0";
            if (!normTopk) args << "--no-norm-topk";
        }
        if (arch == "qwen2_moe") {
            s.sharedInter = 32;
            args << "--shared-intermediate" << "32";
        }
        if (fused) args << "--fused-experts";
        if (attentionBias) args << "--attention-bias";
        const std::string err = makeRandomModel(args);
        QVERIFY2(err.empty(), err.c_str());

        auto model = Model::load(*ctx, d);
        const ModelConfig& c = model->config();
        QCOMPARE(c.numExperts, 6);
        QCOMPARE(c.headDim, 16);
        QCOMPARE(c.normTopkProb, normTopk);
        for (int l = 0; l < 3; ++l) QCOMPARE(c.isSparseLayer(l), s.sparse(l));
        const int sparseLayer = s.sparse(0) ? 0 : 1;
        QCOMPARE(model->weights().find("model.layers." + std::to_string(sparseLayer) + ".mlp.experts.gate_up_proj") != nullptr,
                 fused);

        const auto ids = randomTokens(19, 12);
        const auto want = referenceLogits(d, s, ids);
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 13);
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("%s: NMSE %.3g", qPrintable(arch), e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        for (const auto& [layer, tokens] : session.expertUsage()) {
            uint32_t sum = 0;
            for (uint32_t t : tokens) sum += t;
            QCOMPARE(sum, uint32_t(2 * ids.size()));
        }

        Session greedy(*model, 64, 8);
        const auto tokens = greedyTokens(greedy, randomTokens(5, 13), 10);
        const auto ref = referenceLogits(d, s, tokens);
        for (size_t t = 4; t + 1 < tokens.size(); ++t) {
            const auto row = ref.begin() + long(t * 97);
            QCOMPARE(int32_t(std::max_element(row, row + 97) - row), tokens[t + 1]);
        }
    }

    // A sharded MoE checkpoint whose index names a file that is not there, or
    // one of whose shards was cut short: the error names the index or shard.
    void brokenShardsAreNamed() {
        QTemporaryDir dir;
        const std::filesystem::path d = std::filesystem::path(dir.path().toStdString()) / "model";
        const std::string err = makeRandomModel({"--out", QString::fromStdString(d.string()), "--arch", "qwen3_moe",
                                                 "--hidden", "32", "--layers", "2", "--heads", "4", "--intermediate",
                                                 "32", "--vocab", "97", "--experts", "4", "--shards", "3",
                                                 "--fused-experts"});
        QVERIFY2(err.empty(), err.c_str());
        QVERIFY(Model::load(*ctx, d) != nullptr);

        const std::filesystem::path indexFile = d / "model.safetensors.index.json";
        const json index = json::parse(std::ifstream(indexFile));
        json broken = index;
        broken["weight_map"]["model.layers.1.mlp.experts.down_proj"] = "model-00004-of-00003.safetensors";
        std::ofstream(indexFile) << broken.dump();
        EXPECT_ERROR(Model::load(*ctx, d), "model.safetensors.index.json", "model-00004-of-00003.safetensors");
        std::ofstream(indexFile) << index.dump();

        const std::filesystem::path shard = d / "model-00002-of-00003.safetensors";
        std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
        EXPECT_ERROR(Model::load(*ctx, d), "model-00002-of-00003.safetensors", "past the end of the file");
    }

    // Qwen2-MoE and Qwen3-MoE (both layouts): an expert count that disagrees
    // with the tensors names the config key it came from (Qwen3-MoE also
    // accepts Transformers 5's num_local_experts); a gate of the wrong shape
    // and the transposed fused layout name the tensor.
    void qwenExpertCountAndShapesAreNamed() {
        for (const char* arch : {"qwen2_moe", "qwen3_moe"}) {
            for (bool fused : {false, true}) {
                Spec s{arch, 48, 72, 2, 4, 2, 12, 97, 0, false, DType::F32};
                s.experts = 4;
                s.topK = 2;
                s.moeInter = 16;
                s.sharedInter = std::string(arch) == "qwen2_moe" ? 24 : 0;
                s.fusedExperts = fused;
                QTemporaryDir dir;
                const std::filesystem::path d = dir.path().toStdString();
                writeModel(d, s, 3);
                QVERIFY(Model::load(*ctx, d) != nullptr);
                json c = json::parse(std::ifstream(d / "config.json"));
                for (int count : {5, 3}) {
                    c["num_experts"] = count;
                    std::ofstream(d / "config.json") << c.dump();
                    EXPECT_ERROR(Model::load(*ctx, d), "config.json num_experts", "4 experts", "gate.weight",
                                 "model.safetensors");
                }
                if (std::string(arch) == "qwen3_moe") {
                    c.erase("num_experts");
                    c["num_local_experts"] = 5;
                    std::ofstream(d / "config.json") << c.dump();
                    EXPECT_ERROR(Model::load(*ctx, d), "config.json num_local_experts", "gate.weight");
                    c["num_local_experts"] = 4;
                    std::ofstream(d / "config.json") << c.dump();
                    QCOMPARE(Model::load(*ctx, d)->config().numExperts, 4);
                }
            }
        }

        Spec s{"qwen2_moe", 48, 72, 2, 4, 2, 12, 97, 0, false, DType::F32};
        s.experts = 4;
        s.topK = 2;
        s.moeInter = 16;
        s.sharedInter = 24;
        s.fusedExperts = true;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 5);
        editTensors(d, [](auto& t) {
            auto& g = t["model.layers.1.mlp.gate.weight"];
            g.first = {4, 47};
            g.second.resize(4 * 47);
        });
        EXPECT_ERROR(Model::load(*ctx, d), "model.layers.1.mlp.gate.weight", "[4, 47]", "model.safetensors");

        writeModel(d, s, 5);
        editTensors(d, [](auto& t) { t["model.layers.0.mlp.experts.gate_up_proj"].first = {4, 48, 32}; });
        EXPECT_ERROR(Model::load(*ctx, d), "model.layers.0.mlp.experts.gate_up_proj", "[4, 48, 32]", "transposed",
                     "[4, 32, 48]");

        writeModel(d, s, 5);
        editTensors(d, [](auto& t) {
            auto& gu = t["model.layers.0.mlp.experts.gate_up_proj"];
            gu.first = {4, 24, 48}; // 12 rows of gate and up, moe_intermediate_size says 16
            gu.second.resize(4 * 24 * 48);
        });
        EXPECT_ERROR(Model::load(*ctx, d), "model.layers.0.mlp.experts.gate_up_proj", "moe_intermediate_size 16");
    }

    // The keys and defaults of Transformers' MoE config classes
    // (configuration_mixtral.py, _qwen2_moe.py, _qwen3_moe.py, version 5):
    // values a config.json leaves out, num_experts / num_local_experts,
    // rope_parameters, qkv_bias, attention_bias, and the sliding-window rules.
    void moeConfigKeysFollowTransformers() {
        QTemporaryDir dir;
        const json base = {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 4},
                           {"num_attention_heads", 16}, {"vocab_size", 100}};
        auto config = [&](const char* architecture, const char* modelType) {
            json c = base;
            c["architectures"] = {architecture};
            c["model_type"] = modelType;
            return c;
        };

        // Mixtral's defaults; num_experts is another name for num_local_experts.
        json c = config("MixtralForCausalLM", "mixtral");
        ModelConfig m = ModelConfig::load(writeConfig(dir, "mixtral", c));
        QCOMPARE(m.numExperts, 8);
        QCOMPARE(m.expertsPerToken, 2);
        QCOMPARE(m.numKvHeads, 8);
        QCOMPARE(m.ropeTheta, 1e6f);
        QCOMPARE(m.normEps, 1e-5f);
        QCOMPARE(m.maxPositions, 131072);
        QVERIFY(m.normTopkProb);
        QCOMPARE(m.slidingWindow, 0);
        c["num_experts"] = 4;
        m = ModelConfig::load(writeConfig(dir, "mixtral-alias", c));
        QCOMPARE(m.numExperts, 4);
        QCOMPARE(m.numExpertsField, std::string("num_experts"));
        c["num_local_experts"] = 5;
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "mixtral-both", c)), "config.json", "num_experts", "5",
                     "num_local_experts");
        c["num_local_experts"] = 4;
        c["num_experts_per_tok"] = 5;
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "mixtral-topk", c)), "config.json", "num_experts_per_tok");

        // Qwen2-MoE: defaults, qkv_bias, no o_proj bias.
        c = config("Qwen2MoeForCausalLM", "qwen2_moe");
        m = ModelConfig::load(writeConfig(dir, "qwen2moe", c));
        QCOMPARE(m.numExperts, 60);
        QCOMPARE(m.expertsPerToken, 4);
        QCOMPARE(m.moeIntermediateSize, 1408);
        QCOMPARE(m.sharedExpertIntermediateSize, 5632);
        QCOMPARE(m.numKvHeads, 16);
        QCOMPARE(m.ropeTheta, 10000.0f);
        QCOMPARE(m.maxPositions, 32768);
        QVERIFY(!m.normTopkProb);
        QVERIFY(m.attentionBias);
        QVERIFY(!m.outputBias);
        QCOMPARE(m.decoderSparseStep, 1);
        QVERIFY(m.mlpOnlyLayers.empty());
        c["qkv_bias"] = false;
        QVERIFY(!ModelConfig::load(writeConfig(dir, "qwen2moe-nobias", c)).attentionBias);
        // Its window: layer_types when given, else even layers below max_window_layers.
        c = config("Qwen2MoeForCausalLM", "qwen2_moe");
        c["use_sliding_window"] = true;
        c["sliding_window"] = 64;
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "qwen2moe-window", c)), "config.json", "max_window_layers",
                     "2 of 4");
        c["max_window_layers"] = 0;
        QCOMPARE(ModelConfig::load(writeConfig(dir, "qwen2moe-nowindow", c)).slidingWindow, 0);
        c["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention"};
        QCOMPARE(ModelConfig::load(writeConfig(dir, "qwen2moe-types", c)).slidingWindow, 64);
        c["layer_types"][1] = "full_attention";
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "qwen2moe-mixed", c)), "config.json", "layer_types");
        c["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention"};
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "qwen2moe-short", c)), "config.json", "layer_types");

        // Qwen3-MoE: defaults, num_local_experts, attention_bias on q/k/v and o,
        // the window on every layer.
        c = config("Qwen3MoeForCausalLM", "qwen3_moe");
        m = ModelConfig::load(writeConfig(dir, "qwen3moe", c));
        QCOMPARE(m.numExperts, 128);
        QCOMPARE(m.expertsPerToken, 8);
        QCOMPARE(m.moeIntermediateSize, 768);
        QCOMPARE(m.numKvHeads, 4);
        QVERIFY(!m.normTopkProb);
        QVERIFY(!m.attentionBias && !m.outputBias);
        QVERIFY(m.qkNorm);
        c["num_local_experts"] = 16;
        c["attention_bias"] = true;
        c["use_sliding_window"] = true;
        c["sliding_window"] = 64;
        c["max_window_layers"] = 4;
        m = ModelConfig::load(writeConfig(dir, "qwen3moe-v5", c));
        QCOMPARE(m.numExperts, 16);
        QCOMPARE(m.numExpertsField, std::string("num_local_experts"));
        QVERIFY(m.attentionBias && m.outputBias);
        QCOMPARE(m.slidingWindow, 64);

        // RoPE as Transformers 5 writes it: rope_parameters, its theta before
        // the top-level one; rope_scaling (older) wins over rope_parameters.
        c = config("Qwen3MoeForCausalLM", "qwen3_moe");
        c["rope_theta"] = 10000.0;
        c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
        m = ModelConfig::load(writeConfig(dir, "rope-parameters", c));
        QCOMPARE(m.ropeTheta, 1e6f);
        const float plain1 = m.ropeInvFreq[1];
        c["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 1000000.0}};
        m = ModelConfig::load(writeConfig(dir, "rope-linear", c));
        QCOMPARE(m.ropeInvFreq[1], plain1 / 4);
        c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
        m = ModelConfig::load(writeConfig(dir, "rope-scaling", c));
        QCOMPARE(m.ropeTheta, 10000.0f);
        c.erase("rope_scaling");
        c["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
        EXPECT_ERROR(ModelConfig::load(writeConfig(dir, "rope-yarn", c)), "config.json", "rope_parameters.rope_type",
                     "yarn");
    }
};

QTEST_GUILESS_MAIN(TestNativeMoe)
#include "test_native_moe.moc"
