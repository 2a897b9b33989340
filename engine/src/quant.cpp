#include "moe/quant.h"

#include "moe/error.h"
#include "moe/safetensors.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace moe {
namespace {

constexpr uint32_t kQK = 32;  // weights per legacy block
constexpr uint32_t kQKK = 256; // weights per k-quant super-block

uint16_t readU16(const std::byte* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
void writeU16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
float readHalf(const std::byte* p) { return f16ToFloat(readU16(p)); }
uint8_t u8(const std::byte* p, size_t i) { return uint8_t(p[i]); }

// The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K / Q5_K
// super-block, packed in 12 bytes: j < 4 in the low 6 bits of bytes j and
// j + 4; j >= 4 split over byte j + 4 (low and high nibble) and the top two
// bits of bytes j - 4 and j.
void scaleMinK4(int j, const std::byte* q, uint8_t& scale, uint8_t& min) {
    if (j < 4) {
        scale = u8(q, j) & 63;
        min = u8(q, j + 4) & 63;
    } else {
        scale = uint8_t((u8(q, j + 4) & 0xF) | ((u8(q, j - 4) >> 6) << 4));
        min = uint8_t((u8(q, j + 4) >> 4) | ((u8(q, j) >> 6) << 4));
    }
}
void packScaleMinK4(const uint8_t scale[8], const uint8_t min[8], std::byte* q) {
    uint8_t out[12] = {};
    for (int j = 0; j < 4; ++j) {
        out[j] = uint8_t(scale[j] | ((scale[j + 4] >> 4) << 6));
        out[j + 4] = uint8_t(min[j] | ((min[j + 4] >> 4) << 6));
        out[j + 8] = uint8_t((scale[j + 4] & 0xF) | ((min[j + 4] & 0xF) << 4));
    }
    std::memcpy(q, out, 12);
}

int nearest(float v) { return int(std::lround(v)); }

// ---------------------------------------------------------------- dequantize, per block

void dequantQ8_0(const std::byte* b, float* y) {
    const float d = readHalf(b);
    for (uint32_t i = 0; i < kQK; ++i) y[i] = d * float(int8_t(u8(b, 2 + i)));
}

// Q4_0 / Q4_1: byte j holds weight j (low nibble) and j + 16 (high nibble).
void dequantQ4(const std::byte* b, float* y, bool withMin) {
    const float d = readHalf(b);
    const float m = withMin ? readHalf(b + 2) : 0.0f;
    const std::byte* qs = b + (withMin ? 4 : 2);
    const int offset = withMin ? 0 : 8;
    for (uint32_t j = 0; j < kQK / 2; ++j) {
        // Type-0 blocks add no minimum: ggml's w = q * d keeps the sign of a zero.
        y[j] = withMin ? float(int(u8(qs, j) & 0xF)) * d + m : float(int(u8(qs, j) & 0xF) - offset) * d;
        y[j + 16] = withMin ? float(int(u8(qs, j) >> 4)) * d + m : float(int(u8(qs, j) >> 4) - offset) * d;
    }
}

// Q5_0 / Q5_1: as Q4, the fifth bit of weight i in bit i of the 32-bit qh.
void dequantQ5(const std::byte* b, float* y, bool withMin) {
    const float d = readHalf(b);
    const float m = withMin ? readHalf(b + 2) : 0.0f;
    uint32_t qh;
    std::memcpy(&qh, b + (withMin ? 4 : 2), 4);
    const std::byte* qs = b + (withMin ? 8 : 6);
    const int offset = withMin ? 0 : 16;
    for (uint32_t j = 0; j < kQK / 2; ++j) {
        const int lo = int(u8(qs, j) & 0xF) | int(((qh >> j) & 1u) << 4);
        const int hi = int(u8(qs, j) >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
        y[j] = withMin ? float(lo) * d + m : float(lo - offset) * d;
        y[j + 16] = withMin ? float(hi) * d + m : float(hi - offset) * d;
    }
}

// Q4_K: d, dmin, 12 bytes of scales and mins, 128 bytes of nibbles. Each 64
// weights take 32 bytes: the low nibbles are sub-block 2i, the high 2i + 1.
// Q5_K adds 32 bytes of fifth bits before the nibbles: weight l of sub-block
// j has its fifth bit in bit j of qh[l].
void dequantTypeOneK(const std::byte* b, float* y, bool fiveBits) {
    const float d = readHalf(b), dmin = readHalf(b + 2);
    const std::byte* scales = b + 4;
    const std::byte* qh = b + 16;
    const std::byte* qs = b + (fiveBits ? 48 : 16);
    for (int pair = 0; pair < 4; ++pair) {
        uint8_t s0, m0, s1, m1;
        scaleMinK4(2 * pair, scales, s0, m0);
        scaleMinK4(2 * pair + 1, scales, s1, m1);
        for (int l = 0; l < 32; ++l) {
            const uint8_t q = u8(qs, size_t(32 * pair + l)), h = fiveBits ? u8(qh, size_t(l)) : 0;
            const int lo = (q & 0xF) | (((h >> (2 * pair)) & 1) << 4);
            const int hi = (q >> 4) | (((h >> (2 * pair + 1)) & 1) << 4);
            y[64 * pair + l] = d * float(s0) * float(lo) - dmin * float(m0);
            y[64 * pair + 32 + l] = d * float(s1) * float(hi) - dmin * float(m1);
        }
    }
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales (one
// per 16 weights), d. Each half of 128 weights uses 64 ql bytes and 32 qh bytes.
void dequantQ6K(const std::byte* b, float* y) {
    const std::byte* ql = b;
    const std::byte* qh = b + 128;
    const std::byte* sc = b + 192;
    const float d = readHalf(b + 208);
    for (int half = 0; half < 2; ++half) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const uint8_t h = u8(qh, size_t(32 * half + l));
            const uint8_t a = u8(ql, size_t(64 * half + l)), c = u8(ql, size_t(64 * half + l + 32));
            const int q1 = ((a & 0xF) | (((h >> 0) & 3) << 4)) - 32;
            const int q2 = ((c & 0xF) | (((h >> 2) & 3) << 4)) - 32;
            const int q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const int q4 = ((c >> 4) | (((h >> 6) & 3) << 4)) - 32;
            float* yy = y + 128 * half;
            const auto scale = [&](int k) { return float(int8_t(u8(sc, size_t(8 * half + is + k)))); };
            yy[l] = d * scale(0) * float(q1);
            yy[l + 32] = d * scale(2) * float(q2);
            yy[l + 64] = d * scale(4) * float(q3);
            yy[l + 96] = d * scale(6) * float(q4);
        }
    }
}

// ---------------------------------------------------------------- quantize, per block

// Type-0 legacy (Q8_0, Q4_0, Q5_0): the weight of largest magnitude maps to
// the end of the range (-2^(bits-1)), as ggml's reference quantizers do.
void quantQ8_0(const float* x, std::byte* b) {
    float amax = 0;
    for (uint32_t i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    writeU16(b, floatToF16(d));
    for (uint32_t i = 0; i < kQK; ++i) b[2 + i] = std::byte(uint8_t(int8_t(nearest(x[i] * id))));
}

void quantLegacy(const float* x, std::byte* b, int bits, bool withMin) {
    const int levels = (1 << bits) - 1; // 15 or 31
    float d, m = 0;
    if (withMin) {
        float lo = x[0], hi = x[0];
        for (uint32_t i = 1; i < kQK; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
        d = (hi - lo) / float(levels);
        m = lo;
    } else {
        float amax = 0, signedMax = 0;
        for (uint32_t i = 0; i < kQK; ++i)
            if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), signedMax = x[i];
        d = signedMax / -float(1 << (bits - 1));
    }
    const float id = d ? 1.0f / d : 0.0f;
    const int offset = withMin ? 0 : 1 << (bits - 1);
    writeU16(b, floatToF16(d));
    if (withMin) writeU16(b + 2, floatToF16(m));
    uint8_t q[kQK];
    for (uint32_t i = 0; i < kQK; ++i) {
        const float v = withMin ? (x[i] - m) * id : x[i] * id;
        // As ggml: truncation of v + 0.5 (v + offset + 0.5 for the signed types), in float.
        q[i] = uint8_t(std::clamp(int(v + (float(offset) + 0.5f)), 0, levels));
    }
    std::byte* qs = b + (withMin ? 4 : 2) + (bits == 5 ? 4 : 0);
    uint32_t qh = 0;
    for (uint32_t j = 0; j < kQK / 2; ++j) {
        qs[j] = std::byte(uint8_t((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4)));
        qh |= uint32_t((q[j] >> 4) & 1) << j;
        qh |= uint32_t((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (bits == 5) std::memcpy(b + (withMin ? 4 : 2), &qh, 4);
}

// Q4_K / Q5_K: per sub-block of 32 a scale and a minimum (weights = scale * q
// - min, q in 0..levels), both quantized to 6 bits against the super-block's
// d and dmin; the weights are then rounded against the quantized values.
void quantTypeOneK(const float* x, std::byte* b, int bits) {
    const int levels = (1 << bits) - 1;
    float scale[8], min[8];
    for (int j = 0; j < 8; ++j) {
        float lo = x[32 * j], hi = x[32 * j];
        for (int l = 1; l < 32; ++l) lo = std::min(lo, x[32 * j + l]), hi = std::max(hi, x[32 * j + l]);
        lo = std::min(lo, 0.0f); // the minimum is stored as a non-negative offset
        scale[j] = (hi - lo) / float(levels);
        min[j] = -lo;
    }
    const float maxScale = *std::max_element(scale, scale + 8), maxMin = *std::max_element(min, min + 8);
    const float d = maxScale / 63.0f, dmin = maxMin / 63.0f;
    writeU16(b, floatToF16(d));
    writeU16(b + 2, floatToF16(dmin));
    const float dq = readHalf(b), dminq = readHalf(b + 2);
    uint8_t qs6[8], qm6[8];
    for (int j = 0; j < 8; ++j) {
        qs6[j] = uint8_t(std::clamp(dq > 0 ? nearest(scale[j] / dq) : 0, 0, 63));
        qm6[j] = uint8_t(std::clamp(dminq > 0 ? nearest(min[j] / dminq) : 0, 0, 63));
    }
    packScaleMinK4(qs6, qm6, b + 4);
    std::byte* qh = b + 16;
    std::byte* qs = b + (bits == 5 ? 48 : 16);
    if (bits == 5) std::memset(qh, 0, 32);
    uint8_t q[kQKK];
    for (int j = 0; j < 8; ++j) {
        const float s = dq * float(qs6[j]), m = dminq * float(qm6[j]);
        for (int l = 0; l < 32; ++l)
            q[32 * j + l] = uint8_t(s > 0 ? std::clamp(nearest((x[32 * j + l] + m) / s), 0, levels) : 0);
    }
    for (int pair = 0; pair < 4; ++pair)
        for (int l = 0; l < 32; ++l) {
            const uint8_t lo = q[64 * pair + l], hi = q[64 * pair + 32 + l];
            qs[32 * pair + l] = std::byte(uint8_t((lo & 0xF) | ((hi & 0xF) << 4)));
            if (bits == 5)
                qh[l] = std::byte(uint8_t(uint8_t(qh[l]) | (((lo >> 4) & 1) << (2 * pair)) |
                                          (((hi >> 4) & 1) << (2 * pair + 1))));
        }
}

// Q6_K: per sub-block of 16 a signed scale (the largest magnitude maps to
// -32), quantized to int8 against the super-block's d; q in -32..31.
void quantQ6K(const float* x, std::byte* b) {
    float scale[16];
    for (int j = 0; j < 16; ++j) {
        float amax = 0, signedMax = 0;
        for (int l = 0; l < 16; ++l)
            if (std::fabs(x[16 * j + l]) > amax) amax = std::fabs(x[16 * j + l]), signedMax = x[16 * j + l];
        scale[j] = signedMax / -32.0f;
    }
    float amax = 0;
    for (float s : scale) amax = std::max(amax, std::fabs(s));
    writeU16(b + 208, floatToF16(amax / 127.0f));
    const float d = readHalf(b + 208);
    int8_t sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = int8_t(std::clamp(d > 0 ? nearest(scale[j] / d) : 0, -128, 127));
    std::memcpy(b + 192, sc, 16);
    uint8_t q[kQKK];
    for (int j = 0; j < 16; ++j) {
        const float s = d * float(sc[j]);
        for (int l = 0; l < 16; ++l)
            q[16 * j + l] = uint8_t(s != 0 ? std::clamp(nearest(x[16 * j + l] / s), -32, 31) + 32 : 32);
    }
    std::byte* ql = b;
    std::byte* qh = b + 128;
    for (int half = 0; half < 2; ++half)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* qq = q + 128 * half;
            const uint8_t q1 = qq[l], q2 = qq[l + 32], q3 = qq[l + 64], q4 = qq[l + 96];
            ql[64 * half + l] = std::byte(uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4)));
            ql[64 * half + l + 32] = std::byte(uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4)));
            qh[32 * half + l] = std::byte(uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)));
        }
}

struct TypeInfo {
    QuantType type;
    const char* name;
    uint32_t ggml;
    QuantLayout layout;
};
constexpr std::array<TypeInfo, 8> kTypes = {{
    {QuantType::Q8_0, "q8_0", 8, {32, 34}},
    {QuantType::Q4_0, "q4_0", 2, {32, 18}},
    {QuantType::Q4_1, "q4_1", 3, {32, 20}},
    {QuantType::Q5_0, "q5_0", 6, {32, 22}},
    {QuantType::Q5_1, "q5_1", 7, {32, 24}},
    {QuantType::Q4_K, "q4_k", 12, {256, 144}},
    {QuantType::Q5_K, "q5_k", 13, {256, 176}},
    {QuantType::Q6_K, "q6_k", 14, {256, 210}},
}};
const TypeInfo& info(QuantType t) { return kTypes.at(size_t(t)); }

} // namespace

QuantLayout quantLayout(QuantType t) { return info(t).layout; }
const char* toString(QuantType t) { return info(t).name; }
uint32_t ggmlTypeId(QuantType t) { return info(t).ggml; }

std::optional<QuantType> parseQuantType(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& i : kTypes)
        if (lower == i.name) return i.type;
    return std::nullopt;
}

std::optional<QuantType> quantTypeFromGgml(uint32_t ggmlType) {
    for (const auto& i : kTypes)
        if (i.ggml == ggmlType) return i.type;
    return std::nullopt;
}

size_t quantRowBytes(QuantType t, size_t n, const std::string& what) {
    const QuantLayout l = quantLayout(t);
    if (n % l.blockElements != 0)
        throw Error((what.empty() ? std::string("a row") : what) + " of " + std::to_string(n) + " weights is not a whole number of " +
                    toString(t) + " blocks (" + std::to_string(l.blockElements) + " weights each)");
    return n / l.blockElements * l.blockBytes;
}

void dequantizeRow(QuantType t, std::span<const std::byte> src, std::span<float> dst) {
    const QuantLayout l = quantLayout(t);
    if (src.size() < quantRowBytes(t, dst.size())) throw Error("internal: quantized row shorter than its weights");
    for (size_t blk = 0; blk < dst.size() / l.blockElements; ++blk) {
        const std::byte* b = src.data() + blk * l.blockBytes;
        float* y = dst.data() + blk * l.blockElements;
        switch (t) {
        case QuantType::Q8_0: dequantQ8_0(b, y); break;
        case QuantType::Q4_0: dequantQ4(b, y, false); break;
        case QuantType::Q4_1: dequantQ4(b, y, true); break;
        case QuantType::Q5_0: dequantQ5(b, y, false); break;
        case QuantType::Q5_1: dequantQ5(b, y, true); break;
        case QuantType::Q4_K: dequantTypeOneK(b, y, false); break;
        case QuantType::Q5_K: dequantTypeOneK(b, y, true); break;
        case QuantType::Q6_K: dequantQ6K(b, y); break;
        }
    }
}

void quantizeRow(QuantType t, std::span<const float> src, std::span<std::byte> dst) {
    const QuantLayout l = quantLayout(t);
    if (dst.size() < quantRowBytes(t, src.size())) throw Error("internal: quantized row buffer too small");
    for (size_t blk = 0; blk < src.size() / l.blockElements; ++blk) {
        const float* x = src.data() + blk * l.blockElements;
        std::byte* b = dst.data() + blk * l.blockBytes;
        switch (t) {
        case QuantType::Q8_0: quantQ8_0(x, b); break;
        case QuantType::Q4_0: quantLegacy(x, b, 4, false); break;
        case QuantType::Q4_1: quantLegacy(x, b, 4, true); break;
        case QuantType::Q5_0: quantLegacy(x, b, 5, false); break;
        case QuantType::Q5_1: quantLegacy(x, b, 5, true); break;
        case QuantType::Q4_K: quantTypeOneK(x, b, 4); break;
        case QuantType::Q5_K: quantTypeOneK(x, b, 5); break;
        case QuantType::Q6_K: quantQ6K(x, b); break;
        }
    }
}

std::optional<QuantType> quantTypeOf(DType t) {
    switch (t) {
    case DType::Q8_0: return QuantType::Q8_0;
    case DType::Q4_0: return QuantType::Q4_0;
    case DType::Q4_1: return QuantType::Q4_1;
    case DType::Q5_0: return QuantType::Q5_0;
    case DType::Q5_1: return QuantType::Q5_1;
    case DType::Q4_K: return QuantType::Q4_K;
    case DType::Q5_K: return QuantType::Q5_K;
    case DType::Q6_K: return QuantType::Q6_K;
    default: return std::nullopt;
    }
}

DType toDType(QuantType t) {
    switch (t) {
    case QuantType::Q8_0: return DType::Q8_0;
    case QuantType::Q4_0: return DType::Q4_0;
    case QuantType::Q4_1: return DType::Q4_1;
    case QuantType::Q5_0: return DType::Q5_0;
    case QuantType::Q5_1: return DType::Q5_1;
    case QuantType::Q4_K: return DType::Q4_K;
    case QuantType::Q5_K: return DType::Q5_K;
    case QuantType::Q6_K: return DType::Q6_K;
    }
    throw Error("internal: unknown quant type");
}

size_t rowBytes(DType t, size_t n, const std::string& what) {
    if (auto q = quantTypeOf(t)) return quantRowBytes(*q, n, what);
    return n * dtypeSize(t);
}

std::optional<QuantizeScheme> parseQuantizeScheme(std::string_view name) {
    if (name == "none") return QuantizeScheme::None;
    if (name == "q8_0") return QuantizeScheme::Q8_0;
    if (name == "q4_0") return QuantizeScheme::Q4_0;
    if (name == "q4_k" || name == "q4_k_m") return QuantizeScheme::Q4_K;
    if (name == "q5_k" || name == "q5_k_m") return QuantizeScheme::Q5_K;
    if (name == "q6_k") return QuantizeScheme::Q6_K;
    return std::nullopt;
}

const char* toString(QuantizeScheme s) {
    switch (s) {
    case QuantizeScheme::None: return "none";
    case QuantizeScheme::Q8_0: return "q8_0";
    case QuantizeScheme::Q4_0: return "q4_0";
    case QuantizeScheme::Q4_K: return "q4_k";
    case QuantizeScheme::Q5_K: return "q5_k";
    case QuantizeScheme::Q6_K: return "q6_k";
    }
    return "?";
}

const char* quantizeSchemeNames() { return "q8_0, q4_k (llama.cpp's Q4_K_M mix), q5_k (Q5_K_M mix), q6_k, q4_0 or none"; }

} // namespace moe
