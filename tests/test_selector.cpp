// Selector files (TOML, AnyMoE compatible), AnyMoE datasets (JSON), selection
// validation on the shared demo models, and mergekit-moe YAML import.
#include "moe/dataset.h"
#include "moe/error.h"
#include "moe/mergekit.h"
#include "moe/safetensors.h"
#include "moe/selector.h"
#include "moe/validate.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace moe;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void writeText(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

std::string readText(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// 1-based number of the first line of `text` containing `needle` (0 if none).
int lineOf(const std::string& text, const std::string& needle) {
    std::istringstream in(text);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n)
        if (line.find(needle) != std::string::npos) return n;
    return 0;
}



// Bytes of the MLP weights of `layers` in a model folder, read independently
// of the validator (straight from the safetensors headers).
uint64_t mlpBytes(const fs::path& dir, const std::vector<int>& layers) {
    const auto store = WeightStore::openFolder(dir);
    uint64_t total = 0;
    for (int l : layers)
        for (const char* p : {"gate_proj", "up_proj", "down_proj"})
            total += store->require("model.layers." + std::to_string(l) + ".mlp." + p + ".weight").nbytes;
    return total;
}

uint64_t loraBytes(const fs::path& dir, const std::vector<int>& layers) {
    const auto store = WeightStore::openFile(dir / "adapter_model.safetensors");
    uint64_t total = 0;
    for (int l : layers)
        for (const char* p : {"gate_proj", "up_proj", "down_proj"})
            for (const char* ab : {"lora_A", "lora_B"})
                total += store
                             ->require("base_model.model.model.layers." + std::to_string(l) + ".mlp." + p + "." + ab +
                                       ".weight")
                             .nbytes;
    return total;
}

std::string quoted(const fs::path& p) { return "\"" + p.string() + "\""; }

} // namespace

class TestSelector : public QObject {
    Q_OBJECT

private:
    QTemporaryDir tmp_;
    int counter_ = 0;
    fs::path models_;

    fs::path newFolder(const std::string& name) {
        const fs::path p = fs::path(tmp_.path().toStdString()) / (name + "-" + std::to_string(++counter_));
        fs::create_directories(p);
        return p;
    }

    // A selector over the shared models (absolute paths) with `config` as the
    // [anymoe.config] body and `anymoeExtra` appended to [anymoe].
    fs::path writeModelsSelector(const std::vector<std::string>& experts, const std::string& config,
                                 const std::string& anymoeExtra = "",
                                 const fs::path& dataset = fs::path()) {
        const fs::path dir = newFolder("sel");
        std::string ids;
        for (const auto& e : experts) ids += (ids.empty() ? "" : ", ") + quoted(models_ / e);
        std::string text = "[model]\nmodel_id = " + quoted(models_ / "base") + "\n\n[anymoe]\n";
        text += "dataset_json = " + quoted(dataset.empty() ? models_ / "amoe.json" : dataset) + "\n";
        text += "model_ids = [" + ids + "]\n" + anymoeExtra + "\n[anymoe.config]\n" + config;
        writeText(dir / "selector.toml", text);
        return dir / "selector.toml";
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        models_ = fs::absolute(moe::test::modelsDir()).lexically_normal();
        if (!fs::is_regular_file(models_ / "base" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("shared models not found in " + models_.string())));
    }

    // --- selector TOML ----------------------------------------------------

    void fullSelectorRoundTrips() {
        // models/ inside the temp folder points at the shared models, so the
        // selector can use relative paths.
        const fs::path root = newFolder("roundtrip");
        fs::create_directory_symlink(models_, root / "models");
        const fs::path dir = root / "sel";
        const std::string text = R"(tokenizer_json = "tok/tokenizer.json"

[model]
kind = "plain"
model_id = "../models/base"
arch = "llama"
dtype = "bf16"
max_seq_len = 2048

[anymoe]
dataset_json = "data/amoe.json"
prefix = "model.layers"
mlp = "mlp"
model_ids = ["../models/lora-code", "../models/lora-legal", "../models/lora-tech"]
layers = [3, 1]

[anymoe.config]
hidden_size = 256
lr = 3e-4
epochs = 7
batch_size = 3
gate_model_id = "gates"
training = true
loss_csv_path = "out/loss.csv"
top_k = 1
gate_mode = "hidden"
routing = "running"
routing_halflife = 12.5
gate_bias = false
include_base = true
validation_split = 0.25
seed = 1234567890123
use_chat_template = false
merge_lora = true
anymoe_loss_header = true
export_dtype = "float16"
export_architecture = "mixtral"

[anymoe.config.expert_type.lora_adapter]
rank = 8
alpha = 16
target_modules = ["gate_proj", "up_proj"]

[anymoe.config.base_expert]
positive_prompts = ["The man who"]

[[anymoe.config.experts]]
model_id = "../models/lora-code"
positive_prompts = ["def main():", "#include <stdio.h>"]
negative_prompts = ["Copyright \u0022quoted\u0022\nnext line \u00e9"]  # (moc mis-parses \" in raw strings)

[[anymoe.config.experts]]
positive_prompts = ["The licensee shall"]

[[anymoe.config.experts]]
positive_prompts = ["A compiler is a program that"]
negative_prompts = []
)";
        writeText(dir / "selector.toml", text);
        const Selector s = loadSelector(dir / "selector.toml");

        QCOMPARE(s.file, dir / "selector.toml");
        QCOMPARE(s.modelId, std::string("../models/base"));
        QCOMPARE(s.baseModel, root / "models" / "base");
        QCOMPARE(s.arch, std::string("llama"));
        QCOMPARE(s.datasetJson, dir / "data" / "amoe.json"); // relative to the file's folder
        QCOMPARE(s.expertIds, (std::vector<std::string>{"../models/lora-code", "../models/lora-legal",
                                                         "../models/lora-tech"}));
        QCOMPARE(s.experts, (std::vector<fs::path>{root / "models" / "lora-code", root / "models" / "lora-legal",
                                                    root / "models" / "lora-tech"}));
        QCOMPARE(s.layers, (std::vector<int>{3, 1})); // as written
        QCOMPARE(s.hiddenSize, 256);
        QCOMPARE(s.lr, 3e-4);
        QCOMPARE(s.epochs, 7);
        QCOMPARE(s.batchSize, 3);
        QCOMPARE(s.expertType, ExpertType::LoraAdapter);
        QCOMPARE(s.loraRank, 8);
        QCOMPARE(s.loraAlpha, 16.0);
        QCOMPARE(s.loraTargets, (std::vector<std::string>{"gate_proj", "up_proj"}));
        QCOMPARE(s.gateModelId, dir / "gates");
        QCOMPARE(s.training, true);
        QCOMPARE(s.lossCsvPath, dir / "out" / "loss.csv");
        QCOMPARE(s.topK, 1);
        QCOMPARE(s.gateMode, GateMode::Hidden);
        QVERIFY(s.routing.has_value());
        QCOMPARE(*s.routing, RoutingMode::Running);
        QCOMPARE(s.routingHalflife, 12.5);
        QCOMPARE(s.gateBias, false);
        QCOMPARE(s.includeBase, true);
        QCOMPARE(s.validationSplit, 0.25);
        QCOMPARE(s.seed, uint64_t(1234567890123));
        QCOMPARE(s.useChatTemplate, false);
        QCOMPARE(s.mergeLora, true);
        QCOMPARE(s.anymoeLossHeader, true);
        QCOMPARE(s.exportDtype, std::string("float16"));
        QCOMPARE(s.exportArchitecture, std::string("mixtral"));
        QCOMPARE(s.basePrompts.positive, std::vector<std::string>{"The man who"});
        QCOMPARE(s.expertPrompts.size(), size_t(3));
        QCOMPARE(s.expertPrompts[0].positive, (std::vector<std::string>{"def main():", "#include <stdio.h>"}));
        QCOMPARE(s.expertPrompts[0].negative, std::vector<std::string>{"Copyright \"quoted\"\nnext line \xc3\xa9"});
        QCOMPARE(s.expertPrompts[2].positive, std::vector<std::string>{"A compiler is a program that"});
        QCOMPARE(s.mistralrsOptions.size(), size_t(3));

        // Save next to it, reload: every field equal.
        saveSelector(s, dir / "copy.toml");
        Selector again = loadSelector(dir / "copy.toml");
        QCOMPARE(again.file, dir / "copy.toml");
        again.file = s.file;
        QVERIFY(again == s);
        // Saving the reloaded selector writes the same text (stable output).
        saveSelector(again, dir / "copy2.toml");
        QCOMPARE(readText(dir / "copy2.toml"), readText(dir / "copy.toml"));
        // Paths stay relative to the file.
        const std::string saved = readText(dir / "copy.toml");
        QVERIFY2(saved.find("model_id = \"../models/base\"") != std::string::npos, saved.c_str());
        QVERIFY2(saved.find("dataset_json = \"data/amoe.json\"") != std::string::npos, saved.c_str());
        QVERIFY2(saved.find("dtype = \"bf16\"") != std::string::npos, saved.c_str());

        // Saved into another folder: ids are rewritten relative to it and
        // still name the same folders.
        const fs::path other = root / "elsewhere" / "deeper";
        fs::create_directories(other);
        saveSelector(s, other / "moved.toml");
        const Selector moved = loadSelector(other / "moved.toml");
        QCOMPARE(moved.baseModel, s.baseModel);
        QCOMPARE(moved.experts, s.experts);
        QCOMPARE(moved.datasetJson, s.datasetJson);
        QCOMPARE(moved.gateModelId, s.gateModelId);
        QCOMPARE(moved.modelId, std::string("../../models/base"));
    }

    void defaultsRoundTrip() {
        // A minimal fine-tuned selector: defaults written out read back equal.
        const fs::path file = writeModelsSelector({"expert-code", "expert-legal"}, "");
        const Selector s = loadSelector(file);
        QCOMPARE(s.lr, 1e-3);
        QCOMPARE(s.epochs, 100);
        QCOMPARE(s.batchSize, 4);
        QCOMPARE(s.expertType, ExpertType::FineTuned);
        QCOMPARE(s.topK, 2);
        QCOMPARE(s.gateMode, GateMode::Trained);
        QVERIFY(!s.routing.has_value());
        QCOMPARE(s.validationSplit, 0.1);
        QCOMPARE(s.gateBias, true);
        QCOMPARE(s.includeBase, false);
        QVERIFY(s.layers.empty());
        QVERIFY(s.expertPrompts.empty());
        saveSelector(s, file.parent_path() / "again.toml");
        Selector again = loadSelector(file.parent_path() / "again.toml");
        again.file = s.file;
        QVERIFY(again == s);
    }

    void anymoeStyleFilesLoad() {
        // The shape of mistral.rs's toml-selectors/anymoe.toml and
        // anymoe_lora.toml, with Hugging Face ids found in a local hub cache.
        const fs::path hub = newFolder("hub");
        auto fakeSnapshot = [&](const std::string& org, const std::string& name, const fs::path& target) {
            const fs::path repo = hub / ("models--" + org + "--" + name);
            writeText(repo / "refs" / "main", "0123abcd\n");
            fs::create_directories(repo / "snapshots");
            fs::create_directory_symlink(target, repo / "snapshots" / "0123abcd");
            return repo / "snapshots" / "0123abcd";
        };
        const fs::path baseSnap = fakeSnapshot("demo-org", "Base-7B-v0.1", models_ / "base");
        const fs::path expertSnap = fakeSnapshot("demo-org", "zephyr-like", models_ / "expert-code");
        const fs::path loraSnap = fakeSnapshot("someone", "zephyr-lora", models_ / "lora-code");
        qputenv("HF_HUB_CACHE", QByteArray::fromStdString(hub.string()));

        const fs::path dir = newFolder("anymoe");
        writeText(dir / "anymoe.toml", R"([model]
kind = "plain"
model_id = "demo-org/Base-7B-v0.1"
arch = "mistral"

[anymoe]
dataset_json = "examples/amoe.json"
prefix = "model.layers"
mlp = "mlp"
model_ids = ["demo-org/zephyr-like"]
layers = [2, 3]

[anymoe.config]
hidden_size = 4096
epochs = 25
expert_type = "fine_tuned"
gate_model_id = "saved_gate"
loss_csv_path = "loss.csv"
)");
        const Selector ft = loadSelector(dir / "anymoe.toml");
        QCOMPARE(ft.baseModel, baseSnap);
        QCOMPARE(ft.experts, std::vector<fs::path>{expertSnap});
        QCOMPARE(ft.arch, std::string("mistral"));
        QCOMPARE(ft.layers, (std::vector<int>{2, 3}));
        QCOMPARE(ft.hiddenSize, 4096);
        QCOMPARE(ft.epochs, 25);
        QCOMPARE(ft.expertType, ExpertType::FineTuned);
        QCOMPARE(ft.gateModelId, dir / "saved_gate");
        QCOMPARE(ft.lossCsvPath, dir / "loss.csv");
        QCOMPARE(ft.datasetJson, dir / "examples" / "amoe.json");
        QCOMPARE(ft.lr, 1e-3);
        QCOMPARE(ft.batchSize, 4);

        writeText(dir / "anymoe_lora.toml", R"([model]
model_id = "demo-org/Base-7B-v0.1"
arch = "mistral"

[anymoe]
dataset_json = "examples/amoe.json"
prefix = "model.layers"
mlp = "mlp"
model_ids = ["someone/zephyr-lora"]

[anymoe.config]
hidden_size = 4096

[anymoe.config.expert_type.lora_adapter]
rank = 64
alpha = 16
target_modules = ["gate_proj"]
)");
        const Selector lora = loadSelector(dir / "anymoe_lora.toml");
        QCOMPARE(lora.expertType, ExpertType::LoraAdapter);
        QCOMPARE(lora.loraRank, 64);
        QCOMPARE(lora.loraAlpha, 16.0);
        QCOMPARE(lora.loraTargets, std::vector<std::string>{"gate_proj"});
        QCOMPARE(lora.experts, std::vector<fs::path>{loraSnap});
        QVERIFY(lora.layers.empty());

        // Saved and reloaded, HF ids stay ids.
        saveSelector(lora, dir / "lora-copy.toml");
        Selector again = loadSelector(dir / "lora-copy.toml");
        QVERIFY(readText(dir / "lora-copy.toml").find("\"someone/zephyr-lora\"") != std::string::npos);
        again.file = lora.file;
        QVERIFY(again == lora);

        // A missing id names itself and every place looked at.
        EXPECT_ERROR(resolveModelId("demo-org/absent-model", dir), "demo-org/absent-model",
                     (dir / "demo-org" / "absent-model").string(), (hub / "models--demo-org--absent-model").string());
        qunsetenv("HF_HUB_CACHE");
    }

    void malformedSelectorsNameFileLineKey() {
        const std::string base = models_.string();
        // A valid selector; each case replaces one line (or appends one).
        const std::string good = "[model]\n"
                                 "model_id = \"" + base + "/base\"\n"
                                 "\n"
                                 "[anymoe]\n"
                                 "dataset_json = \"amoe.json\"\n"
                                 "model_ids = [\"" + base + "/expert-code\", \"" + base + "/expert-legal\"]\n"
                                 "layers = [0, 1]\n"
                                 "\n"
                                 "[anymoe.config]\n"
                                 "epochs = 10\n";
        struct Case {
            std::string from, to;       // replace `from` (a whole line) with `to`; empty from = append
            std::string faultLine;      // text on the line the error must name
            std::vector<std::string> expected;
        };
        const std::vector<Case> cases = {
            {"[anymoe]", "[anymoe", "[anymoe", {"syntax error"}},
            {"epochs = 10", "epochs = 10\nlearning_rate = 0.1", "learning_rate", {"anymoe.config.learning_rate", "unknown key"}},
            {"epochs = 10", "epochs = \"ten\"", "epochs", {"anymoe.config.epochs", "expected an integer", "a string"}},
            {"epochs = 10", "epochs = 0", "epochs", {"anymoe.config.epochs", "out of range"}},
            {"epochs = 10", "lr = 0", "lr", {"anymoe.config.lr", "> 0"}},
            {"epochs = 10", "lr = -0.5", "lr", {"anymoe.config.lr", "> 0"}},
            {"epochs = 10", "lr = \"fast\"", "lr", {"anymoe.config.lr", "expected a number"}},
            {"epochs = 10", "batch_size = 0", "batch_size", {"anymoe.config.batch_size"}},
            {"epochs = 10", "top_k = 0", "top_k", {"anymoe.config.top_k"}},
            {"epochs = 10", "validation_split = 1.0", "validation_split", {"anymoe.config.validation_split", "[0, 1)"}},
            {"epochs = 10", "validation_split = -0.1", "validation_split", {"anymoe.config.validation_split"}},
            {"epochs = 10", "gate_mode = \"magic\"", "gate_mode", {"anymoe.config.gate_mode", "magic"}},
            {"epochs = 10", "routing = \"loud\"", "routing", {"anymoe.config.routing", "loud"}},
            {"epochs = 10", "training = \"yes\"", "training", {"anymoe.config.training", "true or false"}},
            {"epochs = 10", "seed = -1", "seed", {"anymoe.config.seed"}},
            {"epochs = 10", "expert_type = \"dense\"", "expert_type", {"anymoe.config.expert_type", "dense"}},
            {"epochs = 10", "export_dtype = \"int8\"", "export_dtype", {"anymoe.config.export_dtype", "int8"}},
            {"epochs = 10", "[[anymoe.config.experts]]\npositive_prompts = [\"x\"]", "[[anymoe.config.experts]]",
             {"anymoe.config.experts", "1 entries for 2 model_ids"}},
            {"layers = [0, 1]", "layers = [0, -1]", "layers", {"anymoe.layers[1]", "negative"}},
            {"layers = [0, 1]", "layers = [1, 0, 1]", "layers", {"anymoe.layers[2]", "twice"}},
            {"layers = [0, 1]", "layers = [0, \"1\"]", "layers", {"anymoe.layers[1]", "integer"}},
            {"layers = [0, 1]", "layers = 3", "layers", {"anymoe.layers", "expected an array"}},
            {"layers = [0, 1]", "layer = [0, 1]", "layer =", {"anymoe.layer", "unknown key"}},
            {"layers = [0, 1]", "dataset_csv = \"amoe.csv\"", "dataset_csv", {"anymoe.dataset_csv", "not supported"}},
            {"model_id = \"" + base + "/base\"", "model_id = \"nobody/missing-model\"", "model_id",
             {"model.model_id", "nobody/missing-model", "not found", "looked at"}},
            {"model_id = \"" + base + "/base\"", "model_id = 7", "model_id", {"model.model_id", "expected a string"}},
            {"model_id = \"" + base + "/base\"", "model_id = \"" + base + "/base\"\nkind = \"gguf\"", "kind",
             {"model.kind", "gguf"}},
            {"model_ids = [\"" + base + "/expert-code\", \"" + base + "/expert-legal\"]",
             "model_ids = [\"" + base + "/expert-code\", \"../no-such-expert\"]", "model_ids",
             {"anymoe.model_ids[1]", "../no-such-expert", "not found"}},
            {"model_ids = [\"" + base + "/expert-code\", \"" + base + "/expert-legal\"]", "model_ids = []",
             "model_ids", {"anymoe.model_ids", "empty"}},
            {"dataset_json = \"amoe.json\"", "dataset_json = \"\"", "dataset_json", {"anymoe.dataset_json", "empty"}},
        };
        for (const Case& c : cases) {
            std::string text = good;
            const size_t at = text.find(c.from + "\n");
            QVERIFY2(at != std::string::npos, c.from.c_str());
            text.replace(at, c.from.size(), c.to);
            const fs::path dir = newFolder("bad");
            writeText(dir / "bad.toml", text);
            const int line = lineOf(text, c.faultLine);
            QVERIFY2(line > 0, c.faultLine.c_str());
            std::vector<std::string> expected = c.expected;
            expected.push_back((dir / "bad.toml").string() + ":" + std::to_string(line) + ":");
            const std::string message = moe::test::errorMessage([&] { loadSelector(dir / "bad.toml"); });
            std::string missing;
            QVERIFY2(moe::test::containsAll(message, expected, missing),
                     qPrintable(QString::fromStdString("case \"" + c.to + "\": expected \"" + missing +
                                                       "\" in: " + message)));
        }

        // A syntax error gives line:column.
        const fs::path dir = newFolder("syntax");
        writeText(dir / "s.toml", "[model]\nmodel_id = \"x\"\nlr = = 3\n");
        EXPECT_ERROR(loadSelector(dir / "s.toml"), (dir / "s.toml").string() + ":3:6:", "syntax error");
        // Missing sections and files.
        writeText(dir / "nomodel.toml", "[anymoe]\nmodel_ids = [\"a\"]\n");
        EXPECT_ERROR(loadSelector(dir / "nomodel.toml"), "nomodel.toml", "model", "missing");
        EXPECT_ERROR(loadSelector(dir / "absent.toml"), "absent.toml", "cannot open");
        // Trained gates without a dataset.
        writeText(dir / "nodata.toml", "[model]\nmodel_id = \"" + base + "/base\"\n[anymoe]\nmodel_ids = [\"" + base +
                                           "/expert-code\"]\n");
        EXPECT_ERROR(loadSelector(dir / "nodata.toml"), "nodata.toml:3:", "anymoe.dataset_json", "missing");
    }

    // --- dataset JSON -----------------------------------------------------

    void shippedDatasetsLoad() {
        const auto rows = loadDataset(models_ / "amoe.json");
        QCOMPARE(rows.size(), size_t(120));
        std::vector<int> counts(3, 0);
        for (const auto& r : rows) {
            QVERIFY(r.expert >= 0 && r.expert < 3);
            QVERIFY(!r.prompt.empty());
            ++counts[r.expert];
        }
        QCOMPARE(counts, (std::vector<int>{40, 40, 40})); // README: 40 prompts per expert

        const auto withBase = loadDataset(models_ / "amoe-with-base.json");
        QCOMPARE(withBase.size(), size_t(160));
        int maxLabel = 0;
        for (const auto& r : withBase) maxLabel = std::max(maxLabel, r.expert);
        QCOMPARE(maxLabel, 3);

        // Save and reload: equal rows, equal digest.
        const fs::path dir = newFolder("dataset");
        saveDataset(rows, dir / "copy.json");
        const auto again = loadDataset(dir / "copy.json");
        QVERIFY(again == rows);
        QCOMPARE(datasetHash(again), datasetHash(rows));
        QVERIFY(datasetHash(rows) != datasetHash(withBase));
    }

    void datasetHashIsStable() {
        std::vector<DatasetRow> rows = {{"def f(x):", 0, {}}, {"Copyright \xc2\xa9", 2, {"http://x/a.png"}}};
        // Pinned value (FNV-1a 64 over the documented byte layout, computed
        // with an independent Python transcription): gate metadata from
        // earlier runs compares against it, so it must never drift.
        QCOMPARE(datasetHash(rows), std::string("3d3123d0226ff9e2"));
        auto changed = rows;
        changed[1].expert = 1;
        QVERIFY(datasetHash(changed) != datasetHash(rows));
        changed = rows;
        std::swap(changed[0], changed[1]);
        QVERIFY(datasetHash(changed) != datasetHash(rows));
        // Length prefixes: moving a character between fields changes the digest.
        std::vector<DatasetRow> a = {{"ab", 0, {"c"}}}, b = {{"a", 0, {"bc"}}};
        QVERIFY(datasetHash(a) != datasetHash(b));
    }

    void malformedDatasetsNameRowAndField() {
        const fs::path dir = newFolder("baddata");
        struct Case {
            std::string json;
            std::vector<std::string> expected;
        };
        const std::vector<Case> cases = {
            {"{\"rows\": [\n  {\"prompt\": \"a\", \"expert\": 0},\n  {\"prompt\": \"b\" \"expert\": 1}\n]}",
             {"d.json:3:", "JSON syntax error"}},
            {"[1, 2]", {"d.json", "expected an object"}},
            {"{\"data\": []}", {"d.json", "rows", "missing"}},
            {"{\"rows\": {}}", {"d.json", "rows", "expected an array"}},
            {"{\"rows\": []}", {"d.json", "rows", "empty"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 0}, 5]}", {"d.json", "rows[1]", "expected an object"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 0}, {\"expert\": 1}]}", {"d.json", "rows[1].prompt", "missing"}},
            {"{\"rows\": [{\"prompt\": 12, \"expert\": 0}]}", {"d.json", "rows[0].prompt", "expected a string"}},
            {"{\"rows\": [{\"prompt\": \"\", \"expert\": 0}]}", {"d.json", "rows[0].prompt", "empty"}},
            {"{\"rows\": [{\"prompt\": \"a\"}]}", {"d.json", "rows[0].expert", "missing"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": \"1\"}]}", {"d.json", "rows[0].expert", "integer", "a string"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 1.5}]}", {"d.json", "rows[0].expert", "integer"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 0}, {\"prompt\": \"b\", \"expert\": 0}, "
             "{\"prompt\": \"c\", \"expert\": -1}]}",
             {"d.json", "rows[2].expert", "negative"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 0, \"image_urls\": \"x.png\"}]}",
             {"d.json", "rows[0].image_urls", "array"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 4294967296}]}", {"d.json", "rows[0].expert", "too large"}},
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 18446744073709551615}]}",
             {"d.json", "rows[0].expert", "too large"}},
            // A number past double's range: nlohmann's out_of_range escaped as another exception type.
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": 1e999}]}", {"d.json", "number overflow"}},
            // Nesting a million deep (nlohmann parses it; printing it overflowed the stack).
            {"{\"rows\": [{\"prompt\": \"a\", \"expert\": " + std::string(1000000, '[') + std::string(1000000, ']') +
                 "}]}",
             {"d.json", "nested deeper than 64", "line 1"}},
        };
        for (const Case& c : cases) {
            writeText(dir / "d.json", c.json);
            const std::string message = moe::test::errorMessage([&] { loadDataset(dir / "d.json"); });
            std::string missing;
            QVERIFY2(moe::test::containsAll(message, c.expected, missing),
                     qPrintable(QString::fromStdString("case " + c.json + ": expected \"" + missing + "\" in: " + message)));
        }
        // The syntax error's position is where the parser stopped: line 3 is
        // `  {"prompt": "b" "expert": 1}` and the unexpected "expert" ends at column 25.
        writeText(dir / "d.json", cases[0].json);
        EXPECT_ERROR(loadDataset(dir / "d.json"), "d.json:3:25:");
        EXPECT_ERROR(loadDataset(dir / "missing.json"), "missing.json", "cannot open");
        // Only regular files are read: /dev/zero would never end.
        EXPECT_ERROR(loadDataset("/dev/zero"), "/dev/zero", "not a regular file");
    }

    // --- validation -------------------------------------------------------

    void fineTunedSelectionValidates() {
        const std::vector<std::string> experts = {"expert-code", "expert-legal", "expert-tech"};
        const SelectionFacts all = validateSelection(loadSelector(writeModelsSelector(experts, "")));
        QCOMPARE(all.layers, (std::vector<int>{0, 1, 2, 3}));
        QCOMPARE(all.nExperts, 3);
        QCOMPARE(all.base.hiddenSize, 256);
        QCOMPARE(all.dataset.size(), size_t(120));
        QCOMPARE(all.experts.size(), size_t(3));
        uint64_t expected = 0;
        for (size_t i = 0; i < experts.size(); ++i) {
            QCOMPARE(all.experts[i].type, ExpertType::FineTuned);
            QCOMPARE(all.experts[i].dir, models_ / experts[i]);
            const uint64_t bytes = mlpBytes(models_ / experts[i], all.layers);
            QCOMPARE(all.experts[i].addedBytes, bytes);
            expected += bytes;
        }
        QVERIFY(all.expertBytes > 0);
        QCOMPARE(all.expertBytes, expected);
        QVERIFY2(all.warnings.empty(), all.warnings.empty() ? "" : all.warnings.front().c_str());

        // Layers [3, 2]: resolved sorted, bytes of those layers only.
        const SelectionFacts some =
            validateSelection(loadSelector(writeModelsSelector(experts, "", "layers = [3, 2]\n")));
        QCOMPARE(some.layers, (std::vector<int>{2, 3}));
        uint64_t expectedSome = 0;
        for (const auto& e : experts) expectedSome += mlpBytes(models_ / e, {2, 3});
        QCOMPARE(some.expertBytes, expectedSome);
        QCOMPARE(some.expertBytes * 2, all.expertBytes); // every layer's MLP has the same size

        ExpertType type = ExpertType::LoraAdapter;
        QCOMPARE(checkExpertCompatibility(all.base, models_ / "expert-legal", &type), std::string());
        QCOMPARE(type, ExpertType::FineTuned);
    }

    void loraSelectionReadsAdapterConfig() {
        const std::vector<std::string> experts = {"lora-code", "lora-legal", "lora-tech"};
        const SelectionFacts f =
            validateSelection(loadSelector(writeModelsSelector(experts, "expert_type = \"lora_adapter\"\n")));
        QCOMPARE(f.experts.size(), size_t(3));
        uint64_t expected = 0;
        for (size_t i = 0; i < experts.size(); ++i) {
            const ExpertFacts& e = f.experts[i];
            QCOMPARE(e.type, ExpertType::LoraAdapter);
            QCOMPARE(e.loraRank, 8);     // models/README.md: r 8, lora_alpha 16
            QCOMPARE(e.loraAlpha, 16.0);
            QCOMPARE(e.loraTargets, (std::vector<std::string>{"gate_proj", "up_proj", "down_proj"}));
            QCOMPARE(e.name, (models_ / experts[i]).string());
            const uint64_t bytes = loraBytes(models_ / experts[i], f.layers);
            QCOMPARE(e.addedBytes, bytes);
            expected += bytes;
        }
        QCOMPARE(f.expertBytes, expected);
        // F32 (4 bytes) A [8, in] + B [out, 8] per projection; each of the 3
        // projections maps 256 <-> 688, in 4 layers.
        QCOMPARE(f.experts[0].addedBytes, uint64_t(4 * 3 * (8 * 256 + 688 * 8) * 4));

        // The selector's rank and alpha, when given, must agree with the file.
        validateSelection(loadSelector(writeModelsSelector(
            experts, "[anymoe.config.expert_type.lora_adapter]\nrank = 8\nalpha = 16\n")));
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(
                         experts, "[anymoe.config.expert_type.lora_adapter]\nrank = 4\n"))),
                     "rank 4", "r 8", "lora-code/adapter_config.json", "lora-tech/adapter_config.json");
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(
                         experts, "[anymoe.config.expert_type.lora_adapter]\nalpha = 32\n"))),
                     "alpha 32", "lora_alpha 16");
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(
                         experts, "[anymoe.config.expert_type.lora_adapter]\ntarget_modules = [\"q_proj\"]\n"))),
                     "q_proj", "not an MLP projection");

        // The default expert_type (fine_tuned) with adapters says what to set.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(experts, ""))), "expert_type is fine_tuned",
                     "lora-code", "LoRA adapters");

        ModelConfig base = f.base;
        ExpertType type = ExpertType::FineTuned;
        QCOMPARE(checkExpertCompatibility(base, models_ / "lora-tech", &type), std::string());
        QCOMPARE(type, ExpertType::LoraAdapter);

        // A hostile adapter_config.json (the class fuzz/fuzz_adapter_config covers): nesting a
        // million deep, and a huge value, are reported naming the file, quoted short.
        const fs::path hostile = newFolder("hostile-lora");
        fs::copy_file(models_ / "lora-tech" / "adapter_model.safetensors", hostile / "adapter_model.safetensors");
        writeText(hostile / "adapter_config.json", "{\"peft_type\": " + std::string(1000000, '[') +
                                                       std::string(1000000, ']') + "}");
        std::string problem = checkExpertCompatibility(base, hostile);
        QVERIFY2(problem.find((hostile / "adapter_config.json").string()) != std::string::npos &&
                     problem.find("nested deeper than 64") != std::string::npos,
                 problem.c_str());
        writeText(hostile / "adapter_config.json",
                  "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"gate_proj\"], "
                  "\"bias\": \"" + std::string(100000, 'x') + "\"}");
        problem = checkExpertCompatibility(base, hostile);
        QVERIFY2(problem.find("bias") != std::string::npos && problem.find("...") != std::string::npos &&
                     problem.size() < 2000,
                 problem.substr(0, 300).c_str());
        // Found by fuzz_adapter_config: a number past double's range ended the process.
        writeText(hostile / "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": -2e+308}");
        problem = checkExpertCompatibility(base, hostile);
        QVERIFY2(problem.find((hostile / "adapter_config.json").string()) != std::string::npos &&
                     problem.find("number overflow") != std::string::npos,
                 problem.c_str());
    }

    void loraAdapterTensorsAreChecked() {
        // An adapter with layer 1's down_proj B missing and layer 2's
        // gate_proj A of the wrong rank; PEFT's ".default" infix is accepted.
        const fs::path dir = newFolder("lora-broken");
        fs::copy_file(models_ / "lora-code" / "adapter_config.json", dir / "adapter_config.json");
        const auto src = WeightStore::openFile(models_ / "lora-code" / "adapter_model.safetensors");
        std::vector<TensorToWrite> tensors;
        std::vector<std::vector<float>> storage;
        for (const std::string& name : src->names()) {
            if (name == "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight") continue;
            const TensorView& t = *src->find(name);
            std::string outName = name;
            if (name.find("layers.0.") != std::string::npos)
                outName.replace(outName.find(".weight"), 7, ".default.weight");
            if (name == "base_model.model.model.layers.2.mlp.gate_proj.lora_A.weight") {
                storage.emplace_back(size_t(4 * 256), 0.0f);
                tensors.push_back({outName, DType::F32, {4, 256}, std::as_bytes(std::span(storage.back()))});
                continue;
            }
            tensors.push_back({outName, t.dtype, t.shape, {t.data, t.nbytes}});
        }
        writeSafetensors(dir / "adapter_model.safetensors", tensors);
        const ModelConfig base = ModelConfig::load(models_ / "base");
        const std::string reason = checkExpertCompatibility(base, dir);
        std::string missing;
        QVERIFY2(moe::test::containsAll(reason,
                             {"layers.1.mlp.down_proj.lora_B.weight missing", "layers.2.mlp.gate_proj.lora_A",
                              "[4, 256]", "expected [8, 256]"},
                             missing),
                 qPrintable(QString::fromStdString("expected \"" + missing + "\" in: " + reason)));
        QVERIFY2(reason.find("layers.0.") == std::string::npos, reason.c_str()); // .default names were found
        // Only layers 0 and 3 chosen: the adapter is fine for them.
        const Selector s = loadSelector(writeModelsSelector({"lora-legal", dir.string(), "lora-tech"},
                                                            "expert_type = \"lora_adapter\"\n", "layers = [0, 3]\n"));
        const SelectionFacts f = validateSelection(s);
        QCOMPARE(f.experts[1].addedBytes, loraBytes(models_ / "lora-code", {0, 3}));
    }

    void validationProblemsAreReported() {
        const std::vector<std::string> three = {"expert-code", "expert-legal", "expert-tech"};

        // Mixing a LoRA adapter and a fine-tune names both.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector({"expert-code", "lora-legal"}, ""))),
                     "mix", "fine-tuned models (" + (models_ / "expert-code").string() + ")",
                     "LoRA adapters (" + (models_ / "lora-legal").string() + ")");

        // A layer the base does not have.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(three, "", "layers = [1, 7]\n"))),
                     "anymoe.layers", "layer 7 does not exist", "4 layers");

        // Label 3 with 3 experts and no include_base names the row.
        const fs::path dataDir = newFolder("labels");
        auto rows = loadDataset(models_ / "amoe.json");
        rows[5].expert = 3;
        saveDataset(rows, dataDir / "amoe-bad.json");
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(three, "", "", dataDir / "amoe-bad.json"))),
                     "amoe-bad.json: rows[5].expert", "label 3", "out of range", "include_base");
        // With include_base the same labels fit (4 experts) ...
        const SelectionFacts withBase = validateSelection(
            loadSelector(writeModelsSelector(three, "include_base = true\n", "", dataDir / "amoe-bad.json")));
        QCOMPARE(withBase.nExperts, 4);
        // ... and amoe.json (labels 0-2) then leaves expert 3 without rows: a warning.
        const SelectionFacts unlabelled =
            validateSelection(loadSelector(writeModelsSelector(three, "include_base = true\n")));
        QCOMPARE(unlabelled.warnings.size(), size_t(1));
        QVERIFY2(unlabelled.warnings[0].find("no rows labelled 3") != std::string::npos, unlabelled.warnings[0].c_str());

        // An expert with a different hidden size names the field.
        const fs::path odd = newFolder("expert-odd");
        json config = json::parse(readText(models_ / "base" / "config.json"));
        config["hidden_size"] = 128;
        writeText(odd / "config.json", config.dump(1));
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector({"expert-code", odd.string()}, ""))),
                     (odd / "config.json").string(), "hidden_size 128", "base's 256");
        const ModelConfig base = ModelConfig::load(models_ / "base");
        EXPECT_ERROR(throw Error(checkExpertCompatibility(base, odd)), "hidden_size 128");
        config["hidden_size"] = 256;
        config["intermediate_size"] = 512;
        writeText(odd / "config.json", config.dump(1));
        EXPECT_ERROR(throw Error(checkExpertCompatibility(base, odd)), "intermediate_size 512");
        QVERIFY(checkExpertCompatibility(base, newFolder("empty")).find("neither a model") != std::string::npos);

        // Several problems come back together, one per line.
        const std::string many = moe::test::errorMessage([&] {
            validateSelection(loadSelector(
                writeModelsSelector(three, "hidden_size = 512\ntop_k = 5\n", "layers = [9]\n")));
        });
        QVERIFY2(many.find("3 problems:") != std::string::npos, many.c_str());
        QVERIFY2(many.find("hidden_size 512") != std::string::npos, many.c_str());
        QVERIFY2(many.find("top_k 5") != std::string::npos, many.c_str());
        QVERIFY2(many.find("layer 9") != std::string::npos, many.c_str());

        // Training-free gates need positive prompts for every expert.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(three, "gate_mode = \"hidden\"\n"))),
                     "anymoe.config.experts[0]", "no positive_prompts", "hidden");

        // Pretrained gates must exist.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(
                         three, "training = false\ngate_model_id = \"no-gates-here\"\n"))),
                     "gate_model_id", "no-gates-here", "does not exist");
        const fs::path gatesFile = writeModelsSelector(three, "training = false\ngate_model_id = \"gates\"\n");
        fs::create_directories(gatesFile.parent_path() / "gates");
        EXPECT_ERROR(validateSelection(loadSelector(gatesFile)), "gate.safetensors");
        std::vector<float> gate(3 * 256, 0.0f);
        writeSafetensors(gatesFile.parent_path() / "gates" / "gate.safetensors",
                         {{"moe_gate.0.weight", DType::F32, {3, 256}, std::as_bytes(std::span(gate))}});
        validateSelection(loadSelector(gatesFile));

        // A wrong tensor prefix is caught on the base.
        EXPECT_ERROR(validateSelection(loadSelector(writeModelsSelector(three, "", "prefix = \"model.layer\"\n"))),
                     "model.layer.0.mlp.gate_proj.weight", "anymoe.prefix");
    }

    // --- mergekit YAML ----------------------------------------------------

    void mergekitConfigMaps() {
        const fs::path root = newFolder("mergekit");
        fs::create_directory_symlink(models_, root / "models");
        const std::string yaml = R"yaml(base_model: models/base
gate_mode: cheap_embed
dtype: bfloat16
experts_per_token: 1
architecture: mixtral
experts:
  - source_model: models/expert-code
    positive_prompts:
      - "def main():"
      - "#include <stdio.h>"
    negative_prompts:
      - "The licensee shall"
  - source_model: models/expert-legal
    positive_prompts: ["The licensee shall", "Copyright (c)"]
  - source_model: models/expert-tech
    positive_prompts:
      - "A compiler is a program that"
)yaml";
        writeText(root / "moe.yaml", yaml);
        const Selector s = loadSelectorAny(root / "moe.yaml");
        QCOMPARE(s.file, root / "moe.yaml");
        QCOMPARE(s.modelId, std::string("models/base"));
        QCOMPARE(s.baseModel, root / "models" / "base");
        QCOMPARE(s.gateMode, GateMode::CheapEmbed);
        QCOMPARE(s.exportDtype, std::string("bfloat16"));
        QCOMPARE(s.topK, 1);
        QCOMPARE(s.exportArchitecture, std::string("mixtral"));
        QCOMPARE(s.expertType, ExpertType::FineTuned);
        QCOMPARE(s.expertIds, (std::vector<std::string>{"models/expert-code", "models/expert-legal",
                                                         "models/expert-tech"}));
        QCOMPARE(s.experts[2], root / "models" / "expert-tech");
        QCOMPARE(s.expertPrompts.size(), size_t(3));
        QCOMPARE(s.expertPrompts[0].positive, (std::vector<std::string>{"def main():", "#include <stdio.h>"}));
        QCOMPARE(s.expertPrompts[0].negative, std::vector<std::string>{"The licensee shall"});
        QCOMPARE(s.expertPrompts[1].positive, (std::vector<std::string>{"The licensee shall", "Copyright (c)"}));
        QVERIFY(s.expertPrompts[1].negative.empty());
        QCOMPARE(s.gateBias, false);   // mergekit routers have no bias
        QCOMPARE(s.includeBase, false);
        QVERIFY(s.routing && *s.routing == RoutingMode::Token);
        QVERIFY(s.datasetJson.empty());

        // It validates as is, and converts to a TOML selector losslessly.
        const SelectionFacts f = validateSelection(s);
        QCOMPARE(f.nExperts, 3);
        saveSelector(s, root / "moe.toml");
        Selector again = loadSelectorAny(root / "moe.toml");
        again.file = s.file;
        QVERIFY(again == s);

        // Defaults: gate_mode hidden, two experts per token.
        writeText(root / "min.yml", "base_model: models/base\nexperts:\n  - source_model: models/expert-code\n"
                                    "  - source_model: models/expert-legal\n");
        const Selector min = loadSelectorAny(root / "min.yml");
        QCOMPARE(min.gateMode, GateMode::Hidden);
        QCOMPARE(min.topK, 2);
        QVERIFY(min.exportDtype.empty());
        EXPECT_ERROR(validateSelection(min), "no positive_prompts"); // hidden needs prompts
    }

    void mergekitErrorsNameKeyAndLine() {
        const fs::path root = newFolder("mergekit-bad");
        fs::create_directory_symlink(models_, root / "models");
        const std::string good = "base_model: models/base\n"
                                 "gate_mode: hidden\n"
                                 "experts:\n"
                                 "  - source_model: models/expert-code\n"
                                 "    positive_prompts: [\"def\"]\n"
                                 "  - source_model: models/expert-legal\n"
                                 "    positive_prompts: [\"licence\"]\n";
        struct Case {
            std::string from, to, faultLine;
            std::vector<std::string> expected;
        };
        const std::vector<Case> cases = {
            {"gate_mode: hidden", "gate_mode: hidden\ntokenizer_source: base", "tokenizer_source",
             {"tokenizer_source", "not supported"}},
            {"    positive_prompts: [\"licence\"]", "    positive_prompts: [\"licence\"]\n    noise_scale: 0.1",
             "noise_scale", {"experts[1].noise_scale", "not supported"}},
            {"    positive_prompts: [\"def\"]", "    residual_scale: 0.5", "residual_scale",
             {"experts[0].residual_scale", "not supported"}},
            {"gate_mode: hidden", "gate_mode: uniform_random", "gate_mode", {"gate_mode", "uniform_random"}},
            {"gate_mode: hidden", "gate_mode: hidden\nshared_experts:\n  - source_model: models/base", "shared_experts",
             {"shared_experts", "not supported"}},
            {"gate_mode: hidden", "gate_mode: hidden\nexperts_per_token: two", "experts_per_token",
             {"experts_per_token", "positive integer"}},
            {"gate_mode: hidden", "gate_mode: hidden\ndtype: int4", "dtype", {"dtype", "int4"}},
            {"  - source_model: models/expert-code", "  - source_model: models/nothing", "models/nothing",
             {"experts[0].source_model", "not found"}},
            {"    positive_prompts: [\"def\"]", "    positive_prompts: {a: 1}", "positive_prompts",
             {"experts[0].positive_prompts", "list"}},
        };
        for (const Case& c : cases) {
            std::string text = good;
            const size_t at = text.find(c.from + "\n");
            QVERIFY2(at != std::string::npos, c.from.c_str());
            text.replace(at, c.from.size(), c.to);
            writeText(root / "bad.yaml", text);
            std::vector<std::string> expected = c.expected;
            expected.push_back("bad.yaml:" + std::to_string(lineOf(text, c.faultLine)) + ":");
            const std::string message = moe::test::errorMessage([&] { loadMergekitConfig(root / "bad.yaml"); });
            std::string missing;
            QVERIFY2(moe::test::containsAll(message, expected, missing),
                     qPrintable(QString::fromStdString("case \"" + c.to + "\": expected \"" + missing + "\" in: " +
                                                       message)));
        }
        writeText(root / "syntax.yaml", "base_model: models/base\nexperts: [\n  - a\n");
        EXPECT_ERROR(loadMergekitConfig(root / "syntax.yaml"), "syntax.yaml:", "YAML syntax error");
        writeText(root / "noexperts.yaml", "base_model: models/base\n");
        EXPECT_ERROR(loadMergekitConfig(root / "noexperts.yaml"), "noexperts.yaml", "experts", "missing");
        EXPECT_ERROR(loadSelectorAny(root / "selector.json"), "selector.json", ".toml", ".yaml");
    }
};

QTEST_MAIN(TestSelector)
#include "test_selector.moc"
