// The vocabulary in a GGUF file's metadata (Tokenizer::fromGguf): tokens,
// scores, token types, merges, special ids; then a round trip of some text.
#include "fuzz_common.h"
#include "moe/gguf.h"
#include "moe/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto file = moe::fuzz::workDir() / "vocab.gguf";
    moe::fuzz::writeFile(file, moe::fuzz::asText(data, size));
    return moe::fuzz::expectOnlyMoeErrors([&] {
        const auto gguf = moe::GgufFile::open(file);
        const auto tok = moe::Tokenizer::fromGguf(*gguf);
        const auto ids = tok->encode("Hello world! <s> \xe4\xbd\xa0\xe5\xa5\xbd 123\n\tx", true, true);
        (void)tok->decode(ids, true);
        (void)tok->decode(ids, false);
        const int32_t n = tok->vocabSize();
        for (int32_t id = 0; id < n && id < 64; ++id) (void)tok->piece(id);
    });
}
