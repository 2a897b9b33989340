#pragma once
// One exception type for every failure the engine reports to a user: the
// message names the file and the field/tensor at fault.
#include <atomic>
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Work stopped because its cancel flag was set: not a failure. Thrown from
// where the flag is polled, so the work unwinds as it would for a bad file
// and frees what it had made; front ends catch it before Error.
class Cancelled : public Error {
public:
    explicit Cancelled(const std::string& what) : Error(what + " was cancelled") {}
};

// Throws Cancelled("<what> was cancelled") when `cancel` is set.
inline void throwIfCancelled(const std::atomic<bool>* cancel, const std::string& what) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled(what);
}

} // namespace moe
