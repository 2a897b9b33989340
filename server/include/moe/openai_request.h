#pragma once
// The body of an OpenAI chat or text completion request, checked: every
// field the server honours is read with its type and range, and anything
// wrong becomes an ApiError naming the field (OpenAI's error shape).
#include "moe/chat_session.h"
#include "moe/routing.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::server {

// An HTTP error with OpenAI's body: {"error": {message, type, param, code}}.
struct ApiError : std::runtime_error {
    ApiError(int status, const std::string& message, std::string param = {}, std::string code = {});
    int status;
    std::string param, code;
    std::string type() const;
    nlohmann::json body() const;
};

struct CompletionRequest {
    bool chat = true;                  // /v1/chat/completions, else /v1/completions
    std::string model;
    std::vector<ChatMessage> messages; // chat
    std::string prompt;                // completion
    bool stream = false;
    bool includeUsage = false;         // stream_options.include_usage
    std::optional<RoutingMode> routing; // MoE extension: this request's routing mode
    ReplyOptions reply;                // max_tokens, sampling, stop
};

// Parses and checks a request body; throws ApiError (400) naming the field.
CompletionRequest parseCompletionRequest(const std::string& body, bool chat);

} // namespace moe::server
