#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for many tokens (prefill).
// Register-blocked, no shared memory and no barriers: each invocation
// computes 4 rows × TOKENS tokens, loading 8 weights of each row at once and
// reusing every loaded weight for TOKENS tokens and every x value for 4 rows.
// (Barriers and shared-memory gathers are what CPU drivers such as lavapipe
// run slowest; GPUs serve the repeated x reads from cache.)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TOKENS = 16u; // tokens per invocation

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
layout(binding = 4) readonly buffer Route { uint route[]; };

// acc_t holds token t's partial sums for the 4 rows.
#define ACCUMULATE(T) { \
    const uint xi = xb[T] + k; \
    const vec4 x0 = LOADX4(x, xi), x1 = LOADX4(x, xi + 4u); \
    acc[T] += vec4(dot(w0a, x0) + dot(w0b, x1), dot(w1a, x0) + dot(w1b, x1), \
                   dot(w2a, x0) + dot(w2b, x1), dot(w3a, x0) + dot(w3b, x1)); }

void main() {
    const uint rowBlocks = (p.rows + 3u) / 4u;
    const uint rb = FLAT_INVOCATION_ID;
    if (rb >= rowBlocks) return;
    const uint r0 = rb * 4u;
    const uint t0 = gl_GlobalInvocationID.y * TOKENS;
    // Routed: only the expert's slots exist (its count is known on the device only).
    const bool gather = (p.flags & FLAG_GATHER) != 0u, scatter = (p.flags & FLAG_SCATTER) != 0u;
    const uint n = (gather || scatter) ? min(route[p.route_expert], p.n_tokens) : p.n_tokens;
    if (t0 >= n) return;
    // Rows past the end reuse the last row (results discarded); tokens likewise.
    const uint wr0 = min(r0, p.rows - 1u) * p.Kp, wr1 = min(r0 + 1u, p.rows - 1u) * p.Kp;
    const uint wr2 = min(r0 + 2u, p.rows - 1u) * p.Kp, wr3 = min(r0 + 3u, p.rows - 1u) * p.Kp;
    uint xb[TOKENS];
    for (uint t = 0; t < TOKENS; ++t) {
        const uint slot = min(t0 + t, n - 1u);
        xb[t] = p.x_offset + (gather ? route[p.route_list + slot] : slot) * p.x_stride;
    }
    vec4 acc[TOKENS];
    for (uint t = 0; t < TOKENS; ++t) acc[t] = vec4(0.0);

    const uint kFull = (p.K / 8u) * 8u;
    for (uint k = 0; k < kFull; k += 8u) {
        vec4 w0a, w0b, w1a, w1b, w2a, w2b, w3a, w3b;
        LOAD8(w, wr0 + k, w0a, w0b)
        LOAD8(w, wr1 + k, w1a, w1b)
        LOAD8(w, wr2 + k, w2a, w2b)
        LOAD8(w, wr3 + k, w3a, w3b)
        for (uint t = 0; t < TOKENS; ++t) ACCUMULATE(t)
    }
    for (uint k = kFull; k < p.K; ++k) {
        const vec4 wk = vec4(LOAD1(w, wr0 + k), LOAD1(w, wr1 + k), LOAD1(w, wr2 + k), LOAD1(w, wr3 + k));
        for (uint t = 0; t < TOKENS; ++t) acc[t] += wk * LOADX(x, xb[t] + k);
    }

    vec4 b = vec4(0.0);
    if ((p.flags & FLAG_BIAS) != 0u)
        for (uint i = 0; i < 4u; ++i) b[i] = bias[p.row_base + min(r0 + i, p.rows - 1u)];
    for (uint t = 0; t < TOKENS; ++t) {
        if (t0 + t >= n) break;
        uint orow = t0 + t;
        float scale = 1.0;
        if (scatter) {
            orow = route[p.route_list + orow];
            scale = uintBitsToFloat(route[p.route_weight + orow * p.route_slots]);
        }
        for (uint i = 0; i < 4u; ++i) {
            if (r0 + i >= p.rows) break;
            const uint o = p.out_offset + orow * p.out_stride + p.row_base + r0 + i;
            float v = (acc[t][i] + b[i]) * scale;
            if ((p.flags & FLAG_ACCUMULATE) != 0u) v += outv[o];
            outv[o] = v;
        }
    }
}
