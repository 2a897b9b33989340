#version 450
// h = act(g) * u, element-wise (SwiGLU, or GeGLU with FLAG_GELU, for prefill after two matmuls).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push { uint n; uint flags; } p;
layout(binding = 0) readonly buffer G { float g[]; };
layout(binding = 1) readonly buffer U { float u[]; };
layout(binding = 2) writeonly buffer H { float h[]; };
void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i >= p.n) return;
    h[i] = gateAct(g[i], p.flags) * u[i];
}
