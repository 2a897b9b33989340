// A selector TOML (loadSelector) beside tiny models (fuzz_models.h: base,
// expert-a, expert-b, lora-a, amoe.json), then validateSelection on what loads.
#include "fuzz_models.h"
#include "moe/selector.h"
#include "moe/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::tinyModels() / "selector.toml";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::Selector s = moe::loadSelector(file);
        (void)moe::validateSelection(s);
    });
}
