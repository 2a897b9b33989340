#version 450
// Causal grouped-query attention over the KV cache for the step's tokens,
// each over its own sequence's rows. With QUERIES > 1 the host guarantees that
// the step holds one sequence's consecutive positions.
// One subgroup per (head, QUERIES consecutive tokens), no barriers: lanes
// score one key each against every query of the group, so each key and value
// is loaded once for QUERIES queries; the block max/sum come from subgroup ops
// (online softmax, running max starts finite to avoid inf-inf), and each lane
// accumulates a slice of head_dim per query.
// TEXEL_READS: q and the caches are read as texel buffers (INPUT_VEC4: four
// floats per fetch, when head_dim is a multiple of 4).
// Loops over the register arrays have constant bounds (specialization
// constants): a loop the compiler cannot unroll indexes them dynamically, which
// CPU drivers turn into per-lane memory accesses (see docs/PERFORMANCE.md).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_ballot : require
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MAX_DIMS_PER_LANE = 32u;
layout(constant_id = 2) const uint QUERIES = 1u;
layout(push_constant) uniform Push {
    uint n_tokens; uint n_heads; uint n_kv_heads; uint head_dim;
    uint q_stride; uint kv_stride; uint out_stride; uint window; float scale; float softcap;
} p;
DECLARE_STEP(0)
DECLARE_INPUT(1, q)
DECLARE_INPUT(2, kcache)
DECLARE_INPUT(3, vcache)
layout(binding = 4) writeonly buffer Out { float outv[]; };

const float NEG_BIG = -3.4e38 * 0.5;

void main() {
    const uint h = gl_WorkGroupID.x;
    const uint t0 = gl_WorkGroupID.y * QUERIES;
    const uint nq = min(QUERIES, p.n_tokens - t0);
    const uint lane = gl_SubgroupInvocationID;
    const uint S = gl_SubgroupSize;
    const uint kvh = h / (p.n_heads / p.n_kv_heads);
    // Query i sits at position posFirst + i and sees keys first(i)..its position.
    const uint posFirst = STEP_POS(t0), posLast = posFirst + nq - 1u;
    const uint rowBase = STEP_SEQ(t0) * step.seq_rows;
    const uint first = (p.window > 0u && posFirst + 1u > p.window) ? posFirst + 1u - p.window : 0u;

    float acc[QUERIES][MAX_DIMS_PER_LANE];
    float running_max[QUERIES], running_sum[QUERIES];
    uint qb[QUERIES];
    for (uint i = 0; i < QUERIES; ++i) {
        for (uint d = 0; d < MAX_DIMS_PER_LANE; ++d) acc[i][d] = 0.0;
        running_max[i] = NEG_BIG;
        running_sum[i] = 0.0;
        qb[i] = min(t0 + i, p.n_tokens - 1u) * p.q_stride + h * p.head_dim;
    }

    for (uint base = first; base <= posLast; base += S) {
        const uint j = base + lane;
        float dotv[QUERIES];
        for (uint i = 0; i < QUERIES; ++i) dotv[i] = 0.0;
        if (j <= posLast) {
            const uint kb = (rowBase + j) * p.kv_stride + kvh * p.head_dim;
            uint d = 0;
            for (; d + 4u <= p.head_dim; d += 4u) {
                const vec4 k4 = LOADX4(kcache, kb + d);
                for (uint i = 0; i < QUERIES; ++i) dotv[i] += dot(LOADX4(q, qb[i] + d), k4);
            }
            for (; d < p.head_dim; ++d) {
                const float k1 = LOADX(kcache, kb + d);
                for (uint i = 0; i < QUERIES; ++i) dotv[i] += LOADX(q, qb[i] + d) * k1;
            }
        }
        float weight[QUERIES];
        for (uint i = 0; i < QUERIES; ++i) {
            const uint pos = posFirst + i;
            const uint firstI = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
            const bool visible = i < nq && j <= pos && j >= firstI;
            float score = dotv[i] * p.scale;
            // Gemma 2: scores soft-capped to (-softcap, softcap).
            if (p.softcap > 0.0) score = p.softcap * safeTanh(score / p.softcap);
            score = visible ? score : NEG_BIG;
            const float new_max = max(running_max[i], subgroupMax(score));
            const float correction = exp(running_max[i] - new_max);
            weight[i] = visible ? exp(score - new_max) : 0.0;
            running_sum[i] = running_sum[i] * correction + subgroupAdd(weight[i]);
            for (uint d = 0; d < MAX_DIMS_PER_LANE; ++d) acc[i][d] *= correction;
            running_max[i] = new_max;
        }
        const uint count = min(S, posLast + 1u - base);
        for (uint jj = 0; jj < count; ++jj) {
            const uint vb = (rowBase + base + jj) * p.kv_stride + kvh * p.head_dim;
            float wj[QUERIES];
            for (uint i = 0; i < QUERIES; ++i) wj[i] = subgroupBroadcast(weight[i], jj);
            for (uint d = 0; d < MAX_DIMS_PER_LANE; ++d) {
                const uint dim = lane + d * S;
                if (dim < p.head_dim) {
                    const float v = LOADX(vcache, vb + dim);
                    for (uint i = 0; i < QUERIES; ++i) acc[i][d] += wj[i] * v;
                }
            }
        }
    }
    for (uint i = 0; i < QUERIES; ++i) {
        if (i >= nq) break;
        const uint ob = (t0 + i) * p.out_stride + h * p.head_dim;
        for (uint d = 0; d < MAX_DIMS_PER_LANE; ++d) {
            const uint dim = lane + d * S;
            if (dim < p.head_dim) outv[ob + dim] = acc[i][d] / running_sum[i];
        }
    }
}
