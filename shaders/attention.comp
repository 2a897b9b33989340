#version 450
// Causal grouped-query attention over the KV cache for the step's tokens.
// One subgroup per (head, token), no barriers: lanes score one key each, the
// block max/sum come from subgroup ops (online softmax, running max starts
// finite to avoid inf-inf), and each lane accumulates a slice of head_dim.
// TEXEL_READS: q and the caches are read as texel buffers (INPUT_VEC4: four
// floats per fetch, when head_dim is a multiple of 4).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_ballot : require
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MAX_DIMS_PER_LANE = 32u;
layout(push_constant) uniform Push {
    uint n_tokens; uint n_heads; uint n_kv_heads; uint head_dim;
    uint q_stride; uint kv_stride; uint out_stride; uint window; float scale;
} p;
DECLARE_STEP(0)
DECLARE_INPUT(1, q)
DECLARE_INPUT(2, kcache)
DECLARE_INPUT(3, vcache)
layout(binding = 4) writeonly buffer Out { float outv[]; };

void main() {
    const uint h = gl_WorkGroupID.x;
    const uint t = gl_WorkGroupID.y;
    const uint lane = gl_SubgroupInvocationID;
    const uint S = gl_SubgroupSize;
    const uint pos = step.pos0 + t;
    const uint kvh = h / (p.n_heads / p.n_kv_heads);
    const uint first = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    const uint qb = t * p.q_stride + h * p.head_dim;
    const uint dims = (p.head_dim + S - 1u) / S;

    float acc[MAX_DIMS_PER_LANE];
    for (uint d = 0; d < dims; ++d) acc[d] = 0.0;
    float running_max = -3.4e38 * 0.5;
    float running_sum = 0.0;

    for (uint base = first; base <= pos; base += S) {
        const uint j = base + lane;
        float score = -3.4e38 * 0.5;
        if (j <= pos) {
            const uint kb = j * p.kv_stride + kvh * p.head_dim;
            float dotv = 0.0;
            uint d = 0;
            for (; d + 4u <= p.head_dim; d += 4u) dotv += dot(LOADX4(q, qb + d), LOADX4(kcache, kb + d));
            for (; d < p.head_dim; ++d) dotv += LOADX(q, qb + d) * LOADX(kcache, kb + d);
            score = dotv * p.scale;
        }
        const float new_max = max(running_max, subgroupMax(score));
        const float correction = exp(running_max - new_max);
        const float weight = j <= pos ? exp(score - new_max) : 0.0;
        running_sum = running_sum * correction + subgroupAdd(weight);
        for (uint d = 0; d < dims; ++d) acc[d] *= correction;
        const uint count = min(S, pos + 1u - base);
        for (uint jj = 0; jj < count; ++jj) {
            const float wj = subgroupBroadcast(weight, jj);
            const uint vb = (base + jj) * p.kv_stride + kvh * p.head_dim;
            for (uint d = 0; d < dims; ++d) {
                const uint dim = lane + d * S;
                if (dim < p.head_dim) acc[d] += wj * LOADX(vcache, vb + dim);
            }
        }
        running_max = new_max;
    }
    const uint ob = t * p.out_stride + h * p.head_dim;
    for (uint d = 0; d < dims; ++d) {
        const uint dim = lane + d * S;
        if (dim < p.head_dim) outv[ob + dim] = acc[d] / running_sum;
    }
}
