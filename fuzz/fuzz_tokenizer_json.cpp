// A Hugging Face tokenizer.json (+ tokenizer_config.json): the input is split
// by fuzz_common.h's splitTwo into tokenizer_config.json (first; none when
// empty) and tokenizer.json; then a round trip of some text.
#include "fuzz_common.h"
#include "moe/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto dir = moe::fuzz::workDir() / "hf";
    std::string_view config, json;
    moe::fuzz::splitTwo(moe::fuzz::asText(data, size), config, json);
    std::error_code ec;
    std::filesystem::remove(dir / "tokenizer_config.json", ec);
    if (!config.empty()) moe::fuzz::writeFile(dir / "tokenizer_config.json", config);
    moe::fuzz::writeFile(dir / "tokenizer.json", json);
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const auto tok = moe::Tokenizer::loadHfJson(dir / "tokenizer.json",
                                                    config.empty() ? std::filesystem::path() : dir / "tokenizer_config.json");
        const auto ids = tok->encode("Hello world! <s> \xe4\xbd\xa0\xe5\xa5\xbd 123\n\tx", true, true);
        (void)tok->decode(ids, true);
        (void)tok->decode(ids, false);
        const int32_t n = tok->vocabSize();
        for (int32_t id = 0; id < n && id < 64; ++id) (void)tok->piece(id);
    });
}
