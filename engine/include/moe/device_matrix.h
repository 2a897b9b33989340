#pragma once
// Weight matrices on the device: padded rows, chunks within the device's
// buffer limits, views into stacked buffers, and paging from mapped files.
#include "moe/safetensors.h"
#include "moe/vk.h"

#include <cstdint>
#include <vector>

namespace moe {

// A weight matrix [rows, cols] on the device. Float rows are padded to a
// multiple of 8 elements (zero-filled) so shaders load 8 weights at a time;
// quantized rows are whole blocks of ggml's layout (moe/quant.h), laid out
// on the device so that shaders read aligned words (Q8_0/Q4_0/Q5_0 in pairs
// of blocks, Q6_K padded to 212 bytes; see device_matrix.cpp). The rows are split into chunks that each fit
// maxStorageBufferRange.
struct DeviceMatrix {
    struct Chunk {
        vk::Buffer buffer; // empty when the chunk is a view into another matrix's buffer
        uint32_t firstRow = 0;
        uint32_t rowCount = 0;
        // A view: the chunk's bytes lie in `viewOf` at `viewOffset` (an expert
        // inside its layer's stacked experts).
        const vk::Buffer* viewOf = nullptr;
        uint64_t viewOffset = 0, viewBytes = 0;
        vk::BufferView binding() const {
            return viewOf ? vk::BufferView(*viewOf, viewOffset, viewBytes) : vk::BufferView(buffer);
        }
    };
    DType dtype = DType::F32;
    uint32_t rows = 0;
    uint32_t cols = 0;
    uint32_t colsPadded = 0;
    std::vector<Chunk> chunks;
    // The memory-mapped file bytes it was uploaded from (row-major, unpadded,
    // `dtype`), so that a paged-out expert uploads again straight from the
    // file; null when it was made from host data that does not outlive it.
    // Whoever frees the chunks to page the matrix out keeps the mapping alive.
    const std::byte* mappedSource = nullptr;
    const MappedFile* mappedFile = nullptr;

    // Bytes of one padded row on the device.
    uint64_t rowBytes() const;
    // Device bytes of the chunks (a view counts its bytes; the buffer it lies in is not counted again).
    uint64_t bytes() const;
    // Device bytes of the chunks when uploaded (bytes() is 0 while paged out).
    uint64_t residentBytes() const;
    // Destination row r is source row order[r] (empty: the rows as they are).
    using RowOrder = std::vector<uint32_t>;
    // Uploads a 2-D tensor of a float or block dtype; releases its mapped
    // pages afterwards. A reordered matrix has no mapped source.
    static DeviceMatrix upload(vk::Context& ctx, const TensorView& t, const RowOrder& rowOrder = {});
    // The matrix upload(t) makes, paged out from the start: the chunk layout
    // and the mapped source, no device memory until uploadFromMapping().
    static DeviceMatrix mapped(vk::Context& ctx, const TensorView& t);
    // Uploads 2-D tensors of one dtype and column count as one matrix, their
    // rows one after another (q, k and v as one projection).
    // `orders`: empty, or one (possibly empty) row order per part.
    static DeviceMatrix uploadStacked(vk::Context& ctx, const std::vector<const TensorView*>& parts,
                                      const std::vector<RowOrder>& orders = {});
    // Uploads host data in `dtype` layout (tests and synthetic weights).
    static DeviceMatrix fromHost(vk::Context& ctx, DType dtype, uint32_t rows, uint32_t cols, const void* data);
    // Uploads a paged-out matrix again from its mapped source (same chunks);
    // returns the bytes uploaded.
    uint64_t uploadFromMapping(vk::Context& ctx);
    // Chunk size in rows for a row of `bytesPerRow` (exposed for tests).
    static uint32_t rowsPerChunk(const vk::Context& ctx, uint64_t bytesPerRow);
};

// Any F32/F16/BF16 vector tensor as a float32 device buffer (norm weights, biases).
vk::Buffer uploadAsFloat32(vk::Context& ctx, const TensorView& t);
vk::Buffer uploadFloats(vk::Context& ctx, const std::vector<float>& values);

} // namespace moe
