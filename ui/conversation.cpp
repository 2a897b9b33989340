#include "conversation.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>
#include <QUuid>

#include <algorithm>

namespace moe::ui {

Conversation Conversation::create() {
    Conversation c;
    // Sortable by time at a glance, unique by the UUID part.
    c.id = QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss-")) +
           QUuid::createUuid().toString(QUuid::WithoutBraces).left(8);
    c.created = c.updated = QDateTime::currentDateTime();
    return c;
}

bool Conversation::isValidId(const QString& id) {
    if (id.isEmpty() || id.size() > kMaxIdLength || id.startsWith(QLatin1Char('.'))) return false;
    for (const QChar ch : id) {
        const char16_t u = ch.unicode();
        const bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' ||
                        u == '_' || u == '.';
        if (!ok) return false;
    }
    return true;
}

QJsonObject Conversation::toJson() const {
    QJsonArray list;
    for (const ChatEntry& m : messages) {
        QJsonObject o{{QStringLiteral("role"), m.role},
                      {QStringLiteral("content"), m.content},
                      {QStringLiteral("time"), m.time.toString(Qt::ISODateWithMs)}};
        if (m.role == QLatin1String("assistant")) {
            o.insert(QStringLiteral("tokens"), m.tokens);
            o.insert(QStringLiteral("seconds_to_first_token"), m.secondsToFirstToken);
            o.insert(QStringLiteral("tokens_per_second"), m.tokensPerSecond);
            o.insert(QStringLiteral("stop_reason"), m.stopReason);
        }
        list.append(o);
    }
    return {{QStringLiteral("format"), QStringLiteral("moe-studio-conversation-1")},
            {QStringLiteral("id"), id},
            {QStringLiteral("title"), title},
            {QStringLiteral("model"), modelPath},
            {QStringLiteral("system_prompt"), systemPrompt},
            {QStringLiteral("created"), created.toString(Qt::ISODateWithMs)},
            {QStringLiteral("updated"), updated.toString(Qt::ISODateWithMs)},
            {QStringLiteral("messages"), list}};
}

std::optional<Conversation> Conversation::fromJson(const QJsonObject& json, QString* error) {
    auto fail = [&](const QString& why) -> std::optional<Conversation> {
        if (error) *error = why;
        return std::nullopt;
    };
    Conversation c;
    c.id = json.value(QStringLiteral("id")).toString();
    if (c.id.isEmpty()) return fail(QStringLiteral("field \"id\" is missing or not a string"));
    // The id names the file it is saved to: it must not name a path.
    if (!Conversation::isValidId(c.id))
        return fail(QStringLiteral("field \"id\" must be 1 to %1 letters, digits, '-', '_' or '.', not starting "
                                   "with '.'").arg(Conversation::kMaxIdLength));
    c.title = json.value(QStringLiteral("title")).toString();
    c.modelPath = json.value(QStringLiteral("model")).toString();
    c.systemPrompt = json.value(QStringLiteral("system_prompt")).toString();
    c.created = QDateTime::fromString(json.value(QStringLiteral("created")).toString(), Qt::ISODateWithMs);
    c.updated = QDateTime::fromString(json.value(QStringLiteral("updated")).toString(), Qt::ISODateWithMs);
    if (!json.value(QStringLiteral("messages")).isArray()) return fail(QStringLiteral("field \"messages\" is not an array"));
    const QJsonArray list = json.value(QStringLiteral("messages")).toArray();
    for (int i = 0; i < list.size(); ++i) {
        const QJsonObject o = list.at(i).toObject();
        ChatEntry m;
        m.role = o.value(QStringLiteral("role")).toString();
        if (m.role != QLatin1String("user") && m.role != QLatin1String("assistant"))
            return fail(QStringLiteral("messages[%1].role must be \"user\" or \"assistant\"").arg(i));
        m.content = o.value(QStringLiteral("content")).toString();
        m.time = QDateTime::fromString(o.value(QStringLiteral("time")).toString(), Qt::ISODateWithMs);
        m.tokens = o.value(QStringLiteral("tokens")).toInt();
        m.secondsToFirstToken = o.value(QStringLiteral("seconds_to_first_token")).toDouble();
        m.tokensPerSecond = o.value(QStringLiteral("tokens_per_second")).toDouble();
        m.stopReason = o.value(QStringLiteral("stop_reason")).toString();
        c.messages.push_back(m);
    }
    return c;
}

ConversationStore::ConversationStore(QString dir) : dir_(std::move(dir)) {}

QString ConversationStore::pathOf(const QString& id) const { return QDir(dir_).filePath(id + QStringLiteral(".json")); }

QString ConversationStore::save(const Conversation& conversation, QString* error) const {
    if (!QDir().mkpath(dir_)) {
        if (error) *error = QStringLiteral("%1: cannot create the folder").arg(dir_);
        return {};
    }
    if (!Conversation::isValidId(conversation.id)) {
        if (error) *error = QStringLiteral("conversation id \"%1\" cannot name a file").arg(conversation.id.left(64));
        return {};
    }
    const QString path = pathOf(conversation.id);
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly)) {
        if (error) *error = QStringLiteral("%1: %2").arg(path, file.errorString());
        return {};
    }
    file.write(QJsonDocument(conversation.toJson()).toJson(QJsonDocument::Indented));
    if (!file.commit()) {
        if (error) *error = QStringLiteral("%1: %2").arg(path, file.errorString());
        return {};
    }
    return path;
}

std::optional<Conversation> ConversationStore::load(const QString& id, QString* error) const {
    if (!Conversation::isValidId(id)) {
        if (error) *error = QStringLiteral("conversation id \"%1\" cannot name a file").arg(id.left(64));
        return std::nullopt;
    }
    const QString path = pathOf(id);
    const QFileInfo info(path);
    if (info.exists() && !info.isFile()) {
        if (error) *error = QStringLiteral("%1: not a regular file").arg(path);
        return std::nullopt;
    }
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) {
        if (error) *error = QStringLiteral("%1: %2").arg(path, file.errorString());
        return std::nullopt;
    }
    if (file.size() > kMaxConversationBytes) {
        if (error)
            *error = QStringLiteral("%1: %2 bytes, more than the %3 MiB a conversation may have")
                         .arg(path)
                         .arg(file.size())
                         .arg(kMaxConversationBytes >> 20);
        return std::nullopt;
    }
    QJsonParseError parseError;
    // What the size said, not the cap: a buffer of the cap would be allocated for every file read.
    const QJsonDocument doc = QJsonDocument::fromJson(file.read(file.size()), &parseError);
    if (!doc.isObject()) {
        if (error) *error = QStringLiteral("%1: invalid JSON: %2").arg(path, parseError.errorString());
        return std::nullopt;
    }
    QString why;
    auto c = Conversation::fromJson(doc.object(), &why);
    if (!c && error) *error = QStringLiteral("%1: %2").arg(path, why);
    // The file's name decides which file a save or delete touches; an id
    // inside that differs (a renamed copy) follows it.
    if (c) c->id = id;
    return c;
}

bool ConversationStore::remove(const QString& id) const {
    return Conversation::isValidId(id) && QFile::remove(pathOf(id));
}

QVector<ConversationSummary> ConversationStore::list() const {
    QVector<ConversationSummary> out;
    const QDir dir(dir_);
    for (const QString& name : dir.entryList({QStringLiteral("*.json")}, QDir::Files)) {
        const QString id = name.chopped(5);
        if (auto c = load(id)) {
            ConversationSummary s;
            s.id = c->id;
            s.title = c->title.isEmpty() ? QStringLiteral("(empty chat)") : c->title;
            s.path = dir.filePath(name);
            s.updated = c->updated;
            s.messages = int(c->messages.size());
            out << s;
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.updated > b.updated; });
    return out;
}

} // namespace moe::ui
