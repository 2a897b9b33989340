#pragma once
// Where tests find the shared models and the npm tokenizer data.
#include <cstdlib>
#include <filesystem>

namespace moe::test {

inline std::filesystem::path envPath(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return std::filesystem::path(v && *v ? v : fallback);
}
inline std::filesystem::path modelsDir() { return envPath("MOE_MODELS_DIR", "../shared/models"); }
inline std::filesystem::path testDataDir() { return envPath("MOE_TESTDATA_DIR", ".testdata"); }

} // namespace moe::test
