#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for few tokens (decode).
// One subgroup per ROWS rows and no barriers: lanes stride over 8-weight
// blocks, each x block is loaded once for all ROWS rows, and every row ends
// with a subgroup sum. GATED: out = silu(Wg·x) * (Wu·x) (SwiGLU).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 1u;

layout(push_constant) uniform Push {
    uint rows; uint K; uint Kp; uint n_tokens;
    uint x_offset; uint x_stride; uint out_offset; uint out_stride;
    uint row_base; uint flags;
    uint route_expert; uint route_list; uint route_weight; uint route_slots;
} p;

DECLARE_WEIGHTS(0, w)
DECLARE_INPUT(1, x)
layout(binding = 2) buffer Out { float outv[]; };
layout(binding = 3) readonly buffer Bias { float bias[]; };
#ifdef GATED
DECLARE_WEIGHTS(4, wu)
layout(binding = 5) readonly buffer Route { uint route[]; };
#else
layout(binding = 4) readonly buffer Route { uint route[]; };
#endif

void main() {
    const uint row0 = (flatGroupId() * gl_NumSubgroups + gl_SubgroupID) * ROWS;
    const uint t = gl_WorkGroupID.y; // token, or the expert's slot when routed
    if (row0 >= p.rows) return; // uniform per subgroup
    const bool gather = (p.flags & FLAG_GATHER) != 0u, scatter = (p.flags & FLAG_SCATTER) != 0u;
    if ((gather || scatter) && t >= route[p.route_expert]) return; // uniform per workgroup
    const uint lane = gl_SubgroupInvocationID;
    const uint xbase = p.x_offset + (gather ? route[p.route_list + t] : t) * p.x_stride;
    const uint blocks = p.K >> 3;
    uint wbase[ROWS];
    float acc[ROWS];
#ifdef GATED
    float accu[ROWS];
#endif
    for (uint r = 0; r < ROWS; ++r) {
        wbase[r] = min(row0 + r, p.rows - 1u) * p.Kp; // rows past the end are computed, not stored
        acc[r] = 0.0;
#ifdef GATED
        accu[r] = 0.0;
#endif
    }
    for (uint b = lane; b < blocks; b += gl_SubgroupSize) {
        const uint xi = xbase + b * 8u;
        const vec4 x0 = LOADX4(x, xi), x1 = LOADX4(x, xi + 4u);
        for (uint r = 0; r < ROWS; ++r) {
            vec4 a0, a1;
            LOAD8(w, wbase[r] + b * 8u, a0, a1)
            acc[r] += dot(a0, x0) + dot(a1, x1);
#ifdef GATED
            LOAD8(wu, wbase[r] + b * 8u, a0, a1)
            accu[r] += dot(a0, x0) + dot(a1, x1);
#endif
        }
    }
    for (uint k = blocks * 8u + lane; k < p.K; k += gl_SubgroupSize) {
        const float xk = LOADX(x, xbase + k);
        for (uint r = 0; r < ROWS; ++r) {
            acc[r] += LOAD1(w, wbase[r] + k) * xk;
#ifdef GATED
            accu[r] += LOAD1(wu, wbase[r] + k) * xk;
#endif
        }
    }
    for (uint r = 0; r < ROWS; ++r) {
        const float sum = subgroupAdd(acc[r]);
#ifdef GATED
        const float sumu = subgroupAdd(accu[r]);
#endif
        const uint row = row0 + r;
        if (subgroupElect() && row < p.rows) {
            const uint orow = scatter ? route[p.route_list + t] : t;
            const uint o = p.out_offset + orow * p.out_stride + p.row_base + row;
#ifdef GATED
            outv[o] = sum / (1.0 + exp(-sum)) * sumu;
#else
            float v = scatter ? sum * uintBitsToFloat(route[p.route_weight + orow * p.route_slots]) : sum;
            if ((p.flags & FLAG_BIAS) != 0u) v += bias[p.row_base + row];
            if ((p.flags & FLAG_ACCUMULATE) != 0u) v += outv[o];
            outv[o] = v;
#endif
        }
    }
}
