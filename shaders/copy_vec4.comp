#version 450
// dst = src in 16-byte words: the device-bandwidth probe of `moe-cli bench`.
// TEXEL_SOURCE reads src as a uniform texel buffer, the way weights are read.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push { uint n; } p;
#ifdef TEXEL_SOURCE
layout(binding = 0) uniform usamplerBuffer src;
#define SRC(i) texelFetch(src, int(i))
#else
layout(binding = 0) readonly buffer Src { uvec4 src[]; };
#define SRC(i) src[i]
#endif
layout(binding = 1) writeonly buffer Dst { uvec4 dst[]; };
void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i < p.n) dst[i] = SRC(i);
}
