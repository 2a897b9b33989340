// Gate (router) training on the device against a CPU reference, a
// finite-difference check of the shader gradient, training on a separable
// synthetic problem, training-free gates, gate files and loss CSVs.
//
// Tolerances: the shaders compute in float32, the reference in double. A
// float32 sum of n terms is off by at most about n·2^-24·Σ|terms| (n ≤ 40
// here: ≤ 2.4e-6·Σ|terms|), and exp/log on GPUs are accurate to a few ulp, so
// each value is compared against 1e-5·(Σ|terms| of its sum) — a relative
// bound of ~1e-5 that still leaves 4x headroom, while any indexing or formula
// error (a missed token, a softmax of a softmax) is off by 1e-2 or more.
#include "moe/gate_training.h"
#include "moe/safetensors.h"
#include "moe/vk.h"

#include "gate_trainer.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <QTemporaryDir>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

using namespace moe;
using test::errorMessage;

namespace {

constexpr double kRelTol = 1e-5;

std::vector<float> gaussian(std::mt19937& rng, size_t n, float scale) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// The CPU reference of one layer's step, in double.
struct Reference {
    std::vector<double> probs;   // [n, E]
    double loss = 0;             // mean cross entropy
    double lossMagnitude = 0;    // Σ|terms| of the loss sum / n
    std::vector<double> grad;    // dW [E*hidden] then db [E]
    std::vector<double> gradMagnitude; // Σ|terms| of each gradient sum
};

Reference referenceStep(const std::vector<double>& w, const std::vector<double>& b, const std::vector<float>& x,
                        uint32_t hidden, uint32_t E, const std::vector<int32_t>& labels,
                        const std::vector<uint32_t>& rows) {
    Reference r;
    const double n = double(rows.size());
    r.probs.resize(rows.size() * E);
    r.grad.assign(size_t(E) * hidden + E, 0.0);
    r.gradMagnitude.assign(r.grad.size(), 0.0);
    for (size_t t = 0; t < rows.size(); ++t) {
        const float* xt = x.data() + size_t(rows[t]) * hidden;
        std::vector<double> z(E);
        for (uint32_t e = 0; e < E; ++e) {
            z[e] = b.empty() ? 0.0 : b[e];
            for (uint32_t h = 0; h < hidden; ++h) z[e] += w[size_t(e) * hidden + h] * xt[h];
        }
        const double zmax = *std::max_element(z.begin(), z.end());
        double sum = 0;
        for (double v : z) sum += std::exp(v - zmax);
        const int label = labels[rows[t]];
        const double tokenLoss = zmax + std::log(sum) - z[label];
        r.loss += tokenLoss / n;
        r.lossMagnitude += std::abs(tokenLoss) / n;
        for (uint32_t e = 0; e < E; ++e) {
            const double p = std::exp(z[e] - zmax) / sum;
            r.probs[t * E + e] = p;
            const double d = (p - (int(e) == label ? 1.0 : 0.0)) / n;
            for (uint32_t h = 0; h < hidden; ++h) {
                r.grad[size_t(e) * hidden + h] += d * xt[h];
                r.gradMagnitude[size_t(e) * hidden + h] += std::abs(d * xt[h]);
            }
            r.grad[size_t(E) * hidden + e] += d;
            r.gradMagnitude[size_t(E) * hidden + e] += std::abs(d);
        }
    }
    return r;
}

double referenceLoss(const std::vector<double>& w, const std::vector<double>& b, const std::vector<float>& x,
                     uint32_t hidden, uint32_t E, const std::vector<int32_t>& labels, const std::vector<uint32_t>& rows) {
    return referenceStep(w, b, x, hidden, E, labels, rows).loss;
}

// AdamW as PyTorch/candle define it (decoupled decay, bias-corrected moments).
struct ReferenceAdam {
    std::vector<double> m, v;
    void step(std::vector<double>& params, const std::vector<double>& grad, size_t decayCount, int t,
              const GateTrainOptions& o) {
        if (m.empty()) m.assign(params.size(), 0.0), v.assign(params.size(), 0.0);
        const double bc1 = 1 - std::pow(double(o.beta1), t), bc2 = 1 - std::pow(double(o.beta2), t);
        for (size_t i = 0; i < params.size(); ++i) {
            m[i] = o.beta1 * m[i] + (1 - double(o.beta1)) * grad[i];
            v[i] = o.beta2 * v[i] + (1 - double(o.beta2)) * grad[i] * grad[i];
            if (i < decayCount) params[i] -= o.lr * o.weightDecay * params[i];
            params[i] -= o.lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + o.eps);
        }
    }
};

// Gaussian clusters: every prompt's tokens scatter (σ = 1) around its label's
// mean (N(0,1) per dimension, different per layer), so the labels are
// linearly separable by a wide margin (mean distance ≈ sqrt(2·hidden) σ).
GateSamples clusters(uint64_t seed, uint32_t prompts, uint32_t E, uint32_t hidden, uint32_t layers,
                     const std::vector<std::vector<std::vector<float>>>& means) {
    std::mt19937 rng{uint32_t(seed)};
    std::uniform_int_distribution<int> length(3, 12);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    GateSamples s;
    s.hidden = hidden;
    s.features.resize(layers);
    for (uint32_t p = 0; p < prompts; ++p) {
        const int label = int(p % E);
        const int n = length(rng);
        for (int t = 0; t < n; ++t) {
            s.labels.push_back(label);
            s.promptOf.push_back(p);
            for (uint32_t l = 0; l < layers; ++l)
                for (uint32_t h = 0; h < hidden; ++h) s.features[l].push_back(means[l][label][h] + noise(rng));
        }
    }
    return s;
}

std::string readText(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace

class TestGateTraining : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;

private slots:
    void initTestCase() {
        ctx = std::make_unique<vk::Context>();
        qInfo("device: %s, subgroup %u, validation %s", ctx->info().name.c_str(), ctx->subgroupSize(),
              ctx->validationEnabled() ? "on" : "off");
    }

    void cleanupTestCase() {
        if (ctx->validationEnabled()) QCOMPARE(ctx->validationMessages(), uint64_t(0));
        ctx.reset();
    }

    // Three AdamW steps over batches of ~37 gathered tokens for 2 layers, each
    // step's loss, gradient and updated weights against the reference.
    void stepsMatchReference_data() {
        QTest::addColumn<int>("hidden");
        QTest::addColumn<bool>("chunked");
        QTest::newRow("hidden 40") << 40 << false;
        QTest::newRow("hidden 37 (padded rows)") << 37 << false;
        QTest::newRow("hidden 37, features in 5-row chunks") << 37 << true;
    }
    void stepsMatchReference() {
        QFETCH(int, hidden);
        QFETCH(bool, chunked);
        const uint32_t E = 3, H = uint32_t(hidden), layers = 2, tokens = 61;
        std::mt19937 rng(1234);
        GateSamples s;
        s.hidden = H;
        for (uint32_t l = 0; l < layers; ++l) s.features.push_back(gaussian(rng, size_t(tokens) * H, 1.0f));
        std::uniform_int_distribution<int> label(0, int(E) - 1);
        for (uint32_t t = 0; t < tokens; ++t) {
            s.labels.push_back(label(rng));
            s.promptOf.push_back(t / 5);
        }
        GateTrainOptions opt;
        opt.lr = 0.01f;
        opt.weightDecay = 0.1f; // exercises the decoupled decay (and that the bias is not decayed)
        std::vector<GateWeights> init;
        std::vector<std::vector<double>> params(layers); // W then b, as the reference updates them
        for (uint32_t l = 0; l < layers; ++l) {
            GateWeights g;
            g.nExperts = E;
            g.hidden = H;
            g.weight = gaussian(rng, size_t(E) * H, 0.3f);
            g.bias = gaussian(rng, E, 0.3f);
            params[l].assign(g.weight.begin(), g.weight.end());
            params[l].insert(params[l].end(), g.bias.begin(), g.bias.end());
            init.push_back(g);
        }
        // Batches: shuffled token rows, so the forward pass really gathers.
        std::vector<uint32_t> all(tokens);
        std::iota(all.begin(), all.end(), 0u);
        std::vector<std::vector<uint32_t>> batches;
        for (size_t size : {37u, 30u, 37u}) {
            std::shuffle(all.begin(), all.end(), rng);
            batches.emplace_back(all.begin(), all.begin() + size);
        }
        const uint64_t chunkBytes = chunked ? 5 * 40 * sizeof(float) : 0;
        detail::GateTrainer trainer(*ctx, s, E, opt, init, 37, chunkBytes);
        std::vector<ReferenceAdam> adam(layers);
        const size_t wCount = size_t(E) * H;
        int skippedWeights = 0;
        double worstGradRatio = 0; // largest |error| / tolerance seen
        for (size_t b = 0; b < batches.size(); ++b) {
            const std::vector<float> loss = trainer.step(batches[b]);
            QCOMPARE(loss.size(), size_t(layers));
            for (uint32_t l = 0; l < layers; ++l) {
                const std::vector<double> w(params[l].begin(), params[l].begin() + wCount);
                const std::vector<double> bias(params[l].begin() + wCount, params[l].end());
                const Reference ref = referenceStep(w, bias, s.features[l], H, E, s.labels, batches[b]);
                QVERIFY2(std::abs(loss[l] - ref.loss) <= kRelTol * ref.lossMagnitude,
                         qPrintable(QString("step %1 layer %2: loss %3 vs reference %4").arg(b).arg(l).arg(loss[l]).arg(ref.loss)));
                const std::vector<float> probs = trainer.batchProbabilities(l, batches[b].size());
                for (size_t i = 0; i < probs.size(); ++i)
                    QVERIFY2(std::abs(probs[i] - ref.probs[i]) <= kRelTol, qPrintable(QString("prob %1").arg(i)));
                const std::vector<float> grad = trainer.gradient(l);
                QCOMPARE(grad.size(), ref.grad.size());
                for (size_t i = 0; i < grad.size(); ++i) {
                    worstGradRatio = std::max(worstGradRatio, std::abs(grad[i] - ref.grad[i]) /
                                                                  (kRelTol * ref.gradMagnitude[i] + 1e-12));
                    QVERIFY2(std::abs(grad[i] - ref.grad[i]) <= kRelTol * ref.gradMagnitude[i] + 1e-12,
                             qPrintable(QString("step %1 layer %2 grad[%3] = %4, reference %5")
                                            .arg(b).arg(l).arg(i).arg(grad[i]).arg(ref.grad[i])));
                }
                adam[l].step(params[l], ref.grad, wCount, int(b) + 1, opt);
                const GateWeights now = trainer.weights(l);
                for (size_t i = 0; i < params[l].size(); ++i) {
                    const float got = i < wCount ? now.weight[i] : now.bias[i - wCount];
                    // The update is lr·m̂/(sqrt(v̂)+eps): float32 rounding of the
                    // weight plus a 1e-5 relative error of the update. A
                    // gradient within its own rounding error of zero has no
                    // reliable sign (the update can flip): skipped, and counted.
                    if (std::abs(ref.grad[i]) <= 10 * kRelTol * ref.gradMagnitude[i]) {
                        ++skippedWeights;
                        params[l][i] = got;
                        continue;
                    }
                    const double tol = 1e-6 * std::abs(params[l][i]) + kRelTol * opt.lr * 10;
                    QVERIFY2(std::abs(got - params[l][i]) <= tol,
                             qPrintable(QString("step %1 layer %2 param %3 = %4, reference %5")
                                            .arg(b).arg(l).arg(i).arg(got).arg(params[l][i])));
                    // Keep the reference on the device's exact values so steps do not drift apart.
                    params[l][i] = got;
                }
            }
        }
        qInfo("gradient error at most %.3f of the tolerance; %d of %zu updates skipped (gradient within rounding of 0)",
              worstGradRatio, skippedWeights, batches.size() * layers * (wCount + E));
        QVERIFY2(skippedWeights < 6, qPrintable(QString("%1 weights skipped").arg(skippedWeights)));
    }

    // The shader's gradient is the derivative of the loss the shader reports:
    // central differences (h = 1e-4, in double: truncation error ~h²·|L'''| ≈
    // 1e-8) of the reference loss against the device gradient, whose float32
    // error is ~1e-6; a tolerance of 1e-5 absolute (gradients here are ~0.1).
    void gradientMatchesFiniteDifferences() {
        const uint32_t E = 3, H = 40, tokens = 37;
        std::mt19937 rng(99);
        GateSamples s;
        s.hidden = H;
        s.features.push_back(gaussian(rng, size_t(tokens) * H, 1.0f));
        for (uint32_t t = 0; t < tokens; ++t) {
            s.labels.push_back(int32_t(t % E));
            s.promptOf.push_back(t);
        }
        GateWeights g;
        g.nExperts = E;
        g.hidden = H;
        g.weight = gaussian(rng, size_t(E) * H, 0.3f);
        g.bias = gaussian(rng, E, 0.3f);
        std::vector<uint32_t> rows(tokens);
        std::iota(rows.begin(), rows.end(), 0u);
        detail::GateTrainer trainer(*ctx, s, E, GateTrainOptions{}, {g}, tokens);
        trainer.step(rows);
        const std::vector<float> grad = trainer.gradient(0);

        std::vector<double> w(g.weight.begin(), g.weight.end()), b(g.bias.begin(), g.bias.end());
        const double h = 1e-4;
        double maxGrad = 0, maxError = 0;
        for (size_t i = 0; i < grad.size(); ++i) {
            double& p = i < w.size() ? w[i] : b[i - w.size()];
            const double saved = p;
            p = saved + h;
            const double up = referenceLoss(w, b, s.features[0], H, E, s.labels, rows);
            p = saved - h;
            const double down = referenceLoss(w, b, s.features[0], H, E, s.labels, rows);
            p = saved;
            const double fd = (up - down) / (2 * h);
            maxGrad = std::max(maxGrad, std::abs(fd));
            maxError = std::max(maxError, std::abs(fd - grad[i]));
            QVERIFY2(std::abs(fd - grad[i]) <= 1e-5,
                     qPrintable(QString("parameter %1: device gradient %2, finite difference %3").arg(i).arg(grad[i]).arg(fd)));
        }
        qInfo("largest gradient %.4f, largest difference to finite differences %.2e", maxGrad, maxError);
        QVERIFY(maxGrad > 1e-2); // the check compared real gradients, not zeros
    }

    void separableClustersAreLearned() {
        const uint32_t E = 3, H = 40, layers = 2;
        std::mt19937 rng(5);
        std::vector<std::vector<std::vector<float>>> means(layers);
        for (auto& layer : means)
            for (uint32_t e = 0; e < E; ++e) layer.push_back(gaussian(rng, H, 1.0f));
        const GateSamples train = clusters(11, 48, E, H, layers, means);
        const GateSamples val = clusters(12, 24, E, H, layers, means);
        GateTrainOptions opt;
        opt.lr = 1e-2f;
        opt.epochs = 12;
        opt.seed = 7;
        int calls = 0, epochEnds = 0;
        const GateTrainResult r = trainGates(*ctx, train, &val, E, opt, nullptr, [&](const GateTrainProgress& p) {
            ++calls;
            QCOMPARE(p.step, calls);
            QCOMPARE(p.totalSteps, 12 * 12);
            QCOMPARE(p.loss.size(), size_t(layers));
            QVERIFY(p.etaSeconds >= 0);
            if (p.epochEnd) {
                ++epochEnds;
                QCOMPARE(p.valAccuracyToken.size(), size_t(layers));
                QCOMPARE(p.valAccuracyPrompt.size(), size_t(layers));
            } else {
                QVERIFY(p.valAccuracyToken.empty());
            }
        });
        QCOMPARE(calls, 12 * 12); // 48 prompts / 4 per step, 12 epochs
        QCOMPARE(epochEnds, 12);
        QVERIFY(!r.cancelled);
        QCOMPARE(r.history.size(), size_t(calls));
        QCOMPARE(r.gates.size(), size_t(layers));
        for (uint32_t l = 0; l < layers; ++l) {
            qInfo("layer %u: validation accuracy %.3f per token, %.3f per prompt", l, r.valAccuracyToken[l],
                  r.valAccuracyPrompt[l]);
            QVERIFY(r.valAccuracyToken[l] > 0.95f);
            QVERIFY(r.valAccuracyPrompt[l] > 0.95f);
        }
        auto epochMean = [&](int epoch) {
            double sum = 0;
            int n = 0;
            for (const auto& row : r.history)
                if (row.epoch == epoch) sum += row.mean, ++n;
            return sum / n;
        };
        qInfo("mean loss: first epoch %.4f, last epoch %.4f", epochMean(1), epochMean(opt.epochs));
        QVERIFY(epochMean(opt.epochs) < 0.5 * epochMean(1));
        QVERIFY(r.history.back().valAccuracy.has_value());
        QVERIFY(!r.history.front().valAccuracy.has_value());

        // The trained gates route the validation tokens the same way on the
        // host-facing path (gateProbabilities + routingAccuracy).
        const std::vector<float> probs = gateProbabilities(*ctx, r.gates[0], val.features[0].data(), val.tokenCount());
        const RoutingAccuracy acc = routingAccuracy(probs, E, val.labels, val.promptOf);
        QCOMPARE(acc.token, r.valAccuracyToken[0]);

        // Same seed: identical run; another seed: a different one.
        const GateTrainResult again = trainGates(*ctx, train, &val, E, opt);
        for (uint32_t l = 0; l < layers; ++l) {
            QVERIFY(again.gates[l].weight == r.gates[l].weight);
            QVERIFY(again.gates[l].bias == r.gates[l].bias);
        }
        for (size_t i = 0; i < r.history.size(); ++i) QVERIFY(again.history[i].loss == r.history[i].loss);
        GateTrainOptions other = opt;
        other.seed = 8;
        other.epochs = 1;
        const GateTrainResult different = trainGates(*ctx, train, nullptr, E, other);
        QVERIFY(different.history[0].loss != r.history[0].loss);
    }

    void cancelStopsBetweenSteps() {
        const uint32_t E = 2, H = 16;
        std::mt19937 rng(3);
        std::vector<std::vector<std::vector<float>>> means(1);
        for (uint32_t e = 0; e < E; ++e) means[0].push_back(gaussian(rng, H, 1.0f));
        const GateSamples train = clusters(1, 20, E, H, 1, means);
        std::atomic<bool> cancel{false};
        GateTrainOptions opt;
        opt.epochs = 5;
        const GateTrainResult r = trainGates(*ctx, train, nullptr, E, opt, nullptr,
                                             [&](const GateTrainProgress& p) {
                                                 if (p.step == 3) cancel = true;
                                             },
                                             &cancel);
        QVERIFY(r.cancelled);
        QCOMPARE(r.history.size(), size_t(3));
        QCOMPARE(r.gates.size(), size_t(1));
        QCOMPARE(r.gates[0].weight.size(), size_t(E * H));
        QCOMPARE(r.gates[0].bias.size(), size_t(E));
    }

    void trainingStartsFromGivenGatesWithoutBias() {
        const uint32_t E = 2, H = 8;
        std::mt19937 rng(4);
        std::vector<std::vector<std::vector<float>>> means(1);
        for (uint32_t e = 0; e < E; ++e) means[0].push_back(gaussian(rng, H, 1.0f));
        const GateSamples train = clusters(2, 8, E, H, 1, means);
        const std::vector<GateWeights> init{gateFromMeans(means[0], {}, true)};
        GateTrainOptions opt;
        opt.epochs = 0;
        opt.bias = false;
        GateTrainResult r = trainGates(*ctx, train, nullptr, E, opt, &init);
        QVERIFY(r.gates[0].weight == init[0].weight); // no steps: the start comes back unchanged
        QVERIFY(r.gates[0].bias.empty());
        opt.epochs = 2;
        r = trainGates(*ctx, train, nullptr, E, opt, &init);
        QVERIFY(r.gates[0].weight != init[0].weight);
        QVERIFY(r.gates[0].bias.empty());
    }

    void badSamplesAreRejected() {
        GateSamples s;
        s.hidden = 4;
        s.features = {std::vector<float>(12, 0.0f)};
        s.labels = {0, 1, 2};
        s.promptOf = {0, 0, 1};
        GateTrainOptions opt;
        QVERIFY(errorMessage([&] { trainGates(*ctx, s, nullptr, 2, opt); }).find("token 2: label 2") != std::string::npos);
        s.labels = {0, 1, 1};
        s.promptOf = {0, 1, 0};
        QVERIFY(errorMessage([&] { trainGates(*ctx, s, nullptr, 2, opt); }).find("prompt 0 are not contiguous") !=
                std::string::npos);
        s.promptOf = {0, 0, 1};
        s.features[0].pop_back();
        QVERIFY(errorMessage([&] { trainGates(*ctx, s, nullptr, 2, opt); }).find("features of layer 0") !=
                std::string::npos);
    }

    void probabilitiesMatchSoftmax() {
        const uint32_t E = 5, H = 37;
        const size_t n = 50;
        std::mt19937 rng(8);
        GateWeights g;
        g.nExperts = E;
        g.hidden = H;
        g.weight = gaussian(rng, size_t(E) * H, 0.3f);
        g.bias = gaussian(rng, E, 1.0f);
        const std::vector<float> x = gaussian(rng, n * H, 1.0f);
        const std::vector<float> probs = gateProbabilities(*ctx, g, x.data(), n);
        std::vector<int32_t> labels(n, 0);
        std::vector<uint32_t> rows(n);
        std::iota(rows.begin(), rows.end(), 0u);
        const Reference ref = referenceStep(std::vector<double>(g.weight.begin(), g.weight.end()),
                                            std::vector<double>(g.bias.begin(), g.bias.end()), x, H, E, labels, rows);
        QCOMPARE(probs.size(), n * E);
        for (size_t i = 0; i < probs.size(); ++i) QVERIFY(std::abs(probs[i] - ref.probs[i]) <= kRelTol);
    }

    void routingAccuracyCountsTokensAndPrompts() {
        // Prompt 0 (label 0): tokens 2 of 3 right, mean (0.7, 0.3) -> expert 0.
        // Prompt 1 (label 1): tokens 1 of 2 right, mean (0.525, 0.475) -> expert 0.
        const std::vector<float> probs{0.9f, 0.1f, 0.4f, 0.6f, 0.8f, 0.2f, 0.6f, 0.4f, 0.45f, 0.55f};
        const RoutingAccuracy r = routingAccuracy(probs, 2, {0, 0, 0, 1, 1}, {0, 0, 0, 1, 1});
        QCOMPARE(r.token, 0.6f);
        QCOMPARE(r.prompt, 0.5f);
        QCOMPARE(r.confusion, (std::vector<std::vector<int>>{{1, 0}, {1, 0}}));
        QVERIFY(errorMessage([&] { routingAccuracy(probs, 2, {0, 0, 0, 1}, {0, 0, 0, 1}); }).find("probabilities") !=
                std::string::npos);
    }

    void trainingFreeGates() {
        const GateWeights g = gateFromMeans({{3, 4}, {1, 1}}, {{0, 0}, {0, 1}}, true);
        QCOMPARE(g.nExperts, 2u);
        QCOMPARE(g.hidden, 2u);
        QCOMPARE(g.weight, (std::vector<float>{0.6f, 0.8f, 1.0f, 0.0f}));
        QCOMPARE(g.bias, (std::vector<float>{0.0f, 0.0f}));
        QVERIFY(gateFromMeans({{3, 4}, {0, 2}}, {}, false).bias.empty());
        QVERIFY(errorMessage([] { gateFromMeans({{1, 2}, {1, 1}}, {{1, 2}, {}}, false); })
                    .find("expert 0: positive and negative means are identical") != std::string::npos);
        QVERIFY(errorMessage([] { gateFromMeans({{1, 2}, {1}}, {}, false); }).find("expert 1") != std::string::npos);

        const GateWeights a = randomGate(4, 4096, 42, false), b = randomGate(4, 4096, 42, false);
        QVERIFY(a.weight == b.weight);
        QVERIFY(randomGate(4, 4096, 43, false).weight != a.weight);
        double sum = 0, sq = 0;
        for (float v : a.weight) sum += v, sq += double(v) * v;
        const double mean = sum / a.weight.size(), sd = std::sqrt(sq / a.weight.size() - mean * mean);
        // 16384 N(0,1) draws: the mean's standard error is 0.008, the sd's 0.006.
        QVERIFY(std::abs(mean) < 0.04);
        QVERIFY(std::abs(sd - 1.0) < 0.03);
    }

    void gatesFileRoundTrip() {
        QTemporaryDir dir;
        const std::filesystem::path file = std::filesystem::path(dir.path().toStdString()) / "gates.safetensors";
        std::mt19937 rng(6);
        std::vector<GateWeights> gates(2);
        for (auto& g : gates) {
            g.nExperts = 3;
            g.hidden = 37;
            g.weight = gaussian(rng, 3 * 37, 1.0f);
            g.bias = gaussian(rng, 3, 1.0f);
        }
        gates[1].bias.clear(); // a gate without bias round-trips without one
        saveGates(file, {3, 7}, gates, {{"gate_mode", "trained"}, {"dataset_sha256", "abc"}});
        std::map<std::string, std::string> meta;
        const auto loaded = loadGates(file, {3, 7}, 3, 37, &meta);
        QCOMPARE(loaded.size(), size_t(2));
        for (size_t i = 0; i < 2; ++i) {
            QVERIFY(loaded[i].weight == gates[i].weight);
            QVERIFY(loaded[i].bias == gates[i].bias);
        }
        QCOMPARE(meta["gate_mode"], std::string("trained"));
        QCOMPARE(meta["dataset_sha256"], std::string("abc"));
        QCOMPARE(meta["experts"], std::string("3"));
        QCOMPARE(meta["hidden_size"], std::string("37"));
        QCOMPARE(meta["layers"], std::string("3,7"));
        for (const auto& e : std::filesystem::directory_iterator(dir.path().toStdString()))
            QCOMPARE(e.path().filename().string(), std::string("gates.safetensors")); // no temporary left

        const std::string f = file.string();
        auto check = [&](const std::string& msg, const std::string& key) {
            QVERIFY2(msg.find(f) != std::string::npos && msg.find(key) != std::string::npos, msg.c_str());
        };
        check(errorMessage([&] { loadGates(file, {3, 7}, 3, 40, nullptr); }), "moe_gate.3.weight");
        check(errorMessage([&] { loadGates(file, {3, 7}, 4, 37, nullptr); }), "[4, 37]");
        check(errorMessage([&] { loadGates(file, {3, 8}, 3, 37, nullptr); }), "moe_gate.8.weight");
        check(errorMessage([&] { loadGates(file, {3}, 3, 37, nullptr); }), "moe_gate.7.weight");

        // A bias of the wrong length names the bias key.
        const std::vector<float> w(3 * 37, 0.5f), badBias(4, 0.0f);
        writeSafetensors(file, {{"moe_gate.0.weight", DType::F32, {3, 37}, std::as_bytes(std::span(w))},
                                {"moe_gate.0.bias", DType::F32, {4}, std::as_bytes(std::span(badBias))}});
        check(errorMessage([&] { loadGates(file, {0}, 3, 37, nullptr); }), "moe_gate.0.bias");
        check(errorMessage([&] { loadGates(file.string() + ".missing", {0}, 3, 37, nullptr); }), ".missing");
    }

    void lossCsv() {
        QTemporaryDir dir;
        const std::filesystem::path file = std::filesystem::path(dir.path().toStdString()) / "loss.csv";
        std::vector<LossRow> history(2);
        history[0].step = 1;
        history[0].epoch = 1;
        history[0].loss = {0.5f, 0.25f};
        history[0].mean = 0.375f;
        history[1].step = 2;
        history[1].epoch = 1;
        history[1].loss = {0.125f, 0.0625f};
        history[1].mean = 0.09375f;
        history[1].valAccuracy = 0.75f;
        writeLossCsv(file, {3, 7}, history, false, true);
        QCOMPARE(readText(file), std::string("step,epoch,loss_layer_3,loss_layer_7,mean,val_accuracy\n"
                                             "1,1,0.5,0.25,0.375,\n"
                                             "2,1,0.125,0.0625,0.09375,0.75\n"));
        writeLossCsv(file, {3, 7}, history, false);
        QCOMPARE(readText(file), std::string("step,epoch,loss_layer_3,loss_layer_7,mean\n"
                                             "1,1,0.5,0.25,0.375\n"
                                             "2,1,0.125,0.0625,0.09375\n"));
        writeLossCsv(file, {3, 7}, history, true);
        QCOMPARE(readText(file), std::string("Step,Gating layer 0,Gating layer 1\n"
                                             "Step 0,0.5000,0.2500\n"
                                             "Step 1,0.1250,0.0625\n"));
        history[1].loss.pop_back();
        QVERIFY(errorMessage([&] { writeLossCsv(file, {3, 7}, history, true); }).find("loss row 1") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestGateTraining)
#include "test_gate_training.moc"
