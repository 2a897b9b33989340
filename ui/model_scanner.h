#pragma once
// Facts about local model folders, read from config.json / adapter_config.json
// and the safetensors headers (moe::WeightStore maps the files; no weight is
// read or uploaded), and about GGUF files, read through the engine
// (moe::ModelConfig::load and moe::openModelWeights on the file). Plain
// functions, safe to run on a worker thread.
#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

#include <functional>

namespace moe::ui {

enum class ModelKind {
    Base,        // a full checkpoint with no other listed model of its shape, or the base of such a group
    Expert,      // a full fine-tuned checkpoint of the same architecture and shape as a listed base
    LoraAdapter, // adapter_config.json + adapter_model.safetensors
    NativeMoe,   // config.json with num_local_experts / num_experts
    Invalid,     // the folder could not be read: see ModelEntry::error
};
QString kindName(ModelKind kind);

// Demo, the hub cache and added folders are scanned here; the other apps'
// stores through the engine (moe/model_stores.h).
enum class ModelSourceType { Demo, HuggingFaceCache, UserFolder, LmStudio, Gpt4All, Ollama };
QString sourceName(ModelSourceType type); // "LM Studio", "Ollama", "added folder", ...
bool isAppStore(ModelSourceType type);    // LM Studio, GPT4All or Ollama

struct ModelSource {
    QString path;
    ModelSourceType type = ModelSourceType::UserFolder;
};

struct ModelEntry {
    QString path;          // absolute folder, or the absolute .gguf file
    QString name;          // folder or file name, org/name for the Hugging Face cache, the app's name in its store
    QString storeSource;   // an Ollama model: its manifest (path is the GGUF blob)
    bool gguf = false;     // a GGUF file rather than a folder
    ModelSourceType source = ModelSourceType::UserFolder;
    ModelKind kind = ModelKind::Invalid;
    QString architecture;  // config.json architectures[0]; "LoRA r 8, alpha 16" for adapters
    qint64 parameters = 0; // sum of tensor elements in the safetensors headers
    int layers = 0;
    int hiddenSize = 0;
    int intermediateSize = 0;
    int vocabSize = 0;
    QString dtype;         // the dtype holding most tensor bytes; GGUF: the types holding ≥ 1 % of them, "Q4_K + Q6_K";
                           // another app's store: the file type, "Q4_K_M"
    qint64 sizeOnDisk = 0; // bytes of the folder's files (symlinks followed), or of the GGUF file
    int experts = 0;       // native MoE: experts per layer
    int topK = 0;          // native MoE: experts per token
    QString baseModel;     // expert / LoRA: the listed base it belongs to (absolute path), if known
    QString adapterBase;   // LoRA: base_model_name_or_path as written
    QString error;         // non-empty for Invalid entries: what is wrong, naming the file

    bool isValid() const { return kind != ModelKind::Invalid; }
    // Whether the chat can load it as a whole model (dense full checkpoints for now).
    bool isChatLoadable() const { return kind == ModelKind::Base || kind == ModelKind::Expert; }
};

// Reads one folder or .gguf file (a GGUF the engine cannot run, by its
// architecture or its tensors, is Invalid with the engine's message). Never
// throws: problems end up in `error`.
ModelEntry inspectModelFolder(const QString& folder, ModelSourceType source = ModelSourceType::UserFolder);

// Expands the sources into model folders and GGUF files (a demo / user folder:
// the folder itself or its model sub-folders and .gguf files, see
// modelFoldersIn; a hub cache: its newest snapshots; an app's store: its
// models as moe::scanModelStore lists them), inspects
// each and classifies base / expert. A source that does not exist or holds no
// model becomes an Invalid entry with the reason. `cancelled`, polled between
// models, ends the scan early (the result is then partial).
QVector<ModelEntry> scanModelSources(const QVector<ModelSource>& sources, const std::function<bool()>& cancelled = {});

// Sets Base / Expert on the valid full checkpoints and links experts and
// adapters to their base: checkpoints of one architecture and shape form a
// group; its base is the one an adapter names as base_model_name_or_path, else
// the one whose folder name contains "base", else the first by name.
void classifyModels(QVector<ModelEntry>& entries);

QString humanBytes(qint64 bytes);
QString humanCount(qint64 count); // 4,999,424 → "5.0 M"

} // namespace moe::ui

Q_DECLARE_METATYPE(moe::ui::ModelEntry)
