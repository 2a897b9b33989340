#version 450
// Routing for one MoE layer and one step: gate logits → softmax → scores in
// the routing mode → top-k → renormalised (or, on request, raw) weights, then each expert slot's
// list of tokens (the route buffer the expert matmuls read, common.glsl).
// One workgroup: the work is tiny and the lists must be built in token order.
//
// Modes: 0 token (each token's own probabilities), 1 running (running sum of
// the probabilities of every token so far, optionally decayed), 2 sequence
// (running during the prompt; a reply keeps the prompt's final choice).
// The running sums live per sequence and position beside the KV cache, so
// decode is O(1) and rewinding a session recomputes them. A step may hold
// tokens of several sequences (batched decode): each token reads its own
// sequence's sums, frozen choice and pin, and counts in its sequence's usage.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(push_constant) uniform Push {
    uint n_experts;   // routed experts E; slot E is the base MLP (pinning only)
    uint top_k;
    uint mode;
    uint max_batch;
    float decay;      // running-sum decay per token (1 = plain mean)
    uint probs_base;  // state offsets (floats)
    uint frozen_base;
    uint renormalise; // 0: weights are the chosen scores as they are (Qwen2-MoE norm_topk_prob = false)
} p;

DECLARE_STEP(0)
layout(binding = 1) readonly buffer Logits { float logits[]; }; // [n, E]
layout(binding = 2) buffer Route { uint route[]; };
layout(binding = 3) buffer State { float state[]; };   // running sums [seqs][seq_rows][E], frozen [seqs][E], probs [max_batch][E]
layout(binding = 4) buffer Usage { uint usage[]; };    // [seqs][slots]: tokens each slot received, accumulated

const uint MAX_SLOTS = 160u;            // experts + the base slot (MASK_WORDS × 32)
const uint MASK_WORDS = 5u;

bool chosen(const uint mask[MASK_WORDS], uint e) { return (mask[e >> 5] & (1u << (e & 31u))) != 0u; }

void main() {
    const uint n = step.n_tokens;
    const uint E = p.n_experts;
    const uint slots = E + 1u;
    const uint lid = gl_LocalInvocationID.x;
    const uint weightsBase = ROUTE_LISTS + slots * p.max_batch;
    const uint chosenBase = weightsBase + p.max_batch * slots; // [max_batch][MASK_WORDS]

    // 1. Softmax of each token's gate logits.
    for (uint t = lid; t < n; t += gl_WorkGroupSize.x) {
        float m = logits[t * E];
        for (uint e = 1u; e < E; ++e) m = max(m, logits[t * E + e]);
        float sum = 0.0;
        for (uint e = 0u; e < E; ++e) sum += exp(logits[t * E + e] - m);
        for (uint e = 0u; e < E; ++e) state[p.probs_base + t * E + e] = exp(logits[t * E + e] - m) / sum;
    }
    memoryBarrierBuffer();
    barrier();

    // 2. Running sums, one invocation per expert walking the tokens in order.
    // A token's previous position is in the state already (an earlier step) or
    // was written by this invocation for an earlier token of the step.
    if (p.mode != 0u && lid < E) {
        for (uint t = 0u; t < n; ++t) {
            const uint row = STEP_ROW(t);
            const float before = STEP_POS(t) == 0u ? 0.0 : state[(row - 1u) * E + lid];
            const float run = p.decay * before + state[p.probs_base + t * E + lid];
            state[row * E + lid] = run;
            if (p.mode == 2u && !STEP_REPLY(t)) state[p.frozen_base + STEP_SEQ(t) * E + lid] = run;
        }
    }
    memoryBarrierBuffer();
    barrier();

    // 3. Scores → top-k → renormalised weights and the chosen-slot mask.
    for (uint t = lid; t < n; t += gl_WorkGroupSize.x) {
        float score[MAX_SLOTS];
        for (uint e = 0u; e < E; ++e) {
            if (p.mode == 0u) score[e] = state[p.probs_base + t * E + e];
            else if (p.mode == 2u && STEP_REPLY(t)) score[e] = state[p.frozen_base + STEP_SEQ(t) * E + e];
            else score[e] = state[STEP_ROW(t) * E + e];
        }
        uint mask[MASK_WORDS] = uint[MASK_WORDS](0u, 0u, 0u, 0u, 0u);
        uint picked = 0u;
        const uint pin = STEP_PIN(t);
        if (pin != 0u) {
            const uint e = min(pin - 1u, E);
            mask[e >> 5] |= 1u << (e & 31u);
            picked = 1u;
        } else {
            for (uint j = 0u; j < min(p.top_k, E); ++j) {
                uint best = MAX_SLOTS;
                for (uint e = 0u; e < E; ++e)
                    if (!chosen(mask, e) && (best == MAX_SLOTS || score[e] > score[best])) best = e;
                mask[best >> 5] |= 1u << (best & 31u);
                ++picked;
            }
        }
        float total = 0.0;
        for (uint e = 0u; e < E; ++e)
            if (chosen(mask, e)) total += score[e];
        for (uint e = 0u; e < slots; ++e) {
            float w = 0.0;
            if (chosen(mask, e))
                w = (pin != 0u || total <= 0.0) ? 1.0 / float(picked)
                    : p.renormalise != 0u                   ? score[e] / total
                                                            : score[e];
            route[weightsBase + t * slots + e] = floatBitsToUint(w);
        }
        for (uint w = 0u; w < MASK_WORDS; ++w) route[chosenBase + t * MASK_WORDS + w] = mask[w];
    }
    memoryBarrierBuffer();
    barrier();

    // 4. Each slot's token list, in token order.
    for (uint s = lid; s < slots; s += gl_WorkGroupSize.x) {
        uint count = 0u;
        for (uint t = 0u; t < n; ++t)
            if ((route[chosenBase + t * MASK_WORDS + (s >> 5)] & (1u << (s & 31u))) != 0u) {
                route[ROUTE_LISTS + s * p.max_batch + count++] = t;
                usage[STEP_SEQ(t) * slots + s] += 1u;
            }
        route[s] = count;
    }
}
