#pragma once
// A GGUF writer for tests: metadata and tensors laid out as the GGUF v3 spec
// says, little-endian, so tests can write valid and deliberately damaged files.
#include <cstdint>
#include <string>
#include <vector>

namespace moe::test {

// A GGUF writer for tests: little-endian fields appended as the spec lays them out.
struct GgufBuilder {
    std::vector<uint8_t> bytes;
    uint64_t kvCount = 0, tensorCount = 0;
    std::vector<uint8_t> kv, infos, data;
    uint32_t alignment = 32;

    template <class T> static void put(std::vector<uint8_t>& out, T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        out.insert(out.end(), p, p + sizeof v);
    }
    static void putString(std::vector<uint8_t>& out, const std::string& s) {
        put<uint64_t>(out, s.size());
        out.insert(out.end(), s.begin(), s.end());
    }
    GgufBuilder& string(const std::string& key, const std::string& value) {
        putString(kv, key), put<uint32_t>(kv, 8), putString(kv, value), ++kvCount;
        return *this;
    }
    GgufBuilder& u32(const std::string& key, uint32_t value) {
        putString(kv, key), put<uint32_t>(kv, 4), put<uint32_t>(kv, value), ++kvCount;
        return *this;
    }
    GgufBuilder& f32(const std::string& key, float value) {
        putString(kv, key), put<uint32_t>(kv, 6), put<float>(kv, value), ++kvCount;
        return *this;
    }
    GgufBuilder& boolean(const std::string& key, bool value) {
        putString(kv, key), put<uint32_t>(kv, 7), put<uint8_t>(kv, value ? 1 : 0), ++kvCount;
        return *this;
    }
    GgufBuilder& strings(const std::string& key, const std::vector<std::string>& values) {
        putString(kv, key), put<uint32_t>(kv, 9), put<uint32_t>(kv, 8), put<uint64_t>(kv, values.size());
        for (const auto& v : values) putString(kv, v);
        ++kvCount;
        return *this;
    }
    GgufBuilder& i32s(const std::string& key, const std::vector<int32_t>& values) {
        putString(kv, key), put<uint32_t>(kv, 9), put<uint32_t>(kv, 5), put<uint64_t>(kv, values.size());
        for (int32_t v : values) put<int32_t>(kv, v);
        ++kvCount;
        return *this;
    }
    GgufBuilder& f32s(const std::string& key, const std::vector<float>& values) {
        putString(kv, key), put<uint32_t>(kv, 9), put<uint32_t>(kv, 6), put<uint64_t>(kv, values.size());
        for (float v : values) put<float>(kv, v);
        ++kvCount;
        return *this;
    }
    // A tensor with GGUF dims `ne` (innermost first) and its raw bytes.
    GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::vector<uint8_t>& raw) {
        while (data.size() % alignment) data.push_back(0);
        putString(infos, name), put<uint32_t>(infos, uint32_t(ne.size()));
        for (uint64_t n : ne) put<uint64_t>(infos, n);
        put<uint32_t>(infos, type), put<uint64_t>(infos, data.size());
        data.insert(data.end(), raw.begin(), raw.end());
        ++tensorCount;
        return *this;
    }
    std::vector<uint8_t> build() const {
        std::vector<uint8_t> out;
        put<uint32_t>(out, 0x46554747), put<uint32_t>(out, 3), put<uint64_t>(out, tensorCount), put<uint64_t>(out, kvCount);
        out.insert(out.end(), kv.begin(), kv.end());
        out.insert(out.end(), infos.begin(), infos.end());
        while (out.size() % alignment) out.push_back(0);
        out.insert(out.end(), data.begin(), data.end());
        return out;
    }
};

} // namespace moe::test
