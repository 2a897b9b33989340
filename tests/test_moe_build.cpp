// The MoE builder end to end on ../shared/models: gates trained on amoe.json
// from fine-tuned and from LoRA experts (all layers, and a subset not starting
// at 0), routing accuracy on other prompts of the same domains, the loss
// curve, the files written, and perplexity of the built MoE in each routing
// mode against the base and each domain's own expert.
//
// The floors are the acceptance figures (a float32 reference of this
// method reaches 0.83-0.88 per prompt and 0.70-0.82 per token); they are
// properties of a correct build, not of one seed.
#include "moe/atomic_file.h"
#include "moe/builder.h"
#include "moe/dataset.h"
#include "moe/scoring.h"
#include "reference_ops.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <fstream>

using namespace moe;

namespace {

// Code, legal and tech rows of amoe-with-base.json relabelled 1..3 → 0..2:
// prompts of the same domains that the gates were not trained on.
std::vector<DatasetRow> heldOutRows() {
    std::vector<DatasetRow> rows;
    for (auto r : loadDataset(test::modelsDir() / "amoe-with-base.json"))
        if (r.expert >= 1) {
            r.expert -= 1;
            rows.push_back(r);
        }
    return rows;
}

Selector selector(const std::filesystem::path& dir, bool lora, std::vector<int> layers) {
    const auto m = std::filesystem::absolute(test::modelsDir());
    Selector s;
    s.file = dir / (lora ? "lora.toml" : "fine-tuned.toml");
    s.modelId = (m / "base").string();
    s.baseModel = m / "base";
    s.datasetJson = m / "amoe.json";
    const char* names[] = {"code", "legal", "tech"};
    for (const char* n : names) {
        const auto d = m / ((lora ? "lora-" : "expert-") + std::string(n));
        s.expertIds.push_back(d.string());
        s.experts.push_back(d);
    }
    s.expertType = lora ? ExpertType::LoraAdapter : ExpertType::FineTuned;
    s.layers = std::move(layers);
    s.epochs = 30;
    s.batchSize = 8;
    s.topK = 2;
    s.lossCsvPath = dir / "loss.csv";
    return s;
}

// Mean loss per layer over the steps of one epoch.
std::vector<double> epochLoss(const std::vector<LossRow>& history, int epoch) {
    std::vector<double> sum;
    int n = 0;
    for (const auto& r : history) {
        if (r.epoch != epoch) continue;
        sum.resize(r.loss.size());
        for (size_t l = 0; l < r.loss.size(); ++l) sum[l] += r.loss[l];
        ++n;
    }
    for (auto& v : sum) v /= n;
    return sum;
}

void checkRouting(MoeModel& moe, const Selector& s) {
    Session session(moe.model());
    // Capture needs the dense layers: a fresh base model, as route-eval does.
    vk::Context& ctx = moe.model().context();
    auto base = Model::load(ctx, s.baseModel);
    Session baseSession(*base);
    const auto acc = evaluateRouting(baseSession, moe.tokenizer(), moe.chatTemplate(), heldOutRows(), moe.layers(),
                                     moe.gates(), moe.expertCount(), RoutingMode::Token, 0, s.useChatTemplate);
    QCOMPARE(acc.size(), moe.layers().size());
    for (const auto& a : acc) {
        qInfo("layer %d: held-out accuracy per token %.3f, per prompt %.3f", a.layer, a.token, a.prompt);
        QVERIFY2(a.prompt >= 0.75f, qPrintable(QString("layer %1 per-prompt %2").arg(a.layer).arg(a.prompt)));
        QVERIFY2(a.token >= 0.60f, qPrintable(QString("layer %1 per-token %2").arg(a.layer).arg(a.token)));
        int total = 0;
        for (const auto& row : a.confusion)
            for (int v : row) total += v;
        QCOMPARE(total, 120);
    }
}

void checkTraining(const BuildReport& r, const Selector& s, const std::vector<int>& modelLayers) {
    const size_t layers = modelLayers.size();
    QVERIFY(!r.cancelled);
    QCOMPARE(r.trainSteps, 30 * 14); // 108 training prompts in batches of 8, 30 epochs
    const auto first = epochLoss(r.history, 1), last = epochLoss(r.history, 30);
    QCOMPARE(first.size(), layers);
    for (size_t l = 0; l < layers; ++l) {
        qInfo("layer %d: epoch-1 loss %.4f, epoch-30 loss %.4f (%.0f%%)", modelLayers[l], first[l], last[l],
              100 * last[l] / first[l]);
        QVERIFY2(last[l] <= 0.75 * first[l], "the last epoch's loss must be at most 75% of the first's");
    }
    // The loss CSV: a header and one row per step.
    std::ifstream csv(s.lossCsvPath);
    std::string header, line;
    std::getline(csv, header);
    QVERIFY2(header.rfind("step,epoch,", 0) == 0, header.c_str());
    size_t rows = 0;
    while (std::getline(csv, line)) ++rows;
    QCOMPARE(rows, r.history.size());
    QVERIFY(std::filesystem::exists(r.gates));
}

} // namespace

class TestMoeBuild : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir dir;
    std::unique_ptr<MoeModel> fineTuned; // all layers, kept for the perplexity table

private slots:
    void initTestCase() { ctx = std::make_unique<vk::Context>(); }
    void cleanupTestCase() {
        fineTuned.reset();
        ctx.reset();
    }

    void fineTunedExpertsAllLayers() {
        const Selector s = selector(dir.path().toStdString(), false, {});
        BuildResult b = buildMoe(*ctx, s);
        QVERIFY(b.moe);
        checkTraining(b.report, s, {0, 1, 2, 3});
        QCOMPARE(b.report.layers.size(), size_t(4));
        QVERIFY(b.report.routingChosen);
        QCOMPARE(b.report.validationLoss.size(), size_t(4));
        checkRouting(*b.moe, s);
        // The gates load back as written, and the MoE loads from them.
        auto again = MoeModel::load(*ctx, s);
        QCOMPARE(again->gates().size(), size_t(4));
        QCOMPARE(again->gates()[2].weight, b.moe->gates()[2].weight);
        QCOMPARE(again->routing(), b.report.routing);
        fineTuned = std::move(b.moe);
    }

    void loraExpertsLayerSubsetNotStartingAtZero() {
        const Selector s = selector(dir.path().toStdString(), true, {3, 2});
        BuildResult b = buildMoe(*ctx, s);
        QVERIFY(b.moe);
        QCOMPARE(b.moe->layers(), (std::vector<int>{2, 3}));
        checkTraining(b.report, s, {2, 3});
        checkRouting(*b.moe, s);
        // LoRA experts stay low-rank: A and B of 3 projections × 3 experts × 2
        // layers (float32) plus the gates, not dense copies of the MLPs.
        const uint64_t lowRank = 2 * 3 * 3 * (8 * (256 + 688) * 4 + 8 * (688 + 256) * 4) / 2;
        qInfo("LoRA experts add %llu bytes", (unsigned long long)b.report.expertBytes);
        QVERIFY(b.report.expertBytes < 2 * lowRank);
        // Only layers 2 and 3 are routed.
        QVERIFY(dynamic_cast<const RoutedMlp*>(&b.moe->model().mlp(2)));
        QVERIFY(!dynamic_cast<const RoutedMlp*>(&b.moe->model().mlp(0)));
    }

    // training = false with gate_model_id: the gates of an earlier build are
    // loaded, not trained again.
    void pretrainedGatesAreLoaded() {
        QVERIFY2(fineTuned, "needs the MoE built by fineTunedExpertsAllLayers");
        Selector s = selector(dir.path().toStdString(), false, {});
        s.training = false;
        s.gateModelId = gatesFolder(selector(dir.path().toStdString(), false, {}));
        s.lossCsvPath.clear();
        s.routing = RoutingMode::Token;
        BuildResult b = buildMoe(*ctx, s);
        QVERIFY(b.moe);
        QCOMPARE(b.report.trainSteps, 0);
        for (size_t l = 0; l < 4; ++l) QCOMPARE(b.moe->gates()[l].weight, fineTuned->gates()[l].weight);
    }

    // mergekit's training-free gates: `hidden` from a few labelled prompts per
    // expert routes the held-out prompts far above chance (1/3); `random`
    // and `cheap_embed` build and run.
    void trainingFreeGates() {
        Selector s = selector(dir.path().toStdString(), false, {2, 3});
        s.lossCsvPath.clear();
        s.datasetJson.clear();
        const auto rows = loadDataset(test::modelsDir() / "amoe.json");
        s.expertPrompts.resize(3);
        for (const auto& r : rows)
            if (s.expertPrompts[size_t(r.expert)].positive.size() < 10) s.expertPrompts[size_t(r.expert)].positive.push_back(r.prompt);
        s.gateBias = false;
        for (GateMode mode : {GateMode::Hidden, GateMode::CheapEmbed, GateMode::Random}) {
            s.gateMode = mode;
            s.file = dir.filePath(QString("free-%1.toml").arg(toString(mode))).toStdString();
            BuildResult b = buildMoe(*ctx, s);
            QVERIFY(b.moe);
            QCOMPARE(b.moe->gates().size(), size_t(2));
            QVERIFY(b.moe->gates()[0].bias.empty());
            if (mode != GateMode::Hidden) continue;
            auto base = Model::load(*ctx, s.baseModel);
            Session baseSession(*base);
            const auto acc = evaluateRouting(baseSession, b.moe->tokenizer(), b.moe->chatTemplate(), heldOutRows(),
                                             b.moe->layers(), b.moe->gates(), 3, RoutingMode::Running, 0, true);
            for (const auto& a : acc) {
                qInfo("hidden gates, layer %d: held-out accuracy per token %.3f, per prompt %.3f", a.layer, a.token, a.prompt);
                QVERIFY(a.prompt > 0.5f);
            }
        }
    }

    // merge_lora: dense copies W + (alpha/r)·B·A give the same logits as the
    // low-rank experts (float32 rounding only).
    void mergedLoraEqualsLowRank() {
        Selector s = selector(dir.path().toStdString(), true, {2, 3});
        s.routing = RoutingMode::Token;
        const SelectionFacts facts = validateSelection(s);
        auto gates = loadGates(gatesFile(s), facts.layers, 3, 256); // written by loraExpertsLayerSubsetNotStartingAtZero
        auto lowRank = MoeModel::load(*ctx, s, facts, gates);
        s.mergeLora = true;
        auto merged = MoeModel::load(*ctx, s, facts, gates);
        QVERIFY(merged->expertBytes() > 4 * lowRank->expertBytes());
        const std::vector<int32_t> ids = lowRank->tokenizer().encode("The licensee shall not sublicense the Software", true, false);
        Session a(lowRank->model()), b(merged->model());
        std::vector<float> la, lb;
        a.forward(ids, &la);
        b.forward(ids, &lb);
        const double e = test::nmse(la, lb);
        qInfo("merged vs low-rank NMSE %.3g", e);
        QVERIFY(e < 1e-9);
    }

    void cancelStopsTheBuild() {
        Selector s = selector(dir.path().toStdString(), false, {1});
        s.file = dir.filePath("cancelled.toml").toStdString();
        s.lossCsvPath.clear();
        std::atomic<bool> cancel{false};
        int steps = 0;
        BuildResult b = buildMoe(*ctx, s, [&](const BuildProgress& p) {
            if (p.training && ++steps == 5) cancel = true;
        }, &cancel);
        QVERIFY(b.report.cancelled);
        QCOMPARE(int(b.report.history.size()), 5);
    }

    // A cancelled training never replaces the last complete gates: they stay
    // byte for byte, the partial ones go to gate.cancelled.safetensors (a
    // complete, loadable file) and the report says where; with no earlier
    // build, gate.safetensors is not written at all. The loss CSV likewise.
    void cancelledTrainingKeepsTheLastGates() {
        QTemporaryDir here;
        Selector s = selector(here.path().toStdString(), false, {1, 3});
        s.epochs = 2;
        const auto gates = gatesFile(s), partial = gatesFolder(s) / "gate.cancelled.safetensors";
        const auto partialCsv = s.lossCsvPath.parent_path() / "loss.cancelled.csv";
        auto cancelledBuild = [&] {
            std::atomic<bool> cancel{false};
            int steps = 0;
            BuildResult b = buildMoe(*ctx, s, [&](const BuildProgress& p) {
                if (p.training && ++steps == 3) cancel = true;
            }, &cancel);
            QVERIFY(b.report.cancelled);
            QCOMPARE(b.report.trainSteps, 3);
            QVERIFY(b.report.gates == partial);
            QVERIFY(b.report.lossCsv == partialCsv);
            bool warned = false;
            for (const auto& w : b.report.warnings) warned |= w.find(partial.string()) != std::string::npos;
            QVERIFY(warned);
            std::map<std::string, std::string> meta;
            const auto g = loadGates(partial, s.layers, 3, 256, &meta);
            QCOMPARE(g.size(), size_t(2));
            QVERIFY(meta["cancelled"] == "true");
            QVERIFY(b.moe); // the partial gates stay usable in memory
        };
        // No earlier build: nothing under the gates' own name.
        cancelledBuild();
        QVERIFY(!std::filesystem::exists(gates));
        QVERIFY(!std::filesystem::exists(s.lossCsvPath));

        BuildResult full = buildMoe(*ctx, s);
        QVERIFY(!full.report.cancelled);
        QVERIFY(full.report.gates == gates);
        const std::string before = readTextFile(gates), csvBefore = readTextFile(s.lossCsvPath);
        std::filesystem::remove(partial);
        cancelledBuild();
        QVERIFY(readTextFile(gates) == before);
        QVERIFY(readTextFile(s.lossCsvPath) == csvBefore);
        // And the complete gates still load as the built MoE.
        auto again = MoeModel::load(*ctx, s);
        QVERIFY(again->layers() == s.layers);
    }

    // Perplexity over the held-out text of each domain (6 windows of 256
    // tokens, the first 64 of each the prompt): base, each expert, and the MoE
    // of fine-tuned experts (all layers, top-2) per routing mode.
    void perplexityTable() {
        QVERIFY2(fineTuned, "needs the MoE built by fineTunedExpertsAllLayers");
        PerplexityOptions opt;
        opt.maxWindows = 6;
        opt.promptTokens = 64;
        const char* domains[] = {"general", "code", "legal", "tech"};
        std::map<std::string, std::map<std::string, double>> loss; // [row][domain]
        auto score = [&](Model& model, const Tokenizer& tok, const std::string& row, PerplexityOptions o) {
            Session session(model, 257, 257);
            for (const char* d : domains) {
                const std::string text = readTextFile(test::modelsDir() / "eval" / (std::string(d) + ".txt"));
                loss[row][d] = perplexity(session, tok, text, o).loss;
            }
        };
        for (const char* m : {"base", "expert-code", "expert-legal", "expert-tech"}) {
            auto model = Model::load(*ctx, test::modelsDir() / m);
            score(*model, fineTuned->tokenizer(), m, opt);
        }
        for (RoutingMode mode : {RoutingMode::Token, RoutingMode::Running, RoutingMode::Sequence, RoutingMode::Likelihood}) {
            fineTuned->setRouting(mode);
            PerplexityOptions o = opt;
            if (mode == RoutingMode::Likelihood) o.likelihoodSlots = fineTuned->likelihoodSlots();
            score(fineTuned->model(), fineTuned->tokenizer(), std::string("moe ") + toString(mode), o);
        }
        std::string table = "\nperplexity        general    code   legal    tech\n";
        for (const auto& [row, byDomain] : loss) {
            char line[128];
            std::snprintf(line, sizeof line, "%-16s %8.2f %7.2f %7.2f %7.2f\n", row.c_str(), std::exp(byDomain.at("general")),
                          std::exp(byDomain.at("code")), std::exp(byDomain.at("legal")), std::exp(byDomain.at("tech")));
            table += line;
        }
        qInfo("%s", table.c_str());
        auto ppl = [&](const std::string& row, const std::string& d) { return std::exp(loss[row][d]); };
        for (const std::string d : {"code", "legal", "tech"}) {
            const std::string expert = "expert-" + d;
            QVERIFY2(ppl("moe running", d) < ppl("base", d), d.c_str());
            QVERIFY2(ppl("moe running", d) <= 1.15 * ppl(expert, d), d.c_str());
            QVERIFY2(ppl("moe likelihood", d) <= 1.03 * ppl(expert, d), d.c_str());
        }
        for (const std::string d : {"code", "legal"}) QVERIFY2(ppl("moe token", d) < ppl("base", d), d.c_str());
        QVERIFY(ppl("moe likelihood", "general") <= 1.03 * ppl("base", "general"));
    }
};

QTEST_GUILESS_MAIN(TestMoeBuild)
#include "test_moe_build.moc"
