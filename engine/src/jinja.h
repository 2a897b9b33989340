#pragma once
// A small Jinja interpreter for the subset that Hugging Face chat templates
// use. Values behave like the Python objects Jinja2 works on (str, int,
// float, bool, None, list, dict), so a template written for transformers
// renders the same text here: same truthiness, same str() of numbers and
// lists, same handling of undefined names.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace moe::jinja {

class Value;
class ValueDict;
using ValueList = std::vector<Value>;

// The arguments of a call written in a template: f(a, b, key=c).
struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> named;
};
using NativeFunction = std::function<Value(const CallArgs&)>;

class Value {
public:
    // The order matches the alternatives of `data_`.
    enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };

    Value();  // undefined
    Value(bool b);
    Value(int i);
    Value(std::int64_t i);
    Value(double d);
    Value(std::string s);
    Value(const char* s);

    // `reason` is the message shown when the template uses the value in a
    // way Jinja's Undefined refuses (arithmetic, attribute access).
    static Value undefined(std::string reason);
    static Value none();
    static Value list(ValueList items);
    // A Python tuple: a list that prints as (a, b) and is never equal to a
    // list. isList() is true for both.
    static Value tuple(ValueList items);
    static Value dict(ValueDict entries);
    // Jinja's namespace(): the one mutable object, for `set ns.attr = ...`.
    static Value makeNamespace(ValueDict attributes);
    static Value function(NativeFunction fn);

    Kind kind() const { return static_cast<Kind>(data_.index()); }
    bool isUndefined() const { return kind() == Kind::Undefined; }
    bool isNone() const { return kind() == Kind::None; }
    bool isBool() const { return kind() == Kind::Bool; }
    bool isInt() const { return kind() == Kind::Int; }
    bool isFloat() const { return kind() == Kind::Float; }
    bool isString() const { return kind() == Kind::String; }
    bool isList() const { return kind() == Kind::List; }
    bool isTuple() const { return isList() && std::get<ListRef>(data_).tuple; }
    bool isDict() const { return kind() == Kind::Dict; }
    bool isNamespace() const { return kind() == Kind::Namespace; }
    bool isFunction() const { return kind() == Kind::Function; }

    bool asBool() const { return std::get<bool>(data_); }
    std::int64_t asInt() const { return std::get<std::int64_t>(data_); }
    double asFloat() const { return std::get<double>(data_); }
    const std::string& asString() const { return std::get<std::string>(data_); }
    const ValueList& asList() const { return *std::get<ListRef>(data_).items; }
    const ValueDict& asDict() const { return *std::get<DictRef>(data_); }
    ValueDict& namespaceAttributes() const { return *std::get<NamespaceRef>(data_).attributes; }
    const NativeFunction& asFunction() const { return *std::get<FunctionRef>(data_); }
    const std::string& undefinedReason() const { return std::get<Undefined>(data_).reason; }
    int listDepth() const;  // of a list or tuple: 1 + the deepest item's nesting

    // Identity of shared objects (namespaces, functions), for `is sameas`.
    const void* identity() const;

private:
    struct Undefined {
        std::string reason;
    };
    struct NamespaceRef {
        std::shared_ptr<ValueDict> attributes;
    };
    struct ListRef {
        std::shared_ptr<const ValueList> items;
        bool tuple = false;
        int depth = 1; // nesting of lists/dicts/namespaces, this one included
    };
    using DictRef = std::shared_ptr<const ValueDict>;
    using FunctionRef = std::shared_ptr<const NativeFunction>;

    std::variant<Undefined, std::monostate, bool, std::int64_t, double, std::string, ListRef, DictRef, NamespaceRef,
                 FunctionRef>
        data_;
};

// A Python dict: keeps insertion order. Chat-template dicts hold a handful of
// keys, so a linear search beats hashing arbitrary values.
class ValueDict {
public:
    const Value* find(const Value& key) const;
    const Value* find(std::string_view key) const;
    void set(Value key, Value value);
    const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
    std::size_t size() const { return entries_.size(); }
    bool empty() const { return entries_.empty(); }
    // Nesting of the values held (0 when empty); grows as set() adds deeper ones.
    int depth() const { return depth_; }
    void clear() { entries_.clear(); }

private:
    std::vector<std::pair<Value, Value>> entries_;
    int depth_ = 0;
};

// Python's str() of a value as Jinja prints it ("" for undefined).
std::string toText(const Value& value);

struct Options {
    // Jinja's Environment switches; transformers turns the first two on.
    bool trimBlocks = false;    // drop the first newline after a block tag
    bool lstripBlocks = false;  // drop spaces/tabs before a block tag on its line
    bool keepTrailingNewline = false;
    // Starts every error message, e.g. "chat template syntax error on line 3".
    std::string name = "template";
    // Bounds on one render, so that no template can run or grow without end
    // (each error names the template and the line): statements executed,
    // loop passes, macro and function calls and filters count as steps (long
    // lists count in proportion); the rendered text's size; and a flag
    // another thread may set to stop the render (checked at every step; it
    // throws moe::Cancelled, which front ends treat as a stop).
    // Strings are capped at 16 MiB, lists at 2^20 items, values at 100 levels
    // of nesting (jinja_values.h).
    std::int64_t maxSteps = 500'000;
    std::size_t maxOutputBytes = std::size_t(16) << 20;
    const std::atomic<bool>* cancel = nullptr;
};

class Template {
public:
    // Parses the source; throws moe::Error naming the line of a syntax error.
    explicit Template(std::string_view source, Options options = {});
    ~Template();
    Template(const Template&) = default;
    Template& operator=(const Template&) = default;
    Template(Template&&) noexcept = default;
    Template& operator=(Template&&) noexcept = default;

    // Renders with the given variables (plus Jinja's range, dict and
    // namespace). Errors raised by the template's own rules come out as
    // moe::Error naming the line; moe::Error thrown by a NativeFunction
    // (such as raise_exception) passes through unchanged.
    std::string render(const std::vector<std::pair<std::string, Value>>& variables) const;

    struct Program;

private:
    std::shared_ptr<const Program> program_;
};

} // namespace moe::jinja
