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

// Models directly inside `dir`, sorted by name: sub-folders with config.json
// or adapter_config.json, and .gguf files in `dir` and in its other
// sub-folders (one level). `dir` itself when it is a model folder or a .gguf file.
QStringList modelFoldersIn(const QString& dir);

// Whether `path` is a GGUF model file (a regular file named *.gguf).
bool isGgufFile(const QString& path);

// AppDataLocation/conversations (created on demand).
QString conversationsDir();

} // namespace moe::ui
