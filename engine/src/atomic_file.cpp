#include "moe/atomic_file.h"

#include "moe/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <random>
#include <string>

#include <fcntl.h>
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

void writeFileAtomic(const std::filesystem::path& path, std::string_view content) {
    // "<path>.tmp-XXXXXXXX" in the same folder, so the rename stays on one file system.
    std::random_device rd;
    std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(::getpid()));
    std::filesystem::path tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
        char suffix[32];
        std::snprintf(suffix, sizeof suffix, ".tmp-%08x", static_cast<unsigned>(rng()));
        tmp = path;
        tmp += suffix;
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) fail(tmp, "cannot create");
    }
    if (fd < 0) fail(path, "cannot create a temporary file next to it");
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            errno = err;
            fail(tmp, "write failed");
        }
        p += n;
        left -= size_t(n);
    }
    // Data must be on disk before the rename makes it visible under the final name.
    const bool synced = ::fsync(fd) == 0;
    int err = errno;
    const bool closed = ::close(fd) == 0;
    if (synced) err = errno;
    if (!synced || !closed) {
        ::unlink(tmp.c_str());
        errno = err;
        fail(tmp, "cannot flush to disk");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        errno = err;
        fail(path, "cannot rename " + tmp.filename().string() + " into place");
    }
    const std::filesystem::path parent = path.parent_path().empty() ? "." : path.parent_path();
    if (const int dirFd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dirFd >= 0) {
        ::fsync(dirFd); // persists the rename; failure only weakens crash safety
        ::close(dirFd);
    }
}

} // namespace moe
