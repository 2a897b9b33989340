#pragma once
// Quantizing 16/32-bit weights while they are loaded (--quantize, the
// selector key `quantize`): which block type each weight matrix gets, after
// llama.cpp's llama-quantize mixes, and the conversion of one tensor at a
// time so that the host never holds a second copy of the whole model.
#include "moe/device_matrix.h"
#include "moe/quant.h"
#include "moe/safetensors.h"

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

// The part of the model a matrix plays, as llama-quantize tells them apart.
enum class WeightRole { Embedding, Output, AttentionQ, AttentionK, AttentionV, AttentionOutput, FfnGate, FfnUp, FfnDown };

struct WeightPlace {
    WeightRole role = WeightRole::FfnGate;
    int layer = 0, layers = 1;
    bool tiedEmbedding = false; // the embedding is also the output head
    int experts = 0;            // experts per layer in the model (llama.cpp gives 8-expert models more bits)
};

// The dtype a matrix of `cols` columns in `source` dtype gets: a block type,
// or `source` itself when the scheme is None, the source is already
// quantized, or no block type fits the row (llama.cpp falls back Q4_K → Q5_0,
// Q6_K → Q8_0, and to 16 bits when not even 32 divides the row; we keep the
// source's own 16/32 bits there).
DType quantizedDType(QuantizeScheme s, const WeightPlace& place, DType source, int64_t cols);

// A tensor converted on the host: `view` points into `bytes`.
struct HostTensor {
    TensorView view;
    std::vector<std::byte> bytes;
};
// `t` (2-D, F32/F16/BF16) quantized to `type` row by row; releases the
// source's mapped pages afterwards. Throws moe::Cancelled when `cancel` is
// set (polled between rows).
HostTensor quantizeTensor(const TensorView& t, DType type, const std::atomic<bool>* cancel = nullptr);

// Uploads a weight matrix in the dtype quantizedDType() picks for it.
DeviceMatrix uploadWeight(vk::Context& ctx, const TensorView& t, QuantizeScheme s, const WeightPlace& place,
                          const DeviceMatrix::RowOrder& rowOrder = {}, const std::atomic<bool>* cancel = nullptr);

} // namespace moe
