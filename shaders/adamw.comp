#version 450
// AdamW (decoupled weight decay, bias-corrected moments), one invocation per
// parameter. lr and the bias corrections come from the step buffer, so the
// recorded command buffer is replayed unchanged every step. Parameters past
// decay_count (the gate bias) are not decayed.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "gate_common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
    uint count;
    uint decay_count;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
} p;

DECLARE_GATE_STEP(0)
layout(binding = 1) buffer Params { float params[]; };
layout(binding = 2) readonly buffer Grads { float grads[]; };
layout(binding = 3) buffer M { float m[]; };
layout(binding = 4) buffer V { float v[]; };

void main() {
    const uint i = FLAT_INVOCATION_ID;
    if (i >= p.count) return;
    const float g = grads[i];
    const float mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    const float vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float w = params[i];
    if (i < p.decay_count) w -= step.lr * p.weight_decay * w;
    w -= step.lr * (mi / step.bias_correction1) / (sqrt(vi / step.bias_correction2) + p.eps);
    params[i] = w;
}
