// Jinja's builtins: filters, tests, global functions, the methods of
// strings and dicts, and tojson. Value semantics are in jinja_values.cpp.
#include "jinja_values.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>

namespace moe::jinja {

using namespace detail;

namespace detail {

constexpr std::int64_t kMaxRange = 100000;  // Jinja's sandbox limit for range()

// ---------------------------------------------------------------------------
// Binding call arguments to parameter names, the way Python does.

class ArgBinder {
public:
    ArgBinder(std::string_view callee, const CallArgs& args, std::vector<std::string_view> params,
              std::size_t required = 0)
        : values_(params.size()), given_(params.size(), false) {
        const std::string name(callee);
        if (args.positional.size() > params.size())
            fail(name + "() takes at most " + std::to_string(params.size()) + " argument(s) (" +
                 std::to_string(args.positional.size()) + " given)");
        for (std::size_t i = 0; i < args.positional.size(); ++i) {
            values_[i] = args.positional[i];
            given_[i] = true;
        }
        for (const auto& [key, value] : args.named) {
            const auto it = std::find(params.begin(), params.end(), key);
            if (it == params.end()) fail(name + "() got an unexpected keyword argument '" + key + "'");
            const auto index = static_cast<std::size_t>(it - params.begin());
            if (given_[index]) fail(name + "() got multiple values for argument '" + key + "'");
            values_[index] = value;
            given_[index] = true;
        }
        for (std::size_t i = 0; i < required; ++i)
            if (!given_[i]) fail(name + "() missing required argument '" + std::string(params[i]) + "'");
    }
    bool has(std::size_t i) const { return given_[i]; }
    const Value& operator[](std::size_t i) const { return values_[i]; }
    Value get(std::size_t i, Value fallback) const { return given_[i] ? values_[i] : std::move(fallback); }

private:
    std::vector<Value> values_;
    std::vector<bool> given_;
};

const std::string& requireString(const Value& v, std::string_view what) {
    if (!v.isString()) fail(std::string(what) + " must be a string, not " + typeName(v));
    return v.asString();
}

std::int64_t requireInteger(const Value& v, std::string_view what) {
    if (!isIntegral(v)) fail(std::string(what) + " must be an integer, not " + typeName(v));
    return toInteger(v);
}

// ---------------------------------------------------------------------------
// String methods (Python's str API)

bool allOf(const std::string& s, bool (*pred)(char)) { return !s.empty() && std::all_of(s.begin(), s.end(), pred); }

// strip()/lstrip()/rstrip(): whitespace when `chars` is None, else any of
// the characters of `chars`.
std::string stripString(const std::string& s, const Value& chars, bool left, bool right) {
    const auto units = codePoints(s);
    std::vector<std::string_view> set;
    const bool whitespace = chars.isNone() || chars.isUndefined();
    if (!whitespace)
        for (std::string_view cp : codePoints(requireString(chars, "strip() argument"))) set.push_back(cp);
    auto strippable = [&](std::string_view cp) {
        if (whitespace) return isPythonSpace(decodeCodePoint(cp));
        return std::find(set.begin(), set.end(), cp) != set.end();
    };
    std::size_t begin = 0, end = units.size();
    if (left)
        while (begin < end && strippable(units[begin])) ++begin;
    if (right)
        while (end > begin && strippable(units[end - 1])) --end;
    if (begin == end) return {};
    const std::size_t from = static_cast<std::size_t>(units[begin].data() - s.data());
    const std::size_t to = static_cast<std::size_t>(units[end - 1].data() - s.data()) + units[end - 1].size();
    return s.substr(from, to - from);
}

// Whitespace-separated words with their byte offsets, for split()/rsplit().
struct Word {
    std::size_t begin, end;
};
std::vector<Word> whitespaceWords(const std::string& s) {
    std::vector<Word> words;
    const auto units = codePoints(s);
    std::size_t i = 0;
    auto offset = [&](std::size_t unit) {
        return unit < units.size() ? static_cast<std::size_t>(units[unit].data() - s.data()) : s.size();
    };
    while (i < units.size()) {
        while (i < units.size() && isPythonSpace(decodeCodePoint(units[i]))) ++i;
        if (i == units.size()) break;
        const std::size_t start = i;
        while (i < units.size() && !isPythonSpace(decodeCodePoint(units[i]))) ++i;
        words.push_back({offset(start), offset(i)});
    }
    return words;
}

Value splitString(const std::string& s, const Value& sepValue, std::int64_t maxSplit, bool fromRight) {
    ValueList parts;
    if (sepValue.isNone() || sepValue.isUndefined()) {
        const auto words = whitespaceWords(s);
        const auto n = static_cast<std::int64_t>(words.size());
        if (maxSplit < 0 || maxSplit >= n - 1) {
            for (const Word& w : words) parts.emplace_back(s.substr(w.begin, w.end - w.begin));
        } else if (!fromRight) {
            // The last part keeps everything after the split words, as Python.
            for (std::int64_t i = 0; i < maxSplit; ++i) {
                const Word& w = words[static_cast<std::size_t>(i)];
                parts.emplace_back(s.substr(w.begin, w.end - w.begin));
            }
            parts.emplace_back(s.substr(words[static_cast<std::size_t>(maxSplit)].begin));
        } else {
            const std::size_t keep = static_cast<std::size_t>(n - maxSplit);
            parts.emplace_back(s.substr(words.front().begin, words[keep - 1].end - words.front().begin));
            for (std::size_t i = keep; i < words.size(); ++i)
                parts.emplace_back(s.substr(words[i].begin, words[i].end - words[i].begin));
        }
        return Value::list(std::move(parts));
    }
    const std::string& sep = requireString(sepValue, "separator");
    if (sep.empty()) fail("empty separator");
    std::vector<std::string> pieces;
    std::size_t start = 0;
    for (std::size_t at; (at = s.find(sep, start)) != std::string::npos; start = at + sep.size())
        pieces.push_back(s.substr(start, at - start));
    pieces.push_back(s.substr(start));
    const auto limit = static_cast<std::size_t>(maxSplit);
    if (maxSplit >= 0 && pieces.size() > limit + 1) {
        // Rejoin the pieces beyond the limit on the side Python leaves whole.
        std::vector<std::string> merged;
        if (!fromRight) {
            merged.assign(pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(limit));
            std::string rest = pieces[limit];
            for (std::size_t i = limit + 1; i < pieces.size(); ++i) rest += sep + pieces[i];
            merged.push_back(rest);
        } else {
            const std::size_t keep = pieces.size() - limit;
            std::string rest = pieces[0];
            for (std::size_t i = 1; i < keep; ++i) rest += sep + pieces[i];
            merged.push_back(rest);
            merged.insert(merged.end(), pieces.begin() + static_cast<std::ptrdiff_t>(keep), pieces.end());
        }
        pieces = std::move(merged);
    }
    for (auto& p : pieces) parts.emplace_back(std::move(p));
    return Value::list(std::move(parts));
}

// `n` spaces (none for n <= 0), refused past kMaxStringBytes.
std::string spaces(std::int64_t n) {
    if (n <= 0) return {};
    checkStringSize(static_cast<std::uint64_t>(n) > kMaxStringBytes ? kMaxStringBytes + 1 : static_cast<std::size_t>(n));
    return std::string(static_cast<std::size_t>(n), ' ');
}

std::string replaceString(const std::string& s, const std::string& old, const std::string& replacement,
                          std::int64_t count) {
    std::string out;
    std::int64_t done = 0;
    if (old.empty()) {  // Python inserts the replacement around every character
        const auto units = codePoints(s);
        for (std::size_t i = 0; i <= units.size(); ++i) {
            if (count < 0 || done < count) {
                appendChecked(out, replacement);
                ++done;
            }
            if (i < units.size()) appendChecked(out, units[i]);
        }
        return out;
    }
    std::size_t start = 0;
    for (std::size_t at; (count < 0 || done < count) && (at = s.find(old, start)) != std::string::npos;
         start = at + old.size(), ++done) {
        appendChecked(out, std::string_view(s).substr(start, at - start));
        appendChecked(out, replacement);
    }
    out.append(s, start);
    return out;
}

// Python's str.title(): a letter after a non-letter starts a word.
std::string pythonTitle(const std::string& s) {
    std::string out = s;
    bool previousCased = false;
    for (char& c : out) {
        if (isAsciiAlpha(c)) {
            c = previousCased ? asciiLower(c) : asciiUpper(c);
            previousCased = true;
        } else {
            previousCased = false;
        }
    }
    return out;
}

bool matchesAffix(const std::string& s, const Value& affix, bool prefix) {
    auto test = [&](const Value& candidate) {
        const std::string& a = requireString(candidate, prefix ? "startswith() argument" : "endswith() argument");
        return prefix ? s.starts_with(a) : s.ends_with(a);
    };
    if (affix.isList()) return std::any_of(affix.asList().begin(), affix.asList().end(), test);
    return test(affix);
}

std::int64_t findInString(const std::string& s, const std::string& sub, bool fromRight) {
    const std::size_t at = fromRight ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) return -1;
    return static_cast<std::int64_t>(codePointCount(std::string_view(s).substr(0, at)));
}

using StringMethod = Value (*)(const std::string& self, const CallArgs& args);

const std::unordered_map<std::string_view, StringMethod>& stringMethods() {
    static const std::unordered_map<std::string_view, StringMethod> methods = {
        {"strip", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("strip", a, {"chars"});
             return Value(stripString(s, args[0], true, true));
         }},
        {"lstrip", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("lstrip", a, {"chars"});
             return Value(stripString(s, args[0], true, false));
         }},
        {"rstrip", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("rstrip", a, {"chars"});
             return Value(stripString(s, args[0], false, true));
         }},
        {"startswith", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("startswith", a, {"prefix"}, 1);
             return Value(matchesAffix(s, args[0], true));
         }},
        {"endswith", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("endswith", a, {"suffix"}, 1);
             return Value(matchesAffix(s, args[0], false));
         }},
        {"split", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("split", a, {"sep", "maxsplit"});
             return splitString(s, args[0], requireInteger(args.get(1, Value(-1)), "maxsplit"), false);
         }},
        {"rsplit", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("rsplit", a, {"sep", "maxsplit"});
             return splitString(s, args[0], requireInteger(args.get(1, Value(-1)), "maxsplit"), true);
         }},
        {"splitlines", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("splitlines", a, {"keepends"});
             const bool keepEnds = truthy(args[0]);
             ValueList lines;
             std::size_t start = 0;
             for (std::size_t i = 0; i < s.size(); ++i) {
                 if (s[i] != '\n' && s[i] != '\r') continue;
                 const std::size_t breakLen = (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
                 lines.emplace_back(s.substr(start, i - start + (keepEnds ? breakLen : 0)));
                 i += breakLen - 1;
                 start = i + 1;
             }
             if (start < s.size()) lines.emplace_back(s.substr(start));
             return Value::list(std::move(lines));
         }},
        {"upper", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("upper", a, {});
             return Value(toUpper(s));
         }},
        {"lower", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("lower", a, {});
             return Value(toLower(s));
         }},
        {"title", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("title", a, {});
             return Value(pythonTitle(s));
         }},
        {"capitalize", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("capitalize", a, {});
             return Value(capitalize(s));
         }},
        {"replace", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("replace", a, {"old", "new", "count"}, 2);
             return Value(replaceString(s, requireString(args[0], "replace() argument"),
                                        requireString(args[1], "replace() argument"),
                                        requireInteger(args.get(2, Value(-1)), "count")));
         }},
        {"find", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("find", a, {"sub"}, 1);
             return Value(findInString(s, requireString(args[0], "find() argument"), false));
         }},
        {"rfind", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("rfind", a, {"sub"}, 1);
             return Value(findInString(s, requireString(args[0], "rfind() argument"), true));
         }},
        {"count", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("count", a, {"sub"}, 1);
             const std::string& sub = requireString(args[0], "count() argument");
             if (sub.empty()) return Value(static_cast<std::int64_t>(codePointCount(s) + 1));
             std::int64_t n = 0;
             for (std::size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
             return Value(n);
         }},
        {"join", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("join", a, {"iterable"}, 1);
             std::string out;
             const ValueList items = iterate(args[0]);
             for (std::size_t i = 0; i < items.size(); ++i) {
                 if (!items[i].isString())
                     fail("sequence item " + std::to_string(i) + ": expected str instance, " + typeName(items[i]) +
                          " found");
                 if (i) appendChecked(out, s);
                 appendChecked(out, items[i].asString());
             }
             return Value(std::move(out));
         }},
        {"removeprefix", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("removeprefix", a, {"prefix"}, 1);
             const std::string& p = requireString(args[0], "removeprefix() argument");
             return Value(s.starts_with(p) ? s.substr(p.size()) : s);
         }},
        {"removesuffix", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder args("removesuffix", a, {"suffix"}, 1);
             const std::string& p = requireString(args[0], "removesuffix() argument");
             return Value(s.ends_with(p) ? s.substr(0, s.size() - p.size()) : s);
         }},
        {"isdigit", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("isdigit", a, {});
             return Value(allOf(s, isAsciiDigit));
         }},
        {"isalpha", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("isalpha", a, {});
             return Value(allOf(s, isAsciiAlpha));
         }},
        {"isspace", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("isspace", a, {});
             const auto units = codePoints(s);
             return Value(!units.empty() && std::all_of(units.begin(), units.end(), [](std::string_view cp) {
                 return isPythonSpace(decodeCodePoint(cp));
             }));
         }},
        {"isupper", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("isupper", a, {});
             return Value(std::any_of(s.begin(), s.end(), isAsciiAlpha) && toUpper(s) == s);
         }},
        {"islower", [](const std::string& s, const CallArgs& a) -> Value {
             ArgBinder("islower", a, {});
             return Value(std::any_of(s.begin(), s.end(), isAsciiAlpha) && toLower(s) == s);
         }},
    };
    return methods;
}


Value dictMethod(const Value& self, std::string_view name) {
    if (name == "items")
        return Value::function([self](const CallArgs& a) {
            ArgBinder("items", a, {});
            return Value::list(dictItems(self.asDict()));
        });
    if (name == "keys")
        return Value::function([self](const CallArgs& a) {
            ArgBinder("keys", a, {});
            return Value::list(iterate(self));
        });
    if (name == "values")
        return Value::function([self](const CallArgs& a) {
            ArgBinder("values", a, {});
            ValueList values;
            for (const auto& entry : self.asDict().entries()) values.push_back(entry.second);
            return Value::list(std::move(values));
        });
    if (name == "get")
        return Value::function([self](const CallArgs& a) {
            ArgBinder args("get", a, {"key", "default"}, 1);
            const Value* found = self.asDict().find(args[0]);
            return found ? *found : args.get(1, Value::none());
        });
    return Value::undefined({});
}

Value stringMethod(const Value& self, std::string_view name) {
    const auto& methods = stringMethods();
    const auto it = methods.find(name);
    if (it == methods.end()) return Value::undefined({});
    const StringMethod method = it->second;
    return Value::function([self, method](const CallArgs& a) { return method(self.asString(), a); });
}

// ---------------------------------------------------------------------------
// JSON, as transformers' tojson (json.dumps with ensure_ascii=False).

struct JsonStyle {
    std::optional<std::string> indent;
    std::string itemSeparator = ", ";
    std::string keySeparator = ": ";
    bool sortKeys = false;
    bool ensureAscii = false;
};

void writeJsonString(std::string& out, const std::string& s, bool ensureAscii) {
    const char* hex = "0123456789abcdef";
    auto escapeUnit = [&](unsigned unit) {
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out += hex[(unit >> shift) & 0xF];
    };
    out += '"';
    for (std::string_view cp : codePoints(s)) {
        const char c = cp[0];
        if (cp.size() > 1) {
            if (!ensureAscii) {
                out += cp;
                continue;
            }
            const char32_t code = decodeCodePoint(cp);
            if (code >= 0x10000) {
                const char32_t v = code - 0x10000;
                escapeUnit(0xD800 + static_cast<unsigned>(v >> 10));
                escapeUnit(0xDC00 + static_cast<unsigned>(v & 0x3FF));
            } else {
                escapeUnit(static_cast<unsigned>(code));
            }
            continue;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20 || (ensureAscii && static_cast<unsigned char>(c) >= 0x80))
                escapeUnit(static_cast<unsigned char>(c));
            else
                out += c;
        }
    }
    out += '"';
}

std::string jsonNumber(const Value& v) {
    if (v.isBool()) return v.asBool() ? "true" : "false";
    if (v.isInt()) return std::to_string(v.asInt());
    const double d = v.asFloat();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
    return formatFloat(d);
}

std::string jsonKey(const Value& key) {
    if (key.isString()) return key.asString();
    if (key.isNone()) return "null";
    if (isNumber(key)) return jsonNumber(key);
    fail("keys must be str, int, float, bool or None, not " + typeName(key));
}

void writeJson(std::string& out, const Value& v, const JsonStyle& style, int depth) {
    if (depth > kMaxValueDepth + 1) fail("a value nested more than " + std::to_string(kMaxValueDepth) + " levels deep cannot be written as JSON");
    checkStringSize(out.size());
    auto newline = [&](int level) {
        if (!style.indent) return;
        checkStringSize(out.size() + 1 + static_cast<std::size_t>(level) * style.indent->size());
        out += '\n';
        for (int i = 0; i < level; ++i) out += *style.indent;
    };
    switch (v.kind()) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool:
    case Value::Kind::Int:
    case Value::Kind::Float: out += jsonNumber(v); return;
    case Value::Kind::String: writeJsonString(out, v.asString(), style.ensureAscii); return;
    case Value::Kind::List: {
        const auto& items = v.asList();
        if (items.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (i) out += style.itemSeparator;
            newline(depth + 1);
            writeJson(out, items[i], style, depth + 1);
        }
        newline(depth);
        out += ']';
        return;
    }
    case Value::Kind::Dict: {
        std::vector<std::pair<std::string, const Value*>> entries;
        for (const auto& [key, value] : v.asDict().entries()) entries.emplace_back(jsonKey(key), &value);
        if (style.sortKeys)
            std::stable_sort(entries.begin(), entries.end(),
                             [](const auto& a, const auto& b) { return a.first < b.first; });
        if (entries.empty()) {
            out += "{}";
            return;
        }
        out += '{';
        for (std::size_t i = 0; i < entries.size(); ++i) {
            if (i) out += style.itemSeparator;
            newline(depth + 1);
            writeJsonString(out, entries[i].first, style.ensureAscii);
            out += style.keySeparator;
            writeJson(out, *entries[i].second, style, depth + 1);
        }
        newline(depth);
        out += '}';
        return;
    }
    default: fail("Object of type " + typeName(v) + " is not JSON serializable");
    }
}

Value toJson(const Value& value, const CallArgs& a) {
    ArgBinder args("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonStyle style;
    style.ensureAscii = truthy(args[0]);
    if (args.has(1) && !args[1].isNone()) {
        style.indent = args[1].isString() ? args[1].asString()
                                          : spaces(requireInteger(args[1], "indent"));
        style.itemSeparator = ",";  // json.dumps drops the space when indenting
    }
    if (args.has(2) && !args[2].isNone()) {
        if (!args[2].isList() || args[2].asList().size() != 2) fail("separators must be an (item, key) pair");
        style.itemSeparator = requireString(args[2].asList()[0], "item separator");
        style.keySeparator = requireString(args[2].asList()[1], "key separator");
    }
    style.sortKeys = truthy(args[3]);
    std::string out;
    writeJson(out, value, style, 0);
    return Value(std::move(out));
}

// ---------------------------------------------------------------------------
// Tests (`x is name`)

using TestFn = bool (*)(const Value& value, const CallArgs& args);

const Value& singleArgument(std::string_view test, const CallArgs& a) {
    if (a.positional.size() != 1 || !a.named.empty())
        fail("test '" + std::string(test) + "' takes exactly one argument");
    return a.positional[0];
}

void noArguments(std::string_view test, const CallArgs& a) {
    if (!a.positional.empty() || !a.named.empty()) fail("test '" + std::string(test) + "' takes no arguments");
}

// A test without parameters: refuses arguments and passes its result on.
bool plainTest(std::string_view test, const CallArgs& a, bool result) {
    noArguments(test, a);
    return result;
}

const std::unordered_map<std::string_view, TestFn>& tests() {
    static const std::unordered_map<std::string_view, TestFn> table = {
        {"defined", [](const Value& v, const CallArgs& a) { return plainTest("defined", a, !v.isUndefined()); }},
        {"undefined", [](const Value& v, const CallArgs& a) { return plainTest("undefined", a, v.isUndefined()); }},
        {"none", [](const Value& v, const CallArgs& a) { return plainTest("none", a, v.isNone()); }},
        {"string", [](const Value& v, const CallArgs& a) { return plainTest("string", a, v.isString()); }},
        {"mapping", [](const Value& v, const CallArgs& a) { return plainTest("mapping", a, v.isDict()); }},
        {"iterable",
         [](const Value& v, const CallArgs& a) {
             noArguments("iterable", a);
             return v.isString() || v.isList() || v.isDict() || v.isUndefined();
         }},
        {"sequence",
         [](const Value& v, const CallArgs& a) {
             noArguments("sequence", a);
             return v.isString() || v.isList() || v.isDict();
         }},
        {"number", [](const Value& v, const CallArgs& a) { return plainTest("number", a, isNumber(v)); }},
        {"integer", [](const Value& v, const CallArgs& a) { return plainTest("integer", a, v.isInt()); }},
        {"float", [](const Value& v, const CallArgs& a) { return plainTest("float", a, v.isFloat()); }},
        {"boolean", [](const Value& v, const CallArgs& a) { return plainTest("boolean", a, v.isBool()); }},
        {"true", [](const Value& v, const CallArgs& a) { return plainTest("true", a, v.isBool() && v.asBool()); }},
        {"false",
         [](const Value& v, const CallArgs& a) { return plainTest("false", a, v.isBool() && !v.asBool()); }},
        {"callable",
         [](const Value& v, const CallArgs& a) {
             noArguments("callable", a);
             return v.isFunction() || v.isUndefined();  // Jinja's Undefined can be called
         }},
        {"even",
         [](const Value& v, const CallArgs& a) {
             noArguments("even", a);
             return requireInteger(v, "even test value") % 2 == 0;
         }},
        {"odd",
         [](const Value& v, const CallArgs& a) {
             noArguments("odd", a);
             return requireInteger(v, "odd test value") % 2 != 0;
         }},
        {"divisibleby",
         [](const Value& v, const CallArgs& a) {
             const std::int64_t d = requireInteger(singleArgument("divisibleby", a), "divisor");
             if (d == 0) fail("integer division or modulo by zero");
             return requireInteger(v, "divisibleby test value") % d == 0;
         }},
        {"eq", [](const Value& v, const CallArgs& a) { return pyEquals(v, singleArgument("eq", a)); }},
        {"equalto", [](const Value& v, const CallArgs& a) { return pyEquals(v, singleArgument("equalto", a)); }},
        {"==", [](const Value& v, const CallArgs& a) { return pyEquals(v, singleArgument("==", a)); }},
        {"ne", [](const Value& v, const CallArgs& a) { return !pyEquals(v, singleArgument("ne", a)); }},
        {"!=", [](const Value& v, const CallArgs& a) { return !pyEquals(v, singleArgument("!=", a)); }},
        {"lt", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("lt", a), "<") < 0; }},
        {"lessthan",
         [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("lessthan", a), "<") < 0; }},
        {"<", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("<", a), "<") < 0; }},
        {"le", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("le", a), "<=") <= 0; }},
        {"<=", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("<=", a), "<=") <= 0; }},
        {"gt", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("gt", a), ">") > 0; }},
        {"greaterthan",
         [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("greaterthan", a), ">") > 0; }},
        {">", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument(">", a), ">") > 0; }},
        {"ge", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument("ge", a), ">=") >= 0; }},
        {">=", [](const Value& v, const CallArgs& a) { return pyCompare(v, singleArgument(">=", a), ">=") >= 0; }},
        {"in", [](const Value& v, const CallArgs& a) { return contains(singleArgument("in", a), v); }},
        {"sameas",
         [](const Value& v, const CallArgs& a) {
             const Value& other = singleArgument("sameas", a);
             if (v.kind() != other.kind()) return false;
             if (v.identity()) return v.identity() == other.identity();
             return pyEquals(v, other);  // None, booleans and small values compare by value
         }},
        {"lower",
         [](const Value& v, const CallArgs& a) {
             noArguments("lower", a);
             return v.isString() && toLower(v.asString()) == v.asString();
         }},
        {"upper",
         [](const Value& v, const CallArgs& a) {
             noArguments("upper", a);
             return v.isString() && toUpper(v.asString()) == v.asString();
         }},
    };
    return table;
}

TestFn findTest(std::string_view name) {
    const auto it = tests().find(name);
    return it == tests().end() ? nullptr : it->second;
}

bool applyTest(std::string_view name, const Value& value, const CallArgs& args) {
    const TestFn test = findTest(name);
    if (!test) fail("unknown test '" + std::string(name) + "'");
    return test(value, args);
}

// ---------------------------------------------------------------------------
// Filters (`x | name`)

using FilterFn = Value (*)(const Value& value, const CallArgs& args);
FilterFn findFilter(std::string_view name);

Value applyFilter(std::string_view name, const Value& value, const CallArgs& args) {
    const FilterFn filter = findFilter(name);
    if (!filter) fail("unknown filter '" + std::string(name) + "'");
    return filter(value, args);
}

// Arguments after the first `skip` positional ones, for filters that pass
// the rest on to a test or another filter.
CallArgs remainingArgs(const CallArgs& a, std::size_t skip) {
    CallArgs rest;
    if (a.positional.size() > skip)
        rest.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(skip), a.positional.end());
    rest.named = a.named;
    return rest;
}

// select/reject/selectattr/rejectattr share one walk: pick each item whose
// (attribute) value passes the named test, or is truthy without a test.
Value selectItems(const Value& seq, const CallArgs& a, bool byAttribute, bool keep) {
    std::size_t next = 0;
    std::string attribute;
    if (byAttribute) {
        if (a.positional.empty()) fail("selectattr/rejectattr need an attribute name");
        attribute = requireString(a.positional[0], "attribute");
        next = 1;
    }
    std::string testName;
    if (a.positional.size() > next) testName = requireString(a.positional[next++], "test name");
    const CallArgs testArgs = remainingArgs(a, next);
    if (!testName.empty() && !findTest(testName)) fail("unknown test '" + testName + "'");

    ValueList out;
    for (const Value& item : iterate(seq)) {
        const Value subject = byAttribute ? getAttributePath(item, attribute) : item;
        const bool passed = testName.empty() ? truthy(subject) : applyTest(testName, subject, testArgs);
        if (passed == keep) out.push_back(item);
    }
    return Value::list(std::move(out));
}

// Sort key comparison for sort/unique/min/max: strings case-insensitively
// unless asked otherwise.
Value sortKey(const Value& item, const std::string& attribute, bool caseSensitive) {
    Value key = attribute.empty() ? item : getAttributePath(item, attribute);
    if (!caseSensitive && key.isString()) return Value(toLower(key.asString()));
    return key;
}

Value extreme(const Value& seq, const CallArgs& a, bool wantMax) {
    ArgBinder args(wantMax ? "max" : "min", a, {"case_sensitive", "attribute"});
    const bool caseSensitive = truthy(args[0]);
    const std::string attribute = args.has(1) ? requireString(args[1], "attribute") : "";
    const ValueList items = iterate(seq);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    std::size_t best = 0;
    for (std::size_t i = 1; i < items.size(); ++i) {
        const int c = pyCompare(sortKey(items[i], attribute, caseSensitive),
                                sortKey(items[best], attribute, caseSensitive), wantMax ? ">" : "<");
        if (wantMax ? c > 0 : c < 0) best = i;
    }
    return items[best];
}

std::string htmlEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

std::optional<std::int64_t> parseIntegerText(const std::string& text) {
    std::string t = stripString(text, Value::none(), true, true);
    t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
    if (!t.empty() && t[0] == '+') t.erase(0, 1);
    std::int64_t v = 0;
    const auto res = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || res.ec != std::errc() || res.ptr != t.data() + t.size()) return std::nullopt;
    return v;
}

std::optional<double> parseFloatText(const std::string& text) {
    std::string t = stripString(text, Value::none(), true, true);
    if (!t.empty() && t[0] == '+') t.erase(0, 1);
    double v = 0;
    const auto res = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || res.ec != std::errc() || res.ptr != t.data() + t.size()) return std::nullopt;
    return v;
}

Value roundValue(const Value& value, const CallArgs& a) {
    ArgBinder args("round", a, {"precision", "method"});
    const std::int64_t precision = requireInteger(args.get(0, Value(0)), "precision");
    const std::string method = args.has(1) ? requireString(args[1], "method") : "common";
    if (!isNumber(value)) fail("round() needs a number, not " + typeName(value));
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = toDouble(value) * scale;
    double r;
    if (method == "common")
        r = std::nearbyint(x);  // Python's round(): ties go to even
    else if (method == "ceil")
        r = std::ceil(x);
    else if (method == "floor")
        r = std::floor(x);
    else
        fail("method must be common, ceil or floor");
    return Value(r / scale);
}

Value indentText(const Value& value, const CallArgs& a) {
    ArgBinder args("indent", a, {"width", "first", "blank"});
    const Value width = args.get(0, Value(4));
    const std::string pad = width.isString()
                                ? width.asString()
                                : spaces(requireInteger(width, "width"));
    const bool first = truthy(args[1]);
    const bool blank = truthy(args[2]);
    const std::string s = str(value);
    std::vector<std::string> lines;
    std::size_t start = 0;
    for (std::size_t at; (at = s.find('\n', start)) != std::string::npos; start = at + 1)
        lines.push_back(s.substr(start, at - start));
    lines.push_back(s.substr(start));  // Jinja appends a newline first, so a final "" line is never added
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (i) out += '\n';
        const bool indentThis = (i > 0 || first) && (blank || !lines[i].empty());
        if (indentThis) appendChecked(out, pad);
        appendChecked(out, lines[i]);
    }
    return Value(std::move(out));
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
    static const std::unordered_map<std::string_view, FilterFn> table = {
        {"trim", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("trim", a, {"chars"});
             return Value(stripString(str(v), args[0], true, true));
         }},
        {"length", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("length", a, {});
             return Value(lengthOf(v));
         }},
        {"count", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("count", a, {});
             return Value(lengthOf(v));
         }},
        {"upper", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("upper", a, {});
             return Value(toUpper(str(v)));
         }},
        {"lower", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("lower", a, {});
             return Value(toLower(str(v)));
         }},
        {"capitalize", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("capitalize", a, {});
             return Value(capitalize(str(v)));
         }},
        {"title", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("title", a, {});
             // Jinja's title: words start after whitespace and - ( { [ <.
             std::string out = str(v);
             bool wordStart = true;
             for (char& c : out) {
                 const bool separator =
                     c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '(' || c == '{' ||
                     c == '[' || c == '<';
                 c = wordStart ? asciiUpper(c) : asciiLower(c);
                 wordStart = separator;
             }
             return Value(std::move(out));
         }},
        {"tojson", toJson},
        {"string", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("string", a, {});
             return Value(str(v));
         }},
        {"first", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("first", a, {});
             const ValueList items = iterate(v);
             return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
         }},
        {"last", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("last", a, {});
             const ValueList items = iterate(v);
             return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
         }},
        {"join", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("join", a, {"d", "attribute"});
             const std::string separator = args.has(0) ? str(args[0]) : "";
             std::string out;
             bool first = true;
             for (const Value& item : iterate(v)) {
                 if (!first) appendChecked(out, separator);
                 first = false;
                 const bool byAttribute = args.has(1) && !args[1].isNone();
                 appendChecked(out, str(byAttribute ? getAttributePath(item, str(args[1])) : item));
             }
             return Value(std::move(out));
         }},
        {"default", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("default", a, {"default_value", "boolean"});
             const bool useDefault = v.isUndefined() || (truthy(args[1]) && !truthy(v));
             return useDefault ? args.get(0, Value("")) : v;
         }},
        {"d", [](const Value& v, const CallArgs& a) -> Value { return applyFilter("default", v, a); }},
        {"replace", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("replace", a, {"old", "new", "count"}, 2);
             const std::int64_t count = args.has(2) && !args[2].isNone() ? requireInteger(args[2], "count") : -1;
             return Value(replaceString(str(v), str(args[0]), str(args[1]), count));
         }},
        {"items", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("items", a, {});
             if (v.isUndefined()) return Value::list({});
             if (!v.isDict()) fail("Can only get item pairs from a mapping.");
             return Value::list(dictItems(v.asDict()));
         }},
        {"list", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("list", a, {});
             return Value::list(iterate(v));
         }},
        {"selectattr", [](const Value& v, const CallArgs& a) { return selectItems(v, a, true, true); }},
        {"rejectattr", [](const Value& v, const CallArgs& a) { return selectItems(v, a, true, false); }},
        {"select", [](const Value& v, const CallArgs& a) { return selectItems(v, a, false, true); }},
        {"reject", [](const Value& v, const CallArgs& a) { return selectItems(v, a, false, false); }},
        {"map", [](const Value& v, const CallArgs& a) -> Value {
             ValueList out;
             const Value* attribute = nullptr;
             const Value* fallback = nullptr;
             for (const auto& [key, value] : a.named) {
                 if (key == "attribute") attribute = &value;
                 else if (key == "default") fallback = &value;
             }
             if (attribute) {
                 const std::string path = str(*attribute);
                 for (const Value& item : iterate(v)) {
                     Value picked = getAttributePath(item, path);
                     out.push_back(picked.isUndefined() && fallback ? *fallback : picked);
                 }
                 return Value::list(std::move(out));
             }
             if (a.positional.empty()) fail("map() needs a filter name or attribute=");
             const std::string name = requireString(a.positional[0], "filter name");
             const CallArgs rest = remainingArgs(a, 1);
             for (const Value& item : iterate(v)) out.push_back(applyFilter(name, item, rest));
             return Value::list(std::move(out));
         }},
        {"reverse", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("reverse", a, {});
             if (v.isString()) {
                 auto units = codePoints(v.asString());
                 std::string out;
                 for (auto it = units.rbegin(); it != units.rend(); ++it) out += *it;
                 return Value(std::move(out));
             }
             ValueList items = iterate(v);
             std::reverse(items.begin(), items.end());
             return Value::list(std::move(items));
         }},
        {"sort", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("sort", a, {"reverse", "case_sensitive", "attribute"});
             const bool reverse = truthy(args[0]);
             const bool caseSensitive = truthy(args[1]);
             const std::string attribute = args.has(2) ? str(args[2]) : "";
             ValueList items = iterate(v);
             std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
                 const int c =
                     pyCompare(sortKey(x, attribute, caseSensitive), sortKey(y, attribute, caseSensitive), "<");
                 return reverse ? c > 0 : c < 0;
             });
             return Value::list(std::move(items));
         }},
        {"dictsort", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("dictsort", a, {"case_sensitive", "by", "reverse"});
             if (!v.isDict()) fail("dictsort needs a mapping, not " + typeName(v));
             const bool caseSensitive = truthy(args[0]);
             const std::string by = args.has(1) ? str(args[1]) : "key";
             if (by != "key" && by != "value") fail("You can only sort by either 'key' or 'value'");
             const std::size_t index = by == "key" ? 0 : 1;
             const bool reverse = truthy(args[2]);
             ValueList items = dictItems(v.asDict());
             std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
                 const int c = pyCompare(sortKey(x.asList()[index], "", caseSensitive),
                                         sortKey(y.asList()[index], "", caseSensitive), "<");
                 return reverse ? c > 0 : c < 0;
             });
             return Value::list(std::move(items));
         }},
        {"unique", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("unique", a, {"case_sensitive", "attribute"});
             const bool caseSensitive = truthy(args[0]);
             const std::string attribute = args.has(1) ? str(args[1]) : "";
             ValueList out, seen;
             for (const Value& item : iterate(v)) {
                 Value key = sortKey(item, attribute, caseSensitive);
                 if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return pyEquals(s, key); })) {
                     seen.push_back(std::move(key));
                     out.push_back(item);
                 }
             }
             return Value::list(std::move(out));
         }},
        {"min", [](const Value& v, const CallArgs& a) { return extreme(v, a, false); }},
        {"max", [](const Value& v, const CallArgs& a) { return extreme(v, a, true); }},
        {"sum", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("sum", a, {"attribute", "start"});
             Value total = args.get(1, Value(0));
             for (const Value& item : iterate(v))
                 total = add(total, args.has(0) ? getAttributePath(item, str(args[0])) : item);
             return total;
         }},
        {"int", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("int", a, {"default", "base"});
             const Value fallback = args.get(0, Value(0));
             if (isIntegral(v)) return Value(toInteger(v));
             if (v.isFloat())
                 return std::isfinite(v.asFloat()) ? Value(static_cast<std::int64_t>(v.asFloat())) : fallback;
             if (v.isString()) {
                 if (auto i = parseIntegerText(v.asString())) return Value(*i);
                 if (auto d = parseFloatText(v.asString()); d && std::isfinite(*d))
                     return Value(static_cast<std::int64_t>(*d));
             }
             return fallback;
         }},
        {"float", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder args("float", a, {"default"});
             if (isNumber(v)) return Value(toDouble(v));
             if (v.isString())
                 if (auto d = parseFloatText(v.asString())) return Value(*d);
             return args.get(0, Value(0.0));
         }},
        {"abs", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("abs", a, {});
             if (isIntegral(v)) return Value(toInteger(v) < 0 ? wrapSub(0, toInteger(v)) : toInteger(v));
             if (v.isFloat()) return Value(std::fabs(v.asFloat()));
             fail("bad operand type for abs(): '" + typeName(v) + "'");
         }},
        {"round", roundValue},
        {"indent", indentText},
        {"safe", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("safe", a, {});
             return v;
         }},
        {"escape", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("escape", a, {});
             return Value(htmlEscape(str(v)));
         }},
        {"e", [](const Value& v, const CallArgs& a) -> Value { return applyFilter("escape", v, a); }},
        {"attr", [](const Value& v, const CallArgs& a) -> Value {
             // Attributes only: unlike `.name`, this never falls back to dict keys.
             ArgBinder args("attr", a, {"name"}, 1);
             const std::string& name = requireString(args[0], "attribute name");
             if (v.isDict()) {
                 Value method = dictMethod(v, name);
                 return method.isUndefined() ? Value::undefined("'dict object' has no attribute '" + name + "'")
                                             : method;
             }
             return getAttribute(v, name);
         }},
        {"format", [](const Value& v, const CallArgs& a) -> Value {
             if (!a.positional.empty() && !a.named.empty())
                 fail("format() takes either positional or keyword arguments, not both");
             if (!a.named.empty()) fail("format() with keyword arguments is not supported");
             return Value(percentFormat(str(v), Value::tuple(a.positional)));
         }},
        {"wordcount", [](const Value& v, const CallArgs& a) -> Value {
             ArgBinder("wordcount", a, {});
             return Value(static_cast<std::int64_t>(whitespaceWords(str(v)).size()));
         }},
    };
    return table;
}

FilterFn findFilter(std::string_view name) {
    const auto it = filters().find(name);
    return it == filters().end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------
// Global functions

void addGlobalFunctions(std::unordered_map<std::string, Value>& globals) {
    globals["range"] = Value::function([](const CallArgs& a) {
        if (!a.named.empty()) fail("range() takes no keyword arguments");
        if (a.positional.empty() || a.positional.size() > 3) fail("range() takes 1 to 3 arguments");
        std::int64_t start = 0, stop, step = 1;
        if (a.positional.size() == 1) {
            stop = requireInteger(a.positional[0], "range() argument");
        } else {
            start = requireInteger(a.positional[0], "range() argument");
            stop = requireInteger(a.positional[1], "range() argument");
            if (a.positional.size() == 3) step = requireInteger(a.positional[2], "range() step");
        }
        if (step == 0) fail("range() arg 3 must not be zero");
        ValueList items;
        for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (static_cast<std::int64_t>(items.size()) >= kMaxRange) fail("range too big");
            items.emplace_back(i);
        }
        return Value::list(std::move(items));
    });
    auto keywordDict = [](const CallArgs& a, std::string_view callee) {
        if (a.positional.size() > 1) fail(std::string(callee) + "() takes at most one positional argument");
        ValueDict d;
        if (!a.positional.empty()) {
            if (!a.positional[0].isDict()) fail(std::string(callee) + "() positional argument must be a mapping");
            d = a.positional[0].asDict();
        }
        for (const auto& [key, value] : a.named) d.set(Value(key), value);
        return d;
    };
    globals["dict"] = Value::function([keywordDict](const CallArgs& a) { return Value::dict(keywordDict(a, "dict")); });
    globals["namespace"] =
        Value::function([keywordDict](const CallArgs& a) { return Value::makeNamespace(keywordDict(a, "namespace")); });
}

} // namespace detail

} // namespace moe::jinja
