// Hugging Face `tokenizer.json` with a BPE model: byte-level vocabularies
// (GPT-2, Qwen2/3, Llama 3) and SentencePiece-style ones with byte fallback
// (Llama 2, Mistral). The normalizer, pre-tokenizer and decoder pipelines of
// the file are built into chains of small steps that follow the semantics of
// the `tokenizers` library; unsupported components are reported, not ignored.
#include "moe/error.h"
#include "moe/tokenizer.h"
#include "tokenizer_common.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

namespace moe {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace tokenizer_detail;

namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81"; // U+2581, SentencePiece's space

// Next code point of valid UTF-8 text: its value and byte length.
std::pair<int32_t, size_t> nextCodepoint(std::string_view text, size_t pos) {
    utf8proc_int32_t cp = 0;
    const auto length = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                                         static_cast<utf8proc_ssize_t>(text.size() - pos), &cp);
    if (length <= 0) return {-1, 1};
    return {cp, static_cast<size_t>(length)};
}

std::string encodeCodepoint(int32_t cp) {
    utf8proc_uint8_t buffer[4];
    const auto length = utf8proc_encode_char(cp, buffer);
    return std::string(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

void replaceAll(std::string& text, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    size_t pos = 0;
    while ((pos = text.find(from, pos)) != std::string::npos) {
        text.replace(pos, from.size(), to);
        pos += to.size();
    }
}

// GPT-2's reversible map from bytes to printable characters, so that any byte
// string becomes a "word" of visible characters (space -> "Ġ", "\n" -> "Ċ").
struct ByteLevelTable {
    std::array<std::string, 256> byteToText;
    std::unordered_map<int32_t, uint8_t> codepointToByte;
};

const ByteLevelTable& byteLevelTable() {
    static const ByteLevelTable table = [] {
        ByteLevelTable t;
        auto printable = [](int b) {
            return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        };
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            const int32_t cp = printable(b) ? b : next++;
            t.byteToText[static_cast<size_t>(b)] = encodeCodepoint(cp);
            t.codepointToByte[cp] = static_cast<uint8_t>(b);
        }
        return t;
    }();
    return table;
}

// A compiled PCRE2 pattern (Unicode mode). Patterns in tokenizer.json are
// written for Oniguruma; the ones in use (\p{L}, \s, (?i:...), (?!\S)) mean
// the same in PCRE2.
class Regex {
public:
    Regex(const std::string& pattern, bool literal, const std::string& where) {
        int errorCode = 0;
        PCRE2_SIZE errorOffset = 0;
        // PCRE2_LITERAL refuses PCRE2_UCP (which only matters for classes anyway).
        const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                         &errorCode, &errorOffset, nullptr);
        if (!code) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(errorCode, message, sizeof message);
            throw Error(where + ": regex '" + pattern + "' does not compile at offset " + std::to_string(errorOffset) +
                        ": " + reinterpret_cast<const char*>(message));
        }
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); // falls back to the interpreter when JIT is unavailable
        code_ = std::shared_ptr<pcre2_code>(code, pcre2_code_free);
    }

    // Non-overlapping, non-empty matches as [start, end) byte ranges. The
    // subject must be valid UTF-8 (encode() guarantees it).
    std::vector<std::pair<size_t, size_t>> findAll(std::string_view text) const {
        std::vector<std::pair<size_t, size_t>> matches;
        std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
            pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
        size_t pos = 0;
        while (pos <= text.size()) {
            const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                                       PCRE2_NO_UTF_CHECK, data.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) throw Error("tokenizer regex match failed (PCRE2 error " + std::to_string(rc) + ")");
            const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
            const size_t start = ovector[0], end = ovector[1];
            if (end > start) {
                matches.emplace_back(start, end);
                pos = end;
            } else { // empty match: step over one character
                if (start >= text.size()) break;
                pos = start + nextCodepoint(text, start).second;
            }
        }
        return matches;
    }

private:
    std::shared_ptr<pcre2_code> code_;
};

// A piece of text on its way through the pre-tokenizers.
struct PreToken {
    std::string text;
    bool startsText = false; // begins at byte 0 of the whole input (Metaspace "first")
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits a piece at regex matches the way tokenizers' NormalizedString::split does.
void splitPiece(const PreToken& piece, const Regex& regex, SplitBehavior behavior, bool invert,
                std::vector<PreToken>& out) {
    struct Span {
        size_t start, end;
        bool isMatch;
    };
    std::vector<Span> spans;
    size_t last = 0;
    for (auto [start, end] : regex.findAll(piece.text)) {
        if (start > last) spans.push_back({last, start, invert});
        spans.push_back({start, end, !invert});
        last = end;
    }
    if (last < piece.text.size()) spans.push_back({last, piece.text.size(), invert});

    std::vector<std::pair<size_t, size_t>> kept;
    bool previousMatch = false;
    switch (behavior) {
    case SplitBehavior::Removed:
        for (const Span& s : spans)
            if (!s.isMatch) kept.emplace_back(s.start, s.end);
        break;
    case SplitBehavior::Isolated:
        for (const Span& s : spans) kept.emplace_back(s.start, s.end);
        break;
    case SplitBehavior::MergedWithPrevious:
        for (const Span& s : spans) {
            if (s.isMatch && !previousMatch && !kept.empty())
                kept.back().second = s.end;
            else
                kept.emplace_back(s.start, s.end);
            previousMatch = s.isMatch;
        }
        break;
    case SplitBehavior::MergedWithNext:
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
            if (it->isMatch && !previousMatch && !kept.empty())
                kept.back().first = it->start;
            else
                kept.emplace_back(it->start, it->end);
            previousMatch = it->isMatch;
        }
        std::reverse(kept.begin(), kept.end());
        break;
    case SplitBehavior::Contiguous:
        for (size_t i = 0; i < spans.size(); ++i) {
            if (i > 0 && spans[i].isMatch == previousMatch)
                kept.back().second = spans[i].end;
            else
                kept.emplace_back(spans[i].start, spans[i].end);
            previousMatch = spans[i].isMatch;
        }
        break;
    }
    for (auto [start, end] : kept)
        out.push_back({piece.text.substr(start, end - start), piece.startsText && start == 0});
}

using Normalizer = std::function<void(std::string&)>;
using PreTokenizer = std::function<void(std::vector<PreToken>&)>;
using Decoder = std::function<void(std::vector<std::string>&)>;

// A JSON integer as int64 for range checks (unsigned values past INT64_MAX saturate).
int64_t jsonInteger(const json& v) {
    return v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
}

// Reading helpers that report the file and the JSON path of a bad field.

struct JsonContext {
    const fs::path& file;

    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        throw Error(file.string() + ": " + where + ": " + what);
    }
    std::string string(const json& object, const char* key, const std::string& where) const {
        auto it = object.find(key);
        if (it == object.end() || !it->is_string()) fail(where + "." + key, "expected a string");
        return it->get<std::string>();
    }
    std::string stringOr(const json& object, const char* key, const std::string& fallback,
                         const std::string& where) const {
        auto it = object.find(key);
        if (it == object.end() || it->is_null()) return fallback;
        if (!it->is_string()) fail(where + "." + key, "expected a string");
        return it->get<std::string>();
    }
    bool boolOr(const json& object, const char* key, bool fallback, const std::string& where) const {
        auto it = object.find(key);
        if (it == object.end() || it->is_null()) return fallback;
        if (!it->is_boolean()) fail(where + "." + key, "expected true or false");
        return it->get<bool>();
    }
    const json& array(const json& object, const char* key, const std::string& where) const {
        auto it = object.find(key);
        if (it == object.end() || !it->is_array()) fail(where + "." + key, "expected an array");
        return *it;
    }
    std::string type(const json& object, const std::string& where) const {
        if (!object.is_object()) fail(where, "expected an object");
        return string(object, "type", where);
    }
    // {"String": "x"} or {"Regex": "x"} -> a Regex (literal for String).
    Regex pattern(const json& object, const std::string& where) const {
        auto it = object.find("pattern");
        if (it == object.end() || !it->is_object()) fail(where + ".pattern", "expected {\"String\"|\"Regex\": ...}");
        if (it->contains("String") && (*it)["String"].is_string())
            return Regex((*it)["String"].get<std::string>(), true, file.string() + ": " + where);
        if (it->contains("Regex") && (*it)["Regex"].is_string())
            return Regex((*it)["Regex"].get<std::string>(), false, file.string() + ": " + where);
        fail(where + ".pattern", "expected {\"String\"|\"Regex\": ...}");
    }
};

std::string unicodeNormalize(const std::string& text, utf8proc_option_t options) {
    if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
        return text; // ASCII is invariant under every normal form
    utf8proc_uint8_t* result = nullptr;
    const auto length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                     static_cast<utf8proc_ssize_t>(text.size()), &result, options);
    if (length < 0) return text;
    std::string out(reinterpret_cast<const char*>(result), static_cast<size_t>(length));
    std::free(result);
    return out;
}

std::string replaceMatches(const std::string& text, const Regex& regex, const std::string& content) {
    std::string out;
    size_t last = 0;
    for (auto [start, end] : regex.findAll(text)) {
        out.append(text, last, start - last);
        out += content;
        last = end;
    }
    out.append(text, last, std::string::npos);
    return out;
}

Normalizer buildNormalizer(const json& node, const JsonContext& ctx, const std::string& where) {
    const std::string type = ctx.type(node, where);
    auto unicode = [](utf8proc_option_t options) -> Normalizer {
        return [options](std::string& s) { s = unicodeNormalize(s, options); };
    };
    if (type == "Sequence") {
        std::vector<Normalizer> steps;
        const json& list = ctx.array(node, "normalizers", where);
        for (size_t i = 0; i < list.size(); ++i)
            steps.push_back(buildNormalizer(list[i], ctx, where + ".normalizers[" + std::to_string(i) + "]"));
        return [steps](std::string& s) {
            for (const auto& step : steps) step(s);
        };
    }
    if (type == "NFC") return unicode(utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (type == "NFD") return unicode(utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
    if (type == "NFKC") return unicode(utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
    if (type == "NFKD") return unicode(utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
    if (type == "Prepend") {
        const std::string prefix = ctx.string(node, "prepend", where);
        return [prefix](std::string& s) {
            if (!s.empty()) s.insert(0, prefix);
        };
    }
    if (type == "Replace") {
        const std::string content = ctx.string(node, "content", where);
        const json& pattern = node.at("pattern");
        if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
            const std::string from = pattern["String"].get<std::string>();
            return [from, content](std::string& s) { replaceAll(s, from, content); };
        }
        auto regex = std::make_shared<Regex>(ctx.pattern(node, where));
        return [regex, content](std::string& s) { s = replaceMatches(s, *regex, content); };
    }
    if (type == "Lowercase") {
        return [](std::string& s) {
            std::string out;
            out.reserve(s.size());
            for (size_t pos = 0; pos < s.size();) {
                auto [cp, length] = nextCodepoint(s, pos);
                out += encodeCodepoint(utf8proc_tolower(cp));
                pos += length;
            }
            s = std::move(out);
        };
    }
    if (type == "Strip") {
        const bool left = ctx.boolOr(node, "strip_left", true, where);
        const bool right = ctx.boolOr(node, "strip_right", true, where);
        return [left, right](std::string& s) {
            const char* spaces = " \t\n\r\v\f";
            if (right) s.erase(s.find_last_not_of(spaces) + 1);
            if (left) s.erase(0, std::min(s.size(), s.find_first_not_of(spaces)));
        };
    }
    ctx.fail(where + ".type", "normalizer '" + type + "' is not supported");
}

SplitBehavior parseBehavior(const std::string& name, const JsonContext& ctx, const std::string& where) {
    if (name == "Removed") return SplitBehavior::Removed;
    if (name == "Isolated") return SplitBehavior::Isolated;
    if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (name == "Contiguous") return SplitBehavior::Contiguous;
    ctx.fail(where + ".behavior", "unknown split behavior '" + name + "'");
}

PreTokenizer regexSplitter(std::shared_ptr<Regex> regex, SplitBehavior behavior, bool invert) {
    return [regex, behavior, invert](std::vector<PreToken>& pieces) {
        std::vector<PreToken> out;
        out.reserve(pieces.size());
        for (const PreToken& piece : pieces) splitPiece(piece, *regex, behavior, invert, out);
        pieces = std::move(out);
    };
}

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Metaspace's prepend_scheme, also spelled as the older add_prefix_space.
std::string prependScheme(const json& node, const JsonContext& ctx, const std::string& where) {
    if (node.contains("prepend_scheme") && !node["prepend_scheme"].is_null())
        return ctx.string(node, "prepend_scheme", where);
    return ctx.boolOr(node, "add_prefix_space", true, where) ? "always" : "never";
}

PreTokenizer buildPreTokenizer(const json& node, const JsonContext& ctx, const std::string& where, bool& byteLevel) {
    const std::string type = ctx.type(node, where);
    if (type == "Sequence") {
        std::vector<PreTokenizer> steps;
        const json& list = ctx.array(node, "pretokenizers", where);
        for (size_t i = 0; i < list.size(); ++i)
            steps.push_back(
                buildPreTokenizer(list[i], ctx, where + ".pretokenizers[" + std::to_string(i) + "]", byteLevel));
        return [steps](std::vector<PreToken>& pieces) {
            for (const auto& step : steps) step(pieces);
        };
    }
    if (type == "Split") {
        auto regex = std::make_shared<Regex>(ctx.pattern(node, where));
        const auto behavior = parseBehavior(ctx.string(node, "behavior", where), ctx, where);
        return regexSplitter(regex, behavior, ctx.boolOr(node, "invert", false, where));
    }
    if (type == "ByteLevel") {
        byteLevel = true;
        const bool addPrefixSpace = ctx.boolOr(node, "add_prefix_space", true, where);
        std::shared_ptr<Regex> regex;
        if (ctx.boolOr(node, "use_regex", true, where))
            regex = std::make_shared<Regex>(kGpt2Pattern, false, ctx.file.string() + ": " + where);
        return [addPrefixSpace, regex](std::vector<PreToken>& pieces) {
            if (addPrefixSpace)
                for (PreToken& piece : pieces)
                    if (!piece.text.starts_with(' ')) piece.text.insert(0, " ");
            if (regex) regexSplitter(regex, SplitBehavior::Isolated, false)(pieces);
            const auto& table = byteLevelTable();
            for (PreToken& piece : pieces) {
                std::string mapped;
                mapped.reserve(piece.text.size() * 2);
                for (char c : piece.text) mapped += table.byteToText[static_cast<unsigned char>(c)];
                piece.text = std::move(mapped);
            }
        };
    }
    if (type == "Metaspace") {
        const std::string replacement = ctx.stringOr(node, "replacement", std::string(kMetaspace), where);
        const std::string scheme = prependScheme(node, ctx, where);
        if (scheme != "always" && scheme != "first" && scheme != "never")
            ctx.fail(where + ".prepend_scheme", "unknown scheme '" + scheme + "'");
        const bool split = ctx.boolOr(node, "split", true, where);
        auto splitter = std::make_shared<Regex>(replacement, true, ctx.file.string() + ": " + where);
        return [replacement, scheme, split, splitter](std::vector<PreToken>& pieces) {
            for (PreToken& piece : pieces) {
                replaceAll(piece.text, " ", replacement);
                const bool prepend = scheme == "always" || (scheme == "first" && piece.startsText);
                if (prepend && !piece.text.starts_with(replacement)) piece.text.insert(0, replacement);
            }
            if (split) regexSplitter(splitter, SplitBehavior::MergedWithNext, false)(pieces);
        };
    }
    if (type == "Digits") {
        const bool individual = ctx.boolOr(node, "individual_digits", false, where);
        auto regex = std::make_shared<Regex>(individual ? "[0-9]" : "[0-9]+", false, ctx.file.string() + ": " + where);
        return regexSplitter(regex, SplitBehavior::Isolated, false);
    }
    if (type == "WhitespaceSplit") {
        auto regex = std::make_shared<Regex>(R"(\s+)", false, ctx.file.string() + ": " + where);
        return regexSplitter(regex, SplitBehavior::Removed, false);
    }
    if (type == "Whitespace") {
        auto regex = std::make_shared<Regex>(R"(\w+|[^\w\s]+)", false, ctx.file.string() + ": " + where);
        return regexSplitter(regex, SplitBehavior::Removed, true);
    }
    if (type == "Punctuation") {
        auto regex = std::make_shared<Regex>(R"([\p{P}!-/:-@\[-`{-~])", false, ctx.file.string() + ": " + where);
        return regexSplitter(regex, parseBehavior(ctx.stringOr(node, "behavior", "Isolated", where), ctx, where),
                             false);
    }
    ctx.fail(where + ".type", "pre-tokenizer '" + type + "' is not supported");
}

Decoder buildDecoder(const json& node, const JsonContext& ctx, const std::string& where, bool& byteLevel) {
    const std::string type = ctx.type(node, where);
    if (type == "Sequence") {
        std::vector<Decoder> steps;
        const json& list = ctx.array(node, "decoders", where);
        for (size_t i = 0; i < list.size(); ++i)
            steps.push_back(buildDecoder(list[i], ctx, where + ".decoders[" + std::to_string(i) + "]", byteLevel));
        return [steps](std::vector<std::string>& tokens) {
            for (const auto& step : steps) step(tokens);
        };
    }
    if (type == "ByteLevel") {
        byteLevel = true;
        return [](std::vector<std::string>& tokens) {
            // Per token: map characters back to bytes, or keep the token's own
            // UTF-8 when it holds a character outside the table (added tokens).
            const auto& table = byteLevelTable();
            std::string bytes;
            for (const std::string& token : tokens) {
                std::string mapped;
                bool allMapped = true;
                for (size_t pos = 0; pos < token.size() && allMapped;) {
                    auto [cp, length] = nextCodepoint(token, pos);
                    auto it = table.codepointToByte.find(cp);
                    if (it == table.codepointToByte.end())
                        allMapped = false;
                    else
                        mapped += static_cast<char>(it->second);
                    pos += length;
                }
                bytes += allMapped ? mapped : token;
            }
            tokens.assign(1, toValidUtf8(bytes));
        };
    }
    if (type == "Replace") {
        const std::string content = ctx.string(node, "content", where);
        auto regex = std::make_shared<Regex>(ctx.pattern(node, where));
        return [regex, content](std::vector<std::string>& tokens) {
            for (std::string& token : tokens) token = replaceMatches(token, *regex, content);
        };
    }
    if (type == "ByteFallback") {
        return [](std::vector<std::string>& tokens) {
            std::vector<std::string> out;
            std::string pendingBytes;
            auto flushBytes = [&] {
                if (pendingBytes.empty()) return;
                if (isValidUtf8(pendingBytes)) {
                    out.push_back(pendingBytes);
                } else { // as tokenizers does: one U+FFFD per byte
                    std::string replacement;
                    for (size_t i = 0; i < pendingBytes.size(); ++i) replacement += kReplacementChar;
                    out.push_back(replacement);
                }
                pendingBytes.clear();
            };
            for (std::string& token : tokens) {
                const int byte = byteTokenValue(token);
                if (byte >= 0) {
                    pendingBytes += static_cast<char>(byte);
                } else {
                    flushBytes();
                    out.push_back(std::move(token));
                }
            }
            flushBytes();
            tokens = std::move(out);
        };
    }
    if (type == "Fuse") {
        return [](std::vector<std::string>& tokens) {
            std::string joined;
            for (const auto& token : tokens) joined += token;
            tokens.assign(1, std::move(joined));
        };
    }
    if (type == "Strip") {
        const std::string content = ctx.string(node, "content", where);
        const auto start = node.value("start", 0), stop = node.value("stop", 0);
        return [content, start, stop](std::vector<std::string>& tokens) {
            for (std::string& token : tokens) {
                for (int i = 0; i < start && !content.empty() && token.starts_with(content); ++i)
                    token.erase(0, content.size());
                for (int i = 0; i < stop && !content.empty() && token.ends_with(content); ++i)
                    token.erase(token.size() - content.size());
            }
        };
    }
    if (type == "Metaspace") {
        const std::string replacement = ctx.stringOr(node, "replacement", std::string(kMetaspace), where);
        const bool stripFirstSpace = prependScheme(node, ctx, where) != "never";
        return [replacement, stripFirstSpace](std::vector<std::string>& tokens) {
            for (size_t i = 0; i < tokens.size(); ++i) {
                replaceAll(tokens[i], replacement, " ");
                if (i == 0 && stripFirstSpace && tokens[i].starts_with(' ')) tokens[i].erase(0, 1);
            }
        };
    }
    ctx.fail(where + ".type", "decoder '" + type + "' is not supported");
}

class HfBpeTokenizer final : public Tokenizer {
public:
    HfBpeTokenizer(const fs::path& file, const fs::path& configFile) {
        try {
            loadFiles(file, configFile);
        } catch (const json::exception& e) { // a field of the wrong JSON type somewhere
            throw Error(file.string() + ": unexpected content: " + e.what());
        }
    }

    // A document built in memory, its special ids and BOS/EOS rules decided.
    HfBpeTokenizer(const json& root, const fs::path& source, const SpecialTokens& special, bool cleanUpSpaces) {
        try {
            loadModel(root, JsonContext{source});
        } catch (const json::exception& e) {
            throw Error(source.string() + ": unexpected content: " + e.what());
        }
        cleanUpSpaces_ = cleanUpSpaces;
        special_ = special;
        if (special_.addBos && special_.bos) prefixIds_ = {*special_.bos};
        if (special_.addEos && !special_.eos.empty()) suffixIds_ = {special_.eos.front()};
        special_.addBos = !prefixIds_.empty();
        special_.addEos = !suffixIds_.empty();
        if (special_.bos) special_.bosText = piece(*special_.bos);
        if (!special_.eos.empty()) special_.eosText = piece(special_.eos.front());
        for (auto id : {special_.bos, special_.unk, special_.pad})
            if (id) specialIds_.insert(*id);
        for (int32_t id : special_.eos) specialIds_.insert(id);
    }

private:
    void loadFiles(const fs::path& file, const fs::path& configFile) {
        const json root = readJsonFile(file);
        const JsonContext ctx{file};
        loadModel(root, ctx);

        std::vector<int32_t> templatePrefix, templateSuffix;
        if (auto p = root.find("post_processor"); p != root.end() && !p->is_null())
            readPostProcessor(*p, ctx, "post_processor", templatePrefix, templateSuffix);

        applyConfig(readTokenizerConfig(configFile), configFile, templatePrefix, templateSuffix);
        for (int32_t id : generationEosIds(file.parent_path()))
            if (id >= 0 && id < vocabSize()) addUnique(special_.eos, id);
    }

    // The model, added tokens and pipelines of a tokenizer.json document.
    void loadModel(const json& root, const JsonContext& ctx) {
        if (!root.is_object()) ctx.fail("(root)", "expected a JSON object");
        auto model = root.find("model");
        if (model == root.end() || !model->is_object()) ctx.fail("model", "missing or not an object");
        const std::string modelType = ctx.stringOr(*model, "type", "BPE", "model");
        if (modelType != "BPE") ctx.fail("model.type", "'" + modelType + "' models are not supported (only BPE)");

        {
            const auto vocab = model->find("vocab");
            const auto added = root.find("added_tokens");
            const int64_t entries = int64_t(vocab != model->end() ? vocab->size() : 0) +
                                    int64_t(added != root.end() && added->is_array() ? added->size() : 0);
            // Ids may leave holes (o200k puts <|endofprompt|> at 200018 among
            // 200002 entries; Phi-4-mini's added tokens likewise), but only a
            // few: an eighth more than the entries (at least 1024), so that
            // a stray huge id cannot size the table of pieces.
            idLimit_ = entries + std::max<int64_t>(1024, entries / 8);
        }
        loadVocab(*model, ctx);
        loadAddedTokens(root, ctx);
        loadMerges(*model, ctx);
        byteFallback_ = ctx.boolOr(*model, "byte_fallback", false, "model");
        fuseUnk_ = ctx.boolOr(*model, "fuse_unk", false, "model");
        ignoreMerges_ = ctx.boolOr(*model, "ignore_merges", false, "model");
        continuingPrefix_ = ctx.stringOr(*model, "continuing_subword_prefix", "", "model");
        endOfWordSuffix_ = ctx.stringOr(*model, "end_of_word_suffix", "", "model");
        if (auto unk = ctx.stringOr(*model, "unk_token", "", "model"); !unk.empty()) {
            auto it = pieceToId_.find(unk);
            if (it == pieceToId_.end()) ctx.fail("model.unk_token", "'" + unk + "' is not in the vocabulary");
            unkId_ = it->second;
        }
        if (byteFallback_)
            for (int b = 0; b < 256; ++b) {
                char name[8];
                std::snprintf(name, sizeof name, "<0x%02X>", b);
                auto it = pieceToId_.find(name);
                byteIds_[static_cast<size_t>(b)] = it == pieceToId_.end() ? -1 : it->second;
            }

        bool byteLevel = false;
        if (auto n = root.find("normalizer"); n != root.end() && !n->is_null())
            normalizer_ = buildNormalizer(*n, ctx, "normalizer");
        if (auto p = root.find("pre_tokenizer"); p != root.end() && !p->is_null())
            preTokenizer_ = buildPreTokenizer(*p, ctx, "pre_tokenizer", byteLevel);
        if (auto d = root.find("decoder"); d != root.end() && !d->is_null())
            decoder_ = buildDecoder(*d, ctx, "decoder", byteLevel);
        byteLevel_ = byteLevel;
    }

public:
    std::vector<int32_t> encode(std::string_view text, bool addSpecial, bool parseSpecial) const override {
        // Hugging Face only ever sees valid UTF-8 (Python str); make ours so too.
        std::string validText;
        if (!isValidUtf8(text)) {
            validText = toValidUtf8(text);
            text = validText;
        }
        std::vector<int32_t> ids;
        if (addSpecial) ids = prefixIds_;
        for (const Segment& segment : addedTokens_.split(text, parseSpecial)) {
            if (segment.tokenId >= 0) {
                ids.push_back(segment.tokenId);
                continue;
            }
            std::string normalized(segment.text);
            if (normalizer_) normalizer_(normalized);
            std::vector<PreToken> pieces{{std::move(normalized), segment.startsText}};
            if (preTokenizer_) preTokenizer_(pieces);
            for (const PreToken& piece : pieces) encodeWord(piece.text, ids);
        }
        if (addSpecial) ids.insert(ids.end(), suffixIds_.begin(), suffixIds_.end());
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids, bool skipSpecial) const override {
        std::vector<std::string> tokens;
        tokens.reserve(ids.size());
        for (int32_t id : ids) {
            if (id < 0 || id >= vocabSize() || idToPiece_[static_cast<size_t>(id)].empty()) continue;
            if (skipSpecial && specialIds_.contains(id)) continue;
            tokens.push_back(idToPiece_[static_cast<size_t>(id)]);
        }
        std::string text;
        if (decoder_) {
            decoder_(tokens);
            for (const auto& token : tokens) text += token;
        } else { // tokenizers joins with spaces when the file has no decoder
            for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
        }
        if (cleanUpSpaces_) text = cleanUpTokenizationSpaces(std::move(text));
        return toValidUtf8(text);
    }

    std::string piece(int32_t id) const override {
        if (id < 0 || id >= vocabSize()) return {};
        return idToPiece_[static_cast<size_t>(id)];
    }

    int32_t vocabSize() const override { return static_cast<int32_t>(idToPiece_.size()); }
    std::string kind() const override { return byteLevel_ ? "bpe-byte-level" : "bpe-sentencepiece"; }

private:
    struct Merge {
        int32_t rank;
        int32_t result;
    };

    static uint64_t pairKey(int32_t left, int32_t right) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
    }

    // Model pieces take part in BPE; added tokens are only matched literally
    // before it, so they go to a separate map.
    void setPiece(int32_t id, const std::string& piece, bool modelPiece) {
        if (static_cast<size_t>(id) >= idToPiece_.size()) idToPiece_.resize(static_cast<size_t>(id) + 1);
        idToPiece_[static_cast<size_t>(id)] = piece;
        (modelPiece ? pieceToId_ : addedPieceToId_)[piece] = id;
    }

    void loadVocab(const json& model, const JsonContext& ctx) {
        auto vocab = model.find("vocab");
        if (vocab == model.end() || !vocab->is_object()) ctx.fail("model.vocab", "missing or not an object");
        pieceToId_.reserve(vocab->size());
        for (const auto& [piece, id] : vocab->items()) {
            if (!id.is_number_integer() || (!id.is_number_unsigned() && id.get<int64_t>() < 0))
                ctx.fail("model.vocab[\"" + piece + "\"]", "expected a non-negative token id");
            checkTokenId(jsonInteger(id),
                         idLimit_, ctx.file, "model.vocab[\"" + piece + "\"]");
            setPiece(id.get<int32_t>(), piece, true);
        }
    }

    void loadAddedTokens(const json& root, const JsonContext& ctx) {
        auto list = root.find("added_tokens");
        if (list == root.end() || list->is_null()) return;
        if (!list->is_array()) ctx.fail("added_tokens", "expected an array");
        for (size_t i = 0; i < list->size(); ++i) {
            const json& entry = (*list)[i];
            const std::string where = "added_tokens[" + std::to_string(i) + "]";
            if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
                (!entry["id"].is_number_unsigned() && entry["id"].get<int64_t>() < 0))
                ctx.fail(where + ".id", "expected a non-negative token id");
            const json& id = entry["id"];
            checkTokenId(jsonInteger(id),
                         idLimit_, ctx.file, where + ".id");
            AddedToken token;
            token.id = id.get<int32_t>();
            token.content = ctx.string(entry, "content", where);
            token.special = ctx.boolOr(entry, "special", false, where);
            token.lstrip = ctx.boolOr(entry, "lstrip", false, where);
            token.rstrip = ctx.boolOr(entry, "rstrip", false, where);
            setPiece(token.id, token.content, false);
            addedTokens_.add(token);
            if (token.special) specialIds_.insert(token.id);
        }
    }

    void loadMerges(const json& model, const JsonContext& ctx) {
        auto list = model.find("merges");
        if (list == model.end() || list->is_null()) return;
        if (!list->is_array()) ctx.fail("model.merges", "expected an array");
        merges_.reserve(list->size());
        for (size_t rank = 0; rank < list->size(); ++rank) {
            const json& entry = (*list)[rank];
            const std::string where = "model.merges[" + std::to_string(rank) + "]";
            std::string left, right;
            if (entry.is_string()) { // "left right"
                const std::string& text = entry.get_ref<const std::string&>();
                const size_t space = text.find(' ');
                if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
                    ctx.fail(where, "expected \"left right\"");
                left = text.substr(0, space);
                right = text.substr(space + 1);
            } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
                left = entry[0].get<std::string>();
                right = entry[1].get<std::string>();
            } else {
                ctx.fail(where, "expected \"left right\" or [left, right]");
            }
            auto leftId = pieceToId_.find(left), rightId = pieceToId_.find(right),
                 result = pieceToId_.find(left + right);
            if (leftId == pieceToId_.end() || rightId == pieceToId_.end() || result == pieceToId_.end())
                ctx.fail(where,
                         "merge of '" + left + "' and '" + right + "' uses a piece that is not in the vocabulary");
            // The first occurrence of a pair wins, as in tokenizers.
            merges_.try_emplace(pairKey(leftId->second, rightId->second),
                                Merge{static_cast<int32_t>(rank), result->second});
        }
    }

    void readPostProcessor(const json& node, const JsonContext& ctx, const std::string& where,
                           std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
        const std::string type = ctx.type(node, where);
        if (type == "Sequence") {
            const json& list = ctx.array(node, "processors", where);
            for (size_t i = 0; i < list.size(); ++i)
                readPostProcessor(list[i], ctx, where + ".processors[" + std::to_string(i) + "]", prefix, suffix);
        } else if (type == "TemplateProcessing") {
            bool afterSequence = false;
            for (const json& item : ctx.array(node, "single", where)) {
                if (item.contains("Sequence")) {
                    afterSequence = true;
                    continue;
                }
                if (!item.contains("SpecialToken"))
                    ctx.fail(where + ".single", "expected Sequence or SpecialToken items");
                const std::string name = ctx.string(item["SpecialToken"], "id", where + ".single.SpecialToken");
                std::vector<int32_t> ids;
                const json* specials = node.contains("special_tokens") ? &node["special_tokens"] : nullptr;
                if (specials && specials->contains(name) && (*specials)[name].contains("ids")) {
                    const std::string field = where + ".special_tokens[\"" + name + "\"].ids";
                    const json& list = (*specials)[name]["ids"];
                    if (!list.is_array()) ctx.fail(field, "expected a list of token ids");
                    for (const json& id : list) {
                        if (!id.is_number_integer()) ctx.fail(field, "expected a list of token ids");
                        checkTokenId(jsonInteger(id),
                                     vocabSize(), ctx.file, field);
                        ids.push_back(id.get<int32_t>());
                    }
                } else if (auto it = addedPieceToId_.find(name); it != addedPieceToId_.end()) {
                    ids.push_back(it->second);
                } else if (auto it = pieceToId_.find(name); it != pieceToId_.end()) {
                    ids.push_back(it->second);
                } else {
                    ctx.fail(where + ".special_tokens", "no ids for special token '" + name + "'");
                }
                auto& target = afterSequence ? suffix : prefix;
                target.insert(target.end(), ids.begin(), ids.end());
            }
        } else if (type == "RobertaProcessing" || type == "BertProcessing") {
            for (const char* key : {"cls", "sep"}) {
                if (!node.contains(key)) ctx.fail(where + "." + key, "missing");
                const json& pair = node[key];
                if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer())
                    ctx.fail(where + "." + key, "expected [token, id]");
                checkTokenId(jsonInteger(pair[1]),
                             vocabSize(), ctx.file, where + "." + key);
                (std::string(key) == "cls" ? prefix : suffix).push_back(pair[1].get<int32_t>());
            }
        } else if (type != "ByteLevel") { // ByteLevel only adjusts offsets
            ctx.fail(where + ".type", "post-processor '" + type + "' is not supported");
        }
    }

    std::optional<int32_t> idOf(const std::optional<std::string>& text, const fs::path& configFile,
                                const char* field) const {
        if (!text) return std::nullopt;
        if (auto it = addedPieceToId_.find(*text); it != addedPieceToId_.end()) return it->second;
        if (auto it = pieceToId_.find(*text); it != pieceToId_.end()) return it->second;
        throw Error(configFile.string() + ": " + field + " '" + *text + "' is not in the vocabulary");
    }

    // tokenizer_config.json wins over the file's post-processor for BOS/EOS
    // (transformers rebuilds the template from add_bos_token/add_eos_token).
    void applyConfig(const TokenizerConfig& config, const fs::path& configFile,
                     const std::vector<int32_t>& templatePrefix, const std::vector<int32_t>& templateSuffix) {
        const int64_t limit = std::max<int64_t>(vocabSize(), idLimit_) + int64_t(config.addedTokens.size());
        for (const AddedToken& token : config.addedTokens) {
            checkTokenId(token.id, limit, configFile, "added_tokens_decoder." + std::to_string(token.id));
            setPiece(token.id, token.content, false);
            addedTokens_.add(token);
            if (token.special) specialIds_.insert(token.id);
        }
        cleanUpSpaces_ = config.cleanUpTokenizationSpaces;
        special_.bos = idOf(config.bosText, configFile, "bos_token");
        special_.unk = idOf(config.unkText, configFile, "unk_token");
        special_.pad = idOf(config.padText, configFile, "pad_token");
        if (auto eos = idOf(config.eosText, configFile, "eos_token")) special_.eos.push_back(*eos);
        if (!special_.bos && !templatePrefix.empty()) special_.bos = templatePrefix.front();
        if (!special_.unk && unkId_) special_.unk = unkId_;
        if (special_.eos.empty() && !templateSuffix.empty()) special_.eos.push_back(templateSuffix.back());

        prefixIds_ = templatePrefix;
        if (config.addBos)
            prefixIds_ = *config.addBos && special_.bos ? std::vector<int32_t>{*special_.bos} : std::vector<int32_t>{};
        suffixIds_ = templateSuffix;
        if (config.addEos)
            suffixIds_ = *config.addEos && !special_.eos.empty() ? std::vector<int32_t>{special_.eos.front()}
                                                                 : std::vector<int32_t>{};
        special_.addBos = !prefixIds_.empty();
        special_.addEos = !suffixIds_.empty();
        if (special_.bos) special_.bosText = piece(*special_.bos);
        if (!special_.eos.empty()) special_.eosText = piece(special_.eos.front());
        for (auto id : {special_.bos, special_.unk, special_.pad})
            if (id) specialIds_.insert(*id);
        for (int32_t id : special_.eos) specialIds_.insert(id);
    }

    // One pre-tokenized word through the BPE model, appending its ids.
    void encodeWord(const std::string& word, std::vector<int32_t>& out) const {
        if (word.empty()) return;
        if (ignoreMerges_) {
            if (auto it = pieceToId_.find(word); it != pieceToId_.end()) {
                out.push_back(it->second);
                return;
            }
        }
        // Words repeat a lot in real text; long ones rarely do and would bloat the cache.
        constexpr size_t kMaxCachedWordBytes = 64;
        constexpr size_t kMaxCacheEntries = 200000;
        const bool cacheable = word.size() <= kMaxCachedWordBytes;
        if (cacheable) {
            std::lock_guard lock(cacheMutex_);
            if (auto it = cache_.find(word); it != cache_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        std::vector<int32_t> ids = mergeWord(word);
        out.insert(out.end(), ids.begin(), ids.end());
        if (cacheable) {
            std::lock_guard lock(cacheMutex_);
            if (cache_.size() >= kMaxCacheEntries) cache_.clear();
            cache_.emplace(word, std::move(ids));
        }
    }

    // Splits a word into characters (or byte tokens / unk) and applies merges
    // lowest rank first, leftmost first on ties, like tokenizers' BPE.
    std::vector<int32_t> mergeWord(const std::string& word) const {
        struct Symbol {
            int32_t id;
            int prev, next;
        };
        std::vector<Symbol> symbols;
        symbols.reserve(word.size());
        bool previousWasUnk = false;
        auto pushSymbol = [&](int32_t id) {
            const int index = static_cast<int>(symbols.size());
            symbols.push_back({id, index - 1, index + 1});
        };
        for (size_t pos = 0; pos < word.size();) {
            const size_t length = nextCodepoint(word, pos).second;
            std::string unit = word.substr(pos, length);
            if (pos > 0) unit.insert(0, continuingPrefix_);
            if (pos + length == word.size()) unit += endOfWordSuffix_;
            if (auto it = pieceToId_.find(unit); it != pieceToId_.end()) {
                pushSymbol(it->second);
                previousWasUnk = false;
            } else if (byteFallback_ &&
                       std::all_of(word.begin() + static_cast<std::ptrdiff_t>(pos),
                                   word.begin() + static_cast<std::ptrdiff_t>(pos + length),
                                   [&](char c) { return byteIds_[static_cast<unsigned char>(c)] >= 0; })) {
                for (size_t i = pos; i < pos + length; ++i) pushSymbol(byteIds_[static_cast<unsigned char>(word[i])]);
                previousWasUnk = false;
            } else if (unkId_) {
                if (!(fuseUnk_ && previousWasUnk)) pushSymbol(*unkId_);
                previousWasUnk = true;
            }
            pos += length;
        }
        if (symbols.empty()) return {};
        symbols.back().next = -1;

        struct Candidate {
            int32_t rank;
            int pos;
            int32_t left, right, result;
            bool operator>(const Candidate& other) const {
                return rank != other.rank ? rank > other.rank : pos > other.pos;
            }
        };
        std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
        auto consider = [&](int pos) {
            if (pos < 0 || symbols[static_cast<size_t>(pos)].next < 0) return;
            const int32_t left = symbols[static_cast<size_t>(pos)].id;
            const int32_t right = symbols[static_cast<size_t>(symbols[static_cast<size_t>(pos)].next)].id;
            if (auto it = merges_.find(pairKey(left, right)); it != merges_.end())
                queue.push({it->second.rank, pos, left, right, it->second.result});
        };
        for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
        while (!queue.empty()) {
            const Candidate top = queue.top();
            queue.pop();
            Symbol& first = symbols[static_cast<size_t>(top.pos)];
            // Stale entries: a side was merged away or changed since this was queued.
            if (first.id != top.left || first.next < 0) continue;
            Symbol& second = symbols[static_cast<size_t>(first.next)];
            if (second.id != top.right) continue;
            first.id = top.result;
            second.id = -1;
            first.next = second.next;
            if (second.next >= 0) symbols[static_cast<size_t>(second.next)].prev = top.pos;
            consider(first.prev);
            consider(top.pos);
        }
        std::vector<int32_t> ids;
        for (int pos = 0; pos >= 0; pos = symbols[static_cast<size_t>(pos)].next)
            ids.push_back(symbols[static_cast<size_t>(pos)].id);
        return ids;
    }

    std::vector<std::string> idToPiece_;
    int64_t idLimit_ = 0; // vocabulary entries plus added tokens of tokenizer.json, and room for holes: ids must be below
    std::unordered_map<std::string, int32_t> pieceToId_;      // model vocabulary
    std::unordered_map<std::string, int32_t> addedPieceToId_; // added tokens
    std::unordered_map<uint64_t, Merge> merges_;
    AddedTokenMatcher addedTokens_;
    std::unordered_set<int32_t> specialIds_;
    std::optional<int32_t> unkId_;
    std::array<int32_t, 256> byteIds_{};
    bool byteFallback_ = false, fuseUnk_ = false, ignoreMerges_ = false, byteLevel_ = false, cleanUpSpaces_ = false;
    std::string continuingPrefix_, endOfWordSuffix_;
    Normalizer normalizer_;
    PreTokenizer preTokenizer_;
    Decoder decoder_;
    std::vector<int32_t> prefixIds_, suffixIds_; // added by encode(addSpecial)

    mutable std::mutex cacheMutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

} // namespace

namespace tokenizer_detail {

std::unique_ptr<Tokenizer> makeHfBpeTokenizer(const json& tokenizerJson, const std::string& source,
                                              const SpecialTokens& special, bool cleanUpSpaces) {
    return std::make_unique<HfBpeTokenizer>(tokenizerJson, fs::path(source), special, cleanUpSpaces);
}

} // namespace tokenizer_detail

std::unique_ptr<Tokenizer> Tokenizer::loadHfJson(const fs::path& tokenizerJson, const fs::path& tokenizerConfig) {
    return std::make_unique<HfBpeTokenizer>(tokenizerJson, tokenizerConfig);
}

} // namespace moe
