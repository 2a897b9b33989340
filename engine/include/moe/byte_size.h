#pragma once
// Sizes as people write them: shard sizes, expert budgets.
#include <cstdint>
#include <string>

namespace moe {

// "5GB", "500MB", "2GiB", "1000000" (bytes) → bytes; throws moe::Error naming the text.
uint64_t parseByteSize(const std::string& text);

} // namespace moe
