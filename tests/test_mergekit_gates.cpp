// A mergekit-moe YAML and the equivalent TOML selector build the same MoE:
// gate_mode hidden over the three fine-tuned shared experts, a few positive
// and negative prompts each. Both go through buildMoe; their gates must be
// identical.
//
// Tolerance: none. Both selectors map to the same Selector fields, so the
// same prompts run through the same base model and the same gateFromMeans
// code in the same order; any difference (a dropped negative prompt, experts
// in another order, a different top_k or bias) changes the gate weights. A
// third build without the negative prompts shows the comparison can tell.
#include "moe/builder.h"
#include "moe/mergekit.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>

using namespace moe;
namespace fs = std::filesystem;

namespace {

struct ExpertSpec {
    const char* folder;
    std::vector<std::string> positive, negative;
};

// Prompts from the experts' domains (code, legal, tech); negatives name the
// other domains, as mergekit recipes usually do.
const std::vector<ExpertSpec> kExperts = {
    {"expert-code", {"def main():\n    return 0", "#include <stdio.h>"}, {"Permission is hereby granted"}},
    {"expert-legal", {"Permission is hereby granted, free of charge", "THE SOFTWARE IS PROVIDED \"AS IS\""},
     {"import os"}},
    {"expert-tech", {"A compiler is a program that translates", "The kernel schedules processes"}, {"Copyright (c)"}},
};

std::string yamlQuoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') { out += "\\n"; continue; }
        out += c;
    }
    return out + "\"";
}

// TOML basic strings escape the same characters as YAML double-quoted ones.
std::string tomlList(const std::vector<std::string>& items) {
    std::string out = "[";
    for (const auto& i : items) out += (out.size() > 1 ? ", " : "") + yamlQuoted(i);
    return out + "]";
}

} // namespace

class TestMergekitGates : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    QTemporaryDir tmp;
    fs::path models, root;

    void writeYaml(const fs::path& file) {
        std::ofstream y(file);
        y << "base_model: " << (models / "base").string() << "\ngate_mode: hidden\ndtype: bfloat16\n"
          << "experts_per_token: 2\nexperts:\n";
        for (const auto& e : kExperts) {
            y << "  - source_model: " << (models / e.folder).string() << "\n    positive_prompts:\n";
            for (const auto& p : e.positive) y << "      - " << yamlQuoted(p) << "\n";
            if (!e.negative.empty()) {
                y << "    negative_prompts:\n";
                for (const auto& n : e.negative) y << "      - " << yamlQuoted(n) << "\n";
            }
        }
    }

    void writeToml(const fs::path& file, bool withNegatives) {
        std::ofstream t(file);
        t << "[model]\nmodel_id = \"" << (models / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [";
        for (size_t i = 0; i < kExperts.size(); ++i)
            t << (i ? ", " : "") << "\"" << (models / kExperts[i].folder).string() << "\"";
        t << "]\n\n[anymoe.config]\ngate_mode = \"hidden\"\ntop_k = 2\ngate_bias = false\nrouting = \"token\"\n"
          << "export_dtype = \"bfloat16\"\n";
        for (const auto& e : kExperts) {
            t << "\n[[anymoe.config.experts]]\npositive_prompts = " << tomlList(e.positive) << "\n";
            t << "negative_prompts = " << tomlList(withNegatives ? e.negative : std::vector<std::string>{}) << "\n";
        }
    }

    std::vector<GateWeights> build(const fs::path& file) {
        const Selector s = loadSelectorAny(file);
        BuildResult b = buildMoe(*ctx, s);
        if (!b.moe) return {};
        return b.moe->gates();
    }

private slots:
    void initTestCase() {
        models = fs::absolute(test::modelsDir()).lexically_normal();
        if (!fs::is_regular_file(models / "base" / "config.json"))
            QSKIP(qPrintable(QString::fromStdString("shared models not found in " + models.string())));
        QVERIFY(tmp.isValid());
        root = tmp.path().toStdString();
        ctx = std::make_unique<vk::Context>();
    }
    void cleanupTestCase() { ctx.reset(); }

    void yamlAndTomlGiveIdenticalGates() {
        writeYaml(root / "recipe.yaml");
        writeToml(root / "recipe.toml", true);
        writeToml(root / "no-negatives.toml", false);

        const auto fromYaml = build(root / "recipe.yaml");
        const auto fromToml = build(root / "recipe.toml");
        QCOMPARE(fromYaml.size(), size_t(4)); // every layer of the 4-layer base
        QCOMPARE(fromToml.size(), fromYaml.size());
        for (size_t l = 0; l < fromYaml.size(); ++l) {
            QCOMPARE(fromYaml[l].nExperts, 3u);
            QCOMPARE(fromToml[l].nExperts, fromYaml[l].nExperts);
            QCOMPARE(fromToml[l].hidden, fromYaml[l].hidden);
            QVERIFY(fromYaml[l].bias.empty()); // mergekit routers have no bias
            QVERIFY(fromToml[l].bias.empty());
            QCOMPARE(fromToml[l].weight, fromYaml[l].weight);
        }

        // The negative prompts really shape the gates: without them they differ.
        const auto withoutNegatives = build(root / "no-negatives.toml");
        QCOMPARE(withoutNegatives.size(), fromYaml.size());
        QVERIFY(withoutNegatives[0].weight != fromYaml[0].weight);
    }
};

QTEST_GUILESS_MAIN(TestMergekitGates)
#include "test_mergekit_gates.moc"
