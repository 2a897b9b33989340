// Model files: safetensors reading/writing, sharded folders, 16-bit float
// conversions and config.json parsing, on the shared demo models and on
// deliberately broken files.
#include "moe/error.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <numbers>
#include <sstream>

using namespace moe;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {




void writeBytes(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string readBytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string littleEndian64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
    return s;
}

// A safetensors file from a literal header plus `dataBytes` zero bytes.
std::string rawSafetensors(const std::string& header, size_t dataBytes) {
    return littleEndian64(header.size()) + header + std::string(dataBytes, '\0');
}

uint32_t bitsOf(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float floatOf(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

std::span<const std::byte> asBytes(const auto& vec) { return std::as_bytes(std::span(vec)); }

// The parameters of the demo models' config.json, to build variants from.
json llamaConfig() {
    return json::parse(R"({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": false,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 256, "head_dim": 32,
        "intermediate_size": 688, "max_position_embeddings": 512, "num_attention_heads": 8,
        "num_hidden_layers": 4, "num_key_value_heads": 4, "rms_norm_eps": 1e-05, "rope_scaling": null,
        "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 4096})");
}

} // namespace

class TestModelFiles : public QObject {
    Q_OBJECT

private:
    QTemporaryDir tmp_;
    int counter_ = 0;

    fs::path tmpPath(const std::string& name) const { return fs::path(tmp_.path().toStdString()) / name; }
    // A fresh sub-folder for one case.
    fs::path newFolder(const std::string& name) {
        const fs::path p = tmpPath(name + "-" + std::to_string(++counter_));
        fs::create_directories(p);
        return p;
    }
    fs::path writeConfigFolder(const std::string& name, const json& config) {
        const fs::path dir = newFolder(name);
        writeBytes(dir / "config.json", config.dump(1));
        return dir;
    }
    // Checks every tensor the config implies, with its shape and dtype.
    void checkLlamaTensors(const WeightStore& store, const ModelConfig& c, DType dtype) {
        const int64_t h = c.hiddenSize, q = int64_t(c.numHeads) * c.headDim, kv = int64_t(c.numKvHeads) * c.headDim;
        std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
            {"model.embed_tokens.weight", {c.vocabSize, h}}, {"model.norm.weight", {h}}};
        if (!c.tieWordEmbeddings) expected.push_back({"lm_head.weight", {c.vocabSize, h}});
        for (int l = 0; l < c.numLayers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            expected.push_back({p + "input_layernorm.weight", {h}});
            expected.push_back({p + "post_attention_layernorm.weight", {h}});
            expected.push_back({p + "self_attn.q_proj.weight", {q, h}});
            expected.push_back({p + "self_attn.k_proj.weight", {kv, h}});
            expected.push_back({p + "self_attn.v_proj.weight", {kv, h}});
            expected.push_back({p + "self_attn.o_proj.weight", {h, q}});
            expected.push_back({p + "mlp.gate_proj.weight", {c.intermediateSize, h}});
            expected.push_back({p + "mlp.up_proj.weight", {c.intermediateSize, h}});
            expected.push_back({p + "mlp.down_proj.weight", {h, c.intermediateSize}});
        }
        QCOMPARE(store.names().size(), expected.size());
        size_t params = 0;
        for (const auto& [name, shape] : expected) {
            const TensorView& t = store.require(name, shape);
            QCOMPARE(t.dtype, dtype);
            QCOMPARE(t.nbytes, size_t(t.numel()) * dtypeSize(dtype));
            QVERIFY(t.file != nullptr);
            params += size_t(t.numel());
        }
        QCOMPARE(store.totalBytes(), params * dtypeSize(dtype));
    }

private slots:
    void initTestCase() { QVERIFY(tmp_.isValid()); }

    // ---- the shared demo models ------------------------------------------

    void baseConfig() {
        const auto c = ModelConfig::load(test::modelsDir() / "base");
        QCOMPARE(c.arch, Arch::Llama);
        QCOMPARE(c.architecture, std::string("LlamaForCausalLM"));
        QCOMPARE(c.modelType, std::string("llama"));
        QCOMPARE(c.archName(), std::string("Llama"));
        QCOMPARE(c.vocabSize, 4096);
        QCOMPARE(c.hiddenSize, 256);
        QCOMPARE(c.intermediateSize, 688);
        QCOMPARE(c.numLayers, 4);
        QCOMPARE(c.numHeads, 8);
        QCOMPARE(c.numKvHeads, 4);
        QCOMPARE(c.headDim, 32);
        QCOMPARE(c.maxPositions, 512);
        QCOMPARE(c.normEps, 1e-5f);
        QCOMPARE(c.ropeTheta, 10000.0f);
        QCOMPARE(c.attentionScale, float(1.0 / std::sqrt(32.0)));
        QCOMPARE(c.slidingWindow, 0);
        QCOMPARE(c.tieWordEmbeddings, false);
        QCOMPARE(c.attentionBias, false);
        QCOMPARE(c.torchDtype, std::string("bfloat16"));
        QCOMPARE(c.bosTokenIds, std::vector<int>{1});
        QCOMPARE(c.eosTokenIds, std::vector<int>{2}); // generation_config.json says 2 as well: no duplicate
        QCOMPARE(c.ropeInvFreq.size(), size_t(16));
        for (int i = 0; i < 16; ++i)
            QVERIFY(std::abs(c.ropeInvFreq[i] - 1.0 / std::pow(10000.0, i / 16.0)) <= 1e-7 * (1.0 / std::pow(10000.0, i / 16.0)));
    }

    void loadBaseBf16() {
        const fs::path dir = test::modelsDir() / "base";
        const auto c = ModelConfig::load(dir);
        const auto store = WeightStore::openFolder(dir);
        QCOMPARE(store->folder(), dir);
        checkLlamaTensors(*store, c, DType::BF16);

        // The view points at exactly the bytes the header promises.
        const std::string raw = readBytes(dir / "model.safetensors");
        uint64_t headerLen = 0;
        for (int i = 7; i >= 0; --i) headerLen = (headerLen << 8) | uint8_t(raw[i]);
        const json header = json::parse(raw.substr(8, headerLen));
        for (const std::string name : {"model.layers.2.mlp.down_proj.weight", "model.norm.weight"}) {
            const TensorView& t = store->require(name);
            const uint64_t begin = header[name]["data_offsets"][0];
            QCOMPARE(size_t(t.data - t.file->data()), size_t(8 + headerLen + begin));
            QVERIFY(std::memcmp(t.data, raw.data() + 8 + headerLen + begin, t.nbytes) == 0);
        }
        QCOMPARE(store->require("lm_head.weight").shapeString(), std::string("[4096, 256]"));

        const auto norm = toFloat32(store->require("model.layers.0.input_layernorm.weight"));
        QCOMPARE(norm.size(), size_t(256));
        for (float v : norm) QVERIFY(std::isfinite(v) && std::abs(v) < 100);
        const auto embed = toFloat32(store->require("model.embed_tokens.weight"));
        QVERIFY(std::any_of(embed.begin(), embed.end(), [](float v) { return v != 0; }));

        // Releasing pages must leave the data readable (it faults back in).
        const TensorView& big = store->require("model.embed_tokens.weight");
        const std::vector<std::byte> before(big.data, big.data + big.nbytes);
        big.file->releasePages(big.data, big.nbytes);
        QVERIFY(std::memcmp(before.data(), big.data, big.nbytes) == 0);

        QCOMPARE(store->find("no.such.tensor"), nullptr);
        EXPECT_ERROR(store->require("no.such.tensor"), "model.safetensors", "no.such.tensor");
        EXPECT_ERROR(store->require("model.norm.weight", {255}), "model.safetensors", "model.norm.weight", "[256]",
                     "[255]");
    }

    void loadShardedLegal() {
        const fs::path dir = test::modelsDir() / "expert-legal";
        const auto c = ModelConfig::load(dir);
        const auto store = WeightStore::openFolder(dir);
        checkLlamaTensors(*store, c, DType::BF16);
        const json index = json::parse(readBytes(dir / "model.safetensors.index.json"));
        QCOMPARE(store->totalBytes(), index["metadata"]["total_size"].get<size_t>());
        for (const auto& [name, shard] : index["weight_map"].items())
            QCOMPARE(store->require(name).file->path().filename().string(), shard.get<std::string>());
        QVERIFY(store->require("model.embed_tokens.weight").file != store->require("lm_head.weight").file);
    }

    void loadF16Tech() {
        const fs::path dir = test::modelsDir() / "expert-tech";
        const auto c = ModelConfig::load(dir);
        QCOMPARE(c.torchDtype, std::string("float16"));
        const auto store = WeightStore::openFolder(dir);
        checkLlamaTensors(*store, c, DType::F16);
        const TensorView& t = store->require("model.layers.1.self_attn.k_proj.weight");
        const auto values = toFloat32(t);
        QCOMPARE(values.size(), size_t(t.numel()));
        for (size_t i : {size_t(0), size_t(777), values.size() - 1}) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            QCOMPARE(bitsOf(values[i]), bitsOf(f16ToFloat(h)));
        }
    }

    void loadLoraAdapter() {
        const fs::path dir = test::modelsDir() / "lora-code";
        const auto base = ModelConfig::load(test::modelsDir() / "base");
        const json adapter = json::parse(readBytes(dir / "adapter_config.json"));
        const int64_t rank = adapter["r"];
        const auto store = WeightStore::openFolder(dir);
        QCOMPARE(store->require(store->names().front()).file->path().filename().string(),
                 std::string("adapter_model.safetensors"));
        const int64_t h = base.hiddenSize, inter = base.intermediateSize;
        const std::map<std::string, std::pair<int64_t, int64_t>> inOut = {
            {"gate_proj", {h, inter}}, {"up_proj", {h, inter}}, {"down_proj", {inter, h}}};
        size_t count = 0;
        for (int l = 0; l < base.numLayers; ++l) {
            for (const auto& [module, dims] : inOut) {
                const std::string p = "base_model.model.model.layers." + std::to_string(l) + ".mlp." + module;
                QCOMPARE(store->require(p + ".lora_A.weight", {rank, dims.first}).dtype, DType::F32);
                QCOMPARE(store->require(p + ".lora_B.weight", {dims.second, rank}).dtype, DType::F32);
                count += 2;
            }
        }
        QCOMPARE(store->names().size(), count);
    }

    // ---- writing ---------------------------------------------------------

    void roundTrip() {
        const std::vector<float> f32 = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f, 1e-30f};
        const std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80, 0x0001};
        const std::vector<uint16_t> f16 = {0x3c00, 0x7bff, 0x8001, 0xfc00};
        const std::vector<int64_t> i64 = {-1, 0, 1LL << 40};
        const std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};
        const std::vector<float> scalar = {42.0f};
        const std::vector<float> empty;
        const std::vector<TensorToWrite> tensors = {
            {"weights.f32", DType::F32, {2, 3}, asBytes(f32)},
            {"weights.u8", DType::U8, {5}, asBytes(u8)}, // odd size: later tensors are unaligned
            {"weights.bf16", DType::BF16, {2, 2}, asBytes(bf16)},
            {"weights.f16", DType::F16, {4}, asBytes(f16)},
            {"weights.i64", DType::I64, {3}, asBytes(i64)},
            {"scalar", DType::F32, {}, asBytes(scalar)},
            {"empty", DType::F32, {0, 4}, asBytes(empty)},
        };
        const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"quoted\" text"}};
        const fs::path dir = newFolder("roundtrip");
        const fs::path path = dir / "out.safetensors";
        writeSafetensors(path, tensors, {{"format", "old"}});
        writeSafetensors(path, tensors, metadata); // overwrites in place

        const std::string raw = readBytes(path);
        uint64_t headerLen = 0;
        for (int i = 7; i >= 0; --i) headerLen = (headerLen << 8) | uint8_t(raw[i]);
        QCOMPARE((8 + headerLen) % 8, uint64_t(0));

        const SafetensorsFile file(path);
        QCOMPARE(file.metadata(), metadata);
        QCOMPARE(file.tensors().size(), tensors.size());
        for (const auto& t : tensors) {
            const auto it = file.tensors().find(t.name);
            QVERIFY(it != file.tensors().end());
            QCOMPARE(it->second.dtype, t.dtype);
            QCOMPARE(it->second.shape, t.shape);
            QCOMPARE(it->second.nbytes, t.bytes.size());
            QVERIFY(t.bytes.empty() || std::memcmp(it->second.data, t.bytes.data(), t.bytes.size()) == 0);
        }
        QCOMPARE(file.tensors().at("scalar").numel(), int64_t(1));
        QCOMPARE(file.tensors().at("scalar").shapeString(), std::string("[]"));
        QCOMPARE(toFloat32(file.tensors().at("weights.f32")), f32);
        QCOMPARE(toFloat32(file.tensors().at("weights.bf16"))[1], -2.0f);
        QCOMPARE(toFloat32(file.tensors().at("weights.f16"))[1], 65504.0f);
        EXPECT_ERROR(toFloat32(file.tensors().at("weights.i64")), "out.safetensors", "weights.i64", "I64");

        // Only the final file remains: no temporary left behind.
        QCOMPARE(size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator())), size_t(1));

        // The writer refuses inconsistent input and leaves nothing behind.
        EXPECT_ERROR(writeSafetensors(dir / "bad.safetensors", {{"short.tensor", DType::F32, {4}, asBytes(scalar)}}),
                     "bad.safetensors", "short.tensor");
        EXPECT_ERROR(writeSafetensors(dir / "twice.safetensors", {tensors[0], tensors[0]}), "twice.safetensors",
                     "weights.f32");
        EXPECT_ERROR(writeSafetensors(dir / "no-such-folder" / "x.safetensors", tensors), "no-such-folder");
        QCOMPARE(size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator())), size_t(1));

        // A written file opens as a one-file store too.
        const auto store = WeightStore::openFile(path);
        QCOMPARE(store->names().size(), tensors.size());
        QCOMPARE(store->folder(), dir);
    }

    // ---- 16-bit floats ---------------------------------------------------

    void bf16KnownPatterns() {
        QCOMPARE(floatToBf16(1.0f), uint16_t(0x3f80));
        QCOMPARE(floatToBf16(-2.0f), uint16_t(0xc000));
        QCOMPARE(floatToBf16(0.0f), uint16_t(0x0000));
        QCOMPARE(floatToBf16(-0.0f), uint16_t(0x8000));
        QCOMPARE(floatToBf16(INFINITY), uint16_t(0x7f80));
        QCOMPARE(floatToBf16(-INFINITY), uint16_t(0xff80));
        QCOMPARE(floatToBf16(3.0e38f), uint16_t(0x7f62));
        QCOMPARE(floatToBf16(floatOf(0x7f7fffff)), uint16_t(0x7f80)); // FLT_MAX rounds up to Inf
        // Ties go to even; anything above the tie rounds up.
        QCOMPARE(floatToBf16(floatOf(0x3f808000)), uint16_t(0x3f80));
        QCOMPARE(floatToBf16(floatOf(0x3f818000)), uint16_t(0x3f82));
        QCOMPARE(floatToBf16(floatOf(0x3f808001)), uint16_t(0x3f81));
        QCOMPARE(floatToBf16(floatOf(0x3f807fff)), uint16_t(0x3f80));
        QCOMPARE(floatToBf16(floatOf(0x00010000)), uint16_t(0x0001)); // subnormal
        QCOMPARE(floatToBf16(floatOf(0x00008000)), uint16_t(0x0000)); // tie to even zero
        const uint16_t nan = floatToBf16(NAN);
        QVERIFY((nan & 0x7f80) == 0x7f80 && (nan & 0x007f) != 0);
        // A NaN whose payload sits only in the dropped low bits stays NaN.
        QVERIFY(std::isnan(bf16ToFloat(floatToBf16(floatOf(0x7f800001)))));

        QCOMPARE(bf16ToFloat(0x3f80), 1.0f);
        QCOMPARE(bf16ToFloat(0xc049), -3.140625f);
        QCOMPARE(bf16ToFloat(0xff80), -INFINITY);
        QCOMPARE(bitsOf(bf16ToFloat(0x0001)), uint32_t(0x00010000));
        QVERIFY(std::isnan(bf16ToFloat(0x7fc0)));

        // Every bf16 survives the round trip, and every midpoint between two
        // neighbours rounds to the even one (just off it: to the nearer one).
        for (uint32_t h = 0; h <= 0xffff; ++h) {
            const float f = bf16ToFloat(uint16_t(h));
            if (std::isnan(f)) continue;
            QCOMPARE(floatToBf16(f), uint16_t(h));
        }
        for (uint32_t h = 0; h < 0x7f80; ++h) {
            const float mid = floatOf((h << 16) | 0x8000);
            const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
            QCOMPARE(floatToBf16(mid), even);
            QCOMPARE(floatToBf16(std::nextafter(mid, 0.0f)), uint16_t(h));
            QCOMPARE(floatToBf16(std::nextafter(mid, INFINITY)), uint16_t(h + 1));
            QCOMPARE(floatToBf16(-mid), uint16_t(even | 0x8000));
        }
    }

    void f16KnownPatterns() {
        QCOMPARE(floatToF16(1.0f), uint16_t(0x3c00));
        QCOMPARE(floatToF16(-2.0f), uint16_t(0xc000));
        QCOMPARE(floatToF16(0.1f), uint16_t(0x2e66));
        QCOMPARE(floatToF16(-0.0f), uint16_t(0x8000));
        QCOMPARE(floatToF16(65504.0f), uint16_t(0x7bff));
        QCOMPARE(floatToF16(std::nextafter(65520.0f, 0.0f)), uint16_t(0x7bff));
        QCOMPARE(floatToF16(65520.0f), uint16_t(0x7c00)); // the tie above the max rounds to Inf
        QCOMPARE(floatToF16(1e10f), uint16_t(0x7c00));
        QCOMPARE(floatToF16(-INFINITY), uint16_t(0xfc00));
        QCOMPARE(floatToF16(std::ldexp(1.0f, -14)), uint16_t(0x0400)); // smallest normal
        QCOMPARE(floatToF16(std::ldexp(1.0f, -24)), uint16_t(0x0001)); // smallest subnormal
        QCOMPARE(floatToF16(std::ldexp(1.0f, -25)), uint16_t(0x0000)); // tie to even zero
        QCOMPARE(floatToF16(std::ldexp(1.5f, -25)), uint16_t(0x0001));
        QCOMPARE(floatToF16(std::ldexp(3.0f, -25)), uint16_t(0x0002)); // tie 1.5 ulp -> even 2
        QCOMPARE(floatToF16(std::ldexp(1023.0f, -24)), uint16_t(0x03ff));
        QCOMPARE(floatToF16(std::ldexp(2047.0f, -25)), uint16_t(0x0400)); // rounds up into the normals
        QCOMPARE(floatToF16(1.0f + std::ldexp(1.0f, -11)), uint16_t(0x3c00));
        QCOMPARE(floatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), uint16_t(0x3c02));
        QCOMPARE(floatToF16(1e-10f), uint16_t(0x0000));
        QCOMPARE(floatToF16(floatOf(0x00000001)), uint16_t(0x0000)); // float subnormal
        const uint16_t nan = floatToF16(NAN);
        QVERIFY((nan & 0x7c00) == 0x7c00 && (nan & 0x03ff) != 0);
        QVERIFY(std::isnan(f16ToFloat(floatToF16(floatOf(0x7f800001)))));

        QCOMPARE(f16ToFloat(0x3c00), 1.0f);
        QCOMPARE(f16ToFloat(0x7bff), 65504.0f);
        QCOMPARE(f16ToFloat(0xfc00), -INFINITY);
        QCOMPARE(f16ToFloat(0x0001), std::ldexp(1.0f, -24));
        QCOMPARE(f16ToFloat(0x8200), -std::ldexp(1.0f, -15));
        QCOMPARE(bitsOf(f16ToFloat(0x8000)), uint32_t(0x80000000));
        QVERIFY(std::isnan(f16ToFloat(0x7e00)));
        QVERIFY(std::isnan(f16ToFloat(0x7c01)));

        // Decoding against the textbook formula, for every finite half.
        for (uint32_t h = 0; h <= 0xffff; ++h) {
            const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
            if (exponent == 0x1f) continue;
            const double magnitude =
                exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
            const float expected = float((h & 0x8000) ? -magnitude : magnitude);
            QCOMPARE(bitsOf(f16ToFloat(uint16_t(h))), bitsOf(expected));
            QCOMPARE(floatToF16(expected), uint16_t(h));
        }
        // Midpoints between neighbouring halves (exact in float) tie to even.
        for (uint32_t h = 0; h < 0x7bff; ++h) {
            const float mid = float((double(f16ToFloat(uint16_t(h))) + double(f16ToFloat(uint16_t(h + 1)))) / 2);
            const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
            QCOMPARE(floatToF16(mid), even);
            QCOMPARE(floatToF16(std::nextafter(mid, 0.0f)), uint16_t(h));
            QCOMPARE(floatToF16(std::nextafter(mid, INFINITY)), uint16_t(h + 1));
            QCOMPARE(floatToF16(-mid), uint16_t(even | 0x8000));
        }
    }

    // ---- broken safetensors ----------------------------------------------

    void badSafetensors() {
        const fs::path dir = newFolder("bad");
        const std::string name = "model.layers.0.mlp.up_proj.weight";
        auto open = [&](const std::string& file, const std::string& bytes) {
            writeBytes(dir / file, bytes);
            return moe::test::errorMessage([&] { SafetensorsFile f(dir / file); });
        };
        auto check = [&](const std::string& file, const std::string& bytes,
                         std::initializer_list<std::string> parts) {
            const std::string message = open(file, bytes);
            std::string missing;
            QVERIFY2(message.find(file) != std::string::npos,
                     qPrintable(QString::fromStdString("file name missing in: " + message)));
            QVERIFY2(moe::test::containsAll(message, parts, missing),
                     qPrintable(QString::fromStdString("expected \"" + missing + "\" in: " + message)));
        };
        const std::string tensor = "{\"" + name + "\": ";

        check("empty.safetensors", "", {"too short"});
        check("truncated.safetensors", std::string("\x10\x00\x00", 3), {"too short"});
        check("header-past-end.safetensors", littleEndian64(4096) + "{}", {"header length 4096", "past the end"});
        check("huge-header.safetensors", littleEndian64(uint64_t(1) << 62) + "{}", {"header length", "past the end"});
        check("invalid-json.safetensors", rawSafetensors("{\"a\": {\"dtype\": ", 0), {"not valid JSON"});
        check("not-object.safetensors", rawSafetensors("[1, 2]", 0), {"not a JSON object"});
        check("data-past-end.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})", 8),
              {name, "past the end of the file"});
        check("overlap.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                       "other": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                             24),
              {"overlap", "other", name});
        check("size-mismatch.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}})", 16),
              {name, "[3, 2]", "24", "16"});
        check("bad-dtype.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F12", "shape": [4], "data_offsets": [0, 16]}})", 16),
              {name, "F12"});
        check("missing-dtype.safetensors", rawSafetensors(tensor + R"({"shape": [4], "data_offsets": [0, 16]}})", 16),
              {name, "dtype"});
        check("negative-shape.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}})", 16),
              {name, "shape"});
        check("shape-not-list.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", 16),
              {name, "shape"});
        check("reversed-offsets.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})", 16),
              {name, "data_offsets"});
        check("short-offsets.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [4], "data_offsets": [0]}})", 16),
              {name, "data_offsets"});
        check("huge-shape.safetensors",
              rawSafetensors(tensor + R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})",
                             16),
              {name, "shape"});
        check("bad-metadata.safetensors", rawSafetensors(R"({"__metadata__": {"format": 1}})", 0),
              {"__metadata__", "format"});

        // A header over the 100 MB cap is refused before parsing (sparse file).
        {
            const fs::path big = dir / "absurd-header.safetensors";
            writeBytes(big, littleEndian64(150ull << 20) + "{}");
            fs::resize_file(big, 200ull << 20);
            const std::string message = moe::test::errorMessage([&] { SafetensorsFile f(big); });
            QVERIFY2(message.find("absurd-header.safetensors") != std::string::npos &&
                         message.find("absurdly large") != std::string::npos,
                     message.c_str());
            fs::remove(big);
        }

        // The same file, intact, loads.
        writeBytes(dir / "good.safetensors",
                   rawSafetensors(tensor + R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})", 16));
        QCOMPARE(SafetensorsFile(dir / "good.safetensors").tensors().size(), size_t(1));
        EXPECT_ERROR(SafetensorsFile(dir / "absent.safetensors"), "absent.safetensors");
    }

    void badFolders() {
        const std::vector<float> values = {1, 2, 3, 4};
        const std::vector<TensorToWrite> tensors = {{"a", DType::F32, {4}, asBytes(values)},
                                                    {"b", DType::F32, {2, 2}, asBytes(values)}};

        const fs::path missingShard = newFolder("missing-shard");
        writeSafetensors(missingShard / "model-00001-of-00002.safetensors", tensors);
        writeBytes(missingShard / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                      "c": "model-00002-of-00002.safetensors"}})");
        EXPECT_ERROR(WeightStore::openFolder(missingShard), "model.safetensors.index.json",
                     "model-00002-of-00002.safetensors");

        const fs::path missingTensor = newFolder("missing-tensor");
        writeSafetensors(missingTensor / "model-00001-of-00001.safetensors", tensors);
        writeBytes(missingTensor / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "model-00001-of-00001.safetensors",
                                      "zzz.weight": "model-00001-of-00001.safetensors"}})");
        EXPECT_ERROR(WeightStore::openFolder(missingTensor), "model-00001-of-00001.safetensors", "zzz.weight");

        const fs::path badIndex = newFolder("bad-index");
        writeBytes(badIndex / "model.safetensors.index.json", "{\"weight_map\": ");
        EXPECT_ERROR(WeightStore::openFolder(badIndex), "model.safetensors.index.json", "JSON");

        const fs::path noWeights = newFolder("no-weights");
        EXPECT_ERROR(WeightStore::openFolder(noWeights), noWeights.string(), "safetensors");
        EXPECT_ERROR(WeightStore::openFolder(noWeights / "absent"), "absent");

        const fs::path twoFiles = newFolder("two-files");
        writeSafetensors(twoFiles / "x.safetensors", tensors);
        writeSafetensors(twoFiles / "y.safetensors", tensors);
        EXPECT_ERROR(WeightStore::openFolder(twoFiles), twoFiles.string(), "x.safetensors", "y.safetensors");

        // model.safetensors wins over other files; a lone file of any name works.
        writeSafetensors(twoFiles / "model.safetensors", {tensors[0]});
        QCOMPARE(WeightStore::openFolder(twoFiles)->names(), std::vector<std::string>{"a"});
        const fs::path adapter = newFolder("adapter");
        writeSafetensors(adapter / "adapter_model.safetensors", tensors);
        QCOMPARE(WeightStore::openFolder(adapter)->names().size(), size_t(2));
    }

    // ---- config.json -----------------------------------------------------

    // Hostile files (hand-written; the classes fuzz/fuzz_safetensors,
    // fuzz_shard_index and fuzz_config cover): JSON nested a million deep,
    // which nlohmann parses but whose dump() in an error message overflowed
    // the stack, and shard names that leave the model folder.
    void hostileFiles() {
        const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');

        json config = llamaConfig();
        const fs::path deepConfig = newFolder("deep-config");
        writeBytes(deepConfig / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": " +
                                                    deep + "}");
        EXPECT_ERROR(ModelConfig::load(deepConfig), (deepConfig / "config.json").string(), "nested deeper than 64");
        // Values shallow enough to parse are quoted short in messages.
        const fs::path longValue = newFolder("long-value");
        config["hidden_size"] = json::array();
        for (int i = 0; i < 100000; ++i) config["hidden_size"].push_back(i);
        writeBytes(longValue / "config.json", config.dump());
        const std::string message = moe::test::errorMessage([&] { ModelConfig::load(longValue); });
        QVERIFY2(message.find("hidden_size") != std::string::npos && message.find("...") != std::string::npos &&
                     message.size() < 1000,
                 message.c_str());

        // Files are read only up to a size that fits their kind: a config is kilobytes.
        const fs::path bigConfig = newFolder("big-config");
        writeBytes(bigConfig / "config.json", "{\"a\": \"" + std::string(17 << 20, 'x') + "\"}");
        EXPECT_ERROR(ModelConfig::load(bigConfig), (bigConfig / "config.json").string(), "more than the 16 MiB");

        // Sizes that size allocations have upper bounds (head_dim 2^30 asked for a 2 GiB RoPE table).
        config = llamaConfig();
        config["head_dim"] = 1 << 30;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("huge-head-dim", config)), "config.json", "field head_dim",
                     "1073741824 is larger than any model has (at most 4096)");
        config = llamaConfig();
        config["num_hidden_layers"] = 2147483647;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("huge-layers", config)), "field num_hidden_layers",
                     "at most 1024");

        const fs::path deepHeader = tmpPath("deep-header.safetensors");
        const std::string header = "{\"a\": {\"dtype\": \"F32\", \"shape\": " + deep + ", \"data_offsets\": [0, 0]}}";
        writeBytes(deepHeader, rawSafetensors(header, 0));
        EXPECT_ERROR(SafetensorsFile{deepHeader}, deepHeader.string(), "nested deeper than 64");

        const fs::path deepIndex = newFolder("deep-index");
        writeBytes(deepIndex / "model.safetensors.index.json", "{\"weight_map\": " + deep + "}");
        EXPECT_ERROR(WeightStore::openFolder(deepIndex), "model.safetensors.index.json", "nested deeper than 64");

        // Shard names are file names of the folder: "../", absolute and sub-folder paths are refused
        // even when the file they name exists.
        const std::vector<float> values = {1, 2, 3, 4};
        const fs::path outside = newFolder("outside");
        writeSafetensors(outside / "model-00001-of-00001.safetensors", {{"a", DType::F32, {4}, asBytes(values)}});
        const fs::path escaping = newFolder("escaping");
        fs::create_directories(escaping / "sub");
        fs::copy_file(outside / "model-00001-of-00001.safetensors", escaping / "sub" / "model.safetensors");
        for (const std::string& shard : {"../" + outside.filename().string() + "/model-00001-of-00001.safetensors",
                                         (outside / "model-00001-of-00001.safetensors").string(),
                                         std::string("sub/model.safetensors"), std::string(".."), std::string("")}) {
            writeBytes(escaping / "model.safetensors.index.json",
                       json{{"weight_map", {{"a", shard}}}}.dump());
            EXPECT_ERROR(WeightStore::openFolder(escaping), "model.safetensors.index.json", "tensor a",
                         "without a folder part");
        }
    }

    void badConfigs() {
        const fs::path invalid = newFolder("invalid-json");
        writeBytes(invalid / "config.json", "{\"hidden_size\": 256,");
        EXPECT_ERROR(ModelConfig::load(invalid), "config.json", "JSON");

        json c = llamaConfig();
        c["architectures"] = {"GPT2LMHeadModel"};
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("arch", c)), "config.json", "architectures",
                     "GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM");

        c = llamaConfig();
        c.erase("architectures");
        c["model_type"] = "gpt2";
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("model-type", c)), "config.json", "model_type", "gpt2");

        c = llamaConfig();
        c.erase("hidden_size");
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("no-hidden", c)), "config.json", "hidden_size", "missing");

        c = llamaConfig();
        c["intermediate_size"] = -5;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("negative", c)), "config.json", "intermediate_size", "-5");

        c = llamaConfig();
        c["hidden_size"] = 256.5;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("fraction", c)), "config.json", "hidden_size");

        c = llamaConfig();
        c["num_hidden_layers"] = "4";
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("string", c)), "config.json", "num_hidden_layers");

        c = llamaConfig();
        c["num_key_value_heads"] = 3;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("kv-heads", c)), "config.json", "num_key_value_heads");

        c = llamaConfig();
        c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("yarn", c)), "config.json", "rope_scaling", "yarn",
                     "not supported");
        c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("dynamic", c)), "config.json", "rope_scaling", "dynamic",
                     "not supported");
        c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("llama3-partial", c)), "config.json",
                     "rope_scaling.low_freq_factor");

        c = llamaConfig();
        c["hidden_act"] = "gelu";
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("gelu", c)), "config.json", "hidden_act", "gelu");

        c = llamaConfig();
        c["head_dim"] = 33;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("odd-head", c)), "config.json", "head_dim");

        c = llamaConfig();
        c["eos_token_id"] = "</s>";
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("eos", c)), "config.json", "eos_token_id");

        const fs::path genBad = writeConfigFolder("gen", llamaConfig());
        writeBytes(genBad / "generation_config.json", "{oops");
        EXPECT_ERROR(ModelConfig::load(genBad), "generation_config.json");

        const fs::path empty = newFolder("no-config");
        EXPECT_ERROR(ModelConfig::load(empty), empty.string(), "config.json");
        EXPECT_ERROR(ModelConfig::load(empty / "absent"), (empty / "absent").string());
    }

    void configVariants() {
        // Defaults: kv heads = heads, head_dim = hidden / heads, theta 10000.
        json c = llamaConfig();
        c.erase("num_key_value_heads");
        c.erase("head_dim");
        c.erase("rope_theta");
        c["eos_token_id"] = {2, 3};
        c["bos_token_id"] = nullptr;
        fs::path dir = writeConfigFolder("defaults", c);
        writeBytes(dir / "generation_config.json", R"({"eos_token_id": [3, 9], "bos_token_id": 1})");
        auto cfg = ModelConfig::load(dir);
        QCOMPARE(cfg.numKvHeads, 8);
        QCOMPARE(cfg.headDim, 32);
        QCOMPARE(cfg.ropeTheta, 10000.0f);
        QCOMPARE(cfg.eosTokenIds, (std::vector<int>{2, 3, 9}));
        QCOMPARE(cfg.bosTokenIds, std::vector<int>{1});

        // head_dim need not be hidden / heads.
        c = llamaConfig();
        c["head_dim"] = 64;
        cfg = ModelConfig::load(writeConfigFolder("head-dim", c));
        QCOMPARE(cfg.headDim, 64);
        QCOMPARE(cfg.ropeInvFreq.size(), size_t(32));
        QCOMPARE(cfg.attentionScale, 0.125f);

        // Architecture from model_type when architectures is missing.
        c = llamaConfig();
        c.erase("architectures");
        c["model_type"] = "mistral";
        c["sliding_window"] = 4096;
        cfg = ModelConfig::load(writeConfigFolder("mistral", c));
        QCOMPARE(cfg.arch, Arch::Mistral);
        QCOMPARE(cfg.architecture, std::string("MistralForCausalLM"));
        QCOMPARE(cfg.slidingWindow, 4096);
        c["sliding_window"] = nullptr;
        QCOMPARE(ModelConfig::load(writeConfigFolder("mistral-full", c)).slidingWindow, 0);

        // Qwen2: q/k/v biases always; the window only with use_sliding_window.
        c = llamaConfig();
        c["architectures"] = {"Qwen2ForCausalLM"};
        c["model_type"] = "qwen2";
        c["rope_theta"] = 1000000.0;
        c["tie_word_embeddings"] = true;
        c["sliding_window"] = 4096;
        c["use_sliding_window"] = false;
        c["max_window_layers"] = 4;
        cfg = ModelConfig::load(writeConfigFolder("qwen2", c));
        QCOMPARE(cfg.arch, Arch::Qwen2);
        QCOMPARE(cfg.attentionBias, true);
        QCOMPARE(cfg.tieWordEmbeddings, true);
        QCOMPARE(cfg.slidingWindow, 0);
        QCOMPARE(cfg.ropeTheta, 1e6f);
        const double expectedFreq1 = 1.0 / std::pow(1e6, 2.0 / 32);
        QVERIFY(std::abs(cfg.ropeInvFreq[1] - expectedFreq1) <= 1e-6 * expectedFreq1);
        c["use_sliding_window"] = true;
        c["max_window_layers"] = 0;
        QCOMPARE(ModelConfig::load(writeConfigFolder("qwen2-window", c)).slidingWindow, 4096);
        c["max_window_layers"] = 2;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("qwen2-mixed", c)), "config.json", "max_window_layers");

        // Llama's attention_bias is taken from the file.
        c = llamaConfig();
        c["attention_bias"] = true;
        QCOMPARE(ModelConfig::load(writeConfigFolder("llama-bias", c)).attentionBias, true);

        // Qwen3: q/k norms always, attention_bias on q/k/v/o, head_dim 128
        // when missing (Qwen3Config), the window on layers from max_window_layers on.
        c = llamaConfig();
        c["architectures"] = {"Qwen3ForCausalLM"};
        c["model_type"] = "qwen3";
        c.erase("head_dim");
        c["attention_bias"] = true;
        cfg = ModelConfig::load(writeConfigFolder("qwen3", c));
        QCOMPARE(cfg.arch, Arch::Qwen3);
        QVERIFY(cfg.qkNorm && cfg.attentionBias && cfg.outputBias);
        QCOMPARE(cfg.headDim, 128);
        QCOMPARE(cfg.slidingWindow, 0);
        c["head_dim"] = 32;
        c["use_sliding_window"] = true;
        c["sliding_window"] = 64;
        c["max_window_layers"] = 0;
        QCOMPARE(ModelConfig::load(writeConfigFolder("qwen3-window", c)).slidingWindow, 64);
        c["max_window_layers"] = 2;
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("qwen3-mixed", c)), "config.json", "max_window_layers");
        c.erase("max_window_layers");
        c["layer_types"] = {"sliding_attention", "full_attention"};
        EXPECT_ERROR(ModelConfig::load(writeConfigFolder("qwen3-types", c)), "config.json", "layer_types", "4 layer types");
        c["layer_types"] = json::array({"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention"});
        QCOMPARE(ModelConfig::load(writeConfigFolder("qwen3-types-ok", c)).slidingWindow, 64);
    }

    void ropeScaling() {
        // Llama 3.1's values, with the Transformers formula transcribed
        // directly here in doubles.
        const double theta = 500000, factor = 8, lowFreqFactor = 1, highFreqFactor = 4, originalContext = 8192;
        const int headDim = 128;
        json c = llamaConfig();
        c["head_dim"] = headDim;
        c["hidden_size"] = 1024;
        c["rope_theta"] = theta;
        c["rope_scaling"] = {{"rope_type", "llama3"},
                             {"factor", factor},
                             {"low_freq_factor", lowFreqFactor},
                             {"high_freq_factor", highFreqFactor},
                             {"original_max_position_embeddings", int(originalContext)}};
        const auto cfg = ModelConfig::load(writeConfigFolder("llama3", c));
        QCOMPARE(cfg.ropeInvFreq.size(), size_t(headDim / 2));
        int high = 0, low = 0, medium = 0;
        for (int i = 0; i < headDim / 2; ++i) {
            const double base = 1.0 / std::pow(theta, double(2 * i) / headDim);
            const double wavelen = 2 * std::numbers::pi / base;
            double expected;
            if (wavelen < originalContext / highFreqFactor) {
                expected = base;
                ++high;
            } else if (wavelen > originalContext / lowFreqFactor) {
                expected = base / factor;
                ++low;
            } else {
                const double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                expected = (1 - smooth) * base / factor + smooth * base;
                QVERIFY(expected > base / factor && expected < base);
                ++medium;
            }
            QVERIFY2(std::abs(cfg.ropeInvFreq[i] - expected) <= 1e-6 * expected,
                     qPrintable(QString("index %1: %2 vs %3").arg(i).arg(cfg.ropeInvFreq[i]).arg(expected)));
        }
        // All three bands occur with these parameters.
        QVERIFY(high > 0 && low > 0 && medium > 0);
        QCOMPARE(cfg.ropeInvFreq[0], 1.0f);

        // The older "type" key, and linear scaling.
        c["rope_scaling"].erase("rope_type");
        c["rope_scaling"]["type"] = "llama3";
        QCOMPARE(ModelConfig::load(writeConfigFolder("llama3-type", c)).ropeInvFreq, cfg.ropeInvFreq);
        c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
        const auto linear = ModelConfig::load(writeConfigFolder("linear", c));
        for (int i = 0; i < headDim / 2; ++i) {
            const double expected = 1.0 / std::pow(theta, double(2 * i) / headDim) / 4.0;
            QVERIFY(std::abs(linear.ropeInvFreq[i] - expected) <= 1e-6 * expected);
        }
    }
};

QTEST_MAIN(TestModelFiles)
#include "test_model_files.moc"
