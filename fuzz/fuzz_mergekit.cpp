// A mergekit-moe YAML config (loadMergekitConfig) beside tiny models
// (fuzz_models.h), then validateSelection on what loads.
#include "fuzz_models.h"
#include "moe/mergekit.h"
#include "moe/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::tinyModels() / "mergekit.yaml";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::Selector s = moe::loadMergekitConfig(file);
        (void)moe::validateSelection(s);
    });
}
