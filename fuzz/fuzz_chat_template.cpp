// A Jinja chat template with a fixed conversation: first through the Jinja
// engine with ChatTemplate::render's options and variables but a small step
// and output budget (so inputs that hit the limits are refused quickly and
// the fuzzer explores more), then, for those that render, through
// ChatTemplate::render itself, with and without the generation prompt.
#include "fuzz_common.h"
#include "jinja.h"
#include "moe/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<moe::ChatMessage> messages = {
        {"system", "You are helpful."},
        {"user", "Hello!"},
        {"assistant", "Hi. How can I help?"},
        {"user", "Write {{ 1 + 1 }} and {% raw %}."},
    };
    const std::string source(moe::fuzz::asText(data, size));
    bool rendered = false;
    moe::fuzz::expectOnlyMoeErrors([&] {
        namespace jinja = moe::jinja;
        jinja::Options options;
        options.trimBlocks = options.lstripBlocks = true;
        options.name = "chat template";
        options.maxSteps = 20000;
        options.maxOutputBytes = 1 << 20;
        const jinja::Template t(source, options);
        jinja::ValueList list;
        for (const auto& m : messages) {
            jinja::ValueDict d;
            d.set("role", m.role);
            d.set("content", m.content);
            list.push_back(jinja::Value::dict(std::move(d)));
        }
        auto raise = [](const jinja::CallArgs&) -> jinja::Value { throw moe::Error("raise_exception"); };
        (void)t.render({{"messages", jinja::Value::list(std::move(list))},
                        {"add_generation_prompt", jinja::Value(true)},
                        {"bos_token", jinja::Value("<s>")},
                        {"eos_token", jinja::Value("</s>")},
                        {"tools", jinja::Value::none()},
                        {"documents", jinja::Value::none()},
                        {"raise_exception", jinja::Value::function(raise)}});
        rendered = true;
    });
    if (!rendered) return 0;
    const moe::ChatTemplate t{source};
    moe::fuzz::expectOnlyMoeErrors([&] { (void)t.render(messages, true, "<s>", "</s>"); });
    moe::fuzz::expectOnlyMoeErrors([&] { (void)t.render({{"user", "x"}}, false, "", ""); });
    return 0;
}
