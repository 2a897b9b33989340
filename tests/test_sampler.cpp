// Sampler: greedy, temperature, top-k, top-p, min-p, penalties and seeds;
// generate(): stop strings, EOS, max tokens, cancellation, streaming.
#include "moe/generate.h"
#include "moe/sampler.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <map>
#include <set>

using namespace moe;

class TestSampler : public QObject {
    Q_OBJECT

    // Logits whose softmax is (0.5, 0.25, 0.125, 0.0625, 0.0625) over ids 0..4, then tiny tail.
    static std::vector<float> ladder() {
        std::vector<float> l(50, -30.0f);
        const float p[] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.0625f};
        for (int i = 0; i < 5; ++i) l[size_t(i)] = std::log(p[i]);
        return l;
    }

    static std::set<int32_t> support(SamplingParams p, int draws = 2000) {
        Sampler s(p);
        std::set<int32_t> seen;
        auto l = ladder();
        for (int i = 0; i < draws; ++i) seen.insert(s.sample(l, {}));
        return seen;
    }

private slots:
    void greedyIsArgmax() {
        SamplingParams p;
        p.temperature = 0;
        Sampler s(p);
        std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
        QCOMPARE(s.sample(l, {}), 1);
        QCOMPARE(argmax(l), 1);
    }

    void topKTopPMinPRestrictTheSupport() {
        SamplingParams p;
        p.temperature = 1;
        p.topP = 1;
        p.minP = 0;
        p.topK = 0;
        p.seed = 5;
        QVERIFY(support(p).size() >= 5); // everything reachable
        p.topK = 2;
        QCOMPARE(support(p), (std::set<int32_t>{0, 1}));
        p.topK = 0;
        p.topP = 0.7f; // 0.5 + 0.25 reaches 0.7
        QCOMPARE(support(p), (std::set<int32_t>{0, 1}));
        p.topP = 1;
        p.minP = 0.2f; // keeps p >= 0.1: ids 0, 1, 2
        QCOMPARE(support(p), (std::set<int32_t>{0, 1, 2}));
    }

    void temperatureSharpensAndFrequenciesFollowProbabilities() {
        SamplingParams p;
        p.topK = 0;
        p.topP = 1;
        p.minP = 0;
        p.seed = 9;
        p.temperature = 1;
        Sampler s(p);
        auto l = ladder();
        std::map<int32_t, int> counts;
        const int n = 20000;
        for (int i = 0; i < n; ++i) ++counts[s.sample(l, {})];
        // Binomial standard deviation at p=0.5, n=20000 is 0.0035; allow 5 sigma.
        QVERIFY(std::abs(counts[0] / double(n) - 0.5) < 0.02);
        QVERIFY(std::abs(counts[1] / double(n) - 0.25) < 0.02);
        p.temperature = 0.25f; // p^4 renormalised: id 0 gets 0.5^4/(sum) ≈ 0.94
        Sampler cold(p);
        int zeros = 0;
        for (int i = 0; i < n; ++i) zeros += cold.sample(l, {}) == 0;
        QVERIFY(zeros / double(n) > 0.9);
    }

    void sameSeedSameTokens() {
        SamplingParams p;
        p.temperature = 1;
        p.topK = 0;
        p.minP = 0;
        p.seed = 1234;
        Sampler a(p), b(p);
        auto l = ladder();
        for (int i = 0; i < 100; ++i) QCOMPARE(a.sample(l, {}), b.sample(l, {}));
    }

    void penalties() {
        SamplingParams p;
        p.repetitionPenalty = 2.0f;
        p.presencePenalty = 0.5f;
        p.frequencyPenalty = 0.25f;
        p.penaltyLastN = 3;
        std::vector<float> l{4.0f, -4.0f, 1.0f, 1.0f};
        const std::vector<int32_t> history{2, 0, 1, 1}; // last 3: 0, 1, 1 (id 2 is outside the window)
        Sampler::applyPenalties(l, history, p);
        QCOMPARE(l[0], 4.0f / 2 - 0.5f - 0.25f);
        QCOMPARE(l[1], -4.0f * 2 - 0.5f - 0.5f);
        QCOMPARE(l[2], 1.0f);
        QCOMPARE(l[3], 1.0f);
        // Greedy with a penalty avoids the repeated token.
        p.temperature = 0;
        p.presencePenalty = 0;
        p.frequencyPenalty = 0;
        p.repetitionPenalty = 3.0f;
        Sampler s(p);
        std::vector<float> l2{2.0f, 1.0f};
        const std::vector<int32_t> h2{0};
        QCOMPARE(s.sample(l2, h2), 1);
    }

    // generate() on the demo base model: streaming, stop strings, limits.
    void generateStopsAndStreams() {
        vk::Context ctx;
        auto model = Model::load(ctx, test::modelsDir() / "base");
        auto tok = Tokenizer::load(test::modelsDir() / "base");
        auto prompt = tok->encode("The licensee shall", true, false);
        GenerateOptions o;
        o.sampling.temperature = 0;
        o.maxTokens = 30;
        Session s(*model);
        auto full = generate(s, *tok, prompt, o);
        QCOMPARE(int(full.tokens.size()), 30);
        QCOMPARE(QString::fromStdString(full.stopReason), QString("length"));
        QVERIFY(full.text.size() > 10);

        // A stop string taken from the middle of the greedy text: the text ends right before it.
        const std::string stop = full.text.substr(full.text.size() / 2, 4);
        const size_t at = full.text.find(stop);
        o.stopStrings = {stop};
        Session s2(*model);
        std::string streamed;
        auto cut = generate(s2, *tok, prompt, o, [&](const std::string& piece) {
            streamed += piece;
            return true;
        });
        QCOMPARE(QString::fromStdString(cut.stopReason), QString("stop"));
        QCOMPARE(cut.text, full.text.substr(0, at));
        QCOMPARE(streamed, cut.text); // nothing of the stop string was streamed

        // Cancel from the callback after the first piece.
        Session s3(*model);
        o.stopStrings.clear();
        int pieces = 0;
        auto cancelled = generate(s3, *tok, prompt, o, [&](const std::string&) { return ++pieces < 1; });
        QCOMPARE(QString::fromStdString(cancelled.stopReason), QString("cancelled"));
        QVERIFY(cancelled.tokens.size() < 30);
    }
};

QTEST_GUILESS_MAIN(TestSampler)
#include "test_sampler.moc"
