// A GGUF file: header, metadata, tensor table (GgufFile::open); for files
// that open, the model they describe (ggufModelConfig, ggufWeightStore) and
// the chat template in their metadata.
#include "fuzz_common.h"
#include "moe/chat_template.h"
#include "moe/gguf.h"
#include "moe/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::workDir() / "model.gguf";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    std::shared_ptr<const moe::GgufFile> gguf;
    moe::fuzz::expectOnlyMoeErrors([&] { gguf = moe::GgufFile::open(file); });
    if (!gguf) return 0;
    moe::fuzz::expectOnlyMoeErrors([&] {
        for (const auto& [key, value] : gguf->metadata()) {
            (void)gguf->getNumber(key).has_value();
        }
    });
    moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::ModelConfig config = moe::ggufModelConfig(*gguf);
        const auto store = moe::ggufWeightStore(gguf, config);
        (void)store->totalBytes();
    });
    moe::fuzz::expectOnlyMoeErrors([&] {
        const moe::ChatTemplate t = moe::ChatTemplate::fromGguf(*gguf);
        (void)t.render({{"user", "hi"}}, true, "<s>", "</s>");
    });
    return 0;
}
