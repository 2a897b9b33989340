#version 450
// h[t, i] *= sigmoid(s[t]) for t < n, i < width: a shared expert's output
// weighted by its own per-token gate (Qwen2-MoE shared_expert_gate), applied
// to the SwiGLU activations before the down projection (same result, since
// the down projection is linear).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push { uint n; uint width; } p;
layout(binding = 0) readonly buffer S { float s[]; };
layout(binding = 1) buffer H { float h[]; };
void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i >= p.n * p.width) return;
    h[i] *= 1.0 / (1.0 + exp(-s[i / p.width]));
}
