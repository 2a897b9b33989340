// Safetensors reading (mmap + strict header validation), sharded model
// folders, atomic writing and 16-bit float conversions.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON, then the
// data section. Tensor "data_offsets" are relative to the data section.
#include "moe/safetensors.h"

#include "moe/atomic_file.h"

#include "guarded_copy.h"
#include "json_input.h"
#include "moe/error.h"
#include "moe/quant.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Real headers are a few hundred bytes per tensor; anything beyond this is a
// corrupt or hostile file, and we refuse before trying to parse it.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

// Guards numel * dtype size against overflow; no tensor comes close to this.
constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 62;

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
    throw Error(file.string() + ": " + what);
}

[[noreturn]] void failTensor(const fs::path& file, const std::string& tensor, const std::string& what) {
    throw Error(file.string() + ": tensor " + tensor + ": " + what);
}

std::string systemError() { return std::strerror(errno); }

std::string shapeToString(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

// Element count of `shape`, or nullopt-like UINT64_MAX when it would exceed
// kMaxTensorBytes (so a bogus header cannot overflow the size check).
uint64_t checkedNumel(const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t d : shape) {
        const auto dim = static_cast<uint64_t>(d);
        if (dim != 0 && n > kMaxTensorBytes / dim) return std::numeric_limits<uint64_t>::max();
        n *= dim;
    }
    return n;
}

uint64_t readLittleEndian64(const std::byte* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint64_t>(p[i]);
    return v;
}

// A JSON number that is a non-negative integer (accepts 3 but not 3.5 or -1).
bool asNonNegativeInt(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer()) {
        const auto i = v.get<int64_t>();
        if (i < 0) return false;
        out = static_cast<uint64_t>(i);
        return true;
    }
    return false;
}

json parseJsonFile(const fs::path& path) {
    MappedFile file(path);
    try {
        const auto* begin = reinterpret_cast<const char*>(file.data());
        return parseJsonChecked(std::string_view(begin, file.size()), path);
    } catch (const json::exception& e) {
        fail(path, std::string("not valid JSON: ") + e.what());
    }
}

void writeAll(int fd, const void* data, size_t n, const fs::path& tmp) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t written = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
        if (written < 0) {
            if (errno == EINTR) continue;
            fail(tmp, "write failed: " + systemError());
        }
        p += written;
        n -= static_cast<size_t>(written);
    }
}

// Creates "<path>.tmp-<pid>-XXXXXXXX" next to `path` (same file system, so
// the final rename is atomic), after removing those of killed writers (the
// pattern of AtomicFileWriter). Mode 0666 lets the umask decide the
// permissions, which mkstemp's fixed 0600 would not.
int createTempNextTo(const fs::path& path, fs::path& tmpOut) {
    removeStaleTemporaries(path.parent_path(), path.filename().string() + ".tmp-");
    std::random_device rd;
    std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(::getpid()));
    for (int attempt = 0; attempt < 100; ++attempt) {
        char suffix[48];
        std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%08x", static_cast<long>(::getpid()), static_cast<unsigned>(rng()));
        tmpOut = path;
        tmpOut += suffix;
        const int fd = ::open(tmpOut.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno != EEXIST) fail(tmpOut, "cannot create: " + systemError());
    }
    fail(path, "cannot create a temporary file next to it");
}

} // namespace

// ---------------------------------------------------------------------------
// DType

const char* dtypeName(DType t) {
    switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_1: return "Q4_1";
    case DType::Q5_0: return "Q5_0";
    case DType::Q5_1: return "Q5_1";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
    }
    return "?";
}

size_t dtypeSize(DType t) {
    switch (t) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL:
    case DType::F8_E4M3:
    case DType::F8_E5M2: return 1;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: break;
    }
    throw Error(std::string("internal: ") + dtypeName(t) + " is a block type: it has no size per element");
}

bool isQuantized(DType t) { return t >= DType::Q8_0; }

bool parseDType(const std::string& s, DType& out) {
    static const DType all[] = {DType::F32,  DType::F16, DType::BF16, DType::F64, DType::I64,     DType::I32,
                                DType::I16,  DType::I8,  DType::U8,   DType::BOOL, DType::F8_E4M3, DType::F8_E5M2};
    for (DType t : all) {
        if (s == dtypeName(t)) {
            out = t;
            return true;
        }
    }
    return false;
}

// ---------------------------------------------------------------------------
// MappedFile

MappedFile::MappedFile(const fs::path& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, "cannot open: " + systemError());
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const std::string err = systemError();
        ::close(fd);
        fail(path, "cannot stat: " + err);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(path, "not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    device_ = uint64_t(st.st_dev);
    inode_ = uint64_t(st.st_ino);
    modifiedNs_ = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    if (size_ > 0) { // mmap rejects length 0; an empty file simply has no data
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const std::string err = systemError();
            ::close(fd);
            fail(path, "cannot map into memory: " + err);
        }
        data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd); // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::checkUnchanged() const {
    const std::string reload = "; load the model again";
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) fail(path_, "cannot be read any more since the model was loaded (" + systemError() + ")" + reload);
    if (uint64_t(st.st_dev) != device_ || uint64_t(st.st_ino) != inode_)
        fail(path_, "was replaced by another file since the model was loaded" + reload);
    if (size_t(st.st_size) != size_)
        fail(path_, "changed size since the model was loaded (" + std::to_string(size_) + " bytes then, " +
                        std::to_string(st.st_size) + " now)" + reload);
    if (int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec != modifiedNs_)
        fail(path_, "was modified since the model was loaded" + reload);
}

void MappedFile::copyOut(void* dst, const void* p, size_t n) const {
    const auto* b = static_cast<const std::byte*>(p);
    if (n == 0) return;
    if (!data_ || b < data_ || b + n > data_ + size_) throw Error("internal: " + path_.string() + ": copy outside the mapping");
    checkUnchanged();
    if (!copyFromMapping(dst, p, n))
        fail(path_, "was truncated while it was being read (the mapped bytes are gone); load the model again");
}

void MappedFile::releasePages(const void* p, size_t n) const {
    if (!data_ || !p || n == 0) return;
    const auto base = reinterpret_cast<uintptr_t>(data_);
    auto begin = reinterpret_cast<uintptr_t>(p);
    auto end = begin + n;
    begin = std::max(begin, base);
    end = std::min(end, base + size_);
    // madvise needs a page-aligned start, and we round *inward*: the first and
    // last pages may also hold bytes of neighbouring tensors that are not yet
    // uploaded, and dropping them would only force a re-read from disk.
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    begin = (begin + page - 1) / page * page;
    end = end / page * page;
    if (begin >= end) return;
    // MADV_DONTNEED is safe here because the mapping is read-only and private:
    // it never has dirty copy-on-write pages, so discarding only drops the
    // page-cache references, and a later access faults the bytes back in from
    // the file unchanged. Failure is harmless (memory just stays resident).
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------
// TensorView

int64_t TensorView::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string TensorView::shapeString() const { return shapeToString(shape); }

// ---------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const fs::path& path) : file_(std::make_unique<MappedFile>(path)) {
    const uint64_t fileSize = file_->size();
    const std::string sizeText = "(size " + std::to_string(fileSize) + ")";
    if (fileSize < 8)
        fail(path, "file is " + std::to_string(fileSize) +
                       " bytes, too short for the 8-byte header length of a safetensors file");

    const uint64_t headerLen = readLittleEndian64(file_->data());
    if (headerLen > fileSize - 8)
        fail(path, "header length " + std::to_string(headerLen) + " is past the end of the file " + sizeText);
    if (headerLen > kMaxHeaderBytes)
        fail(path, "header length " + std::to_string(headerLen) + " is absurdly large (limit " +
                       std::to_string(kMaxHeaderBytes) + " bytes)");

    json header;
    try {
        const auto* text = reinterpret_cast<const char*>(file_->data() + 8);
        header = parseJsonChecked(std::string_view(text, size_t(headerLen)), path);
    } catch (const json::exception& e) {
        fail(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(path, "header is not a JSON object");

    const uint64_t dataStart = 8 + headerLen;
    const uint64_t dataSize = fileSize - dataStart;
    const std::byte* dataSection = file_->data() + dataStart;

    struct Range {
        uint64_t begin, end;
        const std::string* name;
    };
    std::vector<Range> ranges;

    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) fail(path, "__metadata__ is not a JSON object");
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string()) fail(path, "__metadata__ value of \"" + key + "\" is not a string");
                metadata_[key] = value.get<std::string>();
            }
            continue;
        }
        if (!entry.is_object()) failTensor(path, name, "entry is not a JSON object");

        TensorView view;
        view.name = name;
        view.file = file_.get();

        const auto dtypeIt = entry.find("dtype");
        if (dtypeIt == entry.end()) failTensor(path, name, "missing dtype");
        if (!dtypeIt->is_string()) failTensor(path, name, "dtype is not a string");
        const auto dtypeText = dtypeIt->get<std::string>();
        if (!parseDType(dtypeText, view.dtype)) failTensor(path, name, "unknown dtype \"" + dtypeText + "\"");

        const auto shapeIt = entry.find("shape");
        if (shapeIt == entry.end()) failTensor(path, name, "missing shape");
        if (!shapeIt->is_array()) failTensor(path, name, "shape is not a list");
        for (const auto& dim : *shapeIt) {
            uint64_t d = 0;
            if (!asNonNegativeInt(dim, d) || d > uint64_t(std::numeric_limits<int64_t>::max()))
                failTensor(path, name, "shape " + jsonSnippet(*shapeIt) + " is not a list of non-negative integers");
            view.shape.push_back(static_cast<int64_t>(d));
        }

        const auto offsetsIt = entry.find("data_offsets");
        if (offsetsIt == entry.end()) failTensor(path, name, "missing data_offsets");
        uint64_t begin = 0, end = 0;
        if (!offsetsIt->is_array() || offsetsIt->size() != 2 || !asNonNegativeInt((*offsetsIt)[0], begin) ||
            !asNonNegativeInt((*offsetsIt)[1], end))
            failTensor(path, name, "data_offsets " + jsonSnippet(*offsetsIt) + " is not [begin, end]");
        if (begin > end)
            failTensor(path, name, "data_offsets " + jsonSnippet(*offsetsIt) + " has begin after end");
        if (end > dataSize)
            failTensor(path, name,
                       "data range [" + std::to_string(dataStart + begin) + ", " + std::to_string(dataStart + end) +
                           ") is past the end of the file " + sizeText);

        const uint64_t numel = checkedNumel(view.shape);
        const uint64_t expectedBytes =
            numel == std::numeric_limits<uint64_t>::max() ? numel : numel * dtypeSize(view.dtype);
        if (expectedBytes != end - begin)
            failTensor(path, name,
                       "shape " + view.shapeString() + " of " + dtypeText + " needs " +
                           (expectedBytes == std::numeric_limits<uint64_t>::max() ? std::string("too many")
                                                                                  : std::to_string(expectedBytes)) +
                           " bytes but data_offsets span " + std::to_string(end - begin));

        view.data = dataSection + begin;
        view.nbytes = static_cast<size_t>(end - begin);
        auto [it, inserted] = tensors_.emplace(name, std::move(view));
        if (!inserted) failTensor(path, name, "appears twice in the header");
        ranges.push_back({begin, end, &it->first});
    }

    // Tensors must not share bytes: sorted by start, each must begin at or
    // after the previous one's end. Empty tensors cannot overlap anything.
    std::erase_if(ranges, [](const Range& r) { return r.begin == r.end; });
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < ranges.size(); ++i) {
        if (ranges[i].begin < ranges[i - 1].end)
            failTensor(path, *ranges[i].name,
                       "data_offsets [" + std::to_string(ranges[i].begin) + ", " + std::to_string(ranges[i].end) +
                           ") overlap tensor " + *ranges[i - 1].name + " [" + std::to_string(ranges[i - 1].begin) +
                           ", " + std::to_string(ranges[i - 1].end) + ")");
    }
}

// ---------------------------------------------------------------------------
// WeightStore

std::unique_ptr<WeightStore> WeightStore::openFile(const fs::path& file) {
    auto store = std::make_unique<WeightStore>();
    store->folder_ = file.parent_path();
    store->files_.push_back(std::make_unique<SafetensorsFile>(file));
    for (const auto& [name, view] : store->files_.back()->tensors()) store->index_[name] = &view;
    return store;
}

std::unique_ptr<WeightStore> WeightStore::fromViews(fs::path where, std::vector<TensorView> views,
                                                    std::shared_ptr<const void> owner) {
    auto store = std::make_unique<WeightStore>();
    store->folder_ = std::move(where);
    store->views_.assign(std::make_move_iterator(views.begin()), std::make_move_iterator(views.end()));
    store->owner_ = std::move(owner);
    for (const TensorView& v : store->views_)
        if (!store->index_.emplace(v.name, &v).second) failTensor(store->folder_, v.name, "appears twice");
    return store;
}

std::unique_ptr<WeightStore> WeightStore::openFolder(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail(dir, "not a folder (or it does not exist)");

    const fs::path indexPath = dir / "model.safetensors.index.json";
    if (fs::exists(indexPath, ec)) {
        const json index = parseJsonFile(indexPath);
        if (!index.is_object()) fail(indexPath, "not a JSON object");
        const auto mapIt = index.find("weight_map");
        if (mapIt == index.end() || !mapIt->is_object()) fail(indexPath, "weight_map is missing or not an object");

        auto store = std::make_unique<WeightStore>();
        store->folder_ = dir;
        std::map<std::string, const SafetensorsFile*> shards; // shard file name -> opened file
        for (const auto& [tensor, shardValue] : mapIt->items()) {
            if (!shardValue.is_string()) fail(indexPath, "weight_map entry of tensor " + tensor + " is not a string");
            const auto shardName = shardValue.get<std::string>();
            auto shardIt = shards.find(shardName);
            if (shardIt == shards.end()) {
                // A shard is a file of this folder: a name with a folder part ("../x",
                // "/etc/x", "sub/x") could read files outside the model.
                const fs::path shardFile(shardName);
                if (shardName.empty() || shardFile.has_parent_path() || shardFile.is_absolute() ||
                    shardName == "." || shardName == ".." || shardName.find('\\') != std::string::npos)
                    fail(indexPath, "weight_map names shard \"" + shardName + "\" for tensor " + tensor +
                                        ": a shard must be a file name in the model folder, without a folder part");
                const fs::path shardPath = dir / shardName;
                if (!fs::is_regular_file(shardPath, ec))
                    fail(indexPath, "weight_map names shard " + shardName + " for tensor " + tensor + ", but " +
                                        shardPath.string() + " does not exist");
                store->files_.push_back(std::make_unique<SafetensorsFile>(shardPath));
                shardIt = shards.emplace(shardName, store->files_.back().get()).first;
            }
            const auto& shardTensors = shardIt->second->tensors();
            const auto viewIt = shardTensors.find(tensor);
            if (viewIt == shardTensors.end())
                failTensor(shardIt->second->file().path(), tensor,
                           "listed in " + indexPath.filename().string() + " but missing from this shard");
            store->index_[tensor] = &viewIt->second;
        }
        // Tensors a shard holds beyond the weight map are still usable; the
        // weight map wins where both name the same tensor.
        for (const auto& file : store->files_)
            for (const auto& [name, view] : file->tensors()) store->index_.emplace(name, &view);
        return store;
    }

    const fs::path single = dir / "model.safetensors";
    if (fs::exists(single, ec)) {
        auto store = openFile(single);
        store->folder_ = dir;
        return store;
    }

    // No standard name: accept exactly one *.safetensors (adapter_model.safetensors etc).
    std::vector<fs::path> candidates;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.path().extension() == ".safetensors" && entry.is_regular_file(ec))
            candidates.push_back(entry.path());
    }
    if (candidates.empty())
        fail(dir, "no model.safetensors, model.safetensors.index.json or other *.safetensors file in this folder");
    if (candidates.size() > 1) {
        std::sort(candidates.begin(), candidates.end());
        std::string list;
        for (const auto& c : candidates) list += (list.empty() ? "" : ", ") + c.filename().string();
        fail(dir, "several .safetensors files (" + list +
                      ") and no model.safetensors.index.json saying which belong together");
    }
    auto store = openFile(candidates.front());
    store->folder_ = dir;
    return store;
}

void WeightStore::splitRows(const std::string& fused, const std::vector<std::pair<std::string, int64_t>>& parts) {
    const TensorView& t = require(fused);
    const fs::path where = t.file ? t.file->path() : folder_;
    int64_t rows = 0;
    for (const auto& part : parts) rows += part.second;
    // A vector (a fused bias) splits by elements.
    const bool vector = t.shape.size() == 1;
    if ((t.shape.size() != 2 && !vector) || t.shape[0] != rows || rows <= 0)
        failTensor(where, fused, "has shape " + t.shapeString() + ", expected " + std::to_string(rows) + " rows (" +
                                     std::to_string(parts.size()) + " stacked parts)" +
                                     (vector ? std::string() : " of " + (t.shape.size() == 2 ? std::to_string(t.shape[1]) : std::string("some")) + " columns"));
    const size_t rowBytes = t.nbytes / size_t(rows);
    if (rowBytes * size_t(rows) != t.nbytes) failTensor(where, fused, "its rows cannot be split");
    int64_t at = 0;
    for (const auto& [name, n] : parts) {
        if (index_.count(name)) failTensor(where, name, "appears both on its own and inside " + fused);
        TensorView v = t;
        v.name = name;
        v.shape = vector ? std::vector<int64_t>{n} : std::vector<int64_t>{n, t.shape[1]};
        v.data = t.data + size_t(at) * rowBytes;
        v.nbytes = size_t(n) * rowBytes;
        at += n;
        views_.push_back(std::move(v));
        index_.emplace(name, &views_.back());
    }
    index_.erase(fused);
}

void WeightStore::rename(const std::string& existing, const std::vector<std::string>& names) {
    const TensorView& t = require(existing);
    for (const auto& name : names) {
        if (index_.count(name)) failTensor(t.file ? t.file->path() : folder_, name, "appears twice (also as " + existing + ")");
        TensorView v = t;
        v.name = name;
        views_.push_back(std::move(v));
        index_.emplace(name, &views_.back());
    }
    index_.erase(existing);
}

const TensorView* WeightStore::find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
}

const TensorView& WeightStore::require(const std::string& name, const std::vector<int64_t>& expectedShape) const {
    const TensorView* view = find(name);
    if (!view) {
        const fs::path where = files_.size() == 1 ? files_.front()->file().path() : folder_;
        failTensor(where, name, "missing");
    }
    if (!expectedShape.empty() && view->shape != expectedShape)
        failTensor(view->file->path(), name,
                   "has shape " + view->shapeString() + ", expected " + shapeToString(expectedShape));
    return *view;
}

std::vector<std::string> WeightStore::names() const {
    std::vector<std::string> out;
    out.reserve(index_.size());
    for (const auto& entry : index_) out.push_back(entry.first);
    return out;
}

size_t WeightStore::totalBytes() const {
    size_t total = 0;
    for (const auto& entry : index_) total += entry.second->nbytes;
    return total;
}

// ---------------------------------------------------------------------------
// Writing

void writeSafetensors(const fs::path& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    std::vector<TensorLayout> layouts;
    layouts.reserve(tensors.size());
    for (const auto& t : tensors) layouts.push_back({t.name, t.dtype, t.shape});
    writeSafetensorsStreamed(path, layouts, [&](size_t i) { return tensors[i].bytes; }, metadata);
}

void writeSafetensorsStreamed(const fs::path& path, const std::vector<TensorLayout>& layouts,
                              const std::function<std::span<const std::byte>(size_t index)>& bytesOf,
                              const std::map<std::string, std::string>& metadata) {
    // ordered_json keeps the header in the order the data is laid out.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::set<std::string> seen;
    std::vector<uint64_t> sizes;
    uint64_t offset = 0;
    for (const auto& t : layouts) {
        if (t.name == "__metadata__" || !seen.insert(t.name).second)
            failTensor(path, t.name, "name is reserved or used twice");
        for (int64_t d : t.shape)
            if (d < 0) failTensor(path, t.name, "shape " + shapeToString(t.shape) + " has a negative dimension");
        const uint64_t numel = checkedNumel(t.shape);
        if (numel == std::numeric_limits<uint64_t>::max())
            failTensor(path, t.name, "shape " + shapeToString(t.shape) + " is too large");
        sizes.push_back(numel * dtypeSize(t.dtype));
        header[t.name] = {{"dtype", dtypeName(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + sizes.back()}}};
        offset += sizes.back();
    }
    std::string headerText = header.dump();
    // Pad with spaces (valid JSON whitespace) so the data section starts
    // 8-byte aligned, letting readers use the mapped bytes in place.
    headerText.append((8 - headerText.size() % 8) % 8, ' ');

    std::byte lengthBytes[8];
    for (int i = 0; i < 8; ++i) lengthBytes[i] = std::byte((uint64_t(headerText.size()) >> (8 * i)) & 0xff);

    fs::path tmp;
    const int fd = createTempNextTo(path, tmp);
    try {
        writeAll(fd, lengthBytes, sizeof lengthBytes, tmp);
        writeAll(fd, headerText.data(), headerText.size(), tmp);
        for (size_t i = 0; i < layouts.size(); ++i) {
            const std::span<const std::byte> bytes = bytesOf(i);
            const TensorLayout& t = layouts[i];
            if (bytes.size() != sizes[i])
                failTensor(path, t.name,
                           "shape " + shapeToString(t.shape) + " of " + dtypeName(t.dtype) + " does not match " +
                               std::to_string(bytes.size()) + " bytes");
            writeAll(fd, bytes.data(), bytes.size(), tmp);
        }
        // Data must be on disk before the rename makes it visible under the
        // final name, or a crash could leave a complete-looking empty file.
        if (::fsync(fd) != 0) fail(tmp, "fsync failed: " + systemError());
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        const std::string err = systemError();
        ::unlink(tmp.c_str());
        fail(tmp, "close failed: " + err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string err = systemError();
        ::unlink(tmp.c_str());
        fail(path, "cannot rename " + tmp.filename().string() + " into place: " + err);
    }
    // Persist the rename itself; failure here only weakens crash safety.
    const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    const int dirFd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirFd >= 0) {
        ::fsync(dirFd);
        ::close(dirFd);
    }
}

// ---------------------------------------------------------------------------
// 16-bit floats

namespace {
uint32_t floatBits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float bitsToFloat(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
} // namespace

float bf16ToFloat(uint16_t v) { return bitsToFloat(uint32_t(v) << 16); }

uint16_t floatToBf16(float f) {
    const uint32_t u = floatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep sign and payload top, force quiet so it stays NaN
        return uint16_t((u >> 16) | 0x0040u);
    // Round to nearest even: add 0x7fff plus the lowest kept bit; the carry
    // propagates into the exponent naturally (and to Inf past the max).
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(rounded >> 16);
}

float f16ToFloat(uint16_t v) {
    const uint32_t sign = uint32_t(v & 0x8000u) << 16;
    const uint32_t exponent = (v >> 10) & 0x1fu;
    uint32_t mantissa = v & 0x3ffu;
    if (exponent == 0x1f) return bitsToFloat(sign | 0x7f800000u | (mantissa << 13)); // Inf / NaN
    if (exponent != 0) return bitsToFloat(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
    if (mantissa == 0) return bitsToFloat(sign); // signed zero
    // Subnormal half: normalise into a float (every half subnormal is a
    // normal float). Value = mantissa * 2^-24.
    int e = -14;
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        --e;
    }
    mantissa &= 0x3ffu;
    return bitsToFloat(sign | uint32_t(e + 127) << 23 | (mantissa << 13));
}

uint16_t floatToF16(float f) {
    const uint32_t u = floatBits(f);
    const auto sign = uint16_t((u >> 16) & 0x8000u);
    const uint32_t magnitude = u & 0x7fffffffu;
    if (magnitude > 0x7f800000u) // NaN: quiet, keep the payload's top bits
        return uint16_t(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    if (magnitude >= 0x477ff000u) // >= 65520 rounds to Inf (65504 is the largest half)
        return uint16_t(sign | 0x7c00u);

    const uint32_t biasedExp = magnitude >> 23;
    uint32_t mantissa = magnitude & 0x7fffffu;
    uint32_t half;
    uint32_t remainder;
    uint32_t halfway;
    if (biasedExp >= 113) { // >= 2^-14: normal half
        half = ((biasedExp - 112) << 10) | (mantissa >> 13);
        remainder = mantissa & 0x1fffu;
        halfway = 0x1000u;
    } else { // subnormal half (or zero): value / 2^-24 with the implicit 1
        if (biasedExp < 102) return sign; // below 2^-25: rounds to zero
        mantissa |= 0x800000u;
        const uint32_t shift = 126 - biasedExp; // 14 .. 24
        half = mantissa >> shift;
        remainder = mantissa & ((1u << shift) - 1);
        halfway = 1u << (shift - 1);
    }
    // Round to nearest even; a carry out of the mantissa bumps the exponent,
    // which is exactly the next representable value.
    if (remainder > halfway || (remainder == halfway && (half & 1u))) ++half;
    return uint16_t(sign | half);
}

std::vector<float> toFloat32(const TensorView& t) {
    if (auto q = quantTypeOf(t.dtype)) {
        // Whole rows of blocks: the last dimension is the row.
        const size_t cols = t.shape.empty() ? 0 : size_t(t.shape.back());
        const size_t rows = cols ? size_t(t.numel()) / cols : 0;
        const size_t rb = quantRowBytes(*q, cols, t.name);
        if (rows * rb != t.nbytes) failTensor(t.file ? t.file->path() : fs::path("<memory>"), t.name, "byte size does not match its shape");
        std::vector<float> out(rows * cols);
        for (size_t r = 0; r < rows; ++r)
            dequantizeRow(*q, {t.data + r * rb, rb}, {out.data() + r * cols, cols});
        return out;
    }
    const size_t n = t.nbytes / std::max<size_t>(dtypeSize(t.dtype), 1);
    std::vector<float> out(n);
    // memcpy per element: mapped tensor data need not be aligned.
    switch (t.dtype) {
    case DType::F32:
        if (n) std::memcpy(out.data(), t.data, n * 4);
        break;
    case DType::F64:
        for (size_t i = 0; i < n; ++i) {
            double d;
            std::memcpy(&d, t.data + i * 8, 8);
            out[i] = static_cast<float>(d);
        }
        break;
    case DType::F16:
    case DType::BF16: {
        const bool isBf16 = t.dtype == DType::BF16;
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + i * 2, 2);
            out[i] = isBf16 ? bf16ToFloat(h) : f16ToFloat(h);
        }
        break;
    }
    default:
        failTensor(t.file ? t.file->path() : fs::path("<memory>"), t.name,
                   std::string("dtype ") + dtypeName(t.dtype) + " is not a float type");
    }
    return out;
}

} // namespace moe
