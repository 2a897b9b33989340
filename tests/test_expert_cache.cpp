// Experts under a memory budget (LFU expert cache): the eviction policy on its
// own, and whole models run with a budget of all / half / one expert per layer
// against the same model with every expert resident: tiny native Mixtral and
// Qwen2-MoE checkpoints, and MoEs built from ../shared/models (fine-tuned and
// LoRA experts, with and without the base as expert 0; random gates, since
// the cache does not care how well they route).
//
// Under a budget the step is split at each MoE layer's routing, but every
// kernel runs on the same weights in the same order (experts without tokens
// add nothing either way), so the logits are expected bit-identical; the
// 1e-12 NMSE bound only allows for float noise, while a wrong or stale expert
// in a pool slot moves the logits by orders of magnitude more (NMSE > 1e-4).
#include "moe/builder.h"
#include "moe/expert_cache.h"
#include "moe/gate_training.h"
#include "moe/model.h"
#include "moe/routed_mlp.h"
#include "moe/validate.h"
#include "reference_model.h"
#include "guarded_copy.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <fstream>
#include <functional>
#include <thread>

#include <unistd.h>
#include <random>

using namespace moe;
using namespace moe::test::ref;

namespace {

Spec mixtral() {
    Spec s{"mixtral", 40, 56, 3, 4, 2, 10, 97, 0, false, DType::F32};
    s.experts = 6;
    s.topK = 2;
    return s;
}

// Transformers' fused expert tensors, and rows that are not a multiple of 8
// elements (padded on the device, so each upload repacks the mapped rows).
Spec mixtralFused() {
    Spec s{"mixtral", 44, 52, 3, 4, 2, 10, 97, 0, false, DType::BF16};
    s.experts = 5;
    s.topK = 2;
    s.fusedExperts = true;
    return s;
}

Spec qwen2Moe() {
    Spec s{"qwen2_moe", 48, 72, 3, 6, 2, 8, 97, 0, true, DType::BF16};
    s.experts = 5;
    s.topK = 2;
    s.moeInter = 24;
    s.sharedInter = 32;
    return s;
}

struct Run {
    std::vector<int32_t> tokens;   // greedy continuation
    std::vector<float> logits;     // every step's logits
};

// Forwards the prompt one token at a time (each step one token per MoE layer,
// so a step uses exactly top-k experts per layer), then `n` greedy tokens.
Run greedy(Model& model, const std::vector<int32_t>& prompt, int n) {
    Session session(model, 64, 8);
    Run r;
    std::span<const float> logits;
    for (int32_t t : prompt) {
        logits = session.forward(std::span<const int32_t>(&t, 1));
        r.logits.insert(r.logits.end(), logits.begin(), logits.end());
    }
    for (int i = 0; i < n; ++i) {
        const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        r.tokens.push_back(next);
        logits = session.forward(std::span<const int32_t>(&next, 1));
        r.logits.insert(r.logits.end(), logits.begin(), logits.end());
    }
    return r;
}

// A MoE over ../shared/models' base with the three code / legal / tech
// experts (fine-tuned or LoRA) in every layer, top-2, random gates.
// `experts`: the folder holding the experts (../shared/models by default).
std::unique_ptr<MoeModel> builtMoe(vk::Context& ctx, bool lora, bool includeBase, uint64_t expertBudget = 0,
                                   std::filesystem::path experts = {}) {
    const auto m = std::filesystem::absolute(test::modelsDir());
    if (experts.empty()) experts = m;
    Selector s;
    s.modelId = (m / "base").string();
    s.baseModel = m / "base";
    for (const char* n : {"code", "legal", "tech"}) {
        const auto d = experts / ((lora ? "lora-" : "expert-") + std::string(n));
        s.expertIds.push_back(d.string());
        s.experts.push_back(d);
    }
    s.expertType = lora ? ExpertType::LoraAdapter : ExpertType::FineTuned;
    s.gateMode = GateMode::Random;
    s.training = false;
    s.includeBase = includeBase;
    s.topK = 2;
    s.routing = RoutingMode::Token;
    const SelectionFacts facts = validateSelection(s);
    std::vector<GateWeights> gates;
    for (size_t l = 0; l < facts.layers.size(); ++l)
        gates.push_back(randomGate(uint32_t(facts.nExperts), uint32_t(facts.base.hiddenSize), 11 + l, false));
    return MoeModel::load(ctx, s, facts, gates, nullptr, expertBudget);
}

} // namespace

class TestExpertCache : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;

private slots:
    void initTestCase() { ctx = std::make_unique<vk::Context>(); }
    void cleanupTestCase() { ctx.reset(); }

    void lfuEvictsLeastFrequentlyUsed() {
        LfuExpertPolicy lfu(0.9);
        const ExpertKey a{0, 1}, b{0, 2}, c{1, 0};
        for (int i = 0; i < 3; ++i) lfu.touch(a);
        lfu.touch(b);
        lfu.touch(c);
        lfu.touch(c);
        const std::set<ExpertKey> resident{a, b, c};
        QCOMPARE(lfu.victim(resident, {}), std::optional<ExpertKey>(b));
        QCOMPARE(lfu.victim(resident, {b}), std::optional<ExpertKey>(c));
        QCOMPARE(lfu.victim(resident, {a, b, c}), std::optional<ExpertKey>());
        // An expert never used has frequency 0 and goes first.
        const ExpertKey d{2, 3};
        QCOMPARE(lfu.victim({a, b, c, d}, {}), std::optional<ExpertKey>(d));
        // Equal frequencies: the lower (layer, expert) goes first.
        LfuExpertPolicy tie;
        tie.touch(c);
        tie.touch(b);
        QCOMPARE(tie.victim({b, c}, {}), std::optional<ExpertKey>(b));
    }

    // A shard that changes under the loaded model is an error naming it when an
    // expert is paged from it, and the process lives on: truncated (reading
    // the mapping past the new end would raise SIGBUS), replaced by another
    // file, rewritten in place.
    void changedShardIsAnErrorNamingIt() {
        QTemporaryDir here;
        const std::filesystem::path root = here.path().toStdString();
        for (const char* n : {"expert-code", "expert-legal", "expert-tech"}) {
            std::filesystem::copy(test::modelsDir() / n, root / n);
            for (const auto& e : std::filesystem::directory_iterator(root / n))
                std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
        }
        // The legal expert is sharded: this shard holds layers 2 and 3's MLP.
        const std::filesystem::path shard = root / "expert-legal" / "model-00002-of-00002.safetensors";
        const std::vector<int32_t> prompt{1, 415, 2038, 302, 272, 3209};
        auto expectError = [&](const char* what, const std::function<void()>& change) {
            // A budget of one byte keeps no expert resident: every step pages
            // the routed experts in again from their mappings.
            auto moe = builtMoe(*ctx, false, false, 1, root);
            greedy(moe->model(), prompt, 2); // pages fine while the file is intact
            change();
            bool failed = false;
            try {
                greedy(moe->model(), prompt, 4);
            } catch (const Error& e) {
                failed = true;
                qInfo("%s: %s", what, e.what());
                QVERIFY2(std::string(e.what()).find(shard.string()) != std::string::npos, e.what());
                QVERIFY2(std::string(e.what()).find("load the model again") != std::string::npos, e.what());
            }
            QVERIFY2(failed, what);
        };
        const std::string original = [&] {
            std::ifstream in(shard, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        }();
        auto restore = [&] {
            std::filesystem::remove(shard);
            std::ofstream(shard, std::ios::binary) << original;
        };
        expectError("truncated", [&] { std::filesystem::resize_file(shard, original.size() / 3); });
        restore();
        expectError("replaced", [&] {
            const auto other = root / "expert-legal" / "new.safetensors";
            std::ofstream(other, std::ios::binary) << original;
            std::filesystem::rename(other, shard);
        });
        restore();
        expectError("rewritten in place", [&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20)); // a later modification time
            std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(original.size() / 2));
            f.put('\x7f');
        });
    }

    // The copy itself is guarded: a mapping whose file shrinks after the
    // checks reads as an error, not SIGBUS, from any thread.
    void copyFromATruncatedMappingFails() {
        QTemporaryDir here;
        const std::filesystem::path file = here.filePath("data.bin").toStdString();
        const size_t page = size_t(sysconf(_SC_PAGESIZE)), size = 64 * page;
        std::ofstream(file, std::ios::binary) << std::string(size, 'x');
        MappedFile mapped(file);
        std::vector<char> out(size);
        QVERIFY(copyFromMapping(out.data(), mapped.data(), size));
        QCOMPARE(out[size - 1], 'x');
        std::filesystem::resize_file(file, page);
        bool ok[2] = {true, true};
        std::vector<char> otherOut(size);
        std::thread other([&] { ok[1] = copyFromMapping(otherOut.data(), mapped.data(), size); });
        ok[0] = copyFromMapping(out.data(), mapped.data(), size);
        other.join();
        QVERIFY(!ok[0] && !ok[1]);
        QVERIFY(copyFromMapping(out.data(), mapped.data(), page)); // the part still in the file
        QVERIFY_THROWS_EXCEPTION(Error, mapped.copyOut(out.data(), mapped.data(), page)); // the size changed
    }

    void lfuFrequenciesDecaySoTheCacheFollowsTheTopic() {
        LfuExpertPolicy lfu(0.9);
        const ExpertKey old{0, 0}, recent{0, 1};
        for (int i = 0; i < 5; ++i) lfu.touch(old);
        lfu.decay();
        QVERIFY(std::abs(lfu.frequency(old) - 4.5) < 1e-12);
        QCOMPARE(lfu.victim({old, recent}, {}), std::optional<ExpertKey>(recent));
        // The topic changes: `recent` is used once per step from now on.
        // After 10 steps old = 5·0.9^11 ≈ 1.57 and recent = Σ 0.9^k, k=1..10 ≈ 5.86.
        for (int i = 0; i < 10; ++i) {
            lfu.touch(recent);
            lfu.decay();
        }
        QVERIFY(lfu.frequency(old) < lfu.frequency(recent));
        QCOMPARE(lfu.victim({old, recent}, {}), std::optional<ExpertKey>(old));
    }

    void sameTokensUnderAnyBudget_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<QString>("budget");
        for (const char* arch : {"mixtral", "mixtral_fused", "qwen2_moe"})
            for (const char* budget : {"all", "half", "one per layer"})
                QTest::newRow(qPrintable(QString("%1, %2").arg(arch, budget))) << QString(arch) << QString(budget);
    }

    void sameTokensUnderAnyBudget() {
        QFETCH(QString, arch);
        QFETCH(QString, budget);
        const Spec s = arch == "mixtral" ? mixtral() : arch == "mixtral_fused" ? mixtralFused() : qwen2Moe();
        QTemporaryDir dir;
        const std::filesystem::path d = dir.path().toStdString();
        writeModel(d, s, 17);
        std::mt19937 rng(5);
        std::vector<int32_t> prompt;
        for (int i = 0; i < 9; ++i) prompt.push_back(int32_t(rng() % 97));
        const int generated = 12;

        auto model = Model::load(*ctx, d);
        const Run want = greedy(*model, prompt, generated);
        QCOMPARE(model->expertCacheStats().hits + model->expertCacheStats().misses, uint64_t(0));

        // A native block's expert 0 serves as its base MLP (always
        // resident); every other expert owns weights of one size.
        const uint64_t all = model->pageableExpertBytes();
        const uint64_t ownExperts = uint64_t(s.layers) * uint64_t(s.experts - 1);
        const uint64_t oneExpert = all / ownExperts;
        QCOMPARE(oneExpert * ownExperts, all);
        const uint64_t bytes = budget == "all" ? all : budget == "half" ? all / 2 : oneExpert * uint64_t(s.layers);
        const uint64_t deviceBefore = model->deviceBytes();
        model->setExpertBudget(bytes);
        QCOMPARE(model->deviceBytes(), deviceBefore - all); // nothing resident before the first step
        QCOMPARE(model->expertHostCopyBytes(), uint64_t(0)); // paged experts upload from the mapped checkpoint

        const Run got = greedy(*model, prompt, generated);
        QCOMPARE(got.tokens, want.tokens);
        const double e = test::nmse(got.logits, want.logits);
        QVERIFY2(e < 1e-12, qPrintable(QString("NMSE %1").arg(e)));

        const ExpertCacheStats st = model->expertCacheStats();
        const uint64_t steps = prompt.size() + size_t(generated);
        // One token per step: top-k experts per MoE layer per step.
        QCOMPARE(st.hits + st.misses, steps * uint64_t(s.layers) * uint64_t(s.topK));
        QCOMPARE(st.bytesUploaded, st.misses * oneExpert);
        QVERIFY(st.peakResidentBytes <= bytes);
        QVERIFY(st.misses > 0);
        if (budget == "all") {
            QCOMPARE(st.evictions, uint64_t(0)); // each expert uploaded at most once
            QVERIFY(st.misses <= ownExperts);
        } else {
            QVERIFY(st.evictions > 0);
        }
        qInfo("%s, budget %s: hits %llu misses %llu evictions %llu, %.1f KB uploaded per token", qPrintable(arch),
              qPrintable(budget), (unsigned long long)st.hits, (unsigned long long)st.misses,
              (unsigned long long)st.evictions, double(st.bytesUploaded) / 1e3 / double(steps));

        // Loaded under the budget: the experts are never all on the device,
        // and the run is the same, miss for miss.
        auto loadedUnder = Model::load(*ctx, d, {}, bytes);
        QCOMPARE(loadedUnder->expertBudget(), bytes);
        QCOMPARE(loadedUnder->deviceBytes(), deviceBefore - all);
        const Run again = greedy(*loadedUnder, prompt, generated);
        QCOMPARE(again.tokens, want.tokens);
        QVERIFY(test::nmse(again.logits, want.logits) < 1e-12);
        QCOMPARE(loadedUnder->expertCacheStats().misses, st.misses);
        QCOMPARE(loadedUnder->expertCacheStats().bytesUploaded, st.bytesUploaded);
        loadedUnder.reset();

        // Under a budget each layer's token counts are read back before its
        // experts are recorded, so experts without tokens are not dispatched:
        // for one token, 2 dispatches (gated up, down) for each of its top-k
        // experts per MoE layer instead of for every expert.
        auto oneTokenDispatches = [&] {
            Session session(*model, 16, 4);
            session.forward(std::span<const int32_t>(prompt.data(), 1));
            return session.lastDispatches();
        };
        const uint32_t pagedDispatches = oneTokenDispatches();

        // Back to no budget: everything resident again, one submit per step, same tokens.
        model->setExpertBudget(0);
        QCOMPARE(model->deviceBytes(), deviceBefore);
        QCOMPARE(greedy(*model, prompt, generated).tokens, want.tokens);
        uint32_t sparseLayers = 0;
        for (int l = 0; l < s.layers; ++l) sparseLayers += s.sparse(l) ? 1u : 0u;
        QCOMPARE(oneTokenDispatches() - pagedDispatches, sparseLayers * 2u * uint32_t(s.experts - s.topK));
    }

    void builtMoeSameTokensUnderAnyBudget_data() {
        QTest::addColumn<bool>("lora");
        QTest::addColumn<bool>("includeBase");
        QTest::addColumn<QString>("budget");
        for (bool lora : {false, true})
            for (bool includeBase : {false, true})
                for (const char* budget : {"all", "half", "one per layer"})
                    QTest::newRow(qPrintable(QString("%1%2, %3")
                                                 .arg(lora ? "LoRA experts" : "fine-tuned experts",
                                                      includeBase ? " + base" : "", budget)))
                        << lora << includeBase << QString(budget);
    }

    void builtMoeSameTokensUnderAnyBudget() {
        QFETCH(bool, lora);
        QFETCH(bool, includeBase);
        QFETCH(QString, budget);
        auto moe = builtMoe(*ctx, lora, includeBase);
        Model& model = moe->model();
        const ModelConfig& c = model.config();
        const std::vector<int32_t> prompt = moe->tokenizer().encode("The licence of this program", true);
        const int generated = 10;
        const Run want = greedy(model, prompt, generated);

        // Every expert of every layer owns weights of one size: the three
        // projections in the checkpoints' 16-bit dtype, or float32 LoRA
        // factors (A [r, in], B [out, r]) for gate, up and down. The base as
        // expert 0 owns nothing: it is the layer's own MLP, always resident.
        const uint64_t H = uint64_t(c.hiddenSize), I = uint64_t(c.intermediateSize);
        const uint64_t r = uint64_t(moe->facts().experts[0].loraRank);
        const uint64_t oneExpert = lora ? 3 * r * (H + I) * sizeof(float) : 3 * H * I * 2;
        const uint64_t layers = uint64_t(moe->layers().size()), ownExperts = layers * 3;
        QCOMPARE(model.pageableExpertBytes(), ownExperts * oneExpert);
        const uint64_t all = model.pageableExpertBytes();
        const uint64_t bytes = budget == "all" ? all : budget == "half" ? all / 2 : oneExpert * layers;
        const uint64_t deviceBefore = model.deviceBytes();
        model.setExpertBudget(bytes);
        QCOMPARE(model.deviceBytes(), deviceBefore - all);
        // Fine-tuned experts upload from their mapped checkpoints; LoRA factors
        // (float32, B scaled at load) are the one kind kept as host copies.
        QCOMPARE(model.expertHostCopyBytes(), lora ? all : uint64_t(0));

        const Run got = greedy(model, prompt, generated);
        QCOMPARE(got.tokens, want.tokens);
        const double e = test::nmse(got.logits, want.logits);
        QVERIFY2(e < 1e-12, qPrintable(QString("NMSE %1").arg(e)));

        const ExpertCacheStats st = model.expertCacheStats();
        const uint64_t steps = prompt.size() + size_t(generated);
        // One token per step: top-2 slots per MoE layer per step, the base
        // (include_base) counting as a hit.
        QCOMPARE(st.hits + st.misses, steps * layers * 2);
        QCOMPARE(st.bytesUploaded, st.misses * oneExpert);
        QVERIFY(st.misses > 0);
        QVERIFY(st.peakResidentBytes <= bytes);
        if (budget == "all") {
            QCOMPARE(st.evictions, uint64_t(0));
            QVERIFY(st.misses <= ownExperts);
        } else {
            QVERIFY(st.evictions > 0);
        }
        qInfo("%s%s, budget %s: hits %llu misses %llu evictions %llu, %.1f KB uploaded per token",
              lora ? "LoRA" : "fine-tuned", includeBase ? " + base" : "", qPrintable(budget),
              (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.evictions,
              double(st.bytesUploaded) / 1e3 / double(steps));

        // Loaded under the budget: fine-tuned experts are only mapped until
        // routed to (LoRA factors are uploaded once to be copied), same run.
        auto loadedUnder = builtMoe(*ctx, lora, includeBase, bytes);
        QCOMPARE(loadedUnder->model().expertBudget(), bytes);
        QCOMPARE(loadedUnder->model().deviceBytes(), deviceBefore - all);
        const Run again = greedy(loadedUnder->model(), prompt, generated);
        QCOMPARE(again.tokens, want.tokens);
        QVERIFY(test::nmse(again.logits, want.logits) < 1e-12);
        QCOMPARE(loadedUnder->model().expertCacheStats().misses, st.misses);
        QCOMPARE(loadedUnder->model().expertCacheStats().bytesUploaded, st.bytesUploaded);
        loadedUnder.reset();

        model.setExpertBudget(0);
        QCOMPARE(model.deviceBytes(), deviceBefore);
        QCOMPARE(greedy(model, prompt, generated).tokens, want.tokens);
    }
};

QTEST_GUILESS_MAIN(TestExpertCache)
#include "test_expert_cache.moc"
