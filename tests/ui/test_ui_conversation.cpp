// Saved conversations from elsewhere (ui/conversation.cpp): an id that would
// name a path, a renamed copy, an oversized file and a folder in a file's
// place each get a clear refusal or a safe reading; nothing is written outside
// the conversations folder. (fuzz/fuzz_conversation.cpp fuzzes the same code.)
#include "conversation.h"

#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace moe::ui;

namespace {

QJsonObject conversationJson(const QString& id) {
    Conversation c = Conversation::create();
    c.id = id;
    c.title = QStringLiteral("t");
    c.messages.push_back({QStringLiteral("user"), QStringLiteral("hello"), QDateTime::currentDateTime(), 0, 0, 0, {}});
    return c.toJson();
}

void writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(bytes);
}

} // namespace

class TestUiConversation : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

private slots:
    void idsThatNamePathsAreRefused() {
        const QString dir = tmp_.filePath(QStringLiteral("a/conversations"));
        QVERIFY(QDir().mkpath(dir));
        const ConversationStore store(dir);
        for (const QString& id : {QStringLiteral("../../escaped"), QStringLiteral("/tmp/x"), QStringLiteral(".hidden"),
                                  QStringLiteral("a\\b"), QString(200, QLatin1Char('x')), QStringLiteral("..")}) {
            QString error;
            QVERIFY(!Conversation::isValidId(id));
            QVERIFY(!Conversation::fromJson(conversationJson(id), &error));
            QVERIFY2(error.contains(QStringLiteral("\"id\"")), qPrintable(error));
            Conversation c = Conversation::create();
            c.id = id;
            error.clear();
            QVERIFY(store.save(c, &error).isEmpty());
            QVERIFY2(error.contains(QStringLiteral("cannot name a file")), qPrintable(error));
            QVERIFY(!store.load(id, &error));
            QVERIFY(!store.remove(id));
        }
        QVERIFY(!QFile::exists(tmp_.filePath(QStringLiteral("escaped.json"))));
        // A file whose id names a path is refused as a whole, naming the file and the field.
        writeFile(dir + QStringLiteral("/evil.json"), QJsonDocument(conversationJson(QStringLiteral("../../escaped"))).toJson());
        QString error;
        QVERIFY(!store.load(QStringLiteral("evil"), &error));
        QVERIFY2(error.contains(QStringLiteral("evil.json")) && error.contains(QStringLiteral("\"id\"")), qPrintable(error));
        QVERIFY(store.list().isEmpty());
        QVERIFY(Conversation::isValidId(Conversation::create().id));
    }

    // A copy saved under another name keeps its own file: the name decides.
    void aRenamedCopyFollowsItsFileName() {
        const QString dir = tmp_.filePath(QStringLiteral("b"));
        QVERIFY(QDir().mkpath(dir));
        const ConversationStore store(dir);
        writeFile(dir + QStringLiteral("/copy.json"), QJsonDocument(conversationJson(QStringLiteral("original"))).toJson());
        const auto c = store.load(QStringLiteral("copy"));
        QVERIFY(c);
        QCOMPARE(c->id, QStringLiteral("copy"));
        QCOMPARE(store.list().size(), 1);
        QCOMPARE(store.list().front().id, QStringLiteral("copy"));
        QVERIFY(store.remove(c->id));
        QVERIFY(!QFile::exists(dir + QStringLiteral("/copy.json")));
    }

    void oversizedFilesAndFoldersAreRefused() {
        const QString dir = tmp_.filePath(QStringLiteral("c"));
        QVERIFY(QDir().mkpath(dir + QStringLiteral("/folder.json")));
        const ConversationStore store(dir);
        QString error;
        QVERIFY(!store.load(QStringLiteral("folder"), &error));
        QVERIFY2(error.contains(QStringLiteral("not a regular file")), qPrintable(error));
        {
            QFile big(dir + QStringLiteral("/big.json"));
            QVERIFY(big.open(QIODevice::WriteOnly));
            QVERIFY(big.resize(ConversationStore::kMaxConversationBytes + 1)); // sparse
        }
        QVERIFY(!store.load(QStringLiteral("big"), &error));
        QVERIFY2(error.contains(QStringLiteral("big.json")) && error.contains(QStringLiteral("64 MiB")), qPrintable(error));
        QVERIFY(store.list().isEmpty());
    }
};

QTEST_GUILESS_MAIN(TestUiConversation)
#include "test_ui_conversation.moc"
