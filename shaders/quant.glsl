// Weights in ggml's quantized block types (moe/quant.h), dequantized as they
// are read. Included by a weight-reading shader after its weight bindings (w,
// and wu when GATED). `rw` is a row's first 32-bit word (row * Kp, Kp being
// the row's words for these types) and K its weights.
//
// The host lays each row out (DeviceMatrix, device_matrix.cpp) so that a
// lane reads whole 16-byte texels: the legacy types' quants of all blocks
// first, then their per-block scales in a second plane; the row padded to
// whole pairs of blocks (Kc weights). Q8_0's quants are stored plus 128
// (unsigned bytes); Q4_0's and Q4_1's as ggml has them (16 bytes a block);
// Q5_0's and Q5_1's as whole 5-bit codes, 64 of them (a pair of blocks) in
// 3 texels: weights 4k .. 4k + 3 of the pair are bits 5(k % 6) .. 5(k % 6) + 4
// of the 4 words of texel k / 6; Q5_0's d in the spare top bytes of the third
// texel (q5Scales), so it has no scale plane. Q4_K and Q5_K blocks stay as ggml has them
// (144 and 176 bytes, texel-aligned); Q6_K's quants (192 bytes a block) come
// first, then the 16 scale bytes of every block, then the float16 d of every
// block. Rows are padded to whole texels.
//
// qdot64 decodes codes where they lie: a code masked in its word converts to
// code * 2^s for its bit offset s, and the inputs are multiplied by 2^-s once
// per lane step for all rows instead (qprescale; exact, powers of two). A
// weight then costs a mask, a conversion and a multiply-add, without the
// shift (and, for 5 and 6 bits, the merge of two bit fields) of a decode to
// the code's own value.

// Word i of the weights, and the texel-aligned four words from i (`up`: the
// GATED up projection wu, else w).
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
uvec4 qvec4(bool up, uint i) {
#if defined(TEXEL_READS)
#if defined(GATED)
    if (up) return texelFetch(wut, int(i >> 2));
#endif
    return texelFetch(wt, int(i >> 2));
#else
#if defined(GATED)
    if (up) return uvec4(wuq[i], wuq[i + 1u], wuq[i + 2u], wuq[i + 3u]);
#endif
    return uvec4(wq[i], wq[i + 1u], wq[i + 2u], wq[i + 3u]);
#endif
}

// Words i and i + 1 (i even: both lie in one texel).
uvec2 qword2(bool up, uint i) {
#if defined(TEXEL_READS)
    const uvec4 t = qvec4(up, i & ~3u);
    return (i & 2u) != 0u ? t.zw : t.xy;
#else
#if defined(GATED)
    if (up) return uvec2(wuq[i], wuq[i + 1u]);
#endif
    return uvec2(wq[i], wq[i + 1u]);
#endif
}

// Half h (0: low, 1: high) of a word as a float16.
float half16(uint w, uint h) { return unpackHalf2x16(w >> (16u * h)).x; }
uint byteOf(uint w, uint k) { return (w >> (8u * k)) & 0xffu; }
// The 4 bytes of q as signed values, as low nibbles and as high nibbles.
vec4 i8x4(uint q) { return vec4((ivec4(q) << ivec4(24, 16, 8, 0)) >> 24); }
vec4 lo4x4(uint q) { return vec4((uvec4(q) >> uvec4(0u, 8u, 16u, 24u)) & 0xfu); }
vec4 hi4x4(uint q) { return vec4((uvec4(q) >> uvec4(4u, 12u, 20u, 28u)) & 0xfu); }
// Bits 0..3 of `bits` as 0 or 1.
vec4 bits4(uint bits) { return vec4((uvec4(bits) >> uvec4(0u, 1u, 2u, 3u)) & 1u); }
// Bit s of each of the 4 bytes of h as 0 or 1.
vec4 byteBits(uint h, uint s) { return vec4((uvec4(h) >> (uvec4(0u, 8u, 16u, 24u) + s)) & 1u); }

// Words of the quants plane of a row of Kc weights (where the legacy types'
// scale plane starts).
#if defined(W_Q8_0)
uint qplaneWords(uint Kc) { return Kc / 4u; }
#elif defined(W_Q5_0) || defined(W_Q5_1)
uint qplaneWords(uint Kc) { return Kc / 64u * 12u; }
#else
uint qplaneWords(uint Kc) { return Kc / 8u; }
#endif
uint paddedK(uint K) { return (K + 63u) & ~63u; }

#if defined(W_Q4_K)
#define KQ_BLOCK_WORDS 36u
#define KQ_QS 4u
#elif defined(W_Q5_K)
#define KQ_BLOCK_WORDS 44u
#define KQ_QS 12u
#endif

#if defined(W_Q4_K) || defined(W_Q5_K)
// The 6-bit scale and minimum of sub-block j (0..7) from the 12 bytes (words
// s0, s1, s2) after d and dmin.
vec2 scaleMinK4(uint s0, uint s1, uint s2, uint j) {
    if (j < 4u) return vec2(byteOf(s0, j) & 63u, byteOf(s1, j) & 63u);
    const uint k = j - 4u, s = byteOf(s2, k);
    return vec2((s & 0xfu) | ((byteOf(s0, k) >> 6) << 4), (s >> 4) | ((byteOf(s1, k) >> 6) << 4));
}
#endif

// The sums of xs[0..3], xs[4..7], xs[8..11], xs[12..15] (16 inputs each),
// which the block offsets and minimums multiply: once per 64 inputs, for all rows.
vec4 qsums16(vec4 xs[16]) {
    vec4 g = vec4(0.0);
    for (uint i = 0u; i < 4u; ++i)
        g += vec4(dot(xs[i], vec4(1.0)), dot(xs[4u + i], vec4(1.0)), dot(xs[8u + i], vec4(1.0)), dot(xs[12u + i], vec4(1.0)));
    return g;
}

// 4 weights of a 32-block from nibble word q (low or high nibbles, `shift` 0
// or 4) and, for the 5-bit types, their fifth bits from qh >> first.
vec4 nib4(uint q, uint shift) { return vec4((uvec4(q) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 0xfu); }
vec4 nib5(uint q, uint shift, uint qh) {
    return vec4(((uvec4(q) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 0xfu) | (((uvec4(qh) >> uvec4(0u, 1u, 2u, 3u)) & 1u) << 4));
}

// In-place decodes (see the top of this file), each field worth code * 2^s:
// the 4 bytes of w, their 6 low bits, their low and their high nibbles. A
// field that a mask would leave in the sign bit is shifted down instead
// (worth code * 1).
vec4 bytesAt(uint w) { return vec4(ivec4(w & 0xffu, w & 0xff00u, w & 0xff0000u, w >> 24)); }
vec4 codes6At(uint w) { return vec4(ivec4(uvec4(w) & uvec4(0x3fu, 0x3f00u, 0x3f0000u, 0x3f000000u))); }
vec4 loNibblesAt(uint w) { return vec4(ivec4(uvec4(w) & uvec4(0xfu, 0xf00u, 0xf0000u, 0xf000000u))); }
vec4 hiNibblesAt(uint w) { return vec4(ivec4(w & 0xf0u, w & 0xf000u, w & 0xf00000u, w >> 28)); }
// The field `mask` (below the sign bit) of each of the 4 words.
vec4 fieldsAt(uvec4 t, uint mask) { return vec4(ivec4(t & uvec4(mask))); }
// What the inputs of those fields are multiplied by: fields at bits 0, 8,
// 16, 24 (codes6At, loNibblesAt); bytesAt; hiNibblesAt.
const vec4 LO_FIELD_SCALES = vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const vec4 BYTE_SCALES = vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0);
const vec4 HI_NIBBLE_SCALES = vec4(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 1048576.0, 1.0);

#if defined(W_Q5_0)
// Q5_0's two float16 d of a pair of blocks: the top bytes of the 4 words of
// its third texel (whose fields 4 and 5 hold no codes), so that they come
// with the codes rather than from a scale plane.
vec2 q5Scales(uvec4 t) {
    return unpackHalf2x16((t.x >> 24) | ((t.y >> 16) & 0xff00u) | ((t.z >> 8) & 0xff0000u) | (t.w & 0xff000000u));
}
#endif

// Multiplies a lane step's inputs (qdot64's xs) by the powers of two that
// undo the in-place codes' bit offsets.
void qprescale(inout vec4 xs[16]) {
#if defined(W_Q8_0)
    for (uint i = 0u; i < 16u; ++i) xs[i] *= BYTE_SCALES;
#elif defined(W_Q6_K)
    for (uint i = 0u; i < 16u; ++i) xs[i] *= LO_FIELD_SCALES;
#elif defined(W_Q4_0) || defined(W_Q4_1)
    // Per block: 16 low nibbles, then 16 high.
    for (uint i = 0u; i < 16u; ++i) xs[i] *= (i & 4u) == 0u ? LO_FIELD_SCALES : HI_NIBBLE_SCALES;
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // Per 64: 32 low nibbles, then 32 high.
    for (uint i = 0u; i < 16u; ++i) xs[i] *= i < 8u ? LO_FIELD_SCALES : HI_NIBBLE_SCALES;
#elif defined(W_Q5_0) || defined(W_Q5_1)
    for (uint i = 0u; i < 16u; ++i) xs[i] *= uintBitsToFloat((127u - 5u * (i % 6u)) << 23);
#endif
}

// Σ weight·x over weights 64c .. 64c + 63 of the row at word rw: xs[0..7]
// hold the first 32 inputs, xs[8..15] the next 32 (zeros past K); xg = qsums16(xs).
float qdot64(bool up, uint rw, uint K, uint c, vec4 xs[16], vec4 xg) {
    float sa = 0.0, sb = 0.0; // the halves' dot products
    const float xa = xg.x + xg.y, xb = xg.z + xg.w;
#if defined(W_Q8_0)
    const uvec4 a0 = qvec4(up, rw + 16u * c), a1 = qvec4(up, rw + 16u * c + 4u);
    const uvec4 b0 = qvec4(up, rw + 16u * c + 8u), b1 = qvec4(up, rw + 16u * c + 12u);
    for (uint k = 0u; k < 4u; ++k) {
        sa += dot(bytesAt(a0[k]), xs[k]) + dot(bytesAt(a1[k]), xs[4u + k]);
        sb += dot(bytesAt(b0[k]), xs[8u + k]) + dot(bytesAt(b1[k]), xs[12u + k]);
    }
    const uint d = qword(up, rw + qplaneWords(paddedK(K)) + c);
    return half16(d, 0u) * (sa - 128.0 * xa) + half16(d, 1u) * (sb - 128.0 * xb);
#elif defined(W_Q4_0) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1)
    // Q4_0, Q4_1: a block's 16 bytes: byte j holds weight j (low nibble) and j + 16 (high).
#if defined(W_Q4_0) || defined(W_Q4_1)
    const uvec4 a = qvec4(up, rw + 8u * c), b = qvec4(up, rw + 8u * c + 4u);
#endif
    const uint tail = rw + qplaneWords(paddedK(K));
#if defined(W_Q5_0) || defined(W_Q5_1)
    // The pair's 64 codes in 3 texels; group k (xs[k]) at bits 5(k % 6) of texel k / 6.
    uvec4 q5[3];
    for (uint t = 0u; t < 3u; ++t) q5[t] = qvec4(up, rw + 12u * c + 4u * t);
    for (uint k = 0u; k < 8u; ++k) {
        sa += dot(fieldsAt(q5[k / 6u], 0x1fu << (5u * (k % 6u))), xs[k]);
        sb += dot(fieldsAt(q5[(k + 8u) / 6u], 0x1fu << (5u * ((k + 8u) % 6u))), xs[8u + k]);
    }
#else
    for (uint k = 0u; k < 4u; ++k) {
        sa += dot(loNibblesAt(a[k]), xs[k]) + dot(hiNibblesAt(a[k]), xs[4u + k]);
        sb += dot(loNibblesAt(b[k]), xs[8u + k]) + dot(hiNibblesAt(b[k]), xs[12u + k]);
    }
#endif
#if defined(W_Q4_0)
    const uint d = qword(up, tail + c); // both blocks' float16 scales
    return half16(d, 0u) * (sa - 8.0 * xa) + half16(d, 1u) * (sb - 8.0 * xb);
#elif defined(W_Q5_0)
    const vec2 d = q5Scales(q5[2]);
    return d.x * (sa - 16.0 * xa) + d.y * (sb - 16.0 * xb);
#else
    // Per block 4 bytes: d and m; this pair's 8 bytes share a texel.
    const uvec4 t = qvec4(up, (tail + 2u * c) & ~3u);
    const uint da = (c & 1u) == 0u ? t.x : t.z, db = (c & 1u) == 0u ? t.y : t.w;
    return half16(da, 0u) * sa + half16(da, 1u) * xa + half16(db, 0u) * sb + half16(db, 1u) * xb;
#endif
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // Weights 64cc .. 64cc + 63 of block bk: sub-block 2cc from the low
    // nibbles of 32 bytes, 2cc + 1 from their high nibbles.
    const uint bk = c / 4u, cc = c % 4u, base = rw + KQ_BLOCK_WORDS * bk;
    const uvec4 h = qvec4(up, base);
    const vec2 smA = scaleMinK4(h.y, h.z, h.w, 2u * cc), smB = scaleMinK4(h.y, h.z, h.w, 2u * cc + 1u);
    const uvec4 q0 = qvec4(up, base + KQ_QS + 8u * cc), q1 = qvec4(up, base + KQ_QS + 8u * cc + 4u);
#if defined(W_Q5_K)
    // The fifth bit of weight l of sub-block s is bit s of qh[l].
    const uvec4 h0 = qvec4(up, base + 4u), h1 = qvec4(up, base + 8u);
    // (The fifth bits decode to 0 or 16 and undo the inputs' scales.)
    const vec4 loBit = 16.0 / LO_FIELD_SCALES, hiBit = 16.0 / HI_NIBBLE_SCALES;
    for (uint k = 0u; k < 4u; ++k) {
        sa += dot(loNibblesAt(q0[k]) + loBit * byteBits(h0[k], 2u * cc), xs[k]) +
              dot(loNibblesAt(q1[k]) + loBit * byteBits(h1[k], 2u * cc), xs[4u + k]);
        sb += dot(hiNibblesAt(q0[k]) + hiBit * byteBits(h0[k], 2u * cc + 1u), xs[8u + k]) +
              dot(hiNibblesAt(q1[k]) + hiBit * byteBits(h1[k], 2u * cc + 1u), xs[12u + k]);
    }
#else
    for (uint k = 0u; k < 4u; ++k) {
        sa += dot(loNibblesAt(q0[k]), xs[k]) + dot(loNibblesAt(q1[k]), xs[4u + k]);
        sb += dot(hiNibblesAt(q0[k]), xs[8u + k]) + dot(hiNibblesAt(q1[k]), xs[12u + k]);
    }
#endif
    const float d = half16(h.x, 0u), dmin = half16(h.x, 1u);
    return d * (smA.x * sa + smB.x * sb) - dmin * (smA.y * xa + smB.y * xb);
#elif defined(W_Q6_K)
    // Weights 64q .. 64q + 63 of block bk: parts 2u and 2u + 1 of its
    // 128-weight half n (u = q % 2). Part p, weight l: the low (p < 2) or high
    // nibble of ql[64n + 32(p % 2) + l], plus 16 times bits 2p..2p+1 of
    // qh[32n + l], minus 32; times d and the signed scale of its 16.
    const uint bk = c / 4u, q = c % 4u, n = q / 2u, u = q % 2u, nb = K / 256u;
    const uint base = rw + 48u * bk;
    const uvec4 l0 = qvec4(up, base + 16u * n), l1 = qvec4(up, base + 16u * n + 4u);
    const uvec4 l2 = qvec4(up, base + 16u * n + 8u), l3 = qvec4(up, base + 16u * n + 12u);
    const uvec4 g0 = qvec4(up, base + 32u + 8u * n), g1 = qvec4(up, base + 36u + 8u * n);
    // Each word's 4 codes are put together in its bytes with whole-word
    // operations (the nibble, and the part's two qh bits above it), then
    // decoded in place.
    const uint ns = 4u * u;
    float s[4]; // per 16 weights: Σ (value + 32) x
    for (uint gi = 0u; gi < 4u; ++gi) s[gi] = 0.0;
    for (uint k = 0u; k < 4u; ++k) {
        const uint h0 = g0[k] >> ns, h1 = g1[k] >> ns;
        s[0] += dot(codes6At(((l0[k] >> ns) & 0x0f0f0f0fu) | ((h0 << 4) & 0x30303030u)), xs[k]);
        s[1] += dot(codes6At(((l1[k] >> ns) & 0x0f0f0f0fu) | ((h1 << 4) & 0x30303030u)), xs[4u + k]);
        s[2] += dot(codes6At(((l2[k] >> ns) & 0x0f0f0f0fu) | ((h0 << 2) & 0x30303030u)), xs[8u + k]);
        s[3] += dot(codes6At(((l3[k] >> ns) & 0x0f0f0f0fu) | ((h1 << 2) & 0x30303030u)), xs[12u + k]);
    }
    // The 4 scales of these parts: bytes 8n + 4u .. 8n + 4u + 3 of the block's 16.
    const uint sw = qword(up, rw + 48u * nb + 4u * bk + 2u * n + u);
    const float d = half16(qword(up, rw + 52u * nb + bk / 2u), bk & 1u);
    float total = 0.0;
    for (uint gi = 0u; gi < 4u; ++gi) total += float(int(byteOf(sw, gi) << 24) >> 24) * (s[gi] - 32.0 * xg[gi]);
    return d * total;
#endif
}

// Weights col .. col + 7 (col a multiple of 8, so all in one block) of the
// row at word rw: their quants are two words of one texel (qword2).
void qload8(bool up, uint rw, uint K, uint col, out vec4 lo, out vec4 hi) {
#if defined(W_Q8_0)
    const uint j = col / 32u, o = col % 32u;
    const uvec2 q = qword2(up, rw + 8u * j + o / 4u);
    const float d = half16(qword(up, rw + qplaneWords(paddedK(K)) + j / 2u), j & 1u);
    lo = d * i8x4(q.x ^ 0x80808080u); // stored plus 128
    hi = d * i8x4(q.y ^ 0x80808080u);
#elif defined(W_Q4_0) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1)
    const uint j = col / 32u, o = col % 32u;
    const uint tail = rw + qplaneWords(paddedK(K));
#if defined(W_Q5_0) || defined(W_Q5_1)
    // Groups k and k + 1 (k even) of the pair's 16: one texel, bits 5(k % 6) and 5(k % 6) + 5.
    const uint k = (col % 64u) / 4u, shift = 5u * (k % 6u);
    const uvec4 t = qvec4(up, rw + 12u * (col / 64u) + 4u * (k / 6u));
    lo = vec4((t >> shift) & 0x1fu);
    hi = vec4((t >> (shift + 5u)) & 0x1fu);
#else
    const uvec2 q = qword2(up, rw + 4u * j + (o & 15u) / 4u);
    lo = o < 16u ? lo4x4(q.x) : hi4x4(q.x);
    hi = o < 16u ? lo4x4(q.y) : hi4x4(q.y);
#endif
#if defined(W_Q4_0)
    const float d = half16(qword(up, tail + j / 2u), j & 1u);
    lo = d * (lo - 8.0);
    hi = d * (hi - 8.0);
#elif defined(W_Q5_0)
    const float d = q5Scales(qvec4(up, rw + 12u * (col / 64u) + 8u))[j & 1u];
    lo = d * (lo - 16.0);
    hi = d * (hi - 16.0);
#else
    const uint dm = qword(up, tail + j);
    lo = half16(dm, 0u) * lo + half16(dm, 1u);
    hi = half16(dm, 0u) * hi + half16(dm, 1u);
#endif
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // Each 64 weights: sub-block 2c from the low nibbles of 32 bytes, 2c + 1 from their high nibbles.
    const uint bk = col / 256u, o = col % 256u, base = rw + KQ_BLOCK_WORDS * bk;
    const uint c = o / 64u, w = o % 64u, l = w % 32u, sub = 2u * c + w / 32u;
    const uvec4 h = qvec4(up, base); // d, dmin and the 12 scale bytes
    const vec2 sm = scaleMinK4(h.y, h.z, h.w, sub);
    const float d = half16(h.x, 0u) * sm.x, m = half16(h.x, 1u) * sm.y;
    const uvec2 q = qword2(up, base + KQ_QS + (32u * c + l) / 4u);
    lo = w < 32u ? lo4x4(q.x) : hi4x4(q.x);
    hi = w < 32u ? lo4x4(q.y) : hi4x4(q.y);
#if defined(W_Q5_K)
    const uvec2 qh = qword2(up, base + 4u + l / 4u);
    lo += 16.0 * byteBits(qh.x, sub);
    hi += 16.0 * byteBits(qh.y, sub);
#endif
    lo = d * lo - m;
    hi = d * hi - m;
#elif defined(W_Q6_K)
    const uint bk = col / 256u, o = col % 256u, nb = K / 256u, base = rw + 48u * bk;
    const uint n = o / 128u, r = o % 128u, part = r / 32u, l = r % 32u;
    const uvec2 ql = qword2(up, base + (64u * n + l + (part & 1u) * 32u) / 4u);
    const uvec2 qh = qword2(up, base + 32u + (32u * n + l) / 4u);
    const uint shift = 2u * part;
    lo = (part < 2u ? lo4x4(ql.x) : hi4x4(ql.x)) + 16.0 * vec4((uvec4(qh.x) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 3u) - 32.0;
    hi = (part < 2u ? lo4x4(ql.y) : hi4x4(ql.y)) + 16.0 * vec4((uvec4(qh.y) >> (uvec4(0u, 8u, 16u, 24u) + shift)) & 3u) - 32.0;
    const uint si = 8u * n + l / 16u + 2u * part; // scale index within the block's 16
    const uint sb = byteOf(qword(up, rw + 48u * nb + 4u * bk + si / 4u), si & 3u);
    const float d = half16(qword(up, rw + 52u * nb + bk / 2u), bk & 1u) * float(int(sb << 24) >> 24);
    lo *= d;
    hi *= d;
#endif
}

float qload1(bool up, uint rw, uint K, uint col) {
    vec4 lo, hi;
    qload8(up, rw, K, col & ~7u, lo, hi);
    const uint k = col & 7u;
    return k < 4u ? lo[k] : hi[k - 4u];
}
