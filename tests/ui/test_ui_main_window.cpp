// The main window and the model library: demo models listed with their facts,
// kinds (base / expert / LoRA / native MoE), the Hugging Face cache, and
// errors of bad folders shown in the window.
#include "build_page.h"
#include "main_window.h"
#include "model_library.h"
#include "models_page.h"

#include "moe/safetensors.h"
#include "test_paths.h"
#include "tiny_gguf.h"
#include "ui_test_env.h"

#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

using namespace moe::ui;

namespace {

QString demoDir() { return QString::fromStdString(moe::test::modelsDir().string()); }

QJsonObject readJson(const QString& path) {
    QFile f(path);
    f.open(QIODevice::ReadOnly);
    return QJsonDocument::fromJson(f.readAll()).object();
}

void writeText(const QString& path, const QByteArray& text) {
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(text);
}

// The Llama parameter count from config.json alone: embeddings, lm_head,
// attention (GQA), SwiGLU MLP and RMSNorm weights. Independent of the
// safetensors headers the library sums.
qint64 llamaParameters(const QJsonObject& c) {
    const qint64 h = c["hidden_size"].toInt(), i = c["intermediate_size"].toInt(), v = c["vocab_size"].toInt();
    const qint64 layers = c["num_hidden_layers"].toInt(), heads = c["num_attention_heads"].toInt();
    const qint64 kv = c["num_key_value_heads"].toInt(), headDim = c["head_dim"].toInt(h / heads);
    const qint64 attention = h * heads * headDim + 2 * h * kv * headDim + heads * headDim * h;
    const qint64 perLayer = attention + 3 * h * i + 2 * h;
    return v * h * (c["tie_word_embeddings"].toBool() ? 1 : 2) + layers * perLayer + h;
}

const ModelEntry* findByName(const ModelLibrary& lib, const QString& name) {
    for (const ModelEntry& e : lib.entries())
        if (e.name == name) return &e;
    return nullptr;
}

} // namespace

class TestUiMainWindow : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        moe::test::isolateUiTest(tmp_);
        qputenv("MOE_MODELS_DIR", demoDir().toUtf8());
        QVERIFY2(QFileInfo(demoDir() + "/base/config.json").exists(), qPrintable(demoDir()));
    }

    void opensWithDemoModelsListed() {
        MainWindow window;
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        window.start();
        QCOMPARE(window.windowTitle(), QStringLiteral("MoE Studio"));
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);

        const ModelLibrary& lib = *window.library();
        QCOMPARE(window.modelsPage()->table()->model()->rowCount(), lib.rowCount());
        const QStringList dense = {"base", "expert-code", "expert-legal", "expert-tech"};
        const QStringList adapters = {"lora-code", "lora-legal", "lora-tech"};
        const QString basePath = QFileInfo(demoDir() + "/base").absoluteFilePath();
        for (const QString& name : dense + adapters) {
            const ModelEntry* e = findByName(lib, name);
            QVERIFY2(e, qPrintable(name + " is not listed"));
            QVERIFY2(e->isValid(), qPrintable(e->error));
            QCOMPARE(e->source, ModelSourceType::Demo);
        }
        // Facts of the dense models against their own config.json.
        for (const QString& name : dense) {
            const ModelEntry* e = findByName(lib, name);
            const QJsonObject config = readJson(e->path + "/config.json");
            QCOMPARE(e->architecture, config["architectures"].toArray().first().toString());
            QCOMPARE(e->layers, config["num_hidden_layers"].toInt());
            QCOMPARE(e->hiddenSize, config["hidden_size"].toInt());
            QCOMPARE(e->parameters, llamaParameters(config));
            QVERIFY(e->sizeOnDisk > e->parameters); // 16-bit weights: about 2 bytes each
        }
        QCOMPARE(findByName(lib, "base")->kind, ModelKind::Base);
        QCOMPARE(findByName(lib, "base")->dtype, QStringLiteral("BF16"));
        QCOMPARE(findByName(lib, "expert-tech")->dtype, QStringLiteral("F16"));
        for (const char* name : {"expert-code", "expert-legal", "expert-tech"}) {
            QCOMPARE(findByName(lib, name)->kind, ModelKind::Expert);
            QCOMPARE(findByName(lib, name)->baseModel, basePath);
        }
        for (const QString& name : adapters) {
            const ModelEntry* e = findByName(lib, name);
            QCOMPARE(e->kind, ModelKind::LoraAdapter);
            QCOMPARE(e->baseModel, basePath);
            const QJsonObject adapter = readJson(e->path + "/adapter_config.json");
            QVERIFY(e->architecture.contains(QStringLiteral("r %1").arg(adapter["r"].toInt())));
            QCOMPARE(e->dtype, QStringLiteral("F32"));
        }
        // The table shows the names.
        QStringList shown;
        for (int r = 0; r < lib.rowCount(); ++r) shown << lib.data(lib.index(r, ModelLibrary::Name)).toString();
        for (const QString& name : dense + adapters) QVERIFY(shown.contains(name));

        // The status bar gets the Vulkan device from a worker thread.
        QTRY_VERIFY_WITH_TIMEOUT(!window.deviceName().isEmpty(), 30000);
        QVERIFY2(!window.deviceName().startsWith("no device"), qPrintable(window.deviceName()));
    }

    void missingFolderShowsItsError() {
        MainWindow window;
        window.show();
        window.start();
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        const QString missing = tmp_.path() + "/no-such-model";
        window.modelsPage()->addFolder(missing);
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);

        const int row = window.library()->rowOfPath(missing);
        QVERIFY(row >= 0);
        const ModelEntry* e = window.library()->entry(row);
        QCOMPARE(e->kind, ModelKind::Invalid);
        QVERIFY2(e->error.contains(missing), qPrintable(e->error));
        // Shown in the window: the table's status column and the details pane.
        const QString cell = window.library()->data(window.library()->index(row, ModelLibrary::Location)).toString();
        QVERIFY2(cell.contains("not found") && cell.contains(missing), qPrintable(cell));
        QVERIFY2(window.modelsPage()->detailsLabel()->text().contains(missing),
                 qPrintable(window.modelsPage()->detailsLabel()->text()));
        QVERIFY(window.modelsPage()->detailsLabel()->isVisible());
        // Remembered in the settings like any added folder.
        QVERIFY(QSettings().value("models/folders").toStringList().contains(QDir::cleanPath(missing)));
        window.modelsPage()->removeFolder(QDir::cleanPath(missing));
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        QCOMPARE(window.library()->rowOfPath(missing), -1);
    }

    void brokenConfigNamesTheFile() {
        const QString dir = tmp_.path() + "/broken/model";
        QDir().mkpath(dir);
        writeText(dir + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\",");
        const ModelEntry e = inspectModelFolder(dir);
        QCOMPARE(e.kind, ModelKind::Invalid);
        QVERIFY2(e.error.contains(dir + "/config.json") && e.error.contains("invalid JSON"), qPrintable(e.error));

        const QString noWeights = tmp_.path() + "/no-weights";
        QDir().mkpath(noWeights);
        writeText(noWeights + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8}");
        const ModelEntry w = inspectModelFolder(noWeights);
        QCOMPARE(w.kind, ModelKind::Invalid);
        QVERIFY2(w.error.contains(noWeights), qPrintable(w.error));
    }

    void nativeMoeShowsExpertsAndTopK() {
        const QString dir = tmp_.path() + "/mixtral-tiny";
        QDir().mkpath(dir);
        writeText(dir + "/config.json",
                  R"({"architectures": ["MixtralForCausalLM"], "hidden_size": 4, "intermediate_size": 6,
                      "num_hidden_layers": 1, "vocab_size": 3, "num_local_experts": 8, "num_experts_per_tok": 2})");
        std::vector<float> gate(8 * 4, 0.5f), embed(3 * 4, 0.25f);
        moe::writeSafetensors((dir + "/model.safetensors").toStdString(),
                              {{"model.layers.0.block_sparse_moe.gate.weight", moe::DType::F32, {8, 4},
                                std::as_bytes(std::span<const float>(gate))},
                               {"model.embed_tokens.weight", moe::DType::F32, {3, 4},
                                std::as_bytes(std::span<const float>(embed))}});
        const ModelEntry e = inspectModelFolder(dir);
        QVERIFY2(e.isValid(), qPrintable(e.error));
        QCOMPARE(e.kind, ModelKind::NativeMoe);
        QCOMPARE(e.experts, 8);
        QCOMPARE(e.topK, 2);
        QCOMPARE(e.parameters, qint64(8 * 4 + 3 * 4));
        QCOMPARE(e.dtype, QStringLiteral("F32"));
        QVERIFY(!e.isChatLoadable());
    }

    // GGUF files in a user folder and its sub-folders, inspected through the
    // engine: facts, the dtype mix, base / expert by shape, and the engine's
    // error for a file it cannot run (its architecture, or a tensor it does not know).
    void ggufFilesAreListedWithTheirFacts() {
        const QString dir = tmp_.path() + "/gguf-models";
        QVERIFY(QDir().mkpath(dir + "/fine-tunes"));
        QVERIFY(QDir().mkpath(dir + "/broken"));
        const QString base = dir + "/tiny-base.Q8_0.gguf", expert = dir + "/fine-tunes/tiny-chat.gguf";
        const QString badArch = dir + "/gpt2.gguf", badTensor = dir + "/broken/sinks.gguf";
        QVERIFY(moe::test::writeGguf(base, moe::test::tinyLlamaGguf(true)));
        QVERIFY(moe::test::writeGguf(expert, moe::test::tinyLlamaGguf(false)));
        QVERIFY(moe::test::writeGguf(badArch, moe::test::tinyLlamaGguf(false, {}, "gpt2")));
        QVERIFY(moe::test::writeGguf(badTensor, moe::test::tinyLlamaGguf(false, [](moe::test::GgufBuilder& b) {
            b.tensor("blk.0.attn_sinks.weight", {2}, 0, std::vector<uint8_t>(8, 0));
        })));
        writeText(dir + "/README.md", "not a model");

        const QVector<ModelEntry> entries = scanModelSources({{dir, ModelSourceType::UserFolder}});
        QCOMPARE(entries.size(), 4);
        auto find = [&](const QString& path) -> const ModelEntry* {
            for (const ModelEntry& e : entries)
                if (e.path == QFileInfo(path).absoluteFilePath()) return &e;
            return nullptr;
        };
        const ModelEntry* b = find(base);
        QVERIFY(b);
        QVERIFY2(b->isValid(), qPrintable(b->error));
        QVERIFY(b->gguf);
        QCOMPARE(b->name, QStringLiteral("tiny-base.Q8_0.gguf"));
        QCOMPARE(b->kind, ModelKind::Base);
        QCOMPARE(b->architecture, QStringLiteral("LlamaForCausalLM"));
        QCOMPARE(b->layers, 1);
        QCOMPARE(b->hiddenSize, 32);
        QCOMPARE(b->intermediateSize, 32);
        QCOMPARE(b->vocabSize, 8);
        QCOMPARE(b->parameters, moe::test::kTinyLlamaParameters);
        QCOMPARE(b->dtype, QStringLiteral("Q8_0 + F32")); // matrices Q8_0, embeddings and norms F32
        QCOMPARE(b->sizeOnDisk, QFileInfo(base).size());
        QVERIFY(b->isChatLoadable());

        const ModelEntry* x = find(expert);
        QVERIFY(x);
        QVERIFY2(x->isValid(), qPrintable(x->error));
        QCOMPARE(x->kind, ModelKind::Expert); // same shape as the base, one level down
        QCOMPARE(x->baseModel, b->path);
        QCOMPARE(x->dtype, QStringLiteral("F32"));
        QCOMPARE(x->parameters, moe::test::kTinyLlamaParameters);

        const ModelEntry* arch = find(badArch);
        QVERIFY(arch);
        QCOMPARE(arch->kind, ModelKind::Invalid);
        QCOMPARE(kindName(arch->kind), QStringLiteral("error"));
        for (const char* part : {"general.architecture", "gpt2", "not supported"})
            QVERIFY2(arch->error.contains(part), qPrintable(arch->error));
        QVERIFY2(arch->error.contains(badArch), qPrintable(arch->error));
        const ModelEntry* sinks = find(badTensor);
        QVERIFY(sinks);
        QCOMPARE(sinks->kind, ModelKind::Invalid);
        QVERIFY2(sinks->error.contains("blk.0.attn_sinks.weight"), qPrintable(sinks->error));

        // In the window: the table's cells and the error in the status column.
        MainWindow window;
        window.show();
        window.start();
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        window.modelsPage()->addFolder(dir);
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        const ModelLibrary& lib = *window.library();
        const int row = lib.rowOfPath(b->path);
        QVERIFY(row >= 0);
        QCOMPARE(lib.data(lib.index(row, ModelLibrary::DType)).toString(), QStringLiteral("Q8_0 + F32"));
        QCOMPARE(lib.data(lib.index(row, ModelLibrary::Kind)).toString(), QStringLiteral("base"));
        QCOMPARE(lib.data(lib.index(row, ModelLibrary::Layers)).toString(), QStringLiteral("1"));
        QCOMPARE(lib.data(lib.index(row, ModelLibrary::Size)).toString(), humanBytes(QFileInfo(base).size()));
        const int bad = lib.rowOfPath(arch->path);
        QVERIFY(bad >= 0);
        QCOMPARE(lib.data(lib.index(bad, ModelLibrary::Kind)).toString(), QStringLiteral("error"));
        QCOMPARE(lib.data(lib.index(bad, ModelLibrary::Location)).toString(), arch->error);
        window.modelsPage()->removeFolder(QDir::cleanPath(dir));
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
    }

    void huggingFaceCacheIsDiscovered() {
        // models--org--name/snapshots/<rev>/ with files linked to the blobs, as the hub writes them.
        const QString hub = qEnvironmentVariable("HF_HUB_CACHE");
        const QString snapshot = hub + "/models--tiny-org--tiny-llama/snapshots/0123abcd";
        QDir().mkpath(snapshot);
        for (const char* file : {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"})
            QVERIFY(QFile::link(demoDir() + "/base/" + file, snapshot + "/" + file));
        MainWindow window;
        window.start();
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        const ModelEntry* e = findByName(*window.library(), "tiny-org/tiny-llama");
        QVERIFY(e);
        QVERIFY2(e->isValid(), qPrintable(e->error));
        QCOMPARE(e->source, ModelSourceType::HuggingFaceCache);
        QCOMPARE(e->parameters, findByName(*window.library(), "base")->parameters);
        QVERIFY(e->sizeOnDisk >= QFileInfo(demoDir() + "/base/model.safetensors").size()); // links followed
        QDir(hub + "/models--tiny-org--tiny-llama").removeRecursively();
    }

    void buildPageButtonsEmitTheirSignals() {
        MainWindow window;
        QSignalSpy newMoe(window.buildPage(), &BuildPage::newMoeRequested);
        QPushButton* button = nullptr;
        for (auto* b : window.buildPage()->findChildren<QPushButton*>())
            if (b->text().startsWith("New MoE")) button = b;
        QVERIFY(button);
        button->click();
        QCOMPARE(newMoe.size(), 1);
    }

    void remembersGeometryAndPage() {
        {
            MainWindow window;
            window.show();
            window.start();
            window.resize(1000, 700);
            window.showPage(MainWindow::Training);
            window.close();
        }
        MainWindow again;
        again.show();
        again.start();
        QCOMPARE(again.currentPage(), MainWindow::Training);
        QCOMPARE(again.size(), QSize(1000, 700));
    }
};

QTEST_MAIN(TestUiMainWindow)
#include "test_ui_main_window.moc"
