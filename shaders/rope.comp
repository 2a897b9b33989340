#version 450
// Rotary embedding (Hugging Face rotate_half convention) for the step's
// tokens: q rotated into q_out; k rotated and v copied into the KV cache at
// the token's row (its sequence's rows, at its position). q, k and v are read at their own offsets and strides, so
// they can be the column ranges of one fused QKV projection's output.
// cos/sin come from a host-computed table [pos][head_dim/2].
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
    uint n_tokens; uint n_heads; uint n_kv_heads; uint head_dim;
    uint q_offset; uint q_stride; uint k_offset; uint k_stride;
    uint v_offset; uint v_stride; uint q_out_stride; uint kv_stride;
    uint table_cos_offset; uint table_sin_offset;
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
    const float c = table[p.table_cos_offset + pos * half_dim + i];
    const float s = table[p.table_sin_offset + pos * half_dim + i];
    if (h < p.n_heads) {
        const uint b = p.q_offset + t * p.q_stride + h * p.head_dim;
        const uint o = t * p.q_out_stride + h * p.head_dim;
        const float x1 = q[b + i], x2 = q[b + i + half_dim];
        qout[o + i] = x1 * c - x2 * s;
        qout[o + i + half_dim] = x2 * c + x1 * s;
    } else {
        const uint kh = h - p.n_heads;
        const uint kb = p.k_offset + t * p.k_stride + kh * p.head_dim;
        const uint vb = p.v_offset + t * p.v_stride + kh * p.head_dim;
        const uint dst = STEP_ROW(t) * p.kv_stride + kh * p.head_dim;
        const float x1 = k[kb + i], x2 = k[kb + i + half_dim];
        kcache[dst + i] = x1 * c - x2 * s;
        kcache[dst + i + half_dim] = x2 * c + x1 * s;
        vcache[dst + i] = v[vb + i];
        vcache[dst + i + half_dim] = v[vb + i + half_dim];
    }
}
