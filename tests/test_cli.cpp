// moe-cli end to end: devices, info, generate --json (greedy tokens equal the
// torch reference), and clear errors for bad input.
#include "reference_model.h"
#include "test_paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

using nlohmann::json;

namespace {

struct Run {
    int exitCode = -1;
    std::string out, err;
};

// Validation-layer messages moe-cli printed (under MOE_VK_VALIDATION=1):
// the suite fails at the end if there were any.
int validationMessages = 0;

Run runCli(const QStringList& args, const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
    QProcess p;
    p.setProcessEnvironment(env);
    p.start(MOE_CLI, args);
    p.waitForFinished(300000);
    Run r{p.exitCode(), p.readAllStandardOutput().toStdString(), p.readAllStandardError().toStdString()};
    for (size_t at = r.err.find("[vulkan validation]"); at != std::string::npos; at = r.err.find("[vulkan validation]", at + 1))
        ++validationMessages;
    return r;
}

QString modelPath(const char* name) { return QString::fromStdString((moe::test::modelsDir() / name).string()); }

} // namespace

class TestCli : public QObject {
    Q_OBJECT
private slots:
    void cleanupTestCase() { QCOMPARE(validationMessages, 0); }

    void devicesListsAtLeastOne() {
        auto r = runCli({"devices", "--json"});
        QCOMPARE(r.exitCode, 0);
        auto j = json::parse(r.out);
        QVERIFY(j.is_array() && !j.empty());
        QVERIFY(j[0]["subgroup_size"].get<int>() > 0);
        QVERIFY(j[0]["max_storage_buffer_range"].get<uint64_t>() > 0);
        QVERIFY(!j[0]["memory_heaps"].empty());
    }

    void infoReportsTheModel() {
        auto r = runCli({"info", "--model", modelPath("base"), "--json"});
        QCOMPARE(r.exitCode, 0);
        auto j = json::parse(r.out);
        QCOMPARE(j["layers"].get<int>(), 4);
        QCOMPARE(j["hidden_size"].get<int>(), 256);
        QCOMPARE(j["parameters"].get<uint64_t>(), uint64_t(4999424));
        QCOMPARE(QString::fromStdString(j["dtype"].get<std::string>()), QString("BF16"));
        QCOMPARE(j["chat_template"].get<bool>(), true);
    }

    // A GGUF that llama.cpp wrote (its Llama vocabulary, no tensors): header facts, and "not runnable" with the reason.
    void infoReadsAGgufHeader() {
        const auto file = moe::test::testDataDir() / "llama.cpp-vocab" / "ggml-vocab-llama-spm.gguf";
        if (!std::filesystem::exists(file)) QSKIP("llama.cpp vocab GGUF not fetched (packaging/fetch-test-data.sh)");
        auto r = runCli({"info", "--model", QString::fromStdString(file.string()), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = json::parse(r.out);
        QCOMPARE(j["format"].get<std::string>(), std::string("gguf"));
        QCOMPARE(j["architecture"].get<std::string>(), std::string("llama"));
        QCOMPARE(j["tokenizer"].get<std::string>(), std::string("llama"));
        QCOMPARE(j["tokenizer_vocab"].get<int>(), 32000);
        QCOMPARE(j["tensors"].get<int>(), 0);
        QCOMPARE(j["runnable"].get<bool>(), false);
        QVERIFY(j["not_runnable_because"].get<std::string>().find("token_embd.weight") != std::string::npos);
        QTemporaryDir dir;
        const QString bad = dir.filePath("bad.gguf");
        std::ofstream(bad.toStdString()) << "GGUF\x03";
        r = runCli({"info", "--model", bad});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find(bad.toStdString()) != std::string::npos && r.err.find("truncated") != std::string::npos,
                 r.err.c_str());
    }

    void infoReportsMixtralExperts() {
        moe::test::ref::Spec s{"mixtral", 32, 48, 2, 4, 2, 8, 61};
        s.experts = 4;
        s.topK = 2;
        QTemporaryDir dir;
        moe::test::ref::writeModel(dir.path().toStdString(), s, 1);
        auto r = runCli({"info", "--model", dir.path(), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto j = json::parse(r.out);
        QCOMPARE(j["experts"].get<int>(), 4);
        QCOMPARE(j["experts_per_token"].get<int>(), 2);
        // Two idle experts (3·H·I each) per layer are not active.
        const uint64_t total = j["parameters"].get<uint64_t>();
        QCOMPARE(j["active_parameters"].get<uint64_t>(), total - 2 * 2 * 3 * 32 * 48);
        r = runCli({"info", "--model", dir.path()});
        QVERIFY2(r.out.find("4 per layer, top-2 per token") != std::string::npos, r.out.c_str());
    }

    // bench on a native MoE against a dense model with its active parameters:
    // same attention, an MLP of top_k x the expert width. The MoE's active
    // count is then the dense count plus the routers (experts x hidden per layer).
    void benchComparesNativeMoeWithDense() {
        moe::test::ref::Spec moeSpec{"mixtral", 32, 48, 2, 4, 2, 8, 61};
        moeSpec.experts = 4;
        moeSpec.topK = 2;
        const moe::test::ref::Spec denseSpec{"mistral", 32, 2 * 48, 2, 4, 2, 8, 61};
        QTemporaryDir moeDir, denseDir;
        moe::test::ref::writeModel(moeDir.path().toStdString(), moeSpec, 1);
        moe::test::ref::writeModel(denseDir.path().toStdString(), denseSpec, 2);
        auto r = runCli({"bench", "--model", moeDir.path(), "--dense", denseDir.path(), "--prompt-tokens", "8",
                         "--gen-tokens", "8", "--json", "--profile"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto j = json::parse(r.out);
        QCOMPARE(j["experts"].get<int>(), 4);
        // The profile's dispatches per decode step add up to the step's count.
        double profiled = 0;
        for (const auto& e : j["profile"]["decode"]) profiled += e["dispatches_per_step"].get<double>();
        QCOMPARE(profiled, double(j["decode_dispatches_per_token"].get<uint32_t>()));
        QVERIFY(!j["profile"]["prefill"].empty());
        QCOMPARE(j["experts_per_token"].get<int>(), 2);
        QCOMPARE(j["active_parameters"].get<uint64_t>(), j["dense_parameters"].get<uint64_t>() + 2 * 4 * 32);
        QVERIFY(j["decode_tokens_per_second"].get<double>() > 0);
        QVERIFY(j["dense_decode_tokens_per_second"].get<double>() > 0);
        QCOMPARE(j["decode_speed_over_dense"].get<double>(),
                 j["decode_tokens_per_second"].get<double>() / j["dense_decode_tokens_per_second"].get<double>());
        r = runCli({"bench", "--model", moeDir.path(), "--dense", denseDir.path(), "--prompt-tokens", "8",
                    "--gen-tokens", "8"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("dense compare") != std::string::npos && r.out.find("active parameters") != std::string::npos,
                 r.out.c_str());
    }

    // bench --selector under --expert-budget: the MoE is built (random gates,
    // token routing: no dataset, no training), then decoded with a budget of
    // one fine-tuned expert per MoE layer. Each decode step routes one token
    // to top-2 experts in each of the 2 MoE layers, and every miss uploads one
    // expert: gate, up and down of the 16-bit checkpoints.
    void benchSelectorHonoursTheExpertBudget() {
        QTemporaryDir dir;
        const auto m = std::filesystem::absolute(moe::test::modelsDir());
        const std::string sel = dir.filePath("moe.toml").toStdString();
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (m / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
                           << (m / "expert-code").string() << "\", \"" << (m / "expert-legal").string() << "\", \""
                           << (m / "expert-tech").string()
                           << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\ngate_mode = \"random\"\nrouting = \"token\"\n"
                              "top_k = 2\n";
        const uint64_t oneExpert = 3ull * 256 * 688 * 2;
        const QString budget = QString::number(2 * oneExpert); // one expert per MoE layer
        auto r = runCli({"bench", "--selector", QString::fromStdString(sel), "--expert-budget", budget,
                         "--prompt-tokens", "8", "--gen-tokens", "6", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = json::parse(r.out);
        QVERIFY2(j.contains("expert_cache"), r.out.c_str());
        const auto& decode = j["expert_cache"]["decode"];
        QCOMPARE(decode["budget_bytes"].get<uint64_t>(), 2 * oneExpert);
        QCOMPARE(decode["pageable_bytes"].get<uint64_t>(), 2 * 3 * oneExpert);
        const uint64_t hits = decode["hits"].get<uint64_t>(), misses = decode["misses"].get<uint64_t>();
        QCOMPARE(hits + misses, uint64_t(6 * 2 * 2));
        QVERIFY(misses > 0); // two experts per layer never fit a one-expert budget
        QCOMPARE(decode["bytes_uploaded"].get<uint64_t>(), misses * oneExpert);
        QCOMPARE(decode["bytes_uploaded_per_token"].get<double>(), double(misses * oneExpert) / 6);
        QCOMPARE(decode["hit_rate"].get<double>(), double(hits) / double(hits + misses));
        // A layer keeps the experts one step needs even beyond the budget: the
        // 8-token prefill may leave all 3 of a layer's experts resident.
        QVERIFY(decode["peak_resident_bytes"].get<uint64_t>() <= 3 * oneExpert);
        QVERIFY(j["moe_decode_tokens_per_second"].get<double>() > 0);

        r = runCli({"bench", "--selector", QString::fromStdString(sel), "--expert-budget", budget, "--prompt-tokens",
                    "8", "--gen-tokens", "6"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("expert cache") != std::string::npos && r.out.find("hit rate") != std::string::npos &&
                     r.out.find("uploaded per token") != std::string::npos,
                 r.out.c_str());
    }

    // A MoE on a Gemma base: no format holds it (no standard Gemma MoE
    // exists; llama.cpp runs no Gemma with experts), so every export format
    // refuses with that reason and writes nothing.
    void exportOfAGemmaMoeIsRefused() {
        QTemporaryDir dir;
        const std::filesystem::path root = dir.path().toStdString();
        const moe::test::ref::Spec s{"gemma2", 32, 48, 2, 2, 1, 16, 4096, 8, true};
        for (const char* name : {"base", "e0", "e1", "e2"}) {
            std::filesystem::create_directories(root / name);
            moe::test::ref::writeModel(root / name, s, name[0] == 'b' ? 1 : 2 + uint32_t(name[1]));
            for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
                if (std::filesystem::exists(moe::test::modelsDir() / "base" / f))
                    std::filesystem::copy_file(moe::test::modelsDir() / "base" / f, root / name / f);
        }
        const std::string m = std::filesystem::absolute(moe::test::modelsDir()).string();
        const QString sel = dir.path() + "/sel.toml";
        std::ofstream(sel.toStdString()) << "[model]\nmodel_id = \"" << (root / "base").string() << "\"\n\n[anymoe]\n"
                                         << "dataset_json = \"" << m << "/amoe.json\"\nmodel_ids = [\""
                                         << (root / "e0").string() << "\", \"" << (root / "e1").string() << "\", \""
                                         << (root / "e2").string() << "\"]\n\n[anymoe.config]\n";
        for (const char* format : {"mixtral", "qwen2_moe"}) {
            const auto r = runCli({"export", sel, "--out", dir.path() + "/out", "--format", format});
            QCOMPARE(r.exitCode, 1);
            QVERIFY2(r.err.find("no standard sparse-MoE checkpoint format exists for Gemma") != std::string::npos &&
                         r.err.find("Gemma2ForCausalLM") != std::string::npos,
                     r.err.c_str());
        }
        const auto r = runCli({"export", sel, "--out", dir.path() + "/out.gguf", "--format", "gguf"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("llama.cpp's gemma2 architecture has no experts") != std::string::npos &&
                     r.err.find("no llama.cpp build could run") != std::string::npos,
                 r.err.c_str());
        QVERIFY(!QFileInfo::exists(dir.path() + "/out"));
        QVERIFY(!QFileInfo::exists(dir.path() + "/out.gguf"));
    }

    // A selector of a random base `s` and three random fine-tunes of it (with
    // the demo tokenizer) in `root`; returns the selector's path.
    static QString tinyFineTunedSelector(const std::filesystem::path& root, const moe::test::ref::Spec& s) {
        for (const char* name : {"base", "e0", "e1", "e2"}) {
            std::filesystem::create_directories(root / name);
            moe::test::ref::writeModel(root / name, s, name[0] == 'b' ? 1 : 2 + uint32_t(name[1]));
            for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
                if (std::filesystem::exists(moe::test::modelsDir() / "base" / f))
                    std::filesystem::copy_file(moe::test::modelsDir() / "base" / f, root / name / f);
        }
        const std::string m = std::filesystem::absolute(moe::test::modelsDir()).string();
        const std::filesystem::path sel = root / "sel.toml";
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (root / "base").string() << "\"\n\n[anymoe]\n"
                           << "dataset_json = \"" << m << "/amoe.json\"\nmodel_ids = [\"" << (root / "e0").string()
                           << "\", \"" << (root / "e1").string() << "\", \"" << (root / "e2").string()
                           << "\"]\n\n[anymoe.config]\n";
        return QString::fromStdString(sel.string());
    }

    // A MoE on a Phi-3 base: PhimoeForCausalLM's layout differs (LayerNorm
    // with biases, sparsemixer routing), so every format refuses with that
    // reason and writes nothing.
    void exportOfAPhi3MoeIsRefused() {
        QTemporaryDir dir;
        moe::test::ref::Spec s{"phi3", 32, 48, 2, 2, 1, 16, 4096};
        s.partialRotary = 0.5;
        const QString sel = tinyFineTunedSelector(dir.path().toStdString(), s);
        for (const char* format : {"mixtral", "qwen2_moe", "qwen3_moe"}) {
            const auto r = runCli({"export", sel, "--out", dir.path() + "/out", "--format", format});
            QCOMPARE(r.exitCode, 1);
            QVERIFY2(r.err.find("PhimoeForCausalLM") != std::string::npos && r.err.find("Phi3ForCausalLM") != std::string::npos &&
                         r.err.find("sparsemixer") != std::string::npos,
                     r.err.c_str());
        }
        const auto r = runCli({"export", sel, "--out", dir.path() + "/out.gguf", "--format", "gguf"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("PhimoeForCausalLM") != std::string::npos && r.err.find("none is written") != std::string::npos,
                 r.err.c_str());
        QVERIFY(!QFileInfo::exists(dir.path() + "/out"));
        QVERIFY(!QFileInfo::exists(dir.path() + "/out.gguf"));
    }

    // A MoE on a Phi-2 base: no standard MoE format or llama.cpp architecture
    // holds its layers (LayerNorm with biases, parallel residual, ungated MLP
    // with biases); every format refuses with that reason and writes nothing.
    void exportOfAPhi2MoeIsRefused() {
        QTemporaryDir dir;
        moe::test::ref::Spec s{"phi2", 32, 48, 2, 2, 2, 16, 4096};
        s.partialRotary = 0.5;
        const QString sel = tinyFineTunedSelector(dir.path().toStdString(), s);
        for (const char* format : {"mixtral", "qwen2_moe", "gguf"}) {
            const QString out = dir.path() + (std::string(format) == "gguf" ? "/out.gguf" : "/out");
            const auto r = runCli({"export", sel, "--out", out, "--format", format});
            QCOMPARE(r.exitCode, 1);
            QVERIFY2(r.err.find("PhiForCausalLM") != std::string::npos && r.err.find("Phixtral") != std::string::npos &&
                         r.err.find("none is written") != std::string::npos,
                     r.err.c_str());
        }
        QVERIFY(!QFileInfo::exists(dir.path() + "/out"));
        QVERIFY(!QFileInfo::exists(dir.path() + "/out.gguf"));
    }

    void exportNeedsABuiltMoeAndAKnownFormat() {
        QTemporaryDir dir;
        const std::string m = std::filesystem::absolute(moe::test::modelsDir()).string();
        const QString sel = dir.path() + "/sel.toml";
        std::ofstream(sel.toStdString()) << "[model]\nmodel_id = \"" << m << "/base\"\n\n[anymoe]\ndataset_json = \"" << m
                                         << "/amoe.json\"\nmodel_ids = [\"" << m << "/expert-code\", \"" << m
                                         << "/expert-legal\", \"" << m << "/expert-tech\"]\n\n[anymoe.config]\n";
        auto r = runCli({"export", sel, "--out", dir.path() + "/out"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("build the MoE first") != std::string::npos && r.err.find("gate") != std::string::npos,
                 r.err.c_str());
        r = runCli({"export", sel, "--out", dir.path() + "/out", "--format", "safetensors"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("mixtral, qwen2_moe, qwen3_moe or gguf") != std::string::npos, r.err.c_str());
        // GGUF export of an unbuilt MoE says the same as the folder export.
        r = runCli({"export", sel, "--out", dir.path() + "/out.gguf", "--format", "gguf"});
        QVERIFY2(r.exitCode == 1 && r.err.find("build the MoE first") != std::string::npos, r.err.c_str());
        r = runCli({"export", sel, "--out", dir.path() + "/out.gguf", "--format", "gguf", "--dtype", "q3_k"});
        QVERIFY2(r.exitCode == 1 && r.err.find("q4_k_m") != std::string::npos, r.err.c_str());
        r = runCli({"export", sel, "--out", dir.path() + "/out", "--shard-size", "lots"});
        QVERIFY2(r.exitCode == 1 && r.err.find("lots") != std::string::npos, r.err.c_str());
        QVERIFY(!QFileInfo::exists(dir.path() + "/out"));
    }

    void greedyGenerateMatchesReference() {
        std::ifstream in(moe::test::modelsDir() / "reference" / "reference.json");
        auto ref = json::parse(in)["models"]["base"][0];
        auto r = runCli({"generate", "--model", modelPath("base"), "--prompt",
                         QString::fromStdString(ref["text"].get<std::string>()), "--temperature", "0", "-n", "12", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto j = json::parse(r.out);
        QCOMPARE(j["prompt_ids"].get<std::vector<int>>(), ref["token_ids"].get<std::vector<int>>());
        auto expected = ref["greedy_new_ids"].get<std::vector<int>>();
        expected.resize(12);
        QCOMPARE(j["token_ids"].get<std::vector<int>>(), expected);
        QVERIFY(j["decode_tokens_per_second"].get<double>() > 0);
    }

    // --thinking on|off: the chat template's enable_thinking. The demo base
    // with Qwen3's real template (fetched test data; chat_template.jinja
    // takes precedence): off renders the empty think block after the reply
    // prompt, so the prompt grows; on is the default;
    // without --chat the option is refused.
    void thinkingSwitchReachesTheTemplate() {
        const std::filesystem::path qwen3 = moe::test::testDataDir() / "qwen3" / "tokenizer_config.json";
        if (!std::filesystem::exists(qwen3)) {
            if (qgetenv("MOE_REQUIRE_TESTDATA") == "1") QFAIL(qPrintable(QString::fromStdString(qwen3.string() + ": missing")));
            QSKIP("no qwen3 test data");
        }
        QTemporaryDir dir;
        const std::filesystem::path model = std::filesystem::path(dir.path().toStdString()) / "model";
        std::filesystem::create_directories(model);
        for (const auto& entry : std::filesystem::directory_iterator(moe::test::modelsDir() / "base"))
            std::filesystem::create_symlink(std::filesystem::absolute(entry.path()), model / entry.path().filename());
        std::ofstream(model / "chat_template.jinja") << json::parse(std::ifstream(qwen3))["chat_template"].get<std::string>();
        auto prompt = [&](const QStringList& extra) {
            auto r = runCli(QStringList{"generate", "--model", QString::fromStdString(model.string()), "--prompt", "Hi",
                                        "--chat", "-n", "1", "--temperature", "0", "--json"} + extra);
            if (r.exitCode != 0) return std::vector<int>{-1};
            return json::parse(r.out)["prompt_ids"].get<std::vector<int>>();
        };
        const auto thinking = prompt({}), on = prompt({"--thinking", "on"}), off = prompt({"--thinking", "off"});
        QVERIFY(thinking.size() > 1);
        QCOMPARE(on, thinking);
        QVERIFY2(off.size() > thinking.size(), "--thinking off should add the think block to the prompt");
        auto r = runCli({"generate", "--model", QString::fromStdString(model.string()), "--prompt", "Hi", "--thinking", "off"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("--thinking needs --chat") != std::string::npos, r.err.c_str());
        r = runCli({"generate", "--model", QString::fromStdString(model.string()), "--prompt", "Hi", "--chat", "--thinking", "maybe"});
        QVERIFY(r.exitCode != 0);
        QVERIFY2(r.err.find("--thinking") != std::string::npos, r.err.c_str());
    }

    // GGUF files as --model and in selectors: llama.cpp's F16 file of the base
    // generates what the safetensors base does (its tokenizer from the file);
    // a Q4_K_M base with GGUF experts builds and decodes as a MoE.
    void ggufModelsEndToEnd() {
        const auto g = std::filesystem::absolute(moe::test::testDataDir() / "gguf");
        if (!std::filesystem::exists(g / "base-f16.gguf")) {
            const char* need = std::getenv("MOE_REQUIRE_TESTDATA");
            if (need && *need && std::string(need) != "0") QFAIL("no .testdata/gguf: run packaging/make-test-ggufs.sh");
            QSKIP("no .testdata/gguf (packaging/make-test-ggufs.sh)");
        }
        const QString prompt = "The license grants";
        auto st = runCli({"generate", "--model", modelPath("base"), "--prompt", prompt, "--temperature", "0", "-n", "12", "--json"});
        auto gg = runCli({"generate", "--model", QString::fromStdString((g / "base-f16.gguf").string()), "--prompt", prompt,
                          "--temperature", "0", "-n", "12", "--json"});
        QVERIFY2(st.exitCode == 0, st.err.c_str());
        QVERIFY2(gg.exitCode == 0, gg.err.c_str());
        const auto a = json::parse(st.out), b = json::parse(gg.out);
        QCOMPARE(b["prompt_ids"].get<std::vector<int>>(), a["prompt_ids"].get<std::vector<int>>());
        QCOMPARE(b["token_ids"].get<std::vector<int>>(), a["token_ids"].get<std::vector<int>>());

        auto q = runCli({"generate", "--model", QString::fromStdString((g / "base-f16.gguf").string()), "--prompt", prompt,
                         "--quantize", "q8_0", "-n", "4", "--json"});
        QVERIFY2(q.exitCode == 0, q.err.c_str());
        QCOMPARE(json::parse(q.out)["token_ids"].size(), size_t(4));
        auto bad = runCli({"generate", "--model", modelPath("base"), "--prompt", prompt, "--quantize", "q3_k"});
        QCOMPARE(bad.exitCode, 1);
        QVERIFY2(bad.err.find("--quantize q3_k") != std::string::npos, bad.err.c_str());

        QTemporaryDir dir;
        const std::string sel = dir.filePath("moe.toml").toStdString();
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (g / "base-q4_k_m.gguf").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
                           << (g / "expert-code-q4_k_m.gguf").string() << "\", \"" << (g / "expert-code-f16.gguf").string()
                           << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\ngate_mode = \"random\"\nrouting = \"token\"\n"
                              "top_k = 2\n";
        auto r = runCli({"bench", "--selector", QString::fromStdString(sel), "--prompt-tokens", "8", "--gen-tokens", "4",
                         "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY(json::parse(r.out)["moe_decode_tokens_per_second"].get<double>() > 0);
    }

    void streamsTextAndPrintsRates() {
        auto r = runCli({"generate", "--model", modelPath("base"), "--prompt", "import os", "-n", "8", "--seed", "3"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(!r.out.empty());
        QVERIFY2(r.err.find("tokens/s") != std::string::npos, r.err.c_str());
    }

    // build → route-eval → generate --selector → perplexity --selector, all as a
    // user runs them; a short training keeps it quick (the accuracy floors are
    // checked in test_moe_build).
    void moeCommandsEndToEnd() {
        QTemporaryDir dir;
        const auto m = std::filesystem::absolute(moe::test::modelsDir());
        const std::string sel = dir.filePath("moe.toml").toStdString();
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (m / "base").string() << "\"\n\n[anymoe]\ndataset_json = \""
                           << (m / "amoe.json").string() << "\"\nmodel_ids = [\"" << (m / "lora-code").string()
                           << "\", \"" << (m / "lora-legal").string() << "\", \"" << (m / "lora-tech").string()
                           << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\nepochs = 2\nbatch_size = 8\n"
                              "loss_csv_path = \"loss.csv\"\nexpert_type = \"lora_adapter\"\nrouting = \"running\"\n";
        auto r = runCli({"build", QString::fromStdString(sel), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto b = json::parse(r.out);
        QCOMPARE(b["layers"].size(), size_t(2));
        QCOMPARE(b["layers"][0]["layer"].get<int>(), 1);
        QVERIFY(b["layers"][1]["val_accuracy_token"].get<double>() > 0.34); // better than chance with 3 experts
        QCOMPARE(b["routing"].get<std::string>(), std::string("running"));
        QVERIFY(std::filesystem::exists(b["gates"].get<std::string>()));
        QVERIFY(std::filesystem::exists(b["loss_csv"].get<std::string>()));
        QVERIFY(b["seconds"].get<double>() > 0);

        r = runCli({"route-eval", "--selector", QString::fromStdString(sel), "--dataset", modelPath("amoe.json"), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto e = json::parse(r.out);
        QCOMPARE(e["layers"].size(), size_t(2));
        QCOMPARE(e["layers"][0]["confusion"].size(), size_t(3));
        QVERIFY(e["layers"][0]["accuracy_prompt"].get<double>() > 0.34);

        // Expert usage: every generated token (and prompt token) went to top_k = 2 experts per layer.
        r = runCli({"generate", "--selector", QString::fromStdString(sel), "--prompt", "def main():", "-n", "6",
                    "--temperature", "0", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto g = json::parse(r.out);
        // Forwarded tokens: the prompt and every generated one but a last one cut by the length limit.
        const size_t tokens = g["prompt_ids"].size() + g["token_ids"].size() - (g["stop_reason"] == "length" ? 1 : 0);
        QCOMPARE(g["expert_usage"].size(), size_t(2));
        for (const auto& layer : g["expert_usage"]) {
            size_t sum = 0;
            for (auto v : layer["tokens"]) sum += v.get<size_t>();
            QCOMPARE(sum, 2 * tokens);
        }
        // Likelihood routing names its pick and every candidate's prompt loss.
        r = runCli({"generate", "--selector", QString::fromStdString(sel), "--routing", "likelihood", "--prompt",
                    "Permission is hereby granted, free of charge, to any person obtaining a copy", "-n", "4", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        g = json::parse(r.out);
        QCOMPARE(g["likelihood"]["prompt_loss"].size(), size_t(4)); // 3 experts + the base
        QCOMPARE(g["likelihood"]["pick"].get<std::string>(), std::string("lora-legal"));

        r = runCli({"perplexity", "--selector", QString::fromStdString(sel), "--file",
                    QString::fromStdString((m / "eval" / "code.txt").string()), "--max-windows", "1", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto p = json::parse(r.out);
        QVERIFY(p["perplexity"].get<double>() > 1 && p["tokens"].get<int>() == 256);
    }

    // Terminal chat: two turns from stdin, streamed replies, then an empty line ends it.
    void chatTakesTurnsFromStdin() {
        QProcess p;
        p.start(MOE_CLI, {"chat", "--model", modelPath("base"), "-n", "5", "--temperature", "0"});
        QVERIFY(p.waitForStarted());
        p.write("import os\nThe licensee shall\n\n");
        p.closeWriteChannel();
        QVERIFY(p.waitForFinished(120000));
        QCOMPARE(p.exitCode(), 0);
        const std::string err = p.readAllStandardError().toStdString();
        QCOMPARE(std::count(err.begin(), err.end(), '>'), 3L); // a prompt per turn, and the one ended by the empty line
        QVERIFY(!p.readAllStandardOutput().trimmed().isEmpty());
    }

    void badInputIsAClearError() {
        QTemporaryDir empty;
        auto r = runCli({"generate", "--model", empty.path(), "--prompt", "x"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find(empty.path().toStdString()) != std::string::npos, r.err.c_str());
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert("MOE_VK_DEVICE", "no-such-gpu");
        r = runCli({"generate", "--model", modelPath("base"), "--prompt", "x"}, env);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("no-such-gpu") != std::string::npos, r.err.c_str());
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
