// Writes interrupted by SIGKILL, as a crash or a killed process leaves them:
// moe-cli export (GGUF file, Mixtral folder), build (gates, loss CSV) and
// generate (the Vulkan pipeline cache written at exit) run as a user runs them and are killed mid-write. The target then either does
// not exist (a fresh write) or still holds the previous complete file byte for
// byte (an overwrite); nothing half-written sits under the target's name. The
// temporaries a killed writer leaves ("<name>.tmp-<pid>-..." files,
// ".<name>.tmp-<pid>" export folders) are removed by the next write of the
// same target.
#include "moe/atomic_file.h"
#include "moe/gate_training.h"
#include "moe/vk.h"
#include "pipeline_cache_file.h"
#include "test_paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <sys/types.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Run {
    int exitCode = -1;
    std::string out, err;
};

Run run(const char* program, const QStringList& args) {
    QProcess p;
    p.start(program, args);
    p.waitForFinished(600000);
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAllStandardOutput().toStdString(),
            p.readAllStandardError().toStdString()};
}

QString q(const fs::path& p) { return QString::fromStdString(p.string()); }

// Starts `program` and SIGKILLs it as soon as `ready()` holds (polled every
// half millisecond), or after `after` when given. Returns whether it was
// killed; false when it finished first.
bool runAndKill(const char* program, const QStringList& args, const std::function<bool()>& ready,
                std::chrono::milliseconds after = std::chrono::milliseconds(0)) {
    QProcess p;
    p.start(program, args);
    if (!p.waitForStarted(30000)) return false;
    const auto t0 = std::chrono::steady_clock::now();
    while (p.state() != QProcess::NotRunning) {
        const bool due = after.count() > 0 ? std::chrono::steady_clock::now() - t0 >= after : ready();
        if (due) {
            ::kill(pid_t(p.processId()), SIGKILL);
            p.waitForFinished(30000);
            return p.exitStatus() == QProcess::CrashExit;
        }
        // Let QProcess notice an exit without blocking the poll.
        p.waitForFinished(0);
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    return false;
}

// Entries of `folder` whose names start with `prefix`.
std::vector<fs::path> entriesStartingWith(const fs::path& folder, const std::string& prefix) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().rfind(prefix, 0) == 0) out.push_back(it->path());
    return out;
}

// The largest regular file at or under `p` (0 when none).
uintmax_t largestFile(const fs::path& p) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::file_size(p, ec);
    uintmax_t best = 0;
    for (fs::recursive_directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec)) best = std::max(best, it->file_size(ec));
    return best;
}

// A temporary of `target` exists and holds at least `bytes`.
std::function<bool()> temporaryGrew(const fs::path& folder, const std::string& prefix, uintmax_t bytes) {
    return [=] {
        for (const auto& e : entriesStartingWith(folder, prefix))
            if (largestFile(e) >= bytes) return true;
        return false;
    };
}

std::string makeRandomModel(const fs::path& out, const QStringList& extra) {
    QStringList args{"--out", q(out), "--tokenizer-from", q(moe::test::modelsDir() / "base")};
    args << extra;
    const Run r = run(MOE_MAKE_RANDOM_MODEL, args);
    return r.exitCode == 0 ? std::string() : "make-random-model failed: " + r.err;
}

// Shapes big enough that writing them takes a while (tens of MB), small
// enough to make in a second.
const QStringList kShape{"--arch",   "llama", "--hidden", "512",  "--layers", "4",     "--heads",
                         "8",        "--kv-heads", "8",   "--intermediate", "2048", "--vocab", "4096"};

} // namespace

class TestInterruptedWrites : public QObject {
    Q_OBJECT
    QTemporaryDir dir;
    fs::path root;

private slots:
    void initTestCase() {
        QVERIFY(dir.isValid());
        root = dir.path().toStdString();
        QStringList base = kShape;
        base << "--seed" << "1";
        const std::string err = makeRandomModel(root / "base", base);
        QVERIFY2(err.empty(), err.c_str());
    }

    // The stale-temporary rule itself: only entries of the prefix whose
    // process is gone are removed.
    void staleTemporariesOfDeadProcessesOnly() {
        const fs::path d = root / "stale";
        fs::create_directories(d);
        // A pid that ran and is gone: a child that exited.
        QProcess p;
        p.start("true", {});
        QVERIFY(p.waitForStarted(10000));
        const long dead = long(p.processId());
        QVERIFY(p.waitForFinished(10000));
        QVERIFY(dead > 0);
        const std::string deadName = "x.gguf.tmp-" + std::to_string(dead) + "-0000abcd";
        const std::string liveName = "x.gguf.tmp-" + std::to_string(long(::getppid())) + "-0000abcd";
        for (const auto& n : {deadName, liveName, std::string("x.gguf.tmp-notapid"), std::string("y.gguf.tmp-1-0")})
            std::ofstream(d / n) << "partial";
        fs::create_directories(d / (".out.tmp-" + std::to_string(dead)));
        std::ofstream(d / (".out.tmp-" + std::to_string(dead)) / "model.safetensors") << "partial";
        moe::removeStaleTemporaries(d, "x.gguf.tmp-");
        moe::removeStaleTemporaries(d, ".out.tmp-");
        QVERIFY(!fs::exists(d / deadName));
        QVERIFY(!fs::exists(d / (".out.tmp-" + std::to_string(dead))));
        QVERIFY(fs::exists(d / liveName));               // its process runs
        QVERIFY(fs::exists(d / "x.gguf.tmp-notapid"));   // not this pattern
        QVERIFY(fs::exists(d / "y.gguf.tmp-1-0"));       // another target's
    }

    // moe-cli export --format gguf of a model, killed with its temporary half
    // written: no out.gguf and no Modelfile; the next export of the same name
    // completes and removes the killed one's temporary.
    void ggufExportKilledMidWrite() {
        const fs::path out = root / "gguf" / "out.gguf";
        fs::create_directories(out.parent_path());
        const QStringList args{"export", "--model", q(root / "base"), "--out", q(out), "--format", "gguf", "--dtype", "f32"};
        QVERIFY2(runAndKill(MOE_CLI, args, temporaryGrew(out.parent_path(), "out.gguf.tmp-", 4u << 20)),
                 "the export finished before its temporary file reached 4 MiB");
        QVERIFY(!fs::exists(out));
        QVERIFY(!fs::exists(out.parent_path() / "out.Modelfile"));
        const auto left = entriesStartingWith(out.parent_path(), "out.gguf.tmp-");
        QCOMPARE(left.size(), size_t(1)); // what the kill leaves, until the next write
        QVERIFY(largestFile(left[0]) >= (4u << 20));

        const Run r = run(MOE_CLI, args);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY(fs::exists(out) && fs::exists(out.parent_path() / "out.Modelfile"));
        QVERIFY(entriesStartingWith(out.parent_path(), "out.gguf.tmp-").empty());
        const Run info = run(MOE_CLI, {"info", "--model", q(out), "--json"});
        QVERIFY2(info.exitCode == 0, info.err.c_str());
        const json facts = json::parse(info.out);
        QCOMPARE(facts["layers"].get<int>(), 4);
        QVERIFY(facts["runnable"].get<bool>());
    }

    // A built MoE of random models (random gates: no training needed), then
    // moe-cli export to a Mixtral folder killed mid-shard: no out folder; the
    // next export completes and removes the killed one's folder. An export
    // over an existing folder is refused and leaves it as it was.
    void folderExportKilledMidWrite() {
        for (int i = 0; i < 2; ++i) {
            QStringList shape = kShape;
            shape << "--seed" << QString::number(10 + i);
            const std::string err = makeRandomModel(root / ("expert" + std::to_string(i)), shape);
            QVERIFY2(err.empty(), err.c_str());
        }
        const fs::path sel = root / "moe.toml";
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (root / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
                           << (root / "expert0").string() << "\", \"" << (root / "expert1").string()
                           << "\"]\nlayers = [0, 1, 2, 3]\n\n[anymoe.config]\ngate_mode = \"random\"\n"
                              "expert_type = \"fine_tuned\"\nrouting = \"token\"\ngate_bias = false\n";
        Run r = run(MOE_CLI, {"build", q(sel), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());

        const fs::path out = root / "exports" / "out";
        fs::create_directories(out.parent_path());
        const QStringList args{"export", q(sel), "--out", q(out), "--dtype", "f32"};
        QVERIFY2(runAndKill(MOE_CLI, args, temporaryGrew(out.parent_path(), ".out.tmp-", 4u << 20)),
                 "the export finished before a shard in its temporary folder reached 4 MiB");
        QVERIFY(!fs::exists(out));
        QCOMPARE(entriesStartingWith(out.parent_path(), ".out.tmp-").size(), size_t(1));

        r = run(MOE_CLI, args);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY(fs::exists(out / "config.json") && fs::exists(out / "model.safetensors.index.json"));
        QVERIFY(entriesStartingWith(out.parent_path(), ".out.tmp-").empty());
        const std::string config = moe::readTextFile(out / "config.json");

        r = run(MOE_CLI, args);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("already exists") != std::string::npos, r.err.c_str());
        QVERIFY(moe::readTextFile(out / "config.json") == config);
    }

    // moe-cli build over an earlier build's gates, killed at points spread
    // over the run (and once as soon as a gates temporary appears): each
    // time, gate.safetensors and the loss CSV are the earlier complete files
    // byte for byte or a complete new one (the new gates load; the CSV has
    // every step's row); a final build leaves no temporaries.
    void buildKilledOverEarlierGates() {
        const auto m = fs::absolute(moe::test::modelsDir());
        const fs::path sel = root / "trained.toml";
        auto writeSelector = [&](int seed) {
            std::ofstream(sel) << "[model]\nmodel_id = \"" << (m / "base").string() << "\"\n\n[anymoe]\ndataset_json = \""
                               << (m / "amoe.json").string() << "\"\nmodel_ids = [\"" << (m / "lora-code").string()
                               << "\", \"" << (m / "lora-legal").string() << "\", \"" << (m / "lora-tech").string()
                               << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\nepochs = 2\nbatch_size = 8\nseed = " << seed
                               << "\nloss_csv_path = \"loss.csv\"\nexpert_type = \"lora_adapter\"\nrouting = \"token\"\n";
        };
        writeSelector(1);
        const auto t0 = std::chrono::steady_clock::now();
        Run r = run(MOE_CLI, {"build", q(sel), "--json"});
        const auto full = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const fs::path gates = json::parse(r.out)["gates"].get<std::string>(), csv = root / "loss.csv";
        const std::string oldGates = moe::readTextFile(gates), oldCsv = moe::readTextFile(csv);
        const size_t csvLines = size_t(std::count(oldCsv.begin(), oldCsv.end(), '\n'));

        writeSelector(2); // other gates, so that old and new files differ
        auto check = [&](const char* when) {
            const std::string g = moe::readTextFile(gates);
            if (g != oldGates) {
                std::map<std::string, std::string> meta;
                QVERIFY2(moe::loadGates(gates, {1, 3}, 3, 256, &meta).size() == 2, when);
                QVERIFY2(meta["cancelled"] == "false", when);
            }
            const std::string c = moe::readTextFile(csv);
            QVERIFY2(c == oldCsv || size_t(std::count(c.begin(), c.end(), '\n')) == csvLines, when);
        };
        int killed = 0;
        for (double at : {0.15, 0.4, 0.65, 0.8, 0.9, 0.97}) {
            const auto after = std::chrono::milliseconds(std::max<long long>(1, (long long)(at * double(full.count()))));
            killed += runAndKill(MOE_CLI, {"build", q(sel), "--json"}, {}, after) ? 1 : 0;
            check(qPrintable(QString("killed at %1 of a build").arg(at)));
            if (QTest::currentTestFailed()) return;
        }
        const bool caught = runAndKill(MOE_CLI, {"build", q(sel), "--json"}, [&] {
            return !entriesStartingWith(gates.parent_path(), "gate.safetensors.tmp-").empty();
        });
        killed += caught ? 1 : 0;
        check("killed when a gates temporary appeared");
        if (QTest::currentTestFailed()) return;
        qInfo("a build takes %lld ms; %d of 7 runs killed (the one at the gates temporary: %s)",
              (long long)full.count(), killed, caught ? "killed" : "finished first");
        QVERIFY(killed >= 4);

        r = run(MOE_CLI, {"build", q(sel), "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY(moe::readTextFile(gates) != oldGates);
        QVERIFY(entriesStartingWith(gates.parent_path(), "gate.safetensors.tmp-").empty());
        QVERIFY(entriesStartingWith(root, "loss.csv.tmp-").empty());
    }

    // The pipeline cache a context writes at exit (moe-cli generate here),
    // killed at points through the run and when its temporary appears: the
    // cache file stays one a context accepts (the last complete one), and the
    // next complete run removes the killed runs' temporaries.
    void pipelineCacheKilledMidWrite() {
        const fs::path cache = root / "xdg-cache";
        const QByteArray savedXdg = qgetenv("XDG_CACHE_HOME");
        qputenv("XDG_CACHE_HOME", QByteArray::fromStdString(cache.string()));
        struct Restore {
            QByteArray value;
            ~Restore() {
                if (value.isEmpty()) qunsetenv("XDG_CACHE_HOME");
                else qputenv("XDG_CACHE_HOME", value);
            }
        } restore{savedXdg};
        moe::vk::PipelineCacheKey key;
        fs::path file;
        {
            moe::vk::Context ctx; // its own cache file goes to the same folder: fine, it is written whole
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(ctx.physicalDevice(), &p);
            key = {p.vendorID, p.deviceID, {}};
            std::memcpy(key.uuid.data(), p.pipelineCacheUUID, key.uuid.size());
            file = ctx.pipelineCachePath();
        }
        const QStringList args{"generate", "--model", q(root / "base"), "--prompt", "hello", "-n", "4", "--temperature", "0"};
        Run r = run(MOE_CLI, args); // the first run compiles every pipeline: several times slower
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto t0 = std::chrono::steady_clock::now();
        r = run(MOE_CLI, args);
        const auto full = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto accepted = [&](const char* when) {
            std::string note;
            QVERIFY2(!moe::vk::readPipelineCache(file, key, note).empty() && note.empty(),
                     (std::string(when) + ": " + note).c_str());
        };
        accepted("after a complete run");
        const std::string prefix = file.filename().string() + ".tmp-";
        int killed = 0;
        for (double at : {0.3, 0.6, 0.85, 0.95, 0.99}) {
            const auto after = std::chrono::milliseconds(std::max<long long>(1, (long long)(at * double(full.count()))));
            killed += runAndKill(MOE_CLI, args, {}, after) ? 1 : 0;
            accepted(qPrintable(QString("killed at %1 of a run").arg(at)));
        }
        int caught = 0;
        for (int i = 0; i < 3; ++i) {
            caught += runAndKill(MOE_CLI, args, [&] { return !entriesStartingWith(file.parent_path(), prefix).empty(); }) ? 1 : 0;
            accepted("killed when the cache temporary appeared");
        }
        qInfo("a run takes %lld ms; %d of 5 timed kills landed, %d of 3 at the cache temporary", (long long)full.count(),
              killed, caught);
        QVERIFY(killed >= 3);
        r = run(MOE_CLI, args);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.err.find("pipeline cache ignored") == std::string::npos, r.err.c_str());
        accepted("after the next complete run");
        QVERIFY(entriesStartingWith(file.parent_path(), prefix).empty());
    }
};

QTEST_GUILESS_MAIN(TestInterruptedWrites)
#include "test_interrupted_writes.moc"
