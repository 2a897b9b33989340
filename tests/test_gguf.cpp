// The GGUF reader (moe/gguf.h): a real file written by llama.cpp (its Llama
// SentencePiece vocabulary from the node-llama-cpp bundle), files written
// here with tensors of every supported type, and damaged or hostile headers,
// each a clear error naming the file and the key or tensor.
#include "moe/gguf.h"
#include "moe/quant.h"
#include "gguf_builder.h"
#include "test_paths.h"

#include <QtTest/QtTest>

#include <cstring>
#include <fstream>

using namespace moe;
using moe::test::GgufBuilder;

namespace {

std::string write(const QTemporaryDir& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = dir.filePath(QString::fromStdString(name)).toStdString();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return path;
}

std::vector<uint8_t> floatBytes(const std::vector<float>& v) {
    std::vector<uint8_t> out(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
}

} // namespace

class TestGguf : public QObject {
    Q_OBJECT
    QTemporaryDir dir;

    // The reader's error for these bytes must name the file and every part.
    void expectError(const std::string& name, const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
        const std::string path = write(dir, name, bytes);
        const std::string message = test::errorMessage([&] { GgufFile::open(path); });
        std::string missing;
        QVERIFY2(message.find(path) != std::string::npos, message.c_str());
        QVERIFY2(test::containsAll(message, parts, missing), (message + " (missing: " + missing + ")").c_str());
    }

private slots:
    // A file llama.cpp itself wrote: its Llama 2 SentencePiece vocabulary.
    void readsLlamaCppsVocabFile() {
        const auto path = test::testDataDir() / "llama.cpp-vocab" / "ggml-vocab-llama-spm.gguf";
        if (!std::filesystem::exists(path)) QSKIP("llama.cpp vocab GGUF not fetched (packaging/fetch-test-data.sh)");
        const auto g = GgufFile::open(path);
        QCOMPARE(g->getString("general.architecture"), std::optional<std::string>("llama"));
        QCOMPARE(g->getString("tokenizer.ggml.model"), std::optional<std::string>("llama"));
        const GgufValue& tokens = g->require("tokenizer.ggml.tokens");
        QCOMPARE(tokens.elementType, GgufType::String);
        QCOMPARE(tokens.strings.size(), size_t(32000));
        QCOMPARE(tokens.strings[1], std::string("<s>"));
        QCOMPARE(g->require("tokenizer.ggml.scores").reals.size(), size_t(32000));
        QCOMPARE(g->require("tokenizer.ggml.token_type").ints.size(), size_t(32000));
        QCOMPARE(g->getInteger("tokenizer.ggml.bos_token_id"), std::optional<int64_t>(1));
        QVERIFY(g->tensors().empty()); // a vocabulary-only file
        const std::string message = test::errorMessage([&] { g->getString("tokenizer.ggml.bos_token_id"); });
        QVERIFY2(message.find("tokenizer.ggml.bos_token_id") != std::string::npos && message.find("expected a string") != std::string::npos,
                 message.c_str());
    }

    // Tensors of every supported type come back with their shapes, types and bytes.
    void readsTensorsOfEveryType() {
        GgufBuilder b;
        b.string("general.architecture", "llama").f32s("scores", {0.5f, -1.0f});
        const std::vector<float> f32{1, 2, 3, 4, 5, 6};
        b.tensor("a.f32", {3, 2}, 0, floatBytes(f32)); // ne = {3, 2}: 2 rows of 3
        std::vector<uint8_t> half(2 * 8, 0x3c);
        b.tensor("b.f16", {8}, 1, half);
        b.tensor("c.bf16", {8}, 30, half);
        for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1,
                            QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K}) {
            const uint32_t n = quantLayout(t).blockElements * 2;
            std::vector<uint8_t> raw(quantRowBytes(t, n) * 3, uint8_t(ggmlTypeId(t)));
            b.tensor(std::string("q.") + toString(t), {n, 3}, ggmlTypeId(t), raw);
        }
        const std::string path = write(dir, "all.gguf", b.build());
        const auto g = GgufFile::open(path);
        QCOMPARE(g->version(), 3u);
        QCOMPARE(g->require("scores").reals, (std::vector<double>{0.5, -1.0}));
        const GgufTensor* a = g->findTensor("a.f32");
        QVERIFY(a);
        QCOMPARE(a->shape, (std::vector<int64_t>{2, 3}));
        QCOMPARE(a->dtype, std::optional<DType>(DType::F32));
        QCOMPARE(std::memcmp(a->data, f32.data(), 24), 0);
        QCOMPARE(g->findTensor("c.bf16")->dtype, std::optional<DType>(DType::BF16));
        const GgufTensor* q = g->findTensor("q.q4_k");
        QVERIFY(q);
        QCOMPARE(q->quant, std::optional<QuantType>(QuantType::Q4_K));
        QCOMPARE(q->shape, (std::vector<int64_t>{3, 512}));
        QCOMPARE(q->nbytes, size_t(3 * 2 * 144));
        QCOMPARE(uint8_t(q->data[0]), uint8_t(12));
        QCOMPARE(uint64_t(q->data - g->mapping().data()) % 32, uint64_t(0));
        QCOMPARE(g->tensors().size(), size_t(11));
    }

    void damagedAndHostileHeadersAreClearErrors() {
        GgufBuilder good;
        good.string("general.architecture", "llama").tensor("w", {32}, 0, floatBytes(std::vector<float>(32, 1)));
        const std::vector<uint8_t> file = good.build();

        expectError("magic.gguf", {'G', 'G', 'M', 'L', 0, 0, 0, 0}, {"not a GGUF file"});
        expectError("truncated.gguf", std::vector<uint8_t>(file.begin(), file.begin() + 30), {"truncated"});
        {   // a string length past the end
            std::vector<uint8_t> bad = file;
            const uint64_t huge = 1ull << 40;
            std::memcpy(bad.data() + 24, &huge, 8); // the first key's length
            expectError("string.gguf", bad, {"metadata entry 0 key", "runs past the end"});
        }
        {   // absurd tensor and metadata counts
            std::vector<uint8_t> bad = file;
            const uint64_t absurd = 1ull << 60;
            std::memcpy(bad.data() + 8, &absurd, 8);
            expectError("tensors.gguf", bad, {"tensor count", "cannot fit"});
            bad = file;
            std::memcpy(bad.data() + 16, &absurd, 8);
            expectError("kvs.gguf", bad, {"metadata count", "cannot fit"});
        }
        {   // an unknown value type
            GgufBuilder b;
            GgufBuilder::putString(b.kv, "weird.key"), GgufBuilder::put<uint32_t>(b.kv, 77), ++b.kvCount;
            expectError("valuetype.gguf", b.build(), {"weird.key", "unknown value type 77"});
        }
        {   // an array longer than the file
            GgufBuilder b;
            GgufBuilder::putString(b.kv, "tokenizer.ggml.tokens"), GgufBuilder::put<uint32_t>(b.kv, 9);
            GgufBuilder::put<uint32_t>(b.kv, 8), GgufBuilder::put<uint64_t>(b.kv, 1ull << 50), ++b.kvCount;
            expectError("array.gguf", b.build(), {"tokenizer.ggml.tokens", "more than the"});
        }
        {   // arrays nested deeper than any real file
            GgufBuilder b;
            GgufBuilder::putString(b.kv, "deep"), GgufBuilder::put<uint32_t>(b.kv, 9);
            for (int d = 0; d < 5; ++d) GgufBuilder::put<uint32_t>(b.kv, 9), GgufBuilder::put<uint64_t>(b.kv, 1);
            GgufBuilder::put<uint32_t>(b.kv, 4), GgufBuilder::put<uint64_t>(b.kv, 0), ++b.kvCount;
            expectError("deep.gguf", b.build(), {"deep", "nested"});
        }
        {   // a tensor past the end of the file, and one misaligned
            std::vector<uint8_t> bad = file;
            bad.resize(bad.size() - 64);
            expectError("short.gguf", bad, {"tensor w", "past its end"});
            GgufBuilder b;
            b.tensor("w", {32}, 0, floatBytes(std::vector<float>(32, 1)));
            std::vector<uint8_t> m = b.build();
            const size_t offsetAt = 24 + 8 + 1 + 4 + 8 + 4; // after the name, n_dims, ne[0] and the type
            const uint64_t odd = 4;
            std::memcpy(m.data() + offsetAt, &odd, 8);
            expectError("misaligned.gguf", m, {"tensor w", "not a multiple of the alignment"});
        }
        {   // unknown and unsupported tensor types; rows that are not whole blocks
            GgufBuilder b;
            b.tensor("blk.0.attn_q.weight", {256}, 11, std::vector<uint8_t>(110));
            expectError("q3k.gguf", b.build(), {"blk.0.attn_q.weight", "q3_k", "not supported"});
            GgufBuilder c;
            c.tensor("x", {32}, 250, std::vector<uint8_t>(32));
            expectError("unknowntype.gguf", c.build(), {"tensor x", "type 250"});
            GgufBuilder d;
            d.tensor("blk.0.ffn_down.weight", {896}, 12, std::vector<uint8_t>(1024));
            expectError("blocks.gguf", d.build(), {"blk.0.ffn_down.weight", "q4_k", "blocks"});
        }
        {   // overlapping tensors, duplicate names and keys
            GgufBuilder b;
            b.tensor("a", {32}, 0, floatBytes(std::vector<float>(32, 1)));
            b.tensor("b", {32}, 0, floatBytes(std::vector<float>(32, 1)));
            std::vector<uint8_t> o = b.build();
            const size_t secondOffset = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4);
            const uint64_t zero = 0;
            std::memcpy(o.data() + secondOffset, &zero, 8);
            expectError("overlap.gguf", o, {"overlaps"});
            GgufBuilder k;
            k.u32("general.alignment", 32).u32("general.alignment", 32);
            expectError("dupkey.gguf", k.build(), {"general.alignment", "twice"});
            GgufBuilder al;
            al.u32("general.alignment", 48);
            expectError("alignment.gguf", al.build(), {"general.alignment", "power of two"});
        }
        {   // not a regular file
            const std::string message = test::errorMessage([&] { GgufFile::open(dir.path().toStdString()); });
            QVERIFY2(message.find("not a regular file") != std::string::npos, message.c_str());
        }
    }

    // Every truncation of a valid file is an error, never a crash or a hang.
    void everyTruncationIsAnError() {
        GgufBuilder b;
        b.string("general.architecture", "llama").f32s("s", {1, 2}).tensor("w", {32}, 8, std::vector<uint8_t>(34));
        const std::vector<uint8_t> file = b.build();
        const std::string path = dir.filePath("cut.gguf").toStdString();
        for (size_t n = 0; n < file.size(); ++n) {
            write(dir, "cut.gguf", std::vector<uint8_t>(file.begin(), file.begin() + long(n)));
            const std::string message = test::errorMessage([&] { GgufFile::open(path); });
            QVERIFY2(message.rfind(path, 0) == 0, (std::to_string(n) + ": " + message).c_str());
        }
        write(dir, "cut.gguf", file);
        QCOMPARE(GgufFile::open(path)->tensors().size(), size_t(1));
    }
};

QTEST_GUILESS_MAIN(TestGguf)
#include "test_gguf.moc"
