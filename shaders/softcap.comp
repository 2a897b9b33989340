#version 450
// x = cap * tanh(x / cap) in place over n values from `offset` (Gemma's
// final logit soft-capping).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform Push { uint n; uint offset; float cap; } p;
layout(binding = 0) buffer X { float x[]; };
void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i >= p.n) return;
    x[p.offset + i] = p.cap * safeTanh(x[p.offset + i] / p.cap);
}
