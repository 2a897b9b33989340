#pragma once
// Where the app finds things: the demo models, the Hugging Face cache, and
// where it keeps its own data (conversations).
#include <QString>
#include <QStringList>

namespace moe::ui {

// The demo models: $MOE_MODELS_DIR, else <prefix>/share/moe-studio/models next
// to an installed binary, else the source checkout's ../shared/models (compile
// definition), else /usr/share/moe-studio/models.
// Returns the first that exists, or an empty string.
QString demoModelsDir();

// The Hugging Face hub caches of moe::huggingFaceCacheRoots() that exist.
QStringList huggingFaceCacheDirs();

// Model folders in a hub cache: models--org--name/snapshots/<rev>/ (the newest
// snapshot of each repository that has a config.json or adapter_config.json).
QStringList huggingFaceSnapshotFolders(const QString& hubDir);

// Model folders directly inside `dir` (sub-folders with config.json or
// adapter_config.json), sorted by name; `dir` itself when it is one.
QStringList modelFoldersIn(const QString& dir);

// AppDataLocation/conversations (created on demand).
QString conversationsDir();

} // namespace moe::ui
