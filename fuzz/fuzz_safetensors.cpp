// A .safetensors file: the 8-byte header length, the JSON header (dtypes,
// shapes, data offsets, __metadata__) and the data section's bounds.
#include "fuzz_common.h"
#include "moe/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::workDir() / "model.safetensors";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::SafetensorsFile st(file);
        for (const auto& [name, view] : st.tensors()) {
            (void)view.shapeString();
            // Small float tensors are converted as a loader would.
            if (view.nbytes <= 4096 && (view.dtype == moe::DType::F32 || view.dtype == moe::DType::F16 ||
                                        view.dtype == moe::DType::BF16 || view.dtype == moe::DType::F64))
                (void)moe::toFloat32(view);
        }
    });
}
