#pragma once
// Guards for JSON read from outside (configs, tokenizers, datasets, adapter
// and safetensors headers): nlohmann::json parses nesting of any depth, but
// destroying, comparing or dump()ing such a value recurses once per level, so
// a file of a few megabytes of "[[[[..." would overflow the stack. Every
// reader checks the depth first, and messages quote values through
// jsonSnippet, never a whole dump() of an untrusted value.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace moe {

// Deeper than any real file: tokenizer.json nests about 6 levels, configs 3.
constexpr int kMaxJsonDepth = 64;

// Throws moe::Error "<file>: JSON nested deeper than 64 levels (line L)"
// when `text` opens more than kMaxJsonDepth arrays/objects at once. Strings
// are skipped; malformed text is left to the parser.
void checkJsonDepth(std::string_view text, const std::filesystem::path& file);

// checkJsonDepth, then nlohmann::json::parse (which still throws its own
// parse_error on bad syntax, as callers expect; a number out of range, such
// as 1e999, is a moe::Error naming the file).
nlohmann::json parseJsonChecked(std::string_view text, const std::filesystem::path& file);

// The value's JSON text for a message, cut to about `maxBytes` ("..." added).
std::string jsonSnippet(const nlohmann::json& value, std::size_t maxBytes = 80);

} // namespace moe
