#pragma once
// The Vulkan pipeline cache on disk. The driver's blob is stored behind a
// header of ours (magic, payload size, checksum) and written temp-then-rename,
// so a torn, truncated or foreign file is recognised and ignored with a note
// instead of being handed to the driver, which need not check it (the
// Vulkan spec leaves invalid initial data undefined beyond the header).
#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace moe::vk {

// What the driver's own header (VkPipelineCacheHeaderVersionOne) must say
// for its data to be usable on this device.
struct PipelineCacheKey {
    uint32_t vendorId = 0, deviceId = 0;
    std::array<uint8_t, 16> uuid{}; // VkPhysicalDeviceProperties::pipelineCacheUUID
};

// The driver data stored in `file`, or empty when there is none or it cannot
// be used: then `note` says why, naming the file (it stays empty when the file
// simply does not exist yet).
std::vector<char> readPipelineCache(const std::filesystem::path& file, const PipelineCacheKey& key, std::string& note);

// Stores the driver's data (from vkGetPipelineCacheData) atomically; throws
// moe::Error naming the file.
void writePipelineCache(const std::filesystem::path& file, std::span<const char> driverData);

} // namespace moe::vk
