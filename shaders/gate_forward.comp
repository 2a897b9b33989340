#version 450
// Gate forward for a batch gathered from a feature matrix: logits = W x + b,
// softmax probabilities, and in training mode the per-token cross entropy
// (logsumexp - logit[label], computed from the logits: never a softmax of a
// softmax) and dlogits = (p - onehot(label)) / n.
// One subgroup per token and no barriers: lanes stride over 4-float blocks of
// the (zero-padded) row accumulating all E logits, then subgroup sums give
// every lane all logits.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"
#include "gate_common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint E = 2u; // experts

layout(push_constant) uniform Push {
    uint Kp4;       // padded row length / 4 (rows of X and W)
    uint row_base;  // first feature row held by this chunk
    uint row_count; // feature rows in this chunk
    uint flags;
} p;

layout(binding = 0) readonly buffer X { vec4 x4[]; };
// Parameters: W [E, Kp] row-major, then bias [E].
layout(binding = 1) readonly buffer ParamBlocks { vec4 w4[]; };
layout(binding = 1) readonly buffer ParamElems { float params[]; };
DECLARE_GATE_STEP(2)
layout(binding = 3) readonly buffer Labels { int labels[]; }; // per feature row
layout(binding = 4) writeonly buffer Probs { float probs[]; }; // [n, E]
layout(binding = 5) writeonly buffer TokenLoss { float token_loss[]; }; // [n]
layout(binding = 6) writeonly buffer DLogits { float dlogits[]; }; // [n, E]

void main() {
    const uint t = flatGroupId() * gl_NumSubgroups + gl_SubgroupID;
    const uint n = step.n_tokens;
    if (t >= n) return; // uniform per subgroup
    const uint row = step.token_index[t];
    if (row < p.row_base || row - p.row_base >= p.row_count) return; // another chunk's token
    const uint lane = gl_SubgroupInvocationID;
    const uint xbase = (row - p.row_base) * p.Kp4;

    float z[E];
    for (uint e = 0; e < E; ++e) z[e] = 0.0;
    for (uint b = lane; b < p.Kp4; b += gl_SubgroupSize) {
        const vec4 xv = x4[xbase + b];
        for (uint e = 0; e < E; ++e) z[e] += dot(w4[e * p.Kp4 + b], xv);
    }
    const uint biasBase = E * p.Kp4 * 4u;
    float zmax = -3.402823466e38;
    for (uint e = 0; e < E; ++e) {
        z[e] = subgroupAdd(z[e]) + params[biasBase + e];
        zmax = max(zmax, z[e]);
    }
    float sum = 0.0;
    for (uint e = 0; e < E; ++e) sum += exp(z[e] - zmax);
    const float invSum = 1.0 / sum;

    for (uint e = lane; e < E; e += gl_SubgroupSize) probs[t * E + e] = exp(z[e] - zmax) * invSum;
    if ((p.flags & GATE_FLAG_TRAIN) != 0u) {
        const int label = labels[row];
        const float invN = 1.0 / float(n);
        for (uint e = lane; e < E; e += gl_SubgroupSize) {
            const float pe = exp(z[e] - zmax) * invSum;
            dlogits[t * E + e] = (pe - (int(e) == label ? 1.0 : 0.0)) * invN;
        }
        if (subgroupElect()) token_loss[t] = (zmax + log(sum)) - z[label];
    }
}
