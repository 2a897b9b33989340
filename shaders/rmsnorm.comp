#version 450
// out[r, :] (+)= x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight. One subgroup per row.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push {
    uint rows; uint dim; uint x_offset; uint x_stride; uint out_offset; uint out_stride; float eps;
    uint rows_per_token; // > 1: per-head rows, `dim` apart within a token (strides are per token)
    uint accumulate;     // 1: out += the normalised row (Gemma's post-norms into the residual)
} p;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { float weight[]; };
layout(binding = 2) buffer Out { float outv[]; };

void main() {
    const uint row = flatGroupId();
    if (row >= p.rows) return;
    const uint token = row / p.rows_per_token, sub = row % p.rows_per_token;
    const uint xb = p.x_offset + token * p.x_stride + sub * p.dim;
    const uint ob = p.out_offset + token * p.out_stride + sub * p.dim;
    float ss = 0.0;
    for (uint i = gl_SubgroupInvocationID; i < p.dim; i += gl_SubgroupSize) ss += x[xb + i] * x[xb + i];
    ss = subgroupAdd(ss);
    const float scale = inversesqrt(ss / float(p.dim) + p.eps);
    for (uint i = gl_SubgroupInvocationID; i < p.dim; i += gl_SubgroupSize) {
        const float y = x[xb + i] * scale * weight[i];
        outv[ob + i] = p.accumulate != 0u ? outv[ob + i] + y : y;
    }
}
