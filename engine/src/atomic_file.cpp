#include "moe/atomic_file.h"

#include "moe/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <random>
#include <string>

#include <csignal>

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

namespace moe {
namespace {

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
    throw Error(file.string() + ": " + what + ": " + std::strerror(errno));
}

} // namespace

std::string readTextFile(const std::filesystem::path& file, std::uintmax_t maxBytes) {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) throw Error(file.string() + ": is a folder, not a file");
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(file, "cannot open");
    // After opening, so that the checks are of the file read (symlinks followed).
    const auto status = std::filesystem::status(file, ec);
    if (ec || !std::filesystem::is_regular_file(status)) throw Error(file.string() + ": not a regular file");
    const std::uintmax_t size = std::filesystem::file_size(file, ec);
    if (ec) throw Error(file.string() + ": cannot read its size: " + ec.message());
    if (size > maxBytes)
        throw Error(file.string() + ": " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(maxBytes >> 20) + " MiB such a file may have");
    // Read at most maxBytes + 1, in case the file grew since.
    std::string bytes(static_cast<size_t>(size), '\0');
    in.read(bytes.data(), std::streamsize(size));
    if (in.bad()) throw Error(file.string() + ": read failed");
    bytes.resize(static_cast<size_t>(in.gcount()));
    return bytes;
}

void removeStaleTemporaries(const std::filesystem::path& folder, const std::string& prefix) {
    std::error_code ec;
    std::filesystem::directory_iterator it(folder.empty() ? std::filesystem::path(".") : folder, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        size_t i = prefix.size();
        long long pid = 0;
        while (i < name.size() && name[i] >= '0' && name[i] <= '9' && pid < (1ll << 40)) pid = pid * 10 + (name[i++] - '0');
        if (i == prefix.size() || (i < name.size() && name[i] != '-')) continue; // not one of ours
        if (pid <= 0 || pid > 0x7fffffff || pid_t(pid) == ::getpid()) continue;
        // ESRCH: no such process. EPERM means it runs (as another user).
        if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
        std::error_code removeEc;
        std::filesystem::remove_all(it->path(), removeEc);
    }
}

void writeFileAtomic(const std::filesystem::path& path, std::string_view content) {
    AtomicFileWriter out(path);
    out.write(content);
    out.commit();
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
    // In the same folder as the target, so the rename stays on one file system.
    const std::string prefix = path_.filename().string() + ".tmp-";
    removeStaleTemporaries(path_.parent_path(), prefix);
    std::random_device rd;
    std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(::getpid()));
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
        char suffix[48];
        std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%08x", static_cast<long>(::getpid()), static_cast<unsigned>(rng()));
        tmp_ = path_;
        tmp_ += suffix;
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ < 0 && errno != EEXIST) fail(tmp_, "cannot create");
    }
    if (fd_ < 0) fail(path_, "cannot create a temporary file next to it");
}

AtomicFileWriter::~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
    if (fd_ < 0) throw Error(path_.string() + ": written after it was committed");
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        const ssize_t n = ::write(fd_, p, bytes);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(tmp_, "write failed");
        p += n;
        bytes -= size_t(n);
        written_ += uint64_t(n);
    }
}

void AtomicFileWriter::commit() {
    if (fd_ < 0) throw Error(path_.string() + ": committed twice");
    // Data must be on disk before the rename makes it visible under the final name.
    const bool synced = ::fsync(fd_) == 0;
    int err = errno;
    const bool closed = ::close(fd_) == 0;
    fd_ = -1;
    if (synced) err = errno;
    if (!synced || !closed) {
        errno = err;
        fail(tmp_, "cannot flush to disk");
    }
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail(path_, "cannot rename " + tmp_.filename().string() + " into place");
    tmp_.clear();
    const std::filesystem::path parent = path_.parent_path().empty() ? "." : path_.parent_path();
    if (const int dirFd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dirFd >= 0) {
        ::fsync(dirFd); // persists the rename; failure only weakens crash safety
        ::close(dirFd);
    }
}

} // namespace moe
