#pragma once
// Writing a whole file atomically: a temporary file next to the target, fsync,
// then rename, so readers never see a half-written file.
#include <filesystem>
#include <string_view>

namespace moe {

// Throws moe::Error naming the file on any failure (the temporary is removed).
void writeFileAtomic(const std::filesystem::path& path, std::string_view content);

} // namespace moe
