#pragma once
// One exception type for every failure the engine reports to a user: the
// message names the file and the field/tensor at fault.
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace moe
