// The tokenizer of a GGUF file, built from its metadata the way llama.cpp
// reads it (src/llama-vocab.cpp): `tokenizer.ggml.model` "llama" is a
// SentencePiece BPE vocabulary with scores and token types, handed to
// libsentencepiece as a ModelProto; "gpt2" is a byte-level BPE with
// `tokenizer.ggml.merges`, run by the tokenizer.json BPE with the split
// regexes llama.cpp uses for the `tokenizer.ggml.pre` name. Every defect is an
// error naming the file and the key.
#include "moe/error.h"
#include "moe/gguf.h"
#include "moe/tokenizer.h"
#include "gguf_vocab.h"
#include "tokenizer_common.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

namespace moe {

using json = nlohmann::json;
using namespace tokenizer_detail;

namespace {

// Limits far above any real vocabulary, so that a damaged file fails here
// instead of asking for gigabytes.
constexpr size_t kMaxTokens = size_t(1) << 22;
constexpr size_t kMaxMerges = size_t(1) << 23;
constexpr size_t kMaxTokenBytes = size_t(1) << 16;

// llama.cpp's token types (the same numbers as SentencePiece's piece types).
enum TokenType : int64_t {
    kUndefined = 0,
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
};

// Reads the tokenizer keys of one file; every error names the file and key.
struct Metadata {
    const GgufFile& file;

    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw Error(file.path().string() + ": " + key + ": " + what);
    }

    // An array of `what` elements, or nullptr when absent (an error when `required`).
    const GgufValue* array(const std::string& key, bool required, bool (*elementOk)(GgufType), const char* what) const {
        const GgufValue* v = file.find(key);
        if (!v) {
            if (required) fail(key, "missing");
            return nullptr;
        }
        if (v->type != GgufType::Array || !elementOk(v->elementType))
            fail(key, std::string("a ") + toString(v->type) +
                          (v->type == GgufType::Array ? std::string(" of ") + toString(v->elementType) : "") +
                          ", expected an array of " + what);
        return v;
    }

    // A token id key: absent, or an integer naming one of the `n` tokens.
    std::optional<int32_t> tokenId(const std::string& key, size_t n) const {
        const auto id = file.getInteger(key);
        if (!id) return std::nullopt;
        if (*id < 0 || uint64_t(*id) >= n)
            fail(key, "token id " + std::to_string(*id) + " is out of range (the vocabulary has " + std::to_string(n) +
                          " tokens)");
        return int32_t(*id);
    }
};

bool isStringType(GgufType t) { return t == GgufType::String; }
bool isIntegerType(GgufType t) {
    return t == GgufType::U8 || t == GgufType::I8 || t == GgufType::U16 || t == GgufType::I16 || t == GgufType::U32 ||
           t == GgufType::I32 || t == GgufType::U64 || t == GgufType::I64;
}
bool isNumberType(GgufType t) { return isIntegerType(t) || t == GgufType::F32 || t == GgufType::F64; }

// The vocabulary arrays, checked against each other.
struct Vocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;  // 0 when the file has none
    std::vector<int64_t> types; // kNormal when the file has none
    std::unordered_map<std::string, int32_t> ids;
};

Vocab readVocab(const Metadata& meta) {
    Vocab vocab;
    const GgufValue& tokens = *meta.array("tokenizer.ggml.tokens", true, isStringType, "strings");
    const size_t n = tokens.strings.size();
    if (n == 0) meta.fail("tokenizer.ggml.tokens", "the vocabulary is empty");
    if (n > kMaxTokens)
        meta.fail("tokenizer.ggml.tokens", std::to_string(n) + " tokens, more than the " + std::to_string(kMaxTokens) +
                                               " a vocabulary may have");
    vocab.tokens = tokens.strings;
    vocab.ids.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        std::string& token = vocab.tokens[i];
        const std::string where = "tokenizer.ggml.tokens[" + std::to_string(i) + "]";
        if (token.size() > kMaxTokenBytes)
            meta.fail(where, "a token of " + std::to_string(token.size()) + " bytes (at most " +
                                 std::to_string(kMaxTokenBytes) + ")");
        if (token.empty()) token = "[EMPTY_" + std::to_string(i) + "]"; // as llama.cpp names them
        const auto [it, added] = vocab.ids.emplace(token, int32_t(i));
        if (!added) meta.fail(where, "'" + token + "' is already token " + std::to_string(it->second));
    }

    vocab.scores.assign(n, 0.0f);
    if (const GgufValue* scores = meta.array("tokenizer.ggml.scores", false, isNumberType, "numbers")) {
        if (scores->size() != n)
            meta.fail("tokenizer.ggml.scores", std::to_string(scores->size()) + " scores for " + std::to_string(n) +
                                                   " tokens in tokenizer.ggml.tokens");
        for (size_t i = 0; i < n; ++i)
            vocab.scores[i] = scores->reals.empty() ? float(scores->ints[i]) : float(scores->reals[i]);
    }

    vocab.types.assign(n, kNormal);
    if (const GgufValue* types = meta.array("tokenizer.ggml.token_type", false, isIntegerType, "integers")) {
        if (types->size() != n)
            meta.fail("tokenizer.ggml.token_type", std::to_string(types->size()) + " token types for " +
                                                       std::to_string(n) + " tokens in tokenizer.ggml.tokens");
        for (size_t i = 0; i < n; ++i) {
            const int64_t type = types->ints[i];
            const std::string where = "tokenizer.ggml.token_type[" + std::to_string(i) + "]";
            if (type < kUndefined || type > kByte) meta.fail(where, "unknown token type " + std::to_string(type));
            if (type == kByte && byteTokenValue(vocab.tokens[i]) < 0)
                meta.fail(where, "token '" + vocab.tokens[i] + "' is marked as a byte but is not written <0xXX>");
            vocab.types[i] = type == kUndefined ? kNormal : type;
        }
    }
    return vocab;
}

// --- Special tokens ---------------------------------------------------------

// Texts by which llama.cpp recognises end-of-turn tokens when the file does
// not name them (tokenizer.ggml.eot_token_id), and the wider set of texts it
// treats as ending generation.
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>",         "<|endoftext|>",
    "<|end_of_text|>", "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>", "<end_of_utterance>",
};
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",      "</s>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>",
};

struct Specials {
    SpecialTokens tokens;
    std::unordered_set<int32_t> control; // matched only with parseSpecial, skipped by decode(skipSpecial)
};

// The special ids of a vocabulary: the file's keys over llama.cpp's defaults
// for the model type, EOS joined by EOT/EOM and the end-of-generation texts.
Specials readSpecials(const Metadata& meta, const Vocab& vocab, std::optional<int32_t> defaultBos,
                      std::optional<int32_t> defaultEos, std::optional<int32_t> defaultUnk, bool defaultAddBos) {
    const size_t n = vocab.tokens.size();
    auto inRange = [n](std::optional<int32_t> id) { return id && size_t(*id) < n ? id : std::nullopt; };
    auto idOr = [&](const char* key, std::optional<int32_t> fallback) {
        const auto id = meta.tokenId(key, n);
        return id ? id : inRange(fallback);
    };
    Specials s;
    for (size_t i = 0; i < n; ++i)
        if (vocab.types[i] == kControl || vocab.types[i] == kUnknown) s.control.insert(int32_t(i));

    SpecialTokens& t = s.tokens;
    t.bos = idOr("tokenizer.ggml.bos_token_id", defaultBos);
    t.unk = idOr("tokenizer.ggml.unknown_token_id", defaultUnk);
    t.pad = idOr("tokenizer.ggml.padding_token_id", std::nullopt);
    const auto eos = idOr("tokenizer.ggml.eos_token_id", defaultEos);
    auto eot = meta.tokenId("tokenizer.ggml.eot_token_id", n);
    auto eom = meta.tokenId("tokenizer.ggml.eom_token_id", n);
    auto findText = [&](std::string_view text) -> std::optional<int32_t> {
        const auto it = vocab.ids.find(std::string(text));
        return it == vocab.ids.end() ? std::nullopt : std::optional<int32_t>(it->second);
    };
    // Tokens found by their text become control tokens, as llama.cpp makes them.
    std::vector<int32_t> byText;
    if (!eot)
        for (std::string_view text : kEotTexts)
            if ((eot = findText(text))) {
                byText.push_back(*eot);
                break;
            }
    if (!eom)
        if ((eom = findText("<|eom_id|>"))) byText.push_back(*eom);
    for (std::string_view text : kEndOfGenerationTexts)
        if (auto id = findText(text)) byText.push_back(*id);

    for (auto id : {eos, eot, eom})
        if (id) addUnique(t.eos, *id);
    for (int32_t id : byText) {
        addUnique(t.eos, id);
        s.control.insert(id);
    }

    t.addBos = meta.file.getBool("tokenizer.ggml.add_bos_token").value_or(defaultAddBos);
    t.addEos = meta.file.getBool("tokenizer.ggml.add_eos_token").value_or(false);
    if (t.addBos && !t.bos)
        meta.fail("tokenizer.ggml.add_bos_token", "BOS is to be added but the file names no BOS token "
                                                  "(tokenizer.ggml.bos_token_id)");
    if (t.addEos && !eos)
        meta.fail("tokenizer.ggml.add_eos_token", "EOS is to be added but the file names no EOS token "
                                                  "(tokenizer.ggml.eos_token_id)");
    return s;
}

// Control, unknown and user-defined tokens are matched in the text before
// the model sees it, as llama.cpp's special-token partition does: control
// and unknown ones only when parsing specials, user-defined ones always.
std::vector<AddedToken> addedTokens(const Vocab& vocab, const Specials& specials) {
    std::vector<AddedToken> added;
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
        const bool control = specials.control.contains(int32_t(i));
        if (control || vocab.types[i] == kUserDefined)
            added.push_back({int32_t(i), vocab.tokens[i], control, false, false});
    }
    return added;
}

// --- SentencePiece (tokenizer.ggml.model = "llama") -------------------------

// The protobuf wire format of the few ModelProto fields SentencePiece needs.
struct ProtoWriter {
    std::string bytes;
    void varint(uint64_t v) {
        while (v >= 0x80) {
            bytes += char((v & 0x7F) | 0x80);
            v >>= 7;
        }
        bytes += char(v);
    }
    void key(int field, int wireType) { varint(uint64_t(field) << 3 | uint64_t(wireType)); }
    void integer(int field, uint64_t v) {
        key(field, 0);
        varint(v);
    }
    void text(int field, std::string_view s) {
        key(field, 2);
        varint(s.size());
        bytes += s;
    }
    void floating(int field, float f) {
        key(field, 5);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        for (int i = 0; i < 4; ++i) bytes += char((bits >> (8 * i)) & 0xFF); // little-endian, as protobuf wants
    }
};

std::unique_ptr<Tokenizer> sentencePieceFromGguf(const Metadata& meta) {
    Vocab vocab = readVocab(meta);
    // A file without token types still has its byte pieces found by name, as llama.cpp does.
    if (!meta.file.find("tokenizer.ggml.token_type"))
        for (size_t i = 0; i < vocab.tokens.size(); ++i)
            if (byteTokenValue(vocab.tokens[i]) >= 0) vocab.types[i] = kByte;
    // llama.cpp's defaults for SentencePiece vocabularies: <unk> 0, <s> 1, </s> 2, BOS added.
    const Specials specials = readSpecials(meta, vocab, 1, 2, 0, true);
    const bool addSpacePrefix = meta.file.getBool("tokenizer.ggml.add_space_prefix").value_or(true);

    // SentencePiece wants exactly one unknown piece: the file's unk token.
    // Other pieces of the unknown type are never produced from text, so they
    // become control pieces (matched only as specials, like llama.cpp).
    const int32_t unk = specials.tokens.unk.value_or(-1);
    if (unk < 0) meta.fail("tokenizer.ggml.unknown_token_id", "a SentencePiece vocabulary needs an unknown token");
    ProtoWriter model;
    bool hasBytes = false;
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
        int64_t type = vocab.types[i];
        if (int32_t(i) == unk)
            type = kUnknown;
        else if (specials.control.contains(int32_t(i)))
            type = kControl;
        hasBytes = hasBytes || type == kByte;
        ProtoWriter piece;
        piece.text(1, vocab.tokens[i]);
        piece.floating(2, vocab.scores[i]);
        piece.integer(3, uint64_t(type));
        model.text(1, piece.bytes); // ModelProto.pieces
    }
    ProtoWriter trainer;
    trainer.integer(3, 2);                       // model_type = BPE: merges by score, as llama.cpp's SPM tokenizer
    trainer.integer(35, hasBytes ? 1 : 0);       // byte_fallback: unknown characters become <0xXX> pieces
    trainer.text(45, vocab.tokens[size_t(unk)]); // unk_piece
    model.text(2, trainer.bytes);
    ProtoWriter normalizer;
    normalizer.text(1, "identity");
    normalizer.integer(3, addSpacePrefix ? 1 : 0); // add_dummy_prefix (each text run, as llama.cpp)
    normalizer.integer(4, 0);                      // remove_extra_whitespaces: llama.cpp's SPM never folds spaces
    normalizer.integer(5, 1);                      // escape_whitespaces: " " -> "▁"
    model.text(3, normalizer.bytes);

    return makeSentencePieceTokenizer(model.bytes, meta.file.path().string() + ": tokenizer.ggml.tokens",
                                      addedTokens(vocab, specials), specials.tokens);
}

// --- Byte-level BPE (tokenizer.ggml.model = "gpt2") -------------------------

// How llama.cpp pre-tokenizes for a `tokenizer.ggml.pre` name: text is split
// by each regex in turn (matches and the text between them both kept), then
// byte-level encoded.
struct PreTokenizerSpec {
    std::vector<std::string_view> names;
    std::vector<std::string> regexes;
    bool ignoreMerges = false; // a word that is a token is taken whole
    bool addBos = false;       // the default of tokenizer.ggml.add_bos_token
    bool cleanSpaces = true;   // clean_up_tokenization_spaces when decoding
};

const std::string kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const std::string kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::vector<PreTokenizerSpec>& preTokenizerSpecs() {
    static const std::vector<PreTokenizerSpec> specs = {
        {{"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
        {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
         {kLlama3Regex},
         true,
         true},
        {{"dbrx", "smaug-bpe"}, {kLlama3Regex}},
        {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "gigachat", "a.x-4.0", "mellum"}, {kGpt2Regex}},
        {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"},
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
         false,
         false,
         false},
        {{"stablelm2"},
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
        {{"qwen35"},
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
         false,
         false,
         false},
        {{"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"}, {R"(\p{N})", kGpt2Regex}},
        {{"command-r", "smollm"}, {R"(\p{N})", kGpt2Regex}, false, false, false},
        {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Regex, "[0-9][0-9][0-9]"}},
        {{"deepseek-llm"},
         {"[\r\n]",
          R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)",
          R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)", R"(\s+$)", "[一-龥ࠀ-一가-퟿]+", R"(\p{N}+)"},
         false,
         false,
         false},
        {{"deepseek-coder"},
         {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[一-龥ࠀ-一가-퟿]+", R"(\p{N})"},
         false,
         false,
         false},
        {{"chatglm-bpe", "glm4"},
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
         false,
         false,
         true},
    };
    return specs;
}

std::string supportedPreNames() {
    std::string names;
    for (const auto& spec : preTokenizerSpecs())
        for (std::string_view name : spec.names) names += (names.empty() ? "" : ", ") + std::string(name);
    return names;
}

std::unique_ptr<Tokenizer> bytePairFromGguf(const Metadata& meta) {
    // A file without the key is pre-tokenized as llama.cpp's "default", as llama.cpp does (with a warning).
    const std::string pre = meta.file.getString("tokenizer.ggml.pre").value_or("default");
    const PreTokenizerSpec* spec = nullptr;
    for (const auto& candidate : preTokenizerSpecs())
        if (std::find(candidate.names.begin(), candidate.names.end(), pre) != candidate.names.end()) spec = &candidate;
    if (!spec)
        meta.fail("tokenizer.ggml.pre",
                  "unknown or unsupported pre-tokenizer '" + pre + "' (supported: " + supportedPreNames() + ")");

    const Vocab vocab = readVocab(meta);
    const GgufValue& merges = *meta.array("tokenizer.ggml.merges", true, isStringType, "strings");
    if (merges.strings.size() > kMaxMerges)
        meta.fail("tokenizer.ggml.merges", std::to_string(merges.strings.size()) + " merges, more than the " +
                                               std::to_string(kMaxMerges) + " allowed");
    const Specials specials = readSpecials(meta, vocab, std::nullopt, std::nullopt, std::nullopt, spec->addBos);

    // A tokenizer.json document for the BPE tokenizer, every token in its vocabulary.
    json vocabJson = json::object();
    for (size_t i = 0; i < vocab.tokens.size(); ++i) vocabJson[vocab.tokens[i]] = int32_t(i);
    json mergesJson = json::array();
    for (size_t rank = 0; rank < merges.strings.size(); ++rank) {
        const std::string& merge = merges.strings[rank];
        const std::string where = "tokenizer.ggml.merges[" + std::to_string(rank) + "]";
        // Split at the first space after the first character, as llama.cpp does.
        const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
        if (space == std::string::npos || space + 1 >= merge.size())
            meta.fail(where, "'" + merge + "' is not two tokens separated by a space");
        std::string left = merge.substr(0, space), right = merge.substr(space + 1);
        for (const std::string* part : {&left, &right})
            if (!vocab.ids.contains(*part)) meta.fail(where, "'" + *part + "' is not in tokenizer.ggml.tokens");
        if (!vocab.ids.contains(left + right))
            meta.fail(where, "the merged token '" + left + right + "' is not in tokenizer.ggml.tokens");
        mergesJson.push_back(json::array({std::move(left), std::move(right)}));
    }
    json added = json::array();
    for (const AddedToken& token : addedTokens(vocab, specials))
        added.push_back({{"id", token.id}, {"content", token.content}, {"special", token.special}});
    json splits = json::array();
    for (const std::string& regex : spec->regexes)
        splits.push_back({{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}});
    splits.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
    const json document = {
        {"model",
         {{"type", "BPE"},
          {"vocab", std::move(vocabJson)},
          {"merges", std::move(mergesJson)},
          {"ignore_merges", spec->ignoreMerges}}},
        {"added_tokens", std::move(added)},
        {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", std::move(splits)}}},
        {"decoder", {{"type", "ByteLevel"}}},
    };
    return makeHfBpeTokenizer(document, meta.file.path().string() + ": tokenizer.ggml", specials.tokens,
                              spec->cleanSpaces);
}

} // namespace

std::string ggufPreTokenizerName(const std::vector<std::string>& regexes, bool ignoreMerges) {
    // Hugging Face writes the contractions case-insensitively; llama.cpp spells the cases out.
    static const std::string kCaseless = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    static const std::string kSpelled = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    std::vector<std::string> normalised = regexes;
    for (std::string& r : normalised)
        for (size_t at = r.find(kCaseless); at != std::string::npos; at = r.find(kCaseless, at + kSpelled.size()))
            r.replace(at, kCaseless.size(), kSpelled);
    for (const auto& spec : preTokenizerSpecs())
        if (spec.regexes == normalised && spec.ignoreMerges == ignoreMerges) return std::string(spec.names.front());
    return {};
}

std::unique_ptr<Tokenizer> Tokenizer::fromGguf(const GgufFile& file) {
    const Metadata meta{file};
    const auto model = file.getString("tokenizer.ggml.model");
    if (!model) meta.fail("tokenizer.ggml.model", "missing (the file has no tokenizer)");
    if (*model == "llama") return sentencePieceFromGguf(meta);
    if (*model == "gpt2") return bytePairFromGguf(meta);
    meta.fail("tokenizer.ggml.model", "'" + *model + "' tokenizers are not supported (only 'llama' and 'gpt2')");
}

} // namespace moe
