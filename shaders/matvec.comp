#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for few tokens (decode).
// One subgroup per row and no barriers: lanes stride over 8-weight blocks and
// finish with a subgroup sum. GATED: out = silu(Wg·x) * (Wu·x) (SwiGLU).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
    uint rows; uint K; uint Kp; uint n_tokens;
    uint x_offset; uint x_stride; uint out_offset; uint out_stride;
    uint row_base; uint flags;
} p;

DECLARE_WEIGHTS(0, w)
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) buffer Out { float outv[]; };
layout(binding = 3) readonly buffer Bias { float bias[]; };
#ifdef GATED
DECLARE_WEIGHTS(4, wu)
#endif

void main() {
    const uint row = flatGroupId() * gl_NumSubgroups + gl_SubgroupID;
    const uint t = gl_WorkGroupID.y;
    if (row >= p.rows) return; // uniform per subgroup
    const uint lane = gl_SubgroupInvocationID;
    const uint wbase = row * p.Kp;
    const uint xbase = p.x_offset + t * p.x_stride;
    const uint blocks = p.K >> 3;
    float acc = 0.0;
#ifdef GATED
    float accu = 0.0;
#endif
    for (uint b = lane; b < blocks; b += gl_SubgroupSize) {
        const uint e = wbase + b * 8u;
        const uint xi = xbase + b * 8u;
        const vec4 x0 = vec4(x[xi], x[xi + 1], x[xi + 2], x[xi + 3]);
        const vec4 x1 = vec4(x[xi + 4], x[xi + 5], x[xi + 6], x[xi + 7]);
        vec4 a0, a1;
        LOAD8(w, e, a0, a1)
        acc += dot(a0, x0) + dot(a1, x1);
#ifdef GATED
        LOAD8(wu, e, a0, a1)
        accu += dot(a0, x0) + dot(a1, x1);
#endif
    }
    for (uint k = blocks * 8u + lane; k < p.K; k += gl_SubgroupSize) {
        acc += LOAD1(w, wbase + k) * x[xbase + k];
#ifdef GATED
        accu += LOAD1(wu, wbase + k) * x[xbase + k];
#endif
    }
    acc = subgroupAdd(acc);
#ifdef GATED
    accu = subgroupAdd(accu);
#endif
    if (subgroupElect()) {
        const uint o = p.out_offset + t * p.out_stride + p.row_base + row;
#ifdef GATED
        outv[o] = acc / (1.0 + exp(-acc)) * accu;
#else
        if ((p.flags & FLAG_BIAS) != 0u) acc += bias[p.row_base + row];
        if ((p.flags & FLAG_ACCUMULATE) != 0u) acc += outv[o];
        outv[o] = acc;
#endif
    }
}
