#pragma once
// The models other apps already keep on this machine: the Hugging Face hub
// cache, LM Studio's and GPT4All's folders of GGUF files, Ollama's store
// (manifests naming content-addressed blobs), and folders the user names.
// Each is listed with the name that app shows, its facts from the headers
// alone (GGUF metadata and tensor table, config.json and safetensors
// headers; no tensor data is read) and whether the engine can run it. A file
// that cannot be read, a half-downloaded file, a manifest naming a missing
// blob: each is an entry with the reason, never an exception.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace moe {

enum class ModelStore { HuggingFaceCache, LmStudio, Gpt4All, Ollama, Folder };
// "huggingface", "lmstudio", "gpt4all", "ollama", "folder" (the JSON names).
const char* storeId(ModelStore store);
// "Hugging Face cache", "LM Studio", "GPT4All", "Ollama", "folder".
const char* storeLabel(ModelStore store);

struct StoreRoot {
    ModelStore store = ModelStore::Folder;
    std::filesystem::path path;
};

// The stores' folders under the environment, those that exist, without
// duplicates: the Hugging Face caches (huggingFaceCacheRoots), LM Studio's
// ~/.lmstudio/models and older ~/.cache/lm-studio/models, GPT4All's
// $XDG_DATA_HOME/nomic.ai/GPT4All (~/.local/share/...), Ollama's
// $OLLAMA_MODELS and ~/.ollama/models.
std::vector<StoreRoot> modelStoreRoots();

struct StoreModel {
    ModelStore store = ModelStore::Folder;
    std::string name;             // as the app shows it: "llama3.2:latest", "publisher/repo/file.gguf", "org/name"
    std::filesystem::path path;   // the GGUF file (an Ollama blob), or the model folder
    std::filesystem::path source; // Ollama: the manifest; otherwise the same as path
    std::string format;           // "gguf" or "safetensors"
    std::string architecture;     // general.architecture, or config.json's model_type
    uint64_t parameters = 0;      // elements of all tensors
    std::string quant;            // "Q4_K_M" (general.file_type), else the type of most tensor bytes
    uint64_t sizeOnDisk = 0;      // bytes of the file (all parts of a split GGUF), or of the folder's files
    int layers = 0, hiddenSize = 0, intermediateSize = 0, vocabSize = 0, contextLength = 0;
    int experts = 0, expertsPerToken = 0;
    bool runnable = false;        // the engine maps every tensor onto an architecture it runs
    std::string error;            // why not: unreadable, truncated, unsupported (naming the file)
};

// Bounds on the work, so that a huge or hostile folder cannot stall a scan.
struct StoreScanLimits {
    size_t maxModels = 2000;                    // entries per root
    size_t maxDirectoryEntries = 100000;        // directory entries visited per root
    int maxDepth = 4;                           // folders below the root
    uint64_t maxManifestBytes = 1 << 20;        // an Ollama manifest
    uint64_t maxHeaderBytes = uint64_t(32) << 20;  // a GGUF header (metadata and tensor table)
    bool modelFolders = true;                   // the hub cache: its config.json folders too, not only its GGUF files
};

// A split GGUF (NAME-00001-of-00003.gguf, ...) is one entry, its size all the
// parts', and not runnable: the engine reads one-file GGUFs. A file being
// downloaded (GPT4All's incomplete-NAME.gguf, NAME.gguf.part and the like) is
// listed with that reason.

// Called with each entry as it is found; returning false stops the scan
// (cancel). May be empty.
using StoreModelCallback = std::function<bool(const StoreModel&)>;

// The entries of one root, in a stable order (by name). Never throws: a
// problem with the root itself is an entry with the reason.
std::vector<StoreModel> scanModelStore(const StoreRoot& root, const StoreScanLimits& limits = {},
                                       const StoreModelCallback& onModel = {});
// All of modelStoreRoots(), then `extraFolders` as ModelStore::Folder roots.
std::vector<StoreModel> scanModelStores(const std::vector<std::filesystem::path>& extraFolders = {},
                                        const StoreScanLimits& limits = {}, const StoreModelCallback& onModel = {});

// One GGUF file's entry (name and store left for the caller to set).
StoreModel inspectGgufModel(const std::filesystem::path& file, const StoreScanLimits& limits = {});
// One model folder's entry (config.json + safetensors).
StoreModel inspectModelFolder(const std::filesystem::path& dir);

// The Ollama name of a manifest path relative to manifests/ (registry,
// namespace, model, tag), as `ollama list` shows it: "llama3.2:latest" for
// registry.ollama.ai/library, "namespace/model:tag" for other namespaces
// there, "registry/namespace/model:tag" elsewhere.
std::string ollamaModelName(const std::filesystem::path& manifestRelative);

// llama.cpp's name of a general.file_type value ("Q4_K_M", "F16", "all F32"
// as "F32"), or empty when unknown.
std::string ggufFileTypeName(int64_t fileType);

} // namespace moe
