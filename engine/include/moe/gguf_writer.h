#pragma once
// Writing GGUF files (version 3) for llama.cpp, Ollama and LM Studio: typed
// metadata in the order it is set, a tensor table, then each tensor's bytes
// asked for one at a time, so the writer holds one tensor in memory. The file
// is written under a temporary name beside the target and renamed when
// complete; a failed or cancelled write leaves nothing behind.
#include "moe/gguf.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace moe {

// ggml's type number of a 16/32-bit or block dtype (F32 0, F16 1, BF16 30,
// the block types as ggmlTypeId); throws for others.
uint32_t ggmlTypeOf(DType d);

class GgufWriter {
public:
    // Setting a key again replaces its value and keeps its place.
    void setString(const std::string& key, const std::string& v);
    void setU32(const std::string& key, uint32_t v);
    void setI32(const std::string& key, int32_t v);
    void setU64(const std::string& key, uint64_t v);
    void setF32(const std::string& key, float v);
    void setBool(const std::string& key, bool v);
    void setStrings(const std::string& key, const std::vector<std::string>& v);
    void setF32s(const std::string& key, const std::vector<float>& v);
    void setI32s(const std::string& key, const std::vector<int32_t>& v);
    // A value as read from another file (its type kept).
    void setValue(const std::string& key, const GgufValue& v);
    bool has(const std::string& key) const;

    // A tensor of `shape` (row-major, outermost first, as safetensors) in
    // `dtype`; its byte size follows from both.
    void addTensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype);
    size_t tensorCount() const { return tensors_.size(); }
    uint64_t tensorBytes(size_t i) const { return tensors_[i].bytes; }
    // The whole file's size, known before writing.
    uint64_t fileBytes() const;

    // Writes `path`: bytesOf(i) for i = 0, 1, ... in order, each span valid
    // until the next call and exactly tensorBytes(i) long. `cancel` is polled
    // between tensors; returns false (nothing written) when it was set.
    // Throws moe::Error naming the file on any failure (disk full, a span of
    // the wrong size).
    bool write(const std::filesystem::path& path, const std::function<std::span<const std::byte>(size_t)>& bytesOf,
               const std::atomic<bool>* cancel = nullptr) const;
    // The same with each tensor given in pieces: writeTensor(i, put) calls
    // put once per piece, in order, the pieces adding up to tensorBytes(i),
    // so that not even one tensor need be held whole.
    using TensorSink = std::function<void(std::span<const std::byte>)>;
    bool writeStreamed(const std::filesystem::path& path,
                       const std::function<void(size_t, const TensorSink&)>& writeTensor,
                       const std::atomic<bool>* cancel = nullptr) const;

    static constexpr uint32_t kAlignment = 32;

private:
    struct Entry {
        std::string key;
        std::string encoded; // type + value, as in the file
    };
    struct Tensor {
        std::string name;
        std::vector<int64_t> shape;
        DType dtype;
        uint64_t bytes = 0, offset = 0;
    };
    void set(const std::string& key, std::string encoded);
    std::string header() const;

    std::vector<Entry> entries_;
    std::vector<Tensor> tensors_;
    uint64_t dataBytes_ = 0;
};

} // namespace moe
