#include "moe/openai_request.h"

#include <cmath>
#include <limits>

namespace moe::server {

using nlohmann::json;

ApiError::ApiError(int status_, const std::string& message, std::string param_, std::string code_)
    : std::runtime_error(message), status(status_), param(std::move(param_)), code(std::move(code_)) {}

std::string ApiError::type() const {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "invalid_request_error";
    case 413: return "invalid_request_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

json ApiError::body() const {
    return {{"error",
             {{"message", what()},
              {"type", type()},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
    throw ApiError(400, "'" + field + "': " + why, field, "invalid_value");
}

// A number field within [lo, hi] (null counts as absent, as OpenAI's API treats it).
std::optional<double> number(const json& body, const char* field, double lo, double hi) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) bad(field, "expected a number");
    const double v = it->get<double>();
    if (!std::isfinite(v) || v < lo || v > hi)
        bad(field, "must be between " + json(lo).dump() + " and " + json(hi).dump() + ", got " + it->dump());
    return v;
}

std::optional<int64_t> integer(const json& body, const char* field, int64_t lo, int64_t hi) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) bad(field, "expected an integer");
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        bad(field, "must be at most " + std::to_string(hi));
    const int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
        bad(field, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + it->dump());
    return v;
}

std::optional<bool> boolean(const json& body, const char* field) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) bad(field, "expected true or false");
    return it->get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string content(const json& c, const std::string& field) {
    if (c.is_null()) return {};
    if (c.is_string()) return c.get<std::string>();
    if (!c.is_array()) bad(field, "expected a string or an array of text parts");
    std::string text;
    for (size_t i = 0; i < c.size(); ++i) {
        const json& part = c[i];
        const std::string f = field + "[" + std::to_string(i) + "]";
        if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
            !part["text"].is_string())
            bad(f, "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
        text += part["text"].get<std::string>();
    }
    return text;
}

std::vector<ChatMessage> messages(const json& body) {
    auto it = body.find("messages");
    if (it == body.end()) bad("messages", "required");
    if (!it->is_array() || it->empty()) bad("messages", "expected a non-empty array");
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        const std::string f = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) bad(f, "expected an object with role and content");
        auto role = m.find("role");
        if (role == m.end() || !role->is_string()) bad(f + ".role", "expected a string");
        std::string r = role->get<std::string>();
        if (r == "developer") r = "system"; // OpenAI's newer name for the system message
        if (r != "system" && r != "user" && r != "assistant")
            bad(f + ".role", "expected system, developer, user or assistant, got \"" + role->get<std::string>() + "\"");
        auto c = m.find("content");
        if (c == m.end() && r != "assistant") bad(f + ".content", "required");
        out.push_back({r, c == m.end() ? std::string() : content(*c, f + ".content")});
    }
    if (out.back().role != "user") bad("messages", "the last message must be the user's");
    return out;
}

std::string prompt(const json& body) {
    auto it = body.find("prompt");
    if (it == body.end()) bad("prompt", "required");
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) return (*it)[0].get<std::string>();
    bad("prompt", "expected a string (or an array of one string)");
}

std::vector<std::string> stops(const json& body) {
    auto it = body.find("stop");
    if (it == body.end() || it->is_null()) return {};
    std::vector<std::string> out;
    if (it->is_string()) out.push_back(it->get<std::string>());
    else if (it->is_array()) {
        if (it->size() > 16) bad("stop", "at most 16 stop strings");
        for (const json& s : *it) {
            if (!s.is_string()) bad("stop", "expected a string or an array of strings");
            out.push_back(s.get<std::string>());
        }
    } else
        bad("stop", "expected a string or an array of strings");
    for (const auto& s : out)
        if (s.empty()) bad("stop", "a stop string must not be empty");
    return out;
}

} // namespace

CompletionRequest parseCompletionRequest(const std::string& text, bool chat) {
    json body;
    try {
        body = json::parse(text);
    } catch (const json::parse_error& e) {
        throw ApiError(400, std::string("the body is not valid JSON: ") + e.what(), {}, "invalid_json");
    }
    if (!body.is_object()) throw ApiError(400, "the body must be a JSON object", {}, "invalid_json");

    CompletionRequest r;
    r.chat = chat;
    auto model = body.find("model");
    if (model == body.end()) bad("model", "required");
    if (!model->is_string()) bad("model", "expected a string");
    r.model = model->get<std::string>();
    if (chat) r.messages = messages(body);
    else r.prompt = prompt(body);

    r.stream = boolean(body, "stream").value_or(false);
    if (auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
        if (!so->is_object()) bad("stream_options", "expected an object");
        r.includeUsage = boolean(*so, "include_usage").value_or(false);
    }
    if (auto n = integer(body, "n", 1, 1)) (void)n; // one choice per request

    ReplyOptions& o = r.reply;
    constexpr int64_t kMaxTokens = 1 << 20;
    if (auto v = integer(body, "max_tokens", 1, kMaxTokens)) o.maxTokens = int(*v);
    if (auto v = integer(body, "max_completion_tokens", 1, kMaxTokens)) o.maxTokens = int(*v);
    SamplingParams& s = o.sampling;
    if (auto v = number(body, "temperature", 0, 2)) s.temperature = float(*v);
    if (auto v = number(body, "top_p", 0, 1)) s.topP = float(*v);
    if (auto v = integer(body, "top_k", 0, 1 << 20)) s.topK = int(*v);
    if (auto v = number(body, "min_p", 0, 1)) s.minP = float(*v);
    if (auto v = number(body, "presence_penalty", -2, 2)) s.presencePenalty = float(*v);
    if (auto v = number(body, "frequency_penalty", -2, 2)) s.frequencyPenalty = float(*v);
    if (auto v = number(body, "repeat_penalty", 0.01, 10)) s.repetitionPenalty = float(*v);
    if (auto v = integer(body, "seed", 0, std::numeric_limits<int64_t>::max())) s.seed = uint64_t(*v);
    o.stopStrings = stops(body);

    // chat_template_kwargs, as llama.cpp's server and vLLM take them: extra
    // chat-template variables, e.g. {"enable_thinking": false} for Qwen3.
    if (auto it = body.find("chat_template_kwargs"); it != body.end() && !it->is_null()) {
        if (!chat) bad("chat_template_kwargs", "applies to /v1/chat/completions only");
        if (!it->is_object()) bad("chat_template_kwargs", "expected an object");
        if (it->size() > 64) bad("chat_template_kwargs", "at most 64 entries");
        for (const auto& [key, value] : it->items()) {
            const std::string f = "chat_template_kwargs." + key;
            if (value.is_boolean()) o.templateKwargs[key] = value.get<bool>();
            else if (value.is_number_integer() &&
                     !(value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())))
                o.templateKwargs[key] = value.get<int64_t>();
            else if (value.is_number()) o.templateKwargs[key] = value.get<double>();
            else if (value.is_string()) o.templateKwargs[key] = value.get<std::string>();
            else bad(f, "expected a boolean, number or string");
        }
    }

    if (auto it = body.find("routing"); it != body.end() && !it->is_null()) {
        RoutingMode m;
        if (!it->is_string() || !parseRoutingMode(it->get<std::string>(), m))
            bad("routing", "expected token, running, sequence or likelihood");
        r.routing = m;
    }
    return r;
}

} // namespace moe::server
