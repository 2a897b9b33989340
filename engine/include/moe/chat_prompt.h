#pragma once
// A conversation → prompt token ids, the way the model expects them: rendered
// with its chat template, then encoded. One place for this rule so that
// moe-cli --chat and the desktop chat produce identical prompts.
#include "moe/chat_template.h"
#include "moe/tokenizer.h"

#include <cstdint>
#include <vector>

namespace moe {

// A real template writes BOS itself (its `bos_token`), so the tokenizer must
// not add another; the plain fallback has no BOS, so the tokenizer adds it as
// tokenizer_config.json says. Special tokens in the rendered text are parsed.
// `kwargs`: extra template variables (enable_thinking); `cancel` stops the
// render (moe::Cancelled).
std::vector<int32_t> encodeChat(const ChatTemplate& chatTemplate, const Tokenizer& tokenizer,
                                const std::vector<ChatMessage>& messages, bool addGenerationPrompt = true,
                                const ChatTemplateKwargs& kwargs = {}, const std::atomic<bool>* cancel = nullptr);

} // namespace moe
