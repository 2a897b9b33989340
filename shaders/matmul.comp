#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for many tokens (prefill).
// Tiled through shared memory: a workgroup computes 64 rows × 32 tokens,
// stepping K by 32 (two barriers per step); each thread holds a 4×4 block.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define TILE_ROWS 64
#define TILE_TOKENS 32
#define TILE_K 32
layout(local_size_x = 128) in;

layout(push_constant) uniform Push {
    uint rows; uint K; uint Kp; uint n_tokens;
    uint x_offset; uint x_stride; uint out_offset; uint out_stride;
    uint row_base; uint flags;
} p;

DECLARE_WEIGHTS(0, w)
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) buffer Out { float outv[]; };
layout(binding = 3) readonly buffer Bias { float bias[]; };

shared float tileW[TILE_K][TILE_ROWS];
shared float tileX[TILE_K][TILE_TOKENS];

void main() {
    const uint row0 = flatGroupId() * TILE_ROWS;
    const uint tok0 = gl_WorkGroupID.y * TILE_TOKENS;
    const uint tid = gl_LocalInvocationIndex;
    const uint tr = (tid % 16u) * 4u; // this thread's 4 rows within the tile
    const uint tt = (tid / 16u) * 4u; // and 4 tokens
    float acc[4][4];
    for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = 0.0;

    for (uint k0 = 0; k0 < p.K; k0 += TILE_K) {
        // 64 rows × 32 k = 256 blocks of 8 weights; two per thread.
        for (uint g = 0; g < 2u; ++g) {
            const uint blk = tid + g * 128u;
            const uint r = blk / 4u;
            const uint kc = (blk % 4u) * 8u;
            vec4 a = vec4(0.0), b = vec4(0.0);
            if (row0 + r < p.rows && k0 + kc < p.Kp) LOAD8(w, (row0 + r) * p.Kp + k0 + kc, a, b)
            for (uint q = 0; q < 4u; ++q) { tileW[kc + q][r] = a[q]; tileW[kc + 4u + q][r] = b[q]; }
        }
        for (uint g = 0; g < 8u; ++g) {
            const uint idx = tid + g * 128u;
            const uint tk = idx / TILE_K;
            const uint kk = idx % TILE_K;
            const uint t = tok0 + tk;
            const uint k = k0 + kk;
            tileX[kk][tk] = (t < p.n_tokens && k < p.K) ? x[p.x_offset + t * p.x_stride + k] : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < TILE_K; ++kk) {
            const vec4 wv = vec4(tileW[kk][tr], tileW[kk][tr + 1u], tileW[kk][tr + 2u], tileW[kk][tr + 3u]);
            const vec4 xv = vec4(tileX[kk][tt], tileX[kk][tt + 1u], tileX[kk][tt + 2u], tileX[kk][tt + 3u]);
            for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] += wv[i] * xv[j];
        }
        barrier();
    }
    for (uint i = 0; i < 4u; ++i) {
        const uint r = row0 + tr + i;
        if (r >= p.rows) continue;
        const float bv = (p.flags & FLAG_BIAS) != 0u ? bias[p.row_base + r] : 0.0;
        for (uint j = 0; j < 4u; ++j) {
            const uint t = tok0 + tt + j;
            if (t >= p.n_tokens) continue;
            const uint o = p.out_offset + t * p.out_stride + p.row_base + r;
            float v = acc[i][j] + bv;
            if ((p.flags & FLAG_ACCUMULATE) != 0u) v += outv[o];
            outv[o] = v;
        }
    }
}
