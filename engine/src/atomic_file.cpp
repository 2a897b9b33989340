#include "atomic_file.h"

#include "moe/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace moe {
namespace fs = std::filesystem;

namespace {
std::string systemError() { return std::strerror(errno); }
} // namespace

std::string readTextFile(const fs::path& file) {
    std::error_code ec;
    if (fs::is_directory(file, ec)) throw Error(file.string() + ": is a folder, not a file");
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(file.string() + ": cannot open: " + systemError());
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) throw Error(file.string() + ": read failed");
    return s.str();
}

void writeFileAtomically(const fs::path& file, std::string_view content) {
    // Same folder as the target, so the rename stays on one file system.
    std::random_device rd;
    std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(::getpid()));
    fs::path tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
        char suffix[32];
        std::snprintf(suffix, sizeof suffix, ".tmp-%08x", static_cast<unsigned>(rng()));
        tmp = file;
        tmp += suffix;
        // 0666: the umask decides, as for any file the user saves.
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) throw Error(tmp.string() + ": cannot create: " + systemError());
    }
    if (fd < 0) throw Error(file.string() + ": cannot create a temporary file next to it");

    auto failAndRemove = [&](const std::string& what) {
        const std::string err = systemError();
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(file.string() + ": " + what + ": " + err);
    };
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            failAndRemove("write failed");
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    // On disk before the rename makes it visible under the final name.
    if (::fsync(fd) != 0) failAndRemove("fsync failed");
    if (::close(fd) != 0) {
        fd = -1;
        failAndRemove("close failed");
    }
    fd = -1;
    if (::rename(tmp.c_str(), file.c_str()) != 0) failAndRemove("cannot rename " + tmp.filename().string() + " into place");
    const fs::path parent = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    const int dirFd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirFd >= 0) {
        ::fsync(dirFd); // persists the rename; failure only weakens crash safety
        ::close(dirFd);
    }
}

} // namespace moe
