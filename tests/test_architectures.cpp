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

namespace {
// Logits of `positions` positions (vocabulary 97) against the CPU reference:
// NMSE under 1e-9 (both sides use the same weights; a structural error shows
// above 1e-4) and the same argmax everywhere.
void expectReferenceLogits(const std::vector<float>& got, const std::vector<float>& ref, size_t positions) {
    QCOMPARE(got.size(), ref.size());
    const double e = test::nmse(got, ref);
    const size_t V = 97;
    int sameArgmax = 0;
    for (size_t t = 0; t < positions; ++t) {
        const auto g = std::span<const float>(got.data() + t * V, V), r = std::span<const float>(ref.data() + t * V, V);
        sameArgmax += std::max_element(g.begin(), g.end()) - g.begin() == std::max_element(r.begin(), r.end()) - r.begin();
    }
    qInfo("%s: NMSE %.3g, argmax equal at %d of %zu positions", QTest::currentDataTag(), e, sameArgmax, positions);
    QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    QCOMPARE(sameArgmax, int(positions));
}
} // namespace

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

    // Gemma 2 and 3: GeGLU, (1 + w) norms, four norms per layer, scaled
    // embeddings, query_pre_attn_scalar, soft-capping (Gemma 2), q/k norms
    // and two RoPE bases (Gemma 3), sliding layers alternating with global
    // ones. 23 tokens over a window of 8: prefill (17 in batches of 8) and
    // decode both attend past the window on the sliding layers. Same
    // tolerance as above: tanh and the GELU are float32 on both sides.
    void gemmaMatchesCpuReference_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<int>("layers");
        QTest::addColumn<int>("pattern");
        QTest::addColumn<double>("qpas");
        QTest::addColumn<double>("attnCap");
        QTest::addColumn<double>("finalCap");
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("multimodal");
        QTest::addColumn<double>("ropeFactor"); // gemma3: rope_scaling linear on the global layers
        QTest::addColumn<bool>("ropeParameters"); // written as Transformers 5's per-layer-type rope_parameters
        // Caps of 1.5 and 2: scores and logits far past them, tanh saturated.
        QTest::newRow("gemma2 caps saturated f32") << "gemma2" << 4 << 2 << 24.0 << 1.5 << 2.0 << int(DType::F32) << false << 0.0 << false;
        // Gemma 2's defaults (50, 30): mostly the linear part of tanh.
        QTest::newRow("gemma2 default caps bf16") << "gemma2" << 4 << 2 << 16.0 << 50.0 << 30.0 << int(DType::BF16) << false << 0.0 << false;
        // Every third layer global (rope_theta 1e6), the rest sliding (rope_local_base_freq 1e4).
        QTest::newRow("gemma3 pattern 3 f32") << "gemma3" << 6 << 3 << 24.0 << 0.0 << 0.0 << int(DType::F32) << false << 0.0 << false;
        QTest::newRow("gemma3 final cap bf16") << "gemma3" << 4 << 2 << 16.0 << 0.0 << 5.0 << int(DType::BF16) << false << 0.0 << false;
        // A Gemma3ForConditionalGeneration checkpoint: text_config, language_model.model.* tensors, a vision tensor ignored.
        QTest::newRow("gemma3 rope_scaling linear 8 f32") << "gemma3" << 6 << 3 << 16.0 << 0.0 << 0.0 << int(DType::F32) << false << 8.0 << false;
        QTest::newRow("gemma3 rope_parameters per layer type f32") << "gemma3" << 6 << 3 << 16.0 << 0.0 << 0.0 << int(DType::F32) << false << 8.0 << true;
        QTest::newRow("gemma3 vision checkpoint f16") << "gemma3" << 3 << 3 << 16.0 << 0.0 << 0.0 << int(DType::F16) << true << 0.0 << false;
    }
    void gemmaMatchesCpuReference() {
        QFETCH(QString, arch);
        QFETCH(int, layers);
        QFETCH(int, pattern);
        QFETCH(double, qpas);
        QFETCH(double, attnCap);
        QFETCH(double, finalCap);
        QFETCH(int, dtype);
        QFETCH(bool, multimodal);
        QFETCH(double, ropeFactor);
        QFETCH(bool, ropeParameters);
        Spec s{arch.toStdString(), 64, 96, layers, 4, 2, 16, 97, 8, true, DType(dtype)};
        s.queryPreAttnScalar = qpas;
        s.attnSoftcap = attnCap;
        s.finalSoftcap = finalCap;
        s.slidingPattern = pattern;
        s.multimodal = multimodal;
        s.ropeLinearFactor = ropeFactor;
        s.ropeParameters = ropeParameters;
        QTemporaryDir dir;
        writeModel(dir.path().toStdString(), s, 21);
        std::vector<int32_t> ids;
        std::mt19937 rng(5);
        for (int i = 0; i < 23; ++i) ids.push_back(int32_t(rng() % 97));
        const auto ref = referenceLogits(dir.path().toStdString(), s, ids);

        auto model = Model::load(*ctx, dir.path().toStdString());
        const ModelConfig& c = model->config();
        QCOMPARE(c.layerWindow(0), pattern == 1 ? 0 : 8);
        QCOMPARE(c.layerWindow(pattern - 1), 0);
        QCOMPARE(c.localRope(0), arch == "gemma3");
        Session session(*model, 64, 8);
        const std::vector<float> got = prefillThenDecode(session, ids, 17);
        QCOMPARE(got.size(), ref.size());
        const double e = test::nmse(got, ref);
        const size_t V = 97;
        int sameArgmax = 0;
        float most = 0;
        for (size_t t = 0; t < ids.size(); ++t) {
            const auto row = [&](const std::vector<float>& v) { return std::span<const float>(v.data() + t * V, V); };
            const auto g = row(got), r = row(ref);
            sameArgmax += std::max_element(g.begin(), g.end()) - g.begin() == std::max_element(r.begin(), r.end()) - r.begin();
            for (float x : r) most = std::max(most, std::abs(x));
        }
        qInfo("%s: NMSE %.3g, argmax equal at %d of %zu positions, largest |logit| %.3g", QTest::currentDataTag(), e,
              sameArgmax, ids.size(), most);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        QCOMPARE(sameArgmax, int(ids.size()));
        if (finalCap > 0) QVERIFY(most <= finalCap);
    }

    // Phi-3 / Phi-4-mini: fused qkv_proj and gate_up_proj (split into views
    // at load: the engine's own fused QKV and its gate/up), partial rotary
    // (Phi-4-mini: 0.75 of the head), LongRoPE with original_max_position_embeddings
    // 12 under max 256 (attention factor sqrt(1 + ln(256/12) / ln 12)): the
    // prefill of 10 stays below it (short factors), the decode steps cross
    // it (long factors from position 12 on), as Transformers switches when
    // it generates one token at a time. A window of 6 on every layer. Same
    // tolerance as above.
    void phi3MatchesCpuReference_data() {
        QTest::addColumn<double>("partial");
        QTest::addColumn<int>("longrope");
        QTest::addColumn<int>("window");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<int>("dtype");
        QTest::newRow("phi3 full rotary f32") << 1.0 << 0 << 0 << false << int(DType::F32);
        QTest::newRow("phi4-mini partial 0.75 tied longrope bf16") << 0.75 << 12 << 0 << true << int(DType::BF16);
        QTest::newRow("phi3 partial 0.5 longrope window 6 f32") << 0.5 << 12 << 6 << false << int(DType::F32);
    }
    void phi3MatchesCpuReference() {
        QFETCH(double, partial);
        QFETCH(int, longrope);
        QFETCH(int, window);
        QFETCH(bool, tied);
        QFETCH(int, dtype);
        Spec s{"phi3", 48, 80, 2, 4, 2, 16, 97, window, tied, DType(dtype)};
        s.partialRotary = partial;
        s.longropeOriginal = longrope;
        QTemporaryDir dir;
        writeModel(dir.path().toStdString(), s, 31);
        std::vector<int32_t> ids;
        std::mt19937 rng(9);
        for (int i = 0; i < 23; ++i) ids.push_back(int32_t(rng() % 97));
        const auto ref = referenceLogits(dir.path().toStdString(), s, ids);

        auto model = Model::load(*ctx, dir.path().toStdString());
        const ModelConfig& c = model->config();
        QCOMPARE(c.rotaryDim(), int(16 * partial));
        QCOMPARE(c.ropeLongInvFreq.empty(), longrope == 0);
        QCOMPARE(model->layer(0).qkv.rows, uint32_t((4 + 2 * 2) * 16)); // the fused tensor, as one projection
        Session session(*model, 64, 4);
        const std::vector<float> got = prefillThenDecode(session, ids, 10);
        expectReferenceLogits(got, ref, ids.size());
        if (QTest::currentTestFailed()) return;
    }

    // Where LongRoPE switches to the long factors (docs/ARCHITECTURE.md,
    // "LongRoPE"): per position, from position original_max_position_embeddings
    // on, whatever the forward pass's size. Against a copy whose long factors
    // are the short ones: the logits agree exactly at positions 0..11 and
    // differ from 12 on (original 12); the whole prompt in one prefill gives
    // what 10 tokens of prefill and 13 decode steps give (the rule Transformers
    // follows when it generates one token at a time), to float rounding of
    // the prefill and decode kernels (NMSE < 1e-9, as above).
    void longRopeSwitchesAtTheOriginalLength() {
        Spec s{"phi3", 48, 80, 2, 4, 2, 16, 97};
        s.partialRotary = 0.75;
        s.longropeOriginal = 12;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        std::filesystem::create_directories(d / "long");
        std::filesystem::create_directories(d / "short");
        writeModel(d / "long", s, 31);
        writeModel(d / "short", s, 31);
        json c = json::parse(std::ifstream(d / "short" / "config.json"));
        c["rope_scaling"]["long_factor"] = c["rope_scaling"]["short_factor"];
        std::ofstream(d / "short" / "config.json") << c.dump();
        std::vector<int32_t> ids;
        std::mt19937 rng(5);
        for (int i = 0; i < 23; ++i) ids.push_back(int32_t(rng() % 97));

        auto withLong = Model::load(*ctx, (d / "long").string());
        auto shortOnly = Model::load(*ctx, (d / "short").string());
        std::vector<float> a, b;
        Session sa(*withLong, 64, 32), sb(*shortOnly, 64, 32);
        sa.forward(ids, &a);
        sb.forward(ids, &b);
        const size_t V = 97;
        for (size_t t = 0; t < ids.size(); ++t) {
            const bool same = std::equal(a.begin() + long(t * V), a.begin() + long((t + 1) * V), b.begin() + long(t * V));
            QVERIFY2(same == (t < 12), qPrintable(QString("position %1: %2").arg(t).arg(same ? "same" : "different")));
        }
        Session stepwise(*withLong, 64, 4);
        const double e = test::nmse(prefillThenDecode(stepwise, ids, 10), a);
        qInfo("one prefill of 23 vs prefill 10 + 13 decode steps: NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Phi-3 configs the engine cannot run as Transformers would: clear errors naming config.json and the field.
    void phi3BadConfigs_data() {
        QTest::addColumn<QString>("field");
        QTest::addColumn<QString>("value"); // JSON; "absent" = removed
        QTest::addColumn<QString>("expected");
        // 16 * 0.3 = 4.8 -> 4 is even; 16 * 0.4 = 6.4 -> 6 even; 16 * 0.2 = 3.2 -> 3: odd.
        QTest::newRow("odd rotary width") << "partial_rotary_factor" << "0.2" << "field partial_rotary_factor: 0.2 gives a rotary width of 3";
        QTest::newRow("rotary factor 0") << "partial_rotary_factor" << "0" << "field partial_rotary_factor: must be a number in (0, 1]";
        QTest::newRow("rope_scaling yarn") << "rope_scaling" << "{\"type\": \"yarn\", \"factor\": 4}" << "field rope_scaling.type: \"yarn\" is not supported";
        QTest::newRow("longrope short list") << "rope_scaling" << "{\"type\": \"longrope\", \"short_factor\": [1, 1], \"long_factor\": [1, 1, 1, 1, 1, 1]}"
                                             << "field rope_scaling.short_factor: must be a list of 6 numbers";
        QTest::newRow("longrope no factors") << "rope_scaling" << "{\"type\": \"longrope\"}" << "field rope_scaling.short_factor: missing";
        QTest::newRow("longrope no original") << "original_max_position_embeddings" << "absent" << "field original_max_position_embeddings: missing";
        QTest::newRow("gelu") << "hidden_act" << "\"gelu\"" << "field hidden_act: \"gelu\" is not supported";
    }
    void phi3BadConfigs() {
        QFETCH(QString, field);
        QFETCH(QString, value);
        QFETCH(QString, expected);
        Spec s{"phi3", 32, 48, 2, 2, 1, 16, 31};
        s.partialRotary = 0.75;
        s.longropeOriginal = 12;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        json c = json::parse(std::ifstream(d / "config.json"));
        if (value == "absent") c.erase(field.toStdString());
        else c[field.toStdString()] = json::parse(value.toStdString());
        std::ofstream(d / "config.json") << c.dump();
        const auto msg = test::errorMessage([&] { ModelConfig::load(d); });
        QVERIFY2(msg.find(expected.toStdString()) != std::string::npos && msg.find("config.json") != std::string::npos,
                 msg.c_str());
    }

    // A fused tensor whose rows do not add up: the file and tensor named.
    void phi3FusedTensorWrongShape() {
        Spec s{"phi3", 32, 48, 1, 2, 1, 16, 31};
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        json c = json::parse(std::ifstream(d / "config.json"));
        c["intermediate_size"] = 40;
        std::ofstream(d / "config.json") << c.dump();
        const auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.0.mlp.gate_up_proj.weight") != std::string::npos &&
                     msg.find("expected 80 rows") != std::string::npos && msg.find("model.safetensors") != std::string::npos,
                 msg.c_str());
    }

    // Phi-2 (PhiForCausalLM) against modeling_phi transcribed: LayerNorm with
    // biases, parallel attention + MLP, fc1 -> gelu_new -> fc2, biases on
    // q/k/v/dense/fc1/fc2/lm_head, partial rotary. Prefill of 10 tokens then
    // decode one at a time (both the tiled and the matvec kernels). Same
    // tolerance as above: float32 on both sides, double accumulation on the
    // CPU; a dropped bias or the MLP reading the post-attention residual
    // instead of the shared norm gives NMSE > 1e-4.
    void phi2MatchesCpuReference_data() {
        QTest::addColumn<double>("partial");
        QTest::addColumn<int>("kvHeads"); // 0: num_key_value_heads null
        QTest::addColumn<int>("dtype");
        // hidden 64 / 4 heads = head_dim 16: 16 * 0.4 = 6.4 -> 6 rotated (phi-2's factor).
        QTest::newRow("phi2 partial 0.4 kv null f32") << 0.4 << 0 << int(DType::F32);
        QTest::newRow("phi2 partial 0.5 gqa 2 bf16") << 0.5 << 2 << int(DType::BF16);
        QTest::newRow("phi2 full rotary f16") << 1.0 << 4 << int(DType::F16);
    }
    void phi2MatchesCpuReference() {
        QFETCH(double, partial);
        QFETCH(int, kvHeads);
        QFETCH(int, dtype);
        Spec s{"phi2", 64, 96, 2, 4, kvHeads > 0 ? kvHeads : 4, 16, 97, 0, false, DType(dtype)};
        s.partialRotary = partial;
        s.kvHeadsNull = kvHeads == 0;
        QTemporaryDir dir;
        writeModel(dir.path().toStdString(), s, 37);
        std::vector<int32_t> ids;
        std::mt19937 rng(11);
        for (int i = 0; i < 23; ++i) ids.push_back(int32_t(rng() % 97));
        const auto ref = referenceLogits(dir.path().toStdString(), s, ids);

        auto model = Model::load(*ctx, dir.path().toStdString());
        const ModelConfig& c = model->config();
        QVERIFY(c.arch == Arch::Phi2);
        QCOMPARE(c.rotaryDim(), int(16 * partial));
        QCOMPARE(c.numKvHeads, s.kvHeads);
        QVERIFY(c.normKind == NormKind::Layer && c.parallelResidual && !c.gatedMlp);
        Session session(*model, 64, 4);
        const std::vector<float> got = prefillThenDecode(session, ids, 10);
        expectReferenceLogits(got, ref, ids.size());
        if (QTest::currentTestFailed()) return;

        // Greedy continuation: the engine's argmax fed back matches the reference's.
        std::vector<int32_t> greedy = {ids[0], ids[1], ids[2]};
        Session gen(*model, 64, 4);
        auto logits = gen.forward(greedy);
        for (int i = 0; i < 8; ++i) {
            const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
            greedy.push_back(next);
            logits = gen.forward(std::span<const int32_t>(&greedy.back(), 1));
        }
        const auto refGreedy = referenceLogits(dir.path().toStdString(), s, greedy);
        const size_t V = 97;
        for (size_t t = 2; t + 1 < greedy.size(); ++t) {
            const auto r = std::span<const float>(refGreedy.data() + t * V, V);
            QCOMPARE(int32_t(std::max_element(r.begin(), r.end()) - r.begin()), greedy[t + 1]);
        }
    }

    // Phi-2 configs the engine cannot run as Transformers would: clear errors naming config.json and the field.
    void phi2BadConfigs_data() {
        QTest::addColumn<QString>("field");
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("expected");
        // head_dim 16: 16 * 0.2 = 3.2 -> 3 is odd.
        QTest::newRow("odd rotary width") << "partial_rotary_factor" << "0.2" << "field partial_rotary_factor: 0.2 gives a rotary width of 3";
        QTest::newRow("gelu") << "hidden_act" << "\"gelu\"" << "field hidden_act: \"gelu\" is not supported for Phi-2 (only gelu_new)";
        QTest::newRow("qk_layernorm") << "qk_layernorm" << "true" << "field qk_layernorm: true is not supported";
        QTest::newRow("layer_norm_eps 0") << "layer_norm_eps" << "0" << "field layer_norm_eps:";
    }
    void phi2BadConfigs() {
        QFETCH(QString, field);
        QFETCH(QString, value);
        QFETCH(QString, expected);
        Spec s{"phi2", 64, 96, 1, 4, 4, 16, 31};
        s.partialRotary = 0.4;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        json c = json::parse(std::ifstream(d / "config.json"));
        c[field.toStdString()] = json::parse(value.toStdString());
        std::ofstream(d / "config.json") << c.dump();
        const auto msg = test::errorMessage([&] { ModelConfig::load(d); });
        QVERIFY2(msg.find(expected.toStdString()) != std::string::npos && msg.find("config.json") != std::string::npos,
                 msg.c_str());
    }

    // A missing Phi-2 bias names the file and the tensor (as released: the renamed tensor's own name is fc1).
    void phi2MissingBiasNamed() {
        Spec s{"phi2", 64, 96, 1, 4, 4, 16, 31};
        s.partialRotary = 0.4;
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        auto store = WeightStore::openFolder(d);
        std::vector<TensorToWrite> out;
        std::vector<std::vector<std::byte>> keep;
        keep.reserve(store->names().size()); // `out` holds spans of them
        for (const std::string& name : store->names()) {
            if (name == "model.layers.0.input_layernorm.bias") continue;
            const TensorView& t = store->require(name);
            keep.emplace_back(t.data, t.data + t.nbytes);
            out.push_back({name, t.dtype, t.shape, keep.back()});
        }
        store.reset();
        writeSafetensors(d / "model.safetensors", out);
        const auto msg = test::errorMessage([&] { Model::load(*ctx, d); });
        QVERIFY2(msg.find("model.layers.0.input_layernorm.bias") != std::string::npos &&
                     msg.find("model.safetensors") != std::string::npos,
                 msg.c_str());
    }

    // Gemma configs the engine cannot run as Transformers would: clear errors naming the field.
    void gemmaBadConfigs_data() {
        QTest::addColumn<QString>("field");
        QTest::addColumn<QString>("value"); // JSON; "absent" = removed
        QTest::addColumn<QString>("expected");
        QTest::newRow("no head_dim") << "head_dim" << "absent" << "field head_dim: missing";
        QTest::newRow("attn softcap 0") << "attn_logit_softcapping" << "0" << "field attn_logit_softcapping: must be a positive number";
        QTest::newRow("final softcap 0") << "final_logit_softcapping" << "0.0" << "field final_logit_softcapping: must be a positive number";
        QTest::newRow("relu") << "hidden_activation" << "\"relu\"" << "field hidden_activation: \"relu\" is not supported";
        QTest::newRow("layer_types short") << "layer_types" << "[\"full_attention\"]" << "field layer_types: must list 2 layer types";
        QTest::newRow("rope_scaling yarn") << "rope_scaling" << "{\"rope_type\": \"yarn\", \"factor\": 4}" << "\"yarn\" is not supported";
    }
    void gemmaBadConfigs() {
        QFETCH(QString, field);
        QFETCH(QString, value);
        QFETCH(QString, expected);
        Spec s{"gemma2", 32, 48, 2, 2, 1, 16, 31, 4, true};
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 1);
        json c = json::parse(std::ifstream(d / "config.json"));
        if (value == "absent") c.erase(field.toStdString());
        else c[field.toStdString()] = json::parse(value.toStdString());
        std::ofstream(d / "config.json") << c.dump();
        const auto msg = test::errorMessage([&] { ModelConfig::load(d); });
        QVERIFY2(msg.find(expected.toStdString()) != std::string::npos && msg.find("config.json") != std::string::npos,
                 msg.c_str());
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
