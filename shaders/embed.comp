#version 450
// out[t, i] = E[tokens[t], i] * scale as float32 (scale 1, or Gemma's sqrt(hidden)). A table larger than the storage
// range comes in row chunks: one dispatch per chunk, each writing the tokens
// whose rows it holds.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push { uint dim; uint Kp; uint n_tokens; uint vocab; uint first_row; uint row_count; float scale; } p;
DECLARE_WEIGHTS(0, w)
DECLARE_STEP(1)
layout(binding = 2) writeonly buffer Out { float outv[]; };
#ifdef W_QUANT
#include "quant.glsl"
#endif

void main() {
    const uint idx = FLAT_INVOCATION_ID;
    if (idx >= p.n_tokens * p.dim) return;
    const uint t = idx / p.dim;
    const uint i = idx % p.dim;
    const uint tok = min(STEP_TOKEN(t), p.vocab - 1u); // the host validates ids; never read out of bounds
    if (tok < p.first_row || tok >= p.first_row + p.row_count) return;
    outv[idx] = LOAD1R(w, (tok - p.first_row) * p.Kp, p.dim, i) * p.scale;
}
