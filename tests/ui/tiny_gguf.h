#pragma once
// Tiny GGUF models for the UI tests, written with tests/gguf_builder.h: a
// one-layer `llama` (hidden 32, intermediate 32, vocabulary 8, zero weights)
// like tests/test_gguf_model.cpp's, with the matrices F32 or Q8_0.
#include "gguf_builder.h"

#include <QFile>
#include <QString>

#include <functional>
#include <string>
#include <vector>

namespace moe::test {

inline std::vector<uint8_t> tinyLlamaGguf(bool q8Matrices, const std::function<void(GgufBuilder&)>& edit = {},
                                          const std::string& arch = "llama") {
    GgufBuilder b;
    const uint64_t H = 32, I = 32, V = 8;
    b.string("general.architecture", arch)
        .u32(arch + ".context_length", 64)
        .u32(arch + ".embedding_length", uint32_t(H))
        .u32(arch + ".block_count", 1)
        .u32(arch + ".feed_forward_length", uint32_t(I))
        .u32(arch + ".attention.head_count", 2)
        .f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
    if (edit) edit(b);
    auto f32 = [](uint64_t n) { return std::vector<uint8_t>(n * 4, 0); };
    // Q8_0 (ggml type 8): blocks of 32 weights, an f16 scale and 32 int8 (34 bytes).
    auto matrix = [&](const std::string& name, uint64_t cols, uint64_t rows) {
        if (q8Matrices) b.tensor(name, {cols, rows}, 8, std::vector<uint8_t>(rows * (cols / 32) * 34, 0));
        else b.tensor(name, {cols, rows}, 0, f32(cols * rows));
    };
    b.tensor("token_embd.weight", {H, V}, 0, f32(H * V)).tensor("output_norm.weight", {H}, 0, f32(H));
    for (const char* n : {"attn_norm", "ffn_norm"}) b.tensor(std::string("blk.0.") + n + ".weight", {H}, 0, f32(H));
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) matrix(std::string("blk.0.") + n + ".weight", H, H);
    matrix("blk.0.ffn_gate.weight", H, I);
    matrix("blk.0.ffn_up.weight", H, I);
    matrix("blk.0.ffn_down.weight", I, H);
    return b.build();
}

// Parameters of tinyLlamaGguf: embeddings, three norms, four attention and three MLP matrices.
constexpr qint64 kTinyLlamaParameters = 32 * 8 + 3 * 32 + 4 * 32 * 32 + 3 * 32 * 32;

inline bool writeGguf(const QString& path, const std::vector<uint8_t>& bytes) {
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly)) return false;
    return f.write(reinterpret_cast<const char*>(bytes.data()), qint64(bytes.size())) == qint64(bytes.size());
}

} // namespace moe::test
