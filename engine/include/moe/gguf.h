#pragma once
// GGUF files (llama.cpp, Ollama, LM Studio, GPT4All), memory-mapped: the
// header's metadata and tensor table, read with the care of the safetensors
// reader. Every count, length and offset is checked against the file before
// anything is allocated for it; every error names the file and the key or
// tensor. Tensor data stays in the mapping.
#include "moe/quant.h"
#include "moe/safetensors.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moe {

// GGUF metadata value types (gguf_type).
enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
    String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* toString(GgufType t);

struct GgufValue {
    GgufType type = GgufType::U8;
    // Scalars: integers in `i` (and `u`, the same bits unsigned), reals in `f`,
    // strings in `s`.
    int64_t i = 0;
    uint64_t u = 0;
    double f = 0;
    std::string s;
    // Arrays, stored by element kind so that a long array costs at most a few
    // times its bytes in the file: integers and bools in `ints` (unsigned
    // 64-bit values as their bits), reals in `reals`, strings in `strings`,
    // nested arrays in `arrays`.
    GgufType elementType = GgufType::U8;
    std::vector<int64_t> ints;
    std::vector<double> reals;
    std::vector<std::string> strings;
    std::vector<GgufValue> arrays;
    size_t size() const { return ints.size() + reals.size() + strings.size() + arrays.size(); }
    bool isInteger() const;
    bool isNumber() const { return isInteger() || type == GgufType::F32 || type == GgufType::F64; }
};

// A tensor's element type: a 16/32-bit float dtype or a quantized block type.
struct GgufTensor {
    std::string name;
    std::vector<int64_t> shape; // row-major (outermost first), as safetensors: GGUF's ne reversed
    uint32_t ggmlType = 0;
    std::optional<DType> dtype;     // F32, F16, BF16
    std::optional<QuantType> quant; // the block types of moe/quant.h
    uint64_t offset = 0;            // from the start of the data section
    const std::byte* data = nullptr;
    size_t nbytes = 0;
    int64_t numel() const;
};

// How much of a file GgufFile::open accepts, for listing files rather than running them.
struct GgufOpenOptions {
    // Keep tensors of ggml types the engine does not read (iq2_xxs, ...),
    // with neither dtype nor quant set and their data still bounds-checked,
    // instead of refusing the file.
    bool keepUnreadTypes = false;
    // Refuse a header (metadata and tensor table) longer than this (0: no
    // limit): what reading it allocates is then bounded by this, not by the file.
    uint64_t maxHeaderBytes = 0;
};

class GgufFile {
public:
    // Throws moe::Error "<file>: <key or tensor>: <problem>" on any defect.
    static std::shared_ptr<const GgufFile> open(const std::filesystem::path& path);
    static std::shared_ptr<const GgufFile> open(const std::filesystem::path& path, const GgufOpenOptions& options);

    const std::filesystem::path& path() const { return file_->path(); }
    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
    const GgufValue* find(const std::string& key) const;
    // Typed lookups; throw naming the file and key when present with another type.
    std::optional<std::string> getString(const std::string& key) const;
    std::optional<int64_t> getInteger(const std::string& key) const;
    std::optional<double> getNumber(const std::string& key) const;
    std::optional<bool> getBool(const std::string& key) const;
    // Throws naming the file and key when missing.
    const GgufValue& require(const std::string& key) const;

    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    const GgufTensor* findTensor(const std::string& name) const;
    const MappedFile& mapping() const { return *file_; }

private:
    GgufFile() = default;
    std::unique_ptr<MappedFile> file_;
    uint32_t version_ = 0, alignment_ = 32;
    std::map<std::string, GgufValue> metadata_;
    std::vector<GgufTensor> tensors_;
    std::map<std::string, size_t> tensorIndex_;
};

// ggml's name of a tensor type ("f32", "q4_k", "iq2_xxs", ...), or "type N".
std::string ggmlTypeName(uint32_t ggmlType);

} // namespace moe
