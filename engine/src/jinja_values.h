#pragma once
// Internals of the Jinja interpreter: the Python semantics of template
// values (printing, comparison, arithmetic, attribute access) and Jinja's
// filters, tests and global functions, all in jinja_values.cpp. The
// language itself (lexer, parser, renderer) is in jinja.cpp.
#include "jinja.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace moe::jinja::detail {

// A failure while rendering. The statement that hit it fills in its line on
// the way out, so deep helpers need not know where they are.
class EvalError : public std::runtime_error {
public:
    explicit EvalError(const std::string& message) : std::runtime_error(message) {}
    int line = 0;
};

[[noreturn]] void fail(const std::string& message);

// Limits on what one render can build (see Options in jinja.h for the rest).
constexpr std::size_t kMaxStringBytes = std::size_t(16) << 20;
constexpr std::size_t kMaxItems = std::size_t(1) << 20;  // one list, tuple or dict
constexpr int kMaxValueDepth = 100;                      // lists/dicts/namespaces inside each other
constexpr std::size_t kMaxBuiltBytes = std::size_t(512) << 20; // all lists one render builds

// The step budget of the render running on this thread (Template::render
// installs it); values built outside a render are not counted.
struct RenderBudget {
    std::int64_t steps = 0, maxSteps = 0;
    std::size_t bytes = 0;  // of the lists built
    const std::atomic<bool>* cancel = nullptr;
    std::string name; // the template's, for the Cancelled message
    // Namespaces made by the render: emptied when it ends, which frees those
    // that hold themselves (`set ns.a = ns`).
    std::vector<std::weak_ptr<ValueDict>> namespaces;
};
RenderBudget*& currentBudget();
// Counts `units` steps; throws EvalError when the budget is spent and
// moe::Cancelled when the render was cancelled (a stop, not a template error).
void step(std::int64_t units = 1);
// Throws EvalError when a string of `bytes` would pass kMaxStringBytes.
void checkStringSize(std::size_t bytes);
// Appends, refusing a result past kMaxStringBytes.
void appendChecked(std::string& out, std::string_view piece);
// Nesting depth of a value: 0 for scalars, 1 for a flat list, and so on.
int depthOf(const Value& v);
// Using an undefined value where Jinja's Undefined refuses: its reason.
[[noreturn]] void failUndefined(const Value& value);
void requireDefined(const Value& value);

inline bool isAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool isAsciiDigit(char c) { return c >= '0' && c <= '9'; }
void appendUtf8(std::string& out, char32_t codePoint);

// Python's type name, str() and repr().
std::string typeName(const Value& v);
std::string str(const Value& v);
std::string repr(const Value& v);
std::string reprString(std::string_view s);

bool isNumber(const Value& v);
std::int64_t requireInteger(const Value& v, std::string_view what);  // bool counts, as in Python
bool truthy(const Value& v);
bool pyEquals(const Value& a, const Value& b);
// Negative, zero or positive; throws where Python cannot order the values.
int pyCompare(const Value& a, const Value& b, std::string_view op);

Value add(const Value& a, const Value& b);
Value subtract(const Value& a, const Value& b);
Value multiply(const Value& a, const Value& b);
Value trueDivide(const Value& a, const Value& b);
Value floorDivide(const Value& a, const Value& b);
Value modulo(const Value& a, const Value& b);
Value power(const Value& a, const Value& b);
Value negate(const Value& v);
bool contains(const Value& container, const Value& item);  // Python's `item in container`

// The items a `for` loop walks: list items, dict keys, string characters;
// undefined walks as empty.
ValueList iterate(const Value& v);

// `object.name`, `object[key]` and `object[start:stop:step]`.
Value getAttribute(const Value& object, const std::string& name);
Value getItem(const Value& object, const Value& key);
Value sliceOf(const Value& object, const Value& start, const Value& stop, const Value& step);

using FilterFn = Value (*)(const Value& value, const CallArgs& args);
using TestFn = bool (*)(const Value& value, const CallArgs& args);
FilterFn findFilter(std::string_view name);  // nullptr when unknown
TestFn findTest(std::string_view name);      // nullptr when unknown
Value applyFilter(std::string_view name, const Value& value, const CallArgs& args);
bool applyTest(std::string_view name, const Value& value, const CallArgs& args);

// Jinja's range(), dict() and namespace().
void addGlobalFunctions(std::unordered_map<std::string, Value>& globals);


// Shared by the value semantics (jinja_values.cpp) and the builtins
// (jinja_builtins.cpp).
bool isIntegral(const Value& v);                 // int or bool
std::int64_t toInteger(const Value& v);          // of an integral value
double toDouble(const Value& v);                 // of a number
std::string formatFloat(double v);               // Python's repr of a float
std::int64_t lengthOf(const Value& v);           // Python's len()
ValueList dictItems(const ValueDict& d);         // (key, value) tuples
std::int64_t wrapSub(std::int64_t a, std::int64_t b); // wraps instead of overflowing (no undefined behaviour)
// Python's `format % args`.
std::string percentFormat(const std::string& format, const Value& args);
// A dotted path ("a.b.0") as Jinja's attribute filters take it.
Value getAttributePath(const Value& object, const std::string& path);
// The bound method `name` of a dict or a string; undefined when there is none.
Value dictMethod(const Value& self, std::string_view name);
Value stringMethod(const Value& self, std::string_view name);

// Strings by code point (Python indexes them so), and Python's case rules.
std::vector<std::string_view> codePoints(std::string_view s);
std::size_t codePointCount(std::string_view s);
char32_t decodeCodePoint(std::string_view unit);
bool isPythonSpace(char32_t cp);
char asciiLower(char c);
char asciiUpper(char c);
std::string toUpper(std::string s);
std::string toLower(std::string s);
std::string capitalize(const std::string& s);

} // namespace moe::jinja::detail
