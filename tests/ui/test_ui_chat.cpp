// The chat page with the demo base model on the real engine: streamed replies,
// Enter to send, Stop, Regenerate, the conversation saved after every message,
// and a UI thread that keeps running while the engine works.
#include "chat_controller.h"
#include "chat_page.h"
#include "conversation.h"
#include "expert_usage_view.h"
#include "main_window.h"
#include "model_library.h"

#include "test_paths.h"
#include "ui_test_env.h"

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
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
};

QTEST_MAIN(TestUiChat)
#include "test_ui_chat.moc"
