#pragma once
// CPU twins of ggml's block types, written from the block definitions
// (ggml-common.h) one weight at a time: weight i of a block is computed from
// the bytes that hold it, so the loop structure shares nothing with the
// engine's dequantizer. Also ggml's reference quantizers of the legacy types
// (quantize_row_*_ref), whose rounding the engine's quantizer must match bit
// for bit.
#include "moe/quant.h"
#include "moe/safetensors.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace moe::test::refq {

inline float half(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return f16ToFloat(v);
}

// Sub-block j's 6-bit scale and minimum in a Q4_K / Q5_K 12-byte field.
inline void scaleMin(const uint8_t* s, int j, int& scale, int& min) {
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Weight i of one block.
inline float weight(QuantType t, const uint8_t* b, int i) {
    switch (t) {
    case QuantType::Q8_0: return half(b) * float(int8_t(b[2 + i]));
    case QuantType::Q4_0:
    case QuantType::Q4_1: {
        const bool hasMin = t == QuantType::Q4_1;
        const uint8_t byte = b[(hasMin ? 4 : 2) + i % 16];
        const int q = i < 16 ? byte & 0xF : byte >> 4;
        return hasMin ? float(q) * half(b) + half(b + 2) : float(q - 8) * half(b);
    }
    case QuantType::Q5_0:
    case QuantType::Q5_1: {
        const bool hasMin = t == QuantType::Q5_1;
        uint32_t qh;
        std::memcpy(&qh, b + (hasMin ? 4 : 2), 4);
        const uint8_t byte = b[(hasMin ? 8 : 6) + i % 16];
        const int q = (i < 16 ? byte & 0xF : byte >> 4) | int((qh >> i) & 1u) << 4;
        return hasMin ? float(q) * half(b) + half(b + 2) : float(q - 16) * half(b);
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {
        const bool five = t == QuantType::Q5_K;
        const int sub = i / 32, group = i / 64, l = i % 32;
        int scale, min;
        scaleMin(b + 4, sub, scale, min);
        const uint8_t byte = b[(five ? 48 : 16) + 32 * group + l];
        int q = sub % 2 == 0 ? byte & 0xF : byte >> 4;
        if (five) q |= ((b[16 + l] >> sub) & 1) << 4;
        return half(b) * float(scale) * float(q) - half(b + 2) * float(min);
    }
    case QuantType::Q6_K: {
        const int h = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
        const uint8_t lowByte = b[64 * h + l + (quarter % 2 == 1 ? 32 : 0)];
        const int low = quarter < 2 ? lowByte & 0xF : lowByte >> 4;
        const int high = (b[128 + 32 * h + l] >> (2 * quarter)) & 3;
        const int scale = int8_t(b[192 + 8 * h + l / 16 + 2 * quarter]);
        return half(b + 208) * float(scale) * float((low | high << 4) - 32);
    }
    }
    return NAN;
}

inline std::vector<float> dequantize(QuantType t, const std::vector<uint8_t>& bytes, size_t n) {
    const QuantLayout l = quantLayout(t);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i)
        out[i] = weight(t, bytes.data() + i / l.blockElements * l.blockBytes, int(i % l.blockElements));
    return out;
}

inline void putHalf(uint8_t* p, float v) {
    const uint16_t h = floatToF16(v);
    std::memcpy(p, &h, 2);
}

// ggml's quantize_row_q8_0_ref / q4_0 / q4_1 / q5_0 / q5_1_ref, one block.
inline void quantizeLegacyBlock(QuantType t, const float* x, uint8_t* b) {
    if (t == QuantType::Q8_0) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127, id = d ? 1 / d : 0;
        putHalf(b, d);
        for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::roundf(x[j] * id)));
        return;
    }
    const bool hasMin = t == QuantType::Q4_1 || t == QuantType::Q5_1;
    const bool five = t == QuantType::Q5_0 || t == QuantType::Q5_1;
    const int nmax = five ? 31 : 15;
    float d, id, mn = 0;
    if (hasMin) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
        d = (hi - lo) / float(nmax);
        mn = lo;
    } else {
        float amax = 0, mx = 0;
        for (int j = 0; j < 32; ++j)
            if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), mx = x[j];
        d = mx / (five ? -16.0f : -8.0f);
    }
    id = d ? 1.0f / d : 0.0f;
    putHalf(b, d);
    if (hasMin) putHalf(b + 2, mn);
    uint8_t* qs = b + (hasMin ? 4 : 2) + (five ? 4 : 0);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const float x0 = hasMin ? (x[j] - mn) * id : x[j] * id;
        const float x1 = hasMin ? (x[16 + j] - mn) * id : x[16 + j] * id;
        const float bias = hasMin ? 0.5f : five ? 16.5f : 8.5f;
        const uint8_t q0 = uint8_t(std::min(nmax, int(int8_t(x0 + bias))));
        const uint8_t q1 = uint8_t(std::min(nmax, int(int8_t(x1 + bias))));
        qs[j] = uint8_t((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= uint32_t((q0 & 0x10u) >> 4) << j;
        qh |= uint32_t((q1 & 0x10u) >> 4) << (j + 16);
    }
    if (five) std::memcpy(b + (hasMin ? 4 : 2), &qh, 4);
}

} // namespace moe::test::refq
