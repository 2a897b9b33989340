// mergekit-moe YAML configs mapped onto a Selector.
#include "moe/mergekit.h"

#include "moe/atomic_file.h"
#include "moe/error.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>

namespace moe {
namespace fs = std::filesystem;

namespace {

class YamlReader {
public:
    explicit YamlReader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const YAML::Node& where, const std::string& key, const std::string& what) const {
        const YAML::Mark m = where.IsDefined() ? where.Mark() : YAML::Mark::null_mark();
        std::string at = file_;
        if (m.line >= 0) at += ":" + std::to_string(m.line + 1); // yaml-cpp counts from 0
        throw Error(at + ": " + key + ": " + what);
    }

    std::string scalar(const YAML::Node& n, const std::string& key) const {
        if (!n.IsScalar()) fail(n, key, "expected a single value, got " + kind(n));
        return n.Scalar();
    }

    int positiveInt(const YAML::Node& n, const std::string& key) const {
        const std::string text = scalar(n, key);
        try {
            size_t used = 0;
            const long v = std::stol(text, &used);
            if (used == text.size() && v >= 1 && v <= 1'000'000) return int(v);
        } catch (const std::exception&) {
        }
        fail(n, key, "\"" + text + "\" is not a positive integer");
    }

    std::vector<std::string> strings(const YAML::Node& n, const std::string& key) const {
        if (n.IsNull()) return {};
        if (!n.IsSequence()) fail(n, key, "expected a list of strings, got " + kind(n));
        std::vector<std::string> out;
        for (size_t i = 0; i < n.size(); ++i) {
            const std::string at = key + "[" + std::to_string(i) + "]";
            out.push_back(scalar(n[i], at));
            if (out.back().empty()) fail(n[i], at, "is empty");
        }
        return out;
    }

    static std::string kind(const YAML::Node& n) {
        switch (n.Type()) {
        case YAML::NodeType::Null: return "nothing";
        case YAML::NodeType::Scalar: return "a single value";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        default: return "nothing";
        }
    }

private:
    std::string file_;
};

} // namespace

Selector loadMergekitConfig(const fs::path& yaml) {
    const std::string name = yaml.string();
    const std::string text = readTextFile(yaml, kMaxSmallFileBytes);
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        throw Error(name + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                    ": YAML syntax error: " + e.msg);
    }
    const YamlReader r(name);
    if (!root.IsMap()) r.fail(root, "(top level)", "expected a mapping with base_model and experts, got " + r.kind(root));
    const fs::path dir = fs::absolute(yaml).lexically_normal().parent_path();

    Selector s;
    s.file = fs::absolute(yaml).lexically_normal();
    s.gateMode = GateMode::Hidden; // mergekit's default
    s.gateBias = false;            // the target architectures' routers have no bias
    s.routing = RoutingMode::Token; // Mixtral-style top-k per token
    s.includeBase = false;          // mergekit routes between the experts only

    auto resolve = [&](const YAML::Node& n, const std::string& key, std::string& idOut) {
        idOut = r.scalar(n, key);
        if (idOut.empty()) r.fail(n, key, "is empty");
        try {
            return resolveModelId(idOut, dir);
        } catch (const Error& e) {
            std::string hint;
            if (idOut.find('+') != std::string::npos)
                hint = " (\"model+lora\" references are not supported: list LoRA adapters as experts of a TOML selector)";
            else if (idOut.find('@') != std::string::npos)
                hint = " (\"model@revision\" references are not supported: use the snapshot folder)";
            r.fail(n, key, e.what() + hint);
        }
    };

    bool sawBase = false, sawExperts = false;
    for (auto it = root.begin(); it != root.end(); ++it) {
        // Copies: the iterator hands out a temporary proxy (Nodes are handles).
        const YAML::Node keyNode = it->first;
        const YAML::Node value = it->second;
        const std::string key = r.scalar(keyNode, "(key)");
        if (key == "base_model") {
            if (value.IsMap())
                r.fail(value, key, "a structured model reference is not supported: give a folder or Hugging Face id");
            s.baseModel = resolve(value, key, s.modelId);
            sawBase = true;
        } else if (key == "gate_mode") {
            const std::string mode = r.scalar(value, key);
            if (mode == "trained" || !parseGateMode(mode, s.gateMode))
                r.fail(value, key, "\"" + mode + "\" is not supported (supported: hidden, cheap_embed, random)");
        } else if (key == "dtype") {
            std::string dtype = r.scalar(value, key);
            if (dtype.rfind("torch.", 0) == 0) dtype = dtype.substr(6);
            if (dtype != "bfloat16" && dtype != "float16" && dtype != "float32")
                r.fail(value, key, "\"" + dtype + "\" is not supported (bfloat16, float16, float32)");
            s.exportDtype = dtype;
        } else if (key == "experts_per_token") {
            s.topK = r.positiveInt(value, key);
        } else if (key == "architecture") {
            s.exportArchitecture = value.IsNull() ? "" : r.scalar(value, key);
        } else if (key == "shared_experts") {
            if (!value.IsNull() && !(value.IsSequence() && value.size() == 0))
                r.fail(keyNode, key,
                       "not supported: MoE Studio routes every expert (a Qwen2-MoE always-on shared expert cannot "
                       "be represented; include_base = true in a TOML selector routes the base as an expert)");
        } else if (key == "experts") {
            if (value.IsNull()) r.fail(keyNode, key, "expected a non-empty list of experts, got nothing");
            if (!value.IsSequence() || value.size() == 0) r.fail(value, key, "expected a non-empty list of experts");
            for (size_t i = 0; i < value.size(); ++i) {
                const YAML::Node e = value[i];
                const std::string at = "experts[" + std::to_string(i) + "]";
                if (!e.IsMap()) r.fail(e, at, "expected a mapping with source_model, got " + r.kind(e));
                std::string id;
                fs::path folder;
                ExpertPrompts prompts;
                bool sawSource = false;
                for (auto f = e.begin(); f != e.end(); ++f) {
                    const std::string field = r.scalar(f->first, at + ".(key)");
                    const std::string fieldAt = at + "." + field;
                    if (field == "source_model") {
                        if (f->second.IsMap())
                            r.fail(f->second, fieldAt,
                                   "a structured model reference is not supported: give a folder or Hugging Face id");
                        folder = resolve(f->second, fieldAt, id);
                        sawSource = true;
                    } else if (field == "positive_prompts") {
                        prompts.positive = r.strings(f->second, fieldAt);
                    } else if (field == "negative_prompts") {
                        prompts.negative = r.strings(f->second, fieldAt);
                    } else if (field == "noise_scale" || field == "residual_scale") {
                        r.fail(f->first, fieldAt, "is not supported (experts are used unscaled and without noise)");
                    } else {
                        r.fail(f->first, fieldAt, "unknown key (known: source_model, positive_prompts, negative_prompts)");
                    }
                }
                if (!sawSource) r.fail(e, at + ".source_model", "missing");
                s.expertIds.push_back(id);
                s.experts.push_back(folder);
                s.expertPrompts.push_back(std::move(prompts));
            }
            sawExperts = true;
        } else {
            r.fail(keyNode, key,
                   "is not supported (known: base_model, experts, gate_mode, dtype, experts_per_token, "
                   "shared_experts, architecture)");
        }
    }
    if (!sawBase) r.fail(root, "base_model", "missing");
    if (!sawExperts) r.fail(root, "experts", "missing");
    // Training-free gates need no dataset; nothing is trained unless the user
    // switches to gate_mode trained later.
    return s;
}

} // namespace moe
