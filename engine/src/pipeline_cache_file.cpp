#include "pipeline_cache_file.h"

#include "moe/atomic_file.h"
#include "moe/error.h"

#include <cstring>
#include <fstream>

namespace moe::vk {
namespace {

constexpr char kMagic[8] = {'M', 'O', 'E', 'P', 'C', 'A', 'C', '1'};
constexpr size_t kOurHeader = 8 + 8 + 8; // magic, payload bytes, FNV-1a 64 of the payload
// VkPipelineCacheHeaderVersionOne: headerSize, headerVersion, vendorID,
// deviceID (4 bytes each), then the 16-byte pipelineCacheUUID.
constexpr size_t kDriverHeader = 32;
constexpr uint32_t kHeaderVersionOne = 1; // VK_PIPELINE_CACHE_HEADER_VERSION_ONE
// Far above what a few hundred compute pipelines take; bounds the read of a
// hostile or runaway file.
constexpr uintmax_t kMaxCacheBytes = uintmax_t(256) << 20;

uint64_t fnv1a(const char* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ uint8_t(p[i])) * 0x100000001b3ull;
    return h;
}

uint32_t u32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

uint64_t u64(const char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

} // namespace

std::vector<char> readPipelineCache(const std::filesystem::path& file, const PipelineCacheKey& key, std::string& note) {
    note.clear();
    std::error_code ec;
    const auto status = std::filesystem::status(file, ec);
    if (ec || !std::filesystem::exists(status)) return {};
    auto ignored = [&](const std::string& why) {
        note = file.string() + ": pipeline cache ignored (" + why + "); it is rebuilt";
        return std::vector<char>{};
    };
    if (!std::filesystem::is_regular_file(status)) return ignored("not a regular file");
    const uintmax_t size = std::filesystem::file_size(file, ec);
    if (ec) return ignored("cannot read its size");
    if (size > kMaxCacheBytes) return ignored("larger than " + std::to_string(kMaxCacheBytes >> 20) + " MiB");
    std::vector<char> bytes(size_t(size), 0);
    std::ifstream in(file, std::ios::binary);
    if (!in || !in.read(bytes.data(), std::streamsize(bytes.size()))) return ignored("cannot be read");

    if (bytes.size() < kOurHeader || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
        return ignored("not written by this version of MoE Studio");
    const uint64_t payload = u64(bytes.data() + 8);
    if (payload != bytes.size() - kOurHeader)
        return ignored("truncated or extended: header says " + std::to_string(payload) + " bytes of data, the file has " +
                       std::to_string(bytes.size() - kOurHeader));
    const char* data = bytes.data() + kOurHeader;
    if (fnv1a(data, size_t(payload)) != u64(bytes.data() + 16)) return ignored("checksum mismatch: the data is damaged");

    if (payload < kDriverHeader) return ignored("the driver's header is incomplete");
    const uint32_t headerSize = u32(data), version = u32(data + 4), vendor = u32(data + 8), device = u32(data + 12);
    if (headerSize < kDriverHeader || headerSize > payload)
        return ignored("the driver's header size " + std::to_string(headerSize) + " is invalid");
    if (version != kHeaderVersionOne) return ignored("header version " + std::to_string(version) + " is not 1");
    if (vendor != key.vendorId || device != key.deviceId) return ignored("made for another device");
    if (std::memcmp(data + 16, key.uuid.data(), key.uuid.size()) != 0)
        return ignored("made by another driver version (pipeline cache UUID differs)");
    return std::vector<char>(data, data + payload);
}

void writePipelineCache(const std::filesystem::path& file, std::span<const char> driverData) {
    AtomicFileWriter out(file);
    const uint64_t size = driverData.size(), hash = fnv1a(driverData.data(), driverData.size());
    out.write(kMagic, sizeof kMagic);
    out.write(&size, sizeof size);
    out.write(&hash, sizeof hash);
    out.write(driverData.data(), driverData.size());
    out.commit();
}

} // namespace moe::vk
