#pragma once
// ggml's quantized block types, byte for byte as GGUF files hold them:
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32 weights) and the k-quants Q4_K,
// Q5_K, Q6_K (super-blocks of 256). Host-side quantize and dequantize of
// rows; the shaders read the same layouts.
#include "moe/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace moe {

enum class QuantType : uint8_t { Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K };

struct QuantLayout {
    uint32_t blockElements; // weights per block
    uint32_t blockBytes;    // bytes per block
};
QuantLayout quantLayout(QuantType t);
const char* toString(QuantType t); // "q8_0", ..., "q6_k" (ggml's names, lower case)
std::optional<QuantType> parseQuantType(std::string_view name);
// ggml's type number (GGUF's tensor type field), and back; nullopt when it
// is not one of the types above.
uint32_t ggmlTypeId(QuantType t);
std::optional<QuantType> quantTypeFromGgml(uint32_t ggmlType);

// The block type a DType names (DType::Q4_K → Q4_K), and back.
std::optional<QuantType> quantTypeOf(DType t);
DType toDType(QuantType t);
// Bytes of a row of `n` elements of any dtype, block types included; throws
// naming `what` when a block type's row is not a whole number of blocks.
size_t rowBytes(DType t, size_t n, const std::string& what = {});

// Bytes of a row of `n` weights; throws moe::Error when `n` is not a whole
// number of blocks (`what` names the tensor).
size_t quantRowBytes(QuantType t, size_t n, const std::string& what = {});

// dst[0..n) = the weights of the row's blocks. `src` holds quantRowBytes(t, n) bytes.
void dequantizeRow(QuantType t, std::span<const std::byte> src, std::span<float> dst);
// The row's blocks from src[0..n): Q8_0 and the legacy types as ggml's
// reference quantizers round them; the k-quants with per-block scales (and
// minimums) fitted to each block's range, quantized to 6 or 8 bits, and the
// weights rounded against the quantized scales.
void quantizeRow(QuantType t, std::span<const float> src, std::span<std::byte> dst);

// Quantizing 16/32-bit weights on load (moe/quantize_on_load.h).
// q8_0: every matrix Q8_0. q4_0: Q4_0, the output head Q6_K. q4_k: llama.cpp's
// Q4_K_M mix (Q4_K; the output head, and attention V and FFN down in the
// first and last eighth of the layers and every third layer between, Q6_K).
// q5_k: the Q5_K_M mix (the same with Q5_K). q6_k: every matrix Q6_K.
// Models of 8 experts get attention K and V at Q8_0, as llama.cpp gives them.
enum class QuantizeScheme { None, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K };
// "q8_0", "q4_0", "q4_k" (or "q4_k_m"), "q5_k" (or "q5_k_m"), "q6_k", "none"
std::optional<QuantizeScheme> parseQuantizeScheme(std::string_view name);
const char* toString(QuantizeScheme s);
// The names parseQuantizeScheme takes, for messages.
const char* quantizeSchemeNames();

} // namespace moe
