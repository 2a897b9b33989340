#pragma once
// Where tests find the shared models and the npm tokenizer data.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

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

// nmse(), the comparison every numerical test uses, is in reference_ops.h.

// True when `message` holds every part; `missing` names the first that is not there.
inline bool containsAll(const std::string& message, const std::vector<std::string>& parts, std::string& missing) {
    for (const auto& p : parts)
        if (message.find(p) == std::string::npos) {
            missing = p;
            return false;
        }
    return true;
}

} // namespace moe::test

// Checks that `expr` throws a moe::Error whose message holds every given part.
#define EXPECT_ERROR(expr, ...)                                                                        \
    do {                                                                                               \
        const std::string message_ = moe::test::errorMessage([&] { (void)(expr); });                   \
        std::string missing_;                                                                          \
        QVERIFY2(moe::test::containsAll(message_, {__VA_ARGS__}, missing_),                            \
                 qPrintable(QString::fromStdString("expected \"" + missing_ + "\" in: " + message_))); \
    } while (0)
