#pragma once
// Pieces shared by the SentencePiece and tokenizer.json tokenizers: reading
// tokenizer_config.json, splitting text around added/special tokens, and
// UTF-8 helpers. Internal to the engine.
#include "moe/tokenizer.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moe::tokenizer_detail {

// A token matched literally in text before the model sees it (HF "added token").
struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool special = false; // skipped by decode(skipSpecial); not matched when parseSpecial is false
    bool lstrip = false;  // swallows whitespace on its left
    bool rstrip = false;  // swallows whitespace on its right
};

// What tokenizer_config.json says; every field is optional there.
struct TokenizerConfig {
    std::optional<bool> addBos, addEos;
    std::optional<std::string> bosText, eosText, unkText, padText;
    std::vector<AddedToken> addedTokens; // from added_tokens_decoder
    bool cleanUpTokenizationSpaces = false;
};

// Reads a JSON file; throws moe::Error naming the file when it is missing or malformed.
nlohmann::json readJsonFile(const std::filesystem::path& file);

// Empty path or missing file gives the defaults; a malformed one throws.
TokenizerConfig readTokenizerConfig(const std::filesystem::path& file);

// eos_token_id of config.json and generation_config.json next to a tokenizer
// (an int or a list there); missing files give nothing.
std::vector<int32_t> generationEosIds(const std::filesystem::path& modelDir);

// Token ids read from a file index the tokenizer's table of pieces, so each
// is checked where it is read: non-negative, and below `limit`, about the
// number of tokens the files list (vocabulary entries plus added tokens, and
// in tokenizer.json a few holes more). The table a hostile file can make us
// allocate is then bounded by its own size. Throws moe::Error "<file>: <field>: ...".
void checkTokenId(int64_t id, int64_t limit, const std::filesystem::path& file, const std::string& field);

// Adds `id` to `ids` unless it is already there.
void addUnique(std::vector<int32_t>& ids, int32_t id);

// Text between added tokens, or one added token.
struct Segment {
    std::string_view text;   // empty for a token
    int32_t tokenId = -1;    // -1 for text
    bool startsText = false; // the segment begins at byte 0 of the input
};

// Leftmost-longest literal matching of added tokens, as Hugging Face does.
class AddedTokenMatcher {
public:
    void add(const AddedToken& token);
    bool empty() const { return tokens_.empty(); }
    // Splits `text`; special tokens are only recognised when `includeSpecial`.
    std::vector<Segment> split(std::string_view text, bool includeSpecial) const;
    const std::vector<AddedToken>& tokens() const { return tokens_; }
    const AddedToken* findById(int32_t id) const;

private:
    void insertIntoBucket(size_t index);

    std::vector<AddedToken> tokens_;
    std::unordered_map<int32_t, size_t> indexById_;
    // Token indices by first byte, longest first, so the first hit is the longest.
    std::array<std::vector<size_t>, 256> byFirstByte_;
};

// Length of the valid UTF-8 sequence at text[pos], or 0 when it is not valid.
size_t validUtf8SequenceLength(std::string_view text, size_t pos);
// Replaces invalid UTF-8 with U+FFFD (one per maximal invalid subpart, like
// Rust's String::from_utf8_lossy, which Hugging Face uses when decoding).
std::string toValidUtf8(std::string_view bytes);
bool isValidUtf8(std::string_view text);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD"; // U+FFFD

// Hugging Face's clean_up_tokenization_spaces (" ." -> ".", " n't" -> "n't", ...).
std::string cleanUpTokenizationSpaces(std::string text);

// A byte-fallback piece "<0xNN>" as its byte value; -1 for any other piece.
int byteTokenValue(std::string_view token);

// Tokenizers built from a vocabulary in memory (a GGUF file's metadata)
// instead of files on disk. `source` names the origin in error messages; the
// special ids and BOS/EOS rules come decided in `special` (ids in range).

// A serialized SentencePiece ModelProto; `addedTokens` are matched literally
// before SentencePiece sees the text (special ones only when parseSpecial).
std::unique_ptr<Tokenizer> makeSentencePieceTokenizer(const std::string& serializedModel, const std::string& source,
                                                      const std::vector<AddedToken>& addedTokens,
                                                      const SpecialTokens& special);
// A tokenizer.json document (model, added_tokens, normalizer, pre_tokenizer,
// decoder; its post_processor is ignored in favour of `special`).
std::unique_ptr<Tokenizer> makeHfBpeTokenizer(const nlohmann::json& tokenizerJson, const std::string& source,
                                              const SpecialTokens& special, bool cleanUpSpaces);

} // namespace moe::tokenizer_detail
