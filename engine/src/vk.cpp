#include "moe/vk.h"

#include "moe/error.h"
#include "pipeline_cache_file.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace moe::vk {
namespace {

const char* resultName(VkResult r) {
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult error";
    }
}

bool envFlag(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::string(v) != "0";
}

std::string deviceTypeName(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

int deviceTypeRank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

std::atomic<uint64_t> processValidationMessages{0};

VKAPI_ATTR VkBool32 VKAPI_CALL onValidationMessage(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT,
                                                   const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
    auto* counter = static_cast<std::atomic<uint64_t>*>(user);
    if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        counter->fetch_add(1);
        processValidationMessages.fetch_add(1);
        std::fprintf(stderr, "[vulkan validation] %s\n", data->pMessage ? data->pMessage : "");
    }
    return VK_FALSE;
}

// Vulkan 1.3 where the loader has it (full-subgroup pipelines), else 1.2.
uint32_t instanceApiVersion() {
    uint32_t v = VK_API_VERSION_1_0;
    vkEnumerateInstanceVersion(&v);
    return v >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2;
}

DeviceInfo describe(VkPhysicalDevice pd, uint32_t index) {
    VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceDriverProperties driver{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties maint3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    subgroup.pNext = &driver;
    driver.pNext = &maint3;
    VkPhysicalDeviceProperties2 props{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    props.pNext = &subgroup;
    vkGetPhysicalDeviceProperties2(pd, &props);

    VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
    VkPhysicalDeviceFeatures2 feats{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    if (props.properties.apiVersion >= VK_API_VERSION_1_3 && instanceApiVersion() >= VK_API_VERSION_1_3) feats.pNext = &f13;
    vkGetPhysicalDeviceFeatures2(pd, &feats);

    const auto& l = props.properties.limits;
    DeviceInfo info;
    info.index = index;
    info.name = props.properties.deviceName;
    info.type = deviceTypeName(props.properties.deviceType);
    info.driver = std::string(driver.driverName) + " " + driver.driverInfo;
    info.apiVersion = props.properties.apiVersion;
    info.subgroupSize = subgroup.subgroupSize;
    info.maxStorageBufferRange = l.maxStorageBufferRange;
    info.maxMemoryAllocationSize = maint3.maxMemoryAllocationSize;
    info.maxComputeSharedMemorySize = l.maxComputeSharedMemorySize;
    for (int i = 0; i < 3; ++i) info.maxWorkGroupCount[i] = l.maxComputeWorkGroupCount[i];
    info.maxWorkGroupInvocations = l.maxComputeWorkGroupInvocations;
    info.maxPushConstantsSize = l.maxPushConstantsSize;
    info.minStorageBufferOffsetAlignment = static_cast<uint32_t>(l.minStorageBufferOffsetAlignment);
    info.maxTexelBufferElements = l.maxTexelBufferElements;
    info.minTexelBufferOffsetAlignment = static_cast<uint32_t>(l.minTexelBufferOffsetAlignment);
    info.timestampPeriod = l.timestampComputeAndGraphics ? l.timestampPeriod : 0.0f;
    info.fullSubgroups = props.properties.apiVersion >= VK_API_VERSION_1_3 &&
                         instanceApiVersion() >= VK_API_VERSION_1_3 && f13.computeFullSubgroups &&
                         f13.subgroupSizeControl;
    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    for (uint32_t h = 0; h < mem.memoryHeapCount; ++h)
        info.heaps.push_back({mem.memoryHeaps[h].size, (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
    return info;
}

VkInstance createInstance(bool validation, VkDebugUtilsMessengerEXT* messenger, std::atomic<uint64_t>* counter) {
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "MoE Studio";
    app.pEngineName = "moe-engine";
    app.apiVersion = instanceApiVersion();
    std::vector<const char*> layers, extensions;
    if (validation) {
        uint32_t n = 0;
        vkEnumerateInstanceLayerProperties(&n, nullptr);
        std::vector<VkLayerProperties> avail(n);
        vkEnumerateInstanceLayerProperties(&n, avail.data());
        bool found = std::any_of(avail.begin(), avail.end(), [](const VkLayerProperties& p) {
            return std::strcmp(p.layerName, "VK_LAYER_KHRONOS_validation") == 0;
        });
        if (!found)
            throw Error("Vulkan validation was requested (MOE_VK_VALIDATION=1) but VK_LAYER_KHRONOS_validation is "
                        "not installed (Debian package vulkan-validationlayers)");
        layers.push_back("VK_LAYER_KHRONOS_validation");
        extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
    ci.ppEnabledLayerNames = layers.data();
    ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
    ci.ppEnabledExtensionNames = extensions.data();
    VkDebugUtilsMessengerCreateInfoEXT mci{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
    mci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    mci.pfnUserCallback = onValidationMessage;
    mci.pUserData = counter;
    if (validation) ci.pNext = &mci; // also catches messages from instance creation itself
    VkInstance instance = VK_NULL_HANDLE;
    VkResult r = vkCreateInstance(&ci, nullptr, &instance);
    if (r != VK_SUCCESS)
        throw Error(std::string("cannot create a Vulkan instance (") + resultName(r) +
                    "): is a Vulkan driver installed? (Debian: mesa-vulkan-drivers)");
    if (validation && messenger) {
        auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
        if (create) create(instance, &mci, nullptr, messenger);
    }
    return instance;
}

std::vector<VkPhysicalDevice> physicalDevices(VkInstance instance) {
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(instance, &n, nullptr);
    std::vector<VkPhysicalDevice> devs(n);
    vkEnumeratePhysicalDevices(instance, &n, devs.data());
    return devs;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::filesystem::path cacheDir() {
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "moe-studio";
    if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".cache" / "moe-studio";
    return std::filesystem::temp_directory_path() / "moe-studio-cache";
}

} // namespace

uint64_t validationMessagesInProcess() { return processValidationMessages.load(); }

std::vector<DeviceInfo> listDevices() {
    VkInstance instance = createInstance(false, nullptr, nullptr);
    std::vector<DeviceInfo> out;
    auto devs = physicalDevices(instance);
    for (uint32_t i = 0; i < devs.size(); ++i) out.push_back(describe(devs[i], i));
    vkDestroyInstance(instance, nullptr);
    return out;
}

// ---------------------------------------------------------------- Context

Context::Context(const ContextOptions& opts) {
    std::optional<double> timeout = opts.gpuTimeoutSeconds;
    if (!timeout)
        if (const char* e = std::getenv("MOE_GPU_TIMEOUT_S"); e && *e) timeout = std::strtod(e, nullptr);
    if (timeout && !(*timeout > 0))
        throw Error("MOE_GPU_TIMEOUT_S: give a positive number of seconds (a submit that takes longer is an error)");
    validation_ = opts.validation || envFlag("MOE_VK_VALIDATION");
    forceStaging_ = opts.forceStaging || envFlag("MOE_VK_FORCE_STAGING");
    instance_ = createInstance(validation_, &messenger_, &validationMessages_);

    auto devs = physicalDevices(instance_);
    if (devs.empty()) throw Error("no Vulkan device found (Debian: install mesa-vulkan-drivers for the CPU driver lavapipe)");
    std::string want = opts.device;
    if (want.empty())
        if (const char* e = std::getenv("MOE_VK_DEVICE")) want = e;
    int chosen = -1;
    if (!want.empty()) {
        bool numeric = std::all_of(want.begin(), want.end(), [](unsigned char c) { return std::isdigit(c); });
        for (uint32_t i = 0; i < devs.size() && chosen < 0; ++i) {
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(devs[i], &p);
            if (numeric ? std::to_string(i) == want : lower(p.deviceName).find(lower(want)) != std::string::npos)
                chosen = static_cast<int>(i);
        }
        if (chosen < 0)
            throw Error("no Vulkan device matches '" + want + "' (MOE_VK_DEVICE/--device take an index or part of a "
                        "name; `moe-cli devices` lists them)");
    } else {
        int bestRank = 1 << 30;
        for (uint32_t i = 0; i < devs.size(); ++i) {
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(devs[i], &p);
            if (p.apiVersion < VK_API_VERSION_1_2) continue;
            int rank = deviceTypeRank(p.deviceType);
            if (rank < bestRank) { bestRank = rank; chosen = static_cast<int>(i); }
        }
        if (chosen < 0) throw Error("no Vulkan 1.2 device found");
    }
    physical_ = devs[chosen];
    info_ = describe(physical_, static_cast<uint32_t>(chosen));
    if (opts.texelReads)
        texelReads_ = *opts.texelReads;
    else if (const char* e = std::getenv("MOE_TEXEL_READS"); e && *e)
        texelReads_ = std::string(e) != "0";
    else
        texelReads_ = info_.type == "cpu";
    gpuTimeoutSeconds_ = timeout ? *timeout : info_.type == "cpu" ? kCpuDeviceTimeoutSeconds : kGpuTimeoutSeconds;
    if (info_.apiVersion < VK_API_VERSION_1_2)
        throw Error("Vulkan device '" + info_.name + "' supports only Vulkan " +
                    std::to_string(VK_API_VERSION_MAJOR(info_.apiVersion)) + "." +
                    std::to_string(VK_API_VERSION_MINOR(info_.apiVersion)) + "; 1.2 is needed");
    vkGetPhysicalDeviceMemoryProperties(physical_, &memProps_);

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, qf.data());
    bool foundQueue = false;
    for (uint32_t i = 0; i < nq; ++i)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) { queueFamily_ = i; foundQueue = true; break; }
    if (!foundQueue) throw Error("Vulkan device '" + info_.name + "' has no compute queue");
    canProfile_ = info_.timestampPeriod > 0 && qf[queueFamily_].timestampValidBits > 0;

    float priority = 1.0f;
    VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = queueFamily_;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
    f13.computeFullSubgroups = info_.fullSubgroups;
    f13.subgroupSizeControl = info_.fullSubgroups;
    VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    if (info_.fullSubgroups) dci.pNext = &f13;
    check(vkCreateDevice(physical_, &dci, nullptr, &device_), "vkCreateDevice");
    vkGetDeviceQueue(device_, queueFamily_, 0, &queue_);

    VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = queueFamily_;
    check(vkCreateCommandPool(device_, &pci, nullptr, &commandPool_), "vkCreateCommandPool");

    // Pipeline cache on disk, keyed by device; checked against the device
    // before the driver sees it (pipeline_cache_file.h).
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(physical_, &p);
    char key[64];
    std::snprintf(key, sizeof key, "pipelines-%04x-%04x-%08x.bin", p.vendorID, p.deviceID, p.driverVersion);
    pipelineCachePath_ = (cacheDir() / key).string();
    PipelineCacheKey cacheKey{p.vendorID, p.deviceID, {}};
    std::memcpy(cacheKey.uuid.data(), p.pipelineCacheUUID, cacheKey.uuid.size());
    std::vector<char> blob = readPipelineCache(pipelineCachePath_, cacheKey, pipelineCacheNote_);
    if (!pipelineCacheNote_.empty()) std::fprintf(stderr, "moe: %s\n", pipelineCacheNote_.c_str());
    VkPipelineCacheCreateInfo cci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    cci.initialDataSize = blob.size();
    cci.pInitialData = blob.empty() ? nullptr : blob.data();
    if (vkCreatePipelineCache(device_, &cci, nullptr, &pipelineCache_) != VK_SUCCESS) {
        cci.initialDataSize = 0;
        cci.pInitialData = nullptr;
        check(vkCreatePipelineCache(device_, &cci, nullptr, &pipelineCache_), "vkCreatePipelineCache");
    }
}

const Buffer& Context::placeholderBuffer() {
    std::lock_guard lock(pipelinesMutex_);
    if (!placeholder_) {
        placeholder_ = std::make_unique<Buffer>(*this, 256, MemoryUse::Device);
        placeholder_->fillZero();
    }
    return *placeholder_;
}

Context::~Context() {
    if (device_) vkDeviceWaitIdle(device_);
    placeholder_.reset();
    for (auto& [key, view] : texelViews_) vkDestroyBufferView(device_, view, nullptr);
    texelViews_.clear();
    savePipelineCache();
    for (auto& [key, p] : pipelines_) {
        vkDestroyPipeline(device_, p->pipeline, nullptr);
        vkDestroyPipelineLayout(device_, p->layout, nullptr);
        vkDestroyDescriptorSetLayout(device_, p->setLayout, nullptr);
    }
    if (pipelineCache_) vkDestroyPipelineCache(device_, pipelineCache_, nullptr);
    if (commandPool_) vkDestroyCommandPool(device_, commandPool_, nullptr);
    if (device_) vkDestroyDevice(device_, nullptr);
    if (messenger_) {
        auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
        if (destroy) destroy(instance_, messenger_, nullptr);
    }
    if (instance_) vkDestroyInstance(instance_, nullptr);
}

void Context::savePipelineCache() {
    if (!pipelineCache_ || pipelineCachePath_.empty()) return;
    size_t size = 0;
    if (vkGetPipelineCacheData(device_, pipelineCache_, &size, nullptr) != VK_SUCCESS || size == 0) return;
    std::vector<char> data(size);
    if (vkGetPipelineCacheData(device_, pipelineCache_, &size, data.data()) != VK_SUCCESS) return;
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(pipelineCachePath_).parent_path(), ec);
    // Best effort from a destructor: a cache that cannot be written is only
    // slower next time. Temp file + rename: a crash never tears it.
    try {
        writePipelineCache(pipelineCachePath_, std::span<const char>(data.data(), size));
    } catch (const Error& e) {
        std::fprintf(stderr, "moe: pipeline cache not saved: %s\n", e.what());
    }
}

void Context::check(VkResult r, const char* what) const {
    if (r == VK_SUCCESS) return;
    std::string msg = std::string(what) + " failed: " + resultName(r);
    if (r == VK_ERROR_DEVICE_LOST) msg += " (the Vulkan device was lost; restart the program)";
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        msg += " (out of memory on '" + info_.name + "': try a smaller model or context)";
    throw Error(msg);
}

uint32_t Context::findMemoryType(uint32_t typeBits, MemoryUse use, bool& hostVisible) const {
    // Ordered preferences per use; the first type that the buffer allows wins.
    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const VkMemoryPropertyFlags HC = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    std::vector<VkMemoryPropertyFlags> prefs;
    switch (use) {
    case MemoryUse::Device: prefs = {DL, 0}; break;
    case MemoryUse::Upload: prefs = {DL | HV, HV}; break;
    case MemoryUse::Readback: prefs = {HV | HC, HV}; break;
    }
    for (auto want : prefs)
        for (uint32_t i = 0; i < memProps_.memoryTypeCount; ++i)
            if ((typeBits & (1u << i)) && (memProps_.memoryTypes[i].propertyFlags & want) == want) {
                hostVisible = (memProps_.memoryTypes[i].propertyFlags & HV) == HV;
                return i;
            }
    throw Error("no suitable Vulkan memory type on '" + info_.name + "'");
}

const Pipeline& Context::pipeline(ShaderId shaderId, uint32_t bindings, uint32_t pushSize,
                                  const std::vector<uint32_t>& specs, TexelBindings texels) {
    if (shaderId == ShaderId::None) throw Error("internal: no shader variant for this dtype and read path");
    const std::string shader = shaderName(shaderId);
    std::string key = shader;
    for (uint32_t s : specs) key += ":" + std::to_string(s);
    if (texels.any())
        key += "/t" + std::to_string(texels.uint4) + "." + std::to_string(texels.float1) + "." + std::to_string(texels.float4);
    std::lock_guard lock(pipelinesMutex_);
    if (auto it = pipelines_.find(key); it != pipelines_.end()) {
        if (it->second->bindings != bindings || it->second->pushSize != pushSize)
            throw Error("internal: pipeline " + shader + " requested with different bindings/push size");
        return *it->second;
    }
    auto code = shaderSpirv(shaderId);
    if (code.empty()) throw Error("internal: no embedded shader named " + shader);
    if (pushSize > info_.maxPushConstantsSize)
        throw Error("internal: push constants of " + shader + " exceed the device limit");

    auto p = std::make_unique<Pipeline>();
    p->name = shader;
    p->bindings = bindings;
    p->pushSize = pushSize;
    p->texels = texels;
    const uint32_t texelMask = texels.mask();
    std::vector<VkDescriptorSetLayoutBinding> b(bindings);
    for (uint32_t i = 0; i < bindings; ++i)
        b[i] = {i, (texelMask >> i) & 1u ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo dl{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    dl.bindingCount = bindings;
    dl.pBindings = b.data();
    check(vkCreateDescriptorSetLayout(device_, &dl, nullptr, &p->setLayout), "vkCreateDescriptorSetLayout");
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, pushSize};
    VkPipelineLayoutCreateInfo pl{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &p->setLayout;
    pl.pushConstantRangeCount = pushSize ? 1 : 0;
    pl.pPushConstantRanges = pushSize ? &range : nullptr;
    check(vkCreatePipelineLayout(device_, &pl, nullptr, &p->layout), "vkCreatePipelineLayout");

    VkShaderModuleCreateInfo smci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    smci.codeSize = code.size() * sizeof(uint32_t);
    smci.pCode = code.data();
    VkShaderModule module;
    check(vkCreateShaderModule(device_, &smci, nullptr, &module), "vkCreateShaderModule");

    std::vector<VkSpecializationMapEntry> entries(specs.size());
    for (uint32_t i = 0; i < specs.size(); ++i) entries[i] = {i, i * 4u, 4u};
    VkSpecializationInfo si{static_cast<uint32_t>(entries.size()), entries.data(), specs.size() * 4u, specs.data()};
    VkComputePipelineCreateInfo cpi{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    cpi.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
    cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpi.stage.module = module;
    cpi.stage.pName = "main";
    cpi.stage.pSpecializationInfo = specs.empty() ? nullptr : &si;
    // Shaders that map one subgroup to one row need every subgroup full.
    if (info_.fullSubgroups && !specs.empty())
        cpi.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
    cpi.layout = p->layout;
    VkResult r = vkCreateComputePipelines(device_, pipelineCache_, 1, &cpi, nullptr, &p->pipeline);
    vkDestroyShaderModule(device_, module, nullptr);
    check(r, ("vkCreateComputePipelines(" + shader + ")").c_str());
    p->localSizeX = specs.empty() ? 0 : specs[0];
    return *(pipelines_[key] = std::move(p));
}

void Context::copyBuffer(VkBuffer src, uint64_t srcOffset, VkBuffer dst, uint64_t dstOffset, uint64_t bytes) {
    Recorder rec(*this);
    rec.begin();
    rec.copy(src, srcOffset, dst, dstOffset, bytes);
    rec.end();
    rec.submitAndWait();
}

// ---------------------------------------------------------------- Buffer

Buffer::Buffer(Context& ctx, uint64_t size, MemoryUse use) : ctx_(&ctx), size_(size) {
    if (size == 0) size = 16; // zero-sized buffers are invalid in Vulkan; keep a placeholder
    VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.size = size;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    if (use == MemoryUse::Device) bci.usage |= VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    ctx.check(vkCreateBuffer(ctx.device(), &bci, nullptr, &buffer_), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx.device(), buffer_, &req);
    if (req.size > ctx.info().maxMemoryAllocationSize && ctx.info().maxMemoryAllocationSize) {
        vkDestroyBuffer(ctx.device(), buffer_, nullptr);
        buffer_ = VK_NULL_HANDLE;
        throw Error("a buffer of " + std::to_string(req.size) + " bytes exceeds the device's largest allocation (" +
                    std::to_string(ctx.info().maxMemoryAllocationSize) + " bytes)");
    }
    bool hostVisible = false;
    VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = ctx.findMemoryType(req.memoryTypeBits, use, hostVisible);
    VkResult r = vkAllocateMemory(ctx.device(), &mai, nullptr, &memory_);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(ctx.device(), buffer_, nullptr);
        buffer_ = VK_NULL_HANDLE;
        ctx.check(r, ("vkAllocateMemory(" + std::to_string(req.size) + " bytes)").c_str());
    }
    ctx.check(vkBindBufferMemory(ctx.device(), buffer_, memory_, 0), "vkBindBufferMemory");
    // Device buffers are written through staging when forced, to test that path on unified memory.
    bool mapIt = hostVisible && !(use == MemoryUse::Device && ctx.forceStaging());
    if (mapIt) ctx.check(vkMapMemory(ctx.device(), memory_, 0, VK_WHOLE_SIZE, 0, &mapped_), "vkMapMemory");
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
    if (!ctx_) return;
    if (buffer_) ctx_->releaseTexelViews(buffer_);
    if (buffer_) vkDestroyBuffer(ctx_->device(), buffer_, nullptr);
    if (memory_) vkFreeMemory(ctx_->device(), memory_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    memory_ = VK_NULL_HANDLE;
    mapped_ = nullptr;
}

Buffer::Buffer(Buffer&& o) noexcept { *this = std::move(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        release();
        ctx_ = o.ctx_;
        buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
        memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
        size_ = std::exchange(o.size_, 0);
        mapped_ = std::exchange(o.mapped_, nullptr);
    }
    return *this;
}

void Buffer::upload(const void* data, uint64_t bytes, uint64_t offset) {
    if (offset + bytes > size_) throw Error("internal: upload past the end of a buffer");
    if (bytes == 0) return;
    if (mapped_) {
        std::memcpy(static_cast<char*>(mapped_) + offset, data, bytes);
        return;
    }
    const uint64_t chunk = std::min<uint64_t>(bytes, 64ull << 20);
    Buffer staging(*ctx_, chunk, MemoryUse::Upload);
    if (!staging.mapped()) throw Error("internal: staging buffer is not host-visible");
    for (uint64_t done = 0; done < bytes; done += chunk) {
        uint64_t n = std::min(chunk, bytes - done);
        std::memcpy(staging.mapped(), static_cast<const char*>(data) + done, n);
        ctx_->copyBuffer(staging.handle(), 0, buffer_, offset + done, n);
    }
}

void Buffer::download(void* data, uint64_t bytes, uint64_t offset) const {
    if (offset + bytes > size_) throw Error("internal: download past the end of a buffer");
    if (bytes == 0) return;
    if (mapped_) {
        std::memcpy(data, static_cast<const char*>(mapped_) + offset, bytes);
        return;
    }
    const uint64_t chunk = std::min<uint64_t>(bytes, 64ull << 20);
    Buffer staging(*ctx_, chunk, MemoryUse::Readback);
    for (uint64_t done = 0; done < bytes; done += chunk) {
        uint64_t n = std::min(chunk, bytes - done);
        ctx_->copyBuffer(buffer_, offset + done, staging.handle(), 0, n);
        std::memcpy(static_cast<char*>(data) + done, staging.mapped(), n);
    }
}

void Buffer::fillZero() {
    if (mapped_) {
        std::memset(mapped_, 0, size_);
        return;
    }
    Recorder rec(*ctx_);
    rec.begin();
    rec.fill(BufferView(*this), 0);
    rec.end();
    rec.submitAndWait();
}

// ---------------------------------------------------------------- Recorder

Recorder::Recorder(Context& ctx) : ctx_(ctx) {
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = ctx.commandPool();
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    {
        std::lock_guard lock(ctx.submitMutex_); // the pool is shared between threads
        ctx.check(vkAllocateCommandBuffers(ctx.device(), &ai, &cmd_), "vkAllocateCommandBuffers");
    }
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    ctx.check(vkCreateFence(ctx.device(), &fci, nullptr, &fence_), "vkCreateFence");
}

Recorder::~Recorder() {
    // A submit whose wait timed out may still run: freeing its command buffer
    // now would be undefined. A lost device ends the wait with an error.
    while (inFlight_) {
        try {
            waitForSubmit(ctx_.gpuTimeoutSeconds());
        } catch (const Error&) {
            break;
        }
    }
    vkDestroyFence(ctx_.device(), fence_, nullptr);
    {
        std::lock_guard lock(ctx_.submitMutex_);
        vkFreeCommandBuffers(ctx_.device(), ctx_.commandPool(), 1, &cmd_);
    }
    for (auto pool : pools_) vkDestroyDescriptorPool(ctx_.device(), pool, nullptr);
    if (queryPool_) vkDestroyQueryPool(ctx_.device(), queryPool_, nullptr);
}

namespace {
constexpr uint32_t kProfiledDispatches = 4096; // timestamps per command buffer; later dispatches go unmeasured
}

void Context::setProfiling(bool on) {
    if (on && !canProfile_) throw Error("Vulkan device '" + info_.name + "' has no timestamps on its compute queue");
    profiling_ = on;
}

void Context::addProfile(const std::string& shader, double milliseconds) {
    std::lock_guard lock(profileMutex_);
    ProfileEntry& e = profile_[shader];
    e.shader = shader;
    ++e.dispatches;
    e.milliseconds += milliseconds;
}

std::vector<ProfileEntry> Context::takeProfile() {
    std::lock_guard lock(profileMutex_);
    std::vector<ProfileEntry> out;
    for (auto& [name, e] : profile_) out.push_back(e);
    profile_.clear();
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.milliseconds > b.milliseconds; });
    return out;
}

VkBufferView Context::texelView(VkBuffer buffer, uint64_t offset, uint64_t range, VkFormat format) {
    const uint64_t texel = format == VK_FORMAT_R32_SFLOAT ? 4 : 16;
    if (range % texel != 0 || range / texel > info_.maxTexelBufferElements)
        throw Error("internal: texel range of " + std::to_string(range) + " bytes is not a whole number of " +
                    std::to_string(texel) + "-byte texels within maxTexelBufferElements");
    if (info_.minTexelBufferOffsetAlignment && offset % info_.minTexelBufferOffsetAlignment != 0)
        throw Error("internal: texel view offset " + std::to_string(offset) + " is not aligned");
    std::lock_guard lock(texelViewsMutex_);
    const auto key = std::make_tuple(buffer, offset, range, format);
    if (auto it = texelViews_.find(key); it != texelViews_.end()) return it->second;
    VkBufferViewCreateInfo ci{VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO};
    ci.buffer = buffer;
    ci.format = format;
    ci.offset = offset;
    ci.range = range;
    VkBufferView view;
    check(vkCreateBufferView(device_, &ci, nullptr, &view), "vkCreateBufferView");
    texelViews_.emplace(key, view);
    return view;
}

void Context::releaseTexelViews(VkBuffer buffer) {
    std::lock_guard lock(texelViewsMutex_);
    for (auto it = texelViews_.lower_bound({buffer, 0, 0, VkFormat(0)}); it != texelViews_.end() && std::get<0>(it->first) == buffer;) {
        vkDestroyBufferView(device_, it->second, nullptr);
        it = texelViews_.erase(it);
    }
}

void Recorder::begin() {
    if (inFlight_ && !waitForSubmit(ctx_.gpuTimeoutSeconds()))
        throw Error("the Vulkan device '" + ctx_.info().name + "' is still running work that timed out; restart the program");
    std::lock_guard lock(ctx_.submitMutex_);
    vkResetCommandBuffer(cmd_, 0);
    for (auto pool : pools_) vkResetDescriptorPool(ctx_.device(), pool, 0);
    poolUsed_ = 0;
    dispatches_ = 0;
    barriers_ = 0;
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    ctx_.check(vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
    recording_ = true;
    profiledNames_.clear();
    profiling_ = ctx_.profiling();
    if (profiling_) {
        if (!queryPool_) {
            VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
            qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
            qi.queryCount = kProfiledDispatches + 1;
            ctx_.check(vkCreateQueryPool(ctx_.device(), &qi, nullptr, &queryPool_), "vkCreateQueryPool");
        }
        vkCmdResetQueryPool(cmd_, queryPool_, 0, kProfiledDispatches + 1);
        vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool_, 0);
    }
}

void Recorder::readProfile() {
    if (profiledNames_.empty()) return;
    std::vector<uint64_t> ticks(profiledNames_.size() + 1);
    ctx_.check(vkGetQueryPoolResults(ctx_.device(), queryPool_, 0, uint32_t(ticks.size()), ticks.size() * sizeof(uint64_t),
                                     ticks.data(), sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
               "vkGetQueryPoolResults");
    const double msPerTick = double(ctx_.info().timestampPeriod) * 1e-6;
    for (size_t i = 0; i < profiledNames_.size(); ++i)
        ctx_.addProfile(*profiledNames_[i], double(ticks[i + 1] - ticks[i]) * msPerTick);
}

VkDescriptorSet Recorder::allocateSet(VkDescriptorSetLayout layout, uint32_t) {
    constexpr uint32_t kSetsPerPool = 256;
    for (;;) {
        if (poolUsed_ == pools_.size()) {
            const VkDescriptorPoolSize sizes[] = {{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * 8},
                                                  {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, kSetsPerPool * 4}};
            VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
            pci.maxSets = kSetsPerPool;
            pci.poolSizeCount = 2;
            pci.pPoolSizes = sizes;
            VkDescriptorPool pool;
            ctx_.check(vkCreateDescriptorPool(ctx_.device(), &pci, nullptr, &pool), "vkCreateDescriptorPool");
            pools_.push_back(pool);
        }
        VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
        ai.descriptorPool = pools_[poolUsed_];
        ai.descriptorSetCount = 1;
        ai.pSetLayouts = &layout;
        VkDescriptorSet set;
        VkResult r = vkAllocateDescriptorSets(ctx_.device(), &ai, &set);
        if (r == VK_SUCCESS) return set;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) ctx_.check(r, "vkAllocateDescriptorSets");
        ++poolUsed_; // this pool is full: move on to the next one
    }
}

void Recorder::dispatch(const Pipeline& pipe, std::initializer_list<BufferView> bindings, const void* push,
                        uint32_t pushSize, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (!recording_) throw Error("internal: dispatch outside begin()/end()");
    if (bindings.size() != pipe.bindings || pushSize != pipe.pushSize)
        throw Error("internal: dispatch with " + std::to_string(bindings.size()) + " bindings / " +
                    std::to_string(pushSize) + " push bytes, pipeline expects " + std::to_string(pipe.bindings) +
                    " / " + std::to_string(pipe.pushSize));
    if (gx == 0 || gy == 0 || gz == 0) return;
    VkDescriptorSet set = allocateSet(pipe.setLayout, pipe.bindings);
    std::vector<VkDescriptorBufferInfo> infos;
    std::vector<VkBufferView> views(bindings.size(), VK_NULL_HANDLE);
    infos.reserve(bindings.size());
    uint32_t i = 0;
    for (const auto& b : bindings) {
        const uint64_t range = b.range;
        if ((pipe.texels.mask() >> i) & 1u) {
            if (range == VK_WHOLE_SIZE) throw Error("internal: texel bindings need an explicit range");
            const VkFormat format = (pipe.texels.uint4 >> i) & 1u    ? VK_FORMAT_R32G32B32A32_UINT
                                    : (pipe.texels.float4 >> i) & 1u ? VK_FORMAT_R32G32B32A32_SFLOAT
                                                                     : VK_FORMAT_R32_SFLOAT;
            views[i] = ctx_.texelView(b.buffer, b.offset, range, format);
        } else if (range != VK_WHOLE_SIZE && range > ctx_.maxStorageRange()) {
            throw Error("internal: binding of " + std::to_string(range) + " bytes exceeds maxStorageBufferRange");
        }
        infos.push_back({b.buffer, b.offset, range});
        ++i;
    }
    std::vector<VkWriteDescriptorSet> writes(bindings.size());
    for (uint32_t w = 0; w < writes.size(); ++w) {
        writes[w] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        writes[w].dstSet = set;
        writes[w].dstBinding = w;
        writes[w].descriptorCount = 1;
        if (views[w]) {
            writes[w].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
            writes[w].pTexelBufferView = &views[w];
        } else {
            writes[w].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            writes[w].pBufferInfo = &infos[w];
        }
    }
    vkUpdateDescriptorSets(ctx_.device(), static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.pipeline);
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.layout, 0, 1, &set, 0, nullptr);
    if (pushSize) vkCmdPushConstants(cmd_, pipe.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, pushSize, push);
    vkCmdDispatch(cmd_, gx, gy, gz);
    ++dispatches_;
    if (profiling_ && profiledNames_.size() < kProfiledDispatches) {
        profiledNames_.push_back(&pipe.name);
        vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool_, uint32_t(profiledNames_.size()));
    }
}

void Recorder::dispatchFlat(const Pipeline& pipe, std::initializer_list<BufferView> bindings, const void* push,
                            uint32_t pushSize, uint64_t groups, uint32_t gy) {
    if (groups == 0) return;
    const uint64_t maxX = std::min<uint32_t>(ctx_.info().maxWorkGroupCount[0], 65535u);
    uint64_t gz = (groups + maxX - 1) / maxX;
    uint64_t gx = (groups + gz - 1) / gz;
    if (gz > ctx_.info().maxWorkGroupCount[2]) throw Error("internal: dispatch too large");
    // Shaders compute the flat id as z * numGroups.x + x and bounds-check it.
    dispatch(pipe, bindings, push, pushSize, static_cast<uint32_t>(gx), gy, static_cast<uint32_t>(gz));
}

void Recorder::barrier() {
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, nullptr,
                         0, nullptr);
    ++barriers_;
}

void Recorder::fill(const BufferView& view, uint32_t value) {
    uint64_t range = view.range;
    vkCmdFillBuffer(cmd_, view.buffer, view.offset, range, value);
}

void Recorder::copy(VkBuffer src, uint64_t srcOffset, VkBuffer dst, uint64_t dstOffset, uint64_t bytes) {
    VkBufferCopy region{srcOffset, dstOffset, bytes};
    vkCmdCopyBuffer(cmd_, src, dst, 1, &region);
}

void Recorder::end() {
    ctx_.check(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
    recording_ = false;
}

bool Recorder::waitForSubmit(double seconds) {
    const double ns = std::min(seconds * 1e9, 1.8e19);
    const VkResult r = vkWaitForFences(ctx_.device(), 1, &fence_, VK_TRUE, static_cast<uint64_t>(ns));
    if (r == VK_TIMEOUT) return false;
    inFlight_ = false;
    ctx_.check(r, "vkWaitForFences"); // VK_ERROR_DEVICE_LOST: says the device was lost
    return true;
}

void Recorder::submitAndWait() {
    // A recording submitted before and still running (its wait timed out)
    // cannot be submitted again until it ends.
    if (inFlight_ && !waitForSubmit(ctx_.gpuTimeoutSeconds()))
        throw Error("the Vulkan device '" + ctx_.info().name + "' is still running work that timed out; restart the program");
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    {
        std::lock_guard lock(ctx_.submitMutex_);
        ctx_.check(vkResetFences(ctx_.device(), 1, &fence_), "vkResetFences");
        ctx_.check(vkQueueSubmit(ctx_.queue(), 1, &si, fence_), "vkQueueSubmit");
    }
    inFlight_ = true;
    if (!waitForSubmit(ctx_.gpuTimeoutSeconds())) {
        char limit[32];
        std::snprintf(limit, sizeof limit, "%g", ctx_.gpuTimeoutSeconds());
        throw Error("the Vulkan device '" + ctx_.info().name + "' did not finish its work within " + limit +
                    " s: it may be hung (raise the limit with MOE_GPU_TIMEOUT_S if the work is just long)");
    }
    readProfile();
}

} // namespace moe::vk
