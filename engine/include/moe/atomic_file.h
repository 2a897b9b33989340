#pragma once
// Writing a whole file atomically: a temporary file next to the target, fsync,
// then rename, so readers never see a half-written file.
#include <filesystem>
#include <string>
#include <string_view>

namespace moe {

// The file's bytes; throws moe::Error "<file>: cannot open ..." when unreadable.
std::string readTextFile(const std::filesystem::path& file);

// Throws moe::Error naming the file on any failure (the temporary is removed).
void writeFileAtomic(const std::filesystem::path& path, std::string_view content);

} // namespace moe
