// SentencePiece `tokenizer.model` through libsentencepiece, with added tokens
// and BOS/EOS rules from tokenizer_config.json (as transformers' slow
// LlamaTokenizer uses them).
#include "moe/error.h"
#include "moe/tokenizer.h"
#include "tokenizer_common.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <unordered_set>

namespace moe {

namespace fs = std::filesystem;
using namespace tokenizer_detail;

namespace {

class SentencePieceTokenizer final : public Tokenizer {
public:
    SentencePieceTokenizer(const fs::path& modelFile, const fs::path& configFile) {
        if (!fs::exists(modelFile)) throw Error(modelFile.string() + ": file not found");
        const auto status = processor_.Load(modelFile.string());
        if (!status.ok()) throw Error(modelFile.string() + ": not a SentencePiece model: " + status.ToString());

        modelSize_ = processor_.GetPieceSize();
        vocabSize_ = modelSize_;
        const TokenizerConfig config = readTokenizerConfig(configFile);
        for (const auto& token : config.addedTokens) {
            // Tokens added after training (e.g. a <pad> at 32000) get ids past the model's pieces.
            checkTokenId(token.id, int64_t(modelSize_) + int64_t(config.addedTokens.size()), configFile,
                         "added_tokens_decoder." + std::to_string(token.id));
            vocabSize_ = std::max(vocabSize_, token.id + 1);
            addedTokens_.add(token);
            if (token.special) specialIds_.insert(token.id);
        }
        // Control pieces (<s>, </s>) are never produced by SentencePiece from
        // text; like the Hugging Face tokenizers, recognise them when asked.
        for (int32_t id = 0; id < modelSize_; ++id) {
            if (processor_.IsControl(id) && !addedTokens_.findById(id)) {
                addedTokens_.add({id, processor_.IdToPiece(id), true, false, false});
                specialIds_.insert(id);
            }
        }

        special_.bos = resolve(config.bosText, processor_.bos_id(), configFile, "bos_token");
        special_.unk = resolve(config.unkText, processor_.unk_id(), configFile, "unk_token");
        special_.pad = resolve(config.padText, processor_.pad_id(), configFile, "pad_token");
        if (auto eos = resolve(config.eosText, processor_.eos_id(), configFile, "eos_token"))
            special_.eos.push_back(*eos);
        for (int32_t id : generationEosIds(modelFile.parent_path()))
            if (id >= 0 && id < vocabSize()) addUnique(special_.eos, id);
        // Llama's default (LlamaTokenizer.add_bos_token = True) when the config is silent.
        special_.addBos = config.addBos.value_or(true) && special_.bos.has_value();
        special_.addEos = config.addEos.value_or(false) && !special_.eos.empty();
        if (special_.bos) special_.bosText = piece(*special_.bos);
        if (!special_.eos.empty()) special_.eosText = piece(special_.eos.front());
        for (auto id : {special_.bos, special_.unk, special_.pad})
            if (id) specialIds_.insert(*id);
        for (int32_t id : special_.eos) specialIds_.insert(id);
    }

    // A model built in memory: the added tokens and special ids come decided.
    SentencePieceTokenizer(const std::string& serializedModel, const std::string& source,
                           const std::vector<AddedToken>& addedTokens, const SpecialTokens& special) {
        const auto status = processor_.LoadFromSerializedProto(serializedModel);
        if (!status.ok()) throw Error(source + ": SentencePiece refuses the vocabulary: " + status.ToString());
        modelSize_ = processor_.GetPieceSize();
        vocabSize_ = modelSize_;
        for (const auto& token : addedTokens) {
            vocabSize_ = std::max(vocabSize_, token.id + 1);
            addedTokens_.add(token);
            if (token.special) specialIds_.insert(token.id);
        }
        special_ = special;
        if (special_.bos) special_.bosText = piece(*special_.bos);
        if (!special_.eos.empty()) special_.eosText = piece(special_.eos.front());
        for (auto id : {special_.bos, special_.unk, special_.pad})
            if (id) specialIds_.insert(*id);
        for (int32_t id : special_.eos) specialIds_.insert(id);
    }

    std::vector<int32_t> encode(std::string_view text, bool addSpecial, bool parseSpecial) const override {
        std::vector<int32_t> ids;
        if (addSpecial && special_.addBos) ids.push_back(*special_.bos);
        for (const Segment& segment : addedTokens_.split(text, parseSpecial)) {
            if (segment.tokenId >= 0) {
                ids.push_back(segment.tokenId);
                continue;
            }
            std::vector<int> pieceIds;
            const auto status = processor_.Encode(segment.text, &pieceIds);
            if (!status.ok()) throw Error("SentencePiece encode failed: " + status.ToString());
            ids.insert(ids.end(), pieceIds.begin(), pieceIds.end());
        }
        if (addSpecial && special_.addEos) ids.push_back(special_.eos.front());
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids, bool skipSpecial) const override {
        // Runs of ordinary ids go through SentencePiece (byte fallback, the
        // dummy-prefix space); special ids are written as their text. As in
        // Hugging Face's fast tokenizer, only the very first run loses its
        // leading space.
        std::string text;
        std::vector<int> run;
        bool firstRun = true;
        auto flushRun = [&] {
            if (run.empty()) return;
            std::string decoded;
            const auto status = processor_.Decode(run, &decoded);
            if (!status.ok()) throw Error("SentencePiece decode failed: " + status.ToString());
            if (!firstRun && processor_.IdToPiece(run.front()).starts_with("\xE2\x96\x81")) text += ' ';
            text += decoded;
            run.clear();
            firstRun = false;
        };
        for (int32_t id : ids) {
            if (id < 0 || id >= vocabSize()) continue; // e.g. padded lm_head rows
            const AddedToken* added = addedTokens_.findById(id);
            if (added || specialIds_.contains(id)) {
                if (skipSpecial && specialIds_.contains(id)) continue;
                flushRun();
                text += added ? added->content : processor_.IdToPiece(id);
                firstRun = false;
                continue;
            }
            if (id < modelSize_) run.push_back(id);
        }
        flushRun();
        return text;
    }

    std::string piece(int32_t id) const override {
        if (id >= 0 && id < modelSize_) return processor_.IdToPiece(id);
        const AddedToken* added = addedTokens_.findById(id);
        return added ? added->content : std::string();
    }

    int32_t vocabSize() const override { return vocabSize_; }
    std::string kind() const override { return "sentencepiece"; }

private:
    // A config token string wins over the model's own id; a string the
    // vocabulary lacks is an error in the config.
    std::optional<int32_t> resolve(const std::optional<std::string>& text, int modelId, const fs::path& configFile,
                                   const char* field) const {
        if (text) {
            if (const AddedToken* added = findAdded(*text)) return added->id;
            const int id = processor_.PieceToId(*text);
            if (processor_.IdToPiece(id) != *text)
                throw Error(configFile.string() + ": " + field + " '" + *text + "' is not in the vocabulary");
            return id;
        }
        if (modelId >= 0 && modelId < modelSize_) return modelId;
        return std::nullopt;
    }

    const AddedToken* findAdded(const std::string& content) const {
        for (const auto& token : addedTokens_.tokens())
            if (token.content == content) return &token;
        return nullptr;
    }

    sentencepiece::SentencePieceProcessor processor_;
    int32_t modelSize_ = 0; // pieces in tokenizer.model
    int32_t vocabSize_ = 0; // plus added tokens past them
    AddedTokenMatcher addedTokens_;
    std::unordered_set<int32_t> specialIds_;
};

} // namespace

namespace tokenizer_detail {

std::unique_ptr<Tokenizer> makeSentencePieceTokenizer(const std::string& serializedModel, const std::string& source,
                                                      const std::vector<AddedToken>& addedTokens,
                                                      const SpecialTokens& special) {
    return std::make_unique<SentencePieceTokenizer>(serializedModel, source, addedTokens, special);
}

} // namespace tokenizer_detail

std::unique_ptr<Tokenizer> Tokenizer::loadSentencePiece(const fs::path& tokenizerModel,
                                                        const fs::path& tokenizerConfig) {
    return std::make_unique<SentencePieceTokenizer>(tokenizerModel, tokenizerConfig);
}

} // namespace moe
