#pragma once
// Where tests find the shared models and the npm tokenizer data.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "moe/error.h"

namespace moe::test {

inline std::filesystem::path envPath(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return std::filesystem::path(v && *v ? v : fallback);
}
inline std::filesystem::path modelsDir() { return envPath("MOE_MODELS_DIR", "../shared/models"); }
inline std::filesystem::path testDataDir() { return envPath("MOE_TESTDATA_DIR", ".testdata"); }

// Runs `f` and returns the moe::Error message it threw; anything else (no
// exception, another exception type) comes back as a text that fails checks.
template <class F> std::string errorMessage(F&& f) {
    try {
        f();
    } catch (const moe::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<not a moe::Error: ") + e.what() + ">";
    }
    return "<no error thrown>";
}

} // namespace moe::test
