// A saved conversation (<id>.json in the app's conversations folder, ui/
// conversation.cpp; Qt Core only): load and list it, then save what loaded,
// and what Conversation::fromJson accepts with the file's own id, into
// another folder. A refusal must say why; a save must stay inside its folder
// and read back with the same messages.
#include "conversation.h"
#include "fuzz_common.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>

namespace {

void saveAndReadBack(const moe::ui::Conversation& c) {
    const QString dir = QString::fromStdString((moe::fuzz::workDir() / "saved").string());
    const moe::ui::ConversationStore store(dir);
    QString error;
    const QString path = store.save(c, &error);
    if (path.isEmpty()) {
        if (error.isEmpty()) std::abort();
        return;
    }
    if (QFileInfo(path).absolutePath() != QDir(dir).absolutePath()) std::abort(); // written outside its folder
    const auto back = store.load(c.id, &error);
    if (!back || back->messages.size() != c.messages.size()) std::abort();
    store.remove(c.id);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto dir = moe::fuzz::workDir() / "conversations";
    moe::fuzz::writeFile(dir / "c.json", moe::fuzz::asText(data, size));
    const moe::ui::ConversationStore store(QString::fromStdString(dir.string()));
    QString error;
    const auto c = store.load(QStringLiteral("c"), &error);
    if (!c && error.isEmpty()) std::abort();
    (void)store.list();
    if (c) saveAndReadBack(*c);
    const QJsonDocument doc = QJsonDocument::fromJson(QByteArray(reinterpret_cast<const char*>(data), qsizetype(size)));
    if (doc.isObject())
        if (const auto d = moe::ui::Conversation::fromJson(doc.object())) saveAndReadBack(*d);
    return 0;
}
