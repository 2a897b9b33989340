// A LoRA adapter's adapter_config.json, read by the expert check the wizard
// and validateSelection use (checkExpertCompatibility), beside a valid
// adapter_model.safetensors for the tiny base of fuzz_models.h.
#include "fuzz_models.h"
#include "moe/model_config.h"
#include "moe/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const moe::ModelConfig base = moe::ModelConfig::load(moe::fuzz::tinyModels() / "base");
    const auto dir = moe::fuzz::tinyModels() / "lora-fuzz";
    static const bool weights = [&] {
        std::filesystem::create_directories(dir);
        moe::fuzz::writeTinyWeights(dir / "adapter_model.safetensors", true);
        return true;
    }();
    (void)weights;
    moe::fuzz::writeFile(dir / "adapter_config.json", moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        moe::ExpertType type{};
        (void)moe::checkExpertCompatibility(base, dir, &type);
    });
}
