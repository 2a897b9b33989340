// Llama, Mistral (sliding window), Qwen2 (q/k/v biases, tied embeddings) and
// Qwen3 (per-head q/k norms, head_dim of its own, attention_bias) on tiny random models of odd shapes, generated here, against a plain CPU
// transcription of the Transformers forward pass. Also checks that loading
// names the file and tensor for a missing tensor or a wrong shape.
//
// Tolerance: both sides run float32 arithmetic on the same weights; the CPU
// side accumulates in double. With random weights of std 0.02..0.5 the
// logits are O(1) and per-op relative errors ~1e-6, so NMSE < 1e-9 holds
// with margin, while any structural error (bias dropped, window off by one,
// GQA mapping, RoPE pairing) gives NMSE > 1e-4.
#include "moe/session.h"
#include "reference_model.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>

using namespace moe;
using nlohmann::json;
using namespace moe::test::ref;

class TestArchitectures : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;

private slots:
    void initTestCase() { ctx = std::make_unique<vk::Context>(); }
    void cleanupTestCase() { ctx.reset(); }

    void forwardMatchesCpuReference_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<int>("hidden");
        QTest::addColumn<int>("inter");
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<int>("headDim");
        QTest::addColumn<int>("window");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("attentionBias");
        QTest::addColumn<QString>("f32Suffix");
        QTest::newRow("llama odd sizes f32") << "llama" << 36 << 53 << 6 << 2 << 8 << 0 << false << int(DType::F32) << false << QString();
        // Rows not a whole number of 4-float texels: the unaligned read paths, folded norms included.
        QTest::newRow("llama hidden 30 bf16") << "llama" << 30 << 50 << 3 << 1 << 10 << 0 << false << int(DType::BF16) << false << QString();
        QTest::newRow("llama head_dim != hidden/heads bf16") << "llama" << 40 << 72 << 4 << 4 << 16 << 0 << false << int(DType::BF16) << false << QString();
        // attention_bias: q, k, v and o biases (LlamaAttention).
        QTest::newRow("llama attention_bias f32") << "llama" << 32 << 48 << 4 << 2 << 8 << 0 << false << int(DType::F32) << true << QString();
        QTest::newRow("mistral sliding window 5 f16") << "mistral" << 32 << 64 << 4 << 2 << 8 << 5 << false << int(DType::F16) << false << QString();
        // k_proj stored in F32 among BF16 tensors: q, k and v stay separate projections.
        QTest::newRow("qwen2 mixed dtypes") << "qwen2" << 32 << 48 << 4 << 2 << 8 << 0 << false << int(DType::BF16) << false
                                            << QString(".k_proj.weight");
        QTest::newRow("qwen2 biases tied bf16") << "qwen2" << 48 << 80 << 6 << 2 << 8 << 0 << true << int(DType::BF16) << false << QString();
        // Qwen3: q/k norms before RoPE, head_dim larger than hidden / heads, tied embeddings.
        QTest::newRow("qwen3 q/k norms tied f32") << "qwen3" << 32 << 48 << 4 << 2 << 16 << 0 << true << int(DType::F32) << false << QString();
        QTest::newRow("qwen3 attention_bias window 6 bf16") << "qwen3" << 48 << 64 << 6 << 3 << 8 << 6 << false << int(DType::BF16) << true << QString();
        QTest::newRow("qwen3 mixed dtypes") << "qwen3" << 32 << 48 << 4 << 2 << 8 << 0 << false << int(DType::BF16) << false
                                            << QString(".k_proj.weight");
    }

    void forwardMatchesCpuReference() {
        QFETCH(QString, arch);
        QFETCH(int, hidden);
        QFETCH(int, inter);
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QFETCH(int, headDim);
        QFETCH(int, window);
        QFETCH(bool, tied);
        QFETCH(int, dtype);
        QFETCH(bool, attentionBias);
        QFETCH(QString, f32Suffix);
        Spec s{arch.toStdString(), hidden, inter, 2, heads, kvHeads, headDim, 97, window, tied, DType(dtype)};
        s.attentionBias = attentionBias;
        s.f32Suffix = f32Suffix.toStdString();
        QTemporaryDir dir;
        writeModel(dir.path().toStdString(), s, 11);
        std::vector<int32_t> ids;
        std::mt19937 rng(3);
        for (int i = 0; i < 23; ++i) ids.push_back(int32_t(rng() % 97));
        const auto ref = referenceLogits(dir.path().toStdString(), s, ids);

        auto model = Model::load(*ctx, dir.path().toStdString());
        // One QKV projection where q, k and v share a dtype, three otherwise.
        QCOMPARE(model->layer(0).qkv.rows == 0, !s.f32Suffix.empty());
        QCOMPARE(model->layer(0).k.rows == 0, s.f32Suffix.empty());
        // Prefill of 17 tokens in batches of 8, then 6 single-token decode steps.
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 17);
        QCOMPARE(got.size(), ref.size());
        const double e = test::nmse(got, ref);
        qInfo("%s: NMSE %.3g", qPrintable(arch), e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    }

    void missingTensorAndWrongShapeNameFileAndTensor() {
        Spec s{"llama", 16, 24, 1, 2, 2, 8, 31};
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        // Wrong shape: config says 24 intermediate, weights have 24; claim 25.
        json c = json::parse(std::ifstream(d / "config.json"));
        c["intermediate_size"] = 25;
        std::ofstream(d / "config.json") << c.dump();
        auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.0.mlp.gate_proj.weight") != std::string::npos, msg.c_str());
        QVERIFY2(msg.find("model.safetensors") != std::string::npos, msg.c_str());
        // Missing tensor: a layer the weights do not have.
        c["intermediate_size"] = 24;
        c["num_hidden_layers"] = 2;
        std::ofstream(d / "config.json") << c.dump();
        msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.1.") != std::string::npos, msg.c_str());
        // Unknown architecture.
        c["architectures"] = {"GPTNeoXForCausalLM"};
        c["model_type"] = "gpt_neox";
        std::ofstream(d / "config.json") << c.dump();
        msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("GPTNeoXForCausalLM") != std::string::npos && msg.find("config.json") != std::string::npos, msg.c_str());
    }
};

QTEST_GUILESS_MAIN(TestArchitectures)
#include "test_architectures.moc"
