#include "guarded_copy.h"

#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

// Why sigsetjmp and not just checks: fstat before the copy catches a file that
// was already truncated, but another process may truncate it during the copy.
// Only the copy itself runs under the guard (a plain memcpy into memory we own:
// no locks, no objects whose destructors a siglongjmp would skip), so jumping
// out of the handler leaves nothing half-done but the destination bytes.

namespace moe {
namespace {

thread_local sigjmp_buf* volatile tlJump = nullptr;
struct sigaction previousHandler {};

void onSigbus(int sig, siginfo_t* info, void* context) {
    if (sigjmp_buf* jump = tlJump) {
        tlJump = nullptr;
        siglongjmp(*jump, 1);
    }
    // Not a guarded copy: behave as if this handler were not installed.
    if ((previousHandler.sa_flags & SA_SIGINFO) && previousHandler.sa_sigaction) {
        previousHandler.sa_sigaction(sig, info, context);
    } else if (previousHandler.sa_handler != SIG_DFL && previousHandler.sa_handler != SIG_IGN) {
        previousHandler.sa_handler(sig);
    } else {
        // Returning re-runs the faulting access, which now gets the default action.
        std::signal(SIGBUS, SIG_DFL);
    }
}

void installHandler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = onSigbus;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &previousHandler);
    });
}

} // namespace

bool copyFromMapping(void* dst, const void* src, size_t n) {
    installHandler();
    sigjmp_buf jump;
    // savemask = 1: the jump restores the signal mask, unblocking SIGBUS again.
    if (sigsetjmp(jump, 1) != 0) return false;
    tlJump = &jump;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    std::memcpy(dst, src, n);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    tlJump = nullptr;
    return true;
}

} // namespace moe
