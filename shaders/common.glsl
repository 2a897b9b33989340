// Shared definitions: weight storage by dtype and flattened workgroup ids.
// Weights are row-major [rows, Kp] with Kp = K rounded up to 8 and the padding
// zero-filled, so 8 consecutive weights of a row are one aligned 16/32-byte load.

// Declares the two aliasing views of a weight buffer: 8-element blocks and single elements.
// (Quantized block types, W_QUANT: see the end of this file and quant.glsl.)
#if defined(W_QUANT)
#elif defined(W_F32)
#define DECLARE_WEIGHTS(B, NAME) \
    layout(binding = B) readonly buffer NAME##_blocks { vec4 NAME##4[]; }; \
    layout(binding = B) readonly buffer NAME##_elems { float NAME##1[]; };
#define LOAD8(NAME, e, a, b) { a = NAME##4[(e) >> 2]; b = NAME##4[((e) >> 2) + 1]; }
#define LOAD1(NAME, e) (NAME##1[e])
#elif defined(W_F16)
#define DECLARE_WEIGHTS(B, NAME) \
    layout(binding = B) readonly buffer NAME##_blocks { uvec4 NAME##4[]; }; \
    layout(binding = B) readonly buffer NAME##_elems { uint NAME##1[]; };
#define LOAD8(NAME, e, a, b) { uvec4 u_ = NAME##4[(e) >> 3]; \
    a = vec4(unpackHalf2x16(u_.x), unpackHalf2x16(u_.y)); \
    b = vec4(unpackHalf2x16(u_.z), unpackHalf2x16(u_.w)); }
#define LOAD1(NAME, e) (unpackHalf2x16(NAME##1[(e) >> 1])[(e) & 1u])
#define UNPACK2(u) unpackHalf2x16(u)
#elif defined(W_BF16)
// bf16 is the high half of a float32: shift it into place.
vec2 unpackBf16x2(uint u) { return vec2(uintBitsToFloat(u << 16), uintBitsToFloat(u & 0xffff0000u)); }
#define DECLARE_WEIGHTS(B, NAME) \
    layout(binding = B) readonly buffer NAME##_blocks { uvec4 NAME##4[]; }; \
    layout(binding = B) readonly buffer NAME##_elems { uint NAME##1[]; };
#define LOAD8(NAME, e, a, b) { uvec4 u_ = NAME##4[(e) >> 3]; \
    a = vec4(unpackBf16x2(u_.x), unpackBf16x2(u_.y)); \
    b = vec4(unpackBf16x2(u_.z), unpackBf16x2(u_.w)); }
#define LOAD1(NAME, e) (unpackBf16x2(NAME##1[(e) >> 1])[(e) & 1u])
#define UNPACK2(u) unpackBf16x2(u)
#endif

#if defined(TEXEL_READS)
// Weights read as a uniform texel buffer of 16-byte texels (vk::TexelBindings):
// lavapipe loads storage buffers one lane at a time but fetches a texel whole
// (figures in docs/PERFORMANCE.md).
#if !defined(W_QUANT)
#undef DECLARE_WEIGHTS
#undef LOAD8
#undef LOAD1
#define DECLARE_WEIGHTS(B, NAME) layout(binding = B) uniform usamplerBuffer NAME##t;
#endif
#if defined(W_QUANT)
#elif defined(W_F32)
#define LOAD8(NAME, e, a, b) { a = uintBitsToFloat(texelFetch(NAME##t, int((e) >> 2))); \
    b = uintBitsToFloat(texelFetch(NAME##t, int((e) >> 2) + 1)); }
#define LOAD1(NAME, e) (uintBitsToFloat(texelFetch(NAME##t, int((e) >> 2))[(e) & 3u]))
#else
#define LOAD8(NAME, e, a, b) { uvec4 u_ = texelFetch(NAME##t, int((e) >> 3)); \
    a = vec4(UNPACK2(u_.x), UNPACK2(u_.y)); b = vec4(UNPACK2(u_.z), UNPACK2(u_.w)); }
#define LOAD1(NAME, e) (UNPACK2(texelFetch(NAME##t, int((e) >> 3))[((e) >> 1) & 3u])[(e) & 1u])
#endif
#if defined(INPUT_VEC4)
// Float32 inputs as 16-byte texels: every LOADX4 index is a multiple of 4
// (the host picks this variant only for such offsets and strides).
#define DECLARE_INPUT(B, NAME) layout(binding = B) uniform samplerBuffer NAME##t;
#define LOADX(NAME, i) (texelFetch(NAME##t, int((i) >> 2))[(i) & 3u])
#define LOADX4(NAME, i) (texelFetch(NAME##t, int((i) >> 2)))
#else
// Float32 inputs, one float per texel.
#define DECLARE_INPUT(B, NAME) layout(binding = B) uniform samplerBuffer NAME##t;
#define LOADX(NAME, i) (texelFetch(NAME##t, int(i)).x)
#endif
#else
#define DECLARE_INPUT(B, NAME) layout(binding = B) readonly buffer NAME##_in { float NAME[]; };
#define LOADX(NAME, i) (NAME[i])
#endif
#if !defined(LOADX4)
#define LOADX4(NAME, i) vec4(LOADX(NAME, i), LOADX(NAME, (i) + 1u), LOADX(NAME, (i) + 2u), LOADX(NAME, (i) + 3u))
#endif

#if defined(W_QUANT)
// Blocks as 32-bit words (storage) or 16-byte texels; the loads dequantize
// (quant.glsl, included after the weight bindings).
#if defined(TEXEL_READS)
#define DECLARE_WEIGHTS(B, NAME) layout(binding = B) uniform usamplerBuffer NAME##t;
#else
#define DECLARE_WEIGHTS(B, NAME) layout(binding = B) readonly buffer NAME##_words { uint NAME##q[]; };
#endif
#define QSEL_w false
#define QSEL_wu true
// `base`: the row's first word (row * Kp, Kp the row's words); K its weights.
#define LOAD8R(NAME, base, K, col, a, b) { qload8(QSEL_##NAME, base, K, col, a, b); }
#define LOAD1R(NAME, base, K, col) qload1(QSEL_##NAME, base, K, col)
#else
// `base`: the row's first element (row * Kp); K unused.
#define LOAD8R(NAME, base, K, col, a, b) LOAD8(NAME, (base) + (col), a, b)
#define LOAD1R(NAME, base, K, col) LOAD1(NAME, (base) + (col))
#endif

// Workgroup counts above 65535 are split over x and z by the host.
uint flatGroupId() { return gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x; }
// A macro, not a function: gl_WorkGroupSize is only known after the shader's
// local_size layout, which comes after this include.
#define FLAT_INVOCATION_ID (flatGroupId() * gl_WorkGroupSize.x + gl_LocalInvocationID.x)

// Per-step values written by the host before each submit, so a recorded
// command buffer can be replayed for every decode step. One record per token:
// x = token id, y = its position in its sequence, z = the sequence (KV cache
// rows z * seq_rows .. z * seq_rows + seq_rows - 1), w = routing flags (bit 0:
// the token is part of a reply, so sequence routing keeps the prompt's choice;
// bits 1..: 0 = route normally, s + 1 = send the token to slot s).
// Tokens of one sequence in one step are consecutive and in position order.
#define DECLARE_STEP(B) \
    layout(binding = B) readonly buffer Step { uint n_tokens; uint seq_rows; uint pad0_; uint pad1_; uvec4 tok[]; } step;
#define STEP_TOKEN(t) (step.tok[t].x)
#define STEP_POS(t) (step.tok[t].y)
#define STEP_SEQ(t) (step.tok[t].z)
// The KV cache (and routing state) row of token t.
#define STEP_ROW(t) (step.tok[t].z * step.seq_rows + step.tok[t].y)
#define STEP_REPLY(t) ((step.tok[t].w & 1u) != 0u)
#define STEP_PIN(t) (step.tok[t].w >> 1)

const uint FLAG_BIAS = 1u;
const uint FLAG_ACCUMULATE = 2u;
// Expert dispatch (moe_route.comp's route buffer): GATHER reads input row
// list[slot], SCATTER writes output row list[slot] scaled by that token's
// routing weight; either way only the expert's count of slots is computed.
const uint FLAG_GATHER = 4u;
const uint FLAG_SCATTER = 8u;
// Gated projections: the gate's activation is the tanh GELU (GeGLU, Gemma)
// instead of silu (SwiGLU).
const uint FLAG_GELU = 16u;
// tanh of an argument clamped where tanh is ±1 in float32 already, so that
// implementations computing it from exponentials never see inf / inf.
float safeTanh(float x) { return tanh(clamp(x, -15.0, 15.0)); }
// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x³))).
float geluTanh(float x) { return 0.5 * x * (1.0 + safeTanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
float gateAct(float g, uint flags) { return (flags & FLAG_GELU) != 0u ? geluTanh(g) : g / (1.0 + exp(-g)); }
// Route buffer layout (32-bit words): counts[160], then lists[slots][max_batch],
// then weights[max_batch][slots] (floats), then chosen masks[max_batch][5].
const uint ROUTE_LISTS = 160u;
