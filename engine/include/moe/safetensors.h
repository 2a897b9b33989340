#pragma once
// Memory-mapped safetensors: single files and sharded folders
// (model.safetensors.index.json). Tensors are views into the mapping; nothing
// is copied until the engine uploads it.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace moe {

// Element types. The last eight are ggml's quantized block types (moe/quant.h),
// which safetensors files never hold: GGUF tensors and weights quantized on
// load carry them, so that one weight path serves every type.
enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2,
                   Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K };

const char* dtypeName(DType t);
// Bytes per element; throws moe::Error for a block type (see rowBytes in moe/quant.h).
size_t dtypeSize(DType t);
bool isQuantized(DType t);
bool parseDType(const std::string& s, DType& out);

// Read-only mmap of a whole file, released on destruction.
class MappedFile {
public:
    explicit MappedFile(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::byte* data() const { return data_; }
    size_t size() const { return size_; }
    const std::filesystem::path& path() const { return path_; }
    // Drops the pages of [p, p+n) from this process's resident set (after the
    // bytes were uploaded), so weights are not held twice in host memory.
    void releasePages(const void* p, size_t n) const;

    // Bytes read again long after loading (an expert paged in under a budget)
    // come through here: a file replaced, truncated or rewritten since it was
    // mapped is reported as a moe::Error naming it, where reading the mapping
    // could give other weights or kill the process with SIGBUS.
    // Throws when path() no longer names the file as it was mapped (another
    // file, another size or modification time).
    void checkUnchanged() const;
    // checkUnchanged(), then copies [p, p+n) of the mapping to `dst`; a
    // truncation during the copy is caught too (guarded_copy.h).
    void copyOut(void* dst, const void* p, size_t n) const;

private:
    std::filesystem::path path_;
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
    // The mapped file's identity: device, inode, modification time (ns).
    uint64_t device_ = 0, inode_ = 0;
    int64_t modifiedNs_ = 0;
};

struct TensorView {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const std::byte* data = nullptr;
    size_t nbytes = 0;
    const MappedFile* file = nullptr; // the mapping that holds the bytes

    int64_t numel() const;
    std::string shapeString() const; // "[4096, 256]"
};

// One .safetensors file. Validates the header strictly: length within the
// file, JSON well-formed, dtype known, shape × dtype size == byte range,
// ranges inside the data section and not overlapping. Errors name the file
// and the tensor.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::filesystem::path& path);
    const std::map<std::string, TensorView>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const MappedFile& file() const { return *file_; }

private:
    std::unique_ptr<MappedFile> file_;
    std::map<std::string, TensorView> tensors_;
    std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder (model.safetensors, an index with shards, or
// any *.safetensors when there is no index: adapter_model.safetensors etc).
class WeightStore {
public:
    static std::unique_ptr<WeightStore> openFolder(const std::filesystem::path& dir);
    static std::unique_ptr<WeightStore> openFile(const std::filesystem::path& file);
    // Views into memory another object owns (a GGUF file's mapping), kept
    // alive by `owner`; `where` names the source in messages.
    static std::unique_ptr<WeightStore> fromViews(std::filesystem::path where, std::vector<TensorView> views,
                                                  std::shared_ptr<const void> owner);

    // Replaces a fused 2-D tensor (rows stacked, e.g. Phi-3's qkv_proj) by
    // views of its row ranges under their own names, in order; the rows must
    // add up to the tensor's. No copy: the views point into the same bytes.
    // Throws naming the file and tensor when the shape does not fit.
    void splitRows(const std::string& fused, const std::vector<std::pair<std::string, int64_t>>& parts);

    // The tensor `existing` under other names instead (views of the same bytes).
    void rename(const std::string& existing, const std::vector<std::string>& names);

    const TensorView* find(const std::string& name) const;
    // Throws moe::Error "<file>: tensor <name> ..." when missing or when the
    // shape differs from `expectedShape` (skipped when empty).
    const TensorView& require(const std::string& name, const std::vector<int64_t>& expectedShape = {}) const;
    std::vector<std::string> names() const;
    const std::filesystem::path& folder() const { return folder_; }
    size_t totalBytes() const;

private:
    std::filesystem::path folder_;
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::deque<TensorView> views_; // fromViews and splitRows (a deque: index_ points into it)
    std::shared_ptr<const void> owner_;
    std::map<std::string, const TensorView*> index_;
};

// Writes a safetensors file atomically (temp file in the same folder, then
// rename). Tensors are written in the given order, 8-byte aligned header.
struct TensorToWrite {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::span<const std::byte> bytes;
};
void writeSafetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The same file, with each tensor's bytes asked for only when it is written:
// bytesOf(i) for i = 0, 1, ... in order, its span valid until the next call,
// so a writer holds one tensor at a time. A span whose size does not match
// the layout throws, naming the tensor (nothing is left behind).
struct TensorLayout {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
};
void writeSafetensorsStreamed(const std::filesystem::path& path, const std::vector<TensorLayout>& layouts,
                              const std::function<std::span<const std::byte>(size_t index)>& bytesOf,
                              const std::map<std::string, std::string>& metadata = {});

// Converting 16-bit floats on the host (tests, tools, small tensors).
float bf16ToFloat(uint16_t v);
float f16ToFloat(uint16_t v);
uint16_t floatToBf16(float f); // round to nearest even
uint16_t floatToF16(float f);  // round to nearest even
// Any float dtype (F32/F16/BF16/F64) to float32.
std::vector<float> toFloat32(const TensorView& t);

} // namespace moe
