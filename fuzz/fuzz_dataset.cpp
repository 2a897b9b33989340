// An AnyMoE gate-training dataset (loadDataset).
#include "fuzz_common.h"
#include "moe/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::workDir() / "amoe.json";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const auto rows = moe::loadDataset(file);
        (void)moe::datasetHash(rows);
    });
}
