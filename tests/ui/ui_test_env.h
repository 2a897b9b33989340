#pragma once
// Isolates a UI test from the user's files: settings, app data (conversations),
// the Hugging Face cache and HOME all point into one temporary folder. Call
// before the first QSettings / QStandardPaths use (initTestCase).
#include <QCoreApplication>
#include <QDir>
#include <QTemporaryDir>

namespace moe::test {

inline void isolateUiTest(const QTemporaryDir& dir) {
    const QString root = dir.path();
    for (const char* sub : {"config", "data", "home", "hub", "runtime"}) QDir(root).mkpath(QLatin1String(sub));
    qputenv("XDG_CONFIG_HOME", (root + "/config").toUtf8());
    qputenv("XDG_DATA_HOME", (root + "/data").toUtf8());
    qputenv("HOME", (root + "/home").toUtf8());
    qputenv("HF_HUB_CACHE", (root + "/hub").toUtf8());
    qunsetenv("HF_HOME");
    qputenv("XDG_RUNTIME_DIR", (root + "/runtime").toUtf8());
    QCoreApplication::setOrganizationName(QStringLiteral("moe-studio-test"));
    QCoreApplication::setApplicationName(QStringLiteral("moe-studio-test"));
}

} // namespace moe::test
