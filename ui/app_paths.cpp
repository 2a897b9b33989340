#include "app_paths.h"

#include "moe/hf_cache.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

namespace moe::ui {
namespace {

bool isModelFolder(const QDir& d) {
    return d.exists(QStringLiteral("config.json")) || d.exists(QStringLiteral("adapter_config.json"));
}

QString envDir(const char* name) {
    const QString v = qEnvironmentVariable(name);
    return v.isEmpty() ? QString() : QDir::cleanPath(v);
}

} // namespace

QString demoModelsDir() {
    QStringList candidates;
    candidates << envDir("MOE_MODELS_DIR");
    // An installed binary: <prefix>/bin/moe-studio → <prefix>/share/moe-studio/models
    // (absent next to a build-tree binary, which then finds the source checkout's).
    if (QCoreApplication::instance())
        candidates << QDir::cleanPath(QCoreApplication::applicationDirPath() + QStringLiteral("/../share/moe-studio/models"));
#ifdef MOE_SOURCE_MODELS_DIR
    candidates << QDir::cleanPath(QStringLiteral(MOE_SOURCE_MODELS_DIR));
#endif
    candidates << QStringLiteral("/usr/share/moe-studio/models");
    for (const QString& c : candidates)
        if (!c.isEmpty() && QFileInfo(c).isDir()) return QFileInfo(c).absoluteFilePath();
    return {};
}

QStringList huggingFaceCacheDirs() {
    QStringList candidates;
    for (const auto& root : moe::huggingFaceCacheRoots()) candidates << QString::fromStdString(root.string());
QStringList found;
    for (const QString& c : candidates) {
        if (c.isEmpty() || !QFileInfo(c).isDir()) continue;
        const QString abs = QFileInfo(c).canonicalFilePath();
        if (!found.contains(abs)) found << abs;
    }
    return found;
}

QStringList huggingFaceSnapshotFolders(const QString& hubDir) {
    QStringList folders;
    const QDir hub(hubDir);
    for (const QString& repo : hub.entryList({QStringLiteral("models--*")}, QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
        QDir snapshots(hub.filePath(repo + QStringLiteral("/snapshots")));
        // The newest snapshot is the one a plain from_pretrained() would use.
        const QFileInfoList revs = snapshots.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Time);
        for (const QFileInfo& rev : revs)
            if (isModelFolder(QDir(rev.absoluteFilePath()))) {
                folders << rev.absoluteFilePath();
                break;
            }
    }
    return folders;
}

QStringList modelFoldersIn(const QString& dir) {
    const QDir d(dir);
    if (isModelFolder(d)) return {QFileInfo(dir).absoluteFilePath()};
    QStringList folders;
    for (const QFileInfo& sub : d.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name))
        if (isModelFolder(QDir(sub.absoluteFilePath()))) folders << sub.absoluteFilePath();
    return folders;
}

QString conversationsDir() {
    const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/conversations");
    QDir().mkpath(dir);
    return dir;
}

} // namespace moe::ui
