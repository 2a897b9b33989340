#pragma once
// Small whole-file helpers for text formats (selectors, datasets): reading
// with an error that names the file, and writing atomically.
#include <filesystem>
#include <string>
#include <string_view>

namespace moe {

// The file's bytes; throws moe::Error "<file>: cannot open ..." when unreadable.
std::string readTextFile(const std::filesystem::path& file);
// Writes `content` to a temporary file next to `file`, flushes it to disk and
// renames it into place, so readers see the old file or the new one, never a
// partial one. Throws moe::Error naming the file on failure.
void writeFileAtomically(const std::filesystem::path& file, std::string_view content);

} // namespace moe
