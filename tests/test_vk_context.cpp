// The Vulkan context's stops and files: the pipeline cache on disk (a torn,
// truncated, foreign or damaged file is ignored with a note naming it, never
// handed to the driver; a good one round-trips), and a submit that does not
// finish within the GPU timeout is an error instead of an endless wait.
#include "moe/error.h"
#include "moe/model.h"
#include "moe/session.h"
#include "moe/vk.h"
#include "pipeline_cache_file.h"
#include "ui/tiny_gguf.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

using namespace moe;
namespace fs = std::filesystem;

namespace {

vk::PipelineCacheKey keyOf(vk::Context& ctx) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(ctx.physicalDevice(), &p);
    vk::PipelineCacheKey key{p.vendorID, p.deviceID, {}};
    std::memcpy(key.uuid.data(), p.pipelineCacheUUID, key.uuid.size());
    return key;
}

// Driver data as vkGetPipelineCacheData lays it out: the version-one header
// for `key`, then `extra` bytes of the driver's own.
std::vector<char> driverData(const vk::PipelineCacheKey& key, size_t extra) {
    std::vector<char> d(32 + extra, '\x5a');
    const uint32_t header[4] = {32, 1, key.vendorId, key.deviceId};
    std::memcpy(d.data(), header, sizeof header);
    std::memcpy(d.data() + 16, key.uuid.data(), 16);
    return d;
}

std::string readAll(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeAll(const fs::path& f, const std::string& bytes) { std::ofstream(f, std::ios::binary) << bytes; }

// Compiles a few pipelines: loads a tiny model and runs one token.
void runSomething(vk::Context& ctx, const fs::path& dir) {
    const fs::path gguf = dir / "tiny.gguf";
    if (!fs::exists(gguf)) {
        const auto bytes = test::tinyLlamaGguf(false);
        writeAll(gguf, std::string(bytes.begin(), bytes.end()));
    }
    auto model = Model::load(ctx, gguf);
    Session session(*model);
    const int32_t token = 1;
    session.forward(std::span<const int32_t>(&token, 1));
}

} // namespace

class TestVkContext : public QObject {
    Q_OBJECT
    QTemporaryDir dir;
    vk::PipelineCacheKey key;

private slots:
    void initTestCase() {
        QVERIFY(dir.isValid());
        // Every context of this test keeps its pipeline cache here.
        qputenv("XDG_CACHE_HOME", dir.filePath("cache").toUtf8());
        vk::Context ctx;
        key = keyOf(ctx);
    }

    void cacheFileRoundTrips() {
        const fs::path f = dir.filePath("round.bin").toStdString();
        const auto data = driverData(key, 1000);
        vk::writePipelineCache(f, data);
        std::string note;
        QVERIFY(vk::readPipelineCache(f, key, note) == data);
        QVERIFY(note.empty());
        // None yet is not worth a note.
        QVERIFY(vk::readPipelineCache(dir.filePath("none.bin").toStdString(), key, note).empty());
        QVERIFY(note.empty());
    }

    void damagedCacheFilesAreIgnoredWithANote() {
        const fs::path f = dir.filePath("damaged.bin").toStdString();
        const auto data = driverData(key, 1000);
        vk::writePipelineCache(f, data);
        const std::string good = readAll(f);
        auto expectIgnored = [&](const char* what, const std::string& bytes, const char* reason) {
            writeAll(f, bytes);
            std::string note;
            QVERIFY2(vk::readPipelineCache(f, key, note).empty(), what);
            QVERIFY2(note.find(f.string()) != std::string::npos, note.c_str());
            QVERIFY2(note.find(reason) != std::string::npos, (std::string(what) + ": " + note).c_str());
        };
        expectIgnored("truncated", good.substr(0, good.size() - 7), "truncated");
        expectIgnored("only our header, cut", good.substr(0, 10), "not written by this version");
        expectIgnored("empty", std::string(), "not written by this version");
        std::string flipped = good;
        flipped[good.size() - 100] ^= 0x10;
        expectIgnored("a flipped bit", flipped, "checksum");
        expectIgnored("the driver's raw data (an older version's file)", std::string(data.begin(), data.end()),
                      "not written by this version");

        auto rewrapped = [&](std::vector<char> d) {
            vk::writePipelineCache(f, d);
            return readAll(f);
        };
        vk::PipelineCacheKey other = key;
        other.deviceId ^= 1;
        expectIgnored("another device", rewrapped(driverData(other, 100)), "another device");
        other = key;
        other.uuid[3] ^= 0xff;
        expectIgnored("another driver", rewrapped(driverData(other, 100)), "UUID");
        auto d = driverData(key, 100);
        d[4] = 2; // headerVersion
        expectIgnored("a header version from the future", rewrapped(d), "header version");
        d = driverData(key, 100);
        d[0] = 8; // headerSize below the 32 bytes of version one
        expectIgnored("a short header", rewrapped(d), "header size");
        expectIgnored("a header only", rewrapped(std::vector<char>(d.begin(), d.begin() + 20)), "incomplete");

        fs::remove(f);
        fs::create_directory(f);
        std::string note;
        QVERIFY(vk::readPipelineCache(f, key, note).empty());
        QVERIFY2(note.find("not a regular file") != std::string::npos, note.c_str());
        fs::remove(f);
    }

    // A real context writes its cache at exit, takes it up at the next start,
    // and starts with a note over a damaged one, rewriting it whole.
    void contextCacheSurvivesDamage() {
        fs::path file;
        {
            vk::Context ctx;
            file = ctx.pipelineCachePath();
            runSomething(ctx, dir.path().toStdString());
        }
        QVERIFY(fs::exists(file));
        std::string note;
        QVERIFY(!vk::readPipelineCache(file, key, note).empty());
        QVERIFY2(note.empty(), note.c_str());
        {
            vk::Context ctx;
            QVERIFY2(ctx.pipelineCacheNote().empty(), ctx.pipelineCacheNote().c_str());
        }
        const std::string good = readAll(file);
        writeAll(file, good.substr(0, good.size() / 2));
        {
            vk::Context ctx;
            QVERIFY2(ctx.pipelineCacheNote().find("truncated") != std::string::npos, ctx.pipelineCacheNote().c_str());
            runSomething(ctx, dir.path().toStdString());
        }
        QVERIFY(!vk::readPipelineCache(file, key, note).empty());
        QVERIFY2(note.empty(), note.c_str());
        // No temporaries stay beside it.
        for (const auto& e : fs::directory_iterator(file.parent_path()))
            QVERIFY2(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().c_str());
    }

    // Work that runs past the timeout throws a clear error; the recorder waits
    // for it before it is freed, and the device stays usable.
    void submitPastTheTimeoutIsAnError() {
        vk::ContextOptions o;
        o.gpuTimeoutSeconds = 1e-6;
        vk::Context ctx(o);
        QCOMPARE(ctx.gpuTimeoutSeconds(), 1e-6);
        const uint64_t bytes = uint64_t(128) << 20;
        vk::Buffer big(ctx, bytes, vk::MemoryUse::Device);
        bool timedOut = false;
        {
            vk::Recorder rec(ctx);
            rec.begin();
            for (int i = 0; i < 16; ++i) rec.fill(vk::BufferView(big), uint32_t(i));
            rec.end();
            try {
                rec.submitAndWait();
            } catch (const Error& e) {
                timedOut = true;
                qInfo("%s", e.what());
                QVERIFY2(std::string(e.what()).find("did not finish its work within 1e-06 s") != std::string::npos, e.what());
                QVERIFY2(std::string(e.what()).find("MOE_GPU_TIMEOUT_S") != std::string::npos, e.what());
            }
        }
        QVERIFY(timedOut);
        vk::Context fine;
        QVERIFY(fine.gpuTimeoutSeconds() >= vk::kGpuTimeoutSeconds);
        runSomething(fine, dir.path().toStdString());
    }

    void timeoutFromTheEnvironment() {
        qputenv("MOE_GPU_TIMEOUT_S", "12.5");
        {
            vk::Context ctx;
            QCOMPARE(ctx.gpuTimeoutSeconds(), 12.5);
        }
        qputenv("MOE_GPU_TIMEOUT_S", "-1");
        QVERIFY_THROWS_EXCEPTION(Error, vk::Context());
        qunsetenv("MOE_GPU_TIMEOUT_S");
    }
};

QTEST_GUILESS_MAIN(TestVkContext)
#include "test_vk_context.moc"
