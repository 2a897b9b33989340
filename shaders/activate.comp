#version 450
// h = act(h) in place, element-wise: the activation of an ungated MLP
// (Phi-2's fc1 -> gelu_new -> fc2; FLAG_GELU: the tanh GELU, else silu).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push { uint n; uint flags; } p;
layout(binding = 0) buffer H { float h[]; };
void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i >= p.n) return;
    h[i] = gateAct(h[i], p.flags);
}
