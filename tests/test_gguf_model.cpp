// GGUF files as models (moe/gguf_model.h): the shared base written here the
// way llama.cpp's converter lays out a `llama` file (its tensor names, q and k
// rows interleaved for its RoPE), as F32 and in each block type, loaded
// through the same Model::load as a safetensors folder; and damaged metadata
// or tensor tables, each a clear error naming the file and the key or tensor.
//
// Tolerances: the F32 file holds the base's BF16 weights exactly, so its
// logits meet test_model's limits against the torch reference (NMSE < 1e-8,
// max |Δlogit| < 2e-3; see there). A quantized file is compared with its
// "dequantized twin", an F32 file of the weights its blocks decode to: both
// compute the same function and differ only in summation order, so the same
// limits hold; a wrong block decode or a row-order slip gives NMSE > 1e-3.
#include "moe/gguf_model.h"
#include "moe/model.h"
#include "moe/quant.h"
#include "moe/session.h"
#include "gguf_builder.h"
#include "npy.h"
#include "reference_ops.h"
#include "test_paths.h"

#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <functional>
#include <optional>

using namespace moe;
using moe::test::GgufBuilder;
using nlohmann::json;

namespace {

constexpr double kNmseLimit = 1e-8;
constexpr double kMaxAbsLimit = 2e-3;

std::string writeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return path;
}

// The converter's name for a Hugging Face tensor of a dense Llama.
std::string ggufName(const std::string& hf) {
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    static const std::vector<std::pair<std::string, std::string>> layer = {
        {"input_layernorm.weight", "attn_norm.weight"},     {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},       {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},  {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    const std::string prefix = "model.layers.";
    const size_t dot = hf.find('.', prefix.size());
    const std::string index = hf.substr(prefix.size(), dot - prefix.size()), rest = hf.substr(dot + 1);
    for (const auto& [from, to] : layer)
        if (rest == from) return "blk." + index + "." + to;
    throw std::runtime_error("no GGUF name for " + hf);
}

// The rows of q or k in the converter's order: GGUF row h*d + 2i + s holds
// Hugging Face row h*d + s*d/2 + i (LlamaModel.permute).
std::vector<float> interleaveRows(const std::vector<float>& w, int heads, int headDim, int cols) {
    std::vector<float> out(w.size());
    const int half = headDim / 2;
    for (int h = 0; h < heads; ++h)
        for (int s = 0; s < 2; ++s)
            for (int i = 0; i < half; ++i)
                std::memcpy(&out[size_t(h * headDim + 2 * i + s) * cols], &w[size_t(h * headDim + s * half + i) * cols],
                            size_t(cols) * 4);
    return out;
}

std::vector<uint8_t> bytesOf(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    return {b, b + n};
}

// Which type a matrix is stored in: a block type, or nullopt for F32.
using TypeFor = std::function<std::optional<QuantType>(const std::string& ggufName, int64_t cols)>;

// The shared base as a GGUF `llama` file. With `dequantizedTwin`, each
// quantized matrix is stored as the F32 values its blocks decode to instead.
void writeBase(const std::string& path, const TypeFor& typeFor, bool dequantizedTwin) {
    const auto dir = test::modelsDir() / "base";
    const ModelConfig c = ModelConfig::load(dir);
    const auto store = WeightStore::openFolder(dir);
    GgufBuilder b;
    b.string("general.architecture", "llama")
        .u32("llama.context_length", uint32_t(c.maxPositions))
        .u32("llama.embedding_length", uint32_t(c.hiddenSize))
        .u32("llama.block_count", uint32_t(c.numLayers))
        .u32("llama.feed_forward_length", uint32_t(c.intermediateSize))
        .u32("llama.attention.head_count", uint32_t(c.numHeads))
        .u32("llama.attention.head_count_kv", uint32_t(c.numKvHeads))
        .u32("llama.rope.dimension_count", uint32_t(c.headDim))
        .f32("llama.rope.freq_base", c.ropeTheta)
        .f32("llama.attention.layer_norm_rms_epsilon", c.normEps)
        .u32("llama.vocab_size", uint32_t(c.vocabSize))
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2);
    for (const std::string& hf : store->names()) {
        const TensorView& t = store->require(hf);
        const std::string name = ggufName(hf);
        std::vector<float> w = toFloat32(t);
        const int64_t cols = t.shape.back(), rows = int64_t(w.size()) / cols;
        if (name.ends_with("attn_q.weight")) w = interleaveRows(w, c.numHeads, c.headDim, int(cols));
        if (name.ends_with("attn_k.weight")) w = interleaveRows(w, c.numKvHeads, c.headDim, int(cols));
        std::vector<uint64_t> ne(t.shape.rbegin(), t.shape.rend());
        const auto q = t.shape.size() == 2 ? typeFor(name, cols) : std::nullopt;
        if (!q) {
            b.tensor(name, ne, 0, bytesOf(w.data(), w.size() * 4));
            continue;
        }
        const size_t rb = quantRowBytes(*q, size_t(cols));
        std::vector<std::byte> blocks(rb * size_t(rows));
        for (int64_t r = 0; r < rows; ++r)
            quantizeRow(*q, std::span<const float>(&w[size_t(r * cols)], size_t(cols)),
                        std::span<std::byte>(&blocks[size_t(r) * rb], rb));
        if (!dequantizedTwin) {
            b.tensor(name, ne, ggmlTypeId(*q), bytesOf(blocks.data(), blocks.size()));
            continue;
        }
        for (int64_t r = 0; r < rows; ++r)
            dequantizeRow(*q, std::span<const std::byte>(&blocks[size_t(r) * rb], rb),
                          std::span<float>(&w[size_t(r * cols)], size_t(cols)));
        b.tensor(name, ne, 0, bytesOf(w.data(), w.size() * 4));
    }
    writeFile(path, b.build());
}

std::vector<float> allLogits(Model& m, const std::vector<int32_t>& ids) {
    Session session(m, 0, 64);
    std::vector<float> all;
    session.forward(ids, &all);
    return all;
}

// A minimal valid dense `llama` header around one layer of tiny tensors, for
// the error cases; `edit` changes it before it is built.
std::vector<uint8_t> tinyLlama(const std::function<void(GgufBuilder&)>& edit, const std::string& arch = "llama") {
    GgufBuilder b;
    const int H = 32, I = 32, V = 8;
    b.string("general.architecture", arch)
        .u32(arch + ".context_length", 64)
        .u32(arch + ".embedding_length", H)
        .u32(arch + ".block_count", 1)
        .u32(arch + ".feed_forward_length", I)
        .u32(arch + ".attention.head_count", 2)
        .f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
    edit(b);
    auto zeros = [](size_t n) { return std::vector<uint8_t>(n * 4, 0); };
    b.tensor("token_embd.weight", {H, V}, 0, zeros(H * V)).tensor("output_norm.weight", {H}, 0, zeros(H));
    for (const char* n : {"attn_norm", "ffn_norm"}) b.tensor(std::string("blk.0.") + n + ".weight", {H}, 0, zeros(H));
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"})
        b.tensor(std::string("blk.0.") + n + ".weight", {H, H}, 0, zeros(H * H));
    b.tensor("blk.0.ffn_gate.weight", {H, I}, 0, zeros(H * I)).tensor("blk.0.ffn_up.weight", {H, I}, 0, zeros(H * I));
    b.tensor("blk.0.ffn_down.weight", {I, H}, 0, zeros(H * I));
    return b.build();
}

} // namespace

class TestGgufModel : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    json reference;
    QTemporaryDir dir;

    std::string path(const std::string& name) const { return dir.filePath(QString::fromStdString(name)).toStdString(); }

    void expectError(const std::string& name, const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
        const std::string p = writeFile(path(name), bytes);
        const std::string message = test::errorMessage([&] {
            auto m = Model::load(*ctx, p);
        });
        std::string missing;
        QVERIFY2(message.find(p) != std::string::npos, message.c_str());
        QVERIFY2(test::containsAll(message, parts, missing), (message + " (missing: " + missing + ")").c_str());
    }

private slots:
    void initTestCase() {
        ctx = std::make_unique<vk::Context>();
        std::ifstream in(test::modelsDir() / "reference" / "reference.json");
        QVERIFY2(in.good(), "reference.json not found: set MOE_MODELS_DIR to the shared models folder");
        reference = json::parse(in);
        writeBase(path("base-f32.gguf"), [](const std::string&, int64_t) { return std::nullopt; }, false);
    }

    void cleanupTestCase() {
        if (ctx->validationEnabled()) QCOMPARE(ctx->validationMessages(), uint64_t(0));
        ctx.reset();
    }

    void isGgufPathTellsFilesFromFolders() {
        QVERIFY(isGgufPath(path("base-f32.gguf")));
        QVERIFY(isGgufPath("/somewhere/Model.Q4_K_M.GGUF"));
        QVERIFY(!isGgufPath(test::modelsDir() / "base"));
        QVERIFY(!isGgufPath("/somewhere/model.safetensors"));
    }

    void configComesFromMetadata() {
        const ModelConfig g = ModelConfig::load(path("base-f32.gguf"));
        const ModelConfig s = ModelConfig::load(test::modelsDir() / "base");
        QVERIFY(g.fromGguf && g.qkRowsInterleaved);
        QCOMPARE(g.arch, Arch::Llama);
        QCOMPARE(g.hiddenSize, s.hiddenSize);
        QCOMPARE(g.intermediateSize, s.intermediateSize);
        QCOMPARE(g.numLayers, s.numLayers);
        QCOMPARE(g.numHeads, s.numHeads);
        QCOMPARE(g.numKvHeads, s.numKvHeads);
        QCOMPARE(g.headDim, s.headDim);
        QCOMPARE(g.vocabSize, s.vocabSize);
        QCOMPARE(g.maxPositions, s.maxPositions);
        QCOMPARE(g.normEps, s.normEps);
        QCOMPARE(g.tieWordEmbeddings, s.tieWordEmbeddings);
        QCOMPARE(g.attentionBias, false);
        QCOMPARE(g.bosTokenIds, std::vector<int>{1});
        QCOMPARE(g.eosTokenIds, std::vector<int>{2});
        QCOMPARE(g.ropeInvFreq.size(), s.ropeInvFreq.size());
        for (size_t i = 0; i < s.ropeInvFreq.size(); ++i)
            QVERIFY(std::abs(g.ropeInvFreq[i] - s.ropeInvFreq[i]) <= 1e-6f * s.ropeInvFreq[i]);
    }

    // The F32 file, q/k interleaved as the converter writes them, against the torch reference.
    void f32FileMatchesTorchReference_data() {
        QTest::addColumn<int>("prompt");
        for (int p = 0; p < 3; ++p) QTest::addRow("prompt%d", p) << p;
    }
    void f32FileMatchesTorchReference() {
        QFETCH(int, prompt);
        const auto& r = reference["models"]["base"][size_t(prompt)];
        std::vector<size_t> shape;
        const auto ref = test::readNpy(test::modelsDir() / "reference" / r["logits_file"].get<std::string>(), shape);
        auto m = Model::load(*ctx, path("base-f32.gguf"));
        const auto all = allLogits(*m, r["token_ids"].get<std::vector<int32_t>>());
        QCOMPARE(all.size(), ref.size());
        const test::Diff d = test::compare(all, ref);
        qInfo("prompt %d: NMSE %.3g, max |dlogit| %.3g", prompt, d.nmse, d.maxAbs);
        QVERIFY2(d.nmse < kNmseLimit, qPrintable(QString("NMSE %1").arg(d.nmse)));
        QVERIFY2(d.maxAbs < kMaxAbsLimit, qPrintable(QString("max abs %1").arg(d.maxAbs)));
    }

    // Each block type in every matrix whose rows it fits (the others F32, as
    // llama-quantize falls back), against the file of its decoded weights;
    // and the device holds no more than 1.1x the file's tensor bytes.
    void quantizedFileMatchesDequantizedTwin_data() {
        QTest::addColumn<QString>("type");
        for (const char* t : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"}) QTest::newRow(t) << QString(t);
    }
    void quantizedFileMatchesDequantizedTwin() {
        QFETCH(QString, type);
        const QuantType q = *parseQuantType(type.toStdString());
        const TypeFor typeFor = [q](const std::string&, int64_t cols) -> std::optional<QuantType> {
            if (cols % quantLayout(q).blockElements != 0) return std::nullopt;
            return q;
        };
        const std::string quantized = path("base-" + type.toStdString() + ".gguf");
        const std::string twin = path("base-" + type.toStdString() + "-twin.gguf");
        writeBase(quantized, typeFor, false);
        writeBase(twin, typeFor, true);
        auto ids = reference["models"]["base"][0]["token_ids"].get<std::vector<int32_t>>();
        ids.resize(std::min<size_t>(ids.size(), 32));
        auto mq = Model::load(*ctx, quantized);
        std::vector<float> got = allLogits(*mq, ids);
        uint64_t tensorBytes = 0;
        for (const auto& t : GgufFile::open(quantized)->tensors()) tensorBytes += t.nbytes;
        const uint64_t device = mq->deviceBytes();
        QCOMPARE(mq->weightDType(), toDType(q));
        mq.reset();
        auto mt = Model::load(*ctx, twin);
        const test::Diff d = test::compare(got, allLogits(*mt, ids));
        qInfo("%s: NMSE %.3g, max |dlogit| %.3g; device %llu bytes for %llu bytes of tensors (%.3fx)", qPrintable(type),
              d.nmse, d.maxAbs, (unsigned long long)device, (unsigned long long)tensorBytes, double(device) / double(tensorBytes));
        QVERIFY2(d.nmse < kNmseLimit, qPrintable(QString("NMSE %1").arg(d.nmse)));
        QVERIFY2(d.maxAbs < kMaxAbsLimit, qPrintable(QString("max abs %1").arg(d.maxAbs)));
        QVERIFY2(double(device) <= 1.1 * double(tensorBytes), "device memory above 1.1x the quantized bytes");
    }

    void damagedModelsAreClearErrors() {
        // Sizes that size allocations are bounded (a key_length of 2^30 asked for an 8 GiB RoPE table).
        expectError("huge-head.gguf", tinyLlama([](GgufBuilder& b) { b.u32("llama.attention.key_length", 1u << 30); }),
                    {"llama.attention.key_length", "1073741824 is larger than any model has (at most 4096)"});
        expectError("arch.gguf", tinyLlama([](GgufBuilder&) {}, "gpt2"), {"general.architecture", "gpt2", "not supported"});
        expectError("yarn.gguf", tinyLlama([](GgufBuilder& b) { b.string("llama.rope.scaling.type", "yarn"); }),
                    {"llama.rope.scaling.type", "yarn", "not supported"});
        expectError("partial-rope.gguf", tinyLlama([](GgufBuilder& b) { b.u32("llama.rope.dimension_count", 8); }),
                    {"llama.rope.dimension_count", "not supported"});
        expectError("unknown-tensor.gguf", tinyLlama([](GgufBuilder& b) {
                        b.tensor("blk.0.attn_sinks.weight", {2}, 0, std::vector<uint8_t>(8, 0));
                    }),
                    {"blk.0.attn_sinks.weight"});
        expectError("layer-past-end.gguf", tinyLlama([](GgufBuilder& b) {
                        b.tensor("blk.7.attn_norm.weight", {32}, 0, std::vector<uint8_t>(128, 0));
                    }),
                    {"blk.7.attn_norm.weight", "llama.block_count"});
        expectError("experts.gguf", tinyLlama([](GgufBuilder& b) {
                        b.u32("llama.expert_count", 4).u32("llama.expert_used_count", 8);
                    }),
                    {"llama.expert_used_count", "more than"});
        expectError("heads.gguf", tinyLlama([](GgufBuilder& b) { b.u32("llama.attention.head_count_kv", 3); }),
                    {"llama.attention.head_count_kv", "does not divide"});
        expectError("qwen2-no-bias.gguf", tinyLlama([](GgufBuilder&) {}, "qwen2"),
                    {"blk.0.attn_q.bias", "missing"});
        GgufBuilder b;
        expectError("missing-key.gguf",
                    b.string("general.architecture", "llama").u32("llama.embedding_length", 32).tensor("token_embd.weight", {32, 8}, 0, std::vector<uint8_t>(32 * 8 * 4, 0)).build(),
                    {"llama.block_count", "missing"});
    }
};

QTEST_GUILESS_MAIN(TestGgufModel)
#include "test_gguf_model.moc"
