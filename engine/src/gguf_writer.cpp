#include "moe/gguf_writer.h"

#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/quant.h"

#include <cstdint>
#include <cstring>

namespace moe {

namespace {

template <class T>
void put(std::string& out, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
}

void putString(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
}

std::string typed(GgufType t) {
    std::string out;
    put<uint32_t>(out, uint32_t(t));
    return out;
}

// The value's bytes after its type tag; arrays carry their element type and count.
void putValue(std::string& out, GgufType type, const GgufValue& v, size_t index) {
    auto integer = [&]() -> int64_t { return index == SIZE_MAX ? (v.type == GgufType::U8 || v.type == GgufType::U16 || v.type == GgufType::U32 || v.type == GgufType::U64 || v.type == GgufType::Bool ? int64_t(v.u) : v.i) : v.ints[index]; };
    auto real = [&]() -> double { return index == SIZE_MAX ? v.f : v.reals[index]; };
    switch (type) {
    case GgufType::U8: put<uint8_t>(out, uint8_t(integer())); break;
    case GgufType::I8: put<int8_t>(out, int8_t(integer())); break;
    case GgufType::U16: put<uint16_t>(out, uint16_t(integer())); break;
    case GgufType::I16: put<int16_t>(out, int16_t(integer())); break;
    case GgufType::U32: put<uint32_t>(out, uint32_t(integer())); break;
    case GgufType::I32: put<int32_t>(out, int32_t(integer())); break;
    case GgufType::U64: put<uint64_t>(out, uint64_t(integer())); break;
    case GgufType::I64: put<int64_t>(out, integer()); break;
    case GgufType::Bool: put<uint8_t>(out, integer() ? 1 : 0); break;
    case GgufType::F32: put<float>(out, float(real())); break;
    case GgufType::F64: put<double>(out, real()); break;
    case GgufType::String: putString(out, index == SIZE_MAX ? v.s : v.strings[index]); break;
    case GgufType::Array: {
        const GgufValue& a = index == SIZE_MAX ? v : v.arrays[index];
        put<uint32_t>(out, uint32_t(a.elementType));
        put<uint64_t>(out, a.size());
        for (size_t i = 0; i < a.size(); ++i) putValue(out, a.elementType, a, i);
        break;
    }
    }
}

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

} // namespace

uint32_t ggmlTypeOf(DType d) {
    if (d == DType::F32) return 0;
    if (d == DType::F16) return 1;
    if (d == DType::BF16) return 30;
    if (const auto q = quantTypeOf(d)) return ggmlTypeId(*q);
    throw Error(std::string("GGUF has no tensor type for dtype ") + dtypeName(d));
}

void GgufWriter::set(const std::string& key, std::string encoded) {
    for (Entry& e : entries_)
        if (e.key == key) {
            e.encoded = std::move(encoded);
            return;
        }
    entries_.push_back({key, std::move(encoded)});
}

void GgufWriter::setValue(const std::string& key, const GgufValue& v) {
    std::string e = typed(v.type);
    putValue(e, v.type, v, SIZE_MAX);
    set(key, std::move(e));
}

bool GgufWriter::has(const std::string& key) const {
    for (const Entry& e : entries_)
        if (e.key == key) return true;
    return false;
}

void GgufWriter::setString(const std::string& key, const std::string& v) {
    std::string e = typed(GgufType::String);
    putString(e, v);
    set(key, std::move(e));
}
void GgufWriter::setU32(const std::string& key, uint32_t v) {
    std::string e = typed(GgufType::U32);
    put(e, v);
    set(key, std::move(e));
}
void GgufWriter::setI32(const std::string& key, int32_t v) {
    std::string e = typed(GgufType::I32);
    put(e, v);
    set(key, std::move(e));
}
void GgufWriter::setU64(const std::string& key, uint64_t v) {
    std::string e = typed(GgufType::U64);
    put(e, v);
    set(key, std::move(e));
}
void GgufWriter::setF32(const std::string& key, float v) {
    std::string e = typed(GgufType::F32);
    put(e, v);
    set(key, std::move(e));
}
void GgufWriter::setBool(const std::string& key, bool v) {
    std::string e = typed(GgufType::Bool);
    put<uint8_t>(e, v ? 1 : 0);
    set(key, std::move(e));
}
void GgufWriter::setStrings(const std::string& key, const std::vector<std::string>& v) {
    std::string e = typed(GgufType::Array);
    put<uint32_t>(e, uint32_t(GgufType::String));
    put<uint64_t>(e, v.size());
    for (const auto& s : v) putString(e, s);
    set(key, std::move(e));
}
void GgufWriter::setF32s(const std::string& key, const std::vector<float>& v) {
    std::string e = typed(GgufType::Array);
    put<uint32_t>(e, uint32_t(GgufType::F32));
    put<uint64_t>(e, v.size());
    for (float f : v) put(e, f);
    set(key, std::move(e));
}
void GgufWriter::setI32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string e = typed(GgufType::Array);
    put<uint32_t>(e, uint32_t(GgufType::I32));
    put<uint64_t>(e, v.size());
    for (int32_t i : v) put(e, i);
    set(key, std::move(e));
}

void GgufWriter::addTensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
    if (shape.empty() || shape.size() > 4) throw Error("GGUF tensor " + name + ": needs 1 to 4 dimensions");
    for (const Tensor& t : tensors_)
        if (t.name == name) throw Error("GGUF tensor " + name + ": added twice");
    uint64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= uint64_t(shape[i]);
    Tensor t{name, shape, dtype, rows * rowBytes(dtype, size_t(shape.back()), name), 0};
    ggmlTypeOf(dtype); // throws for a dtype GGUF cannot hold
    t.offset = dataBytes_;
    dataBytes_ = alignUp(dataBytes_ + t.bytes, kAlignment);
    tensors_.push_back(std::move(t));
}

std::string GgufWriter::header() const {
    std::string h = "GGUF";
    put<uint32_t>(h, 3);
    put<uint64_t>(h, tensors_.size());
    put<uint64_t>(h, entries_.size());
    for (const Entry& e : entries_) {
        putString(h, e.key);
        h += e.encoded;
    }
    for (const Tensor& t : tensors_) {
        putString(h, t.name);
        put<uint32_t>(h, uint32_t(t.shape.size()));
        for (size_t i = t.shape.size(); i-- > 0;) put<uint64_t>(h, uint64_t(t.shape[i])); // ne[0] is the row
        put<uint32_t>(h, ggmlTypeOf(t.dtype));
        put<uint64_t>(h, t.offset);
    }
    h.resize(alignUp(h.size(), kAlignment), '\0');
    return h;
}

uint64_t GgufWriter::fileBytes() const { return header().size() + dataBytes_; }

bool GgufWriter::write(const std::filesystem::path& path,
                       const std::function<std::span<const std::byte>(size_t)>& bytesOf,
                       const std::atomic<bool>* cancel) const {
    return writeStreamed(path, [&](size_t i, const TensorSink& put) { put(bytesOf(i)); }, cancel);
}

bool GgufWriter::writeStreamed(const std::filesystem::path& path,
                               const std::function<void(size_t, const TensorSink&)>& writeTensor,
                               const std::atomic<bool>* cancel) const {
    AtomicFileWriter out(path);
    out.write(header());
    const std::string zeros(kAlignment, '\0');
    for (size_t i = 0; i < tensors_.size(); ++i) {
        if (cancel && cancel->load()) return false;
        const Tensor& t = tensors_[i];
        uint64_t given = 0;
        auto wrongSize = [&](uint64_t bytes) {
            return Error(path.string() + ": tensor " + t.name + ": " + std::to_string(bytes) + " bytes given, " +
                         std::to_string(t.bytes) + " expected");
        };
        writeTensor(i, [&](std::span<const std::byte> piece) {
            if (given + piece.size() > t.bytes) throw wrongSize(given + piece.size());
            out.write(piece.data(), piece.size());
            given += piece.size();
        });
        if (given != t.bytes) throw wrongSize(given);
        out.write(zeros.data(), size_t(alignUp(t.bytes, kAlignment) - t.bytes));
    }
    if (cancel && cancel->load()) return false;
    out.commit();
    return true;
}

} // namespace moe
