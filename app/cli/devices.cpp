// moe-cli devices: the Vulkan devices with their type, memory and limits.
#include "cli_common.h"

#include <iostream>

namespace moe::cli {
namespace {

std::string apiVersionString(uint32_t v) {
    return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
           std::to_string(VK_API_VERSION_PATCH(v));
}

int runDevices(bool asJson) {
    auto devices = vk::listDevices();
    json out = json::array();
    for (const auto& d : devices) {
        json heaps = json::array();
        for (const auto& h : d.heaps) heaps.push_back({{"bytes", h.size}, {"device_local", h.deviceLocal}});
        out.push_back({{"index", d.index}, {"name", d.name}, {"type", d.type}, {"driver", d.driver},
                       {"api_version", apiVersionString(d.apiVersion)}, {"subgroup_size", d.subgroupSize},
                       {"max_storage_buffer_range", d.maxStorageBufferRange},
                       {"max_memory_allocation_size", d.maxMemoryAllocationSize},
                       {"max_compute_shared_memory", d.maxComputeSharedMemorySize},
                       {"max_workgroup_count", {d.maxWorkGroupCount[0], d.maxWorkGroupCount[1], d.maxWorkGroupCount[2]}},
                       {"max_workgroup_invocations", d.maxWorkGroupInvocations},
                       {"max_push_constants", d.maxPushConstantsSize},
                       {"full_subgroups", d.fullSubgroups}, {"memory_heaps", heaps}});
    }
    if (asJson) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    for (const auto& d : out) {
        std::cout << "[" << d["index"] << "] " << d["name"].get<std::string>() << " (" << d["type"].get<std::string>()
                  << ", Vulkan " << d["api_version"].get<std::string>() << ", " << d["driver"].get<std::string>() << ")\n";
        std::cout << "    subgroup size " << d["subgroup_size"] << ", max storage buffer range "
                  << mib(d["max_storage_buffer_range"]) << ", max allocation " << mib(d["max_memory_allocation_size"])
                  << ", shared memory " << d["max_compute_shared_memory"].get<uint64_t>() / 1024 << " KiB, push constants "
                  << d["max_push_constants"] << " B\n";
        for (const auto& h : d["memory_heaps"])
            std::cout << "    heap " << gib(h["bytes"]) << (h["device_local"].get<bool>() ? " device-local" : " host") << "\n";
    }
    if (out.empty()) std::cout << "no Vulkan devices\n";
    return 0;
}

} // namespace

Command addDevicesCommand(CLI::App& app) {
    auto asJson = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("devices", "List Vulkan devices with their type, memory and limits");
    cmd->add_flag("--json", *asJson, "Machine-readable output");
    return {cmd, [asJson] { return runDevices(*asJson); }};
}

} // namespace moe::cli
