#version 450
// Gate gradients over a batch: dW[e, h] = sum_t dlogits[t, e] * x[t, h] (one
// invocation per element, tokens summed in order), db[e] = sum_t dlogits[t, e],
// and the batch loss (mean of the per-token losses) into loss_out[layer] so
// the host reads one float per layer per step.
// Features split into chunks are handled by one dispatch per chunk: the first
// writes dW, db and the loss, later ones add their tokens' share of dW.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "gate_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
    uint E;
    uint Kp;        // padded row length
    uint row_base;
    uint row_count;
    uint layer;
    uint flags;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
DECLARE_GATE_STEP(1)
layout(binding = 2) readonly buffer DLogits { float dlogits[]; };     // [n, E]
layout(binding = 3) readonly buffer TokenLoss { float token_loss[]; }; // [n]
layout(binding = 4) buffer Grads { float grads[]; };                   // dW [E, Kp], then db [E]
layout(binding = 5) writeonly buffer LossOut { float loss_out[]; };    // [layers]

void main() {
    const uint g = FLAT_INVOCATION_ID;
    const uint n = step.n_tokens;
    const uint wCount = p.E * p.Kp;
    if (g < wCount) {
        const uint e = g / p.Kp;
        const uint h = g - e * p.Kp;
        float acc = 0.0;
        for (uint t = 0; t < n; ++t) {
            const uint row = step.token_index[t];
            if (row < p.row_base || row - p.row_base >= p.row_count) continue;
            acc += dlogits[t * p.E + e] * x[(row - p.row_base) * p.Kp + h];
        }
        grads[g] = (p.flags & GATE_FLAG_ACCUMULATE) != 0u ? grads[g] + acc : acc;
        return;
    }
    if ((p.flags & GATE_FLAG_FIRST_CHUNK) == 0u) return;
    if (g < wCount + p.E) {
        const uint e = g - wCount;
        float acc = 0.0;
        for (uint t = 0; t < n; ++t) acc += dlogits[t * p.E + e];
        grads[g] = acc;
    } else if (g == wCount + p.E) {
        float acc = 0.0;
        for (uint t = 0; t < n; ++t) acc += token_loss[t];
        loss_out[p.layer] = acc / float(max(n, 1u));
    }
}
