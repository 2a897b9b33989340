#include "json_input.h"

#include "moe/error.h"

namespace moe {

void checkJsonDepth(std::string_view text, const std::filesystem::path& file) {
    int depth = 0;
    bool inString = false, escaped = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (inString) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') inString = false;
            continue;
        }
        if (c == '"') {
            inString = true;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxJsonDepth) {
                std::size_t line = 1;
                for (std::size_t k = 0; k < i; ++k) line += text[k] == '\n';
                throw Error(file.string() + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                            " levels (line " + std::to_string(line) + ")");
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
}

nlohmann::json parseJsonChecked(std::string_view text, const std::filesystem::path& file) {
    checkJsonDepth(text, file);
    try {
        return nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::out_of_range& e) { // a number such as 1e999 (not a syntax error)
        throw Error(file.string() + ": " + e.what());
    }
}

std::string jsonSnippet(const nlohmann::json& value, std::size_t maxBytes) {
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > maxBytes) {
        std::size_t cut = maxBytes;
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut; // whole UTF-8 characters
        text = text.substr(0, cut) + "...";
    }
    return text;
}

} // namespace moe
