#pragma once
// Shared by the libFuzzer targets (fuzz/fuzz_*.cpp, built with MOE_FUZZ=ON).
// Every parser reads files, so each input is written into a private temporary
// folder first. A moe::Error is the expected answer to a bad file; any other
// exception escapes LLVMFuzzerTestOneInput, and libFuzzer reports it as a
// crash (as it does sanitizer reports, timeouts and excessive allocation).
#include "moe/error.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

namespace moe::fuzz {

// A folder of this process's own (removed at exit), created on first use.
inline const std::filesystem::path& workDir() {
    static const std::filesystem::path dir = [] {
        const char* tmp = std::getenv("TMPDIR");
        std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/moe-fuzz-XXXXXX";
        if (!::mkdtemp(pattern.data())) std::abort();
        static struct Cleanup {
            std::filesystem::path p;
            ~Cleanup() {
                std::error_code ec;
                std::filesystem::remove_all(p, ec);
            }
        } cleanup{pattern};
        return std::filesystem::path(pattern);
    }();
    return dir;
}

inline void writeFile(const std::filesystem::path& path, std::string_view bytes) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out) std::abort();
}

inline std::string_view asText(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Splits an input into two files: a 4-byte little-endian length n, n bytes
// of the first file, the rest the second (a short input is all second file).
inline void splitTwo(std::string_view in, std::string_view& first, std::string_view& second) {
    if (in.size() < 4) {
        first = {};
        second = in;
        return;
    }
    uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = (n << 8) | uint8_t(in[size_t(i)]);
    in.remove_prefix(4);
    n = uint32_t(std::min<size_t>(n, in.size()));
    first = in.substr(0, n);
    second = in.substr(n);
}

// Runs one parse; moe::Error is expected, everything else propagates.
template <class F> int expectOnlyMoeErrors(F&& f) {
    try {
        f();
    } catch (const moe::Error&) {
    }
    return 0;
}

} // namespace moe::fuzz
