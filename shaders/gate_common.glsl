// Shared by the gate-training shaders: the per-step buffer the host rewrites
// before every submit, so one recorded command buffer serves every step.
// Layout mirrors moe::detail::GateStepHeader (engine/src/gate_trainer.h).
#define DECLARE_GATE_STEP(B) \
    layout(binding = B) readonly buffer GateStep { \
        uint n_tokens;  /* tokens in this batch */ \
        uint adam_step; /* 1-based optimizer step */ \
        float lr; \
        float bias_correction1; /* 1 - beta1^t */ \
        float bias_correction2; /* 1 - beta2^t */ \
        uint step_pad0; uint step_pad1; uint step_pad2; \
        uint token_index[]; /* row of each batch token in the feature matrix */ \
    } step;

const uint GATE_FLAG_TRAIN = 1u;       // gate_forward: also write per-token loss and dlogits
const uint GATE_FLAG_FIRST_CHUNK = 2u; // gate_grad: this dispatch also writes db and the batch loss
const uint GATE_FLAG_ACCUMULATE = 4u;  // gate_grad: add to dW (later feature chunks)
