#version 450
// Rotary embedding (Hugging Face rotate_half convention) for the step's
// tokens: q rotated into q_out; k rotated and v copied into the KV cache at
// the token's row (its sequence's rows, at its position). q, k and v are read at their own offsets and strides, so
// they can be the column ranges of one fused QKV projection's output.
// cos/sin come from a host-computed table [pos][rot_half]. Partial rotary
// (Phi-3): pairs (i, i + rot_half) for i < rot_half are rotated, the head's
// dimensions from 2 * rot_half on pass through (rot_half = head_dim/2: all).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
    uint n_tokens; uint n_heads; uint n_kv_heads; uint head_dim;
    uint q_offset; uint q_stride; uint k_offset; uint k_stride;
    uint v_offset; uint v_stride; uint q_out_stride; uint kv_stride;
    uint table_cos_offset; uint table_sin_offset; uint rot_half;
} p;
DECLARE_STEP(0)
layout(binding = 1) readonly buffer Q { float q[]; };
layout(binding = 2) readonly buffer K { float k[]; };
layout(binding = 3) readonly buffer V { float v[]; };
layout(binding = 4) writeonly buffer QOut { float qout[]; };
layout(binding = 5) writeonly buffer KCache { float kcache[]; };
layout(binding = 6) writeonly buffer VCache { float vcache[]; };
layout(binding = 7) readonly buffer Table { float table[]; };

void main() {
    const uint half_dim = p.head_dim / 2u;
    const uint heads = p.n_heads + p.n_kv_heads;
    const uint idx = FLAT_INVOCATION_ID;
    if (idx >= p.n_tokens * heads * half_dim) return;
    const uint i = idx % half_dim;
    const uint h = (idx / half_dim) % heads;
    const uint t = idx / (half_dim * heads);
    const uint pos = STEP_POS(t);
    const uint r = p.rot_half;
    // Thread i < r rotates the pair (i, i + r); the others copy two of the
    // dimensions past the rotary ones.
    const bool rotate = i < r;
    const uint e0 = rotate ? i : 2u * i, e1 = rotate ? i + r : 2u * i + 1u;
    const uint ti = rotate ? i : 0u;
    const float c = rotate ? table[p.table_cos_offset + pos * r + ti] : 1.0;
    const float s = rotate ? table[p.table_sin_offset + pos * r + ti] : 0.0;
    if (h < p.n_heads) {
        const uint b = p.q_offset + t * p.q_stride + h * p.head_dim;
        const uint o = t * p.q_out_stride + h * p.head_dim;
        const float x1 = q[b + e0], x2 = q[b + e1];
        qout[o + e0] = rotate ? x1 * c - x2 * s : x1;
        qout[o + e1] = rotate ? x2 * c + x1 * s : x2;
    } else {
        const uint kh = h - p.n_heads;
        const uint kb = p.k_offset + t * p.k_stride + kh * p.head_dim;
        const uint vb = p.v_offset + t * p.v_stride + kh * p.head_dim;
        const uint dst = STEP_ROW(t) * p.kv_stride + kh * p.head_dim;
        const float x1 = k[kb + e0], x2 = k[kb + e1];
        kcache[dst + e0] = rotate ? x1 * c - x2 * s : x1;
        kcache[dst + e1] = rotate ? x2 * c + x1 * s : x2;
        vcache[dst + i] = v[vb + i];
        vcache[dst + i + half_dim] = v[vb + i + half_dim];
    }
}
