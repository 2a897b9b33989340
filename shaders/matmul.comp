#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for many tokens (prefill).
// Register-blocked, no shared memory and no barriers: each invocation
// computes R = 4·QUADS rows × TOKENS tokens, loading 8 weights of each row at
// once and reusing every loaded weight for TOKENS tokens and every x value for
// R rows (both are specialization constants: MOE_MATMUL_TOKENS/_QUADS).
// (Barriers and shared-memory gathers are what CPU drivers such as lavapipe
// run slowest; GPUs serve the repeated x reads from cache.)
// GATED: out = act(Wg·x) * (Wu·x) (SwiGLU, or GeGLU with FLAG_GELU), both products from one x load.
// NORM_INPUT: x is the un-normalised residual and the RMSNorm before the
// projection is folded in, as in matvec.comp: x times the norm weights as it
// is read, each token's sum of squares from the same reads, and the sums
// scaled by 1/rms at the end (the projection is linear in x).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x_id = 3) in; // invocations per workgroup (matmulGroupSize)
layout(constant_id = 0) const uint TOKENS = 4u;  // tokens per invocation
layout(constant_id = 1) const uint QUADS = 3u;   // groups of 4 rows per invocation
layout(constant_id = 2) const bool NORM_INPUT = false;
layout(constant_id = 3) const uint GROUP_SIZE = 64u;
const uint R = 4u * QUADS;                        // rows per invocation

layout(push_constant) uniform Push {
    uint rows; uint K; uint Kp; uint n_tokens;
    uint x_offset; uint x_stride; uint out_offset; uint out_stride;
    uint row_base; uint flags;
    uint route_expert; uint route_list; uint route_weight; uint route_slots;
    float eps; // NORM_INPUT
} p;

DECLARE_WEIGHTS(0, w)
DECLARE_INPUT(1, x)
layout(binding = 2) buffer Out { float outv[]; };
layout(binding = 3) readonly buffer Bias { float bias[]; };
// Bindings as in matvec.comp: the up projection of GATED at 4, the route
// after it, the norm weights after that.
#ifdef GATED
DECLARE_WEIGHTS(4, wu)
layout(binding = 5) readonly buffer Route { uint route[]; };
DECLARE_INPUT(6, normw)
#else
layout(binding = 4) readonly buffer Route { uint route[]; };
DECLARE_INPUT(5, normw)
#endif
#ifdef W_QUANT
#include "quant.glsl"
#endif

void main() {
    const uint rowBlocks = (p.rows + R - 1u) / R;
    const uint rb = FLAT_INVOCATION_ID;
    if (rb >= rowBlocks) return;
    const uint r0 = rb * R;
    const uint t0 = gl_GlobalInvocationID.y * TOKENS;
    // Routed: only the expert's slots exist (its count is known on the device only).
    const bool gather = (p.flags & FLAG_GATHER) != 0u, scatter = (p.flags & FLAG_SCATTER) != 0u;
    const uint n = (gather || scatter) ? min(route[p.route_expert], p.n_tokens) : p.n_tokens;
    if (t0 >= n) return;
    // Rows past the end reuse the last row (results discarded); tokens likewise.
    uint wr[R];
    for (uint i = 0; i < R; ++i) wr[i] = min(r0 + i, p.rows - 1u) * p.Kp;
    uint xb[TOKENS];
    for (uint t = 0; t < TOKENS; ++t) {
        const uint slot = min(t0 + t, n - 1u);
        xb[t] = p.x_offset + (gather ? route[p.route_list + slot] : slot) * p.x_stride;
    }
    // acc[t * QUADS + q] holds token t's partial sums for rows 4q..4q+3.
    vec4 acc[TOKENS * QUADS];
    for (uint i = 0; i < TOKENS * QUADS; ++i) acc[i] = vec4(0.0);
    float sumsq[TOKENS];
    for (uint t = 0; t < TOKENS; ++t) sumsq[t] = 0.0;
#ifdef GATED
    vec4 accu[TOKENS * QUADS];
    for (uint i = 0; i < TOKENS * QUADS; ++i) accu[i] = vec4(0.0);
#endif

    const uint kFull = (p.K / 8u) * 8u;
    for (uint k = 0; k < kFull; k += 8u) {
        vec4 wa[R], wb[R];
        for (uint i = 0; i < R; ++i) LOAD8R(w, wr[i], p.K, k, wa[i], wb[i])
#ifdef GATED
        vec4 ua[R], ub[R];
        for (uint i = 0; i < R; ++i) LOAD8R(wu, wr[i], p.K, k, ua[i], ub[i])
#endif
        vec4 n0 = vec4(1.0), n1 = vec4(1.0);
        if (NORM_INPUT) {
            n0 = LOADX4(normw, k);
            n1 = LOADX4(normw, k + 4u);
        }
        for (uint t = 0; t < TOKENS; ++t) {
            const uint xi = xb[t] + k;
            vec4 x0 = LOADX4(x, xi), x1 = LOADX4(x, xi + 4u);
            if (NORM_INPUT) {
                sumsq[t] += dot(x0, x0) + dot(x1, x1);
                x0 *= n0;
                x1 *= n1;
            }
            for (uint q = 0; q < QUADS; ++q) {
                const uint i = 4u * q;
                acc[t * QUADS + q] += vec4(dot(wa[i], x0) + dot(wb[i], x1), dot(wa[i + 1u], x0) + dot(wb[i + 1u], x1),
                                           dot(wa[i + 2u], x0) + dot(wb[i + 2u], x1), dot(wa[i + 3u], x0) + dot(wb[i + 3u], x1));
#ifdef GATED
                accu[t * QUADS + q] += vec4(dot(ua[i], x0) + dot(ub[i], x1), dot(ua[i + 1u], x0) + dot(ub[i + 1u], x1),
                                            dot(ua[i + 2u], x0) + dot(ub[i + 2u], x1), dot(ua[i + 3u], x0) + dot(ub[i + 3u], x1));
#endif
            }
        }
    }
    for (uint k = kFull; k < p.K; ++k) {
        const float nk = NORM_INPUT ? LOADX(normw, k) : 1.0;
        for (uint q = 0; q < QUADS; ++q) {
            const uint i = 4u * q;
            const vec4 wk = vec4(LOAD1R(w, wr[i], p.K, k), LOAD1R(w, wr[i + 1u], p.K, k), LOAD1R(w, wr[i + 2u], p.K, k), LOAD1R(w, wr[i + 3u], p.K, k));
#ifdef GATED
            const vec4 uk = vec4(LOAD1R(wu, wr[i], p.K, k), LOAD1R(wu, wr[i + 1u], p.K, k), LOAD1R(wu, wr[i + 2u], p.K, k), LOAD1R(wu, wr[i + 3u], p.K, k));
#endif
            for (uint t = 0; t < TOKENS; ++t) {
                const float xr = LOADX(x, xb[t] + k);
                // The sum of squares from the first quad's read of each x only.
                if (NORM_INPUT && q == 0u) sumsq[t] += xr * xr;
                const float xk = xr * nk;
                acc[t * QUADS + q] += wk * xk;
#ifdef GATED
                accu[t * QUADS + q] += uk * xk;
#endif
            }
        }
    }

    const bool hasBias = (p.flags & FLAG_BIAS) != 0u;
    for (uint t = 0; t < TOKENS; ++t) {
        if (t0 + t >= n) break;
        uint orow = t0 + t;
        const float invRms = NORM_INPUT ? inversesqrt(sumsq[t] / float(p.K) + p.eps) : 1.0;
        float scale = 1.0;
        if (scatter) {
            orow = route[p.route_list + orow];
            scale = uintBitsToFloat(route[p.route_weight + orow * p.route_slots]);
        }
        for (uint i = 0; i < R; ++i) {
            if (r0 + i >= p.rows) break;
            const uint o = p.out_offset + orow * p.out_stride + p.row_base + r0 + i;
#ifdef GATED
            const float g = acc[t * QUADS + i / 4u][i % 4u] * invRms;
            float v = gateAct(g, p.flags) * (accu[t * QUADS + i / 4u][i % 4u] * invRms);
#else
            float v = acc[t * QUADS + i / 4u][i % 4u] * invRms;
#endif
            if (hasBias) v += bias[p.row_base + r0 + i];
            v *= scale;
            if ((p.flags & FLAG_ACCUMULATE) != 0u) v += outv[o];
            outv[o] = v;
        }
    }
}
