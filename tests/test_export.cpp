// Export of a built MoE as a Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint: build a small MoE over the
// shared models (or random Qwen3 ones; 2 epochs, gate_bias = false, token routing), export it,
// load the export natively and compare its logits with the built MoE's
// (fine-tuned and LoRA experts, all layers and a subset, both formats).
// Also: the folder's files (index covers every tensor once, config fields,
// model card), refusal of biased gates, cancel leaves nothing behind.
//
// Tolerances: an f32 export holds the built MoE's weights exactly (BF16/F16
// sources widen exactly) and both run the same RoutedMlp kernels, so logits
// agree to float rounding (NMSE < 1e-9; a wrong expert order or a dropped
// layer gives > 1e-3). A bf16 export rounds every weight (merged LoRA
// experts, the f32 gates) to 8 bits of mantissa; measured NMSE ~3e-8 here.
// The bound 1e-3 leaves room for a rounded gate flipping a near-tied top-k
// choice on some token, and still catches structural errors (wrong expert
// order, unmerged or doubly merged LoRA give > 1e-2).
#include "moe/builder.h"
#include "moe/export.h"
#include "moe/model.h"
#include "reference_model.h"
#include "reference_ops.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

using namespace moe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string quoted(const fs::path& p) { return "\"" + p.string() + "\""; }

json readJson(const fs::path& p) { return json::parse(std::ifstream(p)); }

} // namespace

class TestExport : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir tmp;
    fs::path models;
    int counter = 0;

    fs::path writeSelector(const std::vector<std::string>& experts, const std::string& config) {
        const fs::path dir = fs::path(tmp.path().toStdString()) / ("sel-" + std::to_string(++counter));
        fs::create_directories(dir);
        std::string ids;
        for (const auto& e : experts) ids += (ids.empty() ? "" : ", ") + quoted(models / e);
        std::ofstream(dir / "selector.toml")
            << "[model]\nmodel_id = " << quoted(models / "base") << "\n\n[anymoe]\ndataset_json = "
            << quoted(models / (config.find("include_base = true") != std::string::npos ? "amoe-with-base.json" : "amoe.json"))
            << "\nmodel_ids = [" << ids << "]\n" << "\n[anymoe.config]\nepochs = 2\nrouting = \"token\"\n" << config;
        return dir / "selector.toml";
    }

    // Adds keys to the selector's [anymoe] table (before [anymoe.config]).
    static void addToAnymoeSection(const fs::path& file, const std::string& keys) {
        std::string text;
        {
            std::ifstream in(file);
            text.assign(std::istreambuf_iterator<char>(in), {});
        }
        text.replace(text.find("\n[anymoe.config]"), 0, keys);
        std::ofstream(file) << text;
    }

    // Logits of the built MoE (token routing) and of the natively loaded export.
    double compare(const Selector& s, const fs::path& exported) {
        auto moe = MoeModel::load(*ctx, s);
        // Text of several domains, so that different experts get chosen.
        const auto ids = moe->tokenizer().encode(
            "def parse(path):\n    return open(path).read()\nPermission is hereby granted, free of charge, to any "
            "person obtaining a copy of this software. The kernel schedules processes on each CPU.");
        moe->setRouting(RoutingMode::Token);
        Session a(moe->model(), 64, 8);
        std::vector<float> want, got;
        a.forward(ids, &want);
        auto native = Model::load(*ctx, exported);
        Session b(*native, 64, 8);
        b.forward(ids, &got);
        return test::nmse(got, want);
    }

private slots:
    void initTestCase() {
        models = fs::absolute(test::modelsDir()).lexically_normal();
        if (!fs::is_regular_file(models / "base" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("shared models not found in " + models.string())));
        ctx = std::make_unique<vk::Context>();
    }
    void cleanupTestCase() { ctx.reset(); }

    void fineTunedLayerSubsetF32MatchesBuiltMoe() {
        const fs::path file = writeSelector({"expert-code", "expert-legal", "expert-tech"}, "gate_bias = false\n");
        // layers: only 1 and 3 are routed; 0 and 2 get the base MLP as every expert.
        addToAnymoeSection(file, "layers = [3, 1]\n");
        Selector s = loadSelector(file);
        auto built = buildMoe(*ctx, s);
        QVERIFY(built.moe);
        built.moe.reset();

        const fs::path out = fs::path(tmp.path().toStdString()) / "mixtral-f32";
        ExportOptions o;
        o.out = out;
        o.dtype = "f32";
        o.shardBytes = 8'000'000; // several shards
        // Cancelled: nothing is left behind.
        const std::atomic<bool> cancel{true};
        QVERIFY(exportMoe(s, o, {}, &cancel).cancelled);
        QVERIFY(!fs::exists(out));
        for (const auto& entry : fs::directory_iterator(out.parent_path()))
            QVERIFY2(entry.path().filename().string().find(".tmp-") == std::string::npos, entry.path().c_str());
        size_t lastDone = 0;
        const auto rep = exportMoe(s, o, [&](const ExportProgress& p) { lastDone = p.done; });
        QVERIFY(!rep.cancelled);
        QVERIFY(lastDone > 0);
        QCOMPARE(rep.experts, 3);
        QCOMPARE(rep.expertsPerToken, 2);
        QVERIFY2(!rep.warnings.empty() && rep.warnings[0].find("not chosen") != std::string::npos,
                 rep.warnings.empty() ? "no warning" : rep.warnings[0].c_str());

        // Index: every tensor of every shard listed once, pointing at its shard.
        const json index = readJson(out / "model.safetensors.index.json");
        std::set<std::string> seen;
        size_t shardCount = 0;
        for (const auto& entry : fs::directory_iterator(out)) {
            if (entry.path().extension() != ".safetensors") continue;
            ++shardCount;
            SafetensorsFile f(entry.path());
            for (const auto& [name, t] : f.tensors()) {
                QVERIFY2(seen.insert(name).second, name.c_str());
                QCOMPARE(index["weight_map"][name].get<std::string>(), entry.path().filename().string());
                QCOMPARE(t.dtype, DType::F32);
            }
        }
        QVERIFY(shardCount > 1);
        QCOMPARE(seen.size(), index["weight_map"].size());
        QVERIFY(seen.count("model.layers.0.block_sparse_moe.experts.2.w2.weight"));
        QVERIFY(!seen.count("model.layers.0.mlp.gate_proj.weight"));

        const json config = readJson(out / "config.json");
        QCOMPARE(config["architectures"][0].get<std::string>(), std::string("MixtralForCausalLM"));
        QCOMPARE(config["num_local_experts"].get<int>(), 3);
        QCOMPARE(config["num_experts_per_tok"].get<int>(), 2);
        QCOMPARE(config["torch_dtype"].get<std::string>(), std::string("float32"));
        // Keys whose Mixtral defaults differ from the base's (rope_theta 1e6, rms_norm_eps 1e-5) are explicit.
        QCOMPARE(config["rope_theta"].get<double>(), 10000.0);
        QCOMPARE(config["rms_norm_eps"].get<double>(), 1e-5);
        QCOMPARE(config["num_key_value_heads"].get<int>(), 4);
        for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json", "README.md"})
            QVERIFY2(fs::is_regular_file(out / f), f);
        std::ifstream cardIn(out / "README.md");
        const std::string card((std::istreambuf_iterator<char>(cardIn)), {});
        QVERIFY2(card.find("expert-legal") != std::string::npos && card.find("validation accuracy") != std::string::npos,
                 card.c_str());
        // No temporary folder left beside it.
        for (const auto& entry : fs::directory_iterator(out.parent_path()))
            QVERIFY2(entry.path().filename().string().find(".tmp-") == std::string::npos, entry.path().c_str());

        const double e = compare(s, out);
        qInfo("f32 export vs built MoE: NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));

        // The output folder exists now: a second export refuses to overwrite it.
        const auto msg = test::errorMessage([&] { exportMoe(s, o); });
        QVERIFY2(msg.find("already exists") != std::string::npos, msg.c_str());

        // The same MoE as Qwen2-MoE: layers 0 and 2 stay dense (mlp_only_layers).
        const fs::path qwenOut = fs::path(tmp.path().toStdString()) / "qwen2moe-f32";
        o.out = qwenOut;
        o.format = ExportFormat::Qwen2Moe;
        const auto qrep = exportMoe(s, o);
        QVERIFY(qrep.warnings.empty());
        const json qconfig = readJson(qwenOut / "config.json");
        QCOMPARE(qconfig["model_type"].get<std::string>(), std::string("qwen2_moe"));
        QCOMPARE(qconfig["mlp_only_layers"], json::array({0, 2}));
        QCOMPARE(qconfig["norm_topk_prob"].get<bool>(), true);
        // Transformers 5 reads each layer's attention from layer_types.
        QCOMPARE(qconfig["layer_types"], json(std::vector<std::string>(4, "full_attention")));
        QCOMPARE(qconfig["qkv_bias"].get<bool>(), true);
        QCOMPARE(qconfig["rope_theta"].get<double>(), 10000.0);
        const double qe = compare(s, qwenOut);
        qInfo("f32 qwen2_moe export vs built MoE: NMSE %.3g", qe);
        QVERIFY2(qe < 1e-9, qPrintable(QString("NMSE %1").arg(qe)));
    }

    // The rest of the round-trip matrix: fine-tuned experts on every layer and
    // LoRA experts on layers [1, 3], each exported in both formats (f32).
    void roundTripBothFormats_data() {
        QTest::addColumn<bool>("lora");
        QTest::addColumn<QString>("layers");
        QTest::newRow("fine-tuned, all layers") << false << QString();
        QTest::newRow("lora, layers 1 and 3") << true << QString("layers = [1, 3]\n");
    }

    void roundTripBothFormats() {
        QFETCH(bool, lora);
        QFETCH(QString, layers);
        const std::vector<std::string> experts = lora ? std::vector<std::string>{"lora-code", "lora-legal", "lora-tech"}
                                                      : std::vector<std::string>{"expert-code", "expert-legal", "expert-tech"};
        const fs::path file =
            writeSelector(experts, std::string("gate_bias = false\n") + (lora ? "[anymoe.config.expert_type.lora_adapter]\n" : ""));
        addToAnymoeSection(file, layers.toStdString());
        Selector s = loadSelector(file);
        auto built = buildMoe(*ctx, s);
        QVERIFY(built.moe);
        built.moe.reset();
        for (const ExportFormat format : {ExportFormat::Mixtral, ExportFormat::Qwen2Moe}) {
            ExportOptions o;
            o.out = fs::path(tmp.path().toStdString()) / ("round-trip-" + std::to_string(++counter));
            o.dtype = "f32";
            o.format = format;
            const auto rep = exportMoe(s, o);
            QCOMPARE(rep.experts, 3);
            const json config = readJson(o.out / "config.json");
            if (format == ExportFormat::Qwen2Moe)
                QCOMPARE(config["mlp_only_layers"], layers.isEmpty() ? json::array() : json::array({0, 2}));
            const double e = compare(s, o.out);
            qInfo("%s f32 export vs built MoE: NMSE %.3g", format == ExportFormat::Mixtral ? "mixtral" : "qwen2_moe", e);
            QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
        }
    }

    void loraWithBaseBf16MatchesBuiltMoe() {
        const fs::path file = writeSelector({"lora-code", "lora-legal", "lora-tech"},
                                            "gate_bias = false\ninclude_base = true\ntop_k = 2\n"
                                            "[anymoe.config.expert_type.lora_adapter]\n");
        Selector s = loadSelector(file);
        auto built = buildMoe(*ctx, s);
        QVERIFY(built.moe);
        built.moe.reset();
        const fs::path out = fs::path(tmp.path().toStdString()) / "mixtral-lora-bf16";
        ExportOptions o;
        o.out = out;
        o.dtype = "bf16";
        const auto rep = exportMoe(s, o);
        QCOMPARE(rep.experts, 4); // the base + 3 LoRA experts, merged
        QVERIFY(rep.warnings.empty());
        const double e = compare(s, out);
        qInfo("bf16 LoRA export vs built MoE: NMSE %.3g", e);
        QVERIFY2(e < 1e-3, qPrintable(QString("NMSE %1").arg(e)));
        QVERIFY(e > 0); // bf16 rounding must show: the experts really were re-encoded
    }

    // A MoE on a random Qwen3 base (q/k norms, attention_bias on q/k/v/o,
    // tied head) from random fine-tunes of its shape, layers 0 and 2 of 3:
    // exported as Qwen3MoeForCausalLM (the default format for this base), it
    // loads back as a native qwen3_moe with the built MoE's logits (f32: to
    // float rounding, as above), layer 1 dense through mlp_only_layers.
    void qwen3BaseExportsAsQwen3Moe() {
        const fs::path root = fs::path(tmp.path().toStdString()) / "qwen3";
        test::ref::Spec spec{"qwen3", 48, 80, 3, 4, 2, 16, 4096};
        spec.tied = true;
        spec.attentionBias = true;
        for (const char* name : {"base", "e0", "e1", "e2"}) {
            fs::create_directories(root / name);
            test::ref::writeModel(root / name, spec, name[0] == 'b' ? 7u : 20u + uint32_t(name[1] - '0'));
            for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
                if (fs::exists(models / "base" / f)) fs::copy_file(models / "base" / f, root / name / f);
        }
        std::ofstream(root / "selector.toml")
            << "[model]\nmodel_id = " << quoted(root / "base") << "\n\n[anymoe]\ndataset_json = " << quoted(models / "amoe.json")
            << "\nmodel_ids = [" << quoted(root / "e0") << ", " << quoted(root / "e1") << ", " << quoted(root / "e2")
            << "]\nlayers = [0, 2]\n\n[anymoe.config]\nepochs = 2\nrouting = \"token\"\ngate_bias = false\n";
        const Selector s = loadSelector(root / "selector.toml");
        QVERIFY(buildMoe(*ctx, s).moe);
        QCOMPARE(defaultExportFormat(s), ExportFormat::Qwen3Moe);

        // Mixtral and Qwen2-MoE have no q/k norms: refused, naming the format that fits.
        for (const ExportFormat other : {ExportFormat::Mixtral, ExportFormat::Qwen2Moe}) {
            ExportOptions o;
            o.out = root / "refused";
            o.format = other;
            const std::string msg = test::errorMessage([&] { exportMoe(s, o); });
            QVERIFY2(msg.find("config.json") != std::string::npos && msg.find("export it as qwen3_moe") != std::string::npos,
                     msg.c_str());
            QVERIFY(!fs::exists(o.out));
        }

        ExportOptions o;
        o.out = root / "qwen3moe-f32";
        o.dtype = "f32";
        o.format = ExportFormat::Qwen3Moe;
        const auto rep = exportMoe(s, o);
        QCOMPARE(rep.experts, 3);
        QVERIFY(rep.warnings.empty());

        // Config keys as Transformers' Qwen3MoeConfig reads them, those
        // whose defaults differ from the built MoE written out.
        const json config = readJson(o.out / "config.json");
        QCOMPARE(config["architectures"][0].get<std::string>(), std::string("Qwen3MoeForCausalLM"));
        QCOMPARE(config["model_type"].get<std::string>(), std::string("qwen3_moe"));
        QCOMPARE(config["num_experts"].get<int>(), 3);
        QCOMPARE(config["num_experts_per_tok"].get<int>(), 2);
        QCOMPARE(config["moe_intermediate_size"].get<int>(), 80);
        QCOMPARE(config["intermediate_size"].get<int>(), 80); // the dense layer's
        QCOMPARE(config["decoder_sparse_step"].get<int>(), 1);
        QCOMPARE(config["mlp_only_layers"], json::array({1}));
        QCOMPARE(config["norm_topk_prob"].get<bool>(), true); // Qwen3MoeConfig's default is false
        QCOMPARE(config["head_dim"].get<int>(), 16);          // its default is hidden / heads = 12
        QCOMPARE(config["num_key_value_heads"].get<int>(), 2);
        QCOMPARE(config["attention_bias"].get<bool>(), true);
        QCOMPARE(config["use_sliding_window"].get<bool>(), false);
        QVERIFY(!config.contains("shared_expert_intermediate_size") && !config.contains("qkv_bias"));

        // Tensors: the base's q/k norms and o bias as they are, experts on
        // layers 0 and 2 under Qwen3-MoE's names, layer 1's dense MLP.
        std::set<std::string> names;
        for (const auto& entry : fs::directory_iterator(o.out))
            if (entry.path().extension() == ".safetensors") {
                const SafetensorsFile f(entry.path());
                for (const auto& [name, t] : f.tensors()) names.insert(name);
            }
        for (const char* want : {"model.layers.0.self_attn.q_norm.weight", "model.layers.2.self_attn.k_norm.weight",
                                 "model.layers.1.self_attn.o_proj.bias", "model.layers.0.mlp.gate.weight",
                                 "model.layers.2.mlp.experts.2.down_proj.weight", "model.layers.1.mlp.up_proj.weight"})
            QVERIFY2(names.count(want), want);
        for (const char* unwanted : {"model.layers.0.mlp.shared_expert.up_proj.weight", "model.layers.1.mlp.gate.weight",
                                     "model.layers.0.mlp.gate_proj.weight", "lm_head.weight"})
            QVERIFY2(!names.count(unwanted), unwanted);

        const ModelConfig native = ModelConfig::load(o.out);
        QCOMPARE(native.arch, Arch::Qwen3Moe);
        QVERIFY(native.isSparseLayer(0) && !native.isSparseLayer(1) && native.isSparseLayer(2));
        const double e = compare(s, o.out);
        qInfo("f32 qwen3_moe export vs built MoE: NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));

        // qwen3_moe on a base without q/k norms (the shared Llama) is refused.
        const Selector llama = loadSelector(writeSelector({"expert-code", "expert-legal", "expert-tech"}, "gate_bias = false\n"));
        QCOMPARE(defaultExportFormat(llama), ExportFormat::Mixtral);
        o.out = root / "llama-as-qwen3moe";
        const std::string msg = test::errorMessage([&] { exportMoe(llama, o); });
        QVERIFY2(msg.find("qwen3_moe (Qwen3MoeForCausalLM) takes a Qwen3 base") != std::string::npos, msg.c_str());
        QVERIFY(!fs::exists(o.out));
    }

    void biasedGatesAreRefused() {
        const fs::path file = writeSelector({"expert-code", "expert-legal", "expert-tech"}, "gate_bias = true\n");
        Selector s = loadSelector(file);
        QVERIFY(buildMoe(*ctx, s).moe);
        const fs::path out = fs::path(tmp.path().toStdString()) / "biased";
        ExportOptions o;
        o.out = out;
        auto msg = test::errorMessage([&] { exportMoe(s, o); });
        QVERIFY2(msg.find("gate_bias = false") != std::string::npos && msg.find("selector.toml") != std::string::npos,
                 msg.c_str());
        QVERIFY(!fs::exists(out));
    }

    void shardSizesParse() {
        QCOMPARE(parseByteSize("5GB"), 5'000'000'000ull);
        QCOMPARE(parseByteSize("500MB"), 500'000'000ull);
        QCOMPARE(parseByteSize("2GiB"), 2147483648ull);
        QCOMPARE(parseByteSize("1024"), 1024ull);
        const auto msg = test::errorMessage([] { parseByteSize("5 parsecs"); });
        QVERIFY2(msg.find("5 parsecs") != std::string::npos, msg.c_str());
    }
};

QTEST_GUILESS_MAIN(TestExport)
#include "test_export.moc"
