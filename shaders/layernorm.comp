#version 450
// out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias, the variance
// the mean square of x - mean (nn.LayerNorm, biased). One subgroup per row;
// the mean is taken first, so large offsets do not cancel in E[x²] - E[x]².
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push {
    uint rows; uint dim; uint x_offset; uint x_stride; uint out_offset; uint out_stride; float eps;
} p;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { float weight[]; };
layout(binding = 2) readonly buffer B { float bias[]; };
layout(binding = 3) writeonly buffer Out { float outv[]; };

void main() {
    const uint row = flatGroupId();
    if (row >= p.rows) return;
    const uint xb = p.x_offset + row * p.x_stride;
    const uint ob = p.out_offset + row * p.out_stride;
    float s = 0.0;
    for (uint i = gl_SubgroupInvocationID; i < p.dim; i += gl_SubgroupSize) s += x[xb + i];
    const float mean = subgroupAdd(s) / float(p.dim);
    float ss = 0.0;
    for (uint i = gl_SubgroupInvocationID; i < p.dim; i += gl_SubgroupSize) {
        const float d = x[xb + i] - mean;
        ss += d * d;
    }
    const float scale = inversesqrt(subgroupAdd(ss) / float(p.dim) + p.eps);
    for (uint i = gl_SubgroupInvocationID; i < p.dim; i += gl_SubgroupSize)
        outv[ob + i] = (x[xb + i] - mean) * scale * weight[i] + bias[i];
}
