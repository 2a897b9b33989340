// Weights in ggml's quantized block layouts (moe/quant.h), dequantized as
// they are loaded: LOAD8 and LOAD1 of common.glsl for the W_Q* variants.
// Included by a weight-reading shader after its weight bindings (w, and wu
// when GATED). Element e of the matrix lies in block e / QK at byte
// (e / QK) * BLOCK_BYTES: rows are whole blocks, one after another. Blocks
// of 34, 18, 22 or 210 bytes do not keep 4-byte alignment, so bytes are read
// from 32-bit words at any byte address.

#if defined(W_Q8_0)
const uint QK = 32u, BLOCK_BYTES = 34u;
#elif defined(W_Q4_0)
const uint QK = 32u, BLOCK_BYTES = 18u;
#elif defined(W_Q4_1)
const uint QK = 32u, BLOCK_BYTES = 20u;
#elif defined(W_Q5_0)
const uint QK = 32u, BLOCK_BYTES = 22u;
#elif defined(W_Q5_1)
const uint QK = 32u, BLOCK_BYTES = 24u;
#elif defined(W_Q4_K)
const uint QK = 256u, BLOCK_BYTES = 144u;
#elif defined(W_Q5_K)
const uint QK = 256u, BLOCK_BYTES = 176u;
#elif defined(W_Q6_K)
const uint QK = 256u, BLOCK_BYTES = 210u;
#endif

// Word i of the weights (`up`: the GATED up projection wu, else w).
uint qword(bool up, uint i) {
#if defined(TEXEL_READS)
#if defined(GATED)
    if (up) return texelFetch(wut, int(i >> 2))[i & 3u];
#endif
    return texelFetch(wt, int(i >> 2))[i & 3u];
#else
#if defined(GATED)
    if (up) return wuq[i];
#endif
    return wq[i];
#endif
}

// The 4 bytes at byte address `a` (any alignment), little-endian.
uint qbytes4(bool up, uint a) {
    const uint i = a >> 2, s = (a & 3u) * 8u;
    const uint lo = qword(up, i);
    return s == 0u ? lo : (lo >> s) | (qword(up, i + 1u) << (32u - s));
}
uint qbyte(bool up, uint a) { return (qword(up, a >> 2) >> ((a & 3u) * 8u)) & 0xffu; }
// The float16 at an even byte address.
float qhalf(bool up, uint a) {
    const uint w = qword(up, a >> 2);
    return unpackHalf2x16((a & 2u) != 0u ? w >> 16 : w).x;
}
// The 4 bytes of q as unsigned, signed, low-nibble and high-nibble values.
vec4 u8x4(uint q) { return vec4((uvec4(q) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu); }
vec4 i8x4(uint q) { return vec4((ivec4(q) << ivec4(24, 16, 8, 0)) >> 24); }
vec4 lo4x4(uint q) { return vec4((uvec4(q) >> uvec4(0u, 8u, 16u, 24u)) & 0xfu); }
vec4 hi4x4(uint q) { return vec4((uvec4(q) >> uvec4(4u, 12u, 20u, 28u)) & 0xfu); }
// Bits 0..3 of `bits` as 0 or 1.
vec4 bits4(uint bits) { return vec4((uvec4(bits) >> uvec4(0u, 1u, 2u, 3u)) & 1u); }

#if defined(W_Q4_K) || defined(W_Q5_K)
// The 6-bit scale and minimum of sub-block j (0..7), packed in the 12 bytes at `a`.
vec2 scaleMinK4(bool up, uint a, uint j) {
    if (j < 4u) return vec2(qbyte(up, a + j) & 63u, qbyte(up, a + j + 4u) & 63u);
    const uint s = qbyte(up, a + j + 4u);
    return vec2((s & 0xfu) | ((qbyte(up, a + j - 4u) >> 6) << 4), (s >> 4) | ((qbyte(up, a + j) >> 6) << 4));
}
#endif

// Weights e .. e + 7 (e a multiple of 8, so all in one block).
void qload8(bool up, uint e, out vec4 lo, out vec4 hi) {
    const uint a = (e / QK) * BLOCK_BYTES, o = e % QK;
#if defined(W_Q8_0)
    const float d = qhalf(up, a);
    lo = d * i8x4(qbytes4(up, a + 2u + o));
    hi = d * i8x4(qbytes4(up, a + 6u + o));
#elif defined(W_Q4_0) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1)
    // Byte j of the nibbles holds weight j (low nibble) and j + 16 (high).
#if defined(W_Q4_0)
    const uint qs = a + 2u;
#elif defined(W_Q4_1)
    const uint qs = a + 4u;
#elif defined(W_Q5_0)
    const uint qs = a + 6u;
#else
    const uint qs = a + 8u;
#endif
    const uint j = o & 15u;
    const uint q0 = qbytes4(up, qs + j), q1 = qbytes4(up, qs + j + 4u);
    lo = o < 16u ? lo4x4(q0) : hi4x4(q0);
    hi = o < 16u ? lo4x4(q1) : hi4x4(q1);
    const float d = qhalf(up, a);
#if defined(W_Q5_0) || defined(W_Q5_1)
    // Weight k's fifth bit is bit k of the 32-bit qh.
#if defined(W_Q5_0)
    const uint qh = qbytes4(up, a + 2u) >> o;
#else
    const uint qh = qbytes4(up, a + 4u) >> o;
#endif
    lo += 16.0 * bits4(qh);
    hi += 16.0 * bits4(qh >> 4);
#endif
#if defined(W_Q4_0)
    lo = d * (lo - 8.0);
    hi = d * (hi - 8.0);
#elif defined(W_Q5_0)
    lo = d * (lo - 16.0);
    hi = d * (hi - 16.0);
#else
    const float m = qhalf(up, a + 2u);
    lo = d * lo + m;
    hi = d * hi + m;
#endif
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // Each 64 weights: sub-block 2c from the low nibbles of 32 bytes, 2c + 1 from their high nibbles.
    const uint c = o / 64u, w = o % 64u, l = w % 32u, sub = 2u * c + w / 32u;
    const vec2 sm = scaleMinK4(up, a + 4u, sub);
    const float d = qhalf(up, a) * sm.x, m = qhalf(up, a + 2u) * sm.y;
#if defined(W_Q4_K)
    const uint qs = a + 16u;
#else
    const uint qs = a + 48u;
#endif
    const uint q0 = qbytes4(up, qs + 32u * c + l), q1 = qbytes4(up, qs + 32u * c + l + 4u);
    lo = w < 32u ? lo4x4(q0) : hi4x4(q0);
    hi = w < 32u ? lo4x4(q1) : hi4x4(q1);
#if defined(W_Q5_K)
    // The fifth bit of weight l of sub-block s is bit s of qh[l].
    const uint h0 = qbytes4(up, a + 16u + l), h1 = qbytes4(up, a + 16u + l + 4u);
    lo += 16.0 * vec4((uvec4(h0) >> (uvec4(0u, 8u, 16u, 24u) + sub)) & 1u);
    hi += 16.0 * vec4((uvec4(h1) >> (uvec4(0u, 8u, 16u, 24u) + sub)) & 1u);
#endif
    lo = d * lo - m;
    hi = d * hi - m;
#elif defined(W_Q6_K)
    // Per 128 weights: four runs of 32 from the low / high nibbles of 64 ql
    // bytes and 2-bit pairs of 32 qh bytes, a signed 8-bit scale per 16.
    const uint n = o / 128u, r = o % 128u, part = r / 32u, l = r % 32u;
    const uint ql = a + 64u * n + l + (part & 1u) * 32u, qh = a + 128u + 32u * n + l;
    const uint l0 = qbytes4(up, ql), l1 = qbytes4(up, ql + 4u);
    const uint h0 = qbytes4(up, qh), h1 = qbytes4(up, qh + 4u);
    const uint shift = 2u * part;
    const vec4 high0 = vec4((uvec4(h0) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 3u);
    const vec4 high1 = vec4((uvec4(h1) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 3u);
    lo = (part < 2u ? lo4x4(l0) : hi4x4(l0)) + 16.0 * high0 - 32.0;
    hi = (part < 2u ? lo4x4(l1) : hi4x4(l1)) + 16.0 * high1 - 32.0;
    const uint sb = qbyte(up, a + 192u + 8u * n + l / 16u + 2u * part);
    const float d = qhalf(up, a + 208u) * float(int(sb << 24) >> 24);
    lo *= d;
    hi *= d;
#endif
}

float qload1(bool up, uint e) {
    vec4 lo, hi;
    qload8(up, e & ~7u, lo, hi);
    const uint k = e & 7u;
    return k < 4u ? lo[k] : hi[k - 4u];
}
