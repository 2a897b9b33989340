#pragma once
// One conversation with a RunnableModel: each reply renders the whole
// conversation with the model's chat template, drops the oldest exchanges
// that do not fit the context, forwards only what the KV cache does not hold
// yet, routes the new turn the model's way (likelihood routing picks an
// expert per turn), then generates with stop strings and cancel. Used by
// moe-cli chat, the app's chat and the server, so that all three give the
// same tokens for the same conversation.
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/generate.h"
#include "moe/runnable_model.h"
#include "moe/sampler.h"
#include "moe/session.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace moe {

struct ReplyOptions {
    int maxTokens = 256;
    SamplingParams sampling;
    std::vector<std::string> stopStrings;
    // Extra chat-template variables for reply() (enable_thinking for Qwen3).
    ChatTemplateKwargs templateKwargs;
    // Stops the reply when set (from any thread): the chat template's render
    // at its next step, generation at its next token (stop reason "cancelled").
    const std::atomic<bool>* cancel = nullptr;
    // Sessions of one model replying on several threads (the server's slots)
    // take turns on it per forward pass under this lock (null: not shared).
    std::mutex* forwardLock = nullptr;
};

// The prompt does not fit the context even with every droppable message left out.
class PromptTooLong : public Error {
public:
    using Error::Error;
};

struct ChatReply {
    GenerateResult generation;    // tokens, text, stop reason, timings
    int promptTokens = 0;         // tokens of the rendered conversation
    int reusedTokens = 0;         // of those, already in the KV cache (not recomputed)
    int droppedMessages = 0;      // oldest messages left out to fit the context
    LikelihoodPick likelihood;    // the turn's pick (slot -1 unless likelihood routing)
    std::vector<LayerUsage> expertUsage; // the reply's tokens per slot and MoE layer
    ExpertCacheFigures expertCache;      // over the tokens forwarded for this reply
};

class ChatSession {
public:
    // `maxContext` 0 = the model's context, at most 4096.
    explicit ChatSession(RunnableModel& model, uint32_t maxContext = 0);
    // On a session of `model`'s model, for example one of several sharing
    // their device state (Session(Session&)), whose decode steps then batch.
    ChatSession(RunnableModel& model, std::unique_ptr<Session> session);

    // The assistant's reply to `conversation` (system, user and assistant
    // messages, the last one the user's). `onText` receives each piece of
    // text as soon as it is final; returning false stops the reply. Throws
    // PromptTooLong when even the last message alone does not fit the context.
    ChatReply reply(const std::vector<ChatMessage>& conversation, const ReplyOptions& options,
                    const std::function<bool(const std::string&)>& onText = {});
    // A continuation of plain text (no chat template: the server's
    // /v1/completions), with the same KV-prefix reuse, routing and stops.
    // PromptTooLong when the prompt fills the context.
    ChatReply complete(const std::string& prompt, const ReplyOptions& options,
                       const std::function<bool(const std::string&)>& onText = {});

    // The tokens reply() forwards for `conversation` with room for `maxTokens`
    // (oldest exchanges dropped: counted in `droppedMessages`), and complete()
    // for `prompt`, so that a caller can refuse a prompt before replying.
    // `cancel` stops the rendering (moe::Cancelled).
    std::vector<int32_t> renderConversation(const std::vector<ChatMessage>& conversation, int maxTokens,
                                            int* droppedMessages = nullptr,
                                            const ChatTemplateKwargs& kwargs = {},
                                            const std::atomic<bool>* cancel = nullptr) const;
    std::vector<int32_t> encodePrompt(const std::string& prompt) const;
    // Usage of the reply in progress so far (for a live chart).
    std::vector<LayerUsage> expertUsage() const { return model_.expertUsage(*session_); }
    // Forgets the KV cache (the next reply forwards everything).
    void reset();

    RunnableModel& model() { return model_; }
    Session& session() { return *session_; }
    uint32_t maxContext() const { return session_->maxContext(); }

private:
    ChatReply run(const std::vector<int32_t>& tokens, int maxTokens, const ReplyOptions& options,
                  const std::function<bool(const std::string&)>& onText);
    int replyBudget(int maxTokens) const;

    RunnableModel& model_;
    std::unique_ptr<Session> session_;
    std::vector<int32_t> cached_; // the tokens whose keys and values the session holds
};

} // namespace moe
