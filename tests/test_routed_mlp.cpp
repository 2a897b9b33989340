// Routed MoE layers (RoutedMlp) on a tiny random model against the CPU
// reference forward pass in which every expert is computed densely and mixed
// with the same top-k renormalised weights: sparse dispatch must equal dense
// mixing. Covers fine-tuned, LoRA and base experts; token, running (plain
// and decayed), sequence and pinned routing; prefill batches and decode.
//
// Tolerance as in test_architectures (float32 engine vs double reference,
// NMSE < 1e-9): a token sent to a wrong expert or a wrong mixing weight moves
// the logits by far more (NMSE > 1e-4). Random gates make exact score ties
// (where float rounding could legitimately flip a choice) improbable.
#include "moe/routed_mlp.h"
#include "moe/session.h"
#include "reference_model.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <numeric>

using namespace moe;
using namespace moe::test::ref;

namespace {

constexpr int kH = 40, kI = 72, kLayers = 2, kVocab = 97, kRank = 4;

// One expert on the host; empty vectors = the base's projection / no LoRA.
struct HostExpert {
    std::vector<float> gate, up, down;
    std::vector<float> aGate, bGate, aUp, bUp, aDown, bDown; // B already scaled
};

std::vector<float> randomVector(std::mt19937& rng, size_t n, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    return v;
}

HostExpert fineTuned(std::mt19937& rng) {
    return {randomVector(rng, kI * kH, 0.1f), randomVector(rng, kI * kH, 0.1f), randomVector(rng, kH * kI, 0.1f)};
}

HostExpert lora(std::mt19937& rng, bool gateUpDown) {
    HostExpert e;
    e.aGate = randomVector(rng, kRank * kH, 0.3f);
    e.bGate = randomVector(rng, kI * kRank, 0.3f);
    if (gateUpDown) {
        e.aUp = randomVector(rng, kRank * kH, 0.3f);
        e.bUp = randomVector(rng, kI * kRank, 0.3f);
        e.aDown = randomVector(rng, kRank * kI, 0.3f);
        e.bDown = randomVector(rng, kH * kRank, 0.3f);
    }
    return e;
}

struct HostLayer {
    std::vector<HostExpert> experts;
    std::vector<float> gate, bias; // [E, H], [E] or empty
};

DeviceMatrix device(vk::Context& ctx, const std::vector<float>& v, uint32_t rows, uint32_t cols) {
    return v.empty() ? DeviceMatrix{} : DeviceMatrix::fromHost(ctx, DType::F32, rows, cols, v.data());
}

std::optional<LoraDelta> deviceLora(vk::Context& ctx, const std::vector<float>& a, const std::vector<float>& b,
                                    uint32_t in, uint32_t out) {
    if (a.empty()) return std::nullopt;
    return LoraDelta{device(ctx, a, kRank, in), device(ctx, b, out, kRank)};
}

void install(vk::Context& ctx, Model& model, int layer, const HostLayer& hl, RoutingOptions routing) {
    std::unique_ptr<DenseMlp> base(dynamic_cast<DenseMlp*>(model.takeMlp(layer).release()));
    std::vector<ExpertMlp> experts;
    for (const auto& e : hl.experts) {
        ExpertMlp x;
        x.gate = device(ctx, e.gate, kI, kH);
        x.up = device(ctx, e.up, kI, kH);
        x.down = device(ctx, e.down, kH, kI);
        x.loraGate = deviceLora(ctx, e.aGate, e.bGate, kH, kI);
        x.loraUp = deviceLora(ctx, e.aUp, e.bUp, kH, kI);
        x.loraDown = deviceLora(ctx, e.aDown, e.bDown, kI, kH);
        experts.push_back(std::move(x));
    }
    model.setMlp(layer, std::make_unique<RoutedMlp>(ctx, std::move(base), std::move(experts), hl.gate, hl.bias, routing));
}

// The CPU side of a routed layer: moe_route.comp's routing (ref::Router),
// then every chosen expert computed and mixed by weight.
struct ReferenceRouting {
    const std::filesystem::path dir;
    std::map<int, HostLayer> layers;
    RoutingOptions routing;
    int promptTokens = 1 << 30; // sequence mode: tokens from here on are the reply
    int pin = -1;               // slot, experts' count = base
    std::map<int, Router> routers;
    std::map<int, std::vector<double>> usage;

    std::vector<double> operator()(int layer, int t, const std::vector<double>& x) {
        auto store = WeightStore::openFolder(dir);
        const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
        const auto wg = toFloat32(store->require(p + "gate_proj.weight")), wu = toFloat32(store->require(p + "up_proj.weight")),
                   wd = toFloat32(store->require(p + "down_proj.weight"));
        auto it = layers.find(layer);
        if (it == layers.end()) return swiglu(wg, wu, wd, x, kH, kI);
        const HostLayer& hl = it->second;
        const int E = int(hl.experts.size());
        auto logits = linear(hl.gate, x, E, kH, hl.bias.empty() ? nullptr : &hl.bias);
        Router& router = routers[layer];
        // As RoutedMlp sets up moe_route: decay from the half-life, and the
        // running modes always renormalise (raw weights only for token routing).
        router.experts = E, router.topK = int(routing.topK), router.mode = int(routing.mode);
        router.decay = routing.halflife > 0 ? std::exp2(-1.0 / routing.halflife) : 1.0;
        router.renormalise = routing.renormalise || routing.mode != RoutingMode::Token;
        const auto weight = router.route(t, softmax(logits), t >= promptTokens, pin);
        auto& use = usage[layer];
        use.resize(size_t(E + 1));
        std::vector<double> out(size_t(kH), 0.0);
        for (int e = 0; e <= E; ++e) {
            if (weight[size_t(e)] == 0) continue;
            use[size_t(e)] += 1;
            const HostExpert base{};
            const HostExpert& x2 = e < E ? hl.experts[size_t(e)] : base;
            auto g = loraLinear(x2.gate.empty() ? wg : x2.gate, x2.aGate, x2.bGate, x, kI, kH);
            siluMulInPlace(g, loraLinear(x2.up.empty() ? wu : x2.up, x2.aUp, x2.bUp, x, kI, kH));
            auto d = loraLinear(x2.down.empty() ? wd : x2.down, x2.aDown, x2.bDown, g, kH, kI);
            for (int i = 0; i < kH; ++i) out[size_t(i)] += weight[size_t(e)] * d[size_t(i)];
        }
        return out;
    }
};

Spec spec() { return Spec{"llama", kH, kI, kLayers, 4, 2, 8, kVocab}; }

std::vector<int32_t> tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back(int32_t(rng() % kVocab));
    return ids;
}

} // namespace

class TestRoutedMlp : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir dir;

    std::filesystem::path modelDir() const { return dir.path().toStdString(); }

    HostLayer layer(uint32_t seed, std::vector<HostExpert> experts, bool bias) {
        std::mt19937 rng(seed);
        HostLayer hl;
        hl.experts = std::move(experts);
        // Gate scale large enough that routing differs across tokens.
        hl.gate = randomVector(rng, hl.experts.size() * kH, 0.6f);
        if (bias) hl.bias = randomVector(rng, hl.experts.size(), 0.3f);
        return hl;
    }

    void check(const ReferenceRouting& refCfg, const std::vector<float>& got, const std::vector<int32_t>& ids,
               ReferenceRouting& ref) {
        (void)refCfg;
        const auto want = referenceLogits(modelDir(), spec(), ids, std::ref(ref));
        QCOMPARE(got.size(), want.size());
        const double e = test::nmse(got, want);
        qInfo("NMSE %.3g", e);
        QVERIFY2(e < 1e-9, qPrintable(QString("NMSE %1").arg(e)));
    }

private slots:
    void initTestCase() {
        ctx = std::make_unique<vk::Context>();
        writeModel(modelDir(), spec(), 21);
    }
    void cleanupTestCase() { ctx.reset(); }

    void sparseEqualsDenseMixing_data() {
        QTest::addColumn<int>("mode");
        QTest::addColumn<int>("topK");
        QTest::addColumn<double>("halflife");
        QTest::addColumn<QString>("kind");
        QTest::addColumn<bool>("renormalise");
        QTest::newRow("token top-2 fine-tuned") << int(RoutingMode::Token) << 2 << 0.0 << "fine-tuned" << true;
        QTest::newRow("token top-1 lora + base") << int(RoutingMode::Token) << 1 << 0.0 << "lora" << true;
        QTest::newRow("running top-2 lora + base") << int(RoutingMode::Running) << 2 << 0.0 << "lora" << true;
        QTest::newRow("running halflife 3 top-1 fine-tuned") << int(RoutingMode::Running) << 1 << 3.0 << "fine-tuned" << true;
        QTest::newRow("token top-3 of 3 fine-tuned") << int(RoutingMode::Token) << 3 << 0.0 << "fine-tuned" << true;
        // Qwen2-MoE with norm_topk_prob = false: the top-k probabilities unscaled.
        QTest::newRow("token top-2 not renormalised") << int(RoutingMode::Token) << 2 << 0.0 << "fine-tuned" << false;
        QTest::newRow("running top-2 renormalises anyway") << int(RoutingMode::Running) << 2 << 0.0 << "lora" << false;
    }

    void sparseEqualsDenseMixing() {
        QFETCH(int, mode);
        QFETCH(int, topK);
        QFETCH(double, halflife);
        QFETCH(QString, kind);
        QFETCH(bool, renormalise);
        std::mt19937 rng(5);
        std::vector<HostExpert> experts;
        if (kind == "lora") experts = {HostExpert{}, lora(rng, true), lora(rng, false)};
        else experts = {fineTuned(rng), fineTuned(rng), fineTuned(rng)};
        RoutingOptions routing{uint32_t(topK), RoutingMode(mode), float(halflife)};
        routing.renormalise = renormalise;
        ReferenceRouting ref{modelDir(), {{0, layer(7, experts, true)}, {1, layer(8, experts, false)}}, routing};

        auto model = Model::load(*ctx, modelDir());
        for (auto& [l, hl] : ref.layers) install(*ctx, *model, l, hl, routing);
        Session session(*model, 64, 8);
        const auto ids = tokens(23, 3);
        const auto got = prefillThenDecode(session, ids, 17); // batches 8 + 8 + 1, then 6 decode steps
        check(ref, got, ids, ref);

        // Usage counts: every token went to top-k slots in each MoE layer.
        for (auto& [l, hl] : ref.layers) {
            const auto use = RoutedMlp::usage(*session.mlpState(l));
            QCOMPARE(std::accumulate(use.begin(), use.end(), 0u), uint32_t(ids.size()) * uint32_t(topK));
            for (size_t e = 0; e < use.size(); ++e) QCOMPARE(double(use[e]), ref.usage[l][e]);
        }
    }

    // Real MoEs have 60 (Qwen1.5-MoE) or 128 (Qwen3-MoE) experts: the routing
    // masks span several 32-bit words.
    void manyExpertsBeyondOneMaskWord() {
        std::mt19937 rng(19);
        std::vector<HostExpert> experts;
        for (int e = 0; e < 60; ++e) experts.push_back(fineTuned(rng));
        const RoutingOptions routing{4, RoutingMode::Token, 0};
        ReferenceRouting ref{modelDir(), {{1, layer(20, experts, true)}}, routing};
        auto model = Model::load(*ctx, modelDir());
        install(*ctx, *model, 1, ref.layers[1], routing);
        Session session(*model, 64, 8);
        const auto ids = tokens(21, 23);
        const auto got = prefillThenDecode(session, ids, 16);
        check(ref, got, ids, ref);
        const auto use = RoutedMlp::usage(*session.mlpState(1));
        QCOMPARE(use.size(), size_t(61));
        QCOMPARE(std::accumulate(use.begin(), use.end(), 0u), uint32_t(ids.size()) * 4u);
        uint32_t beyondFirstWord = 0;
        for (size_t e = 0; e < use.size(); ++e) {
            QCOMPARE(double(use[e]), ref.usage[1][e]);
            if (e >= 32) beyondFirstWord += use[e];
        }
        QVERIFY(beyondFirstWord > 0); // experts 32.. were chosen, and counted where the reference counts them
        // 160 experts is one too many with the base slot (Qwen3-MoE's 128 fit).
        std::vector<ExpertMlp> tooMany(160);
        std::unique_ptr<DenseMlp> base(dynamic_cast<DenseMlp*>(model->takeMlp(0).release()));
        const auto msg = test::errorMessage([&] {
            RoutedMlp(*ctx, std::move(base), std::move(tooMany), std::vector<float>(160 * kH), {}, routing);
        });
        QVERIFY2(msg.find("159") != std::string::npos, msg.c_str());
    }

    void runningSameInOnePrefillOrTokenByToken() {
        std::mt19937 rng(9);
        const RoutingOptions routing{2, RoutingMode::Running, 0};
        std::vector<HostExpert> experts{fineTuned(rng), lora(rng, true), HostExpert{}};
        auto model = Model::load(*ctx, modelDir());
        install(*ctx, *model, 1, layer(4, experts, true), routing);
        const auto ids = tokens(20, 8);
        Session a(*model, 64, 32), b(*model, 64, 32);
        std::vector<float> whole;
        a.forward(ids, &whole);
        const auto stepwise = prefillThenDecode(b, ids, 1);
        const double e = test::nmse(stepwise, whole);
        qInfo("prefill vs decode NMSE %.3g", e);
        // Same weights, different kernels (tiled vs matvec summation order): float rounding only.
        QVERIFY2(e < 1e-10, qPrintable(QString("NMSE %1").arg(e)));
        // Rewinding recomputes the running sums: truncate and redo the tail.
        b.truncate(10);
        std::vector<float> tail;
        b.forward(std::span<const int32_t>(ids.data() + 10, 10), &tail);
        std::vector<float> wholeTail(whole.begin() + 10 * kVocab, whole.end());
        QVERIFY(test::nmse(tail, wholeTail) < 1e-10);
    }

    void sequenceKeepsThePromptsChoiceForTheReply() {
        std::mt19937 rng(11);
        const RoutingOptions routing{1, RoutingMode::Sequence, 0};
        std::vector<HostExpert> experts{fineTuned(rng), fineTuned(rng), fineTuned(rng)};
        ReferenceRouting ref{modelDir(), {{0, layer(12, experts, true)}}, routing};
        ref.promptTokens = 12;
        auto model = Model::load(*ctx, modelDir());
        install(*ctx, *model, 0, ref.layers[0], routing);
        Session session(*model, 64, 8);
        const auto ids = tokens(20, 13);
        const auto got = prefillThenDecode(session, ids, 12, 12);
        check(ref, got, ids, ref);
    }

    void pinnedSlotSendsEveryTokenThere() {
        std::mt19937 rng(15);
        RoutingOptions routing{2, RoutingMode::Token, 0};
        routing.baseSlot = true;
        std::vector<HostExpert> experts{fineTuned(rng), lora(rng, true)};
        for (int pin : {1, 2}) { // expert 1, then the base slot
            ReferenceRouting ref{modelDir(), {{0, layer(16, experts, true)}, {1, layer(17, experts, true)}}, routing};
            ref.pin = pin;
            auto model = Model::load(*ctx, modelDir());
            for (auto& [l, hl] : ref.layers) install(*ctx, *model, l, hl, routing);
            Session session(*model, 64, 8);
            session.setPinnedSlot(pin);
            const auto ids = tokens(14, 17);
            const auto got = prefillThenDecode(session, ids, 10);
            check(ref, got, ids, ref);
        }
        // Pinned to the base slot, the MoE is the dense base model.
        auto dense = Model::load(*ctx, modelDir());
        Session d(*dense, 64, 8);
        std::vector<float> want;
        d.forward(tokens(14, 17), &want);
        auto model = Model::load(*ctx, modelDir());
        ReferenceRouting ref{modelDir(), {{0, layer(16, experts, true)}}, routing};
        install(*ctx, *model, 0, ref.layers[0], routing);
        Session s(*model, 64, 8);
        s.setPinnedSlot(2);
        std::vector<float> got;
        s.forward(tokens(14, 17), &got);
        QVERIFY(test::nmse(got, want) < 1e-12);
    }
};

QTEST_GUILESS_MAIN(TestRoutedMlp)
#include "test_routed_mlp.moc"
