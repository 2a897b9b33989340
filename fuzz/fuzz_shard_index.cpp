// model.safetensors.index.json of a sharded folder (WeightStore::openFolder):
// the weight map's tensor and shard names, beside two small valid shards.
#include "fuzz_common.h"
#include "moe/safetensors.h"

#include <vector>

namespace {
void writeShard(const std::filesystem::path& path, const std::string& a, const std::string& b) {
    static const float values[4] = {1, 2, 3, 4};
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(values), sizeof values);
    moe::writeSafetensors(path, {{a, moe::DType::F32, {2, 2}, bytes}, {b, moe::DType::F32, {4}, bytes}});
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto dir = moe::fuzz::workDir() / "sharded";
    static const bool shards = [&] {
        std::filesystem::create_directories(dir);
        writeShard(dir / "model-00001-of-00002.safetensors", "model.embed_tokens.weight", "model.norm.weight");
        writeShard(dir / "model-00002-of-00002.safetensors", "lm_head.weight", "model.layers.0.input_layernorm.weight");
        return true;
    }();
    (void)shards;
    moe::fuzz::writeFile(dir / "model.safetensors.index.json", moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const auto store = moe::WeightStore::openFolder(dir);
        for (const auto& name : store->names()) (void)store->require(name);
        (void)store->totalBytes();
    });
}
