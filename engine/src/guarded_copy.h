#pragma once
// Copying out of a memory-mapped file that may shrink underneath: reading a
// page past the file's new end raises SIGBUS, which would kill the process.
#include <cstddef>

namespace moe {

// Copies `n` bytes from `src` (inside a file mapping) to `dst`; false when the
// copy hit SIGBUS (the mapped file was truncated or became unreadable), and
// then `dst` holds an unspecified prefix. Thread-safe: each thread has its
// own jump target, and a SIGBUS outside a guarded copy goes to the handler
// that was there before (the default one kills the process, as before).
bool copyFromMapping(void* dst, const void* src, size_t n);

} // namespace moe
