// moe::ChatSession and moe::RunnableModel, the one conversation path of
// moe-cli chat, the app's chat and the server: its tokens equal plain
// generation over the rendered conversation; KV-cache reuse, context
// trimming, stop strings and cancel; a built MoE's per-turn likelihood pick
// and reply-only expert usage.
#include "moe/builder.h"
#include "moe/chat_prompt.h"
#include "moe/chat_session.h"
#include "moe/generate.h"
#include "moe/runnable_model.h"
#include "moe/vk.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <fstream>
#include <numeric>

using namespace moe;

class TestChatSession : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    std::unique_ptr<RunnableModel> base;

    static ReplyOptions greedy(int maxTokens) {
        ReplyOptions o;
        o.maxTokens = maxTokens;
        o.sampling.temperature = 0;
        return o;
    }

private slots:
    void initTestCase() {
        ctx = std::make_unique<vk::Context>();
        base = RunnableModel::open(*ctx, test::modelsDir() / "base");
        QCOMPARE(base->kind(), ModelKind::Dense);
        QVERIFY(base->slotNames().empty());
        QVERIFY(!base->routing());
    }

    // The reply is what generate() gives on the rendered conversation in a fresh session.
    void replyEqualsPlainGeneration() {
        const std::vector<ChatMessage> messages{{"user", "The licensee shall"}};
        ChatSession chat(*base);
        const ChatReply reply = chat.reply(messages, greedy(12));
        QCOMPARE(reply.reusedTokens, 0);
        QCOMPARE(reply.droppedMessages, 0);
        QCOMPARE(reply.likelihood.slot, -1);

        const auto ids = encodeChat(base->chatTemplate(), base->tokenizer(), messages);
        QCOMPARE(reply.promptTokens, int(ids.size()));
        Session session(base->model());
        GenerateOptions o;
        o.maxTokens = 12;
        o.sampling.temperature = 0;
        const GenerateResult plain = generate(session, base->tokenizer(), ids, o);
        QCOMPARE(reply.generation.tokens, plain.tokens);
        QCOMPARE(reply.generation.text, plain.text);
        QVERIFY(!plain.tokens.empty());
    }

    // A second turn reuses the cached prefix and gives the tokens a fresh session gives.
    void secondTurnReusesTheCacheAndMatchesAFreshSession() {
        std::vector<ChatMessage> messages{{"system", "You are terse."}, {"user", "import os"}};
        ChatSession chat(*base);
        const ChatReply first = chat.reply(messages, greedy(8));
        messages.push_back({"assistant", first.generation.text});
        messages.push_back({"user", "The licensee shall"});
        const ChatReply second = chat.reply(messages, greedy(8));
        QVERIFY2(second.reusedTokens > first.promptTokens / 2, qPrintable(QString::number(second.reusedTokens)));

        ChatSession fresh(*base);
        const ChatReply again = fresh.reply(messages, greedy(8));
        QCOMPARE(again.reusedTokens, 0);
        QCOMPARE(second.generation.tokens, again.generation.tokens);
        // The same conversation once more: everything but the last token is reused.
        const ChatReply third = chat.reply(messages, greedy(8));
        QCOMPARE(third.reusedTokens, third.promptTokens - 1);
        QCOMPARE(third.generation.tokens, again.generation.tokens);
    }

    // A small context drops the oldest exchanges, never the system prompt or the last message.
    void oldMessagesAreDroppedToFit() {
        ChatSession chat(*base, 96);
        std::vector<ChatMessage> messages{{"system", "Be brief."}};
        for (int i = 0; i < 6; ++i) {
            messages.push_back({"user", "Tell me about licences and copyright notices, number " + std::to_string(i)});
            messages.push_back({"assistant", "Licences grant rights; notices name the holder."});
        }
        messages.push_back({"user", "And the last question?"});
        const ChatReply reply = chat.reply(messages, greedy(16));
        QVERIFY(reply.droppedMessages > 0);
        QVERIFY(reply.droppedMessages % 2 == 0); // whole exchanges
        QVERIFY(reply.promptTokens + int(reply.generation.tokens.size()) <= 96);
        const std::vector<ChatMessage> kept{messages.front(), messages.back()};
        const auto keptIds = encodeChat(base->chatTemplate(), base->tokenizer(), kept);
        QVERIFY(reply.promptTokens >= int(keptIds.size()));

        // One message that cannot fit is a clear error, and the session still works after it.
        ChatSession tiny(*base, 16);
        const std::string message = test::errorMessage([&] { tiny.reply({{"user", std::string(400, 'x')}}, greedy(4)); });
        QVERIFY2(message.find("context holds 16") != std::string::npos, message.c_str());
        QVERIFY(!tiny.reply({{"user", "Hi"}}, greedy(2)).generation.stopReason.empty());
    }

    void stopStringsAndCancel() {
        const std::vector<ChatMessage> messages{{"user", "import os"}};
        ChatSession chat(*base);
        const ChatReply full = chat.reply(messages, greedy(24));
        QVERIFY(full.generation.text.size() > 4);
        // Stop at a piece of the greedy text: the reply ends just before it.
        ReplyOptions o = greedy(24);
        o.stopStrings = {full.generation.text.substr(2, 2)};
        const ChatReply stopped = chat.reply(messages, o);
        QCOMPARE(stopped.generation.stopReason, std::string("stop"));
        QCOMPARE(stopped.generation.text, full.generation.text.substr(0, full.generation.text.find(o.stopStrings[0])));

        std::atomic<bool> cancel{false};
        o = greedy(24);
        o.cancel = &cancel;
        int pieces = 0;
        const ChatReply cancelled = chat.reply(messages, o, [&](const std::string&) {
            if (++pieces == 2) cancel = true;
            return true;
        });
        QCOMPARE(cancelled.generation.stopReason, std::string("cancelled"));
        QVERIFY(cancelled.generation.tokens.size() < full.generation.tokens.size());
        // Set before the reply, the flag stops it in the chat template's
        // render: nothing is forwarded, and the session is as it was.
        const ChatReply unrendered = chat.reply(messages, o);
        QCOMPARE(unrendered.generation.stopReason, std::string("cancelled"));
        QCOMPARE(unrendered.promptTokens, 0);
        QVERIFY(unrendered.generation.tokens.empty());
        cancel = false;
        QCOMPARE(chat.reply(messages, greedy(24)).generation.tokens, full.generation.tokens);
    }

    // A built MoE (random gates, no training) in likelihood mode picks an expert
    // per turn; the usage counts only the reply's tokens, top-k per layer.
    void builtMoeRoutesEachTurn() {
        QTemporaryDir dir;
        const auto m = std::filesystem::absolute(test::modelsDir());
        const std::string sel = dir.filePath("moe.toml").toStdString();
        std::ofstream(sel) << "[model]\nmodel_id = \"" << (m / "base").string() << "\"\n\n[anymoe]\nmodel_ids = [\""
                           << (m / "expert-code").string() << "\", \"" << (m / "expert-legal").string()
                           << "\"]\nlayers = [1, 3]\n\n[anymoe.config]\ngate_mode = \"random\"\nrouting = \"token\"\n"
                              "top_k = 2\n";
        auto built = buildMoe(*ctx, loadSelectorAny(sel));
        QVERIFY(built.moe);
        auto moe = RunnableModel::fromBuilt(std::move(built.moe));
        QCOMPARE(moe->kind(), ModelKind::BuiltMoe);
        QCOMPARE(moe->moeLayers(), (std::vector<int>{1, 3}));
        QCOMPARE(moe->expertsPerToken(), 2);
        ChatSession chat(*moe);
        const ChatReply token = chat.reply({{"user", "import os"}}, greedy(6));
        QCOMPARE(token.likelihood.slot, -1);
        QCOMPARE(token.expertUsage.size(), size_t(2));
        for (const auto& layer : token.expertUsage)
            QCOMPARE(std::accumulate(layer.tokens.begin(), layer.tokens.end(), 0u),
                     uint32_t(2 * token.generation.decodeSteps));

        moe->setRouting(RoutingMode::Likelihood);
        const ChatReply likely = chat.reply({{"user", "The licensee shall"}}, greedy(6));
        QVERIFY(likely.likelihood.slot >= 0);
        QCOMPARE(likely.likelihood.candidates, moe->likelihoodSlots());
        QCOMPARE(likely.likelihood.loss.size(), likely.likelihood.candidates.size());
        for (const auto& layer : likely.expertUsage) // pinned: each reply token goes to the one slot
            QCOMPARE(layer.tokens.at(size_t(likely.likelihood.slot)), uint32_t(likely.generation.decodeSteps));
    }
};

QTEST_GUILESS_MAIN(TestChatSession)
#include "test_chat_session.moc"
