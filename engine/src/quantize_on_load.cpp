// Which block type each weight gets under a quantize scheme, and the
// conversion of one tensor, row by row. The choices follow llama.cpp's
// llama_tensor_get_type (src/llama-quant.cpp) for the matching ftypes.
#include "moe/quantize_on_load.h"

#include "moe/error.h"

#include <cstring>
#include <thread>

namespace moe {

namespace {

// llama.cpp's use_more_bits: the first and last eighth of the layers and
// every third layer between them.
bool useMoreBits(int layer, int layers) {
    return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// llama.cpp's fallback when the row is not a whole number of blocks.
std::optional<QuantType> fitRow(QuantType q, int64_t cols) {
    if (cols % quantLayout(q).blockElements == 0) return q;
    switch (q) {
    case QuantType::Q4_K: q = QuantType::Q5_0; break;
    case QuantType::Q5_K: q = QuantType::Q5_1; break;
    case QuantType::Q6_K: q = QuantType::Q8_0; break;
    default: break;
    }
    if (cols % quantLayout(q).blockElements == 0) return q;
    return std::nullopt;
}

// One row of a 16/32-bit tensor as float32.
void rowToFloat(const TensorView& t, int64_t row, int64_t cols, float* out) {
    const size_t n = size_t(cols);
    switch (t.dtype) {
    case DType::F32: std::memcpy(out, t.data + size_t(row) * n * 4, n * 4); return;
    case DType::F16:
    case DType::BF16: {
        const std::byte* p = t.data + size_t(row) * n * 2;
        for (size_t i = 0; i < n; ++i) {
            uint16_t v;
            std::memcpy(&v, p + 2 * i, 2);
            out[i] = t.dtype == DType::F16 ? f16ToFloat(v) : bf16ToFloat(v);
        }
        return;
    }
    default: return; // quantizeTensor checked the dtype
    }
}

} // namespace

DType quantizedDType(QuantizeScheme s, const WeightPlace& p, DType source, int64_t cols) {
    if (s == QuantizeScheme::None || isQuantized(source)) return source;
    if (source != DType::F32 && source != DType::F16 && source != DType::BF16) return source;
    const bool output = p.role == WeightRole::Output || (p.role == WeightRole::Embedding && p.tiedEmbedding);
    const bool eightExperts = p.experts == 8;
    const bool attentionKv = p.role == WeightRole::AttentionK || p.role == WeightRole::AttentionV;
    // The output head at Q6_K, or Q8_0 where 256 does not divide its rows.
    const QuantType outputType = cols % 256 == 0 ? QuantType::Q6_K : QuantType::Q8_0;
    QuantType q = QuantType::Q8_0;
    switch (s) {
    case QuantizeScheme::None: return source;
    case QuantizeScheme::Q8_0: q = QuantType::Q8_0; break;
    case QuantizeScheme::Q4_0:
    case QuantizeScheme::Q6_K:
        q = output ? outputType : eightExperts && attentionKv ? QuantType::Q8_0
                                  : s == QuantizeScheme::Q4_0 ? QuantType::Q4_0 : QuantType::Q6_K;
        break;
    case QuantizeScheme::Q4_K:
    case QuantizeScheme::Q5_K:
        q = s == QuantizeScheme::Q4_K ? QuantType::Q4_K : QuantType::Q5_K;
        if (output) q = outputType;
        else if (eightExperts && attentionKv) q = QuantType::Q8_0;
        else if (p.role == WeightRole::AttentionV && useMoreBits(p.layer, p.layers)) q = QuantType::Q6_K;
        else if (p.role == WeightRole::FfnDown && useMoreBits(p.layer, p.layers)) q = QuantType::Q6_K;
        else if (p.role == WeightRole::AttentionOutput && eightExperts) q = QuantType::Q5_K;
        break;
    }
    const auto fitted = fitRow(q, cols);
    return fitted ? toDType(*fitted) : source;
}

HostTensor quantizeTensor(const TensorView& t, DType type, const std::atomic<bool>* cancel) {
    const auto q = quantTypeOf(type);
    if (!q || t.shape.size() != 2) throw Error("internal: quantizeTensor needs a 2-D tensor and a block type");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
        throw Error((t.file ? t.file->path().string() + ": " : std::string()) + "tensor " + t.name + ": dtype " +
                    dtypeName(t.dtype) + " cannot be quantized (F32, F16 or BF16 can)");
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const size_t rb = rowBytes(type, size_t(cols), t.name);
    HostTensor out;
    out.bytes.resize(rb * size_t(rows));
    // Rows split over the host's cores; each thread converts its own rows.
    const unsigned threads = std::max(1u, std::min(std::thread::hardware_concurrency(), 8u));
    auto work = [&](unsigned part) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = part; r < rows; r += threads) {
            // A large matrix takes seconds: the workers stop between rows and
            // the caller throws once they have joined.
            if (cancel && (r / threads) % 64 == 0 && cancel->load(std::memory_order_relaxed)) return;
            rowToFloat(t, r, cols, row.data());
            quantizeRow(*q, row, std::span<std::byte>(out.bytes.data() + size_t(r) * rb, rb));
        }
    };
    if (rows < 64 || threads == 1) {
        work(0);
        for (unsigned p = 1; p < threads; ++p) work(p);
    } else {
        std::vector<std::jthread> pool;
        for (unsigned p = 1; p < threads; ++p) pool.emplace_back(work, p);
        work(0);
    }
    throwIfCancelled(cancel, "quantizing " + t.name);
    if (t.file) t.file->releasePages(t.data, t.nbytes);
    out.view = t;
    out.view.dtype = type;
    out.view.data = out.bytes.data();
    out.view.nbytes = out.bytes.size();
    out.view.file = nullptr;
    return out;
}

DeviceMatrix uploadWeight(vk::Context& ctx, const TensorView& t, QuantizeScheme s, const WeightPlace& place,
                          const DeviceMatrix::RowOrder& rowOrder, const std::atomic<bool>* cancel) {
    const DType type = t.shape.size() == 2 ? quantizedDType(s, place, t.dtype, t.shape[1]) : t.dtype;
    if (type == t.dtype) return DeviceMatrix::upload(ctx, t, rowOrder);
    const HostTensor q = quantizeTensor(t, type, cancel);
    return DeviceMatrix::upload(ctx, q.view, rowOrder);
}

} // namespace moe
