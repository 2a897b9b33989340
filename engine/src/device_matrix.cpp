#include "moe/device_matrix.h"

#include "moe/error.h"
#include "moe/quant.h"

#include <algorithm>
#include <vector>
#include <cstring>
#include <span>
#include <string>

namespace moe {
namespace {

uint32_t roundUp(uint32_t v, uint32_t m) { return (v + m - 1) / m * m; }

// The dtypes the weight-reading shaders are built for.
void requireWeightDType(DType t) {
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16 && !isQuantized(t))
        throw Error(std::string("weights of dtype ") + dtypeName(t) +
                    " are not supported (F32, F16, BF16 and the quantized block types are)");
}

// The device layout of block types (shaders/quant.glsl), chosen so that a
// shader lane reads whole 16-byte texels of a row and finds each weight's
// code where a mask alone extracts it: for Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1
// the quants of every block first, then a plane of per-block scales (Q8_0,
// Q4_0: d; Q4_1, Q5_1: d, m), the row padded with zero blocks to a
// whole pair. Q8_0's quants are stored plus 128 (unsigned); Q4_0's and
// Q4_1's as ggml has them; Q5_0's and Q5_1's as 5-bit codes (nibble and
// fifth bit together), 64 (a pair of blocks) in 3 texels: weights 4k .. 4k + 3
// of the pair at bits 5(k % 6) of the 4 words of texel k / 6; Q5_0's two d
// in the top bytes of the third texel's words (fields 4 and 5 of that texel
// hold no codes), so Q5_0 has no scale plane. Q6_K's quants
// (ql and qh, 192 bytes a block), then every block's 16 scales, then every
// block's d. Q4_K and Q5_K as ggml stores them. Rows are padded to whole
// texels.
bool legacyBlocks(DType t) {
    return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1;
}
bool repackedOnDevice(DType t) { return legacyBlocks(t) || t == DType::Q6_K; }
bool fiveBitCodes(DType t) { return t == DType::Q5_0 || t == DType::Q5_1; }

struct LegacyLayout {
    size_t blockBytes; // ggml's block
    size_t quantBytes; // the block's quants on the device
    size_t tailBytes;  // its entry in the scale plane
};
LegacyLayout legacyLayout(DType t) {
    switch (t) {
    case DType::Q8_0: return {34, 32, 2};
    case DType::Q4_0: return {18, 16, 2};
    case DType::Q4_1: return {20, 16, 4};
    case DType::Q5_0: return {22, 24, 0}; // d among the codes
    default: return {24, 24, 4}; // Q5_1
    }
}

// Float rows are padded to 8 elements; block rows to whole pairs of legacy
// blocks (k-quant rows are whole blocks already).
uint32_t paddedCols(DType t, uint32_t cols) {
    if (legacyBlocks(t)) return roundUp(cols, 64);
    return isQuantized(t) ? cols : roundUp(std::max(cols, 1u), 8);
}

uint64_t deviceRowBytes(DType t, uint32_t colsPadded) {
    if (legacyBlocks(t)) {
        const LegacyLayout l = legacyLayout(t);
        return (uint64_t(colsPadded / 32) * (l.quantBytes + l.tailBytes) + 15) / 16 * 16;
    }
    if (t == DType::Q6_K) return (uint64_t(colsPadded / 256) * 210 + 15) / 16 * 16;
    return moe::rowBytes(t, colsPadded);
}

void storeWord(std::byte* dst, uint32_t w) { std::memcpy(dst, &w, 4); }
uint32_t loadWord(const std::byte* src) {
    uint32_t w;
    std::memcpy(&w, src, 4);
    return w;
}

// The 32 five-bit codes of a Q5_0 (qh at byte 2) or Q5_1 (qh at byte 4)
// block: weight j's low nibble is byte j (j < 16) or the high nibble of byte
// j - 16 of the quants, its fifth bit bit j of qh.
void fiveBitCodesOf(DType t, const std::byte* block, uint8_t codes[32]) {
    const size_t qhAt = t == DType::Q5_0 ? 2 : 4;
    const uint32_t qh = loadWord(block + qhAt);
    const std::byte* qs = block + qhAt + 4;
    for (uint32_t j = 0; j < 32; ++j) {
        const auto byte = std::to_integer<uint32_t>(qs[j % 16]);
        codes[j] = uint8_t(((j < 16 ? byte : byte >> 4) & 0xf) | (((qh >> j) & 1) << 4));
    }
}

// One row of `cols` weights from ggml's layout into the device layout
// (`dst` holds deviceRowBytes zero bytes).
void packDeviceRow(DType t, const std::byte* src, uint32_t cols, std::byte* dst) {
    if (t == DType::Q6_K) {
        const uint32_t blocks = cols / 256;
        for (uint32_t b = 0; b < blocks; ++b) {
            const std::byte* in = src + size_t(b) * 210;
            std::memcpy(dst + size_t(b) * 192, in, 192);                        // ql, qh
            std::memcpy(dst + size_t(blocks) * 192 + size_t(b) * 16, in + 192, 16); // scales
            std::memcpy(dst + size_t(blocks) * 208 + size_t(b) * 2, in + 208, 2);   // d
        }
        return;
    }
    const LegacyLayout l = legacyLayout(t);
    const uint32_t blocks = cols / 32, padded = paddedCols(t, cols) / 32;
    std::byte* tail = dst + size_t(padded) * l.quantBytes;
    for (uint32_t b = 0; b < blocks; ++b) {
        const std::byte* in = src + size_t(b) * l.blockBytes;
        std::byte* entry = tail + size_t(b) * l.tailBytes;
        std::memcpy(entry, in, l.tailBytes); // d (and m)
        if (fiveBitCodes(t)) {
            // Block b is half h of pair b / 2: its groups k = 8h .. 8h + 7 of the pair's 16.
            uint8_t codes[32];
            fiveBitCodesOf(t, in, codes);
            std::byte* pair = dst + size_t(b / 2) * 2 * l.quantBytes;
            for (uint32_t g = 0; g < 8; ++g) {
                const uint32_t k = 8 * (b % 2) + g;
                for (uint32_t c = 0; c < 4; ++c) {
                    std::byte* word = pair + 16 * (k / 6) + 4 * c;
                    storeWord(word, loadWord(word) | uint32_t(codes[4 * g + c]) << (5 * (k % 6)));
                }
            }
            if (t == DType::Q5_0) // d's low byte, then its high byte, in words 8 + 2h and 9 + 2h
                for (uint32_t i = 0; i < 2; ++i) {
                    std::byte* word = pair + 4 * (8 + 2 * (b % 2) + i);
                    storeWord(word, loadWord(word) | uint32_t(std::to_integer<uint8_t>(in[i])) << 24);
                }
            continue;
        }
        std::byte* quants = dst + size_t(b) * l.quantBytes;
        std::memcpy(quants, in + (l.blockBytes - l.quantBytes), l.quantBytes);
        if (t == DType::Q8_0) // signed bytes plus 128
            for (size_t i = 0; i < l.quantBytes; ++i) quants[i] ^= std::byte{0x80};
    }
}

// Texel views need whole 16-byte texels; block rows (34, 18, ... bytes) need not end on one.
uint64_t chunkBufferBytes(uint64_t bytes) { return (bytes + 15) / 16 * 16; }

} // namespace

uint64_t DeviceMatrix::bytes() const {
    uint64_t n = 0;
    for (const auto& c : chunks) n += c.viewOf ? c.viewBytes : c.buffer.size();
    return n;
}

uint64_t DeviceMatrix::residentBytes() const {
    uint64_t n = 0;
    for (const auto& c : chunks) n += uint64_t(c.rowCount) * rowBytes();
    return n;
}

uint64_t DeviceMatrix::rowBytes() const { return deviceRowBytes(dtype, colsPadded); }

uint32_t DeviceMatrix::rowsPerChunk(const vk::Context& ctx, uint64_t bytesPerRow) {
    uint64_t limit = std::min<uint64_t>(ctx.maxStorageRange(), ctx.info().maxMemoryAllocationSize
                                                                    ? ctx.info().maxMemoryAllocationSize
                                                                    : ctx.maxStorageRange());
    if (ctx.texelReads()) limit = std::min<uint64_t>(limit, ctx.info().maxTexelBufferElements * 16);
    uint64_t rows = limit / bytesPerRow;
    if (rows == 0) throw Error("a single weight row of " + std::to_string(bytesPerRow) +
                               " bytes exceeds the device's storage-buffer range");
    return static_cast<uint32_t>(std::min<uint64_t>(rows, 0xffffffffu));
}

namespace {
// Rows of one source, row-major and unpadded.
struct RowSource {
    const std::byte* data;
    uint32_t rows;
};

// Uploads the rows of `sources`, one after another, into padded chunks;
// destination row r is source row rowOrder[r] when an order is given.
DeviceMatrix uploadRows(vk::Context& ctx, DType dtype, uint32_t cols, const std::vector<RowSource>& sources,
                        std::span<const uint32_t> rowOrder = {}) {
    requireWeightDType(dtype);
    DeviceMatrix m;
    m.dtype = dtype;
    m.rows = 0;
    for (const auto& s : sources) m.rows += s.rows;
    if (m.rows == 0) throw Error("internal: empty weight matrix");
    if (!rowOrder.empty() && rowOrder.size() != m.rows) throw Error("internal: a row order of the wrong length");
    m.cols = cols;
    m.colsPadded = paddedCols(dtype, cols);
    const uint64_t srcRow = rowBytes(dtype, cols);
    const uint64_t dstRow = m.rowBytes();
    const uint32_t perChunk = DeviceMatrix::rowsPerChunk(ctx, dstRow);
    // Source row r of the whole matrix, and how many rows follow it in the same source.
    auto rowAt = [&](uint32_t r) -> std::pair<const std::byte*, uint32_t> {
        for (const auto& s : sources) {
            if (r < s.rows) return {s.data + uint64_t(r) * srcRow, s.rows - r};
            r -= s.rows;
        }
        throw Error("internal: row past the end of a weight matrix");
    };
    const uint32_t slabRows = std::max<uint32_t>(1, static_cast<uint32_t>((16ull << 20) / dstRow));
    std::vector<std::byte> padded;
    for (uint32_t first = 0; first < m.rows; first += perChunk) {
        DeviceMatrix::Chunk c;
        c.firstRow = first;
        c.rowCount = std::min(perChunk, m.rows - first);
        const uint64_t chunkBytes = uint64_t(c.rowCount) * dstRow;
        c.buffer = vk::Buffer(ctx, chunkBufferBytes(chunkBytes), vk::MemoryUse::Device);
        if (chunkBytes % 16 != 0) {
            const std::byte zeros[16] = {};
            c.buffer.upload(zeros, chunkBufferBytes(chunkBytes) - chunkBytes, chunkBytes);
        }
        for (uint32_t r0 = 0; r0 < c.rowCount;) {
            if (rowOrder.empty() && srcRow == dstRow && !repackedOnDevice(dtype)) {
                auto [src, following] = rowAt(first + r0);
                const uint32_t run = std::min(following, c.rowCount - r0);
                c.buffer.upload(src, uint64_t(run) * srcRow, uint64_t(r0) * dstRow);
                r0 += run;
                continue;
            }
            // Repack into padded (or reordered) rows, a bounded slab at a time.
            const uint32_t n = std::min(slabRows, c.rowCount - r0);
            padded.assign(uint64_t(n) * dstRow, std::byte{0});
            for (uint32_t r = 0; r < n; ++r) {
                const uint32_t dst = first + r0 + r;
                const std::byte* row = rowAt(rowOrder.empty() ? dst : rowOrder[dst]).first;
                if (repackedOnDevice(dtype))
                    packDeviceRow(dtype, row, cols, padded.data() + uint64_t(r) * dstRow);
                else
                    std::memcpy(padded.data() + uint64_t(r) * dstRow, row, srcRow);
            }
            c.buffer.upload(padded.data(), padded.size(), uint64_t(r0) * dstRow);
            r0 += n;
        }
        m.chunks.push_back(std::move(c));
    }
    return m;
}
} // namespace

DeviceMatrix DeviceMatrix::fromHost(vk::Context& ctx, DType dtype, uint32_t rows, uint32_t cols, const void* data) {
    if (rows == 0) throw Error("internal: empty weight matrix");
    return uploadRows(ctx, dtype, cols, {{static_cast<const std::byte*>(data), rows}});
}

DeviceMatrix DeviceMatrix::uploadStacked(vk::Context& ctx, const std::vector<const TensorView*>& parts,
                                         const std::vector<RowOrder>& orders) {
    std::vector<RowSource> sources;
    std::vector<uint32_t> order;
    if (!orders.empty() && orders.size() != parts.size()) throw Error("internal: one row order per stacked part");
    uint32_t base = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
        const TensorView* t = parts[i];
        if (t->shape.size() != 2 || t->dtype != parts[0]->dtype || t->shape[1] != parts[0]->shape[1])
            throw Error("internal: stacked tensors need one dtype and one column count (" + t->name + ")");
        const auto rows = static_cast<uint32_t>(t->shape[0]);
        sources.push_back({t->data, rows});
        if (!orders.empty()) {
            if (orders[i].empty())
                for (uint32_t r = 0; r < rows; ++r) order.push_back(base + r);
            else if (orders[i].size() != rows)
                throw Error("internal: a row order of the wrong length (" + t->name + ")");
            else
                for (uint32_t r : orders[i]) order.push_back(base + r);
        }
        base += rows;
    }
    DeviceMatrix m = uploadRows(ctx, parts[0]->dtype, static_cast<uint32_t>(parts[0]->shape[1]), sources, order);
    for (const TensorView* t : parts)
        if (t->file) t->file->releasePages(t->data, t->nbytes);
    return m;
}

DeviceMatrix DeviceMatrix::upload(vk::Context& ctx, const TensorView& t, const RowOrder& rowOrder) {
    if (t.shape.size() != 2)
        throw Error((t.file ? t.file->path().string() + ": " : std::string()) + "tensor " + t.name +
                    " should be 2-D but has shape " + t.shapeString());
    if (t.shape[0] == 0) throw Error("internal: empty weight matrix");
    DeviceMatrix m = uploadRows(ctx, t.dtype, static_cast<uint32_t>(t.shape[1]),
                                {{t.data, static_cast<uint32_t>(t.shape[0])}}, rowOrder);
    if (!rowOrder.empty()) {
        // A reordered matrix cannot be uploaded again from its bytes as they lie.
        if (t.file) t.file->releasePages(t.data, t.nbytes);
        return m;
    }
    if (t.file) {
        t.file->releasePages(t.data, t.nbytes);
        m.mappedSource = t.data;
        m.mappedFile = t.file;
    }
    return m;
}

DeviceMatrix DeviceMatrix::mapped(vk::Context& ctx, const TensorView& t) {
    if (t.shape.size() != 2 || !t.file)
        throw Error("internal: only a 2-D tensor of a mapped file can stay paged out (" + t.name + ")");
    requireWeightDType(t.dtype);
    DeviceMatrix m;
    m.dtype = t.dtype;
    m.rows = static_cast<uint32_t>(t.shape[0]);
    m.cols = static_cast<uint32_t>(t.shape[1]);
    m.colsPadded = paddedCols(m.dtype, m.cols);
    if (m.rows == 0) throw Error("internal: empty weight matrix");
    // The same chunks as fromHost(), so uploadFromMapping() fills them.
    const uint32_t perChunk = rowsPerChunk(ctx, m.rowBytes());
    for (uint32_t first = 0; first < m.rows; first += perChunk)
        m.chunks.push_back({vk::Buffer(), first, std::min(perChunk, m.rows - first)});
    m.mappedSource = t.data;
    m.mappedFile = t.file;
    return m;
}

uint64_t DeviceMatrix::uploadFromMapping(vk::Context& ctx) {
    if (!mappedSource) throw Error("internal: a weight matrix without a mapped source cannot be uploaded again");
    const uint64_t sourceBytes = uint64_t(rows) * moe::rowBytes(dtype, cols);
    DeviceMatrix again;
    if (mappedFile) {
        // The file may have changed since it was loaded: read it through the
        // guard into host memory first (a second copy, small next to the
        // page-in itself), so the upload never touches the mapping.
        std::vector<std::byte> copy(static_cast<size_t>(sourceBytes));
        mappedFile->copyOut(copy.data(), mappedSource, copy.size());
        again = fromHost(ctx, dtype, rows, cols, copy.data());
    } else {
        again = fromHost(ctx, dtype, rows, cols, mappedSource);
    }
    chunks = std::move(again.chunks);
    // The pages were only needed for the copy: do not keep them in host memory.
    if (mappedFile) mappedFile->releasePages(mappedSource, sourceBytes);
    return bytes();
}

vk::Buffer uploadFloats(vk::Context& ctx, const std::vector<float>& values) {
    vk::Buffer b(ctx, values.size() * sizeof(float), vk::MemoryUse::Device);
    b.upload(values.data(), values.size() * sizeof(float));
    return b;
}

vk::Buffer uploadAsFloat32(vk::Context& ctx, const TensorView& t) {
    // Padded with zeros to whole 16-byte texels, so that norm weights can be
    // read as 4-float texels like the activations they scale.
    std::vector<float> values = toFloat32(t);
    values.resize(roundUp(uint32_t(values.size()), 4), 0.0f);
    vk::Buffer b = uploadFloats(ctx, values);
    if (t.file) t.file->releasePages(t.data, t.nbytes);
    return b;
}

} // namespace moe
