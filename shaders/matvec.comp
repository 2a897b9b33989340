#version 450
// out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for few tokens (decode).
// One subgroup per ROWS rows and no barriers: lanes stride over 8-weight
// blocks, each x block is loaded once for all ROWS rows, and every row ends
// with a subgroup sum. GATED: out = act(Wg·x) * (Wu·x) (SwiGLU, or GeGLU with FLAG_GELU).
// SPLIT_K > 1 (GPUs): that many subgroups of the workgroup share the same
// rows, each taking every SPLIT_K-th stretch of the row, and their sums meet
// in shared memory after one barrier: more loads in flight for matrices with
// few rows (a GPU needs megabytes in flight to reach its bandwidth). CPU
// drivers keep 1: no shared memory, no barrier.
// NORM_INPUT: x is the un-normalised residual and the RMSNorm before the
// projection is folded in: x is multiplied by the norm weights as it is
// loaded, and each row's sum by 1/rms(x), from the squares of the same loads
// (decode then needs no separate norm dispatch and barrier).
// EXPERTS: all of a step's routed experts in one dispatch, their matrices
// stacked in one buffer (rows of slot s at (s - first_expert) * rows). GATED:
// one workgroup row per (token, choice) pair, writing h[pair]; plain (the
// down projection): one per token, adding Σ over its choices of weight ·
// W_slot · h[pair] into the residual, so no two workgroups write one row.
// QKV_ROPE (decode): the fused q/k/v projection with RoPE in its epilogue. A
// subgroup's rows come in rotation pairs (i, i + head_dim/2 of one head), so
// it rotates q into `out` and k into the cache, and stores v, at the token's
// position: no separate RoPE pass and barrier.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 1u;
layout(constant_id = 2) const uint SPLIT_K = 1u;
layout(constant_id = 3) const uint SUBGROUPS = 1u; // subgroups per workgroup (gl_NumSubgroups, as a constant)
layout(constant_id = 4) const bool NORM_INPUT = false;
// Tokens per workgroup (batched decode): each weight load serves them all.
// Every (row, token) sum is formed exactly as with one token (same lanes,
// same order), so a sequence's logits do not depend on its neighbours.
// EXPERTS and routed (gather/scatter) dispatches keep 1.
layout(constant_id = 5) const uint TOKENS = 1u;
#ifdef GATED
const uint SUMS = 2u;
#define NORM_BINDING 6
#else
const uint SUMS = 1u;
#define NORM_BINDING 5
#endif
// Per subgroup and token: ROWS * SUMS row sums, then the sum of squares of x.
const uint TOKEN_PARTIALS = ROWS * SUMS + 1u;
const uint PARTIALS = TOKEN_PARTIALS * TOKENS;
shared float partial[SUBGROUPS * PARTIALS];

layout(push_constant) uniform Push {
    uint rows; uint K; uint Kp; uint n_tokens;
    uint x_offset; uint x_stride; uint out_offset; uint out_stride;
    uint row_base; uint flags;
    uint route_expert; uint route_list; uint route_weight; uint route_slots;
    float eps; // NORM_INPUT
    uint top_k; uint chunk_experts; // EXPERTS
    uint q_dim; uint kv_dim; uint head_dim; uint sin_offset; // QKV_ROPE (cos at 0 in the table)
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
DECLARE_INPUT(NORM_BINDING, normw)
#ifdef W_QUANT
#include "quant.glsl"
#endif
#ifdef QKV_ROPE
layout(binding = 6) writeonly buffer KCache { float kcache[]; };
layout(binding = 7) writeonly buffer VCache { float vcache[]; };
layout(binding = 8) readonly buffer Table { float table[]; }; // cos [pos][head_dim/2], then sin
DECLARE_STEP(9)
// Logical row L (pairs at L, L + 1) → the projection's row: within each head,
// logical 2i and 2i + 1 are rows i and i + head_dim/2.
uint pairedRow(uint L) {
    const uint within = L % p.head_dim;
    return L - within + within / 2u + (within & 1u) * (p.head_dim / 2u);
}
#endif

#ifdef EXPERTS
// Push fields as EXPERTS reads them: route_expert = first slot of this
// dispatch's stacked chunk, route_list = the chosen-slot masks, route_weight
// = the routing weights [token][slot], route_slots = slots per token.
const uint MASK_WORDS = 5u; // moe_route.comp
const uint NO_SLOT = 0xffffffffu;
// The j-th chosen slot of token t (in slot order), or NO_SLOT.
uint chosenSlot(uint t, uint j) {
    for (uint w = 0u; w < MASK_WORDS; ++w) {
        uint bits = route[p.route_list + t * MASK_WORDS + w];
        const uint count = uint(bitCount(bits));
        if (j < count) {
            for (; j > 0u; --j) bits &= bits - 1u;
            return w * 32u + uint(findLSB(bits));
        }
        j -= count;
    }
    return NO_SLOT;
}
#endif

void main() {
    const uint rowGroup = gl_SubgroupID / SPLIT_K, part = gl_SubgroupID % SPLIT_K;
    const uint row0 = (flatGroupId() * (SUBGROUPS / SPLIT_K) + rowGroup) * ROWS;
    // Uniform per subgroup; with SPLIT_K every subgroup must reach the barrier.
    if (SPLIT_K == 1u && row0 >= p.rows) return;
    // tok[i]: the i-th token of this workgroup (tokens past the end repeat the
    // last one: computed, not stored); orow[i] its output row.
    uint tok[TOKENS], orow[TOKENS], xbase[TOKENS];
#ifdef EXPERTS
#ifdef GATED
    tok[0] = gl_WorkGroupID.y / p.top_k, orow[0] = gl_WorkGroupID.y; // (token, choice) pair
    const uint choices = 1u;
#else
    tok[0] = gl_WorkGroupID.y, orow[0] = tok[0];
    const uint choices = p.top_k;
#endif
#else
    const uint t0 = gl_WorkGroupID.y * TOKENS;
    const bool gather = (p.flags & FLAG_GATHER) != 0u, scatter = (p.flags & FLAG_SCATTER) != 0u;
    // Routed: only the expert's slots exist (its count is known on the device only).
    const uint n = (gather || scatter) ? min(route[p.route_expert], p.n_tokens) : p.n_tokens;
    if (t0 >= n) return; // uniform per workgroup
    for (uint i = 0u; i < TOKENS; ++i) {
        tok[i] = min(t0 + i, n - 1u);
        orow[i] = scatter ? route[p.route_list + tok[i]] : tok[i];
        xbase[i] = p.x_offset + (gather ? route[p.route_list + tok[i]] : tok[i]) * p.x_stride;
    }
    const uint choices = 1u;
#endif
    const uint lane = gl_SubgroupInvocationID;
    const uint blocks = p.K >> 3;
    uint wbase[ROWS];
    // acc[r * TOKENS + i]: row r, token i.
    float acc[ROWS * TOKENS];
    float sumsq[TOKENS];
#ifdef GATED
    float accu[ROWS * TOKENS];
#endif
    for (uint i = 0; i < TOKENS; ++i) sumsq[i] = 0.0;
    for (uint r = 0; r < ROWS * TOKENS; ++r) {
        acc[r] = 0.0;
#ifdef GATED
        accu[r] = 0.0;
#endif
    }
    for (uint j = 0u; j < choices; ++j) {
#ifdef EXPERTS
#ifdef GATED
        const uint slot = chosenSlot(tok[0], gl_WorkGroupID.y % p.top_k);
        // Uniform per workgroup: a pair without a choice, or whose expert another dispatch has.
        if (slot < p.route_expert || slot >= p.route_expert + p.chunk_experts) return;
        xbase[0] = p.x_offset + tok[0] * p.x_stride;
#else
        const uint slot = chosenSlot(tok[0], j);
        if (slot < p.route_expert || slot >= p.route_expert + p.chunk_experts) continue;
        xbase[0] = p.x_offset + (tok[0] * p.top_k + j) * p.x_stride;
        const float routeWeight = uintBitsToFloat(route[p.route_weight + tok[0] * p.route_slots + slot]);
#endif
        const uint wrow0 = (slot - p.route_expert) * p.rows;
#else
        const uint wrow0 = 0u;
#endif
        for (uint r = 0; r < ROWS; ++r) {
            const uint row = min(row0 + r, p.rows - 1u); // rows past the end are computed, not stored
#ifdef QKV_ROPE
            wbase[r] = pairedRow(row) * p.Kp;
#else
            wbase[r] = (wrow0 + row) * p.Kp;
#endif
        }
        const uint stride = gl_SubgroupSize * SPLIT_K;
#if defined(W_QUANT)
        // 64 weights a step, so that a lane reads whole texels of blocks
        // (quant.glsl); inputs past K (a row of an odd number of 32-blocks) are zeros.
        const uint chunks = (p.K + 63u) / 64u;
        for (uint c = part * gl_SubgroupSize + lane; c < chunks; c += stride) {
            const uint k0 = c * 64u;
            for (uint ti = 0u; ti < TOKENS; ++ti) {
                vec4 xs[16];
                for (uint i = 0u; i < 16u; ++i) {
                    const uint k = k0 + 4u * i;
                    const bool inside = k < p.K;
                    xs[i] = inside ? LOADX4(x, xbase[ti] + k) : vec4(0.0);
                    if (NORM_INPUT) {
                        sumsq[ti] += dot(xs[i], xs[i]);
                        xs[i] *= inside ? LOADX4(normw, k) : vec4(0.0);
                    }
#if defined(EXPERTS) && !defined(GATED)
                    xs[i] *= routeWeight;
#endif
                }
                const vec4 xg = qsums16(xs);
                qprescale(xs); // after the sums, which want the inputs as they are
                for (uint r = 0; r < ROWS; ++r) {
                    acc[r * TOKENS + ti] += qdot64(false, wbase[r], p.K, c, xs, xg);
#ifdef GATED
                    accu[r * TOKENS + ti] += qdot64(true, wbase[r], p.K, c, xs, xg);
#endif
                }
            }
        }
#else
        for (uint b = part * gl_SubgroupSize + lane; b < blocks; b += stride) {
            vec4 x0[TOKENS], x1[TOKENS];
            vec4 n0 = vec4(1.0), n1 = vec4(1.0);
            if (NORM_INPUT) {
                n0 = LOADX4(normw, b * 8u);
                n1 = LOADX4(normw, b * 8u + 4u);
            }
            for (uint ti = 0u; ti < TOKENS; ++ti) {
                const uint xi = xbase[ti] + b * 8u;
                x0[ti] = LOADX4(x, xi), x1[ti] = LOADX4(x, xi + 4u);
                if (NORM_INPUT) {
                    sumsq[ti] += dot(x0[ti], x0[ti]) + dot(x1[ti], x1[ti]);
                    x0[ti] *= n0;
                    x1[ti] *= n1;
                }
#if defined(EXPERTS) && !defined(GATED)
                x0[ti] *= routeWeight;
                x1[ti] *= routeWeight;
#endif
            }
            for (uint r = 0; r < ROWS; ++r) {
                vec4 a0, a1;
                LOAD8R(w, wbase[r], p.K, b * 8u, a0, a1)
                for (uint ti = 0u; ti < TOKENS; ++ti) acc[r * TOKENS + ti] += dot(a0, x0[ti]) + dot(a1, x1[ti]);
#ifdef GATED
                LOAD8R(wu, wbase[r], p.K, b * 8u, a0, a1)
                for (uint ti = 0u; ti < TOKENS; ++ti) accu[r * TOKENS + ti] += dot(a0, x0[ti]) + dot(a1, x1[ti]);
#endif
            }
        }
        for (uint k = blocks * 8u + part * gl_SubgroupSize + lane; k < p.K; k += stride) {
            const float nk = NORM_INPUT ? LOADX(normw, k) : 1.0;
            for (uint ti = 0u; ti < TOKENS; ++ti) {
                float xk = LOADX(x, xbase[ti] + k);
                if (NORM_INPUT) {
                    sumsq[ti] += xk * xk;
                    xk *= nk;
                }
#if defined(EXPERTS) && !defined(GATED)
                xk *= routeWeight;
#endif
                for (uint r = 0; r < ROWS; ++r) {
                    acc[r * TOKENS + ti] += LOAD1R(w, wbase[r], p.K, k) * xk;
#ifdef GATED
                    accu[r * TOKENS + ti] += LOAD1R(wu, wbase[r], p.K, k) * xk;
#endif
                }
            }
        }
#endif
    } // choices
    // sums[i * TOKEN_PARTIALS + ...]: token i's row sums, then its sum of squares.
    float sums[PARTIALS];
    for (uint i = 0u; i < TOKENS; ++i) {
        sums[i * TOKEN_PARTIALS + ROWS * SUMS] = NORM_INPUT ? subgroupAdd(sumsq[i]) : 0.0;
        for (uint r = 0; r < ROWS; ++r) {
            sums[i * TOKEN_PARTIALS + r * SUMS] = subgroupAdd(acc[r * TOKENS + i]);
#ifdef GATED
            sums[i * TOKEN_PARTIALS + r * SUMS + 1u] = subgroupAdd(accu[r * TOKENS + i]);
#endif
        }
    }
    if (SPLIT_K > 1u) {
        if (subgroupElect())
            for (uint i = 0; i < PARTIALS; ++i) partial[gl_SubgroupID * PARTIALS + i] = sums[i];
        barrier();
        if (part != 0u) return;
        for (uint i = 0; i < PARTIALS; ++i)
            for (uint q = 1; q < SPLIT_K; ++q) sums[i] += partial[(gl_SubgroupID + q) * PARTIALS + i];
    }
    for (uint i = 0u; i < TOKENS; ++i) {
#ifndef EXPERTS
        if (t0 + i >= n) break;
#endif
        const uint s0 = i * TOKEN_PARTIALS;
        const float scale = NORM_INPUT ? inversesqrt(sums[s0 + ROWS * SUMS] / float(p.K) + p.eps) : 1.0;
        const uint t = tok[i];
#ifdef QKV_ROPE
        // ROWS is even and head_dim even, so every pair lies in this subgroup.
        const uint half_dim = p.head_dim / 2u, pos = STEP_POS(t), cacheRow = STEP_ROW(t);
        for (uint r = 0; r < ROWS; r += 2u) {
            const uint L = row0 + r;
            if (!subgroupElect() || L >= p.rows) continue;
            const uint row = pairedRow(L), hi = row % p.head_dim; // hi < half_dim
            float a = sums[s0 + r] * scale, b = sums[s0 + r + 1u] * scale;
            if ((p.flags & FLAG_BIAS) != 0u) {
                a += bias[row];
                b += bias[row + half_dim];
            }
            const float c = table[pos * half_dim + hi], sn = table[p.sin_offset + pos * half_dim + hi];
            if (row < p.q_dim) {
                const uint o = p.out_offset + t * p.out_stride + row;
                outv[o] = a * c - b * sn;
                outv[o + half_dim] = b * c + a * sn;
            } else if (row < p.q_dim + p.kv_dim) {
                const uint o = cacheRow * p.kv_dim + row - p.q_dim;
                kcache[o] = a * c - b * sn;
                kcache[o + half_dim] = b * c + a * sn;
            } else {
                const uint o = cacheRow * p.kv_dim + row - p.q_dim - p.kv_dim;
                vcache[o] = a;
                vcache[o + half_dim] = b;
            }
        }
#else
        for (uint r = 0; r < ROWS; ++r) {
            const float sum = sums[s0 + r * SUMS] * scale;
#ifdef GATED
            const float sumu = sums[s0 + r * SUMS + 1u] * scale;
#endif
            const uint row = row0 + r;
            if (subgroupElect() && row < p.rows) {
                const uint o = p.out_offset + orow[i] * p.out_stride + p.row_base + row;
#ifdef GATED
                outv[o] = gateAct(sum, p.flags) * sumu;
#else
                float v = sum;
                if ((p.flags & FLAG_BIAS) != 0u) v += bias[p.row_base + row];
#ifndef EXPERTS
                // A scatter weights the expert's whole output, its bias included (as matmul.comp).
                if (scatter) v *= uintBitsToFloat(route[p.route_weight + orow[i] * p.route_slots]);
#endif
                if ((p.flags & FLAG_ACCUMULATE) != 0u) v += outv[o];
                outv[o] = v;
#endif
            }
        }
#endif
    }
}
