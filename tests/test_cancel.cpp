// Cancel is honoured in every long phase: loading a model (safetensors, GGUF,
// quantized on load, a native MoE's experts, a built MoE's experts),
// validating a selection, capturing, choosing the routing and exporting.
// Each test sets the flag part-way through (from the phase's own progress
// callback, as a UI thread would between two ticks) and asserts the clean
// outcome: moe::Cancelled or a report saying cancelled, no progress after the
// flag was seen, nothing left half-written, and the time from the flag to the
// return well under the one second (the bound allows a loaded CI
// machine; the measured figures are printed).
#include "moe/builder.h"
#include "moe/error.h"
#include "moe/export.h"
#include "moe/gate_training.h"
#include "moe/model.h"
#include "moe/moe_model.h"
#include "moe/quantize_on_load.h"
#include "moe/runnable_model.h"
#include "moe/selector.h"
#include "moe/validate.h"
#include "reference_model.h"
#include "test_paths.h"
#include "ui/tiny_gguf.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <fstream>
#include <thread>

using namespace moe;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kLatencyBound = 1.0; // seconds, the figure

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A selector over ../shared/models: the base and the three fine-tuned experts,
// gates computed from the dataset's mean hidden states (no training), so that a
// build runs validation, load, capture, experts and routing in seconds.
Selector selector(const std::filesystem::path& dir) {
    const auto m = std::filesystem::absolute(test::modelsDir());
    Selector s;
    s.file = dir / "cancel.toml";
    s.modelId = (m / "base").string();
    s.baseModel = m / "base";
    s.datasetJson = m / "amoe.json";
    for (const char* n : {"code", "legal", "tech"}) {
        const auto d = m / ("expert-" + std::string(n));
        s.expertIds.push_back(d.string());
        s.experts.push_back(d);
    }
    s.expertType = ExpertType::FineTuned;
    s.layers = {1, 2};
    s.gateMode = GateMode::Random;
    s.gateBias = false; // exports refuse biased gates
    s.topK = 2;
    return s;
}

// Loads `path` while another thread, as a UI would, sets the flag once
// tensor `at` is on the device: the load must throw moe::Cancelled with at
// most the tensor in flight finished after the flag (a fused q/k/v ticks
// three times), and return well within the bound.
void expectLoadCancelledAt(vk::Context& ctx, const std::filesystem::path& path, size_t at,
                           QuantizeScheme quantize = QuantizeScheme::None) {
    std::atomic<bool> cancel{false};
    std::atomic<size_t> ticks{0}, total{0}, ticksAtFlag{0};
    Clock::time_point set;
    std::atomic<bool> done{false};
    std::thread setter([&] {
        while (ticks.load() < at && !done.load()) std::this_thread::yield();
        ticksAtFlag = ticks.load();
        set = Clock::now();
        cancel = true;
    });
    LoadProgress progress;
    progress.cancel = &cancel;
    progress.onTensor = [&](size_t n, size_t all) {
        ticks = n;
        total = all;
        // A small model loads faster than another thread is scheduled: this
        // tensor waits for the flag, so that it is set mid-load every time.
        if (n == at)
            for (int i = 0; i < 5000 && !cancel.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    bool cancelled = false;
    std::string message;
    try {
        Model::load(ctx, path, progress, 0, quantize);
    } catch (const Cancelled& e) {
        cancelled = true;
        message = e.what();
    }
    const auto returned = Clock::now();
    done = true;
    setter.join();
    QVERIFY2(message.find("cancelled") != std::string::npos, message.c_str());
    const double latency = std::chrono::duration<double>(returned - set).count();
    QVERIFY2(cancelled, "the load ran to the end");
    QVERIFY2(ticks.load() <= ticksAtFlag.load() + 3,
             qPrintable(QString("%1 tensors loaded after the flag").arg(ticks.load() - ticksAtFlag.load())));
    QVERIFY(ticks.load() < total.load());
    qInfo("%s: flag set at tensor %zu of %zu, stopped at %zu, returned %.2f ms after the flag", path.filename().c_str(),
          ticksAtFlag.load(), total.load(), ticks.load(), latency * 1e3);
    QVERIFY(latency < kLatencyBound);
}

} // namespace

class TestCancel : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir dir;

private slots:
    void initTestCase() {
        QVERIFY(dir.isValid());
        ctx = std::make_unique<vk::Context>();
    }
    void cleanupTestCase() { ctx.reset(); }

    void safetensorsLoad() { expectLoadCancelledAt(*ctx, test::modelsDir() / "base", 5); }

    void ggufLoad() {
        const std::string path = dir.filePath("tiny.gguf").toStdString();
        const auto bytes = test::tinyLlamaGguf(false);
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        expectLoadCancelledAt(*ctx, path, 3);
    }

    void quantizeOnLoad() { expectLoadCancelledAt(*ctx, test::modelsDir() / "base", 7, QuantizeScheme::Q8_0); }

    // A large matrix quantizes for a while on its own: the workers poll the
    // flag between rows, so a cancel during one tensor does not wait for it.
    void quantizeStopsWithinATensor() {
        const int64_t rows = 4096, cols = 4096;
        std::vector<float> values(size_t(rows * cols), 0.25f);
        TensorView t;
        t.name = "big";
        t.dtype = DType::F32;
        t.shape = {rows, cols};
        t.data = reinterpret_cast<const std::byte*>(values.data());
        t.nbytes = values.size() * sizeof(float);
        auto t0 = Clock::now();
        quantizeTensor(t, DType::Q4_K);
        const double full = secondsSince(t0);

        std::atomic<bool> cancel{false};
        Clock::time_point set;
        std::thread setter([&] {
            std::this_thread::sleep_for(std::chrono::duration<double>(full / 10));
            set = Clock::now();
            cancel = true;
        });
        Clock::time_point thrown;
        bool cancelled = false;
        try {
            quantizeTensor(t, DType::Q4_K, &cancel);
        } catch (const Cancelled&) {
            cancelled = true;
            thrown = Clock::now();
        }
        setter.join();
        QVERIFY(cancelled);
        const double latency = std::chrono::duration<double>(thrown - set).count();
        qInfo("a %lldx%lld Q4_K quantization takes %.0f ms; cancelled %.1f ms after the flag", (long long)rows,
              (long long)cols, full * 1e3, latency * 1e3);
        QVERIFY(latency < std::min(kLatencyBound, full / 2));
    }

    void nativeMoeExperts() {
        test::ref::Spec s{"mixtral", 40, 56, 3, 4, 2, 10, 97, 0, false, DType::F32};
        s.experts = 6;
        s.topK = 2;
        const std::filesystem::path d = dir.filePath("mixtral").toStdString();
        std::filesystem::create_directories(d);
        test::ref::writeModel(d, s, 5);
        // Tensor 9 is layer 0's MLP norm: its experts load next (they tick
        // as one, each polls the flag).
        expectLoadCancelledAt(*ctx, d, 9);
    }

    // A built MoE opened from its selector: the flag set during the base's
    // tensors stops it before any expert layer is read.
    void builtMoeLoad() {
        QTemporaryDir here;
        Selector s = selector(here.path().toStdString());
        saveSelector(s, s.file);
        BuildResult built = buildMoe(*ctx, s);
        QVERIFY(built.moe && !built.report.cancelled);
        built.moe.reset();
        std::atomic<bool> cancel{false};
        size_t ticks = 0;
        OpenOptions o;
        o.progress.cancel = &cancel;
        o.progress.onTensor = [&](size_t done, size_t total) {
            ticks = done;
            if (done == total) cancel = true; // the base is loaded: experts next
        };
        QVERIFY_THROWS_EXCEPTION(Cancelled, RunnableModel::openSelector(*ctx, s.file, o));
        QVERIFY(ticks > 0);
        // Not cancelled, the same selector opens.
        cancel = false;
        o.progress.onTensor = {};
        QVERIFY(RunnableModel::openSelector(*ctx, s.file, o));
    }

    void validation() {
        const Selector s = selector(dir.path().toStdString());
        const std::atomic<bool> cancel{true};
        QVERIFY_THROWS_EXCEPTION(Cancelled, validateSelection(s, &cancel));
        QVERIFY(validateSelection(s).nExperts == 3);
    }

    // Each stage of a build: the flag set when the stage reports stops the
    // build there, with no MoE and no further stage.
    void buildStages() {
        for (const std::string stop : {"validate", "capture validation prompts", "experts", "routing"}) {
            QTemporaryDir here;
            Selector s = selector(here.path().toStdString());
            std::atomic<bool> cancel{false};
            std::vector<std::string> after;
            Clock::time_point set;
            const auto t0 = Clock::now();
            BuildResult b = buildMoe(*ctx, s, [&](const BuildProgress& p) {
                if (cancel) after.push_back(p.stage);
                if (p.stage == stop && !cancel) {
                    set = Clock::now();
                    cancel = true;
                }
            }, &cancel);
            const double latency = secondsSince(set);
            qInfo("build cancelled at \"%s\" (%.0f ms in): returned %.2f ms after the flag", stop.c_str(),
                  std::chrono::duration<double>(set - t0).count() * 1e3, latency * 1e3);
            QVERIFY2(b.report.cancelled, stop.c_str());
            QVERIFY2(!b.moe, stop.c_str());
            for (const auto& a : after) QVERIFY2(a == stop, (stop + " then " + a).c_str());
            QVERIFY(latency < kLatencyBound);
        }
    }

    // Stopped during training, a build saves the gates trained so far beside
    // the last complete ones and still installs them; abandoned (the app
    // closing) it saves them and installs nothing, so that closing does not
    // wait for the experts to load.
    void trainingStoppedOrAbandoned() {
        for (const bool abandonToo : {false, true}) {
            QTemporaryDir here;
            Selector s = selector(here.path().toStdString());
            s.gateMode = GateMode::Trained;
            s.epochs = 50;
            std::atomic<bool> cancel{false}, abandon{false};
            std::vector<std::string> after;
            BuildResult b = buildMoe(*ctx, s, [&](const BuildProgress& p) {
                if (cancel) after.push_back(p.stage);
                if (p.stage == "train" && p.done >= 2 && !cancel) {
                    abandon = abandonToo;
                    cancel = true;
                }
            }, &cancel, &abandon);
            qInfo("stopped at train step %d, abandoned %d", b.report.trainSteps, int(abandonToo));
            QVERIFY(b.report.cancelled);
            QVERIFY(b.report.trainSteps >= 2);
            QVERIFY(std::filesystem::exists(gatesFolder(s) / "gate.cancelled.safetensors"));
            QVERIFY(!std::filesystem::exists(gatesFile(s)));
            QCOMPARE(bool(b.moe), !abandonToo);
            for (const auto& a : after) QVERIFY2(a == "train" || a == "experts", a.c_str());
        }
    }

    // An export stops at the next tensor and removes its temporary folder.
    void exportTensors() {
        QTemporaryDir here;
        Selector s = selector(here.path().toStdString());
        QVERIFY(buildMoe(*ctx, s).moe);
        ExportOptions o;
        o.out = here.filePath("export").toStdString();
        std::atomic<bool> cancel{false};
        size_t last = 0, total = 0;
        Clock::time_point set;
        const ExportReport r = exportMoe(s, o, [&](const ExportProgress& p) {
            if (p.stage != "tensors") return;
            last = p.done;
            total = p.total;
            if (p.done == 3) {
                set = Clock::now();
                cancel = true;
            }
        }, &cancel);
        const double latency = secondsSince(set);
        QVERIFY(r.cancelled);
        QCOMPARE(last, size_t(3));
        QVERIFY(total > 3);
        QVERIFY(!std::filesystem::exists(o.out));
        for (const auto& e : std::filesystem::directory_iterator(here.path().toStdString()))
            QVERIFY2(e.path().filename().string().find("export") == std::string::npos, e.path().c_str());
        qInfo("export cancelled at tensor 3 of %zu: returned %.2f ms after the flag", total, latency * 1e3);
        QVERIFY(latency < kLatencyBound);
    }
};

QTEST_GUILESS_MAIN(TestCancel)
#include "test_cancel.moc"
