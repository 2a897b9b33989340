// The chat page with the demo base model on the real engine: streamed replies,
// Enter to send, Stop, Regenerate, the conversation saved after every message,
// a UI thread that keeps running while the engine works, and a native MoE under
// an expert budget set in the side panel; the quantize-on-load choice saved in
// the settings and used by the engine for the next model loaded.
#include "chat_controller.h"
#include "chat_page.h"
#include "conversation.h"
#include "expert_usage_view.h"
#include "main_window.h"
#include "model_library.h"

#include "moe/runnable_model.h"

#include "reference_model.h"
#include "test_paths.h"
#include "ui_test_env.h"

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QGroupBox>
#include <QLabel>
#include <QComboBox>
#include <QPushButton>
#include <QLineEdit>
#include <QSettings>
#include <QTemporaryDir>
#include <QtTest>

using namespace moe::ui;

namespace {

QJsonObject readJson(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    return QJsonDocument::fromJson(f.readAll()).object();
}

// Greedy: the demo base never emits EOS early for these prompts (it loops), so
// a reply is long enough to stream and to be stopped.
GenerationSettings greedy(int maxTokens) {
    GenerationSettings s;
    s.temperature = 0;
    s.repetitionPenalty = 1.0;
    s.maxTokens = maxTokens;
    return s;
}

} // namespace

class TestUiChat : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    std::unique_ptr<MainWindow> window_;
    QString basePath_;
    quint64 baseDeviceBytes_ = 0; // the demo base's weights on the device, as stored

    ChatController* chat() { return window_->chat(); }
    ChatPage* page() { return window_->chatPage(); }

    // Sends through the input box with the Enter key, as a person would.
    void typeAndSend(const QString& text) {
        page()->input()->setFocus();
        page()->input()->setPlainText(text);
        QTest::keyClick(page()->input(), Qt::Key_Return);
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        moe::test::isolateUiTest(tmp_);
        basePath_ = QFileInfo(QString::fromStdString((moe::test::modelsDir() / "base").string())).absoluteFilePath();
        window_ = std::make_unique<MainWindow>();
        window_->show();
        QVERIFY(QTest::qWaitForWindowExposed(window_.get()));
        window_->start();
        QTRY_VERIFY_WITH_TIMEOUT(!window_->library()->isScanning(), 60000);
        window_->showPage(MainWindow::Chat);
        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        QCOMPARE(chat()->modelInfo().path, basePath_);
        QVERIFY(chat()->modelInfo().moeLayers.isEmpty());
        QVERIFY(!page()->expertUsageView()->isVisibleTo(page())); // dense model: no expert usage
        QVERIFY(chat()->modelInfo().quantize.isEmpty());
        baseDeviceBytes_ = chat()->modelInfo().deviceBytes;
        QVERIFY(baseDeviceBytes_ > 0);
    }

    void cleanupTestCase() { window_.reset(); }

    void conversationJsonRoundTrip() {
        ConversationStore store(tmp_.path() + "/store");
        Conversation c = Conversation::create();
        c.title = "t";
        c.systemPrompt = "be brief";
        c.messages.push_back({"user", "hello *world*", QDateTime::currentDateTime()});
        ChatEntry reply{"assistant", "# hi\n\n- a\n- b", QDateTime::currentDateTime()};
        reply.tokens = 7;
        reply.tokensPerSecond = 12.5;
        reply.stopReason = "eos";
        c.messages.push_back(reply);
        QString error;
        const QString path = store.save(c, &error);
        QVERIFY2(!path.isEmpty(), qPrintable(error));
        auto back = store.load(c.id, &error);
        QVERIFY2(back, qPrintable(error));
        QCOMPARE(back->systemPrompt, c.systemPrompt);
        QCOMPARE(back->messages.size(), 2);
        QCOMPARE(back->messages[1].content, reply.content);
        QCOMPARE(back->messages[1].tokens, 7);
        QCOMPARE(back->messages[1].stopReason, QStringLiteral("eos"));
        QCOMPARE(store.list().size(), 1);

        // A bad role is refused with the field named.
        QJsonObject bad = c.toJson();
        QJsonArray messages = bad["messages"].toArray();
        QJsonObject first = messages[0].toObject();
        first["role"] = "wizard";
        messages[0] = first;
        bad["messages"] = messages;
        QVERIFY(!Conversation::fromJson(bad, &error));
        QVERIFY2(error.contains("messages[0].role"), qPrintable(error));
    }

    void streamsAndSavesAfterEveryMessage() {
        chat()->newChat();
        page()->applySettings(greedy(48));
        QSignalSpy updates(chat(), &ChatController::replyUpdated);
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        QSignalSpy saved(chat(), &ChatController::conversationSaved);
        int updatesAtFinish = -1;
        auto probe = connect(chat(), &ChatController::replyFinished, this, [&] { updatesAtFinish = int(updates.size()); });

        typeAndSend("Tell me about licences.");
        QVERIFY(page()->input()->toPlainText().isEmpty()); // Enter sent it
        // The user's message is on disk before the reply starts.
        const QString path = chat()->conversationPath();
        QCOMPARE(saved.size(), 1);
        QVERIFY(QFileInfo::exists(path));
        QJsonArray messages = readJson(path)["messages"].toArray();
        QCOMPARE(messages.size(), 1);
        QCOMPARE(messages[0].toObject()["role"].toString(), QStringLiteral("user"));
        QCOMPARE(messages[0].toObject()["content"].toString(), QStringLiteral("Tell me about licences."));

        QVERIFY(finished.wait(120000));
        disconnect(probe);
        QVERIFY2(updatesAtFinish >= 3, qPrintable(QString::number(updatesAtFinish)));
        // Each partial update is a prefix of the final text.
        const QString reply = chat()->conversation().messages.last().content;
        QVERIFY(!reply.isEmpty());
        for (const auto& args : updates) QVERIFY(reply.startsWith(args.at(1).toString()));

        QCOMPARE(saved.size(), 2);
        messages = readJson(path)["messages"].toArray();
        QCOMPARE(messages.size(), 2);
        QCOMPARE(messages[1].toObject()["role"].toString(), QStringLiteral("assistant"));
        QCOMPARE(messages[1].toObject()["content"].toString(), reply);
        QCOMPARE(messages[1].toObject()["tokens"].toInt(), 48);
        const auto stats = finished.first().at(1).value<ReplyStats>();
        QCOMPARE(stats.generatedTokens, 48);
        QVERIFY(stats.tokensPerSecond > 0);
        QVERIFY(stats.secondsToFirstToken > 0);
        QCOMPARE(stats.reusedTokens, 0);

        // The page shows both messages; the reply's widget holds its Markdown source.
        QTRY_COMPARE(page()->messageWidgets().size(), 2);
        QCOMPARE(page()->messageWidgets().last()->content(), reply);

        // Shift+Enter is a new line, not a send.
        page()->input()->setPlainText("line one");
        page()->input()->moveCursor(QTextCursor::End);
        QTest::keyClick(page()->input(), Qt::Key_Return, Qt::ShiftModifier);
        QCOMPARE(page()->input()->toPlainText(), QStringLiteral("line one\n"));
        QCOMPARE(chat()->conversation().messages.size(), 2);
        page()->input()->clear();
    }

    void regenerateReusesTheTurnStart() {
        // After streamsAndSaves: regenerate the greedy reply. The session is
        // truncated to the turn start, so the prompt is not recomputed, and a
        // greedy reply from the cache equals the first one.
        QCOMPARE(chat()->conversation().messages.size(), 2);
        const QString first = chat()->conversation().messages.last().content;
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        QVERIFY(chat()->regenerate());
        QVERIFY(finished.wait(120000));
        const auto stats = finished.first().at(1).value<ReplyStats>();
        QCOMPARE(stats.reusedTokens, stats.promptTokens - 1); // the last prompt token is forwarded again
        QCOMPARE(chat()->conversation().messages.size(), 2);
        QCOMPARE(chat()->conversation().messages.last().content, first);

        // A second turn reuses the cached first prompt: all of it but its last
        // token, which re-tokenises differently once the reply's text follows
        // it (SentencePiece merges across the "[/INST]" + " reply" boundary).
        QVERIFY(chat()->send("And about code?"));
        QSignalSpy second(chat(), &ChatController::replyFinished);
        QVERIFY(second.wait(120000));
        const auto turn2 = second.first().at(1).value<ReplyStats>();
        QVERIFY2(turn2.reusedTokens >= stats.promptTokens - 1, qPrintable(QString::number(turn2.reusedTokens)));
        QCOMPARE(readJson(chat()->conversationPath())["messages"].toArray().size(), 4);
    }

    void stopEndsGenerationWithinTwoSeconds() {
        chat()->newChat();
        page()->applySettings(greedy(100000)); // clamped to the context: far longer than the wait below
        QSignalSpy updates(chat(), &ChatController::replyUpdated);
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        typeAndSend("Write a Python function.");
        QTRY_VERIFY_WITH_TIMEOUT(updates.size() >= 3, 60000);
        QElapsedTimer timer;
        timer.start();
        chat()->stop();
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isGenerating(), 2000);
        QVERIFY2(timer.elapsed() < 2000, qPrintable(QString::number(timer.elapsed())));
        QCOMPARE(finished.size(), 1);
        QCOMPARE(finished.first().at(1).value<ReplyStats>().stopReason, QStringLiteral("cancelled"));
        // The partial reply is kept and saved.
        const QJsonArray messages = readJson(chat()->conversationPath())["messages"].toArray();
        QCOMPARE(messages.size(), 2);
        QVERIFY(!messages[1].toObject()["content"].toString().isEmpty());
        QCOMPARE(messages[1].toObject()["stop_reason"].toString(), QStringLiteral("cancelled"));
    }

    void eventLoopStaysResponsiveDuringGeneration() {
        chat()->newChat();
        page()->applySettings(greedy(300));
        // A 10 ms timer on the UI thread: no tick may come more than 100 ms late
        // while the engine prefills and decodes on its worker thread.
        QElapsedTimer clock;
        qint64 last = -1, worstLateMs = 0;
        int ticks = 0;
        QTimer probe;
        probe.setInterval(10);
        probe.setTimerType(Qt::PreciseTimer);
        connect(&probe, &QTimer::timeout, this, [&] {
            const qint64 now = clock.elapsed();
            if (last >= 0) worstLateMs = std::max(worstLateMs, now - last - 10);
            last = now;
            ++ticks;
        });
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        clock.start();
        probe.start();
        typeAndSend("Tell me about the GNU General Public License.");
        QVERIFY(finished.wait(120000));
        probe.stop();
        qInfo("latency probe: %d ticks, worst %lld ms late, %d tokens", ticks, worstLateMs,
              finished.first().at(1).value<ReplyStats>().generatedTokens);
        QVERIFY(ticks >= 5);
        QVERIFY2(worstLateMs <= 100, qPrintable(QString::number(worstLateMs)));
    }

    void conversationsAreListedAndReopened() {
        const auto list = chat()->store().list();
        QVERIFY(list.size() >= 3);
        const QString id = list.last().id; // the oldest: the streaming test's chat
        QVERIFY(chat()->openConversation(id));
        QCOMPARE(chat()->conversation().id, id);
        QCOMPARE(page()->messageWidgets().size(), chat()->conversation().messages.size());
    }

    void loadFailureIsShown() {
        const QString dir = tmp_.path() + "/not-a-model";
        QDir().mkpath(dir);
        QSignalSpy failed(chat(), &ChatController::modelLoadFailed);
        page()->chooseModel(dir);
        QVERIFY(failed.wait(60000));
        const QString error = failed.first().at(1).toString();
        QVERIFY2(error.contains(dir), qPrintable(error));
        bool shown = false;
        for (QLabel* label : page()->findChildren<QLabel*>()) shown |= label->isVisible() && label->text() == error;
        QVERIFY(shown);
        QVERIFY(!chat()->send("hello")); // no model now
    }

    // A random native Mixtral with the demo tokenizer: a greedy reply, then
    // the same reply regenerated under an expert budget of half the experts
    // typed into the side panel. The engine applies it on its thread; the
    // text is unchanged and the panel shows the cache's hits, misses, hit rate
    // and bytes uploaded per token for that reply.
    void expertBudgetShowsCacheFigures() {
        const QString dir = tmp_.path() + "/mixtral";
        QVERIFY(QDir().mkpath(dir));
        moe::test::ref::Spec spec{"mixtral", 64, 96, 2, 4, 2, 16, 4096};
        spec.experts = 4;
        spec.topK = 2;
        moe::test::ref::writeModel(dir.toStdString(), spec, 7);
        for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
            QVERIFY(QFile::copy(QString::fromStdString((moe::test::modelsDir() / "base" / f).string()), dir + "/" + f));
        page()->chooseModel(dir);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 60000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        // Experts 1-3 of each layer own weights (expert 0 is the block's base):
        // gate, up and down of 96 x 64 float32 values.
        const quint64 expertBytes = 2 * 3 * 3 * 96 * 64 * sizeof(float);
        QCOMPARE(chat()->modelInfo().expertBytes, expertBytes);
        QCOMPARE(chat()->modelInfo().expertBudget, quint64(0));

        chat()->newChat();
        page()->applySettings(greedy(12));
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        typeAndSend("Tell me about licences.");
        QVERIFY(finished.wait(120000));
        const QString unbudgeted = chat()->conversation().messages.last().content;
        QCOMPARE(finished.first().at(1).value<ReplyStats>().expertCache.budgetBytes, quint64(0));
        QVERIFY(!page()->expertCacheBox()->isVisibleTo(page()));

        QSignalSpy applied(chat(), &ChatController::expertBudgetApplied);
        page()->expertBudgetEdit()->setFocus();
        page()->expertBudgetEdit()->setText(QString::number(expertBytes / 2));
        QTest::keyClick(page()->expertBudgetEdit(), Qt::Key_Return);
        QVERIFY(applied.wait(60000));
        QCOMPARE(applied.first().at(0).value<quint64>(), expertBytes / 2);
        QCOMPARE(chat()->modelInfo().expertBudget, expertBytes / 2);

        finished.clear();
        QVERIFY(chat()->regenerate());
        QVERIFY(finished.wait(120000));
        QCOMPARE(chat()->conversation().messages.last().content, unbudgeted);
        const ExpertCacheFigures cache = finished.first().at(1).value<ReplyStats>().expertCache;
        QCOMPARE(cache.budgetBytes, expertBytes / 2);
        QVERIFY(cache.misses > 0);
        // Regenerate forwards the prompt's last token again, then one token per
        // decode step: every step routes one token to top-2 experts in each of
        // the 2 layers, and each miss uploads one of the 6 experts that own weights.
        QVERIFY2(cache.tokens >= 12, qPrintable(QString::number(cache.tokens)));
        QCOMPARE(cache.hits + cache.misses, quint64(cache.tokens) * 2 * 2);
        QCOMPARE(cache.bytesUploaded, cache.misses * (expertBytes / 6));

        qInfo("expert cache: budget %llu of %llu bytes, %llu hits, %llu misses, %.1f%% hit rate, %.0f bytes per token",
              (unsigned long long)cache.budgetBytes, (unsigned long long)expertBytes, (unsigned long long)cache.hits,
              (unsigned long long)cache.misses, 100 * cache.hitRate(), cache.bytesUploadedPerToken());
        QVERIFY(page()->expertCacheBox()->isVisibleTo(page()));
        auto label = [&](const char* name) { return page()->findChild<QLabel*>(name)->text(); };
        QCOMPARE(label("expertCacheHits"), QString::number(cache.hits));
        QVERIFY2(label("expertCacheMisses").startsWith(QString::number(cache.misses)), qPrintable(label("expertCacheMisses")));
        QCOMPARE(label("expertCacheHitRate"), QString("%1 %").arg(100.0 * cache.hitRate(), 0, 'f', 1));
        QVERIFY2(label("expertCacheUploaded").contains("per token"), qPrintable(label("expertCacheUploaded")));

        // A model loaded while the budget is set runs under it from the start.
        page()->chooseModel(dir);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 60000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        QCOMPARE(chat()->modelInfo().expertBudget, expertBytes / 2);
    }

    // Quantize on load: the combo next to the expert budget goes to the
    // worker's OpenOptions for the models loaded after the change (the one
    // loaded stays as it is), is saved in the settings like the budget, and a
    // saved choice is in force before the next session's model loads.
    // The Thinking choice (the chat template's enable_thinking) reaches the
    // controller's settings with the rest and is saved with them.
    void thinkingChoiceReachesTheSettings() {
        auto* box = page()->findChild<QComboBox*>(QStringLiteral("thinking"));
        QVERIFY(box);
        QCOMPARE(box->count(), 3);
        QVERIFY(box->toolTip().contains("enable_thinking"));
        GenerationSettings s = greedy(4);
        s.thinking = QStringLiteral("off");
        page()->applySettings(s);
        QCOMPARE(box->currentData().toString(), QStringLiteral("off"));
        QCOMPARE(chat()->settings().thinking, QStringLiteral("off"));
        page()->saveSettings();
        QCOMPARE(QSettings().value("chat/thinking").toString(), QStringLiteral("off"));
        // The demo base's template has no switch: a reply comes as before.
        chat()->newChat();
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        typeAndSend("Hello");
        QVERIFY(finished.wait(120000));
        QCOMPARE(finished.first().at(1).value<ReplyStats>().generatedTokens, 4);
        s.thinking.clear();
        page()->applySettings(s);
        QVERIFY(chat()->settings().thinking.isEmpty());
    }

    void quantizeOnLoadRoundTripsAndReachesTheWorker() {
        QComboBox* box = page()->quantizeBox();
        QStringList names;
        for (int i = 0; i < box->count(); ++i) names << box->itemText(i);
        QCOMPARE(names, QStringList({"Off", "Q8_0", "Q4_K (Q4_K_M mix)", "Q4_0"}));
        QVERIFY(box->toolTip().contains("loaded after"));
        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));

        box->setCurrentIndex(box->findData(QStringLiteral("q8_0")));
        QVERIFY(chat()->quantize() == moe::QuantizeScheme::Q8_0);
        QVERIFY(chat()->modelInfo().quantize.isEmpty()); // the loaded model is not reloaded
        page()->saveSettings();
        QCOMPARE(QSettings().value("chat/quantize").toString(), QStringLiteral("q8_0"));

        // The next load runs under it: the engine reports the scheme it applied.
        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        QVERIFY(chat()->worker()->openOptions().quantize == moe::QuantizeScheme::Q8_0);
        QCOMPARE(chat()->modelInfo().quantize, QStringLiteral("q8_0"));
        QVERIFY2(chat()->modelInfo().deviceBytes < baseDeviceBytes_,
                 qPrintable(QString("%1 vs %2").arg(chat()->modelInfo().deviceBytes).arg(baseDeviceBytes_)));
        QVERIFY2(page()->statusText().contains("quantized on load: q8_0"), qPrintable(page()->statusText()));
        // It still chats.
        chat()->newChat();
        page()->applySettings(greedy(4));
        QSignalSpy finished(chat(), &ChatController::replyFinished);
        typeAndSend("Hello");
        QVERIFY(finished.wait(120000));
        QCOMPARE(finished.first().at(1).value<ReplyStats>().generatedTokens, 4);

        // A saved choice comes back with the settings, before any model loads.
        QSettings().setValue("chat/quantize", "q4_k");
        page()->loadSettings();
        QCOMPARE(box->currentData().toString(), QStringLiteral("q4_k"));
        QVERIFY(chat()->quantize() == moe::QuantizeScheme::Q4_K);
        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        QCOMPARE(chat()->modelInfo().quantize, QStringLiteral("q4_k"));

        // Off: weights as stored again.
        box->setCurrentIndex(box->findData(QString()));
        QVERIFY(!chat()->quantize());
        page()->saveSettings();
        QCOMPARE(QSettings().value("chat/quantize").toString(), QString());
        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY(chat()->isModelLoaded());
        QVERIFY(!chat()->worker()->openOptions().quantize);
        QVERIFY(chat()->modelInfo().quantize.isEmpty());
        QCOMPARE(chat()->modelInfo().deviceBytes, baseDeviceBytes_);
    }

    // Stop during a load cancels it on the engine's thread (it frees what it
    // had uploaded): no model, the status says so, the next load is unaffected.
    void stopCancelsALoad() {
        QSignalSpy cancelled(chat(), &ChatController::modelLoadCancelled);
        QSignalSpy loaded(chat(), &ChatController::modelLoaded);
        page()->chooseModel(basePath_);
        QVERIFY(chat()->isModelLoading());
        QVERIFY(page()->stopButton()->isEnabled());
        QElapsedTimer clock;
        clock.start();
        QTest::mouseClick(page()->stopButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(!cancelled.isEmpty(), 10000);
        qInfo("load stopped %lld ms after Stop", (long long)clock.elapsed());
        QVERIFY(clock.elapsed() < 1000);
        QVERIFY(loaded.isEmpty());
        QVERIFY(!chat()->isModelLoading() && !chat()->isModelLoaded());
        QVERIFY2(page()->statusText().contains("stopped"), qPrintable(page()->statusText()));
        QVERIFY(!page()->stopButton()->isEnabled());

        page()->chooseModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!chat()->isModelLoading(), 120000);
        QVERIFY2(chat()->isModelLoaded(), qPrintable(page()->statusText()));
        QCOMPARE(cancelled.size(), 1);
    }

    // A newer choice replaces a load still running: only the newer one loads.
    void aNewerLoadReplacesARunningOne() {
        QSignalSpy loaded(chat(), &ChatController::modelLoaded);
        QSignalSpy cancelled(chat(), &ChatController::modelLoadCancelled);
        chat()->loadModel(basePath_);
        chat()->loadModel(basePath_);
        QTRY_VERIFY_WITH_TIMEOUT(!loaded.isEmpty(), 120000);
        QTest::qWait(200);
        QCOMPARE(loaded.size(), 1);
        QVERIFY(cancelled.isEmpty()); // superseded loads are not reported as the user's stop
        QVERIFY(chat()->isModelLoaded());
    }

    // Closing the window while a model loads: the window and its engine
    // thread are gone promptly, the load cancelled rather than finished.
    void closingTheWindowDuringALoadIsPrompt() {
        auto other = std::make_unique<MainWindow>();
        other->show();
        QVERIFY(QTest::qWaitForWindowExposed(other.get()));
        other->chat()->loadModel(basePath_);
        QTest::qWait(30); // the engine thread has started on it
        QElapsedTimer clock;
        clock.start();
        other->close();
        other.reset();
        qInfo("window closed and destroyed %lld ms into a load", (long long)clock.elapsed());
        QVERIFY(clock.elapsed() < 2000);
    }
};

QTEST_MAIN(TestUiChat)
#include "test_ui_chat.moc"
