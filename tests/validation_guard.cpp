// Linked into every test binary: with MOE_VK_VALIDATION=1, a suite whose
// Vulkan contexts (the test's own, the app's workers', the engine's) got any
// validation-layer warning or error fails at exit, even when each test
// function passed. The count is the engine's, fed by the debug messenger of
// every context, so a context a test never sees is covered too.
#include "moe/vk.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

namespace {

void failOnValidationMessages() {
    const uint64_t n = moe::vk::validationMessagesInProcess();
    if (n == 0) return;
    std::fflush(stdout);
    std::fprintf(stderr, "FAIL: %llu Vulkan validation message%s in this suite (printed above as [vulkan validation])\n",
                 static_cast<unsigned long long>(n), n == 1 ? "" : "s");
    std::fflush(stderr);
    ::_exit(3);
}

// Registered before main, so it runs after main's objects (the test case and
// its contexts) are destroyed: messages from their teardown count too.
[[maybe_unused]] const bool registered = [] {
    // As the engine reads it: set, not empty and not "0".
    const char* v = std::getenv("MOE_VK_VALIDATION");
    if (v && *v && std::strcmp(v, "0") != 0) std::atexit(failOnValidationMessages);
    return true;
}();

} // namespace
