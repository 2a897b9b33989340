// Python semantics of Jinja template values: printing, comparison,
// arithmetic, attribute and item access. Builtins are in jinja_builtins.cpp.
#include "jinja_values.h"

#include "moe/error.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>

namespace moe::jinja {

using namespace detail;

namespace detail {

// ---------------------------------------------------------------------------
// Errors

void fail(const std::string& message) { throw EvalError(message); }

void failUndefined(const Value& value) {
    const std::string& reason = value.undefinedReason();
    fail(reason.empty() ? "value is undefined" : reason);
}

RenderBudget*& currentBudget() {
    thread_local RenderBudget* budget = nullptr;
    return budget;
}

void step(std::int64_t units) {
    RenderBudget* b = currentBudget();
    if (!b) return;
    b->steps += units;
    if (b->steps > b->maxSteps)
        fail("the template took more than " + std::to_string(b->maxSteps) +
             " steps (statements, loop passes, calls); a loop that never ends?");
    throwIfCancelled(b->cancel, "rendering the " + b->name);
}

// Too-large results are refused rather than exhausting memory.
void checkStringSize(std::size_t bytes) {
    if (bytes > kMaxStringBytes)
        fail("a string of more than " + std::to_string(kMaxStringBytes >> 20) + " MiB (" + std::to_string(bytes) +
             " bytes) is too large");
}

void appendChecked(std::string& out, std::string_view piece) {
    checkStringSize(out.size() + piece.size());
    out += piece;
}

int depthOf(const Value& v) {
    if (v.isList()) return v.listDepth();
    if (v.isDict()) return v.asDict().depth() + 1;
    if (v.isNamespace()) return v.namespaceAttributes().depth() + 1;
    return 0;
}

namespace {
int checkedDepth(int depth) {
    if (depth > kMaxValueDepth)
        fail("values nested more than " + std::to_string(kMaxValueDepth) + " levels deep (lists, dicts, namespaces)");
    return depth;
}
int listDepthOf(const ValueList& items) {
    if (items.size() > kMaxItems)
        fail("a list of more than " + std::to_string(kMaxItems) + " items (" + std::to_string(items.size()) +
             ") is too large");
    step(static_cast<std::int64_t>(items.size() / 256));
    int depth = 0;
    std::size_t bytes = items.size() * sizeof(Value);
    for (const Value& item : items) {
        depth = std::max(depth, depthOf(item));
        if (item.isString()) bytes += item.asString().size();
    }
    if (RenderBudget* b = currentBudget()) {
        b->bytes += bytes;
        if (b->bytes > kMaxBuiltBytes)
            fail("the template built more than " + std::to_string(kMaxBuiltBytes >> 20) +
                 " MiB of lists (strings in lists are copies)");
    }
    return checkedDepth(depth + 1);
}
} // namespace

// ---------------------------------------------------------------------------
// UTF-8: Python indexes strings by code point, so slicing and length must
// not split multi-byte characters.

std::size_t utf8SequenceLength(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead >> 5) == 0x6) return 2;
    if ((lead >> 4) == 0xE) return 3;
    if ((lead >> 3) == 0x1E) return 4;
    return 1;  // stray continuation byte: treat it as one unit
}

std::vector<std::string_view> codePoints(std::string_view s) {
    std::vector<std::string_view> out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = std::min(utf8SequenceLength(static_cast<unsigned char>(s[i])), s.size() - i);
        out.push_back(s.substr(i, len));
        i += len;
    }
    return out;
}

std::size_t codePointCount(std::string_view s) {
    std::size_t count = 0;
    for (unsigned char c : s) count += (c & 0xC0) != 0x80;
    return count;
}

char32_t decodeCodePoint(std::string_view unit) {
    const auto lead = static_cast<unsigned char>(unit[0]);
    if (unit.size() == 1) return lead;
    char32_t cp = lead & (0x7F >> unit.size());
    for (std::size_t i = 1; i < unit.size(); ++i) cp = (cp << 6) | (static_cast<unsigned char>(unit[i]) & 0x3F);
    return cp;
}

void appendUtf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Python's str.isspace() for one code point.
bool isPythonSpace(char32_t cp) {
    if (cp == ' ' || (cp >= '\t' && cp <= '\r') || (cp >= 0x1C && cp <= 0x1F)) return true;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

char asciiUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Case mapping covers ASCII only; chat templates apply it to role names.
std::string toUpper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), asciiUpper);
    return s;
}
std::string toLower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), asciiLower);
    return s;
}
std::string capitalize(const std::string& s) {
    std::string out = toLower(s);
    if (!out.empty()) out[0] = asciiUpper(out[0]);
    return out;
}

} // namespace detail

// ---------------------------------------------------------------------------
// Value

Value::Value() : data_(Undefined{}) {}
Value::Value(bool b) : data_(b) {}
Value::Value(int i) : data_(static_cast<std::int64_t>(i)) {}
Value::Value(std::int64_t i) : data_(i) {}
Value::Value(double d) : data_(d) {}
Value::Value(std::string s) : data_(std::move(s)) {
    if (currentBudget()) checkStringSize(std::get<std::string>(data_).size());
}
Value::Value(const char* s) : data_(std::string(s)) {}

Value Value::undefined(std::string reason) {
    Value v;
    v.data_ = Undefined{std::move(reason)};
    return v;
}
Value Value::none() {
    Value v;
    v.data_ = std::monostate{};
    return v;
}
Value Value::list(ValueList items) {
    Value v;
    const int depth = listDepthOf(items);
    v.data_ = ListRef{std::make_shared<const ValueList>(std::move(items)), false, depth};
    return v;
}
Value Value::tuple(ValueList items) {
    Value v;
    const int depth = listDepthOf(items);
    v.data_ = ListRef{std::make_shared<const ValueList>(std::move(items)), true, depth};
    return v;
}
int Value::listDepth() const { return std::get<ListRef>(data_).depth; }
Value Value::dict(ValueDict entries) {
    Value v;
    v.data_ = std::make_shared<const ValueDict>(std::move(entries));
    return v;
}
Value Value::makeNamespace(ValueDict attributes) {
    Value v;
    auto dict = std::make_shared<ValueDict>(std::move(attributes));
    if (RenderBudget* budget = currentBudget()) budget->namespaces.push_back(dict);
    v.data_ = NamespaceRef{std::move(dict)};
    return v;
}
Value Value::function(NativeFunction fn) {
    Value v;
    v.data_ = std::make_shared<const NativeFunction>(std::move(fn));
    return v;
}

const void* Value::identity() const {
    switch (kind()) {
    case Kind::List: return std::get<ListRef>(data_).items.get();
    case Kind::Dict: return std::get<DictRef>(data_).get();
    case Kind::Namespace: return std::get<NamespaceRef>(data_).attributes.get();
    case Kind::Function: return std::get<FunctionRef>(data_).get();
    default: return nullptr;
    }
}

namespace detail {

// ---------------------------------------------------------------------------
// Python semantics of values

std::string typeName(const Value& v) {
    switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return v.isTuple() ? "tuple" : "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Namespace: return "Namespace";
    case Value::Kind::Function: return "function";
    }
    return "object";
}

bool isNumber(const Value& v) { return v.isBool() || v.isInt() || v.isFloat(); }
bool isIntegral(const Value& v) { return v.isBool() || v.isInt(); }  // Python's bool is an int
std::int64_t toInteger(const Value& v) { return v.isBool() ? (v.asBool() ? 1 : 0) : v.asInt(); }
double toDouble(const Value& v) { return v.isFloat() ? v.asFloat() : static_cast<double>(toInteger(v)); }

// repr() of a float: the shortest digits that round-trip, switching to
// exponent form below 1e-4 and from 1e16 on, as Python does.
std::string formatFloat(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    std::string sign;
    if (sci[0] == '-') {
        sign = "-";
        sci.erase(0, 1);
    }
    const std::size_t ePos = sci.find('e');
    const int exponent = std::stoi(sci.substr(ePos + 1));
    std::string digits;
    for (char c : sci.substr(0, ePos))
        if (c != '.') digits += c;

    std::string out;
    if (exponent < -4 || exponent >= 16) {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        const int magnitude = std::abs(exponent);
        out += exponent < 0 ? "e-" : "e+";
        if (magnitude < 10) out += '0';
        out += std::to_string(magnitude);
    } else if (exponent >= 0) {
        const auto intDigits = static_cast<std::size_t>(exponent) + 1;
        if (digits.size() <= intDigits)
            out = digits + std::string(intDigits - digits.size(), '0') + ".0";
        else
            out = digits.substr(0, intDigits) + "." + digits.substr(intDigits);
    } else {
        out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    }
    return sign + out;
}

std::string reprString(std::string_view s) {
    const bool useDouble = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
    const char quote = useDouble ? '"' : '\'';
    std::string out(1, quote);
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == quote || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (u < 0x20 || u == 0x7F) {
            const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xF];
        } else {
            out += c;
        }
    }
    out += quote;
    return out;
}

std::string repr(const Value& v) {
    // A namespace can hold itself (`set ns.a = ns`): printing must stop.
    thread_local int depth = 0;
    struct Guard {
        Guard() {
            if (++depth > kMaxValueDepth + 1) {
                depth = 0;
                fail("a value nested more than " + std::to_string(kMaxValueDepth) +
                     " levels deep cannot be printed (a namespace that holds itself?)");
            }
        }
        ~Guard() { depth = depth > 0 ? depth - 1 : 0; }
    } guard;
    switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.asBool() ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.asInt());
    case Value::Kind::Float: return formatFloat(v.asFloat());
    case Value::Kind::String: return reprString(v.asString());
    case Value::Kind::List: {
        const ValueList& items = v.asList();
        std::string out = v.isTuple() ? "(" : "[";
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (i) out += ", ";
            appendChecked(out, repr(items[i]));
        }
        if (v.isTuple()) return out + (items.size() == 1 ? ",)" : ")");
        return out + "]";
    }
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
        const ValueDict& d = v.isDict() ? v.asDict() : v.namespaceAttributes();
        std::string out = "{";
        bool first = true;
        for (const auto& [key, value] : d.entries()) {
            if (!first) out += ", ";
            first = false;
            appendChecked(out, repr(key) + ": " + repr(value));
        }
        out += "}";
        return v.isDict() ? out : "<Namespace " + out + ">";
    }
    case Value::Kind::Function: return "<function>";
    }
    return "";
}

std::string str(const Value& v) {
    if (v.isString()) return v.asString();
    if (v.isUndefined()) return "";
    return repr(v);
}

bool truthy(const Value& v) {
    switch (v.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.asBool();
    case Value::Kind::Int: return v.asInt() != 0;
    case Value::Kind::Float: return v.asFloat() != 0.0;
    case Value::Kind::String: return !v.asString().empty();
    case Value::Kind::List: return !v.asList().empty();
    case Value::Kind::Dict: return !v.asDict().empty();
    case Value::Kind::Namespace:
    case Value::Kind::Function: return true;
    }
    return false;
}

bool pyEquals(const Value& a, const Value& b) {
    if (isNumber(a) && isNumber(b)) {
        if (isIntegral(a) && isIntegral(b)) return toInteger(a) == toInteger(b);
        return toDouble(a) == toDouble(b);
    }
    if (a.kind() != b.kind() || a.isTuple() != b.isTuple()) return false;
    switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.asString() == b.asString();
    case Value::Kind::List: {
        const auto& x = a.asList();
        const auto& y = b.asList();
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (!pyEquals(x[i], y[i])) return false;
        return true;
    }
    case Value::Kind::Dict: {
        const auto& x = a.asDict();
        const auto& y = b.asDict();
        if (x.size() != y.size()) return false;
        for (const auto& [key, value] : x.entries()) {
            const Value* other = y.find(key);
            if (!other || !pyEquals(value, *other)) return false;
        }
        return true;
    }
    default: return a.identity() == b.identity();
    }
}

// Python's ordering: negative, zero or positive; refuses what Python refuses.
int pyCompare(const Value& a, const Value& b, std::string_view op) {
    if (a.isUndefined()) failUndefined(a);
    if (b.isUndefined()) failUndefined(b);
    if (isNumber(a) && isNumber(b)) {
        if (isIntegral(a) && isIntegral(b)) {
            const auto x = toInteger(a), y = toInteger(b);
            return x < y ? -1 : (x > y ? 1 : 0);
        }
        const double x = toDouble(a), y = toDouble(b);
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.isString() && b.isString()) {
        const int c = a.asString().compare(b.asString());  // UTF-8 byte order = code point order
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (a.isList() && b.isList()) {
        const auto& x = a.asList();
        const auto& y = b.asList();
        for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
            if (!pyEquals(x[i], y[i])) return pyCompare(x[i], y[i], op);
        return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
    }
    fail("'" + std::string(op) + "' not supported between instances of '" + typeName(a) + "' and '" + typeName(b) +
         "'");
}

} // namespace detail

// ---------------------------------------------------------------------------
// ValueDict

const Value* ValueDict::find(const Value& key) const {
    for (const auto& [k, v] : entries_)
        if (pyEquals(k, key)) return &v;
    return nullptr;
}

const Value* ValueDict::find(std::string_view key) const {
    for (const auto& [k, v] : entries_)
        if (k.isString() && k.asString() == key) return &v;
    return nullptr;
}

void ValueDict::set(Value key, Value value) {
    const int depth = std::max({depth_, depthOf(key), depthOf(value)});
    checkedDepth(depth + 1);  // the dict itself is one level more
    depth_ = depth;
    step(static_cast<std::int64_t>(entries_.size() / 256));
    for (auto& entry : entries_) {
        if (pyEquals(entry.first, key)) {
            entry.second = std::move(value);
            return;
        }
    }
    if (entries_.size() >= kMaxItems)
        fail("a dict of more than " + std::to_string(kMaxItems) + " entries is too large");
    entries_.emplace_back(std::move(key), std::move(value));
}

std::string toText(const Value& value) { return str(value); }

namespace detail {

// ---------------------------------------------------------------------------
// Operators

void requireDefined(const Value& v) {
    if (v.isUndefined()) failUndefined(v);
}

[[noreturn]] void failOperands(std::string_view op, const Value& a, const Value& b) {
    fail("unsupported operand type(s) for " + std::string(op) + ": '" + typeName(a) + "' and '" + typeName(b) + "'");
}

// Integer arithmetic wraps instead of invoking undefined behaviour; Python
// would grow the number, which chat templates never need.
std::int64_t wrapAdd(std::int64_t a, std::int64_t b) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}
std::int64_t wrapSub(std::int64_t a, std::int64_t b) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
std::int64_t wrapMul(std::int64_t a, std::int64_t b) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
}

// The bytes a copy of `items` takes: lists hold strings by value.
std::size_t listBytes(const ValueList& items) {
    std::size_t n = 0;
    for (const Value& v : items) n += sizeof(Value) + (v.isString() ? v.asString().size() : 0);
    return n;
}

template <typename T>
T repeat(const T& item, std::int64_t times, std::size_t unit) {
    T out;
    if (times <= 0 || item.empty()) return out;
    if (unit && static_cast<std::uint64_t>(times) > kMaxStringBytes / unit) fail("repetition result is too large");
    for (std::int64_t i = 0; i < times; ++i) out.insert(out.end(), item.begin(), item.end());
    return out;
}

// A list or tuple like `model`, holding `items`.
Value sameSequenceKind(const Value& model, ValueList items) {
    return model.isTuple() ? Value::tuple(std::move(items)) : Value::list(std::move(items));
}

Value add(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (isNumber(a) && isNumber(b)) {
        if (isIntegral(a) && isIntegral(b)) return Value(wrapAdd(toInteger(a), toInteger(b)));
        return Value(toDouble(a) + toDouble(b));
    }
    if (a.isString() && b.isString()) return Value(a.asString() + b.asString());
    if (a.isList() && b.isList()) {
        if (a.isTuple() != b.isTuple())
            fail(std::string("can only concatenate ") + typeName(a) + " (not \"" + typeName(b) + "\") to " + typeName(a));
        ValueList items = a.asList();
        items.insert(items.end(), b.asList().begin(), b.asList().end());
        return sameSequenceKind(a, std::move(items));
    }
    if (a.isString()) fail("can only concatenate str (not \"" + typeName(b) + "\") to str");
    if (a.isList()) fail("can only concatenate list (not \"" + typeName(b) + "\") to list");
    failOperands("+", a, b);
}

Value subtract(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (!isNumber(a) || !isNumber(b)) failOperands("-", a, b);
    if (isIntegral(a) && isIntegral(b)) return Value(wrapSub(toInteger(a), toInteger(b)));
    return Value(toDouble(a) - toDouble(b));
}

Value multiply(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (isNumber(a) && isNumber(b)) {
        if (isIntegral(a) && isIntegral(b)) return Value(wrapMul(toInteger(a), toInteger(b)));
        return Value(toDouble(a) * toDouble(b));
    }
    if (a.isString() && isIntegral(b)) return Value(repeat(a.asString(), toInteger(b), a.asString().size()));
    if (isIntegral(a) && b.isString()) return Value(repeat(b.asString(), toInteger(a), b.asString().size()));
    if (a.isList() && isIntegral(b)) return sameSequenceKind(a, repeat(a.asList(), toInteger(b), listBytes(a.asList())));
    if (isIntegral(a) && b.isList()) return sameSequenceKind(b, repeat(b.asList(), toInteger(a), listBytes(b.asList())));
    failOperands("*", a, b);
}

Value trueDivide(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (!isNumber(a) || !isNumber(b)) failOperands("/", a, b);
    if (toDouble(b) == 0.0) fail("division by zero");
    return Value(toDouble(a) / toDouble(b));
}

Value floorDivide(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (!isNumber(a) || !isNumber(b)) failOperands("//", a, b);
    if (isIntegral(a) && isIntegral(b)) {
        const std::int64_t x = toInteger(a), y = toInteger(b);
        if (y == 0) fail("integer division or modulo by zero");
        if (y == -1) return Value(wrapSub(0, x));
        std::int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
        return Value(q);
    }
    if (toDouble(b) == 0.0) fail("float floor division by zero");
    return Value(std::floor(toDouble(a) / toDouble(b)));
}

// Python's printf-style formatting, `"%s: %d" % (a, b)`: flags, width,
// precision and the conversions s r d i f F e E g G x X o c %.
std::string percentFormat(const std::string& format, const Value& args) {
    const ValueList items = args.isTuple() ? args.asList() : ValueList{args};
    std::size_t next = 0;
    auto take = [&]() -> const Value& {
        if (next >= items.size()) fail("not enough arguments for format string");
        return items[next++];
    };
    std::string out;
    for (std::size_t i = 0; i < format.size(); ++i) {
        if (format[i] != '%') {
            out += format[i];
            continue;
        }
        std::string flags;
        while (++i < format.size() && std::string_view("-+ #0").find(format[i]) != std::string_view::npos)
            flags += format[i];
        // Widths and precisions are bounded: snprintf gets at most 400, text
        // padding at most kMaxStringBytes.
        auto number = [&]() {
            std::string digits;
            if (i < format.size() && format[i] == '*') {
                ++i;
                const std::int64_t n = requireInteger(take(), "* width");
                if (n < 0 || n > static_cast<std::int64_t>(kMaxStringBytes)) fail("format width " + std::to_string(n) + " is out of range");
                return std::to_string(n);
            }
            while (i < format.size() && isAsciiDigit(format[i])) digits += format[i++];
            if (digits.size() > 8) fail("format width or precision " + digits + " is too large");
            return digits;
        };
        const std::string width = number();
        std::string precision;
        if (i < format.size() && format[i] == '.') {
            ++i;
            const std::string digits = number();
            precision = "." + (digits.empty() ? std::string("0") : digits);
        }
        while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
        if (i >= format.size()) fail("incomplete format");
        const char conversion = format[i];
        if (conversion == '%') {
            out += '%';
            continue;
        }
        std::string spec = "%" + flags + width + precision;
        const bool wide = (!width.empty() && std::stoll(width) > 400) ||
                          (precision.size() > 1 && std::stoll(precision.substr(1)) > 400);
        if (wide && conversion != 's' && conversion != 'r')
            fail("format width or precision past 400 for %" + std::string(1, conversion));
        char buffer[1024];
        if (conversion == 's' || conversion == 'r') {
            std::string text = conversion == 's' ? str(take()) : repr(take());
            if (!precision.empty()) text = text.substr(0, static_cast<std::size_t>(std::stoll(precision.substr(1))));
            const std::size_t pad = width.empty() ? 0 : static_cast<std::size_t>(std::stoll(width));
            if (text.size() < pad) {
                const std::string fill(pad - text.size(), ' ');
                text = flags.find('-') != std::string::npos ? text + fill : fill + text;
            }
            appendChecked(out, text);
        } else if (std::string_view("dixXoc").find(conversion) != std::string_view::npos) {
            const Value& v = take();
            if (!isNumber(v)) fail(std::string("%") + conversion + " format: a number is required, not " + typeName(v));
            if (v.isFloat() && !(std::fabs(v.asFloat()) < 9.2e18))
                fail(std::string("%") + conversion + " format: " + formatFloat(v.asFloat()) + " is out of range");
            const long long n = v.isFloat() ? static_cast<long long>(v.asFloat()) : toInteger(v);
            if (conversion == 'c') {
                spec += 'c';
                std::snprintf(buffer, sizeof buffer, spec.c_str(), static_cast<int>(n));
            } else {
                spec += "ll";
                spec += conversion == 'i' ? 'd' : conversion;
                std::snprintf(buffer, sizeof buffer, spec.c_str(), n);
            }
            out += buffer;
        } else if (std::string_view("fFeEgG").find(conversion) != std::string_view::npos) {
            const Value& v = take();
            if (!isNumber(v))
                fail(std::string("%") + conversion + " format: a real number is required, not " + typeName(v));
            spec += conversion;
            std::snprintf(buffer, sizeof buffer, spec.c_str(), toDouble(v));
            out += buffer;
        } else {
            fail(std::string("unsupported format character '") + conversion + "'");
        }
    }
    if (next < items.size()) fail("not all arguments converted during string formatting");
    return out;
}

Value modulo(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (a.isString()) return Value(percentFormat(a.asString(), b));
    if (!isNumber(a) || !isNumber(b)) failOperands("%", a, b);
    if (isIntegral(a) && isIntegral(b)) {
        const std::int64_t x = toInteger(a), y = toInteger(b);
        if (y == 0) fail("integer division or modulo by zero");
        if (y == -1) return Value(std::int64_t{0});
        std::int64_t r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;  // Python: the result takes the divisor's sign
        return Value(r);
    }
    const double x = toDouble(a), y = toDouble(b);
    if (y == 0.0) fail("float modulo");
    double r = std::fmod(x, y);
    if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
    return Value(r);
}

Value power(const Value& a, const Value& b) {
    requireDefined(a);
    requireDefined(b);
    if (!isNumber(a) || !isNumber(b)) failOperands("**", a, b);
    if (isIntegral(a) && isIntegral(b) && toInteger(b) >= 0) {
        std::int64_t result = 1, base = toInteger(a);
        for (std::int64_t e = toInteger(b); e > 0; e >>= 1) {
            if (e & 1) result = wrapMul(result, base);
            base = wrapMul(base, base);
        }
        return Value(result);
    }
    return Value(std::pow(toDouble(a), toDouble(b)));
}

Value negate(const Value& v) {
    requireDefined(v);
    if (isIntegral(v)) return Value(wrapSub(0, toInteger(v)));
    if (v.isFloat()) return Value(-v.asFloat());
    fail("bad operand type for unary -: '" + typeName(v) + "'");
}

bool contains(const Value& container, const Value& item) {
    switch (container.kind()) {
    case Value::Kind::String:
        if (!item.isString()) fail("'in <string>' requires string as left operand, not " + typeName(item));
        return container.asString().find(item.asString()) != std::string::npos;
    case Value::Kind::List:
        step(static_cast<std::int64_t>(container.asList().size() / 256));
        return std::any_of(container.asList().begin(), container.asList().end(),
                           [&](const Value& v) { return pyEquals(v, item); });
    case Value::Kind::Dict: return container.asDict().find(item) != nullptr;
    case Value::Kind::Undefined: return false;  // Jinja's Undefined iterates as empty
    default: fail("argument of type '" + typeName(container) + "' is not iterable");
    }
}

// The items a `for` loop or a filter walks: list items, dict keys, string
// characters; undefined walks as empty, like Jinja's Undefined.
ValueList iterate(const Value& v) {
    if (v.isList()) step(static_cast<std::int64_t>(v.asList().size() / 256));
    else if (v.isString()) step(static_cast<std::int64_t>(v.asString().size() / 256));
    switch (v.kind()) {
    case Value::Kind::List: return v.asList();
    case Value::Kind::Dict: {
        ValueList keys;
        for (const auto& entry : v.asDict().entries()) keys.push_back(entry.first);
        return keys;
    }
    case Value::Kind::String: {
        ValueList chars;
        for (std::string_view cp : codePoints(v.asString())) chars.emplace_back(std::string(cp));
        return chars;
    }
    case Value::Kind::Undefined: return {};
    default: fail("'" + typeName(v) + "' object is not iterable");
    }
}

ValueList dictItems(const ValueDict& d) {
    ValueList items;
    for (const auto& [key, value] : d.entries()) items.push_back(Value::tuple({key, value}));
    return items;
}

std::int64_t lengthOf(const Value& v) {
    switch (v.kind()) {
    case Value::Kind::String: return static_cast<std::int64_t>(codePointCount(v.asString()));
    case Value::Kind::List: return static_cast<std::int64_t>(v.asList().size());
    case Value::Kind::Dict: return static_cast<std::int64_t>(v.asDict().size());
    case Value::Kind::Undefined: return 0;
    default: fail("object of type '" + typeName(v) + "' has no len()");
    }
}

// ---------------------------------------------------------------------------
// Attribute and item access, following Jinja's environment.getattr/getitem:
// `a.b` prefers a method named b, `a['b']` prefers the key b; a miss is an
// undefined value, and using an undefined value's attributes is an error.

std::string objectName(const Value& v) { return "'" + typeName(v) + " object'"; }

Value getAttribute(const Value& object, const std::string& name) {
    switch (object.kind()) {
    case Value::Kind::Undefined: failUndefined(object);
    case Value::Kind::Dict: {
        Value method = dictMethod(object, name);
        if (!method.isUndefined()) return method;
        if (const Value* found = object.asDict().find(std::string_view(name))) return *found;
        break;
    }
    case Value::Kind::Namespace:
        if (const Value* found = object.namespaceAttributes().find(std::string_view(name))) return *found;
        break;
    case Value::Kind::String: {
        Value method = stringMethod(object, name);
        if (!method.isUndefined()) return method;
        break;
    }
    default: break;
    }
    return Value::undefined(objectName(object) + " has no attribute '" + name + "'");
}

// Python's index normalisation for a sequence of `size` items; nullopt when
// out of range.
std::optional<std::size_t> normaliseIndex(std::int64_t index, std::size_t size) {
    const auto n = static_cast<std::int64_t>(size);
    if (index < 0) index += n;
    if (index < 0 || index >= n) return std::nullopt;
    return static_cast<std::size_t>(index);
}

Value getItem(const Value& object, const Value& key) {
    switch (object.kind()) {
    case Value::Kind::Undefined: failUndefined(object);
    case Value::Kind::Dict:
        if (const Value* found = object.asDict().find(key)) return *found;
        break;
    case Value::Kind::Namespace:
        if (key.isString()) {
            if (const Value* found = object.namespaceAttributes().find(std::string_view(key.asString())))
                return *found;
        }
        break;
    case Value::Kind::List:
        if (isIntegral(key)) {
            if (auto i = normaliseIndex(toInteger(key), object.asList().size())) return object.asList()[*i];
        }
        break;
    case Value::Kind::String:
        if (isIntegral(key)) {
            const auto units = codePoints(object.asString());
            if (auto i = normaliseIndex(toInteger(key), units.size())) return Value(std::string(units[*i]));
        }
        break;
    default: break;
    }
    if (key.isString() && !object.isNamespace()) {
        Value attribute = getAttribute(object, key.asString());
        if (!attribute.isUndefined()) return attribute;
    }
    if (isIntegral(key) && (object.isList() || object.isString()))
        return Value::undefined(objectName(object) + " has no element " + std::to_string(toInteger(key)));
    return Value::undefined(objectName(object) + " has no attribute " + repr(key));
}

// Python slicing, any step sign, for lists and strings.
Value sliceOf(const Value& object, const Value& startValue, const Value& stopValue, const Value& stepValue) {
    auto bound = [](const Value& v, std::string_view what) -> std::optional<std::int64_t> {
        if (v.isNone() || v.isUndefined()) return std::nullopt;
        return requireInteger(v, what);
    };
    const std::int64_t step = bound(stepValue, "slice step").value_or(1);
    if (step == 0) fail("slice step cannot be zero");
    requireDefined(object);

    std::vector<std::string_view> units;
    std::size_t size = 0;
    if (object.isString()) {
        units = codePoints(object.asString());
        size = units.size();
    } else if (object.isList()) {
        size = object.asList().size();
    } else {
        fail("'" + typeName(object) + "' object is not subscriptable");
    }
    const auto n = static_cast<std::int64_t>(size);
    auto clamp = [&](std::optional<std::int64_t> v, std::int64_t forwardDefault, std::int64_t backwardDefault) {
        if (!v) return step > 0 ? forwardDefault : backwardDefault;
        std::int64_t i = *v;
        if (i < 0) i += n;
        if (step > 0) return std::clamp<std::int64_t>(i, 0, n);
        return std::clamp<std::int64_t>(i, -1, n - 1);
    };
    const std::int64_t start = clamp(bound(startValue, "slice index"), 0, n - 1);
    const std::int64_t stop = clamp(bound(stopValue, "slice index"), n, -1);

    std::vector<std::size_t> picked;
    for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        picked.push_back(static_cast<std::size_t>(i));
    if (object.isString()) {
        std::string out;
        for (std::size_t i : picked) out += units[i];
        return Value(std::move(out));
    }
    ValueList out;
    for (std::size_t i : picked) out.push_back(object.asList()[i]);
    return sameSequenceKind(object, std::move(out));
}

// Jinja's attribute paths for filters: "a.b.0" walks keys and indexes.
Value getAttributePath(const Value& object, const std::string& path) {
    Value current = object;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = path.find('.', start);
        const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (current.isUndefined()) return current;
        if (!part.empty() && std::all_of(part.begin(), part.end(), isAsciiDigit))
            current = getItem(current, Value(static_cast<std::int64_t>(std::stoll(part))));
        else
            current = getItem(current, Value(part));
        if (dot == std::string::npos) return current;
        start = dot + 1;
    }
}

} // namespace detail

} // namespace moe::jinja
