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

// The same for a file written in pieces (exports of many gigabytes): the
// temporary "<path>.tmp-<pid>-XXXXXXXX" is created at construction and removed
// by the destructor unless commit() renamed it into place. A process killed
// mid-write leaves its temporary behind; the next writer of the same path
// removes those whose process is gone. Every failure throws moe::Error naming
// the file.
// Removes the entries of `folder` named "<prefix><pid>" or "<prefix><pid>-..."
// (files or folders) whose process <pid> no longer runs: what writers killed
// mid-write left. Best effort: entries that cannot be removed stay.
void removeStaleTemporaries(const std::filesystem::path& folder, const std::string& prefix);

class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::filesystem::path path);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, size_t bytes);
    void write(std::string_view s) { write(s.data(), s.size()); }
    uint64_t written() const { return written_; }
    // fsync, rename over `path`, fsync of the folder.
    void commit();
    const std::filesystem::path& temporaryPath() const { return tmp_; }

private:
    std::filesystem::path path_, tmp_;
    int fd_ = -1;
    uint64_t written_ = 0;
};

} // namespace moe
