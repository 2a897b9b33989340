#include "moe/gguf.h"

#include "moe/error.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace moe {
namespace {

constexpr uint32_t kMagic = 0x46554747; // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 3;       // arrays of arrays of arrays at most
constexpr uint64_t kMaxKeyBytes = 65535;
constexpr uint64_t kMaxNameBytes = 1024;

// Smallest encoded size of a value of type t (arrays: the empty array).
uint64_t minEncodedBytes(GgufType t) {
    switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool: return 1;
    case GgufType::U16:
    case GgufType::I16: return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32: return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
    case GgufType::String: return 8;
    case GgufType::Array: return 12;
    }
    return 1;
}

bool knownType(uint32_t t) { return t <= uint32_t(GgufType::F64); }

class Reader {
public:
    // `limit` (0: none) stops reading at that byte, as if the file ended there.
    Reader(const MappedFile& f, uint64_t limit)
        : path_(f.path().string()), begin_(f.data()),
          end_(f.data() + (limit && limit < f.size() ? size_t(limit) : f.size())),
          limited_(limit && limit < f.size()), limit_(limit) {}

    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        throw Error(path_ + ": " + (where.empty() ? std::string() : where + ": ") + what);
    }
    uint64_t offset() const { return uint64_t(pos_ - begin_); }
    uint64_t remaining() const { return uint64_t(end_ - pos_); }

    template <class T> T read(const std::string& where) {
        if (remaining() < sizeof(T))
            fail(where, limited_ ? "the header is longer than the " + std::to_string(limit_) + " bytes read of it"
                                 : "the file ends at byte " + std::to_string(offset()) + ", inside the header (truncated?)");
        T v;
        std::memcpy(&v, pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string readString(const std::string& where, uint64_t maxBytes) {
        const uint64_t n = read<uint64_t>(where);
        if (n > remaining())
            fail(where, "a string of " + std::to_string(n) + " bytes at byte " + std::to_string(offset() - 8) +
                            " runs past the end of the file (" + std::to_string(remaining()) + " bytes left)" + endNote());
        if (n > maxBytes) fail(where, "a string of " + std::to_string(n) + " bytes (at most " + std::to_string(maxBytes) + ")");
        std::string s(reinterpret_cast<const char*>(pos_), size_t(n));
        pos_ += n;
        return s;
    }

    GgufValue readValue(GgufType t, const std::string& where, int depth) {
        GgufValue v;
        v.type = t;
        switch (t) {
        case GgufType::U8: v.u = read<uint8_t>(where); break;
        case GgufType::I8: v.i = read<int8_t>(where); break;
        case GgufType::U16: v.u = read<uint16_t>(where); break;
        case GgufType::I16: v.i = read<int16_t>(where); break;
        case GgufType::U32: v.u = read<uint32_t>(where); break;
        case GgufType::I32: v.i = read<int32_t>(where); break;
        case GgufType::U64: v.u = read<uint64_t>(where); break;
        case GgufType::I64: v.i = read<int64_t>(where); break;
        case GgufType::F32: v.f = read<float>(where); break;
        case GgufType::F64: v.f = read<double>(where); break;
        case GgufType::Bool: {
            const uint8_t b = read<uint8_t>(where);
            if (b > 1) fail(where, "a bool of value " + std::to_string(b) + " (0 or 1)");
            v.u = b;
            break;
        }
        case GgufType::String: v.s = readString(where, std::numeric_limits<uint64_t>::max()); break;
        case GgufType::Array: {
            if (depth >= kMaxArrayDepth) fail(where, "arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
            const uint32_t et = read<uint32_t>(where);
            if (!knownType(et)) fail(where, "an array of unknown value type " + std::to_string(et));
            v.elementType = GgufType(et);
            const uint64_t n = read<uint64_t>(where);
            // Each element takes at least minEncodedBytes: a count the rest of
            // the file cannot hold is refused before anything is allocated.
            if (n > remaining() / minEncodedBytes(v.elementType))
                fail(where, "an array of " + std::to_string(n) + " " + toString(v.elementType) +
                                " values, more than the " + std::to_string(remaining()) + " bytes left in the file hold" + endNote());
            for (uint64_t k = 0; k < n; ++k) {
                GgufValue item = readValue(v.elementType, where, depth + 1);
                if (item.isInteger() || item.type == GgufType::Bool) v.ints.push_back(item.i);
                else if (item.type == GgufType::F32 || item.type == GgufType::F64) v.reals.push_back(item.f);
                else if (item.type == GgufType::String) v.strings.push_back(std::move(item.s));
                else v.arrays.push_back(std::move(item));
            }
            break;
        }
        }
        if (v.type == GgufType::U8 || v.type == GgufType::U16 || v.type == GgufType::U32 || v.type == GgufType::U64 ||
            v.type == GgufType::Bool)
            v.i = int64_t(v.u); // a uint64 past INT64_MAX keeps its bits (getInteger refuses it)
        else if (v.isInteger())
            v.u = uint64_t(v.i);
        return v;
    }

    void seek(uint64_t to) { pos_ = begin_ + to; }

    // What a count or length running past the end means: a cut file, or a header over the bound.
    std::string endNote() const {
        return limited_ ? " (the header is longer than the " + std::to_string(limit_) + " bytes read of it)" : " (truncated?)";
    }

private:
    std::string path_;
    const std::byte* begin_;
    const std::byte* end_;
    bool limited_;
    uint64_t limit_;
    const std::byte* pos_ = begin_;
};

struct TypeName {
    uint32_t id;
    const char* name;
    uint32_t blockElements, blockBytes; // ggml's type traits (gguf-py's GGML_QUANT_SIZES)
};
// ggml's type table (ggml.h): names for messages, block sizes to bound the
// data of tensors we do not read (GgufOpenOptions::keepUnreadTypes).
constexpr TypeName kGgmlTypes[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},     {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},       {8, "q8_0", 32, 34},     {9, "q8_1", 32, 36},
    {10, "q2_k", 256, 84},     {11, "q3_k", 256, 110},    {12, "q4_k", 256, 144},  {13, "q5_k", 256, 176},
    {14, "q6_k", 256, 210},    {15, "q8_k", 256, 292},    {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},    {20, "iq4_nl", 32, 18},  {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},    {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},        {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},       {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},    {35, "tq2_0", 256, 66},  {39, "mxfp4", 32, 17},
    {40, "nvfp4", 64, 36},     {41, "q1_0", 128, 18},     {42, "q2_0", 64, 18},
};

const TypeName* ggmlType(uint32_t id) {
    for (const auto& t : kGgmlTypes)
        if (t.id == id) return &t;
    return nullptr;
}

} // namespace

const char* toString(GgufType t) {
    switch (t) {
    case GgufType::U8: return "uint8";
    case GgufType::I8: return "int8";
    case GgufType::U16: return "uint16";
    case GgufType::I16: return "int16";
    case GgufType::U32: return "uint32";
    case GgufType::I32: return "int32";
    case GgufType::F32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "uint64";
    case GgufType::I64: return "int64";
    case GgufType::F64: return "float64";
    }
    return "?";
}

std::string ggmlTypeName(uint32_t id) {
    if (const TypeName* t = ggmlType(id)) return t->name;
    return "type " + std::to_string(id);
}

bool GgufValue::isInteger() const {
    switch (type) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64: return true;
    default: return false;
    }
}

int64_t GgufTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::shared_ptr<const GgufFile> GgufFile::open(const std::filesystem::path& path) { return open(path, {}); }

std::shared_ptr<const GgufFile> GgufFile::open(const std::filesystem::path& path, const GgufOpenOptions& options) {
    std::shared_ptr<GgufFile> g(new GgufFile());
    g->file_ = std::make_unique<MappedFile>(path);
    Reader r(*g->file_, options.maxHeaderBytes);
    if (r.read<uint32_t>("header") != kMagic) r.fail("header", "not a GGUF file (no \"GGUF\" magic)");
    g->version_ = r.read<uint32_t>("header");
    if (g->version_ < 2 || g->version_ > 3)
        r.fail("header", "GGUF version " + std::to_string(g->version_) + " (versions 2 and 3 are read)");
    const uint64_t tensorCount = r.read<uint64_t>("tensor count");
    const uint64_t kvCount = r.read<uint64_t>("metadata count");
    // A key-value pair takes at least 13 bytes, a tensor entry at least 24.
    if (kvCount > r.remaining() / 13)
        r.fail("metadata count", std::to_string(kvCount) + " entries cannot fit in the " +
                                     std::to_string(r.remaining()) + " bytes left" + r.endNote());
    if (tensorCount > r.remaining() / 24)
        r.fail("tensor count", std::to_string(tensorCount) + " tensors cannot fit in the " +
                                   std::to_string(r.remaining()) + " bytes left" + r.endNote());

    for (uint64_t k = 0; k < kvCount; ++k) {
        const std::string where = "metadata entry " + std::to_string(k);
        std::string key = r.readString(where + " key", kMaxKeyBytes);
        if (key.empty()) r.fail(where, "an empty key");
        const uint32_t type = r.read<uint32_t>(key);
        if (!knownType(type)) r.fail(key, "unknown value type " + std::to_string(type));
        GgufValue v = r.readValue(GgufType(type), key, 0);
        if (g->metadata_.count(key)) r.fail(key, "the key appears twice");
        g->metadata_.emplace(std::move(key), std::move(v));
    }
    if (const GgufValue* a = g->find("general.alignment")) {
        if (!a->isInteger() || a->u == 0 || a->u > (1u << 20) || (a->u & (a->u - 1)) != 0)
            r.fail("general.alignment", "must be a power of two up to 1 MiB");
        g->alignment_ = uint32_t(a->u);
    }

    for (uint64_t k = 0; k < tensorCount; ++k) {
        GgufTensor t;
        t.name = r.readString("tensor entry " + std::to_string(k) + " name", kMaxNameBytes);
        const std::string where = "tensor " + t.name;
        if (t.name.empty()) r.fail("tensor entry " + std::to_string(k), "an empty name");
        const uint32_t dims = r.read<uint32_t>(where);
        if (dims == 0 || dims > kMaxDims) r.fail(where, std::to_string(dims) + " dimensions (1 to 4)");
        std::vector<int64_t> ne(dims);
        uint64_t elements = 1;
        for (uint32_t d = 0; d < dims; ++d) {
            const uint64_t n = r.read<uint64_t>(where);
            if (n == 0 || n > (1ull << 40)) r.fail(where, "dimension " + std::to_string(d) + " of " + std::to_string(n));
            if (elements > (1ull << 48) / n) r.fail(where, "more than 2^48 elements");
            elements *= n;
            ne[d] = int64_t(n);
        }
        t.shape.assign(ne.rbegin(), ne.rend());
        t.ggmlType = r.read<uint32_t>(where);
        t.offset = r.read<uint64_t>(where);
        size_t rowBytes = 0;
        if (t.ggmlType == 0) t.dtype = DType::F32, rowBytes = size_t(ne[0]) * 4;
        else if (t.ggmlType == 1) t.dtype = DType::F16, rowBytes = size_t(ne[0]) * 2;
        else if (t.ggmlType == 30) t.dtype = DType::BF16, rowBytes = size_t(ne[0]) * 2;
        else if ((t.quant = quantTypeFromGgml(t.ggmlType))) {
            if (uint64_t(ne[0]) % quantLayout(*t.quant).blockElements != 0)
                r.fail(where, "rows of " + std::to_string(ne[0]) + " weights are not whole " + toString(*t.quant) +
                                  " blocks of " + std::to_string(quantLayout(*t.quant).blockElements));
            rowBytes = quantRowBytes(*t.quant, size_t(ne[0]));
        } else if (const TypeName* known = ggmlType(t.ggmlType); known && options.keepUnreadTypes) {
            if (uint64_t(ne[0]) % known->blockElements != 0)
                r.fail(where, "rows of " + std::to_string(ne[0]) + " weights are not whole " + known->name +
                                  " blocks of " + std::to_string(known->blockElements));
            rowBytes = size_t(ne[0]) / known->blockElements * known->blockBytes;
        } else
            r.fail(where, "tensor type " + ggmlTypeName(t.ggmlType) + " (" + std::to_string(t.ggmlType) +
                              ") is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k are)");
        t.nbytes = rowBytes * size_t(elements / uint64_t(ne[0]));
        if (t.offset % g->alignment_ != 0)
            r.fail(where, "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                              std::to_string(g->alignment_));
        if (g->tensorIndex_.count(t.name)) r.fail(where, "the name appears twice");
        g->tensorIndex_.emplace(t.name, g->tensors_.size());
        g->tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    const uint64_t headerEnd = r.offset();
    const uint64_t dataStart = (headerEnd + g->alignment_ - 1) / g->alignment_ * g->alignment_;
    const uint64_t fileSize = g->file_->size();
    if (dataStart > fileSize && !g->tensors_.empty()) r.fail("data", "the file ends before its tensor data starts");
    const uint64_t dataBytes = fileSize >= dataStart ? fileSize - dataStart : 0;
    std::vector<const GgufTensor*> byOffset;
    for (GgufTensor& t : g->tensors_) {
        if (t.offset > dataBytes || t.nbytes > dataBytes - t.offset)
            r.fail("tensor " + t.name, "bytes " + std::to_string(t.offset) + " to " + std::to_string(t.offset + t.nbytes) +
                                           " of the data lie past its end (" + std::to_string(dataBytes) + " bytes)");
        t.data = g->file_->data() + dataStart + t.offset;
        byOffset.push_back(&t);
    }
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < byOffset.size(); ++k)
        if (byOffset[k - 1]->offset + byOffset[k - 1]->nbytes > byOffset[k]->offset)
            r.fail("tensor " + byOffset[k]->name, "its data overlaps tensor " + byOffset[k - 1]->name);
    return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::require(const std::string& key) const {
    if (const GgufValue* v = find(key)) return *v;
    throw Error(path().string() + ": " + key + ": missing");
}

std::optional<std::string> GgufFile::getString(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::String)
        throw Error(path().string() + ": " + key + ": a " + toString(v->type) + ", expected a string");
    return v->s;
}

std::optional<int64_t> GgufFile::getInteger(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->isInteger()) throw Error(path().string() + ": " + key + ": a " + toString(v->type) + ", expected an integer");
    if (v->type == GgufType::U64 && v->u > uint64_t(std::numeric_limits<int64_t>::max()))
        throw Error(path().string() + ": " + key + ": " + std::to_string(v->u) + " is out of range");
    return v->i;
}

std::optional<double> GgufFile::getNumber(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->isNumber()) throw Error(path().string() + ": " + key + ": a " + toString(v->type) + ", expected a number");
    return v->isInteger() ? double(v->i) : v->f;
}

std::optional<bool> GgufFile::getBool(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::Bool) throw Error(path().string() + ": " + key + ": a " + toString(v->type) + ", expected a bool");
    return v->u != 0;
}

const GgufTensor* GgufFile::findTensor(const std::string& name) const {
    const auto it = tensorIndex_.find(name);
    return it == tensorIndex_.end() ? nullptr : &tensors_[it->second];
}

} // namespace moe
