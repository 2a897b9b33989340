// The tokenizer metadata of a GGUF export. The token lists, types and scores
// follow llama.cpp's converter (convert_hf_to_gguf.py: _create_vocab_sentencepiece,
// get_vocab_base) so that llama.cpp tokenizes the export as it would its own
// conversion; special ids and add_bos/add_eos are the ones our tokenizer
// reads from the folder.
#include "gguf_vocab.h"

#include "json_input.h"
#include "moe/atomic_file.h"
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/gguf.h"
#include "moe/tokenizer.h"

#include <sentencepiece_processor.h>

#include <map>

namespace moe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// llama.cpp's token types (llama_token_type).
enum TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

bool looksSpecial(const std::string& t) {
    auto wrapped = [&](const std::string& open, const std::string& close) {
        return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
               t.compare(t.size() - close.size(), close.size(), close) == 0;
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
           wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>");
}

// "\xe2\x96\x81" (SentencePiece's space) written as a space, as the converter
// pre-normalises user-defined tokens.
std::string spaced(std::string t) {
    for (size_t at = t.find("\xe2\x96\x81"); at != std::string::npos; at = t.find("\xe2\x96\x81", at + 1))
        t.replace(at, 3, " ");
    return t;
}

json readJson(const fs::path& file) { return parseJsonChecked(readTextFile(file), file); }

void sentencePieceVocab(GgufWriter& w, const ModelConfig& c) {
    const fs::path file = c.dir / "tokenizer.model";
    sentencepiece::SentencePieceProcessor sp;
    if (const auto status = sp.LoadFromSerializedProto(readTextFile(file)); !status.ok())
        throw Error(file.string() + ": not a SentencePiece model: " + status.ToString());
    const int pieces = sp.GetPieceSize();
    const int n = c.vocabSize > 0 ? c.vocabSize : pieces;
    std::vector<std::string> tokens(static_cast<size_t>(n));
    std::vector<float> scores(size_t(n), -10000.0f);
    std::vector<int32_t> types(size_t(n), Unused);
    for (int i = 0; i < n; ++i) tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
    for (int i = 0; i < std::min(pieces, n); ++i) {
        tokens[size_t(i)] = sp.IdToPiece(i);
        scores[size_t(i)] = sp.GetScore(i);
        types[size_t(i)] = sp.IsUnknown(i) ? Unknown : sp.IsControl(i) ? Control : sp.IsUnused(i) ? Unused
                           : sp.IsByte(i)  ? Byte
                                           : Normal;
    }
    auto inRange = [&](const json& id) { return id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < n; };
    if (const fs::path added = c.dir / "added_tokens.json"; fs::is_regular_file(added)) {
        const json j = readJson(added);
        if (j.is_object())
            for (const auto& [text, id] : j.items()) {
                if (!inRange(id)) continue;
                const size_t i = id.get<size_t>();
                tokens[i] = text;
                scores[i] = -1000.0f;
                types[i] = UserDefined;
            }
    }
    if (const fs::path config = c.dir / "tokenizer_config.json"; fs::is_regular_file(config)) {
        const json j = readJson(config);
        if (j.is_object() && j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object())
            for (const auto& [key, data] : j["added_tokens_decoder"].items()) {
                if (!data.is_object() || !data.contains("content") || !data["content"].is_string()) continue;
                size_t used = 0;
                long long id = -1;
                try {
                    id = std::stoll(key, &used);
                } catch (const std::exception&) {
                }
                if (used != key.size() || id < 0 || id >= n) continue;
                std::string text = data["content"].get<std::string>();
                const bool special = data.value("special", false) || looksSpecial(text);
                types[size_t(id)] = special ? Control : UserDefined;
                if (!special) text = spaced(text);
                scores[size_t(id)] = -1000.0f;
                tokens[size_t(id)] = std::move(text);
            }
    }
    w.setString("tokenizer.ggml.model", "llama");
    w.setString("tokenizer.ggml.pre", "default");
    w.setStrings("tokenizer.ggml.tokens", tokens);
    w.setF32s("tokenizer.ggml.scores", scores);
    w.setI32s("tokenizer.ggml.token_type", types);
}

// Byte-level BPE from tokenizer.json; false when the file is no such tokenizer.
bool bytePairVocab(GgufWriter& w, const ModelConfig& c) {
    const fs::path file = c.dir / "tokenizer.json";
    if (!fs::is_regular_file(file)) return false;
    const json j = readJson(file);
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object() || j["model"].value("type", "") != "BPE")
        return false;
    // The split regexes, and whether a ByteLevel step makes it byte-level.
    std::vector<std::string> regexes;
    bool byteLevel = false;
    const auto step = [&](const json& p) {
        if (!p.is_object()) return;
        const std::string type = p.value("type", "");
        if (type == "Split" && p.contains("pattern") && p["pattern"].is_object() && p["pattern"].contains("Regex") &&
            p["pattern"]["Regex"].is_string())
            regexes.push_back(p["pattern"]["Regex"].get<std::string>());
        else if (type == "ByteLevel") {
            byteLevel = true;
            if (p.value("use_regex", true)) regexes.push_back(
                R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))");
        }
    };
    if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object()) {
        const json& pre = j["pre_tokenizer"];
        if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array())
            for (const json& p : pre["pretokenizers"]) step(p);
        else
            step(pre);
    }
    if (!byteLevel) return false;
    const json& model = j["model"];
    const std::string pre = ggufPreTokenizerName(regexes, model.value("ignore_merges", false));
    if (pre.empty())
        throw Error(file.string() + ": pre_tokenizer: a split regex llama.cpp has no tokenizer.ggml.pre name for, "
                    "so llama.cpp could not tokenize the export as this tokenizer does");

    std::map<int64_t, std::pair<std::string, int32_t>> byId; // id -> token, type
    if (!model.contains("vocab") || !model["vocab"].is_object()) throw Error(file.string() + ": model.vocab: missing");
    for (const auto& [token, id] : model["vocab"].items())
        if (id.is_number_integer()) byId[id.get<int64_t>()] = {token, Normal};
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
        for (const json& t : j["added_tokens"]) {
            if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
                !t["content"].is_string())
                continue;
            const std::string text = t["content"].get<std::string>();
            const bool special = t.value("special", false) || looksSpecial(text);
            byId[t["id"].get<int64_t>()] = {special ? text : spaced(text), special ? Control : UserDefined};
        }
    const int64_t n = std::max<int64_t>(c.vocabSize, byId.empty() ? 0 : byId.rbegin()->first + 1);
    if (!byId.empty() && (byId.begin()->first < 0 || n > (int64_t(1) << 24)))
        throw Error(file.string() + ": model.vocab: token ids outside 0.." + std::to_string((int64_t(1) << 24) - 1));
    std::vector<std::string> tokens(static_cast<size_t>(n));
    std::vector<int32_t> types(size_t(n), Unused);
    for (int64_t i = 0; i < n; ++i) {
        if (auto it = byId.find(i); it != byId.end()) {
            tokens[size_t(i)] = it->second.first;
            types[size_t(i)] = it->second.second;
        } else {
            tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
        }
    }
    std::vector<std::string> merges;
    if (model.contains("merges") && model["merges"].is_array())
        for (const json& m : model["merges"]) {
            if (m.is_string()) merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
                merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else
                throw Error(file.string() + ": model.merges[" + std::to_string(merges.size()) + "]: not a pair of tokens");
        }
    w.setString("tokenizer.ggml.model", "gpt2");
    w.setString("tokenizer.ggml.pre", pre);
    w.setStrings("tokenizer.ggml.tokens", tokens);
    w.setI32s("tokenizer.ggml.token_type", types);
    w.setStrings("tokenizer.ggml.merges", merges);
    return true;
}

} // namespace

GgufVocabFacts addGgufTokenizer(GgufWriter& w, const ModelConfig& c) {
    GgufVocabFacts facts;
    const auto tokenizer = Tokenizer::load(c.dir);
    for (int32_t id : tokenizer->special().eos) facts.stopTexts.push_back(tokenizer->piece(id));
    if (c.fromGguf) {
        const auto file = GgufFile::open(c.dir);
        for (const auto& [key, value] : file->metadata())
            if (key.rfind("tokenizer.", 0) == 0) w.setValue(key, value);
        facts.model = file->getString("tokenizer.ggml.model").value_or("");
        facts.chatTemplate = file->getString("tokenizer.chat_template").value_or("");
        return facts;
    }
    // The converter takes tokenizer.model for SentencePiece families and
    // tokenizer.json for byte-level BPE ones.
    if (!bytePairVocab(w, c)) {
        if (!fs::is_regular_file(c.dir / "tokenizer.model"))
            throw Error(c.dir.string() + ": neither a byte-level BPE tokenizer.json nor a SentencePiece tokenizer.model, "
                        "the two tokenizers GGUF export writes");
        sentencePieceVocab(w, c);
    }
    const SpecialTokens& sp = tokenizer->special();
    if (sp.bos) w.setU32("tokenizer.ggml.bos_token_id", uint32_t(*sp.bos));
    if (!sp.eos.empty()) w.setU32("tokenizer.ggml.eos_token_id", uint32_t(sp.eos.front()));
    if (sp.unk) w.setU32("tokenizer.ggml.unknown_token_id", uint32_t(*sp.unk));
    if (sp.pad) w.setU32("tokenizer.ggml.padding_token_id", uint32_t(*sp.pad));
    w.setBool("tokenizer.ggml.add_bos_token", sp.addBos);
    w.setBool("tokenizer.ggml.add_eos_token", sp.addEos);
    facts.model = w.has("tokenizer.ggml.merges") ? "gpt2" : "llama";
    facts.chatTemplate = ChatTemplate::fromModelDir(c.dir).source();
    if (!facts.chatTemplate.empty()) w.setString("tokenizer.chat_template", facts.chatTemplate);
    return facts;
}

} // namespace moe
