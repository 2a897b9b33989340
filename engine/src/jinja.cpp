// The Jinja language: a lexer with Jinja's whitespace rules, a
// recursive-descent parser and a tree-walking renderer. Values and the
// built-in filters live in jinja_values.cpp.
#include "jinja.h"

#include "jinja_values.h"
#include "moe/error.h"

#include <algorithm>
#include <charconv>
#include <memory>
#include <unordered_map>

namespace moe::jinja {

using namespace detail;

namespace {

constexpr int kMaxCallDepth = 200;  // macro recursion
constexpr int kMaxNesting = 200;    // blocks plus expression levels, to bound recursion

// ---------------------------------------------------------------------------
// Syntax tree

class Renderer;

struct Expr {
    explicit Expr(int line) : line(line) {}
    virtual ~Expr() = default;
    virtual Value eval(Renderer& r) const = 0;
    int line;
};
using ExprPtr = std::unique_ptr<Expr>;

enum class Flow { Normal, Break, Continue };

struct Node {
    explicit Node(int line) : line(line) {}
    virtual ~Node() = default;
    virtual Flow render(Renderer& r) const = 0;
    int line;
};
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct ArgExprs {
    std::vector<ExprPtr> positional;
    std::vector<std::pair<std::string, ExprPtr>> named;
};

struct FilterCall {
    std::string name;
    ArgExprs args;
    int line = 0;
};

struct Scope {
    std::unordered_map<std::string, Value> variables;
    std::shared_ptr<Scope> parent;
};

class Renderer {
public:
    explicit Renderer(std::shared_ptr<Scope> root) : rootScope(root), currentScope(std::move(root)) {}

    Value lookup(const std::string& name) const {
        for (const Scope* s = currentScope.get(); s; s = s->parent.get()) {
            const auto it = s->variables.find(name);
            if (it != s->variables.end()) return it->second;
        }
        return Value::undefined("'" + name + "' is undefined");
    }
    void assign(const std::string& name, Value value) { currentScope->variables[name] = std::move(value); }

    Flow renderBody(const Body& body) {
        for (const auto& node : body) {
            Flow flow;
            try {
                step();
                flow = node->render(*this);
            } catch (EvalError& e) {
                if (e.line == 0) e.line = node->line;
                throw;
            }
            if (flow != Flow::Normal) return flow;
        }
        return Flow::Normal;
    }

    // Appends rendered text, refusing output past Options::maxOutputBytes
    // (captured blocks count on their own buffer the same way).
    void emit(std::string_view text) {
        if (output.size() + text.size() > maxOutputBytes)
            fail("the rendered text passes " + std::to_string(maxOutputBytes) + " bytes");
        output += text;
    }

    // Renders `body` into its own buffer (set blocks, filter blocks, macros).
    std::string capture(const Body& body) {
        std::string saved = std::move(output);
        output.clear();
        renderBody(body);
        std::string captured = std::move(output);
        output = std::move(saved);
        return captured;
    }

    CallArgs evalArgs(const ArgExprs& exprs) {
        CallArgs args;
        for (const auto& e : exprs.positional) args.positional.push_back(e->eval(*this));
        for (const auto& [name, e] : exprs.named) args.named.emplace_back(name, e->eval(*this));
        return args;
    }

    Value filter(const FilterCall& call, const Value& subject) {
        step();
        return applyFilter(call.name, subject, evalArgs(call.args));
    }

    // Makes a child of `parent` the current scope until destroyed.
    class ScopeSwitch {
    public:
        ScopeSwitch(Renderer& r, std::shared_ptr<Scope> parent) : r_(r), saved_(r.currentScope) {
            auto scope = std::make_shared<Scope>();
            scope->parent = std::move(parent);
            r_.currentScope = std::move(scope);
        }
        ~ScopeSwitch() { r_.currentScope = std::move(saved_); }
        ScopeSwitch(const ScopeSwitch&) = delete;
        ScopeSwitch& operator=(const ScopeSwitch&) = delete;

    private:
        Renderer& r_;
        std::shared_ptr<Scope> saved_;
    };

    std::string output;
    std::size_t maxOutputBytes = 0;
    std::shared_ptr<Scope> rootScope;     // render variables and top-level sets; macros see these
    std::shared_ptr<Scope> currentScope;  // innermost loop pass or macro call
    int callDepth = 0;                    // nested macro calls
};

// ----- expressions

struct LiteralExpr : Expr {
    LiteralExpr(int line, Value value) : Expr(line), value(std::move(value)) {}
    Value eval(Renderer&) const override { return value; }
    Value value;
};

struct NameExpr : Expr {
    NameExpr(int line, std::string name) : Expr(line), name(std::move(name)) {}
    Value eval(Renderer& r) const override { return r.lookup(name); }
    std::string name;
};

// [a, b] or a tuple (a, b).
struct ListExpr : Expr {
    ListExpr(int line, bool tuple) : Expr(line), tuple(tuple) {}
    Value eval(Renderer& r) const override {
        ValueList values;
        for (const auto& item : items) values.push_back(item->eval(r));
        return tuple ? Value::tuple(std::move(values)) : Value::list(std::move(values));
    }
    std::vector<ExprPtr> items;
    bool tuple;
};

struct DictExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        ValueDict d;
        for (const auto& [key, value] : entries) d.set(key->eval(r), value->eval(r));
        return Value::dict(std::move(d));
    }
    std::vector<std::pair<ExprPtr, ExprPtr>> entries;
};

struct AttributeExpr : Expr {
    AttributeExpr(int line, ExprPtr object, std::string name)
        : Expr(line), object(std::move(object)), name(std::move(name)) {}
    Value eval(Renderer& r) const override { return getAttribute(object->eval(r), name); }
    ExprPtr object;
    std::string name;
};

struct SubscriptExpr : Expr {
    SubscriptExpr(int line, ExprPtr object, ExprPtr index)
        : Expr(line), object(std::move(object)), index(std::move(index)) {}
    Value eval(Renderer& r) const override {
        const Value container = object->eval(r);
        return getItem(container, index->eval(r));
    }
    ExprPtr object, index;
};

struct SliceExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        const Value container = object->eval(r);
        auto part = [&](const ExprPtr& e) { return e ? e->eval(r) : Value::none(); };
        return sliceOf(container, part(start), part(stop), part(step));
    }
    ExprPtr object, start, stop, step;
};

struct CallExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        const Value fn = callee->eval(r);
        if (fn.isUndefined()) failUndefined(fn);
        if (!fn.isFunction()) fail("'" + typeName(fn) + "' object is not callable");
        step();
        return fn.asFunction()(r.evalArgs(args));
    }
    ExprPtr callee;
    ArgExprs args;
};

struct FilterExpr : Expr {
    FilterExpr(int line, ExprPtr subject, FilterCall call)
        : Expr(line), subject(std::move(subject)), call(std::move(call)) {}
    Value eval(Renderer& r) const override { return r.filter(call, subject->eval(r)); }
    ExprPtr subject;
    FilterCall call;
};

struct TestExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        const Value value = subject->eval(r);
        return Value(applyTest(name, value, r.evalArgs(args)) != negated);
    }
    ExprPtr subject;
    std::string name;
    ArgExprs args;
    bool negated = false;
};

struct NotExpr : Expr {
    NotExpr(int line, ExprPtr operand) : Expr(line), operand(std::move(operand)) {}
    Value eval(Renderer& r) const override { return Value(!truthy(operand->eval(r))); }
    ExprPtr operand;
};

struct NegateExpr : Expr {
    NegateExpr(int line, ExprPtr operand, bool minus) : Expr(line), operand(std::move(operand)), minus(minus) {}
    Value eval(Renderer& r) const override {
        Value v = operand->eval(r);
        if (minus) return negate(v);
        requireDefined(v);
        if (!isNumber(v)) fail("bad operand type for unary +: '" + typeName(v) + "'");
        return v;
    }
    ExprPtr operand;
    bool minus;
};

// `and`/`or` return an operand, as in Python, and short-circuit.
struct LogicExpr : Expr {
    LogicExpr(int line, bool isAnd, ExprPtr left, ExprPtr right)
        : Expr(line), isAnd(isAnd), left(std::move(left)), right(std::move(right)) {}
    Value eval(Renderer& r) const override {
        Value first = left->eval(r);
        if (truthy(first) != isAnd) return first;
        return right->eval(r);
    }
    bool isAnd;
    ExprPtr left, right;
};

struct BinaryExpr : Expr {
    BinaryExpr(int line, std::string op, ExprPtr left, ExprPtr right)
        : Expr(line), op(std::move(op)), left(std::move(left)), right(std::move(right)) {}
    Value eval(Renderer& r) const override {
        const Value a = left->eval(r);
        const Value b = right->eval(r);
        if (op == "+") return add(a, b);
        if (op == "-") return subtract(a, b);
        if (op == "*") return multiply(a, b);
        if (op == "/") return trueDivide(a, b);
        if (op == "//") return floorDivide(a, b);
        if (op == "%") return modulo(a, b);
        if (op == "**") return power(a, b);
        if (op == "~") return Value(str(a) + str(b));
        fail("unknown operator " + op);
    }
    std::string op;
    ExprPtr left, right;
};

// Comparison chains: a < b <= c means a < b and b <= c, each operand once.
struct CompareExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        Value left = first->eval(r);
        for (const auto& [op, expr] : rest) {
            Value right = expr->eval(r);
            bool ok;
            if (op == "==") ok = pyEquals(left, right);
            else if (op == "!=") ok = !pyEquals(left, right);
            else if (op == "in") ok = contains(right, left);
            else if (op == "not in") ok = !contains(right, left);
            else {
                const int c = pyCompare(left, right, op);
                ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
            }
            if (!ok) return Value(false);
            left = std::move(right);
        }
        return Value(true);
    }
    ExprPtr first;
    std::vector<std::pair<std::string, ExprPtr>> rest;
};

struct ConditionalExpr : Expr {
    using Expr::Expr;
    Value eval(Renderer& r) const override {
        if (truthy(condition->eval(r))) return then->eval(r);
        return otherwise ? otherwise->eval(r) : Value::undefined("the inline if-expression's condition was false");
    }
    ExprPtr condition, then, otherwise;
};

// ----- statements

struct TextNode : Node {
    TextNode(int line, std::string text) : Node(line), text(std::move(text)) {}
    Flow render(Renderer& r) const override {
        r.emit(text);
        return Flow::Normal;
    }
    std::string text;
};

struct OutputNode : Node {
    OutputNode(int line, ExprPtr expr) : Node(line), expr(std::move(expr)) {}
    Flow render(Renderer& r) const override {
        r.emit(str(expr->eval(r)));
        return Flow::Normal;
    }
    ExprPtr expr;
};

struct IfNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        for (const auto& [condition, body] : branches)
            if (truthy(condition->eval(r))) return r.renderBody(body);
        return r.renderBody(otherwise);
    }
    std::vector<std::pair<ExprPtr, Body>> branches;
    Body otherwise;
};

// Binds loop/set targets: one name takes the value, several unpack it.
void bindTargets(Renderer& r, const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
        r.assign(targets[0], value);
        return;
    }
    const ValueList parts = iterate(value);
    if (parts.size() != targets.size())
        fail(parts.size() < targets.size()
                 ? "not enough values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                       std::to_string(parts.size()) + ")"
                 : "too many values to unpack (expected " + std::to_string(targets.size()) + ")");
    for (std::size_t i = 0; i < targets.size(); ++i) r.assign(targets[i], parts[i]);
}

Value makeLoopObject(const ValueList& items, std::size_t index) {
    const auto length = static_cast<std::int64_t>(items.size());
    const auto i = static_cast<std::int64_t>(index);
    ValueDict loop;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(length - i));
    loop.set("revindex0", Value(length - i - 1));
    loop.set("first", Value(index == 0));
    loop.set("last", Value(index + 1 == items.size()));
    loop.set("length", Value(length));
    loop.set("depth", Value(1));
    loop.set("depth0", Value(0));
    if (index > 0) loop.set("previtem", items[index - 1]);
    if (index + 1 < items.size()) loop.set("nextitem", items[index + 1]);
    loop.set("cycle", Value::function([i](const CallArgs& a) {
                 if (a.positional.empty()) fail("no items for cycling given");
                 return a.positional[static_cast<std::size_t>(i) % a.positional.size()];
             }));
    return Value::dict(std::move(loop));
}

struct ForNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        ValueList items = iterate(iterable->eval(r));
        const std::shared_ptr<Scope> outer = r.currentScope;
        if (filter) {
            ValueList kept;
            for (Value& item : items) {
                step();
                Renderer::ScopeSwitch scope(r, outer);
                bindTargets(r, targets, item);
                if (truthy(filter->eval(r))) kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        if (items.empty()) {
            Renderer::ScopeSwitch scope(r, outer);
            r.renderBody(otherwise);
            return Flow::Normal;
        }
        for (std::size_t i = 0; i < items.size(); ++i) {
            // A fresh scope per iteration: Jinja forgets `set`s made in the
            // previous pass (namespaces are how templates carry state).
            step();
            Renderer::ScopeSwitch scope(r, outer);
            bindTargets(r, targets, items[i]);
            r.assign("loop", makeLoopObject(items, i));
            if (r.renderBody(body) == Flow::Break) break;
        }
        return Flow::Normal;
    }
    std::vector<std::string> targets;
    ExprPtr iterable, filter;
    Body body, otherwise;
};

struct SetNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        const Value v = value->eval(r);
        if (!attribute.empty()) {
            const Value ns = r.lookup(targets[0]);
            if (!ns.isNamespace()) fail("cannot assign attribute on non-namespace object '" + targets[0] + "'");
            ns.namespaceAttributes().set(Value(attribute), v);
        } else {
            bindTargets(r, targets, v);
        }
        return Flow::Normal;
    }
    std::vector<std::string> targets;
    std::string attribute;  // set for `set ns.attribute = ...`
    ExprPtr value;
};

struct SetBlockNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        Value v(r.capture(body));
        for (const auto& call : filters) v = r.filter(call, v);
        r.assign(target, v);
        return Flow::Normal;
    }
    std::string target;
    std::vector<FilterCall> filters;
    Body body;
};

struct FilterBlockNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        Value v(r.capture(body));
        for (const auto& call : filters) v = r.filter(call, v);
        r.emit(str(v));
        return Flow::Normal;
    }
    std::vector<FilterCall> filters;
    Body body;
};

struct MacroNode : Node {
    using Node::Node;
    Flow render(Renderer& r) const override {
        r.assign(name, Value::function([this, &r](const CallArgs& args) { return call(r, args); }));
        return Flow::Normal;
    }
    Value call(Renderer& r, const CallArgs& args) const {
        if (r.callDepth >= kMaxCallDepth) fail("macro '" + name + "' recursed too deeply");
        step();
        ++r.callDepth;
        struct DepthGuard {
            int& depth;
            ~DepthGuard() { --depth; }
        } guard{r.callDepth};

        Renderer::ScopeSwitch scope(r, r.rootScope);
        ValueList extra;
        for (std::size_t i = 0; i < args.positional.size(); ++i) {
            if (i < params.size()) r.assign(params[i].first, args.positional[i]);
            else extra.push_back(args.positional[i]);
        }
        ValueDict extraNamed;
        std::vector<bool> given(params.size(), false);
        for (std::size_t i = 0; i < params.size() && i < args.positional.size(); ++i) given[i] = true;
        for (const auto& [key, value] : args.named) {
            const std::string& named = key;  // (clang 14 cannot capture a structured binding)
            const auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.first == named; });
            if (it == params.end()) {
                extraNamed.set(Value(key), value);
                continue;
            }
            const auto index = static_cast<std::size_t>(it - params.begin());
            if (given[index]) fail("macro '" + name + "' got multiple values for argument '" + key + "'");
            given[index] = true;
            r.assign(key, value);
        }
        // Defaults are evaluated at call time and may use earlier parameters.
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (given[i]) continue;
            r.assign(params[i].first, params[i].second ? params[i].second->eval(r)
                                                       : Value::undefined("parameter '" + params[i].first +
                                                                          "' was not provided"));
        }
        r.assign("varargs", Value::tuple(std::move(extra)));
        r.assign("kwargs", Value::dict(std::move(extraNamed)));
        return Value(r.capture(body));
    }
    std::string name;
    std::vector<std::pair<std::string, ExprPtr>> params;
    Body body;
};

struct LoopControlNode : Node {
    LoopControlNode(int line, Flow flow) : Node(line), flow(flow) {}
    Flow render(Renderer&) const override { return flow; }
    Flow flow;
};

// ---------------------------------------------------------------------------
// Lexer

enum class TokenType {
    Text,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    EndOfInput
};

struct Token {
    TokenType type;
    std::string text;  // text, name, operator, or the decoded string literal
    int line = 1;
    std::int64_t integer = 0;
    double floating = 0.0;
};

[[noreturn]] void syntaxError(const std::string& prefix, int line, const std::string& message) {
    throw moe::Error(prefix + " syntax error on line " + std::to_string(line) + ": " + message);
}

bool isInlineSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool isSpace(char c) { return isInlineSpace(c) || c == '\n'; }
bool isNameStart(char c) { return isAsciiAlpha(c) || c == '_'; }
bool isNameChar(char c) { return isNameStart(c) || isAsciiDigit(c); }

class Lexer {
public:
    Lexer(std::string source, const Options& options) : src_(std::move(source)), options_(options) {
        lineStarts_.push_back(0);
        for (std::size_t i = 0; i < src_.size(); ++i)
            if (src_[i] == '\n') lineStarts_.push_back(i + 1);
    }

    std::vector<Token> tokenize() {
        std::size_t pos = 0;
        const std::size_t n = src_.size();
        while (pos < n) {
            const std::size_t tag = findTagStart(pos);
            std::string_view text(src_.data() + pos, (tag == std::string::npos ? n : tag) - pos);
            char kind = 0, modifier = 0;
            if (tag != std::string::npos) {
                kind = src_[tag + 1];
                modifier = tag + 2 < n ? src_[tag + 2] : '\0';
                if (modifier == '-') {
                    while (!text.empty() && isSpace(text.back())) text.remove_suffix(1);
                } else if (modifier != '+' && kind != '{' && options_.lstripBlocks) {
                    text = stripIndentBeforeTag(text, pos);
                }
            }
            if (!text.empty()) push(TokenType::Text, std::string(text), lineAt(pos));
            if (tag == std::string::npos) break;

            const std::size_t inner = tag + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
            if (kind == '#') {
                pos = skipComment(tag, inner);
            } else {
                const std::size_t begin = tokens_.size();
                pos = lexTag(tag, inner, kind == '%');
                if (kind == '%' && isRawTag(begin)) pos = lexRaw(tag, begin, pos);
            }
        }
        push(TokenType::EndOfInput, {}, lineAt(n));
        return std::move(tokens_);
    }

private:
    int lineAt(std::size_t pos) const {
        return static_cast<int>(std::upper_bound(lineStarts_.begin(), lineStarts_.end(), pos) - lineStarts_.begin());
    }
    [[noreturn]] void fail(std::size_t pos, const std::string& message) const {
        syntaxError(options_.name, lineAt(pos), message);
    }
    void push(TokenType type, std::string text, int line) { tokens_.push_back(Token{type, std::move(text), line}); }

    std::size_t findTagStart(std::size_t from) const {
        for (std::size_t at = src_.find('{', from); at != std::string::npos; at = src_.find('{', at + 1)) {
            if (at + 1 < src_.size() && (src_[at + 1] == '{' || src_[at + 1] == '%' || src_[at + 1] == '#')) return at;
        }
        return std::string::npos;
    }

    std::size_t skipSpaces(std::size_t pos) const {
        while (pos < src_.size() && isSpace(src_[pos])) ++pos;
        return pos;
    }

    // lstrip_blocks: spaces and tabs between the start of a line and a block
    // or comment tag go, when nothing else is on that line before the tag.
    std::string_view stripIndentBeforeTag(std::string_view text, std::size_t textStart) const {
        const std::size_t newline = text.rfind('\n');
        const std::size_t lineBegin = newline == std::string_view::npos ? 0 : newline + 1;
        const bool atLineStart = lineBegin > 0 || textStart == 0 || src_[textStart - 1] == '\n';
        if (!atLineStart) return text;
        const std::string_view indent = text.substr(lineBegin);
        if (indent.empty() || !std::all_of(indent.begin(), indent.end(), isInlineSpace)) return text;
        return text.substr(0, lineBegin);
    }

    // After a block tag's "%}" (or comment's "#}"): "-" eats all following
    // whitespace, "+" keeps it, otherwise trim_blocks eats one newline.
    std::size_t afterBlockEnd(std::size_t pos, char modifier) const {
        if (modifier == '-') return skipSpaces(pos);
        if (modifier != '+' && options_.trimBlocks && pos < src_.size() && src_[pos] == '\n') return pos + 1;
        return pos;
    }

    std::size_t skipComment(std::size_t tag, std::size_t inner) const {
        const std::size_t end = src_.find("#}", inner);
        if (end == std::string::npos) fail(tag, "comment is never closed (missing '#}')");
        const char modifier = end > inner ? src_[end - 1] : '\0';
        return afterBlockEnd(end + 2, modifier);
    }

    std::size_t lexTag(std::size_t tag, std::size_t inner, bool isBlock) {
        push(isBlock ? TokenType::BlockBegin : TokenType::VariableBegin, {}, lineAt(tag));
        std::vector<char> brackets;
        std::size_t pos = inner;
        const std::size_t n = src_.size();
        while (true) {
            pos = skipSpaces(pos);
            if (pos >= n)
                fail(tag, isBlock ? "tag is never closed (missing '%}')" : "expression is never closed (missing '}}')");
            if (brackets.empty()) {
                const std::string_view rest(src_.data() + pos, n - pos);
                if (isBlock) {
                    for (std::string_view end : {"-%}", "+%}", "%}"}) {
                        if (!rest.starts_with(end)) continue;
                        push(TokenType::BlockEnd, {}, lineAt(pos));
                        return afterBlockEnd(pos + end.size(), end.size() == 3 ? end[0] : '\0');
                    }
                } else if (rest.starts_with("-}}")) {
                    push(TokenType::VariableEnd, {}, lineAt(pos));
                    return skipSpaces(pos + 3);
                } else if (rest.starts_with("}}")) {
                    push(TokenType::VariableEnd, {}, lineAt(pos));
                    return pos + 2;
                }
            }
            pos = lexToken(pos, brackets);
        }
    }

    bool isRawTag(std::size_t begin) const {
        return tokens_.size() == begin + 3 && tokens_[begin + 1].type == TokenType::Name &&
               tokens_[begin + 1].text == "raw";
    }

    // {% raw %}...{% endraw %}: the content is text, tags and all.
    std::size_t lexRaw(std::size_t tag, std::size_t begin, std::size_t pos) {
        tokens_.resize(begin);
        const std::size_t n = src_.size();
        for (std::size_t at = src_.find("{%", pos); at != std::string::npos; at = src_.find("{%", at + 2)) {
            std::size_t p = at + 2;
            const char openModifier = p < n && (src_[p] == '-' || src_[p] == '+') ? src_[p] : '\0';
            if (openModifier) ++p;
            while (p < n && isInlineSpace(src_[p])) ++p;
            if (src_.compare(p, 6, "endraw") != 0) continue;
            p += 6;
            while (p < n && isInlineSpace(src_[p])) ++p;
            const char closeModifier = p < n && (src_[p] == '-' || src_[p] == '+') ? src_[p] : '\0';
            if (closeModifier) ++p;
            if (src_.compare(p, 2, "%}") != 0) continue;
            std::string_view content(src_.data() + pos, at - pos);
            if (openModifier == '-') {
                while (!content.empty() && isSpace(content.back())) content.remove_suffix(1);
            } else if (openModifier != '+' && options_.lstripBlocks) {
                content = stripIndentBeforeTag(content, pos);
            }
            if (!content.empty()) push(TokenType::Text, std::string(content), lineAt(pos));
            return afterBlockEnd(p + 2, closeModifier);
        }
        fail(tag, "raw block is never closed (missing '{% endraw %}')");
    }

    std::size_t lexToken(std::size_t pos, std::vector<char>& brackets) {
        const std::size_t n = src_.size();
        const char c = src_[pos];
        const int line = lineAt(pos);
        if (isNameStart(c)) {
            std::size_t end = pos;
            while (end < n && isNameChar(src_[end])) ++end;
            push(TokenType::Name, src_.substr(pos, end - pos), line);
            return end;
        }
        if (isAsciiDigit(c)) return lexNumber(pos);
        if (c == '\'' || c == '"') return lexString(pos);

        for (std::string_view op : {"//", "**", "==", "!=", "<=", ">="}) {
            if (src_.compare(pos, 2, op) == 0) {
                push(TokenType::Operator, std::string(op), line);
                return pos + 2;
            }
        }
        if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos)
            fail(pos, std::string("unexpected character '") + c + "'");
        if (c == '(' || c == '[' || c == '{') brackets.push_back(c);
        if (c == ')' || c == ']' || c == '}') {
            const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
            if (brackets.empty() || brackets.back() != open) fail(pos, std::string("unexpected '") + c + "'");
            brackets.pop_back();
        }
        push(TokenType::Operator, std::string(1, c), line);
        return pos + 1;
    }

    std::size_t lexNumber(std::size_t pos) {
        const std::size_t n = src_.size();
        auto digits = [&](std::size_t p) {
            while (p < n && (isAsciiDigit(src_[p]) || (src_[p] == '_' && p + 1 < n && isAsciiDigit(src_[p + 1])))) ++p;
            return p;
        };
        std::size_t end = digits(pos);
        bool isFloat = false;
        // "x.0.1" is two attribute lookups, not x.(0.1), as in Jinja.
        const bool afterDot = pos > 0 && src_[pos - 1] == '.';
        if (!afterDot && end + 1 < n && src_[end] == '.' && isAsciiDigit(src_[end + 1])) {
            end = digits(end + 1);
            isFloat = true;
        }
        if (!afterDot && end < n && (src_[end] == 'e' || src_[end] == 'E')) {
            std::size_t p = end + 1;
            if (p < n && (src_[p] == '+' || src_[p] == '-')) ++p;
            if (p < n && isAsciiDigit(src_[p])) {
                end = digits(p);
                isFloat = true;
            }
        }
        std::string text = src_.substr(pos, end - pos);
        text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
        Token token{isFloat ? TokenType::Float : TokenType::Integer, text, lineAt(pos)};
        if (isFloat) {
            std::from_chars(text.data(), text.data() + text.size(), token.floating);
        } else {
            const auto res = std::from_chars(text.data(), text.data() + text.size(), token.integer);
            if (res.ec != std::errc()) fail(pos, "integer literal " + text + " is too large");
        }
        tokens_.push_back(std::move(token));
        return end;
    }

    // String literals use Python's escapes (\n, \t, \xhh, \uhhhh, ...).
    std::size_t lexString(std::size_t start) {
        const std::size_t n = src_.size();
        const char quote = src_[start];
        std::string value;
        std::size_t pos = start + 1;
        auto hexValue = [&](std::size_t from, std::size_t count) -> char32_t {
            if (from + count > n) fail(from, "truncated escape sequence in string literal");
            char32_t v = 0;
            for (std::size_t i = from; i < from + count; ++i) {
                const char h = src_[i];
                int digit;
                if (isAsciiDigit(h)) digit = h - '0';
                else if (h >= 'a' && h <= 'f') digit = h - 'a' + 10;
                else if (h >= 'A' && h <= 'F') digit = h - 'A' + 10;
                else fail(i, "invalid escape sequence in string literal");
                v = (v << 4) | static_cast<char32_t>(digit);
            }
            return v;
        };
        while (true) {
            if (pos >= n) fail(start, "string literal is never closed");
            const char c = src_[pos];
            if (c == quote) break;
            if (c != '\\' || pos + 1 >= n) {
                value += c;
                ++pos;
                continue;
            }
            const char e = src_[pos + 1];
            pos += 2;
            switch (e) {
            case 'n': value += '\n'; break;
            case 't': value += '\t'; break;
            case 'r': value += '\r'; break;
            case '\\': value += '\\'; break;
            case '\'': value += '\''; break;
            case '"': value += '"'; break;
            case 'a': value += '\a'; break;
            case 'b': value += '\b'; break;
            case 'f': value += '\f'; break;
            case 'v': value += '\v'; break;
            case '\n': break;  // line continuation
            case 'x': appendUtf8(value, hexValue(pos, 2)); pos += 2; break;
            case 'u': appendUtf8(value, hexValue(pos, 4)); pos += 4; break;
            case 'U': {
                const char32_t cp = hexValue(pos, 8);
                if (cp > 0x10FFFF) fail(pos, "invalid \\U escape in string literal");
                appendUtf8(value, cp);
                pos += 8;
                break;
            }
            default:
                if (e >= '0' && e <= '7') {
                    char32_t v = static_cast<char32_t>(e - '0');
                    for (int i = 0; i < 2 && pos < n && src_[pos] >= '0' && src_[pos] <= '7'; ++i, ++pos)
                        v = v * 8 + static_cast<char32_t>(src_[pos] - '0');
                    appendUtf8(value, v);
                } else {  // Python keeps unknown escapes as written
                    value += '\\';
                    value += e;
                }
            }
        }
        tokens_.push_back(Token{TokenType::String, std::move(value), lineAt(start)});
        return pos + 1;
    }

    std::string src_;
    const Options& options_;
    std::vector<std::size_t> lineStarts_;
    std::vector<Token> tokens_;
};

// ---------------------------------------------------------------------------
// Parser

class Parser {
public:
    Parser(std::vector<Token> tokens, std::string errorPrefix)
        : tokens_(std::move(tokens)), prefix_(std::move(errorPrefix)) {}

    Body parseTemplate() { return parseBody({}, 0, {}); }

private:
    const Token& peek(std::size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
    const Token& advance() {
        const Token& t = tokens_[pos_];
        if (pos_ + 1 < tokens_.size()) ++pos_;
        return t;
    }
    bool atOperator(std::string_view op, std::size_t ahead = 0) const {
        return peek(ahead).type == TokenType::Operator && peek(ahead).text == op;
    }
    bool atName(std::string_view name, std::size_t ahead = 0) const {
        return peek(ahead).type == TokenType::Name && peek(ahead).text == name;
    }
    bool acceptOperator(std::string_view op) {
        if (!atOperator(op)) return false;
        advance();
        return true;
    }
    bool acceptName(std::string_view name) {
        if (!atName(name)) return false;
        advance();
        return true;
    }

    static std::string describe(const Token& t) {
        switch (t.type) {
        case TokenType::Text: return "text";
        case TokenType::VariableBegin: return "'{{'";
        case TokenType::VariableEnd: return "'}}'";
        case TokenType::BlockBegin: return "'{%'";
        case TokenType::BlockEnd: return "'%}'";
        case TokenType::Name:
        case TokenType::Operator: return "'" + t.text + "'";
        case TokenType::String: return "string " + reprString(t.text);
        case TokenType::Integer:
        case TokenType::Float: return "number " + t.text;
        case TokenType::EndOfInput: return "end of template";
        }
        return "token";
    }

    [[noreturn]] void fail(const Token& at, const std::string& message) const {
        syntaxError(prefix_, at.line, message);
    }

    void expectOperator(std::string_view op) {
        if (!acceptOperator(op)) fail(peek(), "expected '" + std::string(op) + "', got " + describe(peek()));
    }
    void expectName(std::string_view name) {
        if (!acceptName(name)) fail(peek(), "expected '" + std::string(name) + "', got " + describe(peek()));
    }
    std::string expectIdentifier(std::string_view what) {
        if (peek().type != TokenType::Name) fail(peek(), "expected " + std::string(what) + ", got " + describe(peek()));
        return advance().text;
    }
    void expectBlockEnd() {
        if (peek().type != TokenType::BlockEnd) fail(peek(), "expected end of tag '%}', got " + describe(peek()));
        advance();
    }

    // Parses nodes until a block tag named in `endTags`; returns with that
    // tag's name as the current token. `opener` names the enclosing block
    // for the error when the template ends first.
    Body parseBody(std::initializer_list<std::string_view> endTags, int openerLine, std::string_view opener) {
        NestingGuard guard(*this);
        Body body;
        while (true) {
            const Token& t = peek();
            switch (t.type) {
            case TokenType::Text:
                body.push_back(std::make_unique<TextNode>(t.line, t.text));
                advance();
                break;
            case TokenType::VariableBegin: {
                const int line = t.line;
                advance();
                ExprPtr e = parseTupleExpression();
                if (peek().type != TokenType::VariableEnd)
                    fail(peek(), "expected end of expression '}}', got " + describe(peek()));
                advance();
                body.push_back(std::make_unique<OutputNode>(line, std::move(e)));
                break;
            }
            case TokenType::BlockBegin: {
                const Token& name = peek(1);
                if (name.type == TokenType::Name &&
                    std::find(endTags.begin(), endTags.end(), name.text) != endTags.end()) {
                    advance();
                    return body;
                }
                advance();
                parseStatement(body);
                break;
            }
            case TokenType::EndOfInput: {
                if (endTags.size() == 0) return body;
                std::string expected;
                for (std::string_view tag : endTags)
                    expected += (expected.empty() ? "'" : " or '") + std::string(tag) + "'";
                syntaxError(prefix_, openerLine,
                            "'" + std::string(opener) + "' block is never closed (the template ends before " +
                                expected + ")");
            }
            default: fail(t, "unexpected " + describe(t));
            }
        }
    }

    void parseStatement(Body& body) {
        const Token& tagToken = peek();
        if (tagToken.type != TokenType::Name) fail(tagToken, "expected a tag name, got " + describe(tagToken));
        const std::string tag = tagToken.text;
        const int line = tagToken.line;
        advance();
        if (tag == "if") body.push_back(parseIf(line));
        else if (tag == "for") body.push_back(parseFor(line));
        else if (tag == "set") body.push_back(parseSet(line));
        else if (tag == "macro") body.push_back(parseMacro(line));
        else if (tag == "filter") body.push_back(parseFilterBlock(line));
        else if (tag == "break" || tag == "continue") {
            if (loopDepth_ == 0) fail(tagToken, "'" + tag + "' outside of a loop");
            expectBlockEnd();
            body.push_back(std::make_unique<LoopControlNode>(line, tag == "break" ? Flow::Break : Flow::Continue));
        } else if (tag == "generation") {
            // transformers' marker for assistant text; renders its content.
            expectBlockEnd();
            Body inner = parseBody({"endgeneration"}, line, "generation");
            advance();
            expectBlockEnd();
            for (auto& node : inner) body.push_back(std::move(node));
        } else if (tag.starts_with("end") || tag == "else" || tag == "elif") {
            fail(tagToken, "unexpected '" + tag + "' (no open block it could belong to)");
        } else if (tag == "include" || tag == "import" || tag == "from" || tag == "extends" || tag == "block" ||
                   tag == "call" || tag == "with" || tag == "do" || tag == "autoescape") {
            fail(tagToken, "the '" + tag + "' tag is not supported in chat templates");
        } else {
            fail(tagToken, "unknown tag '" + tag + "'");
        }
    }

    NodePtr parseIf(int line) {
        auto node = std::make_unique<IfNode>(line);
        ExprPtr condition = parseTupleExpression(false);
        expectBlockEnd();
        while (true) {
            Body branch = parseBody({"elif", "else", "endif"}, line, "if");
            node->branches.emplace_back(std::move(condition), std::move(branch));
            const std::string tag = advance().text;
            if (tag == "elif") {
                condition = parseTupleExpression(false);
                expectBlockEnd();
                continue;
            }
            if (tag == "else") {
                expectBlockEnd();
                node->otherwise = parseBody({"endif"}, line, "if");
                advance();
            }
            expectBlockEnd();
            return node;
        }
    }

    std::vector<std::string> parseTargets(std::string_view what) {
        std::vector<std::string> names;
        const bool parenthesised = acceptOperator("(");
        do {
            if (parenthesised && atOperator(")")) break;
            names.push_back(expectIdentifier(what));
        } while (acceptOperator(","));
        if (parenthesised) expectOperator(")");
        return names;
    }

    NodePtr parseFor(int line) {
        auto node = std::make_unique<ForNode>(line);
        node->targets = parseTargets("a loop variable name");
        expectName("in");
        node->iterable = parseTupleExpression(false);
        if (atName("recursive")) fail(peek(), "recursive loops are not supported");
        if (acceptName("if")) node->filter = parseExpression(true);
        expectBlockEnd();
        ++loopDepth_;
        node->body = parseBody({"endfor", "else"}, line, "for");
        --loopDepth_;
        if (advance().text == "else") {
            expectBlockEnd();
            node->otherwise = parseBody({"endfor"}, line, "for");
            advance();
        }
        expectBlockEnd();
        return node;
    }

    NodePtr parseSet(int line) {
        const std::string first = expectIdentifier("a variable name");
        if (acceptOperator(".")) {
            auto node = std::make_unique<SetNode>(line);
            node->targets = {first};
            node->attribute = expectIdentifier("an attribute name");
            expectOperator("=");
            node->value = parseTupleExpression();
            expectBlockEnd();
            return node;
        }
        std::vector<std::string> targets{first};
        while (acceptOperator(",")) targets.push_back(expectIdentifier("a variable name"));
        if (acceptOperator("=")) {
            auto node = std::make_unique<SetNode>(line);
            node->targets = std::move(targets);
            node->value = parseTupleExpression();
            expectBlockEnd();
            return node;
        }
        if (targets.size() != 1) fail(peek(), "expected '=' after the names to set");
        auto node = std::make_unique<SetBlockNode>(line);
        node->target = first;
        while (acceptOperator("|")) node->filters.push_back(parseFilterCall());
        expectBlockEnd();
        node->body = parseBody({"endset"}, line, "set");
        advance();
        expectBlockEnd();
        return node;
    }

    NodePtr parseMacro(int line) {
        auto node = std::make_unique<MacroNode>(line);
        node->name = expectIdentifier("a macro name");
        expectOperator("(");
        while (!acceptOperator(")")) {
            if (!node->params.empty()) {
                expectOperator(",");
                if (acceptOperator(")")) break;
            }
            std::string param = expectIdentifier("a parameter name");
            ExprPtr fallback = acceptOperator("=") ? parseExpression(true) : nullptr;
            node->params.emplace_back(std::move(param), std::move(fallback));
        }
        expectBlockEnd();
        const int savedLoopDepth = loopDepth_;
        loopDepth_ = 0;  // break/continue cannot reach a loop outside the macro
        node->body = parseBody({"endmacro"}, line, "macro");
        loopDepth_ = savedLoopDepth;
        advance();
        expectBlockEnd();
        return node;
    }

    NodePtr parseFilterBlock(int line) {
        auto node = std::make_unique<FilterBlockNode>(line);
        do node->filters.push_back(parseFilterCall());
        while (acceptOperator("|"));
        expectBlockEnd();
        node->body = parseBody({"endfilter"}, line, "filter");
        advance();
        expectBlockEnd();
        return node;
    }

    // ----- expressions, lowest precedence first (Jinja's grammar)

    // Guards the recursion against pathological nesting.
    struct NestingGuard {
        NestingGuard(Parser& p) : parser(p) {
            if (++parser.nesting_ > kMaxNesting)
                parser.fail(parser.peek(), "blocks or expressions are nested too deeply");
        }
        ~NestingGuard() { --parser.nesting_; }
        NestingGuard(const NestingGuard&) = delete;
        NestingGuard& operator=(const NestingGuard&) = delete;
        Parser& parser;
    };

    // `a, b` without brackets is a tuple. `if` and `for`
    // take one too, but without the inline if-else, as in Jinja.
    ExprPtr parseTupleExpression(bool withConditional = true) {
        const int line = peek().line;
        ExprPtr first = parseExpression(withConditional);
        if (!atOperator(",")) return first;
        auto tuple = std::make_unique<ListExpr>(line, true);
        tuple->items.push_back(std::move(first));
        while (acceptOperator(",")) {
            if (peek().type == TokenType::BlockEnd || peek().type == TokenType::VariableEnd) break;
            tuple->items.push_back(parseExpression(withConditional));
        }
        return tuple;
    }

    ExprPtr parseExpression(bool withConditional) {
        NestingGuard guard(*this);
        ExprPtr expr = parseOr();
        if (!withConditional) return expr;
        while (atName("if")) {
            const int line = advance().line;
            auto conditional = std::make_unique<ConditionalExpr>(line);
            conditional->condition = parseOr();
            if (acceptName("else")) conditional->otherwise = parseExpression(true);
            conditional->then = std::move(expr);
            expr = std::move(conditional);
        }
        return expr;
    }

    ExprPtr parseOr() {
        ExprPtr left = parseAnd();
        while (atName("or")) {
            const int line = advance().line;
            left = std::make_unique<LogicExpr>(line, false, std::move(left), parseAnd());
        }
        return left;
    }

    ExprPtr parseAnd() {
        ExprPtr left = parseNot();
        while (atName("and")) {
            const int line = advance().line;
            left = std::make_unique<LogicExpr>(line, true, std::move(left), parseNot());
        }
        return left;
    }

    ExprPtr parseNot() {
        if (atName("not")) {
            NestingGuard guard(*this);
            const int line = advance().line;
            return std::make_unique<NotExpr>(line, parseNot());
        }
        return parseCompare();
    }

    ExprPtr parseCompare() {
        const int line = peek().line;
        ExprPtr first = parseMath1();
        std::vector<std::pair<std::string, ExprPtr>> rest;
        while (true) {
            std::string op;
            if (peek().type == TokenType::Operator &&
                (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == "<=" ||
                 peek().text == ">" || peek().text == ">=")) {
                op = advance().text;
            } else if (atName("in")) {
                advance();
                op = "in";
            } else if (atName("not") && atName("in", 1)) {
                advance();
                advance();
                op = "not in";
            } else {
                break;
            }
            rest.emplace_back(std::move(op), parseMath1());
        }
        if (rest.empty()) return first;
        auto compare = std::make_unique<CompareExpr>(line);
        compare->first = std::move(first);
        compare->rest = std::move(rest);
        return compare;
    }

    template <typename Next>
    ExprPtr parseBinary(std::initializer_list<std::string_view> ops, Next next) {
        ExprPtr left = (this->*next)();
        while (peek().type == TokenType::Operator && std::find(ops.begin(), ops.end(), peek().text) != ops.end()) {
            const Token& op = advance();
            left = std::make_unique<BinaryExpr>(op.line, op.text, std::move(left), (this->*next)());
        }
        return left;
    }
    // As in Jinja, `~` binds tighter than + and -, looser than * and /.
    ExprPtr parseMath1() { return parseBinary({"+", "-"}, &Parser::parseConcat); }
    ExprPtr parseConcat() { return parseBinary({"~"}, &Parser::parseMath2); }
    ExprPtr parseMath2() { return parseBinary({"*", "/", "//", "%"}, &Parser::parsePow); }
    ExprPtr parsePow() { return parseBinary({"**"}, &Parser::parseUnaryWithFilters); }
    ExprPtr parseUnaryWithFilters() { return parseUnary(true); }

    // Jinja: -x|f is (-x)|f; the sign applies before filters and tests.
    ExprPtr parseUnary(bool withFilters) {
        NestingGuard guard(*this);
        ExprPtr node;
        if (atOperator("-") || atOperator("+")) {
            const Token& sign = advance();
            node = std::make_unique<NegateExpr>(sign.line, parseUnary(false), sign.text == "-");
        } else {
            node = parsePrimary();
        }
        node = parsePostfix(std::move(node));
        if (withFilters) node = parseFiltersAndTests(std::move(node));
        return node;
    }

    ExprPtr parsePrimary() {
        const Token& t = peek();
        const int line = t.line;
        switch (t.type) {
        case TokenType::Name: {
            const std::string name = advance().text;
            if (name == "true" || name == "True") return std::make_unique<LiteralExpr>(line, Value(true));
            if (name == "false" || name == "False") return std::make_unique<LiteralExpr>(line, Value(false));
            if (name == "none" || name == "None") return std::make_unique<LiteralExpr>(line, Value::none());
            return std::make_unique<NameExpr>(line, name);
        }
        case TokenType::String: {
            std::string text = advance().text;
            while (peek().type == TokenType::String) text += advance().text;  // "a" "b" is "ab"
            return std::make_unique<LiteralExpr>(line, Value(std::move(text)));
        }
        case TokenType::Integer: return std::make_unique<LiteralExpr>(line, Value(advance().integer));
        case TokenType::Float: return std::make_unique<LiteralExpr>(line, Value(advance().floating));
        case TokenType::Operator:
            if (t.text == "(") {
                advance();
                if (acceptOperator(")")) return std::make_unique<ListExpr>(line, true);
                ExprPtr inner = parseExpression(true);
                if (atOperator(",")) {
                    auto tuple = std::make_unique<ListExpr>(line, true);
                    tuple->items.push_back(std::move(inner));
                    while (acceptOperator(",")) {
                        if (atOperator(")")) break;
                        tuple->items.push_back(parseExpression(true));
                    }
                    inner = std::move(tuple);
                }
                expectOperator(")");
                return inner;
            }
            if (t.text == "[") {
                advance();
                auto list = std::make_unique<ListExpr>(line, false);
                while (!acceptOperator("]")) {
                    if (!list->items.empty()) {
                        expectOperator(",");
                        if (acceptOperator("]")) break;
                    }
                    list->items.push_back(parseExpression(true));
                }
                return list;
            }
            if (t.text == "{") {
                advance();
                auto dict = std::make_unique<DictExpr>(line);
                while (!acceptOperator("}")) {
                    if (!dict->entries.empty()) {
                        expectOperator(",");
                        if (acceptOperator("}")) break;
                    }
                    ExprPtr key = parseExpression(true);
                    expectOperator(":");
                    dict->entries.emplace_back(std::move(key), parseExpression(true));
                }
                return dict;
            }
            break;
        default: break;
        }
        fail(t, "unexpected " + describe(t));
    }

    ExprPtr parsePostfix(ExprPtr node) {
        while (true) {
            if (atOperator(".")) {
                const int line = advance().line;
                if (peek().type == TokenType::Name) {
                    node = std::make_unique<AttributeExpr>(line, std::move(node), advance().text);
                } else if (peek().type == TokenType::Integer) {
                    auto index = std::make_unique<LiteralExpr>(line, Value(advance().integer));
                    node = std::make_unique<SubscriptExpr>(line, std::move(node), std::move(index));
                } else {
                    fail(peek(), "expected an attribute name after '.', got " + describe(peek()));
                }
            } else if (atOperator("[")) {
                node = parseSubscript(std::move(node));
            } else if (atOperator("(")) {
                node = parseCall(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parseSubscript(ExprPtr object) {
        const int line = advance().line;  // '['
        ExprPtr start, stop, step;
        bool isSlice = false;
        if (!atOperator(":")) start = parseExpression(true);
        if (acceptOperator(":")) {
            isSlice = true;
            if (!atOperator(":") && !atOperator("]")) stop = parseExpression(true);
            if (acceptOperator(":") && !atOperator("]")) step = parseExpression(true);
        }
        expectOperator("]");
        if (!isSlice) return std::make_unique<SubscriptExpr>(line, std::move(object), std::move(start));
        auto slice = std::make_unique<SliceExpr>(line);
        slice->object = std::move(object);
        slice->start = std::move(start);
        slice->stop = std::move(stop);
        slice->step = std::move(step);
        return slice;
    }

    ArgExprs parseArguments() {
        expectOperator("(");
        ArgExprs args;
        bool first = true;
        while (!acceptOperator(")")) {
            if (!first) {
                expectOperator(",");
                if (acceptOperator(")")) break;
            }
            first = false;
            if (peek().type == TokenType::Name && atOperator("=", 1)) {
                std::string key = advance().text;
                advance();
                args.named.emplace_back(std::move(key), parseExpression(true));
            } else {
                if (!args.named.empty()) fail(peek(), "positional argument follows keyword argument");
                args.positional.push_back(parseExpression(true));
            }
        }
        return args;
    }

    ExprPtr parseCall(ExprPtr callee) {
        auto call = std::make_unique<CallExpr>(peek().line);
        call->callee = std::move(callee);
        call->args = parseArguments();
        return call;
    }

    std::string parseDottedName(std::string_view what) {
        std::string name = expectIdentifier(what);
        while (atOperator(".") && peek(1).type == TokenType::Name) {
            advance();
            name += "." + advance().text;
        }
        return name;
    }

    // Unknown filter and test names fail when used, not here: a template
    // may name one we lack in a branch plain chat never takes (tools).
    FilterCall parseFilterCall() {
        FilterCall call;
        call.line = peek().line;
        call.name = parseDottedName("a filter name");
        if (atOperator("(")) call.args = parseArguments();
        return call;
    }

    ExprPtr parseFiltersAndTests(ExprPtr node) {
        while (true) {
            if (atOperator("|")) {
                const int line = advance().line;
                node = std::make_unique<FilterExpr>(line, std::move(node), parseFilterCall());
            } else if (atName("is")) {
                const int line = advance().line;
                auto test = std::make_unique<TestExpr>(line);
                test->negated = acceptName("not");
                test->name = parseDottedName("a test name");
                if (atOperator("(")) {
                    test->args = parseArguments();
                } else if (takesBareTestArgument()) {
                    // `x is divisibleby 3`, `x is sameas none`
                    test->args.positional.push_back(parsePostfix(parsePrimary()));
                }
                test->subject = std::move(node);
                node = std::move(test);
            } else if (atOperator("(")) {
                node = parseCall(std::move(node));
            } else {
                return node;
            }
        }
    }

    bool takesBareTestArgument() const {
        const Token& t = peek();
        switch (t.type) {
        case TokenType::Name:
            return t.text != "else" && t.text != "or" && t.text != "and" && t.text != "if" && t.text != "is" &&
                   t.text != "in" && t.text != "not";
        case TokenType::String:
        case TokenType::Integer:
        case TokenType::Float: return true;
        case TokenType::Operator: return t.text == "[" || t.text == "{";
        default: return false;
        }
    }

    std::vector<Token> tokens_;
    std::string prefix_;
    std::size_t pos_ = 0;
    int loopDepth_ = 0;
    int nesting_ = 0;
};

// Jinja reads text with universal newlines and, by default, drops one
// trailing newline of the template.
std::string normaliseNewlines(std::string_view source, bool keepTrailingNewline) {
    std::string out;
    out.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            out += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            out += source[i];
        }
    }
    if (!keepTrailingNewline && !out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

} // namespace

// ---------------------------------------------------------------------------
// Template

struct Template::Program {
    Body body;
    Options options;
};

Template::Template(std::string_view source, Options options) {
    auto program = std::make_shared<Program>();
    Lexer lexer(normaliseNewlines(source, options.keepTrailingNewline), options);
    Parser parser(lexer.tokenize(), options.name);
    program->body = parser.parseTemplate();
    program->options = std::move(options);
    program_ = std::move(program);
}

Template::~Template() = default;

std::string Template::render(const std::vector<std::pair<std::string, Value>>& variables) const {
    auto root = std::make_shared<Scope>();
    addGlobalFunctions(root->variables);
    for (const auto& [name, value] : variables) root->variables[name] = value;
    Renderer renderer(root);
    renderer.maxOutputBytes = program_->options.maxOutputBytes;
    RenderBudget budget;
    budget.maxSteps = program_->options.maxSteps;
    budget.cancel = program_->options.cancel;
    budget.name = program_->options.name;
    // Installed for the render; on the way out (errors included) it empties
    // the namespaces the render made, freeing any that hold themselves.
    struct BudgetScope {
        RenderBudget* budget;
        RenderBudget* saved;
        explicit BudgetScope(RenderBudget* b) : budget(b), saved(currentBudget()) { currentBudget() = b; }
        ~BudgetScope() {
            currentBudget() = nullptr;
            for (const auto& weak : budget->namespaces)
                if (auto ns = weak.lock()) ns->clear();
            currentBudget() = saved;
        }
    } scope(&budget);
    try {
        renderer.renderBody(program_->body);
    } catch (const EvalError& e) {
        throw moe::Error(program_->options.name + " error on line " + std::to_string(e.line) + ": " + e.what());
    }
    return std::move(renderer.output);
}

} // namespace moe::jinja
