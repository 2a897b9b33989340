// "Export…" in the app, offscreen: a small MoE over the demo models (hidden
// gates from a few prompts, gate_bias = false) is built with the engine; the
// Build page refuses a selector that was not built and opens the dialog for
// one that was; the dialog exports on its worker thread (progress reaches the
// end, the UI thread stays free) into a loadable Qwen2-MoE folder; Cancel
// leaves nothing behind; a bad shard size is refused with its text. The
// Training page offers Export only after a build of a saved selector.
// Engine headers with members named `slots` come before any Qt header.
#include "moe/builder.h"
#include "moe/model_config.h"

#include "build_controller.h"
#include "build_page.h"
#include "export_dialog.h"
#include "training_page.h"

#include "test_paths.h"
#include "ui_test_env.h"

#include <QComboBox>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

using namespace moe::ui;
namespace fs = std::filesystem;

class TestUiExport : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;
    fs::path root, models, built, unbuilt;

    fs::path writeSelector(const std::string& name) {
        const fs::path file = root / name;
        std::ofstream t(file);
        t << "[model]\nmodel_id = \"" << (models / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
          << (models / "expert-code").string() << "\", \"" << (models / "expert-legal").string() << "\", \""
          << (models / "expert-tech").string() << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\n"
          << "gate_mode = \"hidden\"\ngate_bias = false\nrouting = \"token\"\ntop_k = 2\n"
          << "\n[[anymoe.config.experts]]\npositive_prompts = [\"def main():\", \"#include <stdio.h>\"]\n"
          << "\n[[anymoe.config.experts]]\npositive_prompts = [\"Permission is hereby granted\", \"Copyright (c)\"]\n"
          << "\n[[anymoe.config.experts]]\npositive_prompts = [\"A compiler is a program that\"]\n";
        return file;
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp.isValid());
        moe::test::isolateUiTest(tmp);
        models = fs::absolute(moe::test::modelsDir()).lexically_normal();
        if (!fs::is_regular_file(models / "base" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("shared models not found in " + models.string())));
        root = fs::path(tmp.path().toStdString()) / "work";
        fs::create_directories(root);
        built = writeSelector("built.toml");
        unbuilt = writeSelector("unbuilt.toml");
        moe::vk::Context ctx;
        QVERIFY(moe::buildMoe(ctx, moe::loadSelector(built)).moe);
    }

    void buildPageRefusesAnUnbuiltSelector() {
        BuildPage page;
        QVERIFY(page.openExportDialog(QString::fromStdString(unbuilt.string())) == nullptr);
        QVERIFY2(page.messageText().contains(QLatin1String("no gates yet")), qPrintable(page.messageText()));
        QVERIFY(page.openExportDialog(QString::fromStdString((root / "missing.toml").string())) == nullptr);
        QVERIFY2(page.messageText().contains(QLatin1String("missing.toml")), qPrintable(page.messageText()));
    }

    void exportsFromTheBuildPage() {
        BuildPage page;
        ExportDialog* dialog = page.openExportDialog(QString::fromStdString(built.string()));
        QVERIFY(dialog);
        QVERIFY(page.messageText().isEmpty());
        // Default output: "<selector stem>-hf" beside the selector.
        QCOMPARE(dialog->outputEdit()->text(), QString::fromStdString((root / "built-hf").string()));
        const fs::path out = root / "qwen-export";
        dialog->outputEdit()->setText(QString::fromStdString(out.string()));
        dialog->formatBox()->setCurrentIndex(dialog->formatBox()->findData(QStringLiteral("qwen2_moe")));
        dialog->dtypeBox()->setCurrentIndex(dialog->dtypeBox()->findData(QStringLiteral("f32")));
        dialog->shardSizeEdit()->setText(QStringLiteral("2MB")); // several shards
        QSignalSpy done(dialog, &ExportDialog::exported);
        dialog->exportButton()->click();
        QVERIFY(dialog->isRunning()); // returns at once: the export runs on its own thread
        QVERIFY(!dialog->exportButton()->isEnabled());
        QCOMPARE(dialog->cancelButton()->text(), QStringLiteral("Cancel"));
        QTRY_VERIFY_WITH_TIMEOUT(!dialog->isRunning(), 120000);
        QCOMPARE(done.count(), 1);
        QCOMPARE(done.at(0).at(0).toString(), QString::fromStdString(out.string()));
        QCOMPARE(dialog->progressBar()->value(), dialog->progressBar()->maximum());
        QVERIFY2(dialog->statusText().contains(QLatin1String("Exported 3 experts")), qPrintable(dialog->statusText()));
        QVERIFY(fs::is_regular_file(out / "model.safetensors.index.json"));
        const moe::ModelConfig c = moe::ModelConfig::load(out);
        QCOMPARE(c.arch, moe::Arch::Qwen2Moe);
        QCOMPARE(c.numExperts, 3);
        QCOMPARE(c.mlpOnlyLayers, (std::vector<int>{0, 2}));
        QCOMPARE(dialog->cancelButton()->text(), QStringLiteral("Close"));

        // Exporting into the same folder again is refused with the engine's message.
        QSignalSpy failed(dialog, &ExportDialog::failed);
        QVERIFY(dialog->startExport());
        QTRY_VERIFY_WITH_TIMEOUT(!dialog->isRunning(), 60000);
        QCOMPARE(failed.count(), 1);
        QVERIFY2(dialog->statusText().contains(QLatin1String("already exists")), qPrintable(dialog->statusText()));
        dialog->close();
    }

    void exportsGgufWithItsSizeFirst() {
        ExportDialog dialog(moe::loadSelector(built));
        dialog.formatBox()->setCurrentIndex(dialog.formatBox()->findData(QStringLiteral("gguf")));
        QCOMPARE(dialog.outputEdit()->text(), QString::fromStdString((root / "built.gguf").string()));
        QCOMPARE(dialog.dtypeBox()->currentData().toString(), QStringLiteral("q4_k_m"));
        QVERIFY(!dialog.shardSizeEdit()->isEnabled());
        // The size is planned on a worker thread, before anything is written.
        QTRY_VERIFY_WITH_TIMEOUT(!dialog.isSizing() && dialog.expectedSizeText().contains(QLatin1String("expected size: ")) &&
                                     !dialog.expectedSizeText().contains(QLatin1String("computing")),
                                 60000);
        QVERIFY2(dialog.expectedSizeText().contains(QLatin1String("q4_k")), qPrintable(dialog.expectedSizeText()));
        QVERIFY(!fs::exists(root / "built.gguf"));
        QSignalSpy done(&dialog, &ExportDialog::exported);
        QVERIFY(dialog.startExport());
        QTRY_VERIFY_WITH_TIMEOUT(!dialog.isRunning(), 120000);
        QCOMPARE(done.count(), 1);
        const fs::path file = root / "built.gguf";
        QVERIFY(fs::is_regular_file(file));
        QVERIFY(fs::is_regular_file(root / "built.Modelfile"));
        const double mb = double(fs::file_size(file)) / 1e6;
        QVERIFY2(dialog.expectedSizeText().contains(QString::number(mb, 'f', 1) + QLatin1String(" MB")),
                 qPrintable(dialog.expectedSizeText() + QString(" vs %1 MB").arg(mb)));
        QVERIFY2(dialog.statusText().contains(QLatin1String("ollama create built")), qPrintable(dialog.statusText()));
        QVERIFY(dialog.openFolderButton()->isVisibleTo(&dialog));
        const moe::ModelConfig c = moe::ModelConfig::load(file);
        QCOMPARE(c.numExperts, 3);
    }

    void cancelLeavesNothingBehind() {
        ExportDialog dialog(moe::loadSelector(built));
        const fs::path out = root / "cancelled-export";
        dialog.outputEdit()->setText(QString::fromStdString(out.string()));
        QSignalSpy cancelled(&dialog, &ExportDialog::cancelled);
        QVERIFY(dialog.startExport());
        // Cancel before the first tensor: the engine checks the flag per tensor.
        dialog.cancelButton()->click();
        // The worker ends on its own: the dialog reports the end from the event loop.
        QVERIFY(dialog.isRunning());
        QVERIFY2(dialog.statusText().contains(QLatin1String("Cancelling")), qPrintable(dialog.statusText()));
        QTRY_VERIFY_WITH_TIMEOUT(!dialog.isRunning(), 60000);
        QCOMPARE(cancelled.count(), 1);
        QVERIFY(!fs::exists(out));
        for (const auto& entry : fs::directory_iterator(root))
            QVERIFY2(entry.path().filename().string().find(".tmp-") == std::string::npos, entry.path().c_str());
        QVERIFY2(dialog.statusText().contains(QLatin1String("Cancelled")), qPrintable(dialog.statusText()));
    }

    void badShardSizeIsRefused() {
        ExportDialog dialog(moe::loadSelector(built));
        dialog.outputEdit()->setText(QString::fromStdString((root / "never").string()));
        dialog.shardSizeEdit()->setText(QStringLiteral("5 parsecs"));
        QVERIFY(!dialog.startExport());
        QVERIFY(!dialog.isRunning());
        QVERIFY2(dialog.statusText().contains(QLatin1String("5 parsecs")), qPrintable(dialog.statusText()));
        QVERIFY(!fs::exists(root / "never"));
    }

    void trainingPageOffersExportAfterABuild() {
        BuildController controller;
        TrainingPage page(&controller);
        QVERIFY(!page.exportButton()->isEnabled());
        QVERIFY(page.openExportDialog() == nullptr);
        QSignalSpy finished(&controller, &BuildController::finished);
        QVERIFY(controller.start(moe::loadSelector(built)));
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 300000);
        QVERIFY(page.exportButton()->isEnabled());
        ExportDialog* dialog = page.openExportDialog();
        QVERIFY(dialog);
        QVERIFY(dialog->isVisible());
        QCOMPARE(dialog->outputEdit()->text(), QString::fromStdString((root / "built-hf").string()));
        dialog->close();
    }
};

QTEST_MAIN(TestUiExport)
#include "test_ui_export.moc"
