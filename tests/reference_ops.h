#pragma once
// The CPU reference of every computation the engine's shaders do, in plain
// loops with double accumulation: the op tests (test_ops), the routed-MLP
// tests and the whole-model references (reference_model.h) all check against
// these, so each formula is written once. Inputs are float (the weights and
// activations as the device holds them) or double (a reference's own
// intermediate values); results are double unless a function writes into a
// caller's float array.
//
// Also nmse(), the one comparison every numerical test uses.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::test {

// Normalised mean squared error mse(got, ref) / mse(ref, 0) (as llama.cpp's
// op tests do). The two must have the same length: a mismatch throws rather
// than comparing a prefix.
inline double nmse(std::span<const float> got, std::span<const float> ref) {
    if (got.size() != ref.size())
        throw std::length_error("nmse: " + std::to_string(got.size()) + " values against a reference of " +
                                std::to_string(ref.size()));
    double err = 0, norm = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double d = double(got[i]) - double(ref[i]);
        err += d * d;
        norm += double(ref[i]) * double(ref[i]);
    }
    return norm > 0 ? err / norm : err;
}

// NMSE and the largest absolute difference: how the model tests compare logits.
struct Diff {
    double nmse = 0, maxAbs = 0;
};
inline Diff compare(std::span<const float> got, std::span<const float> ref) {
    double maxAbs = 0;
    for (size_t i = 0; i < ref.size() && i < got.size(); ++i)
        maxAbs = std::max(maxAbs, std::abs(double(got[i]) - double(ref[i])));
    return {nmse(got, ref), maxAbs};
}

} // namespace moe::test

namespace moe::test::ref {

// Rows of a flat array: row t starts at element offset + t * stride (ops::Act on the host).
struct Rows {
    size_t offset = 0, stride = 0;
    size_t at(size_t t) const { return offset + t * stride; }
};

// ---- Activations ------------------------------------------------------------

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// silu(x) = x·sigmoid(x), written as the shaders and Transformers do.
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x³))) (Gemma's GeGLU).
inline double geluTanh(double x) {
    return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}
inline double gateAct(double x, bool gelu) { return gelu ? geluTanh(x) : silu(x); }
// cap * tanh(x / cap) (Gemma's soft-capping of attention scores and logits).
inline double softcap(double x, double cap) { return cap * std::tanh(x / cap); }

// g[i] = act(g[i]) * u[i] (SwiGLU, or GeGLU with `gelu`).
inline void siluMulInPlace(std::vector<double>& g, const std::vector<double>& u, bool gelu = false) {
    for (size_t i = 0; i < g.size(); ++i) g[i] = gateAct(g[i], gelu) * u[i];
}

// Softmax of n values (shifted by their maximum).
template <class T> std::vector<double> softmax(const T* x, size_t n) {
    double mx = double(x[0]);
    for (size_t i = 1; i < n; ++i) mx = std::max(mx, double(x[i]));
    std::vector<double> p(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i] = std::exp(double(x[i]) - mx);
    for (auto& v : p) v /= sum;
    return p;
}
template <class T> std::vector<double> softmax(const std::vector<T>& x) { return softmax(x.data(), x.size()); }

// ---- Projections ------------------------------------------------------------

// y[r] = Σ_k w[r, k] · x[k] (+ bias[r]) for a row-major w [rows, cols].
template <class X>
std::vector<double> linear(const float* w, const X* x, int rows, int cols, const float* bias = nullptr) {
    std::vector<double> y(size_t(rows), 0.0);
    for (int r = 0; r < rows; ++r) {
        double s = 0;
        for (int k = 0; k < cols; ++k) s += double(w[size_t(r) * cols + k]) * double(x[k]);
        y[size_t(r)] = bias ? s + double(bias[r]) : s;
    }
    return y;
}
inline std::vector<double> linear(const std::vector<float>& w, const std::vector<double>& x, int rows, int cols,
                                  const std::vector<float>* bias = nullptr) {
    return linear(w.data(), x.data(), rows, cols, bias ? bias->data() : nullptr);
}

// W·x + B·(A·x): a projection with a LoRA delta (A [rank, cols], B [rows,
// rank], B already scaled); without A, plain W·x.
inline std::vector<double> loraLinear(const std::vector<float>& w, const std::vector<float>& a,
                                      const std::vector<float>& b, const std::vector<double>& x, int rows, int cols) {
    auto y = linear(w, x, rows, cols);
    if (!a.empty()) {
        const int rank = int(a.size() / size_t(cols));
        const auto bax = linear(b, linear(a, x, rank, cols), rows, rank);
        for (int i = 0; i < rows; ++i) y[size_t(i)] += bax[size_t(i)];
    }
    return y;
}

// ops::matmul on the host: out[t, r] (+)= W[r, :] · x[t, :] (+ bias[r]) for
// t < tokens, x and out addressed by their rows; other elements untouched.
inline void matmul(const float* w, int rows, int cols, const std::vector<float>& x, Rows xr, std::vector<float>& out,
                   Rows outr, int tokens, const float* bias = nullptr, bool accumulate = false) {
    for (int t = 0; t < tokens; ++t) {
        const auto y = linear(w, x.data() + xr.at(size_t(t)), rows, cols, bias);
        for (int r = 0; r < rows; ++r) {
            float& o = out[outr.at(size_t(t)) + size_t(r)];
            o = float(accumulate ? o + y[size_t(r)] : y[size_t(r)]);
        }
    }
}

// act(Wg · x) * (Wu · x) (ops::matmulGated for one token; silu, or the tanh GELU with `gelu`).
template <class X>
std::vector<double> gatedLinear(const float* wg, const float* wu, const X* x, int rows, int cols, bool gelu = false) {
    auto g = linear(wg, x, rows, cols);
    siluMulInPlace(g, linear(wu, x, rows, cols), gelu);
    return g;
}

// Phi-2's MLP: fc2(gelu_new(fc1·x + b1)) + b2, fc1 [I, H], fc2 [H, I]
// (gelu_new is the tanh GELU).
inline std::vector<double> geluMlp(const std::vector<float>& w1, const std::vector<float>& b1, const std::vector<float>& w2,
                                   const std::vector<float>& b2, const std::vector<double>& x, int H, int I) {
    auto h = linear(w1, x, I, H, &b1);
    for (double& v : h) v = geluTanh(v);
    return linear(w2, h, H, I, &b2);
}

// SwiGLU MLP: down(silu(gate·x) * (up·x)), gate and up [I, H], down [H, I]; GeGLU with `gelu`.
template <class X>
std::vector<double> swiglu(const float* wg, const float* wu, const float* wd, const X* x, int H, int I, bool gelu = false) {
    const auto h = gatedLinear(wg, wu, x, I, H, gelu);
    return linear(wd, h.data(), H, I);
}
inline std::vector<double> swiglu(const std::vector<float>& wg, const std::vector<float>& wu,
                                  const std::vector<float>& wd, const std::vector<double>& x, int H, int I,
                                  bool gelu = false) {
    return swiglu(wg.data(), wu.data(), wd.data(), x.data(), H, I, gelu);
}

// ---- Norms ------------------------------------------------------------------

// y[i] = x[i] / rms(x) * w[i] over n values, rms = sqrt(mean(x²) + eps). y may be x.
template <class X, class Y> void rmsnorm(const X* x, Y* y, int n, const float* w, double eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const double scale = 1.0 / std::sqrt(ss / n + eps);
    for (int i = 0; i < n; ++i) y[i] = Y(double(x[i]) * scale * double(w[i]));
}
inline std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
    std::vector<double> y(x.size());
    rmsnorm(x.data(), y.data(), int(x.size()), w.data(), eps);
    return y;
}

// nn.LayerNorm (biased variance): y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]. y may be x.
template <class X, class Y> void layernorm(const X* x, Y* y, int n, const float* w, const float* b, double eps) {
    double mean = 0;
    for (int i = 0; i < n; ++i) mean += double(x[i]);
    mean /= n;
    double var = 0;
    for (int i = 0; i < n; ++i) var += (double(x[i]) - mean) * (double(x[i]) - mean);
    const double scale = 1.0 / std::sqrt(var / n + eps);
    for (int i = 0; i < n; ++i) y[i] = Y((double(x[i]) - mean) * scale * double(w[i]) + double(b[i]));
}
inline std::vector<double> layernorm(const std::vector<double>& x, const std::vector<float>& w,
                                     const std::vector<float>& b, double eps) {
    std::vector<double> y(x.size());
    layernorm(x.data(), y.data(), int(x.size()), w.data(), b.data(), eps);
    return y;
}

// ops::rmsnorm on the host: `rows` rows of `dim`; with rowsPerToken > 1 (per-head
// norms) row r starts at offset + (r / rowsPerToken) * stride + (r % rowsPerToken) * dim.
// in and out may be the same array (in place).
inline void rmsnormRows(const std::vector<float>& in, Rows inr, std::vector<float>& out, Rows outr, int rows, int dim,
                        const float* w, double eps, int rowsPerToken = 1) {
    for (int r = 0; r < rows; ++r) {
        const size_t within = size_t(r % rowsPerToken) * size_t(dim);
        rmsnorm(in.data() + inr.at(size_t(r / rowsPerToken)) + within,
                out.data() + outr.at(size_t(r / rowsPerToken)) + within, dim, w, eps);
    }
}

// ---- RoPE -------------------------------------------------------------------
// The Hugging Face rotate_half convention (GPT-NeoX style): pairs (i, i + R/2)
// of the head's first R dimensions (R = D, or Phi-3's partial rotary width)
// rotated by the angle float(pos) · inv_freq[i], the rest passed through. Scaled frequencies (linear, llama3) only
// change inv_freq (checked against the config in test_model_files).

// inv_freq[i] = 1 / theta^(2i / headDim), rounded to float.
inline std::vector<float> ropeInvFreq(double theta, int headDim) {
    std::vector<float> f(size_t(headDim / 2));
    for (int i = 0; i < headDim / 2; ++i) f[size_t(i)] = float(1.0 / std::pow(theta, 2.0 * i / headDim));
    return f;
}

// cos and sin (in double) of position pos's angles, the angle float(pos) · inv_freq in float32 as Transformers has it.
struct RopeAngles {
    std::vector<double> cos, sin;
};
inline RopeAngles ropeAngles(const std::vector<float>& invFreq, int pos) {
    RopeAngles a;
    for (float f : invFreq) {
        const double angle = double(float(pos) * f);
        a.cos.push_back(std::cos(angle));
        a.sin.push_back(std::sin(angle));
    }
    return a;
}

// The table a Session uploads for the rope shaders: cos [maxPos][D/2], then
// sin [maxPos][D/2], each rounded to float.
inline std::vector<float> ropeTable(const std::vector<float>& invFreq, int maxPos) {
    const size_t half = invFreq.size();
    std::vector<float> table(size_t(maxPos) * half * 2);
    for (int p = 0; p < maxPos; ++p) {
        const RopeAngles a = ropeAngles(invFreq, p);
        for (size_t i = 0; i < half; ++i) {
            table[size_t(p) * half + i] = float(a.cos[i]);
            table[size_t(maxPos) * half + size_t(p) * half + i] = float(a.sin[i]);
        }
    }
    return table;
}

// Rotates one head of headDim values in place: (a, b) = (x[i], x[i + D/2])
// becomes (a·cos − b·sin, b·cos + a·sin).
template <class T, class C> void rotateHalf(T* x, int headDim, const C* cos, const C* sin) {
    const int half = headDim / 2;
    for (int i = 0; i < half; ++i) {
        const double c = double(cos[i]), s = double(sin[i]);
        const double a = double(x[i]), b = double(x[i + half]);
        x[i] = T(a * c - b * s);
        x[i + half] = T(b * c + a * s);
    }
}
// `heads` consecutive heads at one position.
template <class T> void rope(T* x, int heads, int headDim, const RopeAngles& a) {
    for (int h = 0; h < heads; ++h) rotateHalf(x + size_t(h) * headDim, headDim, a.cos.data(), a.sin.data());
}
// With a table of rotDim/2 columns (rotDim 0: headDim).
template <class T>
void rope(T* x, int heads, int headDim, const std::vector<float>& table, int maxPos, int pos, int rotDim = 0) {
    const int R = rotDim > 0 ? rotDim : headDim;
    const size_t half = size_t(R / 2);
    const float* cos = table.data() + size_t(pos) * half;
    const float* sin = table.data() + size_t(maxPos) * half + size_t(pos) * half;
    for (int h = 0; h < heads; ++h) rotateHalf(x + size_t(h) * headDim, R, cos, sin);
}

struct AttentionShape {
    int heads = 0, kvHeads = 0, headDim = 0;
    int window = 0; // sliding window in tokens, 0 = none
    double scale = 0;
    double softcap = 0; // scores soft-capped (Gemma 2); 0 = none
    int ropeDim = 0;    // rotated dimensions per head (Phi-3); 0 = headDim
    int qDim() const { return heads * headDim; }
    int kvDim() const { return kvHeads * headDim; }
};

// ops::ropeStore on the host: for t < tokens at position pos0 + t, q rotated
// into qOut row t (rows of qDim), k rotated and v copied into the cache rows
// pos0 + t (rows of kvDim); q, k, v read at their rows; with the Session's
// table layout. Other rows of qOut and the caches stay as they are.
template <class T>
void ropeStore(const AttentionShape& s, const T* q, Rows qr, const T* k, Rows kr, const T* v, Rows vr,
               std::vector<float>& qOut, std::vector<float>& kCache, std::vector<float>& vCache,
               const std::vector<float>& table, int maxPos, int pos0, int tokens) {
    const size_t qDim = size_t(s.qDim()), kvDim = size_t(s.kvDim());
    for (int t = 0; t < tokens; ++t) {
        const size_t pos = size_t(pos0 + t);
        std::vector<double> qt(q + qr.at(size_t(t)), q + qr.at(size_t(t)) + qDim);
        std::vector<double> kt(k + kr.at(size_t(t)), k + kr.at(size_t(t)) + kvDim);
        rope(qt.data(), s.heads, s.headDim, table, maxPos, int(pos), s.ropeDim);
        rope(kt.data(), s.kvHeads, s.headDim, table, maxPos, int(pos), s.ropeDim);
        for (size_t i = 0; i < qDim; ++i) qOut[size_t(t) * qDim + i] = float(qt[i]);
        for (size_t i = 0; i < kvDim; ++i) {
            kCache[pos * kvDim + i] = float(kt[i]);
            vCache[pos * kvDim + i] = float(v[vr.at(size_t(t)) + i]);
        }
    }
}

// ---- Attention --------------------------------------------------------------

// Causal attention with grouped KV heads (query head h reads KV head h /
// (heads / kvHeads)) and an optional sliding window: the query of token t (row t
// of q, rows of qDim) at position pos0 + t attends over cache positions
// [max(0, pos + 1 − window), pos] (rows of kvDim). Returns [tokens][qDim].
template <class T>
std::vector<double> attention(const AttentionShape& s, const T* q, const T* kCache, const T* vCache, int pos0,
                              int tokens) {
    const int D = s.headDim, qDim = s.qDim(), kvDim = s.kvDim();
    std::vector<double> out(size_t(tokens) * qDim, 0.0);
    for (int t = 0; t < tokens; ++t) {
        const int pos = pos0 + t, lo = s.window > 0 ? std::max(0, pos + 1 - s.window) : 0;
        for (int h = 0; h < s.heads; ++h) {
            const int g = h / (s.heads / s.kvHeads);
            const T* qh = q + size_t(t) * qDim + size_t(h) * D;
            std::vector<double> w(size_t(pos - lo + 1));
            double mx = -1e300;
            for (int j = lo; j <= pos; ++j) {
                const T* kj = kCache + size_t(j) * kvDim + size_t(g) * D;
                double d = 0;
                for (int e = 0; e < D; ++e) d += double(qh[e]) * double(kj[e]);
                d *= s.scale;
                if (s.softcap > 0) d = softcap(d, s.softcap);
                mx = std::max(mx, w[size_t(j - lo)] = d);
            }
            double sum = 0;
            for (double& x : w) sum += x = std::exp(x - mx);
            for (int e = 0; e < D; ++e) {
                double o = 0;
                for (int j = lo; j <= pos; ++j) o += w[size_t(j - lo)] * double(vCache[size_t(j) * kvDim + size_t(g) * D + e]);
                out[size_t(t) * qDim + size_t(h) * D + e] = o / sum;
            }
        }
    }
    return out;
}

// ---- Routing ----------------------------------------------------------------

// The indices of the k largest scores, best first; ties go to the lower index
// (moe_route.comp picks with a strict >, scanning upwards).
inline std::vector<int> topK(const std::vector<double>& score, int k) {
    std::vector<int> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
    order.resize(size_t(std::min<int>(k, int(score.size()))));
    return order;
}

// The weight of each of score.size() experts: the top k keep their score,
// divided by the chosen ones' total with `renormalise` (an equal share if
// that total is not positive), 0 elsewhere.
inline std::vector<double> routeWeights(const std::vector<double>& score, int k, bool renormalise) {
    const auto chosen = topK(score, k);
    double total = 0;
    for (int e : chosen) total += score[size_t(e)];
    std::vector<double> w(score.size(), 0.0);
    for (int e : chosen)
        w[size_t(e)] = total <= 0 ? 1.0 / double(chosen.size()) : renormalise ? score[size_t(e)] / total : score[size_t(e)];
    return w;
}

// Softmax of the gate logits, the top k kept (renormalised on request): the
// weights a native MoE block (Mixtral, Qwen2-MoE) mixes its experts with.
inline std::vector<double> topKWeights(const std::vector<double>& logits, int k, bool renormalise) {
    return routeWeights(softmax(logits), k, renormalise);
}

// moe_route.comp for one MoE layer, token by token: mode 0 scores each token
// by its own probabilities, 1 by the running sum of every position's
// probabilities so far (run[pos] = decay · run[pos − 1] + p), 2 (sequence)
// like 1 during the prompt and, for a reply, by the last prompt position's
// sums. Running sums are kept per position, so routing a position again (a
// rewound session) recomputes from the one before. A pinned slot (0 ..
// experts, the last being the base MLP) gets every token with weight 1.
struct Router {
    int experts = 0, topK = 1, mode = 0;
    double decay = 1.0;
    bool renormalise = true;
    std::vector<std::vector<double>> running; // [position][expert]
    std::vector<double> frozen;               // sequence mode: the prompt's final sums

    // Weights [experts + 1] of the token at `pos` with gate probabilities `probs`.
    std::vector<double> route(int pos, const std::vector<double>& probs, bool reply = false, int pin = -1) {
        if (running.size() <= size_t(pos)) running.resize(size_t(pos) + 1);
        auto& run = running[size_t(pos)];
        run.assign(size_t(experts), 0.0);
        for (int e = 0; e < experts; ++e)
            run[size_t(e)] = (pos > 0 ? decay * running[size_t(pos) - 1][size_t(e)] : 0.0) + probs[size_t(e)];
        if (mode == 2 && !reply) frozen = run;
        const std::vector<double>& score = mode == 0 ? probs : mode == 2 && reply ? frozen : run;
        std::vector<double> w(size_t(experts) + 1, 0.0);
        if (pin >= 0) {
            w[size_t(std::min(pin, experts))] = 1.0;
            return w;
        }
        const auto chosen = routeWeights(score, topK, renormalise);
        std::copy(chosen.begin(), chosen.end(), w.begin());
        return w;
    }
};

} // namespace moe::test::ref
