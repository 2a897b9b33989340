#include "app_paths.h"

#include "moe/hf_cache.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

#include <algorithm>

namespace moe::ui {
namespace {

bool isModelFolder(const QDir& d) {
    return d.exists(QStringLiteral("config.json")) || d.exists(QStringLiteral("adapter_config.json"));
}

// The .gguf files directly in `d`, by name.
QStringList ggufFilesIn(const QDir& d) {
    QStringList files;
    for (const QFileInfo& f : d.entryInfoList({QStringLiteral("*.gguf"), QStringLiteral("*.GGUF")}, QDir::Files, QDir::Name))
        files << f.absoluteFilePath();
    return files;
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

bool isGgufFile(const QString& path) {
    const QFileInfo f(path);
    return f.isFile() && f.suffix().compare(QStringLiteral("gguf"), Qt::CaseInsensitive) == 0;
}

QStringList modelFoldersIn(const QString& dir) {
    if (isGgufFile(dir)) return {QFileInfo(dir).absoluteFilePath()};
    const QDir d(dir);
    if (isModelFolder(d)) return {QFileInfo(dir).absoluteFilePath()};
    QStringList models = ggufFilesIn(d);
    for (const QFileInfo& sub : d.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
        const QDir subDir(sub.absoluteFilePath());
        if (isModelFolder(subDir)) models << sub.absoluteFilePath();
        else models << ggufFilesIn(subDir); // e.g. a repository of quantized GGUF files
    }
    std::sort(models.begin(), models.end());
    return models;
}

QString conversationsDir() {
    const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/conversations");
    QDir().mkpath(dir);
    return dir;
}

} // namespace moe::ui
