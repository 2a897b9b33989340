#include "model_scanner.h"

#include "app_paths.h"

#include "moe/error.h"
#include "moe/gguf_model.h"
#include "moe/model_config.h"
#include "moe/model_stores.h"
#include "moe/safetensors.h"

#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <algorithm>
#include <map>
#include <vector>

namespace moe::ui {
namespace {

// Reads a JSON object file; on failure returns false with a message naming the file.
bool readJsonObject(const QString& path, QJsonObject& out, QString& error) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) {
        error = QStringLiteral("%1: cannot open: %2").arg(path, f.errorString());
        return false;
    }
    QJsonParseError parseError;
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &parseError);
    if (parseError.error != QJsonParseError::NoError) {
        error = QStringLiteral("%1: invalid JSON at offset %2: %3").arg(path).arg(parseError.offset).arg(parseError.errorString());
        return false;
    }
    if (!doc.isObject()) {
        error = QStringLiteral("%1: expected a JSON object").arg(path);
        return false;
    }
    out = doc.object();
    return true;
}

int firstInt(const QJsonObject& o, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        if (o.contains(QLatin1String(k)) && o.value(QLatin1String(k)).isDouble()) return o.value(QLatin1String(k)).toInt();
    return 0;
}

qint64 folderBytes(const QString& dir) {
    qint64 total = 0;
    // QFileInfo::size() follows symlinks: Hugging Face snapshots link into blobs/.
    QDirIterator it(dir, QDir::Files | QDir::NoDotAndDotDot, QDirIterator::Subdirectories);
    while (it.hasNext()) {
        it.next();
        total += it.fileInfo().size();
    }
    return total;
}

QString displayName(const QString& folder, ModelSourceType source) {
    if (source == ModelSourceType::HuggingFaceCache) {
        // .../models--org--name/snapshots/<rev>
        const QString repo = QFileInfo(QFileInfo(QFileInfo(folder).absolutePath()).absolutePath()).fileName();
        if (repo.startsWith(QStringLiteral("models--")))
            return repo.mid(8).replace(QStringLiteral("--"), QStringLiteral("/"));
    }
    return QFileInfo(folder).fileName();
}

// Parameter count and dominant dtype from the safetensors headers.
void readWeights(ModelEntry& e) {
    try {
        auto store = moe::WeightStore::openFolder(e.path.toStdString());
        std::map<std::string, size_t> bytesByDtype;
        for (const auto& name : store->names()) {
            const auto* t = store->find(name);
            e.parameters += t->numel();
            bytesByDtype[moe::dtypeName(t->dtype)] += t->nbytes;
        }
        size_t best = 0;
        for (const auto& [dtype, bytes] : bytesByDtype)
            if (bytes > best) {
                best = bytes;
                e.dtype = QString::fromStdString(dtype);
            }
        if (store->names().empty()) e.error = QStringLiteral("%1: no tensors in the safetensors files").arg(e.path);
    } catch (const std::exception& ex) {
        e.error = QString::fromStdString(ex.what());
    }
}

// A GGUF file through the engine: its metadata as a ModelConfig (which
// refuses architectures and settings the engine cannot run) and its tensors
// under Hugging Face names (which refuses tensors it does not know).
ModelEntry inspectGgufFile(ModelEntry e) {
    e.gguf = true;
    e.sizeOnDisk = QFileInfo(e.path).size();
    try {
        const moe::ModelConfig c = moe::ModelConfig::load(e.path.toStdString());
        e.architecture = QString::fromStdString(c.architecture);
        e.layers = c.numLayers;
        e.hiddenSize = c.hiddenSize;
        e.intermediateSize = c.intermediateSize;
        e.vocabSize = c.vocabSize;
        e.experts = c.numExperts;
        e.topK = c.expertsPerToken;
        const auto store = moe::openModelWeights(e.path.toStdString());
        std::map<std::string, size_t> bytesByDtype;
        size_t total = 0;
        for (const auto& name : store->names()) {
            const auto* t = store->find(name);
            e.parameters += t->numel();
            bytesByDtype[moe::dtypeName(t->dtype)] += t->nbytes;
            total += t->nbytes;
        }
        if (store->names().empty()) throw moe::Error(e.path.toStdString() + ": no tensors in the file");
        // The mix, biggest first: a Q4_K_M file reads "Q4_K + Q6_K" (its F32 norms are too small to count).
        std::vector<std::pair<size_t, std::string>> mix;
        for (const auto& [dtype, bytes] : bytesByDtype)
            if (bytes * 100 >= total) mix.emplace_back(bytes, dtype);
        std::sort(mix.begin(), mix.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        QStringList names;
        for (const auto& m : mix) names << QString::fromStdString(m.second);
        e.dtype = names.join(QStringLiteral(" + "));
        e.kind = e.experts > 0 ? ModelKind::NativeMoe : ModelKind::Base;
    } catch (const std::exception& ex) {
        e.error = QString::fromStdString(ex.what());
        e.kind = ModelKind::Invalid;
    }
    return e;
}

moe::ModelStore engineStore(ModelSourceType type) {
    switch (type) {
    case ModelSourceType::LmStudio: return moe::ModelStore::LmStudio;
    case ModelSourceType::Gpt4All: return moe::ModelStore::Gpt4All;
    case ModelSourceType::Ollama: return moe::ModelStore::Ollama;
    default: return moe::ModelStore::Folder;
    }
}

// An entry of another app's store, with the engine's facts; one the engine
// cannot run keeps them beside the reason.
ModelEntry storeEntry(const moe::StoreModel& m, ModelSourceType source) {
    ModelEntry e;
    e.path = QString::fromStdString(m.path.string());
    e.name = QString::fromStdString(m.name);
    e.source = source;
    if (m.source != m.path) e.storeSource = QString::fromStdString(m.source.string());
    e.gguf = m.format == "gguf";
    e.architecture = QString::fromStdString(m.architecture);
    e.parameters = qint64(m.parameters);
    e.layers = m.layers;
    e.hiddenSize = m.hiddenSize;
    e.intermediateSize = m.intermediateSize;
    e.vocabSize = m.vocabSize;
    e.dtype = QString::fromStdString(m.quant);
    e.sizeOnDisk = qint64(m.sizeOnDisk);
    e.experts = m.experts;
    e.topK = m.expertsPerToken;
    if (m.runnable) e.kind = m.experts > 0 ? ModelKind::NativeMoe : ModelKind::Base;
    else e.error = QString::fromStdString(m.error);
    return e;
}

} // namespace

QString sourceName(ModelSourceType type) {
    switch (type) {
    case ModelSourceType::Demo: return QStringLiteral("demo");
    case ModelSourceType::HuggingFaceCache: return QStringLiteral("Hugging Face cache");
    case ModelSourceType::UserFolder: return QStringLiteral("added folder");
    case ModelSourceType::LmStudio: return QStringLiteral("LM Studio");
    case ModelSourceType::Gpt4All: return QStringLiteral("GPT4All");
    case ModelSourceType::Ollama: return QStringLiteral("Ollama");
    }
    return {};
}

bool isAppStore(ModelSourceType type) {
    return type == ModelSourceType::LmStudio || type == ModelSourceType::Gpt4All || type == ModelSourceType::Ollama;
}

QString kindName(ModelKind kind) {
    switch (kind) {
    case ModelKind::Base: return QStringLiteral("base");
    case ModelKind::Expert: return QStringLiteral("expert");
    case ModelKind::LoraAdapter: return QStringLiteral("LoRA adapter");
    case ModelKind::NativeMoe: return QStringLiteral("native MoE");
    case ModelKind::Invalid: return QStringLiteral("error");
    }
    return {};
}

ModelEntry inspectModelFolder(const QString& folder, ModelSourceType source) {
    ModelEntry e;
    e.path = QFileInfo(folder).absoluteFilePath();
    e.name = displayName(e.path, source);
    e.source = source;
    if (isGgufFile(e.path)) return inspectGgufFile(e);
    const QDir dir(e.path);
    if (!QFileInfo(e.path).isDir()) {
        e.error = QStringLiteral("Model folder not found: %1").arg(e.path);
        return e;
    }
    e.sizeOnDisk = folderBytes(e.path);

    QJsonObject json;
    if (dir.exists(QStringLiteral("adapter_config.json"))) {
        if (!readJsonObject(dir.filePath(QStringLiteral("adapter_config.json")), json, e.error)) return e;
        const int rank = json.value(QStringLiteral("r")).toInt();
        const double alpha = json.value(QStringLiteral("lora_alpha")).toDouble();
        e.architecture = QStringLiteral("LoRA r %1, alpha %2").arg(rank).arg(alpha);
        e.adapterBase = json.value(QStringLiteral("base_model_name_or_path")).toString();
        readWeights(e);
        if (e.error.isEmpty()) e.kind = ModelKind::LoraAdapter;
        return e;
    }
    if (!dir.exists(QStringLiteral("config.json"))) {
        e.error = QStringLiteral("%1: no config.json or adapter_config.json").arg(e.path);
        return e;
    }
    if (!readJsonObject(dir.filePath(QStringLiteral("config.json")), json, e.error)) return e;
    // Multimodal configs nest the language model's fields in text_config.
    QJsonObject text = json;
    if (json.value(QStringLiteral("text_config")).isObject()) text = json.value(QStringLiteral("text_config")).toObject();
    const QJsonArray archs = json.value(QStringLiteral("architectures")).toArray();
    e.architecture = archs.isEmpty() ? json.value(QStringLiteral("model_type")).toString() : archs.first().toString();
    e.layers = firstInt(text, {"num_hidden_layers", "n_layer", "num_layers"});
    e.hiddenSize = firstInt(text, {"hidden_size", "n_embd", "d_model"});
    e.intermediateSize = firstInt(text, {"intermediate_size", "moe_intermediate_size", "ffn_dim"});
    e.vocabSize = firstInt(text, {"vocab_size"});
    e.experts = firstInt(text, {"num_local_experts", "num_experts", "n_routed_experts"});
    e.topK = firstInt(text, {"num_experts_per_tok", "moe_topk", "top_k"});
    readWeights(e);
    if (e.dtype.isEmpty()) e.dtype = text.value(QStringLiteral("torch_dtype")).toString();
    if (!e.error.isEmpty()) return e;
    e.kind = e.experts > 0 ? ModelKind::NativeMoe : ModelKind::Base;
    return e;
}

void classifyModels(QVector<ModelEntry>& entries) {
    // Canonical paths of the bases that adapters name.
    QStringList adapterBases;
    for (ModelEntry& e : entries)
        if (e.kind == ModelKind::LoraAdapter && !e.adapterBase.isEmpty()) {
            const QString resolved = QFileInfo(QDir(e.path).filePath(e.adapterBase)).canonicalFilePath();
            if (!resolved.isEmpty()) adapterBases << resolved;
        }

    std::map<QString, QVector<int>> groups; // shape signature → rows
    for (int i = 0; i < entries.size(); ++i) {
        const ModelEntry& e = entries[i];
        if (e.kind != ModelKind::Base && e.kind != ModelKind::Expert) continue;
        const QString signature = QStringLiteral("%1|%2|%3|%4|%5")
                                      .arg(e.architecture).arg(e.layers).arg(e.hiddenSize)
                                      .arg(e.intermediateSize).arg(e.vocabSize);
        groups[signature].push_back(i);
    }
    for (auto& [signature, rows] : groups) {
        std::sort(rows.begin(), rows.end(), [&](int a, int b) { return entries[a].name < entries[b].name; });
        int base = -1;
        for (int r : rows)
            if (adapterBases.contains(QFileInfo(entries[r].path).canonicalFilePath())) { base = r; break; }
        if (base < 0)
            for (int r : rows)
                if (entries[r].name.contains(QStringLiteral("base"), Qt::CaseInsensitive)) { base = r; break; }
        if (base < 0) base = rows.first();
        for (int r : rows) {
            entries[r].kind = r == base ? ModelKind::Base : ModelKind::Expert;
            entries[r].baseModel = r == base ? QString() : entries[base].path;
        }
    }
    // Adapters: link to their base when it is listed.
    for (ModelEntry& e : entries) {
        if (e.kind != ModelKind::LoraAdapter || e.adapterBase.isEmpty()) continue;
        const QString resolved = QFileInfo(QDir(e.path).filePath(e.adapterBase)).canonicalFilePath();
        for (const ModelEntry& other : entries)
            if (other.kind == ModelKind::Base && !resolved.isEmpty() && QFileInfo(other.path).canonicalFilePath() == resolved)
                e.baseModel = other.path;
    }
}

QVector<ModelEntry> scanModelSources(const QVector<ModelSource>& sources, const std::function<bool()>& cancelled) {
    QVector<ModelEntry> entries;
    QStringList seen;
    for (const ModelSource& source : sources) {
        if (cancelled && cancelled()) break;
        if (isAppStore(source.type)) {
            // Two Ollama names can share one blob: each is listed, as Ollama lists them.
            const auto models = moe::scanModelStore({engineStore(source.type), source.path.toStdString()}, {},
                                                    [&](const moe::StoreModel&) { return !(cancelled && cancelled()); });
            for (const moe::StoreModel& m : models) entries << storeEntry(m, source.type);
            continue;
        }
        QStringList folders;
        if (!QFileInfo(source.path).isDir() && !isGgufFile(source.path)) {
            ModelEntry missing;
            missing.path = source.path;
            missing.name = QFileInfo(source.path).fileName();
            missing.source = source.type;
            missing.error = QStringLiteral("Model folder not found: %1").arg(source.path);
            entries << missing;
            continue;
        }
        if (source.type == ModelSourceType::HuggingFaceCache) {
            // The GGUF files of the hub's repositories (a *-GGUF repository has
            // no config.json), each a runnable entry, as the engine lists them:
            // split files as one model, unfinished downloads with the reason.
            moe::StoreScanLimits limits;
            limits.modelFolders = false;
            const auto models = moe::scanModelStore({moe::ModelStore::HuggingFaceCache, source.path.toStdString()}, limits,
                                                    [&](const moe::StoreModel&) { return !(cancelled && cancelled()); });
            for (const moe::StoreModel& m : models)
                if (m.format == "gguf") entries << storeEntry(m, source.type);
        }
        folders = source.type == ModelSourceType::HuggingFaceCache ? huggingFaceSnapshotFolders(source.path)
                                                                    : modelFoldersIn(source.path);
        if (folders.isEmpty() && source.type == ModelSourceType::UserFolder) {
            ModelEntry empty;
            empty.path = QFileInfo(source.path).absoluteFilePath();
            empty.name = QFileInfo(source.path).fileName();
            empty.source = source.type;
            empty.error = QStringLiteral("%1: no model here (no config.json, adapter_config.json or .gguf file in it or its sub-folders)")
                              .arg(empty.path);
            entries << empty;
        }
        for (const QString& folder : folders) {
            if (cancelled && cancelled()) break;
            const QString canonical = QFileInfo(folder).canonicalFilePath();
            if (seen.contains(canonical)) continue;
            seen << canonical;
            entries << inspectModelFolder(folder, source.type);
        }
    }
    classifyModels(entries);
    return entries;
}

QString humanBytes(qint64 bytes) {
    const double b = double(bytes);
    if (b >= 1024.0 * 1024 * 1024) return QStringLiteral("%1 GiB").arg(b / (1024.0 * 1024 * 1024), 0, 'f', 2);
    if (b >= 1024.0 * 1024) return QStringLiteral("%1 MiB").arg(b / (1024.0 * 1024), 0, 'f', 1);
    if (b >= 1024.0) return QStringLiteral("%1 KiB").arg(b / 1024.0, 0, 'f', 1);
    return QStringLiteral("%1 B").arg(bytes);
}

QString humanCount(qint64 count) {
    const double c = double(count);
    if (c >= 1e9) return QStringLiteral("%1 B").arg(c / 1e9, 0, 'f', 2);
    if (c >= 1e6) return QStringLiteral("%1 M").arg(c / 1e6, 0, 'f', 1);
    if (c >= 1e3) return QStringLiteral("%1 K").arg(c / 1e3, 0, 'f', 1);
    return QString::number(count);
}

} // namespace moe::ui
