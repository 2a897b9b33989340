// Tokenizer selection for a model folder, tokenizer_config.json, added-token
// matching, UTF-8 helpers and the streaming decoder.
#include "moe/tokenizer.h"

#include "json_input.h"
#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/gguf_model.h"
#include "tokenizer_common.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <fstream>
#include <sstream>

namespace moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace tokenizer_detail {

json readJsonFile(const fs::path& file) {
    const std::string text = readTextFile(file, kMaxLargeFileBytes);
    try {
        return parseJsonChecked(text, file);
    } catch (const json::parse_error& e) {
        throw Error(file.string() + ": malformed JSON: " + e.what());
    }
}

namespace {

// bos_token and friends are a string, null, or an AddedToken object {"content": ...}.
std::optional<std::string> tokenText(const json& config, const char* field, const fs::path& file) {
    auto it = config.find(field);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object()) {
        auto content = it->find("content");
        if (content != it->end() && content->is_string()) return content->get<std::string>();
    }
    throw Error(file.string() + ": field '" + field + "' must be a string or an object with 'content'");
}

std::optional<bool> optionalBool(const json& config, const char* field, const fs::path& file) {
    auto it = config.find(field);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) throw Error(file.string() + ": field '" + std::string(field) + "' must be true or false");
    return it->get<bool>();
}

bool boolOr(const json& object, const char* field, bool fallback) {
    auto it = object.find(field);
    return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Ids outside 0..INT32_MAX are not ids; they are skipped (as are ids past the
// vocabulary, by the callers).
void appendEosId(const json& value, std::vector<int32_t>& ids) {
    if (value.is_number_unsigned() ? value.get<uint64_t>() <= uint64_t(INT32_MAX)
                                   : value.is_number_integer() && value.get<int64_t>() >= 0 &&
                                         value.get<int64_t>() <= INT32_MAX)
        addUnique(ids, static_cast<int32_t>(value.get<int64_t>()));
}

void appendEosIds(const json& value, std::vector<int32_t>& ids) {
    if (value.is_array()) {
        for (const auto& v : value) appendEosId(v, ids);
    } else {
        appendEosId(value, ids);
    }
}

bool isAsciiSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool isContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Checks the UTF-8 sequence at `pos`: returns {length, valid}. When invalid,
// length is the maximal prefix of a valid sequence there (at least 1).
std::pair<size_t, bool> checkUtf8(std::string_view text, size_t pos) {
    const auto b0 = static_cast<unsigned char>(text[pos]);
    if (b0 < 0x80) return {1, true};
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0)
            lo = 0xA0; // no overlong forms
        else if (b0 == 0xED)
            hi = 0x9F; // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F; // nothing above U+10FFFF
    } else {
        return {1, false};
    }
    size_t len = 1;
    for (size_t k = 0; k < need; ++k) {
        if (pos + len >= text.size()) return {len, false};
        const auto b = static_cast<unsigned char>(text[pos + len]);
        const bool ok = k == 0 ? (b >= lo && b <= hi) : isContinuation(b);
        if (!ok) return {len, false};
        ++len;
    }
    return {len, true};
}

void replaceAll(std::string& text, std::string_view from, std::string_view to) {
    size_t pos = 0;
    while ((pos = text.find(from, pos)) != std::string::npos) {
        text.replace(pos, from.size(), to);
        pos += to.size();
    }
}

} // namespace

TokenizerConfig readTokenizerConfig(const fs::path& file) {
    TokenizerConfig config;
    if (file.empty() || !fs::exists(file)) return config;
    const json root = readJsonFile(file);
    if (!root.is_object()) throw Error(file.string() + ": expected a JSON object");
    config.addBos = optionalBool(root, "add_bos_token", file);
    config.addEos = optionalBool(root, "add_eos_token", file);
    config.bosText = tokenText(root, "bos_token", file);
    config.eosText = tokenText(root, "eos_token", file);
    config.unkText = tokenText(root, "unk_token", file);
    config.padText = tokenText(root, "pad_token", file);
    config.cleanUpTokenizationSpaces = boolOr(root, "clean_up_tokenization_spaces", false);
    if (auto decoder = root.find("added_tokens_decoder"); decoder != root.end() && !decoder->is_null()) {
        if (!decoder->is_object()) throw Error(file.string() + ": field 'added_tokens_decoder' must be an object");
        for (const auto& [key, entry] : decoder->items()) {
            AddedToken token;
            int64_t id = -1;
            const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
            if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id > INT32_MAX)
                throw Error(file.string() + ": added_tokens_decoder key '" + key +
                            "' is not a token id (0 to " + std::to_string(INT32_MAX) + ")");
            token.id = static_cast<int32_t>(id);
            if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string())
                throw Error(file.string() + ": added_tokens_decoder." + key + ".content must be a string");
            token.content = entry["content"].get<std::string>();
            token.special = boolOr(entry, "special", false);
            token.lstrip = boolOr(entry, "lstrip", false);
            token.rstrip = boolOr(entry, "rstrip", false);
            config.addedTokens.push_back(std::move(token));
        }
    }
    return config;
}

std::vector<int32_t> generationEosIds(const fs::path& modelDir) {
    std::vector<int32_t> ids;
    for (const char* name : {"generation_config.json", "config.json"}) {
        const fs::path file = modelDir / name;
        if (!fs::exists(file)) continue;
        // These files belong to the model, not the tokenizer: the model loader
        // reports their errors, so a broken one only adds nothing here.
        try {
            const json root = readJsonFile(file);
            if (root.is_object() && root.contains("eos_token_id")) appendEosIds(root["eos_token_id"], ids);
        } catch (const Error&) {}
    }
    return ids;
}

void checkTokenId(int64_t id, int64_t limit, const fs::path& file, const std::string& field) {
    if (id < 0) throw Error(file.string() + ": " + field + ": token id " + std::to_string(id) + " is negative");
    if (id >= limit)
        throw Error(file.string() + ": " + field + ": token id " + std::to_string(id) +
                    " is past the vocabulary (ids must be below " + std::to_string(limit) + ")");
}

void addUnique(std::vector<int32_t>& ids, int32_t id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

void AddedTokenMatcher::add(const AddedToken& token) {
    if (token.content.empty() || token.id < 0) return;
    if (auto it = indexById_.find(token.id); it != indexById_.end()) {
        // tokenizer.json and tokenizer_config.json may both list it; the later wins.
        AddedToken& existing = tokens_[it->second];
        if (existing.content == token.content) {
            existing = token;
            return;
        }
        auto& oldBucket = byFirstByte_[static_cast<unsigned char>(existing.content[0])];
        oldBucket.erase(std::find(oldBucket.begin(), oldBucket.end(), it->second));
        existing = token;
        insertIntoBucket(it->second);
        return;
    }
    tokens_.push_back(token);
    indexById_[token.id] = tokens_.size() - 1;
    insertIntoBucket(tokens_.size() - 1);
}

void AddedTokenMatcher::insertIntoBucket(size_t index) {
    auto& bucket = byFirstByte_[static_cast<unsigned char>(tokens_[index].content[0])];
    const size_t length = tokens_[index].content.size();
    auto position = std::find_if(bucket.begin(), bucket.end(),
                                 [&](size_t other) { return tokens_[other].content.size() < length; });
    bucket.insert(position, index);
}

const AddedToken* AddedTokenMatcher::findById(int32_t id) const {
    auto it = indexById_.find(id);
    return it == indexById_.end() ? nullptr : &tokens_[it->second];
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text, bool includeSpecial) const {
    std::vector<Segment> segments;
    size_t textStart = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        const AddedToken* match = nullptr;
        for (size_t index : byFirstByte_[static_cast<unsigned char>(text[pos])]) {
            const AddedToken& token = tokens_[index];
            if (token.special && !includeSpecial) continue;
            if (text.substr(pos).starts_with(token.content)) {
                match = &token;
                break;
            }
        }
        if (!match) {
            ++pos;
            continue;
        }
        size_t matchStart = pos;
        size_t matchEnd = pos + match->content.size();
        if (match->lstrip)
            while (matchStart > textStart && isAsciiSpace(text[matchStart - 1])) --matchStart;
        if (match->rstrip)
            while (matchEnd < text.size() && isAsciiSpace(text[matchEnd])) ++matchEnd;
        if (matchStart > textStart)
            segments.push_back({text.substr(textStart, matchStart - textStart), -1, textStart == 0});
        segments.push_back({{}, match->id, false});
        textStart = pos = matchEnd;
    }
    if (textStart < text.size()) segments.push_back({text.substr(textStart), -1, textStart == 0});
    return segments;
}

size_t validUtf8SequenceLength(std::string_view text, size_t pos) {
    auto [length, valid] = checkUtf8(text, pos);
    return valid ? length : 0;
}

std::string toValidUtf8(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    size_t pos = 0;
    while (pos < bytes.size()) {
        auto [length, valid] = checkUtf8(bytes, pos);
        if (valid)
            out.append(bytes.substr(pos, length));
        else
            out.append(kReplacementChar);
        pos += length;
    }
    return out;
}

bool isValidUtf8(std::string_view text) {
    for (size_t pos = 0; pos < text.size();) {
        auto [length, valid] = checkUtf8(text, pos);
        if (!valid) return false;
        pos += length;
    }
    return true;
}

std::string cleanUpTokenizationSpaces(std::string text) {
    static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (const auto& [from, to] : kRules) replaceAll(text, from, to);
    return text;
}

// "<0x41>" -> 0x41; -1 for anything else.
int byteTokenValue(std::string_view token) {
    if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(token[3]), lo = hex(token[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

} // namespace tokenizer_detail

std::unique_ptr<Tokenizer> Tokenizer::load(const fs::path& modelDir, bool preferJson) {
    if (isGgufPath(modelDir)) return fromGguf(*GgufFile::open(modelDir));
    if (!fs::is_directory(modelDir)) throw Error(modelDir.string() + ": tokenizer folder does not exist");
    const fs::path jsonFile = modelDir / "tokenizer.json";
    const fs::path modelFile = modelDir / "tokenizer.model";
    const fs::path configFile = modelDir / "tokenizer_config.json";
    const fs::path config = fs::exists(configFile) ? configFile : fs::path();
    const bool haveJson = fs::exists(jsonFile);
    const bool haveModel = fs::exists(modelFile);
    if (haveJson && (preferJson || !haveModel)) return loadHfJson(jsonFile, config);
    if (haveModel) return loadSentencePiece(modelFile, config);
    throw Error(modelDir.string() + ": no tokenizer.json or tokenizer.model in this folder");
}

bool Tokenizer::isEos(int32_t id) const {
    return std::find(special_.eos.begin(), special_.eos.end(), id) != special_.eos.end();
}

std::string StreamingDecoder::push(int32_t id) {
    ids_.push_back(id);
    return emitReady(false);
}

std::string StreamingDecoder::flush() { return emitReady(true); }

void StreamingDecoder::reset() {
    ids_.clear();
    prefixStart_ = readStart_ = 0;
}

std::string StreamingDecoder::emitReady(bool final) {
    using tokenizer_detail::kReplacementChar;
    const std::vector<int32_t> context(ids_.begin() + static_cast<std::ptrdiff_t>(prefixStart_),
                                       ids_.begin() + static_cast<std::ptrdiff_t>(readStart_));
    const std::vector<int32_t> window(ids_.begin() + static_cast<std::ptrdiff_t>(prefixStart_), ids_.end());
    const std::string contextText = tok_.decode(context);
    const std::string windowText = tok_.decode(window);
    // A trailing U+FFFD is usually a character whose remaining bytes come
    // with the next token: hold it back until then (or until flush).
    if (windowText.size() <= contextText.size()) return {};
    if (!final && windowText.ends_with(kReplacementChar)) return {};
    std::string fresh = windowText.substr(contextText.size());
    prefixStart_ = readStart_;
    readStart_ = ids_.size();
    // Ids before the context window are never decoded again.
    if (prefixStart_ > 256) {
        ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefixStart_));
        readStart_ -= prefixStart_;
        prefixStart_ = 0;
    }
    return fresh;
}

} // namespace moe
