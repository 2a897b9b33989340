#pragma once
// Writing a whole file atomically: a temporary file next to the target, fsync,
// then rename, so readers never see a half-written file.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace moe {

// Size caps for files read whole: a config or selector is kilobytes, a
// tokenizer.json or dataset tens of megabytes at most.
constexpr std::uintmax_t kMaxSmallFileBytes = std::uintmax_t(16) << 20;
constexpr std::uintmax_t kMaxLargeFileBytes = std::uintmax_t(512) << 20;

// The file's bytes; throws moe::Error "<file>: cannot open ..." when
// unreadable, when it is not a regular file (a folder, a FIFO, /dev/zero),
// or when it holds more than `maxBytes`.
std::string readTextFile(const std::filesystem::path& file, std::uintmax_t maxBytes = kMaxLargeFileBytes);

// Throws moe::Error naming the file on any failure (the temporary is removed).
void writeFileAtomic(const std::filesystem::path& path, std::string_view content);

} // namespace moe
