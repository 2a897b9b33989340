// Each compute shader against the CPU reference (reference_ops.h) over random
// shapes, odd sizes included, and one weight matrix larger than
// maxStorageBufferRange. Every shader has a test of its own here, except the
// gate-training ones (gate_forward, gate_grad, adamw: test_gate_training).
//
// Tolerance: results are compared by normalised mean squared error,
// NMSE = mse(gpu, ref) / mse(ref, 0). Both sides compute in float32 from the
// same (already rounded) weights, so the only difference is summation order:
// for K-term dot products the relative error is about sqrt(K)·2^-24 (< 1e-5
// for K ≤ 10^4), i.e. NMSE < 1e-10. The limit 1e-9 leaves 10x headroom yet
// catches any indexing or formula error (which gives NMSE ≈ 1e-2 or more).
// Transcendentals (exp in softmax/SiLU) on GPUs are accurate to a few ulp, so
// attention and SiLU use the same limit.
#include "moe/error.h"
#include "moe/ops.h"
#include "moe/quant.h"
#include "moe/vk.h"

#include "reference_ops.h"
#include "test_paths.h"

#include <map>
#include <QtTest/QtTest>

#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <tuple>

using namespace moe;

namespace {

using test::nmse;
namespace ref = moe::test::ref;

constexpr double kNmseLimit = 1e-9;
// Quantized weights: the reference multiplies the dequantized weights (exact
// floats from the CPU dequantizer), the shader dequantizes the same blocks as
// it loads them; d·q in float32 either way, so only the summation order
// differs, within the 1e-10 bound above.
constexpr double kQuantNmseLimit = 1e-10;

const DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                             DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
// Weights per block: rows of a quantized matrix are whole blocks.
uint32_t blockOf(DType t) { return isQuantized(t) ? quantLayout(*quantTypeOf(t)).blockElements : 1; }
double limitFor(DType t) { return isQuantized(t) ? kQuantNmseLimit : kNmseLimit; }

std::vector<float> randomFloats(std::mt19937& rng, size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// Weights in `dtype` bytes plus their exact float values (for the reference).
struct HostWeights {
    std::vector<std::byte> bytes;
    std::vector<float> values;
};

// Block types: the n weights are whole blocks (rows of whole blocks one
// after another are the same bytes as one long row).
HostWeights makeWeights(std::mt19937& rng, DType dtype, size_t n) {
    HostWeights w;
    auto v = randomFloats(rng, n, 0.5f);
    if (auto q = quantTypeOf(dtype)) {
        w.bytes.resize(quantRowBytes(*q, n));
        quantizeRow(*q, v, w.bytes);
        w.values.resize(n);
        dequantizeRow(*q, w.bytes, w.values);
        return w;
    }
    w.values.resize(n);
    w.bytes.resize(n * dtypeSize(dtype));
    for (size_t i = 0; i < n; ++i) {
        if (dtype == DType::F32) {
            w.values[i] = v[i];
            std::memcpy(w.bytes.data() + i * 4, &v[i], 4);
        } else {
            uint16_t h = dtype == DType::F16 ? floatToF16(v[i]) : floatToBf16(v[i]);
            w.values[i] = dtype == DType::F16 ? f16ToFloat(h) : bf16ToFloat(h);
            std::memcpy(w.bytes.data() + i * 2, &h, 2);
        }
    }
    return w;
}

vk::Buffer deviceFloats(vk::Context& ctx, const std::vector<float>& v) { return uploadFloats(ctx, v); }

std::vector<float> readFloats(const vk::Buffer& b, size_t n) {
    std::vector<float> v(n);
    b.download(v.data(), n * sizeof(float));
    return v;
}

// A step of tokens from several sequences (each with its cache rows seq * seqRows ..).
vk::Buffer makeStep(vk::Context& ctx, const std::vector<ops::StepToken>& tokens, uint32_t seqRows) {
    ops::StepHeader h;
    h.nTokens = uint32_t(tokens.size());
    h.seqRows = seqRows;
    vk::Buffer b(ctx, ops::stepBufferBytes(uint32_t(std::max<size_t>(tokens.size(), 1))), vk::MemoryUse::Upload);
    b.upload(&h, sizeof h);
    if (!tokens.empty()) b.upload(tokens.data(), tokens.size() * sizeof(ops::StepToken), sizeof h);
    return b;
}

// One sequence's tokens at positions pos0, pos0 + 1, ...; routeFlags bit 0 =
// reply, routePin 0 or slot + 1, for every token.
vk::Buffer makeStep(vk::Context& ctx, uint32_t pos0, const std::vector<int32_t>& tokens, uint32_t routeFlags = 0,
                    uint32_t routePin = 0) {
    std::vector<ops::StepToken> t;
    for (size_t i = 0; i < tokens.size(); ++i)
        t.push_back({tokens[i], pos0 + uint32_t(i), 0, (routeFlags & 1u) | routePin << 1});
    return makeStep(ctx, t, 0);
}

} // namespace

class TestOps : public QObject {
    Q_OBJECT
    std::unique_ptr<vk::Context> ctx;
    std::mt19937 rng{42};

    void run(const std::function<void(vk::Recorder&)>& record) {
        vk::Recorder rec(*ctx);
        rec.begin();
        record(rec);
        rec.end();
        rec.submitAndWait();
    }

private slots:
    void initTestCase() {
        // MOE_TEST_OTHER_READ_PATH=1: the read path the device does not take
        // by default (storage buffers on CPU drivers, texel buffers on GPUs).
        vk::ContextOptions options;
        if (const char* e = std::getenv("MOE_TEST_OTHER_READ_PATH"); e && std::string(e) == "1")
            options.texelReads = !vk::Context().texelReads();
        ctx = std::make_unique<vk::Context>(options);
        qInfo("device: %s (%s), subgroup %u, max storage range %llu, validation %s, reads through %s",
              ctx->info().name.c_str(), ctx->info().type.c_str(), ctx->subgroupSize(),
              (unsigned long long)ctx->maxStorageRange(), ctx->validationEnabled() ? "on" : "off",
              ctx->texelReads() ? "texel buffers" : "storage buffers");
    }

    void cleanupTestCase() {
        if (ctx->validationEnabled()) QCOMPARE(ctx->validationMessages(), uint64_t(0));
        ctx.reset();
    }

    void matmul_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("kernel");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("tokens");
        QTest::addColumn<bool>("bias");
        QTest::addColumn<bool>("accumulate");
        QTest::addColumn<bool>("aligned");
        const int shapes[][3] = {{1, 1, 1}, {7, 13, 3}, {64, 256, 1}, {129, 257, 5}, {300, 1000, 37}, {65, 64, 33}, {33, 8, 2}};
        const char* names[] = {"f32", "f16", "bf16"};
        const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
        for (int d = 0; d < 3; ++d)
            for (int k = 1; k <= 2; ++k)
                for (int i = 0; i < int(std::size(shapes)); ++i) {
                    const auto& s = shapes[i];
                    // Every shape runs with x both 16-byte aligned (4-float texel reads) and not.
                    const bool bias = (s[0] + k) % 2 == 0, acc = s[1] % 2 == 1, aligned = (i + k) % 2 == 0;
                    QTest::addRow("%s %s %dx%d t%d%s%s%s", names[d], k == 1 ? "vector" : "tiled", s[0], s[1], s[2],
                                  bias ? " bias" : "", acc ? " acc" : "", aligned ? " aligned" : "")
                        << int(dtypes[d]) << k << s[0] << s[1] << s[2] << bias << acc << aligned;
                }
        // Block types: rows of odd block counts (3 and 25 blocks of 32, 1 and 3 super-blocks of 256).
        for (DType dt : kQuantTypes) {
            const int qk = int(blockOf(dt));
            const int quantShapes[][3] = {{7, 3 * qk, 3}, {129, qk == 32 ? 25 * 32 : 256, 5}, {300, 3 * qk, 37}, {33, qk, 1}};
            for (int k = 1; k <= 2; ++k)
                for (int i = 0; i < int(std::size(quantShapes)); ++i) {
                    const auto& s = quantShapes[i];
                    const bool bias = (s[0] + k) % 2 == 0, acc = i % 2 == 1, aligned = (i + k) % 2 == 0;
                    QTest::addRow("%s %s %dx%d t%d%s%s%s", dtypeName(dt), k == 1 ? "vector" : "tiled", s[0], s[1], s[2],
                                  bias ? " bias" : "", acc ? " acc" : "", aligned ? " aligned" : "")
                        << int(dt) << k << s[0] << s[1] << s[2] << bias << acc << aligned;
                }
        }
    }

    void matmul() {
        QFETCH(int, dtype);
        QFETCH(int, kernel);
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, tokens);
        QFETCH(bool, bias);
        QFETCH(bool, accumulate);
        QFETCH(bool, aligned);
        const DType dt = DType(dtype);
        auto w = makeWeights(rng, dt, size_t(rows) * cols);
        // x and out use offsets and strides wider than the rows, as the forward pass does.
        const uint32_t xOff = aligned ? 4 : 3, xStride = aligned ? (uint32_t(cols) + 3) / 4 * 4 + 4 : uint32_t(cols) + 5;
        const uint32_t outOff = 2, outStride = uint32_t(rows) + 3;
        auto x = randomFloats(rng, (xOff + size_t(tokens) * xStride + 3) / 4 * 4);
        auto out0 = randomFloats(rng, outOff + size_t(tokens) * outStride);
        auto b = randomFloats(rng, size_t(rows));

        std::vector<float> ref = out0;
        ref::matmul(w.values.data(), rows, cols, x, {xOff, xStride}, ref, {outOff, outStride}, tokens,
                    bias ? b.data() : nullptr, accumulate);

        auto W = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), w.bytes.data());
        auto X = deviceFloats(*ctx, x);
        auto O = deviceFloats(*ctx, out0);
        auto B = deviceFloats(*ctx, b);
        run([&](vk::Recorder& rec) {
            ops::matmul(*ctx, rec, W, {&X, xOff, xStride}, {&O, outOff, outStride}, uint32_t(tokens), {.bias = bias ? &B : nullptr, .accumulate = accumulate, .kernel = ops::MatmulKernel(kernel)});
        });
        auto got = readFloats(O, out0.size());
        const double e = nmse(got, ref);
        QVERIFY2(e < limitFor(dt), qPrintable(QString("NMSE %1").arg(e)));
        // Elements outside the written rows keep their values.
        for (uint32_t i = 0; i < outOff; ++i) QCOMPARE(got[i], out0[i]);
    }

    void matmulGated_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("tokens");
        QTest::newRow("bf16 688x256 t1") << int(DType::BF16) << 688 << 256 << 1;
        QTest::newRow("f16 37x19 t2") << int(DType::F16) << 37 << 19 << 2;
        QTest::newRow("f32 5x3 t4") << int(DType::F32) << 5 << 3 << 4;
        // More tokens: the tiled kernel (odd rows, columns past the last 8, partial token tiles).
        QTest::newRow("bf16 97x43 t21") << int(DType::BF16) << 97 << 43 << 21;
        QTest::newRow("f16 33x24 t5") << int(DType::F16) << 33 << 24 << 5;
        QTest::newRow("f32 70x9 t17") << int(DType::F32) << 70 << 9 << 17;
        for (DType dt : kQuantTypes) {
            const int qk = int(blockOf(dt));
            QTest::addRow("%s 45x%d t1", dtypeName(dt), 3 * qk) << int(dt) << 45 << 3 * qk << 1;
            QTest::addRow("%s 97x%d t21", dtypeName(dt), qk) << int(dt) << 97 << qk << 21;
        }
    }

    void matmulGated() {
        QFETCH(int, dtype);
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, tokens);
        const DType dt = DType(dtype);
        auto wg = makeWeights(rng, dt, size_t(rows) * cols);
        auto wu = makeWeights(rng, dt, size_t(rows) * cols);
        auto x = randomFloats(rng, size_t(tokens) * cols);
        std::vector<float> ref(size_t(tokens) * rows);
        for (int t = 0; t < tokens; ++t) {
            const auto h = ref::gatedLinear(wg.values.data(), wu.values.data(), x.data() + size_t(t) * cols, rows, cols);
            std::copy(h.begin(), h.end(), ref.begin() + long(t) * rows);
        }
        auto G = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wg.bytes.data());
        auto U = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wu.bytes.data());
        auto X = deviceFloats(*ctx, x);
        vk::Buffer O(*ctx, ref.size() * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) {
            ops::matmulGated(*ctx, rec, G, U, {&X, 0, uint32_t(cols)}, {&O, 0, uint32_t(rows)}, uint32_t(tokens));
        });
        const double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < limitFor(dt), qPrintable(QString("NMSE %1").arg(e)));
    }

    // The RMSNorm folded into the projection after it, by the matvec and by
    // the tiled kernel: x is the raw residual; the reference normalises it in
    // double, then projects.
    void foldedInputNorm_data() {
        QTest::addColumn<int>("kernel");
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("gated");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("tokens");
        QTest::addColumn<bool>("aligned");
        struct Row {
            std::string name;
            DType dtype;
            bool gated;
            int rows, cols, tokens;
            bool aligned;
        };
        std::vector<Row> rows = {
            {"bf16 300x896 t1 aligned", DType::BF16, false, 300, 896, 1, true},
            {"f16 37x19 t3", DType::F16, false, 37, 19, 3, false},
            {"f32 129x257 t4", DType::F32, false, 129, 257, 4, false},
            {"bf16 gated 688x256 t1 aligned", DType::BF16, true, 688, 256, 1, true},
            {"f16 gated 33x43 t2", DType::F16, true, 33, 43, 2, false},
            {"f32 gated 70x9 t4 aligned", DType::F32, true, 70, 9, 4, true},
            {"bf16 130x261 t7", DType::BF16, false, 130, 261, 7, false},
            {"f16 gated 45x128 t9 aligned", DType::F16, true, 45, 128, 9, true},
        };
        for (DType dt : kQuantTypes) {
            const int cols = 3 * int(blockOf(dt));
            rows.push_back({std::string(dtypeName(dt)) + " 37x" + std::to_string(cols) + " t2", dt, false, 37, cols, 2, false});
            rows.push_back({std::string(dtypeName(dt)) + " gated 70x" + std::to_string(cols) + " t5 aligned", dt, true, 70, cols, 5, true});
        }
        for (const Row& r : rows)
            for (const auto kernel : {ops::MatmulKernel::Vector, ops::MatmulKernel::Tiled})
                QTest::addRow("%s %s", kernel == ops::MatmulKernel::Vector ? "matvec" : "tiled", r.name.c_str())
                    << int(kernel) << int(r.dtype) << r.gated << r.rows << r.cols << r.tokens << r.aligned;
    }

    void foldedInputNorm() {
        QFETCH(int, kernel);
        QFETCH(int, dtype);
        QFETCH(bool, gated);
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, tokens);
        QFETCH(bool, aligned);
        const DType dt = DType(dtype);
        const float eps = 1e-5f;
        auto wg = makeWeights(rng, dt, size_t(rows) * cols);
        auto wu = makeWeights(rng, dt, size_t(rows) * cols);
        const uint32_t xOff = aligned ? 4 : 1, xStride = aligned ? (uint32_t(cols) + 3) / 4 * 4 : uint32_t(cols) + 3;
        auto x = randomFloats(rng, (xOff + size_t(tokens) * xStride + 3) / 4 * 4, 3.0f);
        // Norm weights padded to whole 4-float texels, as the model uploads them, or not.
        auto normWeights = randomFloats(rng, aligned ? (size_t(cols) + 3) / 4 * 4 : size_t(cols));
        auto bias = randomFloats(rng, size_t(rows));
        auto out0 = randomFloats(rng, size_t(tokens) * rows);
        std::vector<float> ref = out0;
        for (int t = 0; t < tokens; ++t) {
            std::vector<double> xn(static_cast<size_t>(cols));
            ref::rmsnorm(x.data() + xOff + size_t(t) * xStride, xn.data(), cols, normWeights.data(), eps);
            // Plain: bias and accumulate on top of the normalised projection.
            const auto y = gated ? ref::gatedLinear(wg.values.data(), wu.values.data(), xn.data(), rows, cols)
                                 : ref::linear(wg.values.data(), xn.data(), rows, cols, bias.data());
            for (int r = 0; r < rows; ++r) {
                float& o = ref[size_t(t) * rows + r];
                o = gated ? float(y[size_t(r)]) : float(o + y[size_t(r)]);
            }
        }
        auto G = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wg.bytes.data());
        auto U = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wu.bytes.data());
        auto X = deviceFloats(*ctx, x);
        auto N = deviceFloats(*ctx, normWeights);
        auto B = deviceFloats(*ctx, bias);
        auto O = deviceFloats(*ctx, out0);
        const ops::InputNorm norm{&N, eps};
        const ops::Act in{&X, xOff, xStride}, out{&O, 0, uint32_t(rows)};
        // The gated matmul takes its kernel from the token count, or from a scope.
        const ops::KernelScope scope{ops::MatmulKernel(kernel)};
        QCOMPARE(ops::chooseKernel(uint32_t(tokens)), ops::MatmulKernel(kernel));
        run([&](vk::Recorder& rec) {
            if (gated)
                ops::matmulGated(*ctx, rec, G, U, in, out, uint32_t(tokens), {.norm = &norm});
            else
                ops::matmul(*ctx, rec, G, in, out, uint32_t(tokens), {.bias = &B, .accumulate = true, .norm = &norm});
        });
        const double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < limitFor(dt), qPrintable(QString("NMSE %1").arg(e)));
    }

    // Batched decode: a step of n tokens gives each token exactly (bit for
    // bit) what a step of that token alone gives, for both kernels a decode
    // step may take (chosen for a whole step by ops::KernelScope) and every
    // form: plain with bias and accumulate, gated, and with the folded norm;
    // so a sequence's replies do not depend on the sequences beside it.
    void decodeKernelsMatchOneTokenBitwise_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("tiled");
        QTest::addColumn<bool>("gated");
        QTest::addColumn<bool>("folded");
        QTest::addColumn<int>("cols");
        const char* names[] = {"f32", "f16", "bf16"};
        const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
        for (int d = 0; d < 3; ++d)
            for (int tiled = 0; tiled < 2; ++tiled)
                for (int g = 0; g < 2; ++g)
                    for (int f = 0; f < 2; ++f)
                        QTest::addRow("%s %s%s%s", tiled ? "tiled" : "matvec", names[d], g ? " gated" : "", f ? " folded norm" : "")
                            << int(dtypes[d]) << bool(tiled) << bool(g) << bool(f) << (d == 1 ? 261 : 256);
        QTest::newRow("matvec q4_k folded norm") << int(DType::Q4_K) << false << false << true << 512;
        QTest::newRow("tiled q4_k") << int(DType::Q4_K) << true << false << false << 512;
        QTest::newRow("tiled q8_0 gated folded norm") << int(DType::Q8_0) << true << true << true << 96;
        QTest::newRow("tiled q5_0 gated") << int(DType::Q5_0) << true << true << false << 96;
    }

    void decodeKernelsMatchOneTokenBitwise() {
        QFETCH(int, dtype);
        QFETCH(bool, tiled);
        QFETCH(bool, gated);
        QFETCH(bool, folded);
        QFETCH(int, cols);
        const DType dt = DType(dtype);
        // Rows not a multiple of any rows-per-workgroup; up to 6 tokens: the
        // matvec takes 4 + 2 per workgroup, the tiled kernel's tile more than the step.
        const int rows = 75, most = 6;
        auto wg = makeWeights(rng, dt, size_t(rows) * cols);
        auto wu = makeWeights(rng, dt, size_t(rows) * cols);
        auto x = randomFloats(rng, size_t(most) * cols, 3.0f);
        auto normWeights = randomFloats(rng, (size_t(cols) + 3) / 4 * 4);
        auto bias = randomFloats(rng, size_t(rows));
        auto out0 = randomFloats(rng, size_t(most) * rows);
        auto G = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wg.bytes.data());
        auto U = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wu.bytes.data());
        auto X = deviceFloats(*ctx, x);
        auto N = deviceFloats(*ctx, normWeights);
        auto B = deviceFloats(*ctx, bias);
        const ops::InputNorm norm{&N, 1e-5f};
        const ops::KernelScope kernel(tiled ? ops::MatmulKernel::Tiled : ops::MatmulKernel::Vector);
        QCOMPARE(ops::chooseKernel(1), tiled ? ops::MatmulKernel::Tiled : ops::MatmulKernel::Vector);
        // Tokens first .. first + n - 1 of x in one step.
        auto step = [&](uint32_t first, uint32_t n) {
            auto O = deviceFloats(*ctx, std::vector<float>(out0.begin() + long(first) * rows, out0.begin() + long(first + n) * rows));
            const ops::Act in{&X, first * uint32_t(cols), uint32_t(cols)}, out{&O, 0, uint32_t(rows)};
            run([&](vk::Recorder& rec) {
                if (gated)
                    ops::matmulGated(*ctx, rec, G, U, in, out, n, {.norm = folded ? &norm : nullptr});
                else
                    ops::matmul(*ctx, rec, G, in, out, n, {.bias = &B, .accumulate = true, .norm = folded ? &norm : nullptr});
            });
            return readFloats(O, size_t(n) * rows);
        };
        std::vector<float> alone;
        for (uint32_t t = 0; t < uint32_t(most); ++t) {
            const auto one = step(t, 1);
            alone.insert(alone.end(), one.begin(), one.end());
        }
        for (uint32_t n = 2; n <= uint32_t(most); ++n) {
            const auto together = step(0, n);
            for (size_t i = 0; i < together.size(); ++i)
                QVERIFY2(std::memcmp(&together[i], &alone[i], sizeof(float)) == 0,
                         qPrintable(QString("%1 tokens: token %2 row %3: %4 together, %5 alone")
                                        .arg(n).arg(i / rows).arg(i % rows).arg(double(together[i]), 0, 'g', 9).arg(double(alone[i]), 0, 'g', 9)));
        }
        // And each against the CPU on the dequantized weights.
        if (!gated && !folded) {
            std::vector<float> ref = out0;
            ref::matmul(wg.values.data(), rows, cols, x, {0, uint32_t(cols)}, ref, {0, uint32_t(rows)}, most, bias.data(), true);
            const double e = nmse(alone, ref);
            QVERIFY2(e < limitFor(dt), qPrintable(QString("NMSE %1").arg(e)));
        }
    }

    // All of a step's routed experts at once (ops::stackedExperts) against
    // the CPU: softmax, top-k, renormalised weights, and each token's residual
    // plus the weighted sum of its chosen experts' SwiGLU outputs. The stacks
    // are split into chunks of 2 experts, as maxStorageBufferRange splits big
    // ones, so that tokens' experts lie in different chunks and stacks. With
    // `foldedNorm` the input is the residual itself, RMS-normalised on the way
    // in (decode's folded norm): no stack may add into it before every stack
    // has read it.
    void stackedExpertsMatchReference_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("foldedNorm");
        QTest::newRow("bf16 separate input") << int(DType::BF16) << false;
        QTest::newRow("bf16 residual as input, folded norm") << int(DType::BF16) << true;
        for (DType dt : kQuantTypes) {
            QTest::addRow("%s separate input", dtypeName(dt)) << int(dt) << false;
            QTest::addRow("%s folded norm", dtypeName(dt)) << int(dt) << true;
        }
    }

    void stackedExpertsMatchReference() {
        QFETCH(int, dtype);
        QFETCH(bool, foldedNorm);
        const DType dt = DType(dtype);
        // Float weights: odd sizes; block types: whole blocks (3 of them across the hidden size).
        const uint32_t qk = blockOf(dt), H = isQuantized(dt) ? 3 * qk : 19, I = isQuantized(dt) ? qk : 24;
        const uint32_t E = 5, topK = 2, n = 3, maxBatch = 8, perChunk = 2;
        auto gate = makeWeights(rng, dt, size_t(E) * I * H), up = makeWeights(rng, dt, size_t(E) * I * H);
        auto down = makeWeights(rng, dt, size_t(E) * H * I);
        auto x = randomFloats(rng, size_t(n) * H), logits = randomFloats(rng, size_t(n) * E, 2.0f);
        auto residual0 = randomFloats(rng, size_t(n) * H, 2.0f);
        const float eps = 1e-5f;
        auto normWeights = randomFloats(rng, H);
        if (foldedNorm)
            for (uint32_t t = 0; t < n; ++t)
                ref::rmsnorm(residual0.data() + t * H, x.data() + t * H, int(H), normWeights.data(), eps);
        // Two stacks, as a layer whose experts differ in dtype has: slots 0-2
        // and 3-4, each of whole-expert chunks (rows of slot first + e at e * rows).
        auto stackOf = [&](const HostWeights& w, uint32_t rows, uint32_t cols, uint32_t first, uint32_t count) {
            DeviceMatrix m;
            m.dtype = dt, m.rows = count * rows, m.cols = cols;
            for (uint32_t e0 = 0; e0 < count; e0 += perChunk) {
                const uint32_t inChunk = std::min(perChunk, count - e0);
                const size_t from = size_t(first + e0) * rows * rowBytes(dt, cols);
                DeviceMatrix part = DeviceMatrix::fromHost(*ctx, dt, inChunk * rows, cols, w.bytes.data() + from);
                m.colsPadded = part.colsPadded;
                m.chunks.push_back({std::move(part.chunks.at(0).buffer), e0 * rows, inChunk * rows});
            }
            return m;
        };
        const DeviceMatrix G0 = stackOf(gate, I, H, 0, 3), U0 = stackOf(up, I, H, 0, 3), D0 = stackOf(down, H, I, 0, 3);
        const DeviceMatrix G1 = stackOf(gate, I, H, 3, 2), U1 = stackOf(up, I, H, 3, 2), D1 = stackOf(down, H, I, 3, 2);
        QCOMPARE(G0.chunks.size(), size_t(2));

        // Softmax, top 2, renormalised weights; each chosen expert's SwiGLU output added in weight order.
        std::vector<float> ref = residual0;
        for (uint32_t t = 0; t < n; ++t) {
            const auto w = ref::topKWeights(std::vector<double>(logits.begin() + t * E, logits.begin() + (t + 1) * E),
                                            int(topK), true);
            for (int e : ref::topK(w, int(topK))) {
                const auto y = ref::swiglu(gate.values.data() + size_t(e) * I * H, up.values.data() + size_t(e) * I * H,
                                           down.values.data() + size_t(e) * H * I, x.data() + t * H, int(H), int(I));
                for (uint32_t r = 0; r < H; ++r) ref[t * H + r] += float(w[size_t(e)] * y[r]);
            }
        }

        ops::RouteParams rp;
        rp.experts = E, rp.topK = topK, rp.maxBatch = maxBatch, rp.maxContext = 16;
        auto step = makeStep(*ctx, 0, std::vector<int32_t>(n, 0));
        auto L = deviceFloats(*ctx, logits);
        vk::Buffer route(*ctx, ops::routeBufferBytes(rp), vk::MemoryUse::Device);
        vk::Buffer state(*ctx, ops::routeStateBytes(rp), vk::MemoryUse::Device);
        vk::Buffer usage(*ctx, (E + 1) * 4, vk::MemoryUse::Device);
        usage.fillZero();
        auto X = deviceFloats(*ctx, x), R = deviceFloats(*ctx, residual0), N = deviceFloats(*ctx, normWeights);
        vk::Buffer hidden(*ctx, uint64_t(maxBatch) * I * 4, vk::MemoryUse::Device);
        const ops::InputNorm norm{&N, eps};
        run([&](vk::Recorder& rec) {
            ops::routeTokens(*ctx, rec, rp, step, L, route, state, usage);
            rec.barrier();
            const ops::ExpertSlot routeSlots{&route, 0, E + 1, maxBatch};
            ops::stackedExperts(*ctx, rec, {{&G0, &U0, &D0, 3, 0}, {&G1, &U1, &D1, 2, 3}}, routeSlots, topK,
                                {foldedNorm ? &R : &X, 0, H}, {&hidden, 0, I}, {&R, 0, H}, n, foldedNorm ? &norm : nullptr);
        });
        const double e = nmse(readFloats(R, ref.size()), ref);
        QVERIFY2(e < limitFor(dt), qPrintable(QString("NMSE %1").arg(e)));
    }

    // Decode's q/k/v projection with RoPE in its epilogue (ops::qkvRope)
    // against the CPU: y = W·x (+ bias), each head's pairs (i, i + D/2)
    // rotated by the table's cos/sin at the token's position, q into qOut, k
    // and v into the caches; cache rows of other positions stay untouched.
    void qkvRope_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("foldedNorm");
        QTest::addColumn<bool>("withBias");
        QTest::newRow("bf16 plain") << int(DType::BF16) << false << false;
        QTest::newRow("bf16 bias, folded norm") << int(DType::BF16) << true << true;
        for (DType dt : kQuantTypes) QTest::addRow("%s bias, folded norm", dtypeName(dt)) << int(dt) << true << true;
    }

    void qkvRope() {
        QFETCH(int, dtype);
        QFETCH(bool, foldedNorm);
        QFETCH(bool, withBias);
        const DType dt = DType(dtype);
        const uint32_t H = isQuantized(dt) ? 3 * blockOf(dt) : 19;
        const uint32_t nHeads = 3, nKv = 1, D = 10, half = D / 2, tokens = 2, pos0 = 3, maxPos = 8;
        const uint32_t qDim = nHeads * D, kvDim = nKv * D, rows = qDim + 2 * kvDim;
        const float eps = 1e-6f;
        auto w = makeWeights(rng, dt, size_t(rows) * H);
        auto x = randomFloats(rng, size_t(tokens) * H, 2.0f), bias = randomFloats(rng, rows);
        auto normWeights = randomFloats(rng, H), table = randomFloats(rng, size_t(2) * maxPos * half);
        std::vector<float> qRef(size_t(tokens) * qDim), kRef = randomFloats(rng, size_t(maxPos) * kvDim);
        std::vector<float> vRef = randomFloats(rng, size_t(maxPos) * kvDim);
        const std::vector<float> k0 = kRef, v0 = vRef;
        // The projection of each token (rows q, k, v), then RoPE and the cache store.
        std::vector<double> y(size_t(tokens) * rows);
        for (uint32_t t = 0; t < tokens; ++t) {
            std::vector<double> xt(x.begin() + t * H, x.begin() + (t + 1) * H);
            if (foldedNorm) ref::rmsnorm(xt.data(), xt.data(), int(H), normWeights.data(), eps);
            const auto yt = ref::linear(w.values.data(), xt.data(), int(rows), int(H), withBias ? bias.data() : nullptr);
            std::copy(yt.begin(), yt.end(), y.begin() + long(t) * rows);
        }
        const ref::AttentionShape refShape{int(nHeads), int(nKv), int(D)};
        ref::ropeStore(refShape, y.data(), {0, rows}, y.data(), {qDim, rows}, y.data(), {qDim + kvDim, rows}, qRef, kRef,
                       vRef, table, int(maxPos), int(pos0), int(tokens));
        auto W = DeviceMatrix::fromHost(*ctx, dt, rows, H, w.bytes.data());
        if (!ops::qkvRopeFits(*ctx, W, tokens)) QSKIP("matvec rows per subgroup are odd here (MOE_MATVEC_ROWS)");
        auto X = deviceFloats(*ctx, x), B = deviceFloats(*ctx, bias), N = deviceFloats(*ctx, normWeights);
        auto T = deviceFloats(*ctx, table), K = deviceFloats(*ctx, k0), V = deviceFloats(*ctx, v0);
        vk::Buffer Q(*ctx, qRef.size() * 4, vk::MemoryUse::Device);
        auto step = makeStep(*ctx, pos0, std::vector<int32_t>(tokens, 0));
        const ops::AttentionShape shape{nHeads, nKv, D, 0, 1.0f};
        const ops::InputNorm norm{&N, eps};
        run([&](vk::Recorder& rec) {
            ops::qkvRope(*ctx, rec, shape, W, {&X, 0, H}, withBias ? &B : nullptr, foldedNorm ? &norm : nullptr, step, Q,
                         K, V, T, maxPos, tokens);
        });
        for (auto [got, want, what] : {std::tuple(readFloats(Q, qRef.size()), qRef, "q"),
                                       std::tuple(readFloats(K, kRef.size()), kRef, "k cache"),
                                       std::tuple(readFloats(V, vRef.size()), vRef, "v cache")}) {
            const double e = nmse(got, want);
            QVERIFY2(e < limitFor(dt), qPrintable(QString("%1: NMSE %2").arg(what).arg(e)));
        }
    }

    void matmulLargerThanStorageRange() {
        // A matrix just over maxStorageBufferRange is split into row chunks.
        const uint32_t cols = 1024;
        const uint64_t rowBytes = cols * 4;
        const uint32_t rows = uint32_t(ctx->maxStorageRange() / rowBytes) + 77;
        std::vector<float> w(size_t(rows) * cols);
        std::mt19937 r2(7);
        std::uniform_real_distribution<float> u(-1, 1);
        for (auto& v : w) v = u(r2);
        auto x = randomFloats(rng, cols);
        auto W = DeviceMatrix::fromHost(*ctx, DType::F32, rows, cols, w.data());
        QVERIFY(W.chunks.size() >= 2);
        QVERIFY(W.bytes() > ctx->maxStorageRange());
        auto X = deviceFloats(*ctx, x);
        vk::Buffer O(*ctx, uint64_t(rows) * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::matmul(*ctx, rec, W, {&X, 0, cols}, {&O, 0, rows}, 1); });
        const auto y = ref::linear(w.data(), x.data(), int(rows), int(cols));
        const std::vector<float> ref(y.begin(), y.end());
        auto got = readFloats(O, rows);
        const double e = nmse(got, ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
        // The last rows live in the second chunk: check them one by one.
        for (uint32_t rr = rows - 5; rr < rows; ++rr) QVERIFY(std::abs(got[rr] - ref[rr]) < 1e-3f * (1 + std::abs(ref[rr])));
    }

    void rmsnorm_data() {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("dim");
        QTest::newRow("1x1") << 1 << 1;
        QTest::newRow("3x7") << 3 << 7;
        QTest::newRow("5x256") << 5 << 256;
        QTest::newRow("17x897") << 17 << 897;
    }

    void rmsnorm() {
        QFETCH(int, rows);
        QFETCH(int, dim);
        const float eps = 1e-5f;
        const uint32_t xOff = 1, xStride = uint32_t(dim) + 2;
        auto x = randomFloats(rng, xOff + size_t(rows) * xStride, 3.0f);
        auto w = randomFloats(rng, size_t(dim));
        std::vector<float> ref(size_t(rows) * dim);
        ref::rmsnormRows(x, {xOff, xStride}, ref, {0, size_t(dim)}, rows, dim, w.data(), eps);
        auto X = deviceFloats(*ctx, x);
        auto Wb = deviceFloats(*ctx, w);
        vk::Buffer O(*ctx, ref.size() * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) {
            ops::rmsnorm(*ctx, rec, {&X, xOff, xStride}, Wb, {&O, 0, uint32_t(dim)}, uint32_t(rows), uint32_t(dim), eps);
        });
        const double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    void layernorm_data() {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("dim");
        QTest::addColumn<float>("offset");
        QTest::newRow("1x1") << 1 << 1 << 0.0f;
        QTest::newRow("3x7") << 3 << 7 << 0.0f;
        QTest::newRow("5x256") << 5 << 256 << 0.0f;
        QTest::newRow("17x897") << 17 << 897 << 0.0f;
        // Rows far from zero mean: the shader takes the mean first, so the
        // variance does not cancel as E[x²] - E[x]² would in float32.
        QTest::newRow("4x320 mean 100") << 4 << 320 << 100.0f;
    }

    // LayerNorm with weight and bias (Phi-2), rows read at an offset and stride.
    void layernorm() {
        QFETCH(int, rows);
        QFETCH(int, dim);
        QFETCH(float, offset);
        const float eps = 1e-5f;
        const uint32_t xOff = 1, xStride = uint32_t(dim) + 2;
        auto x = randomFloats(rng, xOff + size_t(rows) * xStride, 3.0f);
        for (float& v : x) v += offset;
        auto w = randomFloats(rng, size_t(dim)), b = randomFloats(rng, size_t(dim));
        std::vector<float> ref(size_t(rows) * dim);
        for (int r = 0; r < rows; ++r)
            ref::layernorm(x.data() + xOff + size_t(r) * xStride, ref.data() + size_t(r) * dim, dim, w.data(), b.data(), eps);
        auto X = deviceFloats(*ctx, x);
        auto Wb = deviceFloats(*ctx, w), Bb = deviceFloats(*ctx, b);
        vk::Buffer O(*ctx, ref.size() * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) {
            ops::layernorm(*ctx, rec, {&X, xOff, xStride}, Wb, Bb, {&O, 0, uint32_t(dim)}, uint32_t(rows), uint32_t(dim), eps);
        });
        const auto got = readFloats(O, ref.size());
        const double e = nmse(got, ref);
        // dim 1: x - mean is exactly 0, so the row is the bias.
        if (dim == 1)
            for (int r = 0; r < rows; ++r) QCOMPARE(got[size_t(r)], b[0]);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // h = act(h) in place (Phi-2's ungated MLP): the tanh GELU and silu, with
    // arguments at both ends of tanh's and exp's range.
    void activate() {
        const uint32_t n = 1001;
        for (Activation act : {Activation::GeluTanh, Activation::Silu}) {
            auto h = randomFloats(rng, n, 4.0f);
            h[0] = -90.0f, h[1] = 90.0f;
            std::vector<float> want(n);
            for (uint32_t i = 0; i < n; ++i) want[i] = float(ref::gateAct(h[i], act == Activation::GeluTanh));
            auto Hb = deviceFloats(*ctx, h);
            run([&](vk::Recorder& rec) { ops::activate(*ctx, rec, Hb, n, act); });
            const auto got = readFloats(Hb, n);
            QVERIFY(std::isfinite(got[0]) && std::isfinite(got[1]));
            const double e = nmse(got, want);
            QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
        }
    }

    // Per-head norms (Qwen3's q/k norm) in place inside a wider row: tokens of
    // `stride` floats, each with `heads` rows of `dim` at `offset`; the rest of
    // the row stays as it was.
    void rmsnormHeadsInPlace() {
        const int tokens = 5, heads = 3, dim = 12, offset = 7, stride = offset + heads * dim + 9;
        const float eps = 1e-6f;
        auto x = randomFloats(rng, size_t(tokens) * stride, 2.0f);
        auto w = randomFloats(rng, size_t(dim));
        std::vector<float> ref = x;
        ref::rmsnormRows(ref, {offset, stride}, ref, {offset, stride}, tokens * heads, dim, w.data(), eps, heads);
        auto X = deviceFloats(*ctx, x);
        auto Wb = deviceFloats(*ctx, w);
        const ops::Act rows{&X, uint32_t(offset), uint32_t(stride)};
        run([&](vk::Recorder& rec) {
            ops::rmsnorm(*ctx, rec, rows, Wb, rows, uint32_t(tokens * heads), uint32_t(dim), eps, uint32_t(heads));
        });
        const double e = nmse(readFloats(X, ref.size()), ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    void embed_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("vocab");
        QTest::addColumn<int>("dim");
        QTest::newRow("bf16 100x13") << int(DType::BF16) << 100 << 13;
        QTest::newRow("f16 33x64") << int(DType::F16) << 33 << 64;
        QTest::newRow("f32 5x7") << int(DType::F32) << 5 << 7;
        for (DType dt : kQuantTypes) QTest::addRow("%s 37x%u", dtypeName(dt), 3 * blockOf(dt)) << int(dt) << 37 << int(3 * blockOf(dt));
    }

    void embed() {
        QFETCH(int, dtype);
        QFETCH(int, vocab);
        QFETCH(int, dim);
        auto w = makeWeights(rng, DType(dtype), size_t(vocab) * dim);
        std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
        std::vector<int32_t> tokens(11);
        for (auto& t : tokens) t = pick(rng);
        tokens[0] = vocab - 1;
        auto E = DeviceMatrix::fromHost(*ctx, DType(dtype), uint32_t(vocab), uint32_t(dim), w.bytes.data());
        auto step = makeStep(*ctx, 0, tokens);
        vk::Buffer O(*ctx, tokens.size() * dim * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::embed(*ctx, rec, E, step, O, uint32_t(tokens.size())); });
        auto got = readFloats(O, tokens.size() * dim);
        if (isQuantized(DType(dtype))) {
            // d·q + m may be fused into one rounding on the device: within an ulp, not bit for bit.
            std::vector<float> want;
            for (int32_t t : tokens) want.insert(want.end(), w.values.begin() + long(t) * dim, w.values.begin() + long(t + 1) * dim);
            const double e = nmse(got, want);
            QVERIFY2(e < kQuantNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
            return;
        }
        for (size_t t = 0; t < tokens.size(); ++t)
            for (int i = 0; i < dim; ++i) QCOMPARE(got[t * dim + i], w.values[size_t(tokens[t]) * dim + i]);
    }

    void embedTableLargerThanStorageRange() {
        // BF16 table just over the range: rows split over chunks; tokens from both.
        const uint32_t dim = 1024;
        const uint32_t vocab = uint32_t(ctx->maxStorageRange() / (dim * 2)) + 50;
        std::vector<uint16_t> table(size_t(vocab) * dim);
        for (size_t i = 0; i < table.size(); ++i) table[i] = floatToBf16(float(i % 977) - 400.0f);
        auto E = DeviceMatrix::fromHost(*ctx, DType::BF16, vocab, dim, table.data());
        QVERIFY(E.chunks.size() >= 2);
        std::vector<int32_t> tokens{0, int32_t(vocab - 1), int32_t(E.chunks[1].firstRow), int32_t(E.chunks[1].firstRow) - 1, 12345};
        auto step = makeStep(*ctx, 0, tokens);
        vk::Buffer O(*ctx, tokens.size() * dim * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::embed(*ctx, rec, E, step, O, uint32_t(tokens.size())); });
        auto got = readFloats(O, tokens.size() * dim);
        for (size_t t = 0; t < tokens.size(); ++t)
            for (uint32_t i = 0; i < dim; i += 97)
                QCOMPARE(got[t * dim + i], bf16ToFloat(table[size_t(tokens[t]) * dim + i]));
    }

    void siluMul() {
        const uint32_t n = 1001;
        auto g = randomFloats(rng, n, 4.0f), u = randomFloats(rng, n);
        g[0] = -90.0f; // exp overflow side
        std::vector<float> ref(n);
        for (uint32_t i = 0; i < n; ++i) ref[i] = float(ref::silu(g[i]) * u[i]);
        auto G = deviceFloats(*ctx, g), U = deviceFloats(*ctx, u);
        vk::Buffer H(*ctx, n * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::siluMul(*ctx, rec, G, U, H, n); });
        auto got = readFloats(H, n);
        QVERIFY(std::isfinite(got[0]));
        const double e = nmse(got, ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    void copy() {
        const uint64_t bytes = 4096 * 16 + 48;
        std::vector<float> v = randomFloats(rng, bytes / 4);
        auto S = deviceFloats(*ctx, v);
        vk::Buffer D(*ctx, bytes, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::copy(*ctx, rec, S, D, bytes); });
        QCOMPARE(readFloats(D, v.size()), v);
        // The same through a texel-buffer view of the source (the bandwidth probe of texel reads).
        vk::Buffer T(*ctx, bytes, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::copy(*ctx, rec, S, T, bytes, true); });
        QCOMPARE(readFloats(T, v.size()), v);
    }

    // Profiling attributes each dispatch to its shader, and only while it is on.
    void profileCountsDispatchesPerShader() {
        if (!ctx->canProfile()) QSKIP("the device has no compute timestamps");
        const uint64_t bytes = 4096 * 16;
        vk::Buffer S(*ctx, bytes, vk::MemoryUse::Device), D(*ctx, bytes, vk::MemoryUse::Device);
        auto copies = [&](vk::Recorder& rec) {
            ops::copy(*ctx, rec, S, D, bytes);
            rec.barrier();
            ops::copy(*ctx, rec, S, D, bytes, true);
            rec.barrier();
            ops::copy(*ctx, rec, S, D, bytes);
        };
        ctx->takeProfile();
        ctx->setProfiling(true);
        run(copies);
        ctx->setProfiling(false);
        const auto profile = ctx->takeProfile();
        std::map<std::string, uint32_t> counts;
        for (const auto& e : profile) {
            counts[e.shader] = e.dispatches;
            QVERIFY(e.milliseconds >= 0);
        }
        QCOMPARE(counts, (std::map<std::string, uint32_t>{{"copy_vec4", 2}, {"copy_vec4_texel", 1}}));
        run(copies);
        QVERIFY(ctx->takeProfile().empty());
    }

    // RoPE + KV-cache store + attention, in two steps (a prefill, then more
    // tokens at a later position), against a direct CPU transcription.
    void ropeAttention_data() {
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<int>("headDim");
        QTest::addColumn<int>("first");
        QTest::addColumn<int>("second");
        QTest::addColumn<int>("window");
        QTest::newRow("gqa 8/4 d32") << 8 << 4 << 32 << 13 << 1 << 0;
        QTest::newRow("mha 3/3 d6") << 3 << 3 << 6 << 5 << 4 << 0;
        QTest::newRow("gqa 14/2 d64 long") << 14 << 2 << 64 << 70 << 3 << 0;
        QTest::newRow("mqa 4/1 d128 window") << 4 << 1 << 128 << 19 << 2 << 7;
        QTest::newRow("d8 one token") << 2 << 1 << 8 << 1 << 1 << 0;
        // Slices of head_dim per lane that are not whole vec4s (8 lanes: 10 and 3 dims).
        QTest::newRow("gqa 6/2 d80") << 6 << 2 << 80 << 9 << 2 << 0;
        QTest::newRow("mha 2/2 d20 window") << 2 << 2 << 20 << 11 << 1 << 5;
    }

    void ropeAttention() {
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QFETCH(int, headDim);
        QFETCH(int, first);
        QFETCH(int, second);
        QFETCH(int, window);
        const int total = first + second, maxPos = total + 3;
        const int qDim = heads * headDim, kvDim = kvHeads * headDim;
        const float scale = 1.0f / std::sqrt(float(headDim));
        const std::vector<float> table = ref::ropeTable(ref::ropeInvFreq(10000.0, headDim), maxPos);
        auto q = randomFloats(rng, size_t(total) * qDim), k = randomFloats(rng, size_t(total) * kvDim),
             v = randomFloats(rng, size_t(total) * kvDim);

        // CPU reference: every token's RoPE and cache store at once, then attention over the cache.
        const ref::AttentionShape refShape{heads, kvHeads, headDim, window, scale};
        std::vector<float> qr(q.size()), kc(size_t(maxPos) * kvDim), vc(size_t(maxPos) * kvDim);
        ref::ropeStore(refShape, q.data(), {0, size_t(qDim)}, k.data(), {0, size_t(kvDim)}, v.data(), {0, size_t(kvDim)},
                       qr, kc, vc, table, maxPos, 0, total);
        const auto att = ref::attention(refShape, qr.data(), kc.data(), vc.data(), 0, total);
        const std::vector<float> ref(att.begin(), att.end());

        vk::Buffer kCache(*ctx, size_t(maxPos) * kvDim * 4, vk::MemoryUse::Device),
            vCache(*ctx, size_t(maxPos) * kvDim * 4, vk::MemoryUse::Device);
        auto T = deviceFloats(*ctx, table);
        ops::AttentionShape shape{uint32_t(heads), uint32_t(kvHeads), uint32_t(headDim), uint32_t(window), scale};
        std::vector<float> got;
        for (auto [start, count] : {std::pair{0, first}, std::pair{first, second}}) {
            // q, k and v of each token side by side, as the fused QKV projection writes them.
            const int qkvDim = qDim + 2 * kvDim;
            std::vector<float> qkv(size_t(count) * qkvDim);
            for (int t = 0; t < count; ++t) {
                const size_t row = size_t(t) * qkvDim, src = size_t(start + t);
                std::copy_n(q.begin() + src * qDim, qDim, qkv.begin() + row);
                std::copy_n(k.begin() + src * kvDim, kvDim, qkv.begin() + row + qDim);
                std::copy_n(v.begin() + src * kvDim, kvDim, qkv.begin() + row + qDim + kvDim);
            }
            auto QKV = deviceFloats(*ctx, qkv);
            vk::Buffer Q(*ctx, size_t(count) * qDim * 4, vk::MemoryUse::Device);
            vk::Buffer O(*ctx, size_t(count) * qDim * 4, vk::MemoryUse::Device);
            auto step = makeStep(*ctx, uint32_t(start), std::vector<int32_t>(size_t(count), 0));
            const uint32_t stride = uint32_t(qkvDim);
            run([&](vk::Recorder& rec) {
                ops::ropeStore(*ctx, rec, shape, step, {&QKV, 0, stride}, {&QKV, uint32_t(qDim), stride},
                               {&QKV, uint32_t(qDim + kvDim), stride}, Q, kCache, vCache, T, uint32_t(maxPos),
                               uint32_t(count));
                rec.barrier();
                ops::attention(*ctx, rec, shape, step, Q, kCache, vCache, O, uint32_t(count));
            });
            auto o = readFloats(O, size_t(count) * qDim);
            got.insert(got.end(), o.begin(), o.end());
        }
        const double e = nmse(got, ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // The tests below come last so that the ones above keep drawing the same
    // random numbers from `rng`.

    // RoPE and the KV-cache store on their own (rope.comp, ops::ropeStore): q,
    // k and v read at their offsets and strides, either as the column ranges of
    // one QKV output (rows padded, starting at an offset) or from buffers of
    // their own; q rotated into qOut, k rotated and v copied into the cache
    // rows pos0 + t. Rows of qOut past the step's tokens and the caches' other
    // positions keep their contents. The table is random, so swapped cos/sin,
    // a wrong position or a wrong pair (i, i + D/2) all show.
    // Tolerance: each rotated value is a·cos − b·sin in float32, a few ulp
    // from the double reference (NMSE ~1e-14), so kNmseLimit as everywhere;
    // v and every untouched element are copies and must match exactly.
    void ropeStore_data() {
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<int>("headDim");
        QTest::addColumn<int>("tokens");
        QTest::addColumn<int>("pos0");
        QTest::addColumn<bool>("fused");
        QTest::addColumn<int>("ropeDim"); // 0: the whole head
        QTest::newRow("gqa 4/2 d8 fused qkv, prefill at 0") << 4 << 2 << 8 << 5 << 0 << true << 0;
        QTest::newRow("gqa 6/2 d20 fused qkv, at 7") << 6 << 2 << 20 << 3 << 7 << true << 0;
        QTest::newRow("mqa 3/1 d64 own buffers, one token at 11") << 3 << 1 << 64 << 1 << 11 << false << 0;
        QTest::newRow("mha 2/2 d6 own buffers, 70 tokens at 2") << 2 << 2 << 6 << 70 << 2 << false << 0;
        // Phi-3's partial rotary: the first 12 (Phi-4-mini's 3/4) or 4 of the
        // head's dimensions rotated, the rest copied unchanged.
        QTest::newRow("partial 12 of d16 fused qkv, at 3") << 4 << 2 << 16 << 5 << 3 << true << 12;
        QTest::newRow("partial 4 of d20 own buffers, at 0") << 2 << 1 << 20 << 9 << 0 << false << 4;
    }

    void ropeStore() {
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QFETCH(int, headDim);
        QFETCH(int, tokens);
        QFETCH(int, pos0);
        QFETCH(bool, fused);
        QFETCH(int, ropeDim);
        const int maxPos = pos0 + tokens + 4, half = (ropeDim > 0 ? ropeDim : headDim) / 2;
        const uint32_t qDim = uint32_t(heads * headDim), kvDim = uint32_t(kvHeads * headDim);
        // Where q, k and v lie: one buffer of rows [pad | q | k | v | pad], or three with their own offsets and strides.
        const uint32_t base = 5, qkvStride = qDim + 2 * kvDim + 3;
        const ops::Act qAt = fused ? ops::Act{nullptr, base, qkvStride} : ops::Act{nullptr, 2, qDim + 1};
        const ops::Act kAt = fused ? ops::Act{nullptr, base + qDim, qkvStride} : ops::Act{nullptr, 1, kvDim + 5};
        const ops::Act vAt = fused ? ops::Act{nullptr, base + qDim + kvDim, qkvStride} : ops::Act{nullptr, 3, kvDim};
        auto extent = [&](const ops::Act& a) { return a.offset + size_t(tokens) * a.stride; };
        const auto qkv = randomFloats(rng, extent(qAt) + 3);
        const auto kOwn = fused ? std::vector<float>{} : randomFloats(rng, extent(kAt));
        const auto vOwn = fused ? std::vector<float>{} : randomFloats(rng, extent(vAt));
        const std::vector<float>& qSrc = qkv;
        const std::vector<float>& kSrc = fused ? qkv : kOwn;
        const std::vector<float>& vSrc = fused ? qkv : vOwn;
        const auto table = randomFloats(rng, size_t(2) * maxPos * half);
        const auto q0 = randomFloats(rng, size_t(tokens + 2) * qDim); // two rows past the step's
        const auto k0 = randomFloats(rng, size_t(maxPos) * kvDim), v0 = randomFloats(rng, size_t(maxPos) * kvDim);

        std::vector<float> qRef = q0, kRef = k0, vRef = v0;
        ref::AttentionShape refShape{heads, kvHeads, headDim};
        refShape.ropeDim = ropeDim;
        ref::ropeStore(refShape, qSrc.data(), {qAt.offset, qAt.stride}, kSrc.data(), {kAt.offset, kAt.stride},
                       vSrc.data(), {vAt.offset, vAt.stride}, qRef, kRef, vRef, table, maxPos, pos0, tokens);

        auto QKV = deviceFloats(*ctx, qkv);
        auto Kb = fused ? vk::Buffer{} : deviceFloats(*ctx, kOwn);
        auto Vb = fused ? vk::Buffer{} : deviceFloats(*ctx, vOwn);
        auto T = deviceFloats(*ctx, table), Q = deviceFloats(*ctx, q0), K = deviceFloats(*ctx, k0),
             V = deviceFloats(*ctx, v0);
        auto step = makeStep(*ctx, uint32_t(pos0), std::vector<int32_t>(size_t(tokens), 0));
        const ops::AttentionShape shape{uint32_t(heads), uint32_t(kvHeads), uint32_t(headDim), 0, 1.0f, 0, uint32_t(ropeDim)};
        run([&](vk::Recorder& rec) {
            ops::ropeStore(*ctx, rec, shape, step, {&QKV, qAt.offset, qAt.stride},
                           {fused ? &QKV : &Kb, kAt.offset, kAt.stride}, {fused ? &QKV : &Vb, vAt.offset, vAt.stride},
                           Q, K, V, T, uint32_t(maxPos), uint32_t(tokens));
        });
        const auto qGot = readFloats(Q, q0.size()), kGot = readFloats(K, k0.size()), vGot = readFloats(V, v0.size());
        const size_t qWritten = size_t(tokens) * qDim;
        const double eq = nmse(std::span(qGot).first(qWritten), std::span(qRef).first(qWritten));
        QVERIFY2(eq < kNmseLimit, qPrintable(QString("q: NMSE %1").arg(eq)));
        const auto kRows = std::span(kGot).subspan(size_t(pos0) * kvDim, size_t(tokens) * kvDim);
        const double ek = nmse(kRows, std::span(kRef).subspan(size_t(pos0) * kvDim, kRows.size()));
        QVERIFY2(ek < kNmseLimit, qPrintable(QString("k cache: NMSE %1").arg(ek)));
        for (size_t i = qWritten; i < q0.size(); ++i) QCOMPARE(qGot[i], q0[i]);
        for (int pos = 0; pos < maxPos; ++pos)
            if (pos < pos0 || pos >= pos0 + tokens)
                for (size_t i = 0; i < kvDim; ++i) QCOMPARE(kGot[size_t(pos) * kvDim + i], k0[size_t(pos) * kvDim + i]);
        QCOMPARE(vGot, vRef);
    }

    // A shared expert's per-token gate on its own (sigmoid_scale_rows.comp):
    // h[t, i] *= sigmoid(s[t]) for the step's rows, the elements after them
    // untouched; gates of -90 and +90 (exp overflowing either way) give 0 and h.
    // Tolerance: one exp, divide and multiply per element in float32, a few
    // ulp (NMSE ~1e-14): kNmseLimit as everywhere.
    void sigmoidScaleRows_data() {
        QTest::addColumn<int>("tokens");
        QTest::addColumn<int>("width");
        QTest::newRow("1x1") << 1 << 1;
        QTest::newRow("7x37") << 7 << 37;
        QTest::newRow("3x200") << 3 << 200;
        QTest::newRow("130x1") << 130 << 1;
    }

    void sigmoidScaleRows() {
        QFETCH(int, tokens);
        QFETCH(int, width);
        auto s = randomFloats(rng, size_t(tokens), 3.0f);
        if (tokens >= 3) s[1] = -90.0f, s[2] = 90.0f;
        const size_t n = size_t(tokens) * width;
        const auto h0 = randomFloats(rng, n + 5);
        std::vector<float> ref = h0;
        for (size_t i = 0; i < n; ++i) ref[i] = float(h0[i] * ref::sigmoid(s[i / size_t(width)]));
        auto S = deviceFloats(*ctx, s), Hb = deviceFloats(*ctx, h0);
        run([&](vk::Recorder& rec) { ops::sigmoidScaleRows(*ctx, rec, S, Hb, uint32_t(tokens), uint32_t(width)); });
        const auto got = readFloats(Hb, h0.size());
        for (float v : got) QVERIFY(std::isfinite(v));
        const double e = nmse(std::span(got).first(n), std::span(ref).first(n));
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
        for (size_t i = n; i < got.size(); ++i) QCOMPARE(got[i], h0[i]);
    }

    // The router on its own (moe_route.comp, ops::routeTokens) against
    // ref::Router over two steps: a prompt of 9 tokens at position 0, then 3
    // tokens at 9 marked as a reply (which only sequence routing heeds). Per
    // step: each slot's count and token list (in token order), each token's
    // weights over the slots; the usage counts summed over both steps.
    // Tolerance: the weights are softmax probabilities or their running sums,
    // renormalised, in float32: a few ulp each (NMSE ~1e-13), kNmseLimit as
    // everywhere. The chosen experts must be the very same; random logits
    // leave no near ties.
    void routeTokens_data() {
        QTest::addColumn<int>("experts");
        QTest::addColumn<int>("topK");
        QTest::addColumn<int>("mode");
        QTest::addColumn<double>("decay");
        QTest::addColumn<bool>("renormalise");
        QTest::addColumn<int>("pin"); // slot, or -1
        QTest::newRow("token top-2") << 6 << 2 << 0 << 1.0 << true << -1;
        QTest::newRow("token top-3 raw weights") << 6 << 3 << 0 << 1.0 << false << -1;
        QTest::newRow("running top-2") << 6 << 2 << 1 << 1.0 << true << -1;
        QTest::newRow("running decayed top-1") << 6 << 1 << 1 << 0.7 << true << -1;
        QTest::newRow("sequence top-2") << 6 << 2 << 2 << 1.0 << true << -1;
        QTest::newRow("sequence decayed top-3 raw weights") << 6 << 3 << 2 << 0.8 << false << -1;
        QTest::newRow("pinned to expert 3") << 6 << 2 << 0 << 1.0 << true << 3;
        QTest::newRow("pinned to the base slot") << 6 << 2 << 1 << 1.0 << true << 6;
        QTest::newRow("40 experts top-4 (masks of two words)") << 40 << 4 << 0 << 1.0 << true << -1;
        QTest::newRow("top-k of all 3") << 3 << 3 << 1 << 1.0 << true << -1;
    }

    void routeTokens() {
        QFETCH(int, experts);
        QFETCH(int, topK);
        QFETCH(int, mode);
        QFETCH(double, decay);
        QFETCH(bool, renormalise);
        QFETCH(int, pin);
        const uint32_t E = uint32_t(experts), nSlots = E + 1, maxBatch = 9, lists = 160; // ROUTE_LISTS in common.glsl
        ops::RouteParams rp;
        rp.experts = E, rp.topK = uint32_t(topK), rp.mode = RoutingMode(mode), rp.maxBatch = maxBatch, rp.maxContext = 16;
        rp.decay = float(decay), rp.renormalise = renormalise ? 1u : 0u;
        ref::Router router{experts, topK, mode, double(rp.decay), renormalise};
        vk::Buffer route(*ctx, ops::routeBufferBytes(rp), vk::MemoryUse::Device);
        vk::Buffer state(*ctx, ops::routeStateBytes(rp), vk::MemoryUse::Device);
        vk::Buffer usage(*ctx, nSlots * 4, vk::MemoryUse::Device);
        usage.fillZero();
        std::vector<double> wantUsage(nSlots, 0.0);
        for (auto [pos0, n, reply] : {std::tuple{0, 9, false}, std::tuple{9, 3, true}}) {
            const auto logits = randomFloats(rng, size_t(n) * E, 2.0f);
            std::vector<float> wantWeights;
            std::vector<std::vector<uint32_t>> wantLists(nSlots);
            for (int t = 0; t < n; ++t) {
                const auto w = router.route(pos0 + t, ref::softmax(logits.data() + size_t(t) * E, E), reply, pin);
                for (uint32_t s = 0; s < nSlots; ++s) {
                    wantWeights.push_back(float(w[s]));
                    if (w[s] != 0) wantLists[s].push_back(uint32_t(t)), wantUsage[s] += 1;
                }
            }
            auto step = makeStep(*ctx, uint32_t(pos0), std::vector<int32_t>(size_t(n), 0), reply ? 1u : 0u,
                                 pin >= 0 ? uint32_t(pin) + 1 : 0u);
            auto L = deviceFloats(*ctx, logits);
            run([&](vk::Recorder& rec) { ops::routeTokens(*ctx, rec, rp, step, L, route, state, usage); });
            std::vector<uint32_t> words(route.size() / 4);
            route.download(words.data(), words.size() * 4);
            for (uint32_t s = 0; s < nSlots; ++s) {
                const std::vector<uint32_t> got(words.begin() + lists + s * maxBatch,
                                                words.begin() + lists + s * maxBatch + words[s]);
                QVERIFY2(got == wantLists[s], qPrintable(QString("step at %1, slot %2: %3 tokens, want %4")
                                                              .arg(pos0).arg(s).arg(got.size()).arg(wantLists[s].size())));
            }
            std::vector<float> gotWeights(size_t(n) * nSlots);
            std::memcpy(gotWeights.data(), words.data() + lists + nSlots * maxBatch, gotWeights.size() * 4);
            const double e = nmse(gotWeights, wantWeights);
            QVERIFY2(e < kNmseLimit, qPrintable(QString("step at %1: weights NMSE %2").arg(pos0).arg(e)));
        }
        std::vector<uint32_t> gotUsage(nSlots);
        usage.download(gotUsage.data(), nSlots * 4);
        for (uint32_t s = 0; s < nSlots; ++s) QCOMPARE(double(gotUsage[s]), wantUsage[s]);
    }

    // ---- Gemma's ops (appended so that the tests above draw the same numbers)

    // GeGLU: the gated matvec (1 token), the tiled kernel (21 tokens) and the
    // element-wise pass with the tanh GELU; gate inputs far out (±90) stay finite.
    void gatedGelu_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("tokens");
        QTest::newRow("bf16 matvec") << int(DType::BF16) << 1;
        QTest::newRow("f32 tiled") << int(DType::F32) << 21;
        QTest::newRow("q8_0 matvec") << int(DType::Q8_0) << 1;
    }
    void gatedGelu() {
        QFETCH(int, dtype);
        QFETCH(int, tokens);
        const DType dt = DType(dtype);
        const int rows = 37, cols = isQuantized(dt) ? int(2 * blockOf(dt)) : 29;
        auto wg = makeWeights(rng, dt, size_t(rows) * cols), wu = makeWeights(rng, dt, size_t(rows) * cols);
        auto x = randomFloats(rng, size_t(tokens) * cols, 2.0f);
        std::vector<float> ref(size_t(tokens) * rows);
        for (int t = 0; t < tokens; ++t) {
            const auto h = ref::gatedLinear(wg.values.data(), wu.values.data(), x.data() + size_t(t) * cols, rows, cols, true);
            std::copy(h.begin(), h.end(), ref.begin() + long(t) * rows);
        }
        auto G = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wg.bytes.data());
        auto U = DeviceMatrix::fromHost(*ctx, dt, uint32_t(rows), uint32_t(cols), wu.bytes.data());
        auto X = deviceFloats(*ctx, x);
        vk::Buffer O(*ctx, ref.size() * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) {
            ops::matmulGated(*ctx, rec, G, U, {&X, 0, uint32_t(cols)}, {&O, 0, uint32_t(rows)}, uint32_t(tokens),
                             {.act = Activation::GeluTanh});
        });
        double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < limitFor(dt), qPrintable(QString("gated NMSE %1").arg(e)));

        const uint32_t n = 1001;
        auto g = randomFloats(rng, n, 4.0f), u = randomFloats(rng, n);
        g[0] = -90.0f, g[1] = 90.0f;
        std::vector<float> want(n);
        for (uint32_t i = 0; i < n; ++i) want[i] = float(ref::geluTanh(g[i]) * u[i]);
        auto Gb = deviceFloats(*ctx, g), Ub = deviceFloats(*ctx, u);
        vk::Buffer H(*ctx, n * 4, vk::MemoryUse::Device);
        run([&](vk::Recorder& rec) { ops::siluMul(*ctx, rec, Gb, Ub, H, n, Activation::GeluTanh); });
        const auto got = readFloats(H, n);
        QVERIFY(std::isfinite(got[0]) && std::isfinite(got[1]));
        e = nmse(got, want);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("element-wise NMSE %1").arg(e)));
    }

    // rmsnorm with `accumulate`: out += the normalised rows (Gemma's post-norms).
    void rmsnormAccumulate() {
        const int rows = 6, dim = 45;
        const float eps = 1e-6f;
        auto x = randomFloats(rng, size_t(rows) * dim, 3.0f), w = randomFloats(rng, size_t(dim));
        auto out0 = randomFloats(rng, size_t(rows) * dim);
        std::vector<float> normed(size_t(rows) * dim), ref = out0;
        ref::rmsnormRows(x, {0, size_t(dim)}, normed, {0, size_t(dim)}, rows, dim, w.data(), eps);
        for (size_t i = 0; i < ref.size(); ++i) ref[i] += normed[i];
        auto X = deviceFloats(*ctx, x), Wb = deviceFloats(*ctx, w), O = deviceFloats(*ctx, out0);
        run([&](vk::Recorder& rec) {
            ops::rmsnorm(*ctx, rec, {&X, 0, uint32_t(dim)}, Wb, {&O, 0, uint32_t(dim)}, rows, dim, eps, 1, true);
        });
        const double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Final-logit soft-capping in place from an offset; values far past the
    // cap saturate at ±cap, the rest of the buffer is untouched.
    void softcap() {
        const uint32_t n = 777, offset = 5;
        const float cap = 3.0f;
        auto x = randomFloats(rng, offset + n + 4, 6.0f);
        x[offset] = 1e30f, x[offset + 1] = -1e30f;
        std::vector<float> ref = x;
        for (uint32_t i = 0; i < n; ++i) ref[offset + i] = float(ref::softcap(x[offset + i], cap));
        auto X = deviceFloats(*ctx, x);
        run([&](vk::Recorder& rec) { ops::softcap(*ctx, rec, X, offset, n, cap); });
        const auto got = readFloats(X, x.size());
        QCOMPARE(got[offset], cap);
        QCOMPARE(got[offset + 1], -cap);
        for (uint32_t i = 0; i < offset; ++i) QCOMPARE(got[i], x[i]);
        for (size_t i = offset + n; i < x.size(); ++i) QCOMPARE(got[i], x[i]);
        const double e = nmse(got, ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Embeddings times a scale (Gemma's sqrt(hidden)): the stored value times
    // the scale in float32, exactly.
    void embedScaled() {
        const int vocab = 19, dim = 13;
        auto w = makeWeights(rng, DType::BF16, size_t(vocab) * dim);
        const std::vector<int32_t> tokens{3, 0, 18, 7};
        auto E = DeviceMatrix::fromHost(*ctx, DType::BF16, uint32_t(vocab), uint32_t(dim), w.bytes.data());
        auto step = makeStep(*ctx, 0, tokens);
        vk::Buffer O(*ctx, tokens.size() * dim * 4, vk::MemoryUse::Device);
        const float scale = std::sqrt(float(1152));
        run([&](vk::Recorder& rec) { ops::embed(*ctx, rec, E, step, O, uint32_t(tokens.size()), scale); });
        const auto got = readFloats(O, tokens.size() * dim);
        for (size_t t = 0; t < tokens.size(); ++t)
            for (int i = 0; i < dim; ++i) QCOMPARE(got[t * dim + i], w.values[size_t(tokens[t]) * dim + i] * scale);
    }

    // Attention with soft-capped scores (Gemma 2), with and without a
    // window, prefill (several queries per subgroup) and one-token decode:
    // scores = cap · tanh(q·k · scale / cap), with scores far past the cap.
    void attentionSoftcap_data() {
        QTest::addColumn<int>("tokens");
        QTest::addColumn<int>("window");
        QTest::newRow("prefill 11") << 11 << 0;
        QTest::newRow("prefill 11 window 4") << 11 << 4;
        QTest::newRow("decode at 9 window 4") << 1 << 4;
    }
    void attentionSoftcap() {
        QFETCH(int, tokens);
        QFETCH(int, window);
        const int heads = 4, kvHeads = 2, D = 16, pos0 = tokens == 1 ? 9 : 0, total = pos0 + tokens;
        const float scale = 0.25f, cap = 2.0f;
        auto q = randomFloats(rng, size_t(tokens) * heads * D, 3.0f);
        auto k = randomFloats(rng, size_t(total) * kvHeads * D, 3.0f), v = randomFloats(rng, size_t(total) * kvHeads * D);
        const ref::AttentionShape rs{heads, kvHeads, D, window, scale, cap};
        const auto att = ref::attention(rs, q.data(), k.data(), v.data(), pos0, tokens);
        const std::vector<float> ref(att.begin(), att.end());
        auto Q = deviceFloats(*ctx, q), K = deviceFloats(*ctx, k), V = deviceFloats(*ctx, v);
        vk::Buffer O(*ctx, ref.size() * 4, vk::MemoryUse::Device);
        auto step = makeStep(*ctx, uint32_t(pos0), std::vector<int32_t>(size_t(tokens), 0));
        const ops::AttentionShape shape{uint32_t(heads), uint32_t(kvHeads), uint32_t(D), uint32_t(window), scale, cap};
        run([&](vk::Recorder& rec) { ops::attention(*ctx, rec, shape, step, Q, K, V, O, uint32_t(tokens)); });
        const double e = nmse(readFloats(O, ref.size()), ref);
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Batched decode (several sequences in one step): each sequence's prompt
    // goes in as a step of its own into its cache rows seq * seqRows + pos,
    // then one step holds one token of every sequence, each at its own
    // position, attending over its own rows only (a token reading another
    // sequence's keys, or the wrong position, shows in the NMSE). Tolerance as
    // ropeAttention.
    void ropeAttentionOverSequences_data() {
        QTest::addColumn<int>("window");
        QTest::newRow("global") << 0;
        QTest::newRow("window 4") << 4;
    }
    void ropeAttentionOverSequences() {
        QFETCH(int, window);
        const int heads = 4, kvHeads = 2, headDim = 16, seqRows = 16;
        const std::vector<int> lengths{7, 1, 12};
        const int S = int(lengths.size()), qDim = heads * headDim, kvDim = kvHeads * headDim;
        const float scale = 1.0f / std::sqrt(float(headDim));
        const std::vector<float> table = ref::ropeTable(ref::ropeInvFreq(10000.0, headDim), seqRows);
        const ref::AttentionShape refShape{heads, kvHeads, headDim, window, scale};
        ops::AttentionShape shape{uint32_t(heads), uint32_t(kvHeads), uint32_t(headDim), uint32_t(window), scale};
        vk::Buffer kCache(*ctx, size_t(S) * seqRows * kvDim * 4, vk::MemoryUse::Device),
            vCache(*ctx, size_t(S) * seqRows * kvDim * 4, vk::MemoryUse::Device);
        auto T = deviceFloats(*ctx, table);

        // Per sequence: its prompt and one more token, with q/k/v of its own.
        std::vector<std::vector<float>> q(S), k(S), v(S);
        std::vector<double> want; // the decode token's attention output per sequence
        for (int s = 0; s < S; ++s) {
            const int total = lengths[size_t(s)] + 1;
            q[size_t(s)] = randomFloats(rng, size_t(total) * qDim);
            k[size_t(s)] = randomFloats(rng, size_t(total) * kvDim);
            v[size_t(s)] = randomFloats(rng, size_t(total) * kvDim);
            std::vector<float> qr(size_t(total) * qDim), kc(size_t(seqRows) * kvDim), vc(size_t(seqRows) * kvDim);
            ref::ropeStore(refShape, q[size_t(s)].data(), {0, size_t(qDim)}, k[size_t(s)].data(), {0, size_t(kvDim)},
                           v[size_t(s)].data(), {0, size_t(kvDim)}, qr, kc, vc, table, seqRows, 0, total);
            const auto att = ref::attention(refShape, qr.data(), kc.data(), vc.data(), 0, total);
            want.insert(want.end(), att.end() - qDim, att.end());
        }
        // Rows [first, first + count) of sequence s's q, k, v into separate buffers.
        auto rows = [&](const std::vector<float>& src, int dim, int first, int count) {
            return std::vector<float>(src.begin() + long(first) * dim, src.begin() + long(first + count) * dim);
        };
        auto runStep = [&](const std::vector<ops::StepToken>& toks, const std::vector<float>& qs,
                           const std::vector<float>& ks, const std::vector<float>& vs, bool oneSequence) {
            const uint32_t n = uint32_t(toks.size());
            auto step = makeStep(*ctx, toks, uint32_t(seqRows));
            auto Qin = deviceFloats(*ctx, qs), Kin = deviceFloats(*ctx, ks), Vin = deviceFloats(*ctx, vs);
            vk::Buffer Q(*ctx, size_t(n) * qDim * 4, vk::MemoryUse::Device), O(*ctx, size_t(n) * qDim * 4, vk::MemoryUse::Device);
            run([&](vk::Recorder& rec) {
                ops::ropeStore(*ctx, rec, shape, step, {&Qin, 0, uint32_t(qDim)}, {&Kin, 0, uint32_t(kvDim)},
                               {&Vin, 0, uint32_t(kvDim)}, Q, kCache, vCache, T, uint32_t(seqRows), n);
                rec.barrier();
                ops::attention(*ctx, rec, shape, step, Q, kCache, vCache, O, n, oneSequence);
            });
            return readFloats(O, size_t(n) * qDim);
        };
        for (int s = 0; s < S; ++s) {
            const int len = lengths[size_t(s)];
            std::vector<ops::StepToken> toks;
            for (int t = 0; t < len; ++t) toks.push_back({0, uint32_t(t), uint32_t(s), 0});
            runStep(toks, rows(q[size_t(s)], qDim, 0, len), rows(k[size_t(s)], kvDim, 0, len),
                    rows(v[size_t(s)], kvDim, 0, len), true);
        }
        std::vector<ops::StepToken> toks;
        std::vector<float> qs, ks, vs;
        for (int s = 0; s < S; ++s) {
            const int len = lengths[size_t(s)];
            toks.push_back({0, uint32_t(len), uint32_t(s), 0});
            for (auto [dst, src, dim] : {std::tuple{&qs, &q, qDim}, std::tuple{&ks, &k, kvDim}, std::tuple{&vs, &v, kvDim}}) {
                const auto r = rows((*src)[size_t(s)], dim, len, 1);
                dst->insert(dst->end(), r.begin(), r.end());
            }
        }
        const auto got = runStep(toks, qs, ks, vs, false);
        const double e = nmse(got, std::vector<float>(want.begin(), want.end()));
        QVERIFY2(e < kNmseLimit, qPrintable(QString("NMSE %1").arg(e)));
    }

    // Routing state per sequence: two sequences' prompts in steps of their
    // own, then a step with a reply token of each (one pinned). Running sums,
    // the frozen prompt choice and usage are each sequence's own (one
    // ref::Router per sequence).
    void routeTokensOverSequences_data() {
        QTest::addColumn<int>("mode");
        QTest::newRow("running") << 1;
        QTest::newRow("sequence") << 2;
        QTest::newRow("token") << 0;
    }
    void routeTokensOverSequences() {
        QFETCH(int, mode);
        const uint32_t E = 5, nSlots = E + 1, maxBatch = 8, lists = 160, seqRows = 12;
        ops::RouteParams rp;
        rp.experts = E, rp.topK = 2, rp.mode = RoutingMode(mode), rp.maxBatch = maxBatch, rp.maxContext = seqRows;
        rp.sequences = 2;
        std::vector<ref::Router> routers(2, ref::Router{int(E), 2, mode, 1.0, true});
        vk::Buffer route(*ctx, ops::routeBufferBytes(rp), vk::MemoryUse::Device);
        vk::Buffer state(*ctx, ops::routeStateBytes(rp), vk::MemoryUse::Device);
        vk::Buffer usage(*ctx, 2 * nSlots * 4, vk::MemoryUse::Device);
        usage.fillZero();
        std::vector<double> wantUsage(2 * nSlots, 0.0);
        struct Tok { uint32_t seq, pos; bool reply; int pin; };
        const std::vector<std::vector<Tok>> steps{
            {{0, 0, false, -1}, {0, 1, false, -1}, {0, 2, false, -1}, {0, 3, false, -1}},
            {{1, 0, false, -1}, {1, 1, false, -1}, {1, 2, false, -1}},
            {{0, 4, true, -1}, {1, 3, true, 2}},
            {{1, 4, true, -1}, {0, 5, true, -1}},
        };
        for (const auto& stepToks : steps) {
            const uint32_t n = uint32_t(stepToks.size());
            const auto logits = randomFloats(rng, size_t(n) * E, 2.0f);
            std::vector<ops::StepToken> toks;
            std::vector<float> wantWeights;
            std::vector<std::vector<uint32_t>> wantLists(nSlots);
            for (uint32_t t = 0; t < n; ++t) {
                const Tok& x = stepToks[t];
                toks.push_back({0, x.pos, x.seq, ops::routeFlags(x.reply, x.pin)});
                const auto w = routers[x.seq].route(int(x.pos), ref::softmax(logits.data() + size_t(t) * E, int(E)),
                                                    x.reply, x.pin);
                for (uint32_t s = 0; s < nSlots; ++s) {
                    wantWeights.push_back(float(w[s]));
                    if (w[s] != 0) wantLists[s].push_back(t), wantUsage[x.seq * nSlots + s] += 1;
                }
            }
            auto step = makeStep(*ctx, toks, seqRows);
            auto L = deviceFloats(*ctx, logits);
            run([&](vk::Recorder& rec) { ops::routeTokens(*ctx, rec, rp, step, L, route, state, usage); });
            std::vector<uint32_t> words(route.size() / 4);
            route.download(words.data(), words.size() * 4);
            for (uint32_t s = 0; s < nSlots; ++s) {
                const std::vector<uint32_t> got(words.begin() + lists + s * maxBatch,
                                                words.begin() + lists + s * maxBatch + words[s]);
                QVERIFY2(got == wantLists[s], qPrintable(QString("slot %1: %2 tokens, want %3")
                                                              .arg(s).arg(got.size()).arg(wantLists[s].size())));
            }
            std::vector<float> gotWeights(size_t(n) * nSlots);
            std::memcpy(gotWeights.data(), words.data() + lists + nSlots * maxBatch, gotWeights.size() * 4);
            const double e = nmse(gotWeights, wantWeights);
            QVERIFY2(e < kNmseLimit, qPrintable(QString("weights NMSE %1").arg(e)));
        }
        std::vector<uint32_t> gotUsage(2 * nSlots);
        usage.download(gotUsage.data(), gotUsage.size() * 4);
        for (uint32_t i = 0; i < 2 * nSlots; ++i) QCOMPARE(double(gotUsage[i]), wantUsage[i]);
    }
};

QTEST_GUILESS_MAIN(TestOps)
#include "test_ops.moc"
