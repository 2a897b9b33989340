// config.json of a model folder (ModelConfig::load), with a fixed
// generation_config.json beside it.
#include "fuzz_common.h"
#include "moe/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto dir = moe::fuzz::workDir() / "model";
    moe::fuzz::writeFile(dir / "config.json", moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::ModelConfig c = moe::ModelConfig::load(dir);
        for (int l = 0; l < c.numLayers && l < 4096; ++l) (void)c.isSparseLayer(l);
        (void)c.archName();
    });
}
