#pragma once
// Tokenizers: SentencePiece `tokenizer.model` (through libsentencepiece) and
// Hugging Face `tokenizer.json` BPE (byte-level and SentencePiece-style with
// byte fallback), with added/special tokens and BOS/EOS rules taken from
// `tokenizer_config.json`.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

class GgufFile;

struct SpecialTokens {
    std::optional<int32_t> bos;
    std::vector<int32_t> eos;       // every id that ends generation
    std::optional<int32_t> unk;
    std::optional<int32_t> pad;
    bool addBos = false;            // tokenizer_config.json add_bos_token (or the tokenizer.json post-processor)
    bool addEos = false;
    std::string bosText, eosText;   // piece strings, used by chat templates
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    // Loads the tokenizer of a model folder, or the vocabulary of a .gguf
    // file (fromGguf). In a folder it prefers tokenizer.json when
    // `preferJson` and it exists, else tokenizer.model; throws moe::Error
    // naming the folder when neither is there.
    static std::unique_ptr<Tokenizer> load(const std::filesystem::path& modelDir, bool preferJson = true);
    static std::unique_ptr<Tokenizer> loadSentencePiece(const std::filesystem::path& tokenizerModel,
                                                        const std::filesystem::path& tokenizerConfig = {});
    static std::unique_ptr<Tokenizer> loadHfJson(const std::filesystem::path& tokenizerJson,
                                                 const std::filesystem::path& tokenizerConfig = {});
    // The tokenizer in a GGUF file's metadata, read as llama.cpp reads it:
    // tokenizer.ggml.model "llama" (SentencePiece: tokens, scores, token
    // types, byte fallback) or "gpt2" (byte-level BPE with merges and the
    // split regexes of the tokenizer.ggml.pre name); special ids and
    // add_bos/add_eos from the tokenizer.ggml.* keys with llama.cpp's
    // defaults. Throws moe::Error naming the file and the key for other
    // models, unknown pre-tokenizers and malformed vocabularies.
    static std::unique_ptr<Tokenizer> fromGguf(const GgufFile& file);

    // Text to ids. `addSpecial` adds BOS/EOS as the tokenizer's config says.
    // Added/special tokens written literally in `text` are recognised when
    // `parseSpecial` is true (as for rendered chat templates).
    virtual std::vector<int32_t> encode(std::string_view text, bool addSpecial = true, bool parseSpecial = true) const = 0;
    // Ids to text; special tokens (BOS/EOS/...) are skipped when `skipSpecial`.
    virtual std::string decode(const std::vector<int32_t>& ids, bool skipSpecial = true) const = 0;
    // The vocabulary piece of one id as stored (for display and tests).
    virtual std::string piece(int32_t id) const = 0;
    virtual int32_t vocabSize() const = 0;
    virtual std::string kind() const = 0; // "sentencepiece", "bpe-byte-level", "bpe-sentencepiece"

    const SpecialTokens& special() const { return special_; }
    bool isEos(int32_t id) const;

protected:
    SpecialTokens special_;
};

// Turns a stream of ids into text pieces: each call returns only the new
// complete UTF-8 text since the last call, so a reply can be printed as it is
// generated without splitting multi-byte characters.
class StreamingDecoder {
public:
    explicit StreamingDecoder(const Tokenizer& tok) : tok_(tok) {}
    std::string push(int32_t id);
    std::string flush();
    void reset();

private:
    std::string emitReady(bool final);

    // Only a window of ids is decoded on each push: ids_[prefixStart_,
    // readStart_) were returned already and are decoded again as context
    // (so leading-space rules apply as in a full decode); later ids are new.
    const Tokenizer& tok_;
    std::vector<int32_t> ids_;
    size_t prefixStart_ = 0;
    size_t readStart_ = 0;
};

} // namespace moe
