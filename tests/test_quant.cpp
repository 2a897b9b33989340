// ggml's block types (moe/quant.h): the engine's dequantizer against the
// per-weight twin in reference_quant.h, bit for bit, on random blocks (every
// bit pattern of the quants; finite scales); the legacy quantizers against
// ggml's reference rounding, bit for bit; quantize-then-dequantize error per
// type; names, ggml ids and row sizes.
#include "moe/error.h"
#include "moe/quant.h"
#include "reference_ops.h"
#include "reference_quant.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <cstring>
#include <random>

using namespace moe;

namespace {

constexpr QuantType kAll[] = {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0,
                              QuantType::Q5_1, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K};

// Random block bytes whose half-precision scale fields are finite values of
// either sign in [1e-3, 2) (random bytes there could be Inf or NaN).
std::vector<uint8_t> randomBlocks(QuantType t, size_t blocks, std::mt19937& rng) {
    const QuantLayout l = quantLayout(t);
    std::vector<uint8_t> bytes(blocks * l.blockBytes);
    for (auto& b : bytes) b = uint8_t(rng());
    std::uniform_real_distribution<float> mag(1e-3f, 2.0f);
    std::vector<size_t> halves;
    switch (t) {
    case QuantType::Q4_1:
    case QuantType::Q5_1:
    case QuantType::Q4_K:
    case QuantType::Q5_K: halves = {0, 2}; break;
    case QuantType::Q6_K: halves = {208}; break;
    default: halves = {0}; break;
    }
    for (size_t b = 0; b < blocks; ++b)
        for (size_t at : halves) test::refq::putHalf(bytes.data() + b * l.blockBytes + at, (rng() & 1 ? -1 : 1) * mag(rng));
    return bytes;
}

std::vector<float> randomRow(size_t n, std::mt19937& rng, float scale = 0.05f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> x(n);
    for (auto& v : x) v = dist(rng);
    return x;
}

std::vector<std::byte> quantize(QuantType t, const std::vector<float>& x) {
    std::vector<std::byte> q(quantRowBytes(t, x.size()));
    quantizeRow(t, x, q);
    return q;
}

std::vector<float> dequantize(QuantType t, const std::vector<std::byte>& q, size_t n) {
    std::vector<float> y(n);
    dequantizeRow(t, q, y);
    return y;
}

} // namespace

class TestQuant : public QObject {
    Q_OBJECT
private slots:
    void layoutsAreGgmls() {
        // Block sizes from ggml-common.h's static_asserts.
        QCOMPARE(quantLayout(QuantType::Q8_0).blockBytes, 34u);
        QCOMPARE(quantLayout(QuantType::Q4_0).blockBytes, 18u);
        QCOMPARE(quantLayout(QuantType::Q4_1).blockBytes, 20u);
        QCOMPARE(quantLayout(QuantType::Q5_0).blockBytes, 22u);
        QCOMPARE(quantLayout(QuantType::Q5_1).blockBytes, 24u);
        QCOMPARE(quantLayout(QuantType::Q4_K).blockBytes, 144u);
        QCOMPARE(quantLayout(QuantType::Q5_K).blockBytes, 176u);
        QCOMPARE(quantLayout(QuantType::Q6_K).blockBytes, 210u);
        for (QuantType t : kAll) {
            QCOMPARE(parseQuantType(toString(t)), std::optional<QuantType>(t));
            QCOMPARE(quantTypeFromGgml(ggmlTypeId(t)), std::optional<QuantType>(t));
        }
        QCOMPARE(parseQuantType("Q4_K"), std::optional<QuantType>(QuantType::Q4_K));
        QVERIFY(!parseQuantType("q3_k"));
        QVERIFY(!quantTypeFromGgml(1)); // F16 is not a block type
        QVERIFY(!quantTypeFromGgml(11)); // Q3_K: not supported
        const std::string message = test::errorMessage([] { quantRowBytes(QuantType::Q4_K, 896, "blk.0.ffn_down.weight"); });
        QVERIFY2(message.find("blk.0.ffn_down.weight") != std::string::npos && message.find("q4_k") != std::string::npos,
                 message.c_str());
        QCOMPARE(quantRowBytes(QuantType::Q5_0, 896), size_t(28 * 22));
    }

    void dequantizeMatchesTheBlockDefinitions_data() {
        QTest::addColumn<int>("type");
        for (QuantType t : kAll) QTest::newRow(toString(t)) << int(t);
    }
    void dequantizeMatchesTheBlockDefinitions() {
        QFETCH(int, type);
        const auto t = QuantType(type);
        std::mt19937 rng(17 + type);
        const size_t blocks = 5; // odd, and more than one super-block
        const auto bytes = randomBlocks(t, blocks, rng);
        const size_t n = blocks * quantLayout(t).blockElements;
        std::vector<float> y(n);
        dequantizeRow(t, std::as_bytes(std::span(bytes)), y);
        const auto ref = test::refq::dequantize(t, bytes, n);
        for (size_t i = 0; i < n; ++i)
            if (std::memcmp(&y[i], &ref[i], 4) != 0)
                QFAIL(qPrintable(QString("weight %1: %2, reference %3").arg(i).arg(y[i]).arg(ref[i])));
    }

    void legacyQuantizersRoundAsGgml_data() {
        QTest::addColumn<int>("type");
        for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1})
            QTest::newRow(toString(t)) << int(t);
    }
    void legacyQuantizersRoundAsGgml() {
        QFETCH(int, type);
        const auto t = QuantType(type);
        std::mt19937 rng(5 + type);
        auto x = randomRow(32 * 7, rng);
        std::fill(x.begin() + 64, x.begin() + 96, 0.0f); // an all-zero block: scale 0
        const auto q = quantize(t, x);
        std::vector<uint8_t> ref(q.size());
        for (size_t b = 0; b < 7; ++b)
            test::refq::quantizeLegacyBlock(t, x.data() + 32 * b, ref.data() + b * quantLayout(t).blockBytes);
        QVERIFY(std::memcmp(q.data(), ref.data(), q.size()) == 0);
    }

    // Quantization noise of b-bit uniform steps over a block's range: NMSE
    // about range² / (12 · 4^b) / variance; the bounds are that with margin
    // for Gaussian rows (range about ±2.5σ in a block of 32).
    void roundTripErrorIsBoundedByTheBits_data() {
        QTest::addColumn<int>("type");
        QTest::addColumn<double>("bound");
        QTest::newRow("q8_0") << int(QuantType::Q8_0) << 1e-4;
        QTest::newRow("q6_k") << int(QuantType::Q6_K) << 1.5e-3;
        QTest::newRow("q5_0") << int(QuantType::Q5_0) << 5e-3;
        QTest::newRow("q5_1") << int(QuantType::Q5_1) << 5e-3;
        QTest::newRow("q5_k") << int(QuantType::Q5_K) << 5e-3;
        QTest::newRow("q4_0") << int(QuantType::Q4_0) << 2e-2;
        QTest::newRow("q4_1") << int(QuantType::Q4_1) << 2e-2;
        QTest::newRow("q4_k") << int(QuantType::Q4_K) << 2e-2;
    }
    void roundTripErrorIsBoundedByTheBits() {
        QFETCH(int, type);
        QFETCH(double, bound);
        const auto t = QuantType(type);
        std::mt19937 rng(99);
        const size_t n = 3 * 256 * 3; // odd block counts for every type
        const auto x = randomRow(n, rng);
        const auto y = dequantize(t, quantize(t, x), n);
        const double e = test::nmse(y, x);
        QVERIFY2(e < bound, qPrintable(QString("%1: NMSE %2 >= %3").arg(toString(t)).arg(e).arg(bound)));
        QVERIFY2(e > 0, "quantization noise cannot be zero on random weights");
        // The same row scaled by 1000 quantizes the same up to the scale (no fixed offsets).
        std::vector<float> big(x);
        for (float& v : big) v *= 1000.0f;
        QVERIFY(test::nmse(dequantize(t, quantize(t, big), n), big) < bound);
    }

    // Weights on a Q8_0 grid come back exactly; an all-zero row stays zero in every type.
    void exactValuesStayExact() {
        std::vector<float> x(64);
        const float d = 0.03125f; // a half, and amax = 127 * d
        for (size_t i = 0; i < x.size(); ++i) x[i] = d * float(int(i % 64) - 60);
        x[0] = 127 * d, x[32] = -127 * d;
        QCOMPARE(dequantize(QuantType::Q8_0, quantize(QuantType::Q8_0, x), x.size()), x);
        for (QuantType t : kAll) {
            const std::vector<float> zero(quantLayout(t).blockElements, 0.0f);
            QCOMPARE(dequantize(t, quantize(t, zero), zero.size()), zero);
        }
    }
};

QTEST_GUILESS_MAIN(TestQuant)
#include "test_quant.moc"
