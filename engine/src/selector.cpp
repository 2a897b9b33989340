// Selector TOML files (mistral.rs AnyMoE compatible, plus our keys): strict
// reading with file:line:key errors, atomic writing that reads back equal.
#include "moe/selector.h"

#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/gguf_model.h"
#include "moe/hf_cache.h"
#include "moe/mergekit.h"
#include "moe/quant.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <sstream>

namespace moe {
namespace fs = std::filesystem;

const char* toString(GateMode m) {
    switch (m) {
    case GateMode::Trained: return "trained";
    case GateMode::Hidden: return "hidden";
    case GateMode::CheapEmbed: return "cheap_embed";
    case GateMode::Random: return "random";
    }
    return "?";
}

const char* toString(ExpertType t) {
    switch (t) {
    case ExpertType::FineTuned: return "fine_tuned";
    case ExpertType::LoraAdapter: return "lora_adapter";
    }
    return "?";
}

namespace {
template <class E, size_t N> bool parseEnum(const std::string& s, const E (&all)[N], E& out) {
    for (E e : all)
        if (s == toString(e)) {
            out = e;
            return true;
        }
    return false;
}
} // namespace

bool parseGateMode(const std::string& s, GateMode& out) {
    static constexpr GateMode all[] = {GateMode::Trained, GateMode::Hidden, GateMode::CheapEmbed, GateMode::Random};
    return parseEnum(s, all, out);
}
bool parseExpertType(const std::string& s, ExpertType& out) {
    static constexpr ExpertType all[] = {ExpertType::FineTuned, ExpertType::LoraAdapter};
    return parseEnum(s, all, out);
}

// ---------------------------------------------------------------------------
// Model id resolution

namespace {

fs::path normalFolder(const fs::path& p) {
    fs::path r = fs::absolute(p).lexically_normal();
    if (r.filename().empty() && r.has_parent_path() && r != r.root_path()) r = r.parent_path();
    return r;
}

// "org/name" with Hugging Face's allowed characters.
bool looksLikeHubId(const std::string& id) {
    const size_t slash = id.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == id.size() || id.find('/', slash + 1) != std::string::npos)
        return false;
    const std::string org = id.substr(0, slash), name = id.substr(slash + 1);
    auto ok = [](const std::string& part) {
        if (part == "." || part == ".." || part.front() == '.') return false;
        return std::all_of(part.begin(), part.end(), [](unsigned char c) {
            return std::isalnum(c) || c == '-' || c == '_' || c == '.';
        });
    };
    return ok(org) && ok(name);
}

} // namespace

fs::path resolveModelId(const std::string& id, const fs::path& relativeTo) {
    if (id.empty()) throw Error("model id is empty");
    std::error_code ec;
    const fs::path asPath = fs::path(id).is_absolute() ? fs::path(id) : relativeTo / id;
    if (fs::is_directory(asPath, ec)) return normalFolder(asPath);
    if (isGgufPath(asPath) && fs::is_regular_file(asPath, ec)) return fs::absolute(asPath).lexically_normal();

    std::vector<std::string> looked{normalFolder(asPath).string() +
                                    (fs::exists(asPath, ec) ? " (not a folder or .gguf file)" : " (no such folder)")};
    if (looksLikeHubId(id)) {
        for (const fs::path& root : huggingFaceCacheRoots()) {
            std::string note;
            const fs::path snap = findInHuggingFaceCache(root, id, note);
            if (!snap.empty()) return normalFolder(snap);
            looked.push_back(note);
        }
    }
    std::string message = "model \"" + id + "\" not found; looked at ";
    for (size_t i = 0; i < looked.size(); ++i) message += (i ? ", " : "") + looked[i];
    if (!looksLikeHubId(id)) message += " (not a Hugging Face id org/name, so no hub cache was searched)";
    throw Error(message);
}

// ---------------------------------------------------------------------------
// Reading

namespace {

// mistral.rs options that only affect how mistral.rs runs a model: kept
// verbatim so real files load, never used by a build.
constexpr std::string_view kMistralrsModelOptions[] = {
    "dtype",          "topology",         "organization", "from_uqff",   "write_uqff",
    "imatrix",        "calibration_file", "max_seq_len",  "max_batch_size", "hf_cache_path"};
constexpr std::string_view kMistralrsTopLevelOptions[] = {"tokenizer_json"};

constexpr std::string_view kExportDtypes[] = {"bfloat16", "float16", "float32"};

std::string typeName(const toml::node& n) {
    switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    default: return "nothing";
    }
}

std::string tomlText(const toml::node& n) {
    std::ostringstream os;
    n.visit([&](const auto& v) { os << toml::toml_formatter{v, toml::format_flags::allow_unicode_strings}; });
    return os.str();
}

class TomlReader {
public:
    explicit TomlReader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const toml::source_region& where, const std::string& key, const std::string& what) const {
        std::string at = file_;
        if (where.begin.line > 0) at += ":" + std::to_string(where.begin.line);
        throw Error(at + ": " + key + ": " + what);
    }
    [[noreturn]] void fail(const toml::node& where, const std::string& key, const std::string& what) const {
        fail(where.source(), key, what);
    }

    // Every key of `t` must be in `known`; errors name the first stranger.
    template <class Known> void checkKeys(const toml::table& t, const std::string& path, const Known& known) const {
        for (auto&& [k, v] : t) {
            const std::string_view name = k.str();
            if (std::find(std::begin(known), std::end(known), name) != std::end(known)) continue;
            std::string list;
            for (std::string_view kn : known) list += (list.empty() ? "" : ", ") + std::string(kn);
            const auto& where = k.source().begin.line > 0 ? k.source() : v.source();
            fail(where, join(path, name), "unknown key (known here: " + list + ")");
        }
    }

    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    const toml::table* table(const toml::table& parent, const std::string& path, std::string_view key,
                             bool required) const {
        const toml::node* n = parent.get(key);
        if (!n) {
            if (required) fail(parent.source(), join(path, key), "missing (a required table)");
            return nullptr;
        }
        if (!n->is_table()) fail(*n, join(path, key), "expected a table, got " + typeName(*n));
        return n->as_table();
    }

    std::optional<std::string> string(const toml::table& t, const std::string& path, std::string_view key,
                                       bool required = false) const {
        const toml::node* n = t.get(key);
        if (!n) {
            if (required) fail(t.source(), join(path, key), "missing (a required string)");
            return std::nullopt;
        }
        if (!n->is_string()) fail(*n, join(path, key), "expected a string, got " + typeName(*n));
        return n->as_string()->get();
    }

    std::optional<int64_t> integer(const toml::table& t, const std::string& path, std::string_view key,
                                   int64_t min, int64_t max) const {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_integer()) fail(*n, join(path, key), "expected an integer, got " + typeName(*n));
        const int64_t v = n->as_integer()->get();
        if (v < min || v > max)
            fail(*n, join(path, key),
                 std::to_string(v) + " is out of range (" + rangeText(min, max) + ")");
        return v;
    }

    // Integers are accepted where floats are expected (`alpha = 16`).
    std::optional<double> number(const toml::table& t, const std::string& path, std::string_view key) const {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_number()) fail(*n, join(path, key), "expected a number, got " + typeName(*n));
        const double v = n->value<double>().value();
        if (!std::isfinite(v)) fail(*n, join(path, key), "must be a finite number");
        return v;
    }

    std::optional<bool> boolean(const toml::table& t, const std::string& path, std::string_view key) const {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_boolean()) fail(*n, join(path, key), "expected true or false, got " + typeName(*n));
        return n->as_boolean()->get();
    }

    const toml::array* array(const toml::table& t, const std::string& path, std::string_view key) const {
        const toml::node* n = t.get(key);
        if (!n) return nullptr;
        if (!n->is_array()) fail(*n, join(path, key), "expected an array, got " + typeName(*n));
        return n->as_array();
    }

    std::optional<std::vector<std::string>> strings(const toml::table& t, const std::string& path,
                                                    std::string_view key, bool allowEmptyItems) const {
        const toml::array* a = array(t, path, key);
        if (!a) return std::nullopt;
        std::vector<std::string> out;
        for (size_t i = 0; i < a->size(); ++i) {
            const toml::node& item = *a->get(i);
            const std::string at = join(path, key) + "[" + std::to_string(i) + "]";
            if (!item.is_string()) fail(item, at, "expected a string, got " + typeName(item));
            out.push_back(item.as_string()->get());
            if (!allowEmptyItems && out.back().empty()) fail(item, at, "is empty");
        }
        return out;
    }

    // A path relative to the selector's folder.
    std::optional<fs::path> path(const toml::table& t, const std::string& tablePath, std::string_view key,
                                 const fs::path& dir) const {
        const auto s = string(t, tablePath, key);
        if (!s) return std::nullopt;
        if (s->empty()) fail(*t.get(key), join(tablePath, key), "is empty");
        const fs::path p(*s);
        return (p.is_absolute() ? p : dir / p).lexically_normal();
    }

private:
    static std::string rangeText(int64_t min, int64_t max) {
        if (max == std::numeric_limits<int64_t>::max()) return "must be >= " + std::to_string(min);
        return std::to_string(min) + " to " + std::to_string(max);
    }
    std::string file_;
};

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

ExpertPrompts readPrompts(const TomlReader& r, const toml::table& t, const std::string& path) {
    ExpertPrompts p;
    if (auto v = r.strings(t, path, "positive_prompts", false)) p.positive = std::move(*v);
    if (auto v = r.strings(t, path, "negative_prompts", false)) p.negative = std::move(*v);
    return p;
}

} // namespace

Selector loadSelector(const fs::path& file) {
    const std::string name = file.string();
    const std::string text = readTextFile(file, kMaxSmallFileBytes);
    toml::table root;
    try {
        root = toml::parse(text, name);
    } catch (const toml::parse_error& e) {
        throw Error(name + ":" + std::to_string(e.source().begin.line) + ":" + std::to_string(e.source().begin.column) +
                    ": TOML syntax error: " + std::string(e.description()));
    }
    const TomlReader r(name);
    const fs::path dir = normalFolder(file).parent_path();

    Selector s;
    s.file = normalFolder(file);

    static constexpr std::string_view rootKeys[] = {"model", "anymoe", "tokenizer_json"};
    r.checkKeys(root, "", rootKeys);
    for (std::string_view key : kMistralrsTopLevelOptions)
        if (const toml::node* n = root.get(key)) s.mistralrsOptions.emplace_back(std::string(key), tomlText(*n));

    // [model]
    const toml::table& model = *r.table(root, "", "model", true);
    {
        std::vector<std::string_view> known{"kind", "model_id", "arch"};
        known.insert(known.end(), std::begin(kMistralrsModelOptions), std::end(kMistralrsModelOptions));
        r.checkKeys(model, "model", known);
        if (auto kind = r.string(model, "model", "kind"); kind && *kind != "plain")
            r.fail(*model.get("kind"), "model.kind",
                   "\"" + *kind + "\" is not supported (MoE Studio builds from a plain Hugging Face model)");
        for (std::string_view key : kMistralrsModelOptions)
            if (const toml::node* n = model.get(key)) {
                if (n->is_table()) r.fail(*n, "model." + std::string(key), "a table here is not supported");
                s.mistralrsOptions.emplace_back("model." + std::string(key), tomlText(*n));
            }
        s.modelId = *r.string(model, "model", "model_id", true);
        try {
            s.baseModel = resolveModelId(s.modelId, dir);
        } catch (const Error& e) {
            r.fail(*model.get("model_id"), "model.model_id", e.what());
        }
        s.arch = r.string(model, "model", "arch").value_or("");
    }

    // [anymoe]
    const toml::table& anymoe = *r.table(root, "", "anymoe", true);
    static constexpr std::string_view anymoeKeys[] = {"dataset_json", "dataset_csv", "prefix", "mlp",
                                                      "model_ids",    "layers",      "config"};
    r.checkKeys(anymoe, "anymoe", anymoeKeys);
    if (const toml::node* csv = anymoe.get("dataset_csv"))
        r.fail(*csv, "anymoe.dataset_csv",
               "CSV datasets (older AnyMoE) are not supported; use dataset_json = {\"rows\": [{\"prompt\", \"expert\"}]}");
    if (auto p = r.path(anymoe, "anymoe", "dataset_json", dir)) s.datasetJson = *p;
    if (auto v = r.string(anymoe, "anymoe", "prefix")) {
        if (v->empty()) r.fail(*anymoe.get("prefix"), "anymoe.prefix", "is empty");
        s.prefix = *v;
    }
    if (auto v = r.string(anymoe, "anymoe", "mlp")) {
        if (v->empty()) r.fail(*anymoe.get("mlp"), "anymoe.mlp", "is empty");
        s.mlp = *v;
    }
    {
        const toml::array* ids = r.array(anymoe, "anymoe", "model_ids");
        if (!ids) r.fail(anymoe.source(), "anymoe.model_ids", "missing (the expert models or adapters)");
        if (ids->empty()) r.fail(*ids, "anymoe.model_ids", "is empty: name at least one expert");
        s.expertIds = *r.strings(anymoe, "anymoe", "model_ids", false);
        for (size_t i = 0; i < s.expertIds.size(); ++i) {
            try {
                s.experts.push_back(resolveModelId(s.expertIds[i], dir));
            } catch (const Error& e) {
                r.fail(*ids->get(i), "anymoe.model_ids[" + std::to_string(i) + "]", e.what());
            }
        }
    }
    if (const toml::array* layers = r.array(anymoe, "anymoe", "layers")) {
        std::set<int64_t> seen;
        for (size_t i = 0; i < layers->size(); ++i) {
            const toml::node& item = *layers->get(i);
            const std::string at = "anymoe.layers[" + std::to_string(i) + "]";
            if (!item.is_integer()) r.fail(item, at, "expected a layer index (integer), got " + typeName(item));
            const int64_t v = item.as_integer()->get();
            if (v < 0) r.fail(item, at, "layer " + std::to_string(v) + " is negative");
            if (v > kIntMax) r.fail(item, at, "layer " + std::to_string(v) + " is too large");
            if (!seen.insert(v).second) r.fail(item, at, "layer " + std::to_string(v) + " is listed twice");
            s.layers.push_back(static_cast<int>(v));
        }
    }

    // [anymoe.config]: optional for us (mistral.rs requires hidden_size and expert_type).
    const toml::table* config = r.table(anymoe, "anymoe", "config", false);
    const toml::table emptyTable;
    const toml::table& c = config ? *config : emptyTable;
    const std::string cp = "anymoe.config";
    static constexpr std::string_view configKeys[] = {
        "hidden_size",    "lr",           "epochs",           "batch_size",        "expert_type",
        "gate_model_id",  "training",     "loss_csv_path",    "top_k",             "gate_mode",
        "routing",        "routing_halflife", "gate_bias",    "include_base",      "validation_split",
        "seed",           "use_chat_template", "merge_lora",  "anymoe_loss_header", "export_dtype",
        "export_architecture", "base_expert", "experts", "quantize"};
    r.checkKeys(c, cp, configKeys);

    if (auto v = r.integer(c, cp, "hidden_size", 1, kIntMax)) s.hiddenSize = int(*v);
    if (auto v = r.number(c, cp, "lr")) {
        if (*v <= 0) r.fail(*c.get("lr"), cp + ".lr", "must be > 0");
        s.lr = *v;
    }
    if (auto v = r.integer(c, cp, "epochs", 1, kIntMax)) s.epochs = int(*v);
    if (auto v = r.integer(c, cp, "batch_size", 1, kIntMax)) s.batchSize = int(*v);

    if (const toml::node* et = c.get("expert_type")) {
        const std::string at = cp + ".expert_type";
        if (et->is_string()) {
            if (!parseExpertType(et->as_string()->get(), s.expertType))
                r.fail(*et, at, "\"" + et->as_string()->get() + "\" is not one of fine_tuned, lora_adapter");
        } else if (et->is_table()) {
            // serde's form of an enum with data: [anymoe.config.expert_type.lora_adapter]
            const toml::table& t = *et->as_table();
            static constexpr std::string_view variants[] = {"lora_adapter"};
            r.checkKeys(t, at, variants);
            const toml::table* lora = r.table(t, at, "lora_adapter", true);
            const std::string lp = at + ".lora_adapter";
            static constexpr std::string_view loraKeys[] = {"rank", "alpha", "target_modules"};
            r.checkKeys(*lora, lp, loraKeys);
            s.expertType = ExpertType::LoraAdapter;
            if (auto v = r.integer(*lora, lp, "rank", 1, kIntMax)) s.loraRank = int(*v);
            if (auto v = r.number(*lora, lp, "alpha")) {
                if (*v <= 0) r.fail(*lora->get("alpha"), lp + ".alpha", "must be > 0");
                s.loraAlpha = *v;
            }
            if (auto v = r.strings(*lora, lp, "target_modules", false)) {
                if (v->empty()) r.fail(*lora->get("target_modules"), lp + ".target_modules", "is empty");
                s.loraTargets = std::move(*v);
            }
        } else {
            r.fail(*et, at, "expected \"fine_tuned\", \"lora_adapter\" or a [" + at + ".lora_adapter] table, got " +
                                typeName(*et));
        }
    }
    if (auto p = r.path(c, cp, "gate_model_id", dir)) s.gateModelId = *p;
    if (auto v = r.boolean(c, cp, "training")) s.training = *v;
    if (auto p = r.path(c, cp, "loss_csv_path", dir)) s.lossCsvPath = *p;

    if (auto v = r.integer(c, cp, "top_k", 1, kIntMax)) s.topK = int(*v);
    if (auto v = r.string(c, cp, "gate_mode"); v && !parseGateMode(*v, s.gateMode))
        r.fail(*c.get("gate_mode"), cp + ".gate_mode", "\"" + *v + "\" is not one of trained, hidden, cheap_embed, random");
    if (auto v = r.string(c, cp, "routing")) {
        RoutingMode m;
        if (!parseRoutingMode(*v, m))
            r.fail(*c.get("routing"), cp + ".routing", "\"" + *v + "\" is not one of token, running, sequence, likelihood");
        s.routing = m;
    }
    if (auto v = r.number(c, cp, "routing_halflife")) {
        if (*v < 0) r.fail(*c.get("routing_halflife"), cp + ".routing_halflife", "must be >= 0 (tokens; 0 = plain mean)");
        s.routingHalflife = *v;
    }
    if (auto v = r.boolean(c, cp, "gate_bias")) s.gateBias = *v;
    if (auto v = r.boolean(c, cp, "include_base")) s.includeBase = *v;
    if (auto v = r.number(c, cp, "validation_split")) {
        if (*v < 0 || *v >= 1) r.fail(*c.get("validation_split"), cp + ".validation_split", "must be in [0, 1)");
        s.validationSplit = *v;
    }
    if (auto v = r.integer(c, cp, "seed", 0, std::numeric_limits<int64_t>::max())) s.seed = uint64_t(*v);
    if (auto v = r.boolean(c, cp, "use_chat_template")) s.useChatTemplate = *v;
    if (auto v = r.boolean(c, cp, "merge_lora")) s.mergeLora = *v;
    if (auto v = r.boolean(c, cp, "anymoe_loss_header")) s.anymoeLossHeader = *v;
    if (auto v = r.string(c, cp, "export_dtype")) {
        if (std::find(std::begin(kExportDtypes), std::end(kExportDtypes), *v) == std::end(kExportDtypes))
            r.fail(*c.get("export_dtype"), cp + ".export_dtype", "\"" + *v + "\" is not one of bfloat16, float16, float32");
        s.exportDtype = *v;
    }
    if (auto v = r.string(c, cp, "export_architecture")) s.exportArchitecture = *v;
    if (auto v = r.string(c, cp, "quantize")) {
        const auto q = parseQuantizeScheme(*v);
        if (!q) r.fail(*c.get("quantize"), cp + ".quantize", "\"" + *v + "\" is not one of " + quantizeSchemeNames());
        s.quantize = *q;
    }

    if (const toml::table* base = r.table(c, cp, "base_expert", false)) {
        static constexpr std::string_view keys[] = {"positive_prompts", "negative_prompts"};
        r.checkKeys(*base, cp + ".base_expert", keys);
        s.basePrompts = readPrompts(r, *base, cp + ".base_expert");
    }
    if (const toml::array* experts = r.array(c, cp, "experts")) {
        if (experts->size() != s.expertIds.size())
            r.fail(*experts, cp + ".experts",
                   std::to_string(experts->size()) + " entries for " + std::to_string(s.expertIds.size()) +
                       " model_ids: give one [[anymoe.config.experts]] per expert, in the same order");
        for (size_t i = 0; i < experts->size(); ++i) {
            const toml::node& item = *experts->get(i);
            const std::string at = cp + ".experts[" + std::to_string(i) + "]";
            if (!item.is_table()) r.fail(item, at, "expected a table, got " + typeName(item));
            const toml::table& t = *item.as_table();
            static constexpr std::string_view keys[] = {"model_id", "positive_prompts", "negative_prompts"};
            r.checkKeys(t, at, keys);
            if (auto id = r.string(t, at, "model_id"); id && *id != s.expertIds[i])
                r.fail(*t.get("model_id"), at + ".model_id",
                       "\"" + *id + "\" does not match anymoe.model_ids[" + std::to_string(i) + "] \"" +
                           s.expertIds[i] + "\"");
            s.expertPrompts.push_back(readPrompts(r, t, at));
        }
    }

    // Cross-key requirements that need no other file.
    if (s.gateMode == GateMode::Trained && s.training && s.datasetJson.empty())
        r.fail(anymoe.source(), "anymoe.dataset_json", "missing: gate_mode \"trained\" with training = true needs a dataset");
    if (s.gateMode == GateMode::Trained && !s.training && s.gateModelId.empty())
        r.fail(c.source(), cp + ".gate_model_id", "missing: training = false loads the gates from this folder");
    return s;
}

// ---------------------------------------------------------------------------
// Writing

namespace {

std::string quote(const std::string& s) {
    std::ostringstream os;
    os << toml::toml_formatter{toml::value<std::string>(s), toml::format_flags::allow_unicode_strings};
    return os.str();
}

std::string quoteList(const std::vector<std::string>& items) {
    if (items.empty()) return "[]";
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + quote(items[i]);
    return out + "]";
}

// Shortest text that parses back to the same double, always a TOML float.
std::string formatDouble(double v) {
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    std::string s(buf, res.ptr);
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
}

std::string relativeText(const fs::path& p, const fs::path& dir) {
    const fs::path abs = fs::absolute(p).lexically_normal();
    const fs::path rel = abs.lexically_relative(dir);
    return rel.empty() ? abs.string() : rel.generic_string();
}

// The id as written when it still names the same folder from `dir`.
std::string idText(const std::string& written, const fs::path& resolved, const fs::path& dir) {
    if (resolved.empty()) return written;
    if (!written.empty()) {
        try {
            if (resolveModelId(written, dir) == normalFolder(resolved)) return written;
        } catch (const Error&) {
        }
    }
    return relativeText(resolved, dir);
}

} // namespace

void saveSelector(const Selector& s, const fs::path& file) {
    if (s.experts.size() != s.expertIds.size() && !s.expertIds.empty() && !s.experts.empty())
        throw Error(file.string() + ": cannot save: " + std::to_string(s.expertIds.size()) + " expert ids for " +
                    std::to_string(s.experts.size()) + " expert folders");
    const size_t nExperts = std::max(s.experts.size(), s.expertIds.size());
    if (!s.expertPrompts.empty() && s.expertPrompts.size() != nExperts)
        throw Error(file.string() + ": cannot save: prompts for " + std::to_string(s.expertPrompts.size()) +
                    " experts, but there are " + std::to_string(nExperts));
    const fs::path dir = normalFolder(file).parent_path();

    std::vector<std::string> ids(nExperts);
    for (size_t i = 0; i < nExperts; ++i)
        ids[i] = idText(i < s.expertIds.size() ? s.expertIds[i] : "", i < s.experts.size() ? s.experts[i] : "", dir);

    std::ostringstream o;
    o << "# MoE Studio selector (mistral.rs AnyMoE compatible; see README \"Selector reference\")\n";
    for (const auto& [key, value] : s.mistralrsOptions)
        if (key.find('.') == std::string::npos) o << key << " = " << value << "\n";

    o << "\n[model]\nkind = \"plain\"\n";
    o << "model_id = " << quote(idText(s.modelId, s.baseModel, dir)) << "\n";
    if (!s.arch.empty()) o << "arch = " << quote(s.arch) << "\n";
    for (const auto& [key, value] : s.mistralrsOptions)
        if (key.rfind("model.", 0) == 0) o << key.substr(6) << " = " << value << "\n";

    o << "\n[anymoe]\n";
    if (!s.datasetJson.empty()) o << "dataset_json = " << quote(relativeText(s.datasetJson, dir)) << "\n";
    o << "prefix = " << quote(s.prefix) << "\nmlp = " << quote(s.mlp) << "\n";
    o << "model_ids = " << quoteList(ids) << "\n";
    if (!s.layers.empty()) {
        o << "layers = [";
        for (size_t i = 0; i < s.layers.size(); ++i) o << (i ? ", " : "") << s.layers[i];
        o << "]\n";
    }

    o << "\n[anymoe.config]\n";
    if (s.hiddenSize > 0) o << "hidden_size = " << s.hiddenSize << "\n";
    o << "lr = " << formatDouble(s.lr) << "\nepochs = " << s.epochs << "\nbatch_size = " << s.batchSize << "\n";
    if (s.expertType == ExpertType::FineTuned) o << "expert_type = \"fine_tuned\"\n";
    if (!s.gateModelId.empty()) o << "gate_model_id = " << quote(relativeText(s.gateModelId, dir)) << "\n";
    o << "training = " << (s.training ? "true" : "false") << "\n";
    if (!s.lossCsvPath.empty()) o << "loss_csv_path = " << quote(relativeText(s.lossCsvPath, dir)) << "\n";
    o << "# MoE Studio keys (mistral.rs ignores them)\n";
    o << "top_k = " << s.topK << "\n";
    o << "gate_mode = " << quote(toString(s.gateMode)) << "\n";
    if (s.routing) o << "routing = " << quote(toString(*s.routing)) << "\n";
    o << "routing_halflife = " << formatDouble(s.routingHalflife) << "\n";
    o << "gate_bias = " << (s.gateBias ? "true" : "false") << "\n";
    o << "include_base = " << (s.includeBase ? "true" : "false") << "\n";
    o << "validation_split = " << formatDouble(s.validationSplit) << "\n";
    if (s.seed > uint64_t(std::numeric_limits<int64_t>::max()))
        throw Error(file.string() + ": cannot save: seed " + std::to_string(s.seed) + " does not fit a TOML integer");
    o << "seed = " << s.seed << "\n";
    o << "use_chat_template = " << (s.useChatTemplate ? "true" : "false") << "\n";
    o << "merge_lora = " << (s.mergeLora ? "true" : "false") << "\n";
    o << "anymoe_loss_header = " << (s.anymoeLossHeader ? "true" : "false") << "\n";
    if (!s.exportDtype.empty()) o << "export_dtype = " << quote(s.exportDtype) << "\n";
    if (!s.exportArchitecture.empty()) o << "export_architecture = " << quote(s.exportArchitecture) << "\n";
    if (s.quantize != QuantizeScheme::None) o << "quantize = " << quote(toString(s.quantize)) << "\n";

    if (s.expertType == ExpertType::LoraAdapter) {
        o << "\n[anymoe.config.expert_type.lora_adapter]\n";
        if (s.loraRank > 0) o << "rank = " << s.loraRank << "\n";
        if (s.loraAlpha > 0) o << "alpha = " << formatDouble(s.loraAlpha) << "\n";
        if (!s.loraTargets.empty()) o << "target_modules = " << quoteList(s.loraTargets) << "\n";
    }
    if (!s.basePrompts.positive.empty() || !s.basePrompts.negative.empty()) {
        o << "\n[anymoe.config.base_expert]\n";
        o << "positive_prompts = " << quoteList(s.basePrompts.positive) << "\n";
        o << "negative_prompts = " << quoteList(s.basePrompts.negative) << "\n";
    }
    for (size_t i = 0; i < s.expertPrompts.size(); ++i) {
        o << "\n[[anymoe.config.experts]]\n";
        o << "model_id = " << quote(ids[i]) << "\n";
        o << "positive_prompts = " << quoteList(s.expertPrompts[i].positive) << "\n";
        o << "negative_prompts = " << quoteList(s.expertPrompts[i].negative) << "\n";
    }
    writeFileAtomic(file, o.str());
}

Selector loadSelectorAny(const fs::path& file) {
    std::string ext = file.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".toml") return loadSelector(file);
    if (ext == ".yaml" || ext == ".yml") return loadMergekitConfig(file);
    throw Error(file.string() + ": unknown selector format \"" + ext +
                "\" (expected .toml for a selector or .yaml/.yml for a mergekit-moe config)");
}


} // namespace moe
