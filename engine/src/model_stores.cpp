// The model stores of other apps (moe/model_stores.h): where each keeps its
// files, the names it shows, and every file's facts from its header.
#include "moe/model_stores.h"

#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/gguf.h"
#include "moe/gguf_model.h"
#include "moe/hf_cache.h"
#include "moe/model_config.h"
#include "moe/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>

namespace moe {
namespace fs = std::filesystem;
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : "";
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    return s;
}

bool hasGgufExtension(const fs::path& p) { return lower(p.extension().string()) == ".gguf"; }

// A GGUF file still being downloaded: NAME.gguf.part and the suffixes
// downloaders (LM Studio, browsers, curl -C) write until the file is whole.
bool isPartialGguf(const fs::path& p) {
    static const char* const kSuffixes[] = {".part", ".partial", ".download", ".crdownload", ".incomplete", ".tmp"};
    const std::string name = lower(p.filename().string());
    for (const char* suffix : kSuffixes) {
        const std::string tail = std::string(".gguf") + suffix;
        if (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0) return true;
    }
    return false;
}

// The type of a file, following links; a broken link or an unreadable
// folder comes back as not_found / none with `why` set.
fs::file_status statusOf(const fs::path& p, std::string& why) {
    std::error_code ec;
    const fs::file_status s = fs::status(p, ec);
    if (ec) why = p.string() + ": cannot read: " + ec.message();
    return s;
}

// An entry for a path that is not a readable regular file, or empty when it is one.
std::string notARegularFile(const fs::path& p) {
    std::string why;
    const fs::file_status s = statusOf(p, why);
    if (!why.empty()) return why;
    if (s.type() == fs::file_type::not_found) return p.string() + ": cannot read: no such file (a broken link?)";
    if (fs::is_directory(s)) return p.string() + ": a folder, not a GGUF file";
    if (!fs::is_regular_file(s)) return p.string() + ": not a regular file";
    return {};
}

// llama.cpp splits big models into NAME-00001-of-00003.gguf parts (gguf-split).
struct SplitName {
    std::string stem;
    int part = 0, count = 0;
};
std::optional<SplitName> splitName(const fs::path& p) {
    static const std::regex kSplit(R"((.*)-(\d{5})-of-(\d{5})\.gguf)", std::regex::icase);
    std::smatch m;
    const std::string name = p.filename().string();
    if (!std::regex_match(name, m, kSplit)) return std::nullopt;
    return SplitName{m[1].str(), std::stoi(m[2].str()), std::stoi(m[3].str())};
}

std::string partFileName(const SplitName& s, int part, const std::string& ext) {
    char digits[32];
    std::snprintf(digits, sizeof digits, "-%05d-of-%05d", part, s.count);
    return s.stem + digits + ext;
}

void setSorted(std::vector<StoreModel>& models) {
    std::stable_sort(models.begin(), models.end(), [](const StoreModel& a, const StoreModel& b) { return a.name < b.name; });
}

// Collects entries for one root, within the limits, telling the caller of each.
class Collector {
public:
    Collector(const StoreScanLimits& limits, const StoreModelCallback& onModel) : limits_(limits), onModel_(onModel) {}

    bool full() const { return stopped_ || models_.size() >= limits_.maxModels; }
    // Counts a directory entry visited; false once the bound is reached.
    bool visit() { return ++visited_ <= limits_.maxDirectoryEntries && !stopped_; }
    bool visitedTooMany() const { return visited_ > limits_.maxDirectoryEntries; }

    void add(StoreModel m) {
        if (full()) return;
        models_.push_back(std::move(m));
        if (onModel_ && !onModel_(models_.back())) stopped_ = true;
    }

    // Says so, as one more entry, when a bound cut the scan short.
    std::vector<StoreModel> finish(const StoreRoot& root) {
        if (!stopped_ && (models_.size() >= limits_.maxModels || visitedTooMany())) {
            StoreModel m;
            m.store = root.store;
            m.name = "(more not listed)";
            m.path = m.source = root.path;
            m.error = root.path.string() + ": the scan stopped after " +
                      (visitedTooMany() ? std::to_string(limits_.maxDirectoryEntries) + " folder entries"
                                        : std::to_string(limits_.maxModels) + " models");
            models_.push_back(std::move(m));
        }
        return std::move(models_);
    }

    const StoreScanLimits& limits() const { return limits_; }

private:
    const StoreScanLimits& limits_;
    const StoreModelCallback& onModel_;
    std::vector<StoreModel> models_;
    size_t visited_ = 0;
    bool stopped_ = false;
};

// The *.gguf paths under `dir`, at most `maxDepth` folders down, without
// following links to folders (a loop cannot trap the walk). Folders named
// *.gguf are returned too (as entries with an error), not entered.
std::vector<fs::path> ggufPathsUnder(const fs::path& dir, int maxDepth, Collector& c) {
    std::vector<fs::path> found;
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (!c.visit()) break;
        const fs::directory_entry& e = *it;
        std::error_code tec;
        const bool isDir = e.is_directory(tec) && !e.is_symlink(tec);
        if (hasGgufExtension(e.path()) || isPartialGguf(e.path())) {
            found.push_back(e.path());
            if (isDir) it.disable_recursion_pending();
        } else if (isDir && it.depth() >= maxDepth) {
            it.disable_recursion_pending();
        }
    }
    std::sort(found.begin(), found.end());
    return found;
}

uint64_t folderBytes(const fs::path& dir, size_t maxEntries) {
    uint64_t total = 0;
    size_t n = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end && n++ < maxEntries; it.increment(ec)) {
        std::error_code fec;
        if (it->is_regular_file(fec)) total += it->file_size(fec); // follows the hub's links into blobs/
    }
    return total;
}

// The type holding most tensor bytes, in ggml's upper-case names ("Q8_0").
std::string dominantType(const GgufFile& g) {
    std::map<uint32_t, uint64_t> bytes;
    for (const GgufTensor& t : g.tensors()) bytes[t.ggmlType] += t.nbytes;
    uint32_t best = 0;
    uint64_t most = 0;
    for (const auto& [type, n] : bytes)
        if (n > most) most = n, best = type;
    return most ? upper(ggmlTypeName(best)) : std::string();
}

int intOr0(const GgufFile& g, const std::string& key) {
    try {
        const auto v = g.getInteger(key);
        return v && *v > 0 && *v <= INT32_MAX ? int(*v) : 0;
    } catch (const Error&) {
        return 0;
    }
}

// The single-file facts of an opened GGUF: header fields (whatever the
// architecture), then whether the engine runs it.
void describeGguf(const std::shared_ptr<const GgufFile>& g, StoreModel& m) {
    try {
        m.architecture = g->getString("general.architecture").value_or("");
    } catch (const Error& e) {
        m.error = e.what();
    }
    for (const GgufTensor& t : g->tensors()) m.parameters += uint64_t(t.numel());
    int64_t fileType = -1;
    try {
        fileType = g->getInteger("general.file_type").value_or(-1);
    } catch (const Error&) {
    }
    m.quant = fileType >= 0 ? ggufFileTypeName(fileType) : std::string();
    if (m.quant.empty()) m.quant = dominantType(*g);
    const std::string a = m.architecture;
    m.layers = intOr0(*g, a + ".block_count");
    m.hiddenSize = intOr0(*g, a + ".embedding_length");
    m.intermediateSize = intOr0(*g, a + ".feed_forward_length");
    m.contextLength = intOr0(*g, a + ".context_length");
    m.experts = intOr0(*g, a + ".expert_count");
    m.expertsPerToken = intOr0(*g, a + ".expert_used_count");
    if (const GgufValue* tokens = g->find("tokenizer.ggml.tokens")) m.vocabSize = int(tokens->size());
    if (!m.error.empty()) return;
    try {
        for (const GgufTensor& t : g->tensors())
            if (!t.dtype && !t.quant)
                throw Error(g->path().string() + ": tensor " + t.name + ": tensor type " + ggmlTypeName(t.ggmlType) +
                            " is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k are)");
        const ModelConfig config = ggufModelConfig(*g);
        (void)ggufWeightStore(g, config); // refuses tensors of unread types or unknown roles
        m.vocabSize = config.vocabSize;
        m.intermediateSize = config.isMoe() && config.moeIntermediateSize ? config.moeIntermediateSize : config.intermediateSize;
        m.runnable = true;
    } catch (const Error& e) {
        m.error = e.what();
    }
}

StoreModel inspectSplitGguf(const fs::path& first, const SplitName& split, const StoreScanLimits& limits) {
    StoreModel m = inspectGgufModel(first, limits); // its own header: architecture, file type
    m.runnable = false;
    std::string missing;
    for (int part = 2; part <= split.count; ++part) {
        const fs::path p = first.parent_path() / partFileName(split, part, first.extension().string());
        if (const std::string why = notARegularFile(p); !why.empty()) {
            if (missing.empty()) missing = why;
            continue;
        }
        try {
            const auto g = GgufFile::open(p, {true, limits.maxHeaderBytes});
            for (const GgufTensor& t : g->tensors()) m.parameters += uint64_t(t.numel());
            std::error_code ec;
            m.sizeOnDisk += fs::file_size(p, ec);
        } catch (const std::exception& e) {
            if (missing.empty()) missing = e.what();
        }
    }
    const std::string note = first.string() + ": a GGUF split in " + std::to_string(split.count) +
                             " parts, listed as one model; MoE Studio cannot run split GGUFs yet (it reads "
                             "one-file GGUFs): join the parts with llama-gguf-split --merge " +
                             first.filename().string() + " " + split.stem + ".gguf";
    m.error = missing.empty() ? note : note + "; " + missing;
    return m;
}

// A GGUF file found in a folder store (LM Studio, GPT4All, a folder, the hub
// cache): its entry, or none for the second and later parts of a split model.
std::optional<StoreModel> ggufEntry(const fs::path& file, ModelStore store, std::string name, const StoreScanLimits& limits) {
    StoreModel m;
    const auto split = splitName(file);
    const fs::path firstPart = split ? file.parent_path() / partFileName(*split, 1, file.extension().string()) : fs::path();
    if (split && split->part > 1 && split->part <= split->count && notARegularFile(firstPart).empty())
        return std::nullopt; // listed with part 1
    if (split && split->part == 1 && split->count > 1 && notARegularFile(file).empty()) m = inspectSplitGguf(file, *split, limits);
    else m = inspectGgufModel(file, limits);
    if (split && split->part > 1 && split->part <= split->count) {
        m.runnable = false;
        m.error = file.string() + ": part " + std::to_string(split->part) + " of a GGUF split in " +
                  std::to_string(split->count) + " parts, whose first part " + firstPart.filename().string() +
                  " is missing";
    }
    if (isPartialGguf(file)) {
        m.runnable = false;
        m.error = file.string() + ": an unfinished download (the downloader renames it to a .gguf file when it is complete)" +
                  (m.error.empty() ? "" : "; " + m.error);
    }
    m.store = store;
    m.name = std::move(name);
    m.source = file;
    // GPT4All downloads into incomplete-<name> and renames the file when done.
    if (store == ModelStore::Gpt4All && file.filename().string().rfind("incomplete-", 0) == 0) {
        m.runnable = false;
        m.error = file.string() + ": an unfinished GPT4All download" + (m.error.empty() ? "" : "; " + m.error);
    }
    return m;
}

void scanGgufFolder(const StoreRoot& root, int maxDepth, Collector& c) {
    for (const fs::path& file : ggufPathsUnder(root.path, maxDepth, c)) {
        if (c.full()) break;
        std::string name = root.store == ModelStore::Gpt4All ? file.filename().string()
                                                             : file.lexically_relative(root.path).generic_string();
        if (auto m = ggufEntry(file, root.store, std::move(name), c.limits())) c.add(std::move(*m));
    }
}

bool isModelFolder(const fs::path& dir) {
    std::error_code ec;
    return fs::is_regular_file(dir / "config.json", ec);
}

// The hub cache: each models--org--name repository's current snapshot (refs/main),
// a config.json folder and/or the GGUF files in it.
void scanHuggingFaceCache(const StoreRoot& root, Collector& c) {
    std::vector<fs::path> repos;
    std::error_code ec;
    for (fs::directory_iterator it(root.path, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end && c.visit(); it.increment(ec)) {
        const std::string n = it->path().filename().string();
        std::error_code dec;
        if (n.rfind("models--", 0) == 0 && it->is_directory(dec)) repos.push_back(it->path());
    }
    std::sort(repos.begin(), repos.end());
    for (const fs::path& repo : repos) {
        if (c.full()) break;
        std::string id = repo.filename().string().substr(8);
        const size_t sep = id.find("--");
        if (sep == std::string::npos) continue;
        id = id.substr(0, sep) + "/" + id.substr(sep + 2);
        std::string looked;
        const fs::path snapshot = findInHuggingFaceCache(root.path, id, looked);
        if (snapshot.empty()) continue; // a repository of another kind, or a download in progress
        if (c.limits().modelFolders && isModelFolder(snapshot)) {
            StoreModel m = inspectModelFolder(snapshot);
            m.store = ModelStore::HuggingFaceCache;
            m.name = id;
            c.add(std::move(m));
        }
        for (const fs::path& file : ggufPathsUnder(snapshot, 2, c)) {
            if (c.full()) break;
            if (auto m = ggufEntry(file, ModelStore::HuggingFaceCache, id + "/" + file.lexically_relative(snapshot).generic_string(),
                                   c.limits()))
                c.add(std::move(*m));
        }
    }
}

// A folder the user names, as the app's added folders: the folder itself
// when it is a model (or a .gguf file), else its model sub-folders and the
// .gguf files in it and one level down.
void scanUserFolder(const StoreRoot& root, Collector& c) {
    auto folderEntry = [&](const fs::path& dir) {
        StoreModel m = inspectModelFolder(dir);
        m.store = ModelStore::Folder;
        m.name = dir.filename().string();
        c.add(std::move(m));
    };
    std::error_code ec;
    if (hasGgufExtension(root.path) || fs::is_regular_file(root.path, ec)) {
        if (auto m = ggufEntry(root.path, ModelStore::Folder, root.path.filename().string(), c.limits())) c.add(std::move(*m));
        return;
    }
    if (!fs::is_directory(root.path, ec)) {
        StoreModel m;
        m.store = ModelStore::Folder;
        m.name = root.path.filename().string();
        m.path = m.source = root.path;
        m.error = root.path.string() + ": no such folder";
        c.add(std::move(m));
        return;
    }
    if (isModelFolder(root.path)) return folderEntry(root.path);
    std::vector<fs::path> subdirs;
    for (fs::directory_iterator it(root.path, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end && c.visit(); it.increment(ec)) {
        std::error_code dec;
        if (it->is_directory(dec) && !hasGgufExtension(it->path())) subdirs.push_back(it->path());
    }
    std::sort(subdirs.begin(), subdirs.end());
    std::vector<std::pair<std::string, fs::path>> models; // by name
    for (const fs::path& sub : subdirs)
        if (isModelFolder(sub)) models.emplace_back(sub.filename().string(), sub);
    for (const fs::path& file : ggufPathsUnder(root.path, 1, c)) {
        const fs::path rel = file.lexically_relative(root.path);
        if (std::distance(rel.begin(), rel.end()) == 2 && isModelFolder(file.parent_path())) continue; // inside a model folder
        models.emplace_back("", file);
    }
    std::sort(models.begin(), models.end(), [](const auto& a, const auto& b) { return a.second < b.second; }); // as the app lists them
    for (const auto& [name, path] : models) {
        if (c.full()) break;
        if (!name.empty()) folderEntry(path);
        else if (auto m = ggufEntry(path, ModelStore::Folder, path.filename().string(), c.limits())) c.add(std::move(*m));
    }
}

bool isSha256Hex(const std::string& s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
}

// One Ollama manifest: its model layer's blob, inspected.
StoreModel ollamaEntry(const fs::path& root, const fs::path& manifest, const StoreScanLimits& limits) {
    StoreModel m;
    m.store = ModelStore::Ollama;
    m.name = ollamaModelName(manifest.lexically_relative(root / "manifests"));
    m.source = m.path = manifest;
    m.format = "gguf";
    nlohmann::json j;
    if (m.error = notARegularFile(manifest); !m.error.empty()) return m; // a FIFO would block the read
    try {
        j = nlohmann::json::parse(readTextFile(manifest, limits.maxManifestBytes));
    } catch (const Error& e) {
        m.error = e.what();
        return m;
    } catch (const std::exception& e) {
        m.error = manifest.string() + ": not a JSON manifest: " + e.what();
        return m;
    }
    const auto fail = [&](const std::string& what) {
        m.error = manifest.string() + ": " + what;
        return m;
    };
    if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array()) return fail("no layers array");
    const nlohmann::json* model = nullptr;
    for (const auto& layer : j["layers"])
        if (layer.is_object() && layer.value("mediaType", nlohmann::json()).is_string() &&
            layer["mediaType"].get<std::string>() == "application/vnd.ollama.image.model")
            model = &layer;
    if (!model) return fail("no layer of media type application/vnd.ollama.image.model");
    if (!model->contains("digest") || !(*model)["digest"].is_string()) return fail("layers: the model layer has no digest");
    const std::string digest = (*model)["digest"].get<std::string>();
    // Only sha256:<64 hex digits>: a digest cannot name a path outside blobs/.
    if (digest.rfind("sha256:", 0) != 0 || !isSha256Hex(digest.substr(7)))
        return fail("layers: digest \"" + digest.substr(0, 80) + "\" is not sha256:<64 hex digits>");
    const fs::path blob = root / "blobs" / ("sha256-" + digest.substr(7));
    m.path = blob;
    if (const std::string why = notARegularFile(blob); !why.empty()) {
        std::error_code ec;
        if (!fs::exists(fs::symlink_status(blob, ec)))
            return fail("the model layer " + digest + " names the blob " + blob.string() +
                        ", which is missing (removed, or a pull that did not finish)");
        return fail("the model layer " + digest + " names " + why);
    }
    StoreModel g = inspectGgufModel(blob, limits);
    g.store = m.store;
    g.name = m.name;
    g.source = manifest;
    // The manifest's size for the layer: a blob of another size is not the one it names.
    if (model->contains("size") && (*model)["size"].is_number_unsigned() && (*model)["size"].get<uint64_t>() != g.sizeOnDisk) {
        g.runnable = false;
        const std::string note = blob.string() + ": " + std::to_string(g.sizeOnDisk) + " bytes, but the manifest " +
                                 manifest.string() + " says " + std::to_string((*model)["size"].get<uint64_t>());
        g.error = g.error.empty() ? note : note + "; " + g.error;
    }
    return g;
}

void scanOllama(const StoreRoot& root, Collector& c) {
    const fs::path manifests = root.path / "manifests";
    std::vector<fs::path> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(manifests, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (!c.visit()) break;
        std::error_code tec;
        // manifests/<registry>/<namespace>/<model>/<tag>: the tags are files three folders down.
        if (it.depth() == 3) {
            it.disable_recursion_pending();
            if (!it->is_directory(tec)) files.push_back(it->path());
        }
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
        if (c.full()) break;
        c.add(ollamaEntry(root.path, f, c.limits()));
    }
}

} // namespace

const char* storeId(ModelStore store) {
    switch (store) {
    case ModelStore::HuggingFaceCache: return "huggingface";
    case ModelStore::LmStudio: return "lmstudio";
    case ModelStore::Gpt4All: return "gpt4all";
    case ModelStore::Ollama: return "ollama";
    case ModelStore::Folder: return "folder";
    }
    return "?";
}

const char* storeLabel(ModelStore store) {
    switch (store) {
    case ModelStore::HuggingFaceCache: return "Hugging Face cache";
    case ModelStore::LmStudio: return "LM Studio";
    case ModelStore::Gpt4All: return "GPT4All";
    case ModelStore::Ollama: return "Ollama";
    case ModelStore::Folder: return "folder";
    }
    return "?";
}

std::vector<StoreRoot> modelStoreRoots() {
    std::vector<StoreRoot> roots;
    auto add = [&](ModelStore store, const fs::path& p) {
        std::error_code ec;
        if (p.empty() || !fs::is_directory(p, ec)) return;
        const fs::path canonical = fs::weakly_canonical(p, ec);
        for (const StoreRoot& r : roots)
            if (fs::weakly_canonical(r.path, ec) == canonical) return;
        roots.push_back({store, p});
    };
    for (const fs::path& hub : huggingFaceCacheRoots()) add(ModelStore::HuggingFaceCache, hub);
    const std::string home = env("HOME");
    if (!home.empty()) {
        add(ModelStore::LmStudio, fs::path(home) / ".lmstudio" / "models");
        add(ModelStore::LmStudio, fs::path(home) / ".cache" / "lm-studio" / "models");
    }
    const std::string data = env("XDG_DATA_HOME");
    if (!data.empty()) add(ModelStore::Gpt4All, fs::path(data) / "nomic.ai" / "GPT4All");
    if (!home.empty()) add(ModelStore::Gpt4All, fs::path(home) / ".local" / "share" / "nomic.ai" / "GPT4All");
    if (const std::string o = env("OLLAMA_MODELS"); !o.empty()) add(ModelStore::Ollama, o);
    if (!home.empty()) add(ModelStore::Ollama, fs::path(home) / ".ollama" / "models");
    return roots;
}

std::string ggufFileTypeName(int64_t fileType) {
    // llama.h's llama_ftype, as the quantization is named in file names and by LM Studio and Ollama.
    static const std::map<int64_t, const char*> kNames = {
        {0, "F32"},     {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},     {8, "Q5_0"},
        {9, "Q5_1"},    {10, "Q2_K"},    {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"},  {14, "Q4_K_S"},
        {15, "Q4_K_M"}, {16, "Q5_K_S"},  {17, "Q5_K_M"}, {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"},
        {21, "Q2_K_S"}, {22, "IQ3_XS"},  {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"},  {26, "IQ3_S"},
        {27, "IQ3_M"},  {28, "IQ2_S"},   {29, "IQ2_M"},  {30, "IQ4_XS"}, {31, "IQ1_M"},   {32, "BF16"},
        {36, "TQ1_0"},  {37, "TQ2_0"},   {38, "MXFP4_MOE"}, {39, "NVFP4"}, {40, "Q1_0"},  {41, "Q2_0"},
    };
    const auto it = kNames.find(fileType & ~int64_t(1024)); // LLAMA_FTYPE_GUESSED
    return it == kNames.end() ? std::string() : it->second;
}

std::string ollamaModelName(const fs::path& rel) {
    std::vector<std::string> parts;
    for (const auto& p : rel) parts.push_back(p.string());
    if (parts.size() != 4) return rel.generic_string();
    const std::string& registry = parts[0];
    const std::string& ns = parts[1];
    const std::string modelTag = parts[2] + ":" + parts[3];
    if (registry == "registry.ollama.ai") return ns == "library" ? modelTag : ns + "/" + modelTag;
    return registry + "/" + ns + "/" + modelTag;
}

StoreModel inspectGgufModel(const fs::path& file, const StoreScanLimits& limits) {
    StoreModel m;
    m.path = m.source = file;
    m.name = file.filename().string();
    m.format = "gguf";
    if (m.error = notARegularFile(file); !m.error.empty()) return m;
    std::error_code ec;
    m.sizeOnDisk = fs::file_size(file, ec);
    try {
        describeGguf(GgufFile::open(file, {true, limits.maxHeaderBytes}), m);
    } catch (const std::exception& e) { // moe::Error, or bad_alloc where memory is short
        m.error = e.what();
        m.runnable = false;
    }
    return m;
}

StoreModel inspectModelFolder(const fs::path& dir) {
    StoreModel m;
    m.path = m.source = dir;
    m.name = dir.filename().string();
    m.format = "safetensors";
    m.sizeOnDisk = folderBytes(dir, 10000);
    try {
        // The facts first, whether or not the engine runs the architecture.
        const auto store = WeightStore::openFolder(dir);
        std::map<std::string, uint64_t> bytesByDtype;
        for (const auto& name : store->names()) {
            const TensorView* t = store->find(name);
            m.parameters += uint64_t(t->numel());
            bytesByDtype[dtypeName(t->dtype)] += t->nbytes;
        }
        uint64_t most = 0;
        for (const auto& [dtype, bytes] : bytesByDtype)
            if (bytes > most) most = bytes, m.quant = dtype;
        const ModelConfig c = ModelConfig::load(dir);
        m.architecture = c.modelType;
        m.layers = c.numLayers;
        m.hiddenSize = c.hiddenSize;
        m.intermediateSize = c.isMoe() && c.moeIntermediateSize ? c.moeIntermediateSize : c.intermediateSize;
        m.vocabSize = c.vocabSize;
        m.contextLength = c.maxPositions;
        m.experts = c.numExperts;
        m.expertsPerToken = c.expertsPerToken;
        if (store->names().empty()) throw Error(dir.string() + ": no tensors in the safetensors files");
        m.runnable = true;
    } catch (const std::exception& e) {
        m.error = e.what();
    }
    if (m.architecture.empty()) {
        // Unsupported architectures still show their model_type.
        try {
            const auto j = nlohmann::json::parse(readTextFile(dir / "config.json", 1 << 20));
            if (j.is_object() && j.contains("model_type") && j["model_type"].is_string())
                m.architecture = j["model_type"].get<std::string>();
        } catch (const std::exception&) {
        }
    }
    return m;
}

std::vector<StoreModel> scanModelStore(const StoreRoot& root, const StoreScanLimits& limits, const StoreModelCallback& onModel) {
    Collector c(limits, onModel);
    try {
        switch (root.store) {
        case ModelStore::HuggingFaceCache: scanHuggingFaceCache(root, c); break;
        case ModelStore::LmStudio: scanGgufFolder(root, std::min(limits.maxDepth, 3), c); break; // <publisher>/<repo>/*.gguf
        case ModelStore::Gpt4All: scanGgufFolder(root, 0, c); break;                              // *.gguf in the folder
        case ModelStore::Ollama: scanOllama(root, c); break;
        case ModelStore::Folder: scanUserFolder(root, c); break;
        }
    } catch (const std::exception& e) { // a file system error the walk did not expect: the entries so far, and why it stopped
        StoreModel m;
        m.store = root.store;
        m.name = "(scan stopped)";
        m.path = m.source = root.path;
        m.error = root.path.string() + ": the scan stopped: " + e.what();
        c.add(std::move(m));
    }
    std::vector<StoreModel> models = c.finish(root);
    if (root.store != ModelStore::Folder) setSorted(models);
    return models;
}

std::vector<StoreModel> scanModelStores(const std::vector<fs::path>& extraFolders, const StoreScanLimits& limits,
                                        const StoreModelCallback& onModel) {
    std::vector<StoreRoot> roots = modelStoreRoots();
    for (const fs::path& f : extraFolders) roots.push_back({ModelStore::Folder, f});
    std::vector<StoreModel> all;
    bool stopped = false;
    const StoreModelCallback relay = [&](const StoreModel& m) {
        if (onModel && !onModel(m)) stopped = true;
        return !stopped;
    };
    for (const StoreRoot& r : roots) {
        if (stopped) break;
        std::vector<StoreModel> some = scanModelStore(r, limits, relay);
        all.insert(all.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
    }
    return all;
}

} // namespace moe
