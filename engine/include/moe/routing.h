#pragma once
// How a MoE picks experts for a token: the one name for it in selectors, the
// routed layers and the routing shader (whose mode numbers these are).
#include <cstdint>
#include <string>

namespace moe {

// Token: each token's own gate scores. Running: the mean of the scores so far
// in the sequence. Sequence: the prompt's mean decides the whole reply.
// Likelihood: each candidate expert scores the prompt, the best one answers
// (the layers route as Running while no candidate is pinned).
enum class RoutingMode : uint32_t { Token = 0, Running = 1, Sequence = 2, Likelihood = 3 };

const char* toString(RoutingMode); // "token", "running", "sequence", "likelihood"
// The inverse; false when `s` names none of them.
bool parseRoutingMode(const std::string& s, RoutingMode& out);

} // namespace moe
