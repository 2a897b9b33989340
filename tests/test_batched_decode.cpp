// Batched decode (continuous batching): sessions made from one another share
// their device state as sequences, and their one-token steps run together in
// one pass over the weights. A reply gives the same tokens whether it runs
// alone or beside others (temperature 0), with sequences joining and leaving
// between steps; built MoEs route each sequence on its own (sequence routing's
// frozen choice, likelihood routing's pinned expert and expert usage per
// sequence).
#include "moe/builder.h"
#include "moe/chat_session.h"
#include "moe/generate.h"
#include "moe/runnable_model.h"
#include "moe/sampler.h"
#include "moe/vk.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <atomic>
#include <fstream>
#include <numeric>
#include <thread>

using namespace moe;

namespace {

ReplyOptions greedy(int maxTokens) {
    ReplyOptions o;
    o.maxTokens = maxTokens;
    o.sampling.temperature = 0;
    return o;
}

// Prompts of different lengths, so that sequences join the batch at
// different steps, and reply lengths that end at different steps.
const std::vector<std::string> kPrompts{"The licensee shall", "import numpy as np\nimport os\n\ndef main():",
                                        "Hello", "The server returned an error when the request"};
const std::vector<int> kReplyTokens{20, 14, 24, 9};

// Each conversation's reply alone: one at a time, each on a fresh sequence
// of a session made for as many as repliesTogether runs at once (as a
// server's slots are), so that alone and together take the same kernels.
std::vector<ChatReply> repliesAlone(RunnableModel& model) {
    Session group(model.model(), 0, 256, uint32_t(kPrompts.size()));
    std::vector<ChatReply> out;
    for (size_t i = 0; i < kPrompts.size(); ++i) {
        ChatSession chat(model, std::make_unique<Session>(group));
        out.push_back(chat.reply({{"user", kPrompts[i]}}, greedy(kReplyTokens[i])));
    }
    return out;
}

// The same conversations at once, each on its own thread and sequence of one
// shared session. `stepsTogether` receives the session's decode figures.
std::vector<ChatReply> repliesTogether(RunnableModel& model, Session::StepFigures* figures = nullptr) {
    const size_t n = kPrompts.size();
    auto first = std::make_unique<Session>(model.model(), 0, 256, uint32_t(n));
    Session& shared = *first;
    std::vector<std::unique_ptr<ChatSession>> chats;
    chats.push_back(std::make_unique<ChatSession>(model, std::move(first)));
    for (size_t i = 1; i < n; ++i) chats.push_back(std::make_unique<ChatSession>(model, std::make_unique<Session>(shared)));
    std::vector<ChatReply> out(n);
    std::vector<std::string> errors(n);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            try {
                out[i] = chats[i]->reply({{"user", kPrompts[i]}}, greedy(kReplyTokens[i]));
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < n; ++i)
        if (!errors[i].empty()) throw Error("conversation " + std::to_string(i) + ": " + errors[i]);
    if (figures) *figures = chats[0]->session().stepFigures();
    return out;
}

} // namespace

class TestBatchedDecode : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    std::unique_ptr<RunnableModel> base;

    std::unique_ptr<RunnableModel> builtMoe(const std::string& routing) {
        const auto m = std::filesystem::absolute(test::modelsDir());
        const std::string sel = dir.filePath(QString::fromStdString("moe-" + routing + ".toml")).toStdString();
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (m / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
                           << (m / "expert-code").string() << "\", \"" << (m / "expert-legal").string() << "\", \""
                           << (m / "expert-tech").string() << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\n"
                           << "gate_mode = \"random\"\nrouting = \"" << routing << "\"\ntop_k = 2\n";
        auto built = buildMoe(*ctx, loadSelectorAny(sel));
        if (!built.moe) throw Error("the build gave no MoE");
        return RunnableModel::fromBuilt(std::move(built.moe));
    }

    // Every reply's tokens equal, reply by reply; usage per sequence matches.
    static void compareReplies(const std::vector<ChatReply>& alone, const std::vector<ChatReply>& together) {
        QCOMPARE(together.size(), alone.size());
        for (size_t i = 0; i < alone.size(); ++i) {
            QVERIFY2(!alone[i].generation.tokens.empty(), qPrintable(QString("reply %1 is empty").arg(i)));
            QVERIFY2(together[i].generation.tokens == alone[i].generation.tokens,
                     qPrintable(QString("reply %1: %2 tokens together, %3 alone; text together \"%4\", alone \"%5\"")
                                    .arg(i)
                                    .arg(together[i].generation.tokens.size())
                                    .arg(alone[i].generation.tokens.size())
                                    .arg(QString::fromStdString(together[i].generation.text))
                                    .arg(QString::fromStdString(alone[i].generation.text))));
            QCOMPARE(together[i].likelihood.slot, alone[i].likelihood.slot);
            QCOMPARE(together[i].expertUsage.size(), alone[i].expertUsage.size());
            for (size_t l = 0; l < alone[i].expertUsage.size(); ++l)
                QCOMPARE(together[i].expertUsage[l].tokens, alone[i].expertUsage[l].tokens);
        }
    }

    QTemporaryDir dir;

private slots:
    void initTestCase() {
        ctx = std::make_unique<vk::Context>();
        base = RunnableModel::open(*ctx, test::modelsDir() / "base");
    }

    // Four conversations at once on the demo base: the tokens of each reply
    // alone, and the decode steps really ran several sequences together.
    void denseRepliesTogetherEqualAlone() {
        const auto alone = repliesAlone(*base);
        Session::StepFigures figures;
        const auto together = repliesTogether(*base, &figures);
        compareReplies(alone, together);
        QVERIFY(figures.decodeSteps > 0);
        const double perStep = double(figures.decodeTokens) / double(figures.decodeSteps);
        qInfo("%llu decode tokens in %llu steps (%.2f sequences per step)", (unsigned long long)figures.decodeTokens,
              (unsigned long long)figures.decodeSteps, perStep);
        QVERIFY2(perStep > 1.5, qPrintable(QString("%1 sequences per decode step").arg(perStep)));
    }

    // Sequence routing freezes each prompt's choice for its own reply; token
    // routing counts each sequence's usage apart (top-k per reply token).
    void builtMoeRoutesEachSequenceOnItsOwn_data() {
        QTest::addColumn<QString>("routing");
        QTest::newRow("sequence") << "sequence";
        QTest::newRow("token") << "token";
        QTest::newRow("likelihood") << "likelihood";
        QTest::newRow("token, under an expert budget") << "budget";
    }
    void builtMoeRoutesEachSequenceOnItsOwn() {
        QFETCH(QString, routing);
        auto moe = builtMoe(routing == "sequence" ? "sequence" : "token");
        if (routing == "likelihood") moe->setRouting(RoutingMode::Likelihood);
        // Paged steps (a submit per MoE layer's routing) with a third of the
        // experts resident: batched steps page in what any sequence needs.
        if (routing == "budget") moe->setExpertBudget(std::max<uint64_t>(1, moe->model().pageableExpertBytes() / 3));
        const auto alone = repliesAlone(*moe);
        const auto together = repliesTogether(*moe);
        compareReplies(alone, together);
        for (const ChatReply& r : together)
            for (const auto& layer : r.expertUsage) {
                const uint32_t sum = std::accumulate(layer.tokens.begin(), layer.tokens.end(), 0u);
                const uint32_t perToken = routing == "likelihood" ? 1u : 2u; // pinned: one slot
                QCOMPARE(sum, perToken * uint32_t(r.generation.decodeSteps));
            }
    }

    // A long prompt goes in chunks (maxBatch tokens each) with the decoding
    // sequences' steps between them: a sequence that decodes while another's
    // 15-chunk prompt goes in keeps stepping during it, instead of waiting for
    // the whole prompt. Its tokens are still those it gives alone.
    void promptChunksLetOthersDecode() {
        const uint32_t chunk = 8;
        const std::vector<int32_t> start{1, 450, 2650, 3317};
        std::vector<int32_t> longPrompt{1};
        for (int i = 0; i < 119; ++i) longPrompt.push_back(int32_t(10 + (i * 37) % 4000));
        auto greedyTokens = [&](Session& s, int steps, std::atomic<int>* done) {
            std::vector<int32_t> out;
            int32_t next = argmax(s.forward(start));
            for (int i = 0; i < steps; ++i) {
                out.push_back(next);
                next = argmax(s.forward(std::span<const int32_t>(&next, 1)));
                if (done) ++*done;
            }
            s.finishDecoding();
            return out;
        };
        Session aloneSession(base->model(), 256, chunk);
        const auto alone = greedyTokens(aloneSession, 60, nullptr);

        Session decoder(base->model(), 256, chunk, 2);
        Session prompter(decoder);
        std::atomic<int> steps{0};
        int during = -1;
        std::vector<int32_t> together;
        std::thread t([&] { together = greedyTokens(decoder, 60, &steps); });
        while (steps.load() < 3) std::this_thread::yield();
        const int before = steps.load();
        prompter.forward(longPrompt);
        during = steps.load() - before;
        t.join();
        QCOMPARE(together, alone);
        qInfo("decode steps while a %zu-token prompt went in (chunks of %u): %d", longPrompt.size(), chunk, during);
        QVERIFY2(during >= 5, qPrintable(QString("only %1 decode steps ran during the prompt").arg(during)));
    }

    // Sharing is bounded: a session made from a full group is refused, and a
    // sequence given back can be taken again.
    void sequencesAreBounded() {
        auto first = std::make_unique<Session>(base->model(), 64, 16, 2);
        auto second = std::make_unique<Session>(*first);
        QCOMPARE(second->sequence(), 1u);
        const std::string error = test::errorMessage([&] { Session third(*first); });
        QVERIFY2(error.find("all 2 sequences") != std::string::npos, error.c_str());
        second.reset();
        Session again(*first);
        QCOMPARE(again.sequence(), 1u);
        // Each sequence's tokens land in its own cache rows: the same prompt
        // on both gives the same logits, and a sibling that was reset after
        // forwarding something else does not disturb them.
        const std::vector<int32_t> prompt{1, 450, 2650, 3317};
        const std::vector<int32_t> other{1, 22, 333, 4000, 55, 6};
        again.forward(other);
        const auto l1 = first->forward(prompt);
        const std::vector<float> a(l1.begin(), l1.end());
        again.reset();
        const auto l2 = again.forward(prompt);
        QCOMPARE(std::vector<float>(l2.begin(), l2.end()), a);
    }
};

QTEST_GUILESS_MAIN(TestBatchedDecode)
#include "test_batched_decode.moc"
