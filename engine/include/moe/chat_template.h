#pragma once
// Renders a model's Jinja `chat_template` (the subset real templates use)
// with a plain fallback when the model has none.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace moe {

class GgufFile;

struct ChatMessage {
    std::string role;    // "system", "user", "assistant"
    std::string content;
};

// Extra variables for the template, as Transformers' apply_chat_template
// passes its keyword arguments (Qwen3's enable_thinking: false renders an
// empty think block, so the model answers without thinking).
using ChatTemplateValue = std::variant<bool, std::int64_t, double, std::string>;
using ChatTemplateKwargs = std::map<std::string, ChatTemplateValue>;

class ChatTemplate {
public:
    // Empty source = the plain fallback format.
    explicit ChatTemplate(std::string source = {});
    // Reads `chat_template` from tokenizer_config.json in `modelDir` (string
    // form or the list-of-named-templates form, taking "default"); plain
    // fallback when absent. Throws moe::Error naming the file on bad JSON.
    static ChatTemplate fromModelDir(const std::filesystem::path& modelDir);
    // Reads `tokenizer.chat_template` from a GGUF file's metadata; plain
    // fallback when absent. Throws moe::Error naming the file and key when it
    // is not a string.
    static ChatTemplate fromGguf(const GgufFile& file);

    bool isFallback() const { return source_.empty(); }
    const std::string& source() const { return source_; }

    // Throws moe::Error with the template's message for raise_exception(),
    // and with the line for syntax errors, and for a kwarg named like a
    // variable the renderer sets itself (messages, bos_token, ...); throws
    // moe::Cancelled when `cancel` is set during the render.
    std::string render(const std::vector<ChatMessage>& messages, bool addGenerationPrompt,
                       const std::string& bosToken, const std::string& eosToken,
                       const ChatTemplateKwargs& kwargs = {},
                       const std::atomic<bool>* cancel = nullptr) const;

private:
    std::string source_;
};

} // namespace moe
