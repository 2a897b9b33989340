#include "moe/chat_session.h"

#include "moe/chat_prompt.h"

#include <algorithm>

namespace moe {

ChatSession::ChatSession(RunnableModel& model, uint32_t maxContext)
    : model_(model), session_(std::make_unique<Session>(model.model(), maxContext)) {}

ChatSession::ChatSession(RunnableModel& model, std::unique_ptr<Session> session)
    : model_(model), session_(std::move(session)) {
    if (!session_ || &session_->model() != &model.model())
        throw Error("internal: a chat session needs a session of its own model");
}

void ChatSession::reset() {
    session_->reset();
    cached_.clear();
}

int ChatSession::replyBudget(int maxTokens) const {
    const int contextLength = int(session_->maxContext());
    return std::clamp(maxTokens, 1, std::max(1, contextLength - 8));
}

std::vector<int32_t> ChatSession::renderConversation(const std::vector<ChatMessage>& conversation, int maxTokens,
                                                     int* droppedMessages, const ChatTemplateKwargs& kwargs,
                                                     const std::atomic<bool>* cancel) const {
    const Tokenizer& tok = model_.tokenizer();
    const ChatTemplate& tmpl = model_.chatTemplate();
    // Leave room for the reply; drop the oldest exchanges (never the system
    // prompt or the last message) until the prompt fits.
    const int contextLength = int(session_->maxContext());
    const int budget = replyBudget(maxTokens);
    std::vector<ChatMessage> messages = conversation;
    std::vector<int32_t> tokens = encodeChat(tmpl, tok, messages, true, kwargs, cancel);
    const size_t firstDroppable = !messages.empty() && messages.front().role == "system" ? 1 : 0;
    while (int(tokens.size()) + budget > contextLength && messages.size() > firstDroppable + 1) {
        messages.erase(messages.begin() + long(firstDroppable));
        // Templates such as Llama-2's insist on user/assistant alternation starting with user.
        if (messages.size() > firstDroppable + 1 && messages[firstDroppable].role == "assistant")
            messages.erase(messages.begin() + long(firstDroppable));
        tokens = encodeChat(tmpl, tok, messages, true, kwargs, cancel);
    }
    if (droppedMessages) *droppedMessages = int(conversation.size() - messages.size());
    if (tokens.empty()) throw Error("the conversation renders to no tokens");
    if (int(tokens.size()) >= contextLength)
        throw PromptTooLong("the message is " + std::to_string(tokens.size()) +
                            " tokens long; the model's context holds " + std::to_string(contextLength));
    return tokens;
}

std::vector<int32_t> ChatSession::encodePrompt(const std::string& prompt) const {
    std::vector<int32_t> tokens = model_.tokenizer().encode(prompt, true, false);
    if (tokens.empty()) throw Error("the prompt encodes to no tokens");
    if (tokens.size() >= session_->maxContext())
        throw PromptTooLong("the prompt is " + std::to_string(tokens.size()) + " tokens long; the model's context holds " +
                            std::to_string(session_->maxContext()));
    return tokens;
}

ChatReply ChatSession::reply(const std::vector<ChatMessage>& conversation, const ReplyOptions& options,
                             const std::function<bool(const std::string&)>& onText) {
    int dropped = 0;
    std::vector<int32_t> tokens;
    try {
        tokens = renderConversation(conversation, options.maxTokens, &dropped, options.templateKwargs, options.cancel);
    } catch (const Cancelled&) {
        // Stopped before anything was forwarded: the KV cache is as it was.
        ChatReply out;
        out.generation.stopReason = "cancelled";
        return out;
    } catch (...) {
        reset(); // as before: a refused turn starts the next one from scratch
        throw;
    }
    ChatReply out = run(tokens, replyBudget(options.maxTokens), options, onText);
    out.droppedMessages = dropped;
    return out;
}

ChatReply ChatSession::complete(const std::string& prompt, const ReplyOptions& options,
                                const std::function<bool(const std::string&)>& onText) {
    return run(encodePrompt(prompt), replyBudget(options.maxTokens), options, onText);
}

ChatReply ChatSession::run(const std::vector<int32_t>& tokens, int maxTokens, const ReplyOptions& options,
                           const std::function<bool(const std::string&)>& onText) {
    ChatReply out;
    try {
        const int contextLength = int(session_->maxContext());
        // Reuse the KV cache for the common prefix; at least one token is
        // forwarded so that the last position's logits are fresh.
        size_t reuse = 0;
        const size_t limit = std::min<size_t>(cached_.size(), session_->position());
        while (reuse < limit && reuse < tokens.size() && cached_[reuse] == tokens[reuse]) ++reuse;
        if (reuse == tokens.size()) --reuse;
        session_->truncate(uint32_t(reuse));
        cached_.resize(reuse);
        out.promptTokens = int(tokens.size());
        out.reusedTokens = int(reuse);

        GenerateOptions gen;
        gen.maxTokens = std::min(maxTokens, contextLength - int(tokens.size()));
        gen.sampling = options.sampling;
        gen.stopStrings = options.stopStrings;
        gen.cancel = options.cancel;
        gen.forwardLock = options.forwardLock;
        // Route the turn the model's way, then count only the reply's tokens.
        gen.prefill = [&](Session& s, std::span<const int32_t> turn) {
            model_.model().resetExpertCacheStats(); // this reply's figures
            out.likelihood = model_.forwardPrompt(s, turn);
            s.resetExpertUsage();
            return s.lastLogits();
        };
        const std::vector<int32_t> turn(tokens.begin() + long(reuse), tokens.end());
        out.generation = generate(*session_, model_.tokenizer(), turn, gen, onText);
        out.expertUsage = model_.expertUsage(*session_);
        out.expertCache = model_.expertCache(uint64_t(turn.size()) + uint64_t(out.generation.decodeSteps));

        cached_ = tokens;
        cached_.insert(cached_.end(), out.generation.tokens.begin(), out.generation.tokens.end());
        cached_.resize(std::min<size_t>(cached_.size(), session_->position()));
        return out;
    } catch (...) {
        // The session may hold a half-forwarded batch: start the next reply from scratch.
        reset();
        throw;
    }
}

} // namespace moe
