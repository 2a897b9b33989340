#pragma once
// Embedded SPIR-V of the compute shaders (generated at build time).
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace moe {
std::span<const uint32_t> shaderSpirv(std::string_view name); // empty when unknown
std::vector<std::string_view> shaderNames();
}
