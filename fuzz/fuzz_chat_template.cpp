// A Jinja chat template (ChatTemplate::render) with a fixed conversation,
// with and without the generation prompt.
#include "fuzz_common.h"
#include "moe/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<moe::ChatMessage> messages = {
        {"system", "You are helpful."},
        {"user", "Hello!"},
        {"assistant", "Hi. How can I help?"},
        {"user", "Write {{ 1 + 1 }} and {% raw %}."},
    };
    const moe::ChatTemplate t{std::string(moe::fuzz::asText(data, size))};
    moe::fuzz::expectOnlyMoeErrors([&] { (void)t.render(messages, true, "<s>", "</s>"); });
    moe::fuzz::expectOnlyMoeErrors([&] { (void)t.render({{"user", "x"}}, false, "", ""); });
    return 0;
}
