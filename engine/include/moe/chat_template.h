#pragma once
// Renders a model's Jinja `chat_template` (the subset real templates use)
// with a plain fallback when the model has none.
#include <filesystem>
#include <string>
#include <vector>

namespace moe {

class GgufFile;

struct ChatMessage {
    std::string role;    // "system", "user", "assistant"
    std::string content;
};

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
    // and with the line for syntax errors.
    std::string render(const std::vector<ChatMessage>& messages, bool addGenerationPrompt,
                       const std::string& bosToken, const std::string& eosToken) const;

private:
    std::string source_;
};

} // namespace moe
