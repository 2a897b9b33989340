// Chat templates: finds a model's Jinja template and renders it the way
// transformers' apply_chat_template does.
#include "moe/chat_template.h"

#include "jinja.h"
#include "json_input.h"
#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/gguf_model.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <fstream>
#include <sstream>

namespace moe {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json readJsonFile(const fs::path& path) {
    try {
        return parseJsonChecked(readTextFile(path), path);
    } catch (const json::exception& e) {
        throw Error(path.string() + ": invalid JSON: " + e.what());
    }
}

// The `chat_template` field: a string, or a list of {name, template} entries
// of which "default" is the one for plain chat (the first entry when none is
// called that). Null or absent means no template.
std::string templateFromField(const json& config, const fs::path& file) {
    const auto it = config.find("chat_template");
    if (it == config.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array()) {
        const json* chosen = nullptr;
        for (const auto& entry : *it) {
            if (!entry.is_object() || !entry.contains("template") || !entry["template"].is_string())
                throw Error(file.string() + ": chat_template entries need a \"template\" string");
            if (!chosen) chosen = &entry;
            const auto name = entry.find("name");
            if (name != entry.end() && name->is_string() && name->get<std::string>() == "default") {
                chosen = &entry;
                break;
            }
        }
        return chosen ? (*chosen)["template"].get<std::string>() : std::string();
    }
    throw Error(file.string() + ": chat_template must be a string or a list of {name, template}");
}

// Python's datetime.now().strftime(), which transformers offers to
// templates (Llama 3.x prints today's date with it).
jinja::Value strftimeNow(const jinja::CallArgs& args) {
    if (args.positional.size() != 1 || !args.positional[0].isString() || !args.named.empty())
        throw Error("strftime_now() takes one format string");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[512];
    const std::size_t written = std::strftime(buffer, sizeof buffer, args.positional[0].asString().c_str(), &local);
    return jinja::Value(std::string(buffer, written));
}

// transformers' raise_exception(): the template's own message, unchanged.
jinja::Value raiseException(const jinja::CallArgs& args) {
    std::string message = args.positional.empty() ? std::string("raise_exception() called by the chat template")
                                                  : jinja::toText(args.positional[0]);
    throw Error(message);
}

// Fallback for models without a template: one "role: content" line per
// message, then "assistant: " to cue the reply. BOS/EOS are left to the
// tokenizer, which adds BOS when the model asks for it.
std::string renderPlain(const std::vector<ChatMessage>& messages, bool addGenerationPrompt) {
    std::string out;
    for (const auto& message : messages) out += message.role + ": " + message.content + "\n";
    if (addGenerationPrompt) out += "assistant: ";
    return out;
}

} // namespace

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)) {}

ChatTemplate ChatTemplate::fromModelDir(const fs::path& modelDir) {
    if (isGgufPath(modelDir)) return fromGguf(*GgufFile::open(modelDir));
    // Newer transformers save the template as its own file, which then takes
    // precedence over tokenizer_config.json.
    const fs::path jinjaFile = modelDir / "chat_template.jinja";
    if (fs::is_regular_file(jinjaFile)) return ChatTemplate(readTextFile(jinjaFile));

    const fs::path tokenizerConfig = modelDir / "tokenizer_config.json";
    if (fs::is_regular_file(tokenizerConfig)) {
        std::string source = templateFromField(readJsonFile(tokenizerConfig), tokenizerConfig);
        if (!source.empty()) return ChatTemplate(std::move(source));
    }
    // Processor-style folders keep it in chat_template.json.
    const fs::path chatTemplateJson = modelDir / "chat_template.json";
    if (fs::is_regular_file(chatTemplateJson))
        return ChatTemplate(templateFromField(readJsonFile(chatTemplateJson), chatTemplateJson));
    return ChatTemplate();
}

ChatTemplate ChatTemplate::fromGguf(const GgufFile& file) {
    return ChatTemplate(file.getString("tokenizer.chat_template").value_or(std::string()));
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool addGenerationPrompt,
                                 const std::string& bosToken, const std::string& eosToken,
                                 const ChatTemplateKwargs& kwargs, const std::atomic<bool>* cancel) const {
    if (isFallback()) return renderPlain(messages, addGenerationPrompt);

    // transformers renders with trim_blocks and lstrip_blocks on.
    jinja::Options options;
    options.trimBlocks = true;
    options.lstripBlocks = true;
    options.name = "chat template";
    options.cancel = cancel;
    const jinja::Template compiled(source_, options);

    jinja::ValueList messageValues;
    messageValues.reserve(messages.size());
    for (const auto& message : messages) {
        jinja::ValueDict entry;
        entry.set("role", message.role);
        entry.set("content", message.content);
        messageValues.push_back(jinja::Value::dict(std::move(entry)));
    }
    std::vector<std::pair<std::string, jinja::Value>> variables = {
        {"messages", jinja::Value::list(std::move(messageValues))},
        {"add_generation_prompt", jinja::Value(addGenerationPrompt)},
        {"bos_token", jinja::Value(bosToken)},
        {"eos_token", jinja::Value(eosToken)},
        // transformers passes these as None when the caller has none.
        {"tools", jinja::Value::none()},
        {"documents", jinja::Value::none()},
        {"raise_exception", jinja::Value::function(raiseException)},
        {"strftime_now", jinja::Value::function(strftimeNow)},
    };
    for (const auto& [name, value] : kwargs) {
        for (const auto& taken : variables)
            if (taken.first == name)
                throw Error("chat template argument \"" + name + "\": the renderer sets this variable itself");
        variables.emplace_back(name, std::visit([](const auto& v) { return jinja::Value(v); }, value));
    }
    return compiled.render(variables);
}

} // namespace moe
