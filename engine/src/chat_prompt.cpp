#include "moe/chat_prompt.h"

namespace moe {

std::vector<int32_t> encodeChat(const ChatTemplate& chatTemplate, const Tokenizer& tokenizer,
                                const std::vector<ChatMessage>& messages, bool addGenerationPrompt,
                                const ChatTemplateKwargs& kwargs, const std::atomic<bool>* cancel) {
    const std::string text = chatTemplate.render(messages, addGenerationPrompt, tokenizer.special().bosText,
                                                 tokenizer.special().eosText, kwargs, cancel);
    return tokenizer.encode(text, /*addSpecial=*/chatTemplate.isFallback(), /*parseSpecial=*/true);
}

} // namespace moe
