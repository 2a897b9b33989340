// Tokenizer::fromGguf and ChatTemplate::fromGguf: llama.cpp's own vocabulary
// GGUF files (from the node-llama-cpp bundle, fetched by
// packaging/fetch-test-data.sh) against the expected ids llama.cpp ships with
// them (made by transformers from the original tokenizers), decode round
// trips, special ids and BOS rules, chat templates, and small malformed
// files written here, each a clear error naming the file and the key.
//
// The test data is skipped when it is not there, unless MOE_REQUIRE_TESTDATA
// is set (as in CI), where its absence fails.
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/gguf.h"
#include "moe/tokenizer.h"
#include "gguf_builder.h"
#include "llama_cpp_vocab_cases.h"
#include "test_paths.h"
#include "tokenizer_common.h"

#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

using namespace moe;
using moe::test::GgufBuilder;
namespace fs = std::filesystem;

namespace {

QString idsText(const std::vector<int32_t>& ids) {
    QStringList parts;
    for (int32_t id : ids) parts << QString::number(id);
    return "[" + parts.join(' ') + "]";
}

QString shown(const std::string& text) {
    QString s = QString::fromUtf8(text.data(), static_cast<qsizetype>(text.size()));
    s.replace('\n', "\\n").replace('\t', "\\t").replace('\r', "\\r");
    return s.size() > 70 ? s.left(70) + "..." : s;
}

fs::path vocabFile(const std::string& name) { return moe::test::testDataDir() / "llama.cpp-vocab" / name; }

// Skips when the fetched test data is missing, fails when MOE_REQUIRE_TESTDATA says it must be there.
#define REQUIRE_TEST_DATA(location)                                                                                    \
    do {                                                                                                               \
        if (!fs::exists(location)) {                                                                                   \
            const QString message_ =                                                                                   \
                QString("missing test data %1: run packaging/fetch-test-data.sh, or point MOE_TESTDATA_DIR at it")     \
                    .arg(QString::fromStdString(fs::path(location).string()));                                         \
            const char* required_ = std::getenv("MOE_REQUIRE_TESTDATA");                                               \
            if (required_ && *required_) QFAIL(qPrintable(message_));                                                  \
            QSKIP(qPrintable(message_));                                                                               \
        }                                                                                                              \
    } while (false)

// A tiny SentencePiece vocabulary: "▁ab" is made by merging "▁a" (the best score) with "b".
GgufBuilder tinySentencePiece() {
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "llama")
        .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<tool>"})
        .f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -4, -5, -6, 0})
        .i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1, 1, 4});
    return b;
}

// A tiny byte-level BPE vocabulary with GPT-2's pre-tokenizer.
GgufBuilder tinyBytePair(const std::string& pre = "gpt-2") {
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", pre)
        .strings("tokenizer.ggml.tokens", {"a", "b", "Ġ", "ab", "Ġa", "Ġab", "<|endoftext|>"})
        .i32s("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1, 3})
        .strings("tokenizer.ggml.merges", {"Ġ a", "a b", "Ġa b"})
        .u32("tokenizer.ggml.eos_token_id", 6);
    return b;
}

} // namespace

class TestTokenizerGguf : public QObject {
    Q_OBJECT
    QTemporaryDir dir;

    std::shared_ptr<const GgufFile> writeGguf(const std::string& name, const GgufBuilder& builder) {
        const std::string path = dir.filePath(QString::fromStdString(name)).toStdString();
        const auto bytes = builder.build();
        std::ofstream(path, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        return GgufFile::open(path);
    }

    // fromGguf of these keys must fail naming the file and every part.
    void expectError(const std::string& name, const GgufBuilder& builder, const std::vector<std::string>& parts) {
        const auto file = writeGguf(name, builder);
        std::vector<std::string> all{file->path().string()};
        all.insert(all.end(), parts.begin(), parts.end());
        const std::string message = moe::test::errorMessage([&] { Tokenizer::fromGguf(*file); });
        std::string missing;
        QVERIFY2(moe::test::containsAll(message, all, missing),
                 qPrintable(QString::fromStdString("expected \"" + missing + "\" in: " + message)));
    }

private slots:
    // Every .inp text of a vocabulary encodes to its .out ids (no BOS,
    // specials not parsed, as llama.cpp's test-tokenizer-0 and transformers'
    // encode(add_special_tokens=False)), and decodes back to the text.
    void matchesLlamaCppExpectedIds_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("kind");
        QTest::addColumn<int>("cases");
        QTest::newRow("llama-spm") << "ggml-vocab-llama-spm.gguf"
                                   << "sentencepiece" << 46;
        QTest::newRow("phi-3") << "ggml-vocab-phi-3.gguf"
                               << "sentencepiece" << 46;
        QTest::newRow("llama-bpe") << "ggml-vocab-llama-bpe.gguf"
                                   << "bpe-byte-level" << 46;
        QTest::newRow("qwen2") << "ggml-vocab-qwen2.gguf"
                               << "bpe-byte-level" << 46;
        QTest::newRow("gpt-2") << "ggml-vocab-gpt-2.gguf"
                               << "bpe-byte-level" << 46;
        // One vocabulary per pre-tokenizer family (regexes, ignore_merges, clean_up_tokenization_spaces).
        for (const char* name : {"starcoder", "refact", "mpt", "falcon", "deepseek-coder", "deepseek-llm", "command-r"})
            QTest::newRow(name) << QString("ggml-vocab-%1.gguf").arg(name) << "bpe-byte-level" << 46;
        QTest::newRow("qwen35") << "ggml-vocab-qwen35.gguf"
                                << "bpe-byte-level" << 50;
    }

    void matchesLlamaCppExpectedIds() {
        QFETCH(QString, name);
        QFETCH(QString, kind);
        QFETCH(int, cases);
        const fs::path path = vocabFile(name.toStdString());
        REQUIRE_TEST_DATA(path);
        REQUIRE_TEST_DATA(path.string() + ".inp");
        const auto file = GgufFile::open(path);
        std::unique_ptr<Tokenizer> tok;
        try {
            tok = Tokenizer::fromGguf(*file);
        } catch (const std::exception& e) {
            QFAIL(e.what());
        }
        QCOMPARE(QString::fromStdString(tok->kind()), kind);
        QCOMPARE(size_t(tok->vocabSize()), file->require("tokenizer.ggml.tokens").strings.size());
        const auto expected = moe::test::readLlamaCppCases(path.string() + ".inp");
        QCOMPARE(int(expected.size()), cases);
        QStringList failures, roundTrips;
        for (size_t i = 0; i < expected.size(); ++i) {
            const auto ids = tok->encode(expected[i].text, false, false);
            if (ids != expected[i].ids) {
                failures << QString("case %1 \"%2\": got %3, expected %4")
                                .arg(i)
                                .arg(shown(expected[i].text), idsText(ids), idsText(expected[i].ids));
                continue;
            }
            // Decoding is lossless but for clean_up_tokenization_spaces where the vocabulary asks for it.
            const std::string decoded = tok->decode(ids);
            if (decoded != expected[i].text && decoded != tokenizer_detail::cleanUpTokenizationSpaces(expected[i].text))
                roundTrips
                    << QString("case %1 \"%2\" decodes as \"%3\"").arg(i).arg(shown(expected[i].text), shown(decoded));
        }
        qInfo("%s: %d/%d llama.cpp cases pass, %d/%d decode back", qPrintable(name),
              int(expected.size()) - int(failures.size()), int(expected.size()),
              int(expected.size()) - int(failures.size()) - int(roundTrips.size()),
              int(expected.size()) - int(failures.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
        QVERIFY2(roundTrips.isEmpty(), qPrintable(roundTrips.join('\n')));
    }

    void llamaSpmSpecialTokens() {
        const fs::path path = vocabFile("ggml-vocab-llama-spm.gguf");
        REQUIRE_TEST_DATA(path);
        const auto tok = Tokenizer::fromGguf(*GgufFile::open(path));
        const SpecialTokens& s = tok->special();
        QCOMPARE(s.bos.value_or(-1), 1);
        QCOMPARE(s.unk.value_or(-1), 0);
        QVERIFY(!s.pad.has_value());
        QCOMPARE(s.eos.front(), 2);
        QVERIFY(tok->isEos(2));
        QVERIFY(!tok->isEos(1));
        QVERIFY(s.addBos);
        QVERIFY(!s.addEos);
        QCOMPARE(QString::fromStdString(s.bosText), QString("<s>"));
        QCOMPARE(QString::fromStdString(s.eosText), QString("</s>"));
        // add_bos_token: BOS in front with addSpecial; literal <s> only parsed when asked.
        const auto plain = tok->encode("Hello world", false, false);
        auto withBos = plain;
        withBos.insert(withBos.begin(), 1);
        QCOMPARE(idsText(tok->encode("Hello world", true, false)), idsText(withBos));
        const auto parsed = tok->encode("<s>[INST] Hi [/INST]", false, true);
        QCOMPARE(parsed.front(), 1);
        QCOMPARE(std::count(parsed.begin(), parsed.end(), 1), 1);
        const auto literal = tok->encode("<s>[INST] Hi [/INST]", false, false);
        QCOMPARE(std::count(literal.begin(), literal.end(), 1), 0);
        QCOMPARE(QString::fromStdString(tok->decode(parsed)), QString("[INST] Hi [/INST]"));
        QCOMPARE(QString::fromStdString(tok->decode(parsed, false)),
                 QString("<s> [INST] Hi [/INST]")); // as llama.cpp renders it
        // Characters outside the vocabulary go through the byte pieces and come back.
        const std::string rare = "\xF0\x9F\xA6\x99 \xE2\x82\xBF";
        const auto rareIds = tok->encode(rare, false, false);
        QVERIFY(std::all_of(rareIds.begin(), rareIds.end(), [](int32_t id) { return id != 0; }));
        QCOMPARE(QString::fromStdString(tok->decode(rareIds)), QString::fromStdString(rare));
    }

    void phi3SpecialTokens() {
        const fs::path path = vocabFile("ggml-vocab-phi-3.gguf");
        REQUIRE_TEST_DATA(path);
        const auto file = GgufFile::open(path);
        const auto tok = Tokenizer::fromGguf(*file);
        const SpecialTokens& s = tok->special();
        QCOMPARE(s.bos.value_or(-1), 1);
        QCOMPARE(s.eos.front(), 32000); // <|endoftext|>
        QCOMPARE(s.pad.value_or(-1), 32000);
        QVERIFY(tok->isEos(32007)); // <|end|>, found by its text as llama.cpp does
        QVERIFY(s.addBos);
        const auto chat = tok->encode("<|user|>\nHi<|end|>\n<|assistant|>\n", false, true);
        QCOMPARE(chat.front(), 32010);
        QVERIFY(std::count(chat.begin(), chat.end(), 32007) == 1);
        QVERIFY(std::count(chat.begin(), chat.end(), 32001) == 1);
        // Each text run after a special token gets SentencePiece's prefix space, as in llama.cpp.
        const std::string decoded = tok->decode(chat, false);
        QVERIFY2(decoded.starts_with("<|user|>") && decoded.find("Hi<|end|>") != std::string::npos, decoded.c_str());
        QVERIFY(tok->encode("<|user|>", false, false).size() > 1); // not parsed: plain text

        const ChatTemplate chatTemplate = ChatTemplate::fromGguf(*file);
        QVERIFY(!chatTemplate.isFallback());
        const std::string rendered = chatTemplate.render({{"user", "Hi"}}, true, s.bosText, s.eosText);
        QVERIFY2(rendered.find("<|user|>\nHi<|end|>\n<|assistant|>\n") != std::string::npos, rendered.c_str());
    }

    void llama3SpecialTokens() {
        const fs::path path = vocabFile("ggml-vocab-llama-bpe.gguf");
        REQUIRE_TEST_DATA(path);
        const auto tok = Tokenizer::fromGguf(*GgufFile::open(path));
        const SpecialTokens& s = tok->special();
        QCOMPARE(s.bos.value_or(-1), 128000);
        QCOMPARE(s.eos.front(), 128001);
        QVERIFY(tok->isEos(128009)); // <|eot_id|>
        QVERIFY(s.addBos);           // llama.cpp's default for the llama-bpe pre-tokenizer
        QVERIFY(!s.addEos);
        QCOMPARE(QString::fromStdString(s.bosText), QString("<|begin_of_text|>"));
        const auto ids = tok->encode("Hello", true, false);
        QCOMPARE(ids.front(), 128000);
        QCOMPARE(tok->encode("<|begin_of_text|>Hello", false, true).front(), 128000);
        QCOMPARE(QString::fromStdString(tok->decode(ids)), QString("Hello"));
    }

    void qwen2SpecialTokensAndTemplate() {
        const fs::path path = vocabFile("ggml-vocab-qwen2.gguf");
        REQUIRE_TEST_DATA(path);
        const auto file = GgufFile::open(path);
        const auto tok = Tokenizer::fromGguf(*file);
        const SpecialTokens& s = tok->special();
        QVERIFY(!s.addBos); // no add_bos_token key: llama.cpp's default for qwen2 is off
        QCOMPARE(s.eos.front(), 151643);
        QVERIFY(tok->isEos(151645)); // <|im_end|>
        QCOMPARE(s.pad.value_or(-1), 151643);
        const auto chat = tok->encode("<|im_start|>user\nHi there<|im_end|>\n", true, true);
        QCOMPARE(idsText(chat), idsText({151644, 872, 198, 13048, 1052, 151645, 198}));
        QCOMPARE(QString::fromStdString(tok->decode(chat)), QString("user\nHi there\n"));
        QCOMPARE(QString::fromStdString(tok->decode(chat, false)), QString("<|im_start|>user\nHi there<|im_end|>\n"));
        QVERIFY(tok->encode("<|im_start|>", false, false).size() > 1);

        const ChatTemplate chatTemplate = ChatTemplate::fromGguf(*file);
        QVERIFY(!chatTemplate.isFallback());
        QCOMPARE(chatTemplate.source(), *file->getString("tokenizer.chat_template"));
        const std::string rendered = chatTemplate.render({{"user", "Hi"}}, true, "", s.eosText);
        QVERIFY2(rendered.find("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") != std::string::npos,
                 rendered.c_str());
    }

    void chatTemplateFallbackAndWrongType() {
        const fs::path path = vocabFile("ggml-vocab-llama-spm.gguf");
        REQUIRE_TEST_DATA(path);
        QVERIFY(ChatTemplate::fromGguf(*GgufFile::open(path)).isFallback()); // the file has none
        auto b = tinySentencePiece();
        b.u32("tokenizer.chat_template", 7);
        const auto file = writeGguf("template-not-string.gguf", b);
        EXPECT_ERROR(ChatTemplate::fromGguf(*file), file->path().string(), "tokenizer.chat_template",
                     "expected a string");
    }

    // Small vocabularies written here: the tokenizers work without the test data.
    void tinyVocabularies() {
        auto spm = tinySentencePiece();
        spm.string("tokenizer.chat_template", "{{ messages[0]['content'] }}");
        const auto spmFile = writeGguf("tiny-spm.gguf", spm);
        const auto sp = Tokenizer::fromGguf(*spmFile);
        QCOMPARE(QString::fromStdString(sp->kind()), QString("sentencepiece"));
        QCOMPARE(idsText(sp->encode("ab", true, false)), idsText({1, 8}));
        QCOMPARE(idsText(sp->encode("ab a", false, false)), idsText({8, 6}));
        QCOMPARE(idsText(sp->encode("abc", false, false)), idsText({8, 0})); // no byte pieces: unknown
        // A user-defined token is matched even when specials are not parsed; the text after it gets the prefix space.
        QCOMPARE(idsText(sp->encode("ab<tool>ab", false, false)), idsText({8, 9, 8}));
        QCOMPARE(idsText(sp->encode("<s>ab", false, true)), idsText({1, 8}));
        QCOMPARE(QString::fromStdString(sp->decode({1, 8, 6})), QString("ab a"));
        QCOMPARE(ChatTemplate::fromGguf(*spmFile).render({{"user", "x"}}, false, "", ""), std::string("x"));

        auto noPrefix = tinySentencePiece();
        noPrefix.boolean("tokenizer.ggml.add_space_prefix", false).boolean("tokenizer.ggml.add_bos_token", false);
        const auto np = Tokenizer::fromGguf(*writeGguf("tiny-spm-no-prefix.gguf", noPrefix));
        QCOMPARE(idsText(np->encode("ab", true, false)), idsText({7}));

        const auto bpe = Tokenizer::fromGguf(*writeGguf("tiny-bpe.gguf", tinyBytePair()));
        QCOMPARE(QString::fromStdString(bpe->kind()), QString("bpe-byte-level"));
        QVERIFY(!bpe->special().addBos);
        QVERIFY(!bpe->special().bos.has_value());
        QCOMPARE(bpe->special().eos, std::vector<int32_t>{6});
        QCOMPARE(idsText(bpe->encode("ab ab a", true, false)), idsText({3, 5, 4}));
        QCOMPARE(idsText(bpe->encode("ab<|endoftext|>", false, true)), idsText({3, 6}));
        QCOMPARE(QString::fromStdString(bpe->decode({3, 5, 4, 6})), QString("ab ab a"));
        QCOMPARE(QString::fromStdString(bpe->decode({3, 6}, false)), QString("ab<|endoftext|>"));

        // A user-defined end-of-turn token is found by its text and becomes a control token, as in llama.cpp.
        GgufBuilder imEnd;
        imEnd.string("tokenizer.ggml.model", "gpt2")
            .string("tokenizer.ggml.pre", "qwen2")
            .strings("tokenizer.ggml.tokens", {"a", "b", "ab", "<|im_end|>"})
            .i32s("tokenizer.ggml.token_type", {1, 1, 1, 4})
            .strings("tokenizer.ggml.merges", {"a b"})
            .u32("tokenizer.ggml.eos_token_id", 2);
        const auto ie = Tokenizer::fromGguf(*writeGguf("tiny-im-end.gguf", imEnd));
        QCOMPARE(ie->special().eos, (std::vector<int32_t>{2, 3}));
        QCOMPARE(idsText(ie->encode("ab<|im_end|>", false, true)), idsText({2, 3}));
        QCOMPARE(idsText(ie->encode("ab", false, false)), idsText({2})); // the EOS from the key stays a normal token
        QCOMPARE(QString::fromStdString(ie->decode({2, 3})), QString(""));

        auto withBos = tinyBytePair();
        withBos.u32("tokenizer.ggml.bos_token_id", 6).boolean("tokenizer.ggml.add_bos_token", true);
        const auto wb = Tokenizer::fromGguf(*writeGguf("tiny-bpe-bos.gguf", withBos));
        QCOMPARE(idsText(wb->encode("ab", true, false)), idsText({6, 3}));
    }

    void unsupportedModelsAndPreTokenizers() {
        for (const char* model : {"bert", "t5", "rwkv", "none"}) {
            GgufBuilder b;
            b.string("tokenizer.ggml.model", model).strings("tokenizer.ggml.tokens", {"a"});
            expectError(std::string("model-") + model + ".gguf", b,
                        {"tokenizer.ggml.model", std::string("'") + model + "'", "not supported"});
        }
        expectError("no-model.gguf", GgufBuilder().strings("tokenizer.ggml.tokens", {"a"}),
                    {"tokenizer.ggml.model", "missing"});
        expectError("unknown-pre.gguf", tinyBytePair("no-such-pre"), {"tokenizer.ggml.pre", "'no-such-pre'", "qwen2"});
        // Real llama.cpp files with a tokenizer that is not supported.
        const fs::path bert = vocabFile("ggml-vocab-bert-bge.gguf");
        if (fs::exists(bert)) {
            const auto file = GgufFile::open(bert);
            EXPECT_ERROR(Tokenizer::fromGguf(*file), bert.string(), "tokenizer.ggml.model", "'bert'");
        }
    }

    void malformedVocabularies() {
        GgufBuilder scores;
        scores.string("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"})
            .f32s("tokenizer.ggml.scores", {0, 0});
        expectError("scores-length.gguf", scores, {"tokenizer.ggml.scores", "2 scores for 3 tokens"});

        GgufBuilder types;
        types.string("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"})
            .i32s("tokenizer.ggml.token_type", {2, 3, 3, 1});
        expectError("types-length.gguf", types, {"tokenizer.ggml.token_type", "4 token types for 3 tokens"});

        GgufBuilder badType;
        badType.string("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"})
            .i32s("tokenizer.ggml.token_type", {2, 3, 9});
        expectError("bad-type.gguf", badType, {"tokenizer.ggml.token_type[2]", "unknown token type 9"});

        GgufBuilder badByte;
        badByte.string("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "x"})
            .i32s("tokenizer.ggml.token_type", {2, 3, 6});
        expectError("bad-byte.gguf", badByte, {"tokenizer.ggml.token_type[2]", "'x'", "<0xXX>"});

        auto bos = tinySentencePiece();
        bos.u32("tokenizer.ggml.bos_token_id", 99);
        expectError("bos-range.gguf", bos, {"tokenizer.ggml.bos_token_id", "99", "out of range"});
        auto eot = tinyBytePair();
        eot.u32("tokenizer.ggml.eot_token_id", 7);
        expectError("eot-range.gguf", eot, {"tokenizer.ggml.eot_token_id", "7", "out of range"});
        auto bosType = tinySentencePiece();
        bosType.string("tokenizer.ggml.bos_token_id", "1");
        expectError("bos-type.gguf", bosType, {"tokenizer.ggml.bos_token_id", "expected an integer"});
        auto addBos = tinyBytePair();
        addBos.boolean("tokenizer.ggml.add_bos_token", true);
        expectError("add-bos-without-bos.gguf", addBos, {"tokenizer.ggml.add_bos_token", "no BOS"});

        GgufBuilder duplicate;
        duplicate.string("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {"<unk>", "a", "a"});
        expectError("duplicate.gguf", duplicate, {"tokenizer.ggml.tokens[2]", "'a'", "already token 1"});

        GgufBuilder empty;
        empty.string("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {});
        expectError("empty.gguf", empty, {"tokenizer.ggml.tokens", "empty"});

        GgufBuilder notStrings;
        notStrings.string("tokenizer.ggml.model", "gpt2").i32s("tokenizer.ggml.tokens", {1, 2});
        expectError("tokens-type.gguf", notStrings, {"tokenizer.ggml.tokens", "expected an array of strings"});

        GgufBuilder longToken;
        longToken.string("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", {"<unk>", std::string(70000, 'x')});
        expectError("long-token.gguf", longToken, {"tokenizer.ggml.tokens[1]", "70000 bytes"});

        GgufBuilder noMerges;
        noMerges.string("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", {"a", "b"});
        expectError("no-merges.gguf", noMerges, {"tokenizer.ggml.merges", "missing"});

        for (const auto& [merge, problem] : std::vector<std::pair<std::string, std::string>>{
                 {"ab", "not two tokens"}, {"a ", "not two tokens"}, {"a c", "'c' is not in"}, {"b a", "'ba'"}}) {
            GgufBuilder b;
            b.string("tokenizer.ggml.model", "gpt2")
                .string("tokenizer.ggml.pre", "gpt-2")
                .strings("tokenizer.ggml.tokens", {"a", "b", "ab"})
                .strings("tokenizer.ggml.merges", {"a b", merge});
            expectError("merge-" + std::to_string(std::hash<std::string>{}(merge)) + ".gguf", b,
                        {"tokenizer.ggml.merges[1]", problem});
        }
    }
};

QTEST_GUILESS_MAIN(TestTokenizerGguf)
#include "test_tokenizer_gguf.moc"
