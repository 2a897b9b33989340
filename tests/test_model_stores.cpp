// The models other apps keep (moe/model_stores.h, moe-cli models): fake LM
// Studio, GPT4All, Ollama and Hugging Face stores in a temporary HOME, holding
// llama.cpp's GGUF files of the demo models (.testdata/gguf), Ollama
// manifests with the blobs' real sha256 digests. Facts are checked against
// what llama.cpp itself said of each file (reference.json: architecture,
// file type), the source checkpoints' safetensors headers (parameters) and
// the file system (sizes); broken entries against their causes.
#include "gguf_builder.h"
#include "test_paths.h"
#include "ui/tiny_gguf.h"

#include "moe/gguf.h"
#include "moe/gguf_model.h"
#include "moe/model_stores.h"
#include "moe/safetensors.h"

#include <QCryptographicHash>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include <sys/stat.h>
#include <unistd.h>

using namespace moe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path ggufDir() { return fs::absolute(test::testDataDir() / "gguf"); }

bool requireData() {
    const char* v = std::getenv("MOE_REQUIRE_TESTDATA");
    return v && *v && std::string(v) != "0";
}

// A hard link where the file system allows it (no copy of the bytes), else a copy.
void place(const fs::path& from, const fs::path& to) {
    fs::create_directories(to.parent_path());
    std::error_code ec;
    if (fs::exists(to)) return; // an Ollama blob two manifests name
    fs::create_hard_link(from, to, ec);
    if (ec) fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

void writeBytes(const fs::path& to, const std::string& bytes) {
    fs::create_directories(to.parent_path());
    std::ofstream(to, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string readBytes(const fs::path& p, size_t n = SIZE_MAX) {
    std::ifstream in(p, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (s.size() > n) s.resize(n);
    return s;
}

std::string sha256Hex(const std::string& bytes) {
    return QCryptographicHash::hash(QByteArray::fromStdString(bytes), QCryptographicHash::Sha256).toHex().toStdString();
}

// llama.cpp's llama_model_ftype_name ("Q4_K - Medium") as the short name files and apps use ("Q4_K_M").
std::string shortFileType(std::string t) {
    if (t == "all F32") return "F32";
    for (const auto& [longName, suffix] : std::map<std::string, std::string>{{" - Small", "_S"}, {" - Medium", "_M"}, {" - Large", "_L"}})
        if (const size_t at = t.find(longName); at != std::string::npos) t = t.substr(0, at) + suffix;
    return t;
}

uint64_t safetensorsParameters(const fs::path& dir) {
    uint64_t n = 0;
    const auto store = WeightStore::openFolder(dir);
    for (const auto& name : store->names()) n += uint64_t(store->find(name)->numel());
    return n;
}

const std::string kLicense = "MIT License\n";

// An Ollama model: the GGUF as a blob, a config and a license blob, and the manifest naming them.
std::string addOllamaModel(const fs::path& root, const std::string& relManifest, const fs::path& gguf) {
    const std::string bytes = readBytes(gguf);
    const std::string digest = sha256Hex(bytes);
    place(gguf, root / "blobs" / ("sha256-" + digest));
    const std::string config = R"({"model_format":"gguf","model_family":"llama"})", license = kLicense;
    writeBytes(root / "blobs" / ("sha256-" + sha256Hex(config)), config);
    writeBytes(root / "blobs" / ("sha256-" + sha256Hex(license)), license);
    json manifest = {
        {"schemaVersion", 2},
        {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
        {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"}, {"digest", "sha256:" + sha256Hex(config)}, {"size", config.size()}}},
        {"layers",
         {{{"mediaType", "application/vnd.ollama.image.model"}, {"digest", "sha256:" + digest}, {"size", bytes.size()}},
          {{"mediaType", "application/vnd.ollama.image.license"}, {"digest", "sha256:" + sha256Hex(license)}, {"size", license.size()}}}}};
    writeBytes(root / "manifests" / relManifest, manifest.dump());
    return digest;
}

const StoreModel* byName(const std::vector<StoreModel>& models, const std::string& name) {
    for (const StoreModel& m : models)
        if (m.name == name) return &m;
    return nullptr;
}

struct Run {
    int exitCode = -1;
    std::string out, err;
};

Run runCli(const QStringList& args) {
    QProcess p;
    p.start(MOE_CLI, args); // the environment of this process: the fake HOME
    p.waitForFinished(120000);
    return {p.exitCode(), p.readAllStandardOutput().toStdString(), p.readAllStandardError().toStdString()};
}

} // namespace

#define REQUIRE_GGUFS()                                                                       \
    do {                                                                                      \
        if (!fs::exists(ggufDir() / "reference.json")) {                                      \
            if (requireData()) QFAIL("no .testdata/gguf: run packaging/make-test-ggufs.sh");  \
            QSKIP("no .testdata/gguf (packaging/make-test-ggufs.sh)");                        \
        }                                                                                     \
    } while (0)

class TestModelStores : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    fs::path home_, lmStudio_, oldLmStudio_, gpt4all_, ollama_, ollamaEnv_, hub_;
    json reference_;
    std::string baseDigest_;

    // What llama.cpp said of a test file: its architecture and file type.
    void checkAgainstLlamaCpp(const StoreModel& m, const std::string& file) {
        const json& ref = reference_["models"][file];
        QVERIFY2(m.runnable, m.error.c_str());
        QVERIFY2(m.error.empty(), m.error.c_str());
        QCOMPARE(m.architecture, ref["architecture"].get<std::string>());
        QCOMPARE(m.quant, shortFileType(ref["file_type"].get<std::string>()));
        QCOMPARE(m.sizeOnDisk, uint64_t(fs::file_size(ggufDir() / file)));
        QCOMPARE(m.format, std::string("gguf"));
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        const fs::path root = tmp_.path().toStdString();
        home_ = root / "home";
        hub_ = root / "hub";
        lmStudio_ = home_ / ".lmstudio" / "models";
        oldLmStudio_ = home_ / ".cache" / "lm-studio" / "models";
        gpt4all_ = home_ / ".local" / "share" / "nomic.ai" / "GPT4All";
        ollama_ = home_ / ".ollama" / "models";
        ollamaEnv_ = root / "ollama-elsewhere";
        fs::create_directories(home_);
        fs::create_directories(hub_);
        qputenv("HOME", QByteArray::fromStdString(home_.string()));
        qputenv("HF_HUB_CACHE", QByteArray::fromStdString(hub_.string()));
        qputenv("OLLAMA_MODELS", QByteArray::fromStdString(ollamaEnv_.string()));
        for (const char* v : {"HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "XDG_DATA_HOME"}) qunsetenv(v);

        if (!fs::exists(ggufDir() / "reference.json")) return; // the tests that need the files skip or fail
        reference_ = json::parse(std::ifstream(ggufDir() / "reference.json"));
        const fs::path g = ggufDir();
        // LM Studio: <publisher>/<repo>/*.gguf, and the damaged files a crash or a full disk leaves.
        place(g / "base-q8_0.gguf", lmStudio_ / "moe-demo" / "Base-GGUF" / "base-Q8_0.gguf");
        place(g / "base-q4_k_m.gguf", lmStudio_ / "moe-demo" / "Base-GGUF" / "base-Q4_K_M.gguf");
        const std::string f16 = readBytes(g / "base-f16.gguf");
        writeBytes(lmStudio_ / "moe-demo" / "Broken-GGUF" / "half.gguf", f16.substr(0, f16.size() / 2));
        writeBytes(lmStudio_ / "moe-demo" / "Broken-GGUF" / "notes.gguf", "These are not weights.\n");
        fs::create_directories(lmStudio_ / "moe-demo" / "Broken-GGUF" / "folder.gguf" / "inside");
        // A FIFO blocks whoever opens it: it must be listed without being opened.
        QVERIFY(::mkfifo((lmStudio_ / "moe-demo" / "Broken-GGUF" / "pipe.gguf").c_str(), 0600) == 0);
        writeBytes(lmStudio_ / "moe-demo" / "Broken-GGUF" / "README.md", "# not a model\n");
        // The older LM Studio folder.
        place(g / "expert-code-f16.gguf", oldLmStudio_ / "TheBloke" / "Expert-GGUF" / "expert-code-f16.gguf");
        // GPT4All: files in one folder; a download in progress is incomplete-<name>, cut inside its header.
        place(g / "random-qwen3moe-q8_0.gguf", gpt4all_ / "random-qwen3moe-q8_0.gguf");
        writeBytes(gpt4all_ / "incomplete-base-q4_0.gguf", readBytes(g / "base-q4_0.gguf", 100));
        // Ollama: the default library, another namespace, another registry (the same blob), a missing blob.
        baseDigest_ = addOllamaModel(ollama_, "registry.ollama.ai/library/tiny-base/latest", g / "base-q4_k_m.gguf");
        addOllamaModel(ollama_, "registry.ollama.ai/someone/tiny-mixtral/q8_0", g / "random-mixtral-q8_0.gguf");
        addOllamaModel(ollama_, "hf.co/moe-demo/Base-GGUF/Q4_K_M", g / "base-q4_k_m.gguf");
        json gone = json::parse(readBytes(ollama_ / "manifests" / "registry.ollama.ai/library/tiny-base/latest"));
        gone["layers"][0]["digest"] = "sha256:" + sha256Hex("a blob that was never pulled");
        writeBytes(ollama_ / "manifests" / "registry.ollama.ai/library/gone/latest", gone.dump());
        writeBytes(ollama_ / "manifests" / "registry.ollama.ai/library/garbled/latest", "{\"layers\": [");
        // A manifest naming a blob that is not a GGUF file (the license).
        json notGguf = gone;
        notGguf["layers"][0]["digest"] = "sha256:" + sha256Hex(kLicense);
        notGguf["layers"][0]["size"] = kLicense.size();
        writeBytes(ollama_ / "manifests" / "registry.ollama.ai/library/license-only/latest", notGguf.dump());
        // $OLLAMA_MODELS: a second store.
        addOllamaModel(ollamaEnv_, "registry.ollama.ai/library/qwen2-tiny/f32", g / "random-qwen2-f32.gguf");
        // The hub cache: the demo base as huggingface_hub lays it out.
        const fs::path snap = hub_ / "models--moe-demo--base" / "snapshots" / "0123abcd";
        fs::create_directories(snap);
        writeBytes(hub_ / "models--moe-demo--base" / "refs" / "main", "0123abcd");
        for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"})
            if (fs::exists(test::modelsDir() / "base" / f)) fs::create_symlink(fs::absolute(test::modelsDir() / "base" / f), snap / f);
        // A repository of GGUF files only (no config.json), as huggingface_hub
        // lays out `hf download TheBloke/X-GGUF`: snapshot links into blobs/.
        const fs::path ggufRepo = hub_ / "models--TheBloke--Base-GGUF";
        const fs::path ggufSnap = ggufRepo / "snapshots" / "89abcdef";
        fs::create_directories(ggufSnap);
        writeBytes(ggufRepo / "refs" / "main", "89abcdef");
        for (const char* f : {"base-q8_0.gguf", "base-q4_k_m.gguf"}) {
            const std::string blob = sha256Hex(readBytes(g / f));
            place(g / f, ggufRepo / "blobs" / blob);
            fs::create_symlink(fs::path("../../blobs") / blob, ggufSnap / f);
        }
        writeBytes(ggufSnap / "README.md", "# GGUF files\n");
    }

    void findsTheStoreFolders() {
        REQUIRE_GGUFS();
        std::vector<std::pair<ModelStore, fs::path>> roots;
        for (const StoreRoot& r : modelStoreRoots()) roots.emplace_back(r.store, r.path);
        const std::vector<std::pair<ModelStore, fs::path>> expected = {
            {ModelStore::HuggingFaceCache, hub_}, {ModelStore::LmStudio, lmStudio_}, {ModelStore::LmStudio, oldLmStudio_},
            {ModelStore::Gpt4All, gpt4all_},       {ModelStore::Ollama, ollamaEnv_}, {ModelStore::Ollama, ollama_}};
        QCOMPARE(roots.size(), expected.size());
        for (size_t i = 0; i < roots.size(); ++i) {
            QCOMPARE(int(roots[i].first), int(expected[i].first));
            QCOMPARE(roots[i].second.string(), expected[i].second.string());
        }
    }

    void ollamaNamesAsOllamaShowsThem() {
        QCOMPARE(ollamaModelName("registry.ollama.ai/library/llama3.2/latest"), std::string("llama3.2:latest"));
        QCOMPARE(ollamaModelName("registry.ollama.ai/someone/mix/q8_0"), std::string("someone/mix:q8_0"));
        QCOMPARE(ollamaModelName("hf.co/bartowski/Llama-3.2-1B-GGUF/Q4_K_M"), std::string("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"));
        QCOMPARE(ggufFileTypeName(15), std::string("Q4_K_M"));
        QCOMPARE(ggufFileTypeName(1024 + 7), std::string("Q8_0")); // LLAMA_FTYPE_GUESSED
        QCOMPARE(ggufFileTypeName(5), std::string());               // removed from llama.cpp
    }

    void lmStudioModelsAreListed() {
        REQUIRE_GGUFS();
        const auto models = scanModelStore({ModelStore::LmStudio, lmStudio_});
        // The two models and four damaged files; README.md is not a model file.
        QCOMPARE(models.size(), size_t(6));
        const uint64_t baseParams = safetensorsParameters(test::modelsDir() / "base");
        for (const auto& [name, file] : std::map<std::string, std::string>{{"moe-demo/Base-GGUF/base-Q8_0.gguf", "base-q8_0.gguf"},
                                                                            {"moe-demo/Base-GGUF/base-Q4_K_M.gguf", "base-q4_k_m.gguf"}}) {
            const StoreModel* m = byName(models, name);
            QVERIFY2(m, name.c_str());
            QCOMPARE(int(m->store), int(ModelStore::LmStudio));
            QCOMPARE(m->path.string(), (lmStudio_ / name).string());
            checkAgainstLlamaCpp(*m, file);
            QCOMPARE(m->parameters, baseParams);
            QCOMPARE(m->layers, 4);
            QCOMPARE(m->hiddenSize, 256);
        }
        const StoreModel* half = byName(models, "moe-demo/Broken-GGUF/half.gguf");
        QVERIFY(half);
        QVERIFY(!half->runnable);
        QVERIFY2(half->error.find((lmStudio_ / "moe-demo/Broken-GGUF/half.gguf").string()) != std::string::npos, half->error.c_str());
        QVERIFY2(half->error.find("past its end") != std::string::npos, half->error.c_str());
        const StoreModel* notes = byName(models, "moe-demo/Broken-GGUF/notes.gguf");
        QVERIFY(notes);
        QVERIFY(!notes->runnable);
        QVERIFY2(notes->error.find("not a GGUF file") != std::string::npos, notes->error.c_str());
        const StoreModel* folder = byName(models, "moe-demo/Broken-GGUF/folder.gguf");
        QVERIFY(folder);
        QVERIFY(!folder->runnable);
        QVERIFY2(folder->error.find("a folder, not a GGUF file") != std::string::npos, folder->error.c_str());
        const StoreModel* pipe = byName(models, "moe-demo/Broken-GGUF/pipe.gguf");
        QVERIFY(pipe);
        QVERIFY2(pipe->error.find("not a regular file") != std::string::npos, pipe->error.c_str());

        const auto old = scanModelStore({ModelStore::LmStudio, oldLmStudio_});
        QCOMPARE(old.size(), size_t(1));
        QCOMPARE(old[0].name, std::string("TheBloke/Expert-GGUF/expert-code-f16.gguf"));
        checkAgainstLlamaCpp(old[0], "expert-code-f16.gguf");
        QCOMPARE(old[0].parameters, safetensorsParameters(test::modelsDir() / "expert-code"));
    }

    void gpt4allModelsAreListed() {
        REQUIRE_GGUFS();
        const auto models = scanModelStore({ModelStore::Gpt4All, gpt4all_});
        QCOMPARE(models.size(), size_t(2));
        const StoreModel* moe = byName(models, "random-qwen3moe-q8_0.gguf");
        QVERIFY(moe);
        checkAgainstLlamaCpp(*moe, "random-qwen3moe-q8_0.gguf");
        QCOMPARE(moe->parameters, safetensorsParameters(ggufDir() / "random-qwen3moe"));
        QCOMPARE(moe->experts, 4);
        QCOMPARE(moe->expertsPerToken, 2);
        const StoreModel* part = byName(models, "incomplete-base-q4_0.gguf");
        QVERIFY(part);
        QVERIFY(!part->runnable);
        QCOMPARE(part->sizeOnDisk, uint64_t(100));
        QVERIFY2(part->error.find("unfinished GPT4All download") != std::string::npos, part->error.c_str());
        QVERIFY2(part->error.find("truncated") != std::string::npos, part->error.c_str());
    }

    void ollamaModelsAreListed() {
        REQUIRE_GGUFS();
        const auto models = scanModelStore({ModelStore::Ollama, ollama_});
        QCOMPARE(models.size(), size_t(6));
        const StoreModel* base = byName(models, "tiny-base:latest");
        QVERIFY(base);
        QCOMPARE(int(base->store), int(ModelStore::Ollama));
        QCOMPARE(base->path.string(), (ollama_ / "blobs" / ("sha256-" + baseDigest_)).string());
        QCOMPARE(base->source.string(), (ollama_ / "manifests/registry.ollama.ai/library/tiny-base/latest").string());
        checkAgainstLlamaCpp(*base, "base-q4_k_m.gguf");
        QCOMPARE(base->parameters, safetensorsParameters(test::modelsDir() / "base"));
        // The blob has no .gguf name, yet the engine opens it as a GGUF model.
        QVERIFY(isGgufPath(base->path));
        QVERIFY(openModelWeights(base->path)->names().size() > 0);

        const StoreModel* hf = byName(models, "hf.co/moe-demo/Base-GGUF:Q4_K_M");
        QVERIFY(hf);
        QCOMPARE(hf->path.string(), base->path.string()); // the same digest, the same blob
        checkAgainstLlamaCpp(*hf, "base-q4_k_m.gguf");
        const StoreModel* mix = byName(models, "someone/tiny-mixtral:q8_0");
        QVERIFY(mix);
        checkAgainstLlamaCpp(*mix, "random-mixtral-q8_0.gguf");
        QCOMPARE(mix->experts, 4);
        QCOMPARE(mix->parameters, safetensorsParameters(ggufDir() / "random-mixtral"));

        const StoreModel* gone = byName(models, "gone:latest");
        QVERIFY(gone);
        QVERIFY(!gone->runnable);
        const std::string goneDigest = sha256Hex("a blob that was never pulled");
        QVERIFY2(gone->error.find(goneDigest) != std::string::npos && gone->error.find("missing") != std::string::npos,
                 gone->error.c_str());
        QVERIFY2(gone->error.find("registry.ollama.ai/library/gone/latest") != std::string::npos, gone->error.c_str());
        const StoreModel* garbled = byName(models, "garbled:latest");
        QVERIFY(garbled);
        QVERIFY2(garbled->error.find("not a JSON manifest") != std::string::npos, garbled->error.c_str());
        const StoreModel* license = byName(models, "license-only:latest");
        QVERIFY(license);
        QVERIFY2(license->error.find("not a GGUF file") != std::string::npos, license->error.c_str());

        const auto elsewhere = scanModelStore({ModelStore::Ollama, ollamaEnv_});
        QCOMPARE(elsewhere.size(), size_t(1));
        QCOMPARE(elsewhere[0].name, std::string("qwen2-tiny:f32"));
        checkAgainstLlamaCpp(elsewhere[0], "random-qwen2-f32.gguf");
    }

    void huggingFaceCacheIsListed() {
        REQUIRE_GGUFS();
        auto models = scanModelStore({ModelStore::HuggingFaceCache, hub_});
        QCOMPARE(models.size(), size_t(3));
        // A repository holding only GGUF files: each file a runnable entry.
        for (const auto& [name, file] : std::map<std::string, std::string>{{"TheBloke/Base-GGUF/base-q8_0.gguf", "base-q8_0.gguf"},
                                                                            {"TheBloke/Base-GGUF/base-q4_k_m.gguf", "base-q4_k_m.gguf"}}) {
            const StoreModel* m = byName(models, name);
            QVERIFY2(m, name.c_str());
            QCOMPARE(m->store, ModelStore::HuggingFaceCache);
            checkAgainstLlamaCpp(*m, file);
            QCOMPARE(m->path, hub_ / "models--TheBloke--Base-GGUF" / "snapshots" / "89abcdef" / file);
        }
        // Without the config.json folders (the app scans those itself).
        StoreScanLimits ggufOnly;
        ggufOnly.modelFolders = false;
        QCOMPARE(scanModelStore({ModelStore::HuggingFaceCache, hub_}, ggufOnly).size(), size_t(2));
        models.erase(std::remove_if(models.begin(), models.end(), [](const StoreModel& m) { return m.format == "gguf"; }),
                     models.end());
        QCOMPARE(models.size(), size_t(1));
        QCOMPARE(models[0].name, std::string("moe-demo/base"));
        QVERIFY2(models[0].runnable, models[0].error.c_str());
        QCOMPARE(models[0].format, std::string("safetensors"));
        QCOMPARE(models[0].architecture, std::string("llama"));
        QCOMPARE(models[0].parameters, safetensorsParameters(test::modelsDir() / "base"));
        QCOMPARE(models[0].quant, std::string("BF16"));
        QVERIFY(models[0].sizeOnDisk >= fs::file_size(test::modelsDir() / "base" / "model.safetensors")); // links followed
    }

    // A tensor type the engine does not read: the file is still listed with
    // its facts, and the reason names the tensor and its type.
    void unreadTensorTypesAreListedWithTheReason() {
        const fs::path file = fs::path(tmp_.path().toStdString()) / "extra" / "iq2.gguf";
        fs::create_directories(file.parent_path());
        const auto bytes = test::tinyLlamaGguf(false, [](test::GgufBuilder& b) {
            b.u32("general.file_type", 19); // LLAMA_FTYPE_MOSTLY_IQ2_XXS
            b.tensor("blk.0.extra.weight", {256}, 16, std::vector<uint8_t>(66, 0)); // iq2_xxs: 66 bytes per 256
        });
        writeBytes(file, std::string(bytes.begin(), bytes.end()));
        const auto models = scanModelStore({ModelStore::Folder, file.parent_path()});
        QCOMPARE(models.size(), size_t(1));
        QCOMPARE(models[0].name, std::string("iq2.gguf"));
        QCOMPARE(models[0].architecture, std::string("llama"));
        QCOMPARE(models[0].quant, std::string("IQ2_XXS"));
        QCOMPARE(models[0].parameters, uint64_t(test::kTinyLlamaParameters + 256));
        QVERIFY(!models[0].runnable);
        QVERIFY2(models[0].error.find("blk.0.extra.weight") != std::string::npos &&
                     models[0].error.find("iq2_xxs is not supported") != std::string::npos,
                 models[0].error.c_str());
        // Opened to run it, the file is refused as before.
        EXPECT_ERROR(GgufFile::open(file), "blk.0.extra.weight", "iq2_xxs");
        // A header longer than the bound is refused before it is read.
        EXPECT_ERROR(GgufFile::open(file, {true, 64}), file.string(), "longer than the 64 bytes");
    }

    // What a crash, a full disk, a download in progress or a careless link
    // leaves in a store: each listed with the reason, none stops the scan.
    void awkwardFilesAreListedWithTheReason() {
        REQUIRE_GGUFS();
        const fs::path root = fs::path(tmp_.path().toStdString()) / "awkward";
        const fs::path repo = root / "pub" / "Repo-GGUF";
        const std::string q8 = readBytes(ggufDir() / "base-q8_0.gguf");
        writeBytes(repo / "good.gguf", q8);
        // A download in progress (as LM Studio and browsers name it), cut in the tensor data.
        writeBytes(repo / "next.gguf.part", q8.substr(0, q8.size() / 3));
        writeBytes(repo / "cut.gguf", q8.substr(0, 200)); // cut inside the header
        fs::create_directories(repo / "folder.gguf");
        fs::create_symlink("self.gguf", repo / "self.gguf");          // a link to itself
        fs::create_symlink("nowhere.gguf", repo / "dangling.gguf");  // a link to nothing
        fs::create_directory_symlink("..", repo / "loop");            // a folder loop
        writeBytes(repo / "locked.gguf", q8);
        fs::permissions(repo / "locked.gguf", fs::perms::none);
        const bool asRoot = ::geteuid() == 0; // root reads it anyway

        std::vector<StoreModel> models;
        QCOMPARE(test::errorMessage([&] { models = scanModelStore({ModelStore::LmStudio, root}); }), std::string("<no error thrown>"));
        fs::permissions(repo / "locked.gguf", fs::perms::owner_read | fs::perms::owner_write);
        auto entry = [&](const std::string& file) -> const StoreModel& {
            static const StoreModel none;
            const StoreModel* m = byName(models, "pub/Repo-GGUF/" + file);
            if (!m) qWarning("no entry for %s", file.c_str());
            return m ? *m : none;
        };
        QCOMPARE(models.size(), size_t(7)); // the loop is not followed: no entry is listed twice
        QVERIFY2(entry("good.gguf").runnable, entry("good.gguf").error.c_str());
        for (const auto& [file, why] : std::vector<std::pair<std::string, std::string>>{
                 {"next.gguf.part", "an unfinished download"},
                 {"cut.gguf", "(truncated?)"},
                 {"folder.gguf", "a folder, not a GGUF file"},
                 {"self.gguf", "cannot read"},
                 {"dangling.gguf", "cannot read"}}) {
            const StoreModel& m = entry(file);
            QVERIFY2(!m.runnable, file.c_str());
            QVERIFY2(m.error.find(why) != std::string::npos && m.error.find((repo / file).string()) != std::string::npos,
                     (file + ": " + m.error).c_str());
        }
        QCOMPARE(entry("next.gguf.part").sizeOnDisk, uint64_t(q8.size() / 3));
        if (asRoot) QVERIFY2(entry("locked.gguf").runnable, entry("locked.gguf").error.c_str());
        else QVERIFY2(entry("locked.gguf").error.find("cannot open") != std::string::npos, entry("locked.gguf").error.c_str());

        // Header reads are bounded: 32 MiB by default, and a longer header is refused unread.
        QCOMPARE(StoreScanLimits{}.maxHeaderBytes, uint64_t(32) << 20);
        StoreScanLimits small;
        small.maxHeaderBytes = 4096; // the demo vocabulary alone is longer
        const StoreModel bounded = inspectGgufModel(repo / "good.gguf", small);
        QVERIFY(!bounded.runnable);
        QVERIFY2(bounded.error.find("longer than the 4096 bytes") != std::string::npos, bounded.error.c_str());
    }

    // llama.cpp's split files (gguf-split: NAME-00001-of-00003.gguf, ...) are
    // one model whose size is all the parts'; MoE Studio says it cannot run it.
    void splitGgufsAreOneModel() {
        REQUIRE_GGUFS();
        const fs::path root = fs::path(tmp_.path().toStdString()) / "split";
        const std::string q8 = readBytes(ggufDir() / "base-q8_0.gguf");
        for (int part = 1; part <= 3; ++part)
            writeBytes(root / "pub" / "Big-GGUF" / ("big-0000" + std::to_string(part) + "-of-00003.gguf"), q8);
        writeBytes(root / "pub" / "Gap-GGUF" / "gap-00001-of-00002.gguf", q8);        // part 2 missing
        writeBytes(root / "pub" / "Orphan-GGUF" / "orphan-00002-of-00002.gguf", q8);  // part 1 missing
        const auto models = scanModelStore({ModelStore::LmStudio, root});
        QCOMPARE(models.size(), size_t(3));
        const StoreModel* big = byName(models, "pub/Big-GGUF/big-00001-of-00003.gguf");
        QVERIFY(big);
        QVERIFY(!big->runnable);
        QCOMPARE(big->sizeOnDisk, uint64_t(3 * q8.size()));
        QCOMPARE(big->architecture, std::string("llama"));
        QCOMPARE(big->parameters, 3 * inspectGgufModel(ggufDir() / "base-q8_0.gguf").parameters);
        QVERIFY2(big->error.find("split in 3 parts") != std::string::npos &&
                     big->error.find("cannot run split GGUFs") != std::string::npos &&
                     big->error.find("llama-gguf-split --merge big-00001-of-00003.gguf big.gguf") != std::string::npos,
                 big->error.c_str());
        const StoreModel* gap = byName(models, "pub/Gap-GGUF/gap-00001-of-00002.gguf");
        QVERIFY(gap && !gap->runnable);
        QVERIFY2(gap->error.find("gap-00002-of-00002.gguf") != std::string::npos, gap->error.c_str());
        const StoreModel* orphan = byName(models, "pub/Orphan-GGUF/orphan-00002-of-00002.gguf");
        QVERIFY(orphan && !orphan->runnable);
        QVERIFY2(orphan->error.find("first part orphan-00001-of-00002.gguf is missing") != std::string::npos,
                 orphan->error.c_str());
    }

    void cliListsTheStoresAsJson() {
        REQUIRE_GGUFS();
        const fs::path extra = fs::path(tmp_.path().toStdString()) / "my-models";
        place(ggufDir() / "base-q8_0.gguf", extra / "mine.gguf");
        Run r = runCli({"models", "--json", "--dir", QString::fromStdString(extra.string())});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const json j = json::parse(r.out);
        const auto api = scanModelStores({extra});
        QCOMPARE(j.size(), api.size());
        QCOMPARE(j.size(), size_t(3 + 6 + 1 + 2 + 1 + 6 + 1)); // hub, LM Studio, old LM Studio, GPT4All, $OLLAMA_MODELS, Ollama, --dir
        for (size_t i = 0; i < api.size(); ++i) {
            QCOMPARE(j[i]["name"].get<std::string>(), api[i].name);
            QCOMPARE(j[i]["store"].get<std::string>(), std::string(storeId(api[i].store)));
            QCOMPARE(j[i]["path"].get<std::string>(), api[i].path.string());
            QCOMPARE(j[i]["architecture"].get<std::string>(), api[i].architecture);
            QCOMPARE(j[i]["parameters"].get<uint64_t>(), api[i].parameters);
            QCOMPARE(j[i]["quant"].get<std::string>(), api[i].quant);
            QCOMPARE(j[i]["size_on_disk"].get<uint64_t>(), api[i].sizeOnDisk);
            QCOMPARE(j[i]["runnable"].get<bool>(), api[i].runnable);
            QCOMPARE(j[i].contains("not_runnable_because"), !api[i].error.empty());
        }
        const auto find = [&](const std::string& name) -> json {
            for (const auto& m : j)
                if (m["name"] == name) return m;
            return nullptr;
        };
        const json base = find("tiny-base:latest");
        QCOMPARE(base["store"].get<std::string>(), std::string("ollama"));
        QCOMPARE(base["quant"].get<std::string>(), std::string("Q4_K_M"));
        QCOMPARE(base["runnable"].get<bool>(), true);
        const json mine = find("mine.gguf");
        QCOMPARE(mine["store"].get<std::string>(), std::string("folder"));
        QCOMPARE(mine["quant"].get<std::string>(), std::string("Q8_0"));
        const json hubGguf = find("TheBloke/Base-GGUF/base-q4_k_m.gguf");
        QCOMPARE(hubGguf["store"].get<std::string>(), std::string("huggingface"));
        QCOMPARE(hubGguf["format"].get<std::string>(), std::string("gguf"));
        QCOMPARE(hubGguf["runnable"].get<bool>(), true);
        const json gone = find("gone:latest");
        QCOMPARE(gone["runnable"].get<bool>(), false);
        QVERIFY(gone["not_runnable_because"].get<std::string>().find("missing") != std::string::npos);

        // The table: one row per model, the store's label, the reason for the broken ones.
        r = runCli({"models"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        for (const char* part : {"NAME", "tiny-base:latest", "Ollama", "LM Studio", "GPT4All", "moe-demo/base",
                                 "TheBloke/Base-GGUF/base-q8_0.gguf",
                                 "Hugging Face cache", "Q4_K_M", "no: ", "unfinished GPT4All download"})
            QVERIFY2(r.out.find(part) != std::string::npos, (std::string(part) + " not in:\n" + r.out).c_str());
    }
};

QTEST_GUILESS_MAIN(TestModelStores)
#include "test_model_stores.moc"
