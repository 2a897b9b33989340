// The model library lists the models LM Studio, GPT4All and Ollama keep, in
// fake stores under the test's HOME: names as those apps show them, the
// engine's facts, the source column, and the reasons of broken entries. The
// scan runs on a worker thread: the window stays responsive, and a FIFO named
// *.gguf (which would block whoever opens it) is listed, not opened.
#include "main_window.h"
#include "model_library.h"
#include "models_page.h"

#include "tiny_gguf.h"
#include "ui_test_env.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include <sys/stat.h>

using namespace moe::ui;

namespace {

bool writeFile(const QString& path, const QByteArray& bytes) {
    QDir().mkpath(QFileInfo(path).absolutePath());
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
}

QByteArray bytesOf(const std::vector<uint8_t>& v) { return QByteArray(reinterpret_cast<const char*>(v.data()), qsizetype(v.size())); }

QString sha256(const QByteArray& bytes) { return QCryptographicHash::hash(bytes, QCryptographicHash::Sha256).toHex(); }

// An Ollama manifest whose model layer is `blob`, written to blobs/ under its digest unless `blobPresent` is false.
bool addOllamaModel(const QString& root, const QString& manifest, const QByteArray& blob, bool blobPresent = true) {
    const QString digest = sha256(blob);
    if (blobPresent && !writeFile(root + "/blobs/sha256-" + digest, blob)) return false;
    QJsonObject layer{{"mediaType", "application/vnd.ollama.image.model"}, {"digest", "sha256:" + digest}, {"size", blob.size()}};
    QJsonObject doc{{"schemaVersion", 2}, {"layers", QJsonArray{layer}}};
    return writeFile(root + "/manifests/" + manifest, QJsonDocument(doc).toJson());
}

const ModelEntry* findByName(const ModelLibrary& lib, const QString& name) {
    for (const ModelEntry& e : lib.entries())
        if (e.name == name) return &e;
    return nullptr;
}

} // namespace

class TestUiModelStores : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString lmStudio_, gpt4all_, ollama_;
    QByteArray q8_, f32_;

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        moe::test::isolateUiTest(tmp_);
        qunsetenv("OLLAMA_MODELS");
        const QString home = qEnvironmentVariable("HOME");
        lmStudio_ = home + "/.lmstudio/models";
        gpt4all_ = qEnvironmentVariable("XDG_DATA_HOME") + "/nomic.ai/GPT4All";
        ollama_ = home + "/.ollama/models";
        q8_ = bytesOf(moe::test::tinyLlamaGguf(true));
        f32_ = bytesOf(moe::test::tinyLlamaGguf(false));
        QVERIFY(writeFile(lmStudio_ + "/tiny-org/Tiny-GGUF/tiny-Q8_0.gguf", q8_));
        QVERIFY(::mkfifo((lmStudio_ + "/tiny-org/Tiny-GGUF/pipe.gguf").toLocal8Bit().constData(), 0600) == 0);
        QVERIFY(writeFile(gpt4all_ + "/tiny-chat.gguf", f32_));
        QVERIFY(addOllamaModel(ollama_, "registry.ollama.ai/library/tiny/latest", q8_));
        QVERIFY(addOllamaModel(ollama_, "registry.ollama.ai/library/gone/latest", "never pulled", false));
    }

    void storesAreListedWithTheirFacts() {
        MainWindow window;
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        window.start();
        // The scan is on a worker thread: start() has returned while it runs.
        QVERIFY(window.library()->isScanning());
        QTRY_VERIFY_WITH_TIMEOUT(!window.library()->isScanning(), 60000);
        const ModelLibrary& lib = *window.library();

        const ModelEntry* lm = findByName(lib, "tiny-org/Tiny-GGUF/tiny-Q8_0.gguf");
        QVERIFY(lm);
        QVERIFY2(lm->isValid(), qPrintable(lm->error));
        QCOMPARE(lm->source, ModelSourceType::LmStudio);
        QCOMPARE(lm->path, lmStudio_ + "/tiny-org/Tiny-GGUF/tiny-Q8_0.gguf");
        QCOMPARE(lm->architecture, QStringLiteral("llama"));
        QCOMPARE(lm->parameters, moe::test::kTinyLlamaParameters);
        QCOMPARE(lm->layers, 1);
        QCOMPARE(lm->hiddenSize, 32);
        QCOMPARE(lm->dtype, QStringLiteral("Q8_0")); // no general.file_type: the type of most tensor bytes
        QCOMPARE(lm->sizeOnDisk, qint64(q8_.size()));
        QVERIFY(lm->isChatLoadable());
        const int lmRow = lib.rowOfPath(lm->path);
        QCOMPARE(lib.data(lib.index(lmRow, ModelLibrary::Source)).toString(), QStringLiteral("LM Studio"));
        QCOMPARE(lib.data(lib.index(lmRow, ModelLibrary::DType)).toString(), QStringLiteral("Q8_0"));

        const ModelEntry* pipe = findByName(lib, "tiny-org/Tiny-GGUF/pipe.gguf");
        QVERIFY(pipe);
        QCOMPARE(pipe->kind, ModelKind::Invalid);
        QVERIFY2(pipe->error.contains("not a regular file"), qPrintable(pipe->error));

        const ModelEntry* gpt = findByName(lib, "tiny-chat.gguf");
        QVERIFY(gpt);
        QVERIFY2(gpt->isValid(), qPrintable(gpt->error));
        QCOMPARE(gpt->source, ModelSourceType::Gpt4All);
        QCOMPARE(gpt->dtype, QStringLiteral("F32"));

        const ModelEntry* tiny = findByName(lib, "tiny:latest");
        QVERIFY(tiny);
        QVERIFY2(tiny->isValid(), qPrintable(tiny->error));
        QCOMPARE(tiny->source, ModelSourceType::Ollama);
        QCOMPARE(tiny->path, ollama_ + "/blobs/sha256-" + sha256(q8_));
        QCOMPARE(tiny->storeSource, ollama_ + "/manifests/registry.ollama.ai/library/tiny/latest");
        QCOMPARE(tiny->parameters, moe::test::kTinyLlamaParameters);
        QVERIFY(tiny->isChatLoadable());

        const ModelEntry* gone = findByName(lib, "gone:latest");
        QVERIFY(gone);
        QCOMPARE(gone->kind, ModelKind::Invalid);
        QVERIFY2(gone->error.contains("missing") && gone->error.contains(sha256("never pulled")), qPrintable(gone->error));
        const int goneRow = lib.rowOfPath(gone->path);
        QCOMPARE(lib.data(lib.index(goneRow, ModelLibrary::Location)).toString(), gone->error);
        QCOMPARE(lib.data(lib.index(goneRow, ModelLibrary::Source)).toString(), QStringLiteral("Ollama"));

        // The details of the selected Ollama model name its store and manifest.
        window.modelsPage()->selectPath(tiny->path);
        const QString details = window.modelsPage()->detailsLabel()->text();
        QVERIFY2(details.contains("tiny:latest") && details.contains("from Ollama") && details.contains("manifest"),
                 qPrintable(details));
        window.modelsPage()->selectPath(gone->path);
        QVERIFY2(window.modelsPage()->detailsLabel()->text().contains("missing"),
                 qPrintable(window.modelsPage()->detailsLabel()->text()));
    }

    // A Hugging Face repository of GGUF files only (no config.json; the
    // snapshot links into blobs/, as huggingface_hub writes it): each file is
    // a runnable entry of the hub cache; a split model is one entry that
    // says it cannot be run.
    void huggingFaceGgufRepositoriesAreListed() {
        const QString hub = tmp_.path() + "/gguf-hub";
        const QString repo = hub + "/models--TheBloke--Tiny-GGUF";
        QVERIFY(writeFile(repo + "/refs/main", "abc123"));
        QVERIFY(writeFile(repo + "/blobs/" + sha256(q8_), q8_));
        QVERIFY(QDir().mkpath(repo + "/snapshots/abc123"));
        QVERIFY(QFile::link("../../blobs/" + sha256(q8_), repo + "/snapshots/abc123/tiny-Q8_0.gguf"));
        QVERIFY(writeFile(repo + "/snapshots/abc123/split/tiny-00001-of-00002.gguf", f32_));
        QVERIFY(writeFile(repo + "/snapshots/abc123/split/tiny-00002-of-00002.gguf", f32_));
        ModelLibrary lib;
        lib.scan({{hub, ModelSourceType::HuggingFaceCache}});
        QTRY_VERIFY_WITH_TIMEOUT(!lib.isScanning(), 60000);
        QCOMPARE(lib.rowCount(), 2);
        const ModelEntry* tiny = findByName(lib, "TheBloke/Tiny-GGUF/tiny-Q8_0.gguf");
        QVERIFY(tiny);
        QVERIFY2(tiny->isValid(), qPrintable(tiny->error));
        QVERIFY(tiny->gguf);
        QVERIFY(tiny->isChatLoadable());
        QCOMPARE(tiny->source, ModelSourceType::HuggingFaceCache);
        QCOMPARE(tiny->parameters, moe::test::kTinyLlamaParameters);
        QCOMPARE(lib.data(lib.index(lib.rowOfPath(tiny->path), ModelLibrary::Source)).toString(),
                 QStringLiteral("Hugging Face cache"));
        const ModelEntry* split = findByName(lib, "TheBloke/Tiny-GGUF/split/tiny-00001-of-00002.gguf");
        QVERIFY(split);
        QCOMPARE(split->kind, ModelKind::Invalid);
        QCOMPARE(split->sizeOnDisk, qint64(2 * f32_.size()));
        QVERIFY2(split->error.contains("cannot run split GGUFs"), qPrintable(split->error));
    }

    // A newer scan supersedes a running one; the library ends with the newer result.
    void aRescanSupersedesTheRunningScan() {
        ModelLibrary lib;
        QSignalSpy finished(&lib, &ModelLibrary::scanFinished);
        const QVector<ModelSource> sources = {{ollama_, ModelSourceType::Ollama}, {lmStudio_, ModelSourceType::LmStudio}};
        lib.scan(sources);
        lib.scan({{gpt4all_, ModelSourceType::Gpt4All}});
        QTRY_VERIFY_WITH_TIMEOUT(!lib.isScanning(), 60000);
        QTest::qWait(100); // a superseded scan's late result must not replace the newer one
        QCOMPARE(finished.count(), 1);
        QCOMPARE(lib.rowCount(), 1);
        QCOMPARE(lib.entries().first().name, QStringLiteral("tiny-chat.gguf"));
    }
};

QTEST_MAIN(TestUiModelStores)
#include "test_ui_model_stores.moc"
