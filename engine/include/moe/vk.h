#pragma once
// The Vulkan compute device: instance and device selection, buffers,
// pipelines (built once, cached on disk), and command recording. Everything
// the forward pass and the op tests dispatch goes through this layer.
#include "moe/shader_ids.h"

#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace moe::vk {

struct MemoryHeapInfo {
    uint64_t size = 0;
    bool deviceLocal = false;
};

struct DeviceInfo {
    uint32_t index = 0;
    std::string name;
    std::string type; // "discrete", "integrated", "virtual", "cpu", "other"
    std::string driver;
    uint32_t apiVersion = 0;
    uint32_t subgroupSize = 0;
    uint64_t maxStorageBufferRange = 0;
    uint64_t maxMemoryAllocationSize = 0;
    uint32_t maxComputeSharedMemorySize = 0;
    uint32_t maxWorkGroupCount[3] = {0, 0, 0};
    uint32_t maxWorkGroupInvocations = 0;
    uint32_t maxPushConstantsSize = 0;
    uint32_t minStorageBufferOffsetAlignment = 0;
    uint64_t maxTexelBufferElements = 0;
    uint32_t minTexelBufferOffsetAlignment = 0;
    float timestampPeriod = 0; // nanoseconds per timestamp tick
    bool fullSubgroups = false; // computeFullSubgroups (needed for several subgroups per workgroup)
    std::vector<MemoryHeapInfo> heaps;
};

struct ContextOptions {
    std::string device;       // index or name substring; empty = MOE_VK_DEVICE or the best device
    bool validation = false;  // also enabled by MOE_VK_VALIDATION=1
    bool forceStaging = false; // also MOE_VK_FORCE_STAGING=1: upload through staging even to host-visible memory
    // Weights, matmul inputs and the KV cache read through texel-buffer views
    // instead of storage buffers. Unset: MOE_TEXEL_READS=0/1, else on for CPU
    // devices (lavapipe loads a storage buffer one lane at a time and fetches
    // texels whole; figures in docs/PERFORMANCE.md).
    std::optional<bool> texelReads;
    // A submit that has not finished after this many seconds throws moe::Error
    // (a hung GPU) instead of waiting for ever. Unset: MOE_GPU_TIMEOUT_S, else
    // kGpuTimeoutSeconds (kCpuDeviceTimeoutSeconds on CPU devices, where one
    // long prompt step of a large model is slow but not hung).
    std::optional<double> gpuTimeoutSeconds;
};
constexpr double kGpuTimeoutSeconds = 300;
constexpr double kCpuDeviceTimeoutSeconds = 3600;

// Validation messages (warnings and errors) of every Context of this process
// so far, destroyed ones included: what a test suite asserts is zero at exit.
uint64_t validationMessagesInProcess();

// Lists the physical devices (no logical device is created).
std::vector<DeviceInfo> listDevices();

class Context;

enum class MemoryUse {
    Device,   // weights and activations: device-local preferred
    Upload,   // host writes every step (step parameters)
    Readback, // host reads results (logits)
};

class Buffer {
public:
    Buffer() = default;
    Buffer(Context& ctx, uint64_t size, MemoryUse use);
    ~Buffer();
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    VkBuffer handle() const { return buffer_; }
    uint64_t size() const { return size_; }
    void* mapped() const { return mapped_; } // null when not host-visible
    bool valid() const { return buffer_ != VK_NULL_HANDLE; }

    // Host → buffer (mapped memcpy, or staging copy when not host-visible / forced).
    void upload(const void* data, uint64_t bytes, uint64_t offset = 0);
    // Buffer → host (mapped read, or staging copy).
    void download(void* data, uint64_t bytes, uint64_t offset = 0) const;
    void fillZero();

private:
    void release();
    Context* ctx_ = nullptr;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    uint64_t size_ = 0;
    void* mapped_ = nullptr;
};

// A range of a buffer bound to one shader binding.
struct BufferView {
    VkBuffer buffer = VK_NULL_HANDLE;
    uint64_t offset = 0;
    uint64_t range = VK_WHOLE_SIZE;
    BufferView() = default;
    BufferView(const Buffer& b) : buffer(b.handle()), offset(0), range(b.size()) {}
    BufferView(const Buffer& b, uint64_t off, uint64_t len) : buffer(b.handle()), offset(off), range(len) {}
};

// Which bindings of a pipeline are uniform texel buffers, as bit masks.
struct TexelBindings {
    uint32_t uint4 = 0;  // R32G32B32A32_UINT: 16-byte texels (weights)
    uint32_t float1 = 0; // R32_SFLOAT: one float per texel (activations)
    uint32_t float4 = 0; // R32G32B32A32_SFLOAT: four floats per texel (aligned activations)
    uint32_t mask() const { return uint4 | float1 | float4; }
    bool any() const { return mask() != 0; }
};

struct Pipeline {
    std::string name; // the shader's name, as profiles report it
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkDescriptorSetLayout setLayout = VK_NULL_HANDLE;
    uint32_t bindings = 0;
    uint32_t pushSize = 0;
    uint32_t localSizeX = 0; // when set by specialization constant 0
    // Bindings read as uniform texel buffers rather than storage buffers
    // (faster on drivers that turn storage-buffer loads into per-lane loops,
    // such as lavapipe).
    TexelBindings texels;
};

// Records dispatches into one command buffer; descriptor sets live as long
// as the recorder, so a recorded command buffer can be submitted many times.
class Recorder {
public:
    explicit Recorder(Context& ctx);
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    void begin(); // resets and starts recording (descriptor sets of the last recording are freed)
    void dispatch(const Pipeline& pipe, std::initializer_list<BufferView> bindings, const void* push,
                  uint32_t pushSize, uint32_t groupsX, uint32_t groupsY = 1, uint32_t groupsZ = 1);
    // Splits a count of workgroups over x and z so that none exceeds the device limit.
    void dispatchFlat(const Pipeline& pipe, std::initializer_list<BufferView> bindings, const void* push,
                      uint32_t pushSize, uint64_t groups, uint32_t groupsY = 1);
    void barrier(); // compute→compute (and transfer) memory barrier
    void fill(const BufferView& view, uint32_t value);
    void copy(VkBuffer src, uint64_t srcOffset, VkBuffer dst, uint64_t dstOffset, uint64_t bytes);
    void end();
    // Submits and waits; throws moe::Error on device loss or timeout.
    void submitAndWait();
    uint32_t dispatchCount() const { return dispatches_; }
    uint32_t barrierCount() const { return barriers_; }

private:
    void readProfile();
    Context& ctx_;
    // Timestamps after each dispatch when the context profiles (set at begin()).
    VkQueryPool queryPool_ = VK_NULL_HANDLE;
    std::vector<const std::string*> profiledNames_;
    bool profiling_ = false;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    std::vector<VkDescriptorPool> pools_;
    uint32_t poolUsed_ = 0;
    uint32_t dispatches_ = 0;
    uint32_t barriers_ = 0;
    bool recording_ = false;
    bool inFlight_ = false; // submitted and not seen finished (a wait timed out)
    // Waits for the last submit; false when it is still running after `seconds`.
    bool waitForSubmit(double seconds);
    VkDescriptorSet allocateSet(VkDescriptorSetLayout layout, uint32_t bindings);
};

// Time spent in one shader over the profiled submits.
struct ProfileEntry {
    std::string shader;
    uint32_t dispatches = 0;
    double milliseconds = 0;
};

class Context {
public:
    explicit Context(const ContextOptions& opts = {});
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    const DeviceInfo& info() const { return info_; }
    VkDevice device() const { return device_; }
    VkPhysicalDevice physicalDevice() const { return physical_; }
    VkQueue queue() const { return queue_; }
    VkCommandPool commandPool() const { return commandPool_; }
    uint32_t subgroupSize() const { return info_.subgroupSize; }
    uint64_t maxStorageRange() const { return info_.maxStorageBufferRange; }
    bool forceStaging() const { return forceStaging_; }
    bool texelReads() const { return texelReads_; }
    bool validationEnabled() const { return validation_; }
    double gpuTimeoutSeconds() const { return gpuTimeoutSeconds_; }
    // Messages the validation layer reported (warnings and errors).
    uint64_t validationMessages() const { return validationMessages_.load(); }
    // Why the pipeline cache file was not used (damaged, another device); empty when it was, or there was none.
    const std::string& pipelineCacheNote() const { return pipelineCacheNote_; }
    const std::string& pipelineCachePath() const { return pipelineCachePath_; }

    // Pipeline for an embedded shader; `specs` are specialization constants
    // 0..n-1. Built once per (shader, specs) and cached.
    const Pipeline& pipeline(ShaderId shader, uint32_t bindings, uint32_t pushSize,
                             const std::vector<uint32_t>& specs = {}, TexelBindings texels = {});
    // The texel view (R32G32B32A32_UINT or R32_SFLOAT) of a buffer range,
    // created once and kept until the buffer is released.
    VkBufferView texelView(VkBuffer buffer, uint64_t offset, uint64_t range, VkFormat format);
    void releaseTexelViews(VkBuffer buffer);
    // Subgroups per workgroup for one-subgroup-per-row shaders.
    uint32_t subgroupsPerWorkgroup() const { return info_.fullSubgroups ? 4u : 1u; }

    // A small buffer bound where a shader's optional input (a bias) is absent.
    const Buffer& placeholderBuffer();

    uint32_t findMemoryType(uint32_t typeBits, MemoryUse use, bool& hostVisible) const;
    // One-shot buffer copy used by staging uploads/downloads.
    void copyBuffer(VkBuffer src, uint64_t srcOffset, VkBuffer dst, uint64_t dstOffset, uint64_t bytes);
    void check(VkResult r, const char* what) const;

    std::atomic<uint64_t> validationMessages_{0};

    // Profiling: command buffers recorded while it is on write a timestamp
    // after each dispatch; each submit adds the time between consecutive
    // timestamps to the dispatch's shader. Exact on drivers that run dispatches
    // one after another (lavapipe); on GPUs overlapping dispatches share time.
    void setProfiling(bool on);
    bool profiling() const { return profiling_.load(); }
    bool canProfile() const { return canProfile_; }
    // Totals per shader since the last call, largest first; clears them.
    std::vector<ProfileEntry> takeProfile();

private:
    void addProfile(const std::string& shader, double milliseconds);
    std::atomic<bool> profiling_{false}; // read by recorders on any thread
    bool canProfile_ = false;
    std::mutex profileMutex_;
    std::map<std::string, ProfileEntry> profile_;
    void savePipelineCache();
    DeviceInfo info_;
    VkInstance instance_ = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    VkPhysicalDevice physical_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queueFamily_ = 0;
    VkCommandPool commandPool_ = VK_NULL_HANDLE;
    VkPipelineCache pipelineCache_ = VK_NULL_HANDLE;
    std::string pipelineCachePath_, pipelineCacheNote_;
    VkPhysicalDeviceMemoryProperties memProps_{};
    bool validation_ = false;
    double gpuTimeoutSeconds_ = kGpuTimeoutSeconds;
    bool forceStaging_ = false;
    bool texelReads_ = false;
    std::mutex pipelinesMutex_;
    std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
    std::mutex submitMutex_;
    std::unique_ptr<Buffer> placeholder_;
    std::mutex texelViewsMutex_;
    std::map<std::tuple<VkBuffer, uint64_t, uint64_t, VkFormat>, VkBufferView> texelViews_;
    friend class Recorder;
};

} // namespace moe::vk
